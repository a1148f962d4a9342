/* ft_idmap: an open-addressing hash map from int64 ids to pointers (linear probing, backward-shift
 * deletion, so no tombstones). Used to find the call waiting for a correlation id. One thread. */
#ifndef FT_BASE_IDMAP_H
#define FT_BASE_IDMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct ft_idmap_slot {
    int64_t key; /* 0 means empty: ids are never 0 */
    void *value;
} ft_idmap_slot;

typedef struct ft_idmap {
    ft_idmap_slot *slots;
    size_t mask; /* capacity - 1, capacity a power of two */
    size_t count;
} ft_idmap;

void ft_idmap_init(ft_idmap *m);
void ft_idmap_fini(ft_idmap *m);
/* key != 0. 0 or FTRPC_ENOMEM. Replaces an existing value. */
int ft_idmap_put(ft_idmap *m, int64_t key, void *value);
void *ft_idmap_get(const ft_idmap *m, int64_t key);
/* Removes and returns the value, or NULL. */
void *ft_idmap_take(ft_idmap *m, int64_t key);
static inline size_t ft_idmap_count(const ft_idmap *m)
{
    return m->count;
}
/* Removes and returns any one value, or NULL when empty (for draining). */
void *ft_idmap_take_any(ft_idmap *m);

#endif
