/* Linear-probing id map (see idmap.h). Load factor kept at or below 1/2. */
#include "base/idmap.h"

#include <stdlib.h>

#include "ftrpc/common.h"

static size_t slot_of(int64_t key, size_t mask)
{
    uint64_t h = (uint64_t)key * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h >> 32) & mask;
}

void ft_idmap_init(ft_idmap *m)
{
    m->slots = NULL;
    m->mask = 0;
    m->count = 0;
}

void ft_idmap_fini(ft_idmap *m)
{
    free(m->slots);
    ft_idmap_init(m);
}

static int grow(ft_idmap *m)
{
    size_t ncap = m->slots ? (m->mask + 1) * 2 : 16;
    ft_idmap_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return FTRPC_ENOMEM;
    for (size_t i = 0; m->slots && i <= m->mask; i++) {
        if (!m->slots[i].key) continue;
        size_t j = slot_of(m->slots[i].key, ncap - 1);
        while (ns[j].key)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->mask = ncap - 1;
    return 0;
}

int ft_idmap_put(ft_idmap *m, int64_t key, void *value)
{
    if (!m->slots || (m->count + 1) * 2 > m->mask + 1) {
        if (grow(m) != 0) return FTRPC_ENOMEM;
    }
    size_t i = slot_of(key, m->mask);
    while (m->slots[i].key && m->slots[i].key != key)
        i = (i + 1) & m->mask;
    if (!m->slots[i].key) m->count++;
    m->slots[i].key = key;
    m->slots[i].value = value;
    return 0;
}

static size_t find(const ft_idmap *m, int64_t key)
{
    if (!m->slots) return (size_t)-1;
    size_t i = slot_of(key, m->mask);
    while (m->slots[i].key) {
        if (m->slots[i].key == key) return i;
        i = (i + 1) & m->mask;
    }
    return (size_t)-1;
}

void *ft_idmap_get(const ft_idmap *m, int64_t key)
{
    size_t i = find(m, key);
    return i == (size_t)-1 ? NULL : m->slots[i].value;
}

static void remove_at(ft_idmap *m, size_t i)
{
    /* backward-shift deletion keeps every probe chain unbroken */
    size_t j = i;
    for (;;) {
        j = (j + 1) & m->mask;
        if (!m->slots[j].key) break;
        size_t home = slot_of(m->slots[j].key, m->mask);
        /* can slot j's entry move to i? only if i lies cyclically in [home, j) */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].key = 0;
    m->slots[i].value = NULL;
    m->count--;
}

void *ft_idmap_take(ft_idmap *m, int64_t key)
{
    size_t i = find(m, key);
    if (i == (size_t)-1) return NULL;
    void *v = m->slots[i].value;
    remove_at(m, i);
    return v;
}

void *ft_idmap_take_any(ft_idmap *m)
{
    if (!m->count) return NULL;
    for (size_t i = 0; i <= m->mask; i++) {
        if (m->slots[i].key) {
            void *v = m->slots[i].value;
            remove_at(m, i);
            return v;
        }
    }
    return NULL;
}
