/* "chash": consistent hashing by Maglev's lookup table (Eisenbud et al., "Maglev: A Fast and
 * Reliable Software Network Load Balancer", NSDI 2016), weighted as in Envoy's maglev LB.
 *
 * The table has M slots, M prime (default: the first of MAGLEV_PRIMES at or above both 65,537 and
 * 64 x N, so each endpoint holds at least ~64 slots). Endpoint i has a preference list, the
 * permutation offset_i, offset_i + skip_i, offset_i + 2 skip_i, ... (mod M), with
 * offset_i = ft_hash64(addr_i, seed 0) mod M and skip_i = ft_hash64(addr_i, seed 1) mod (M - 1) + 1
 * (M prime: every skip visits every slot). Endpoints take turns, in the order of their addresses'
 * hash (so the table depends on the set, never on the list order), each claiming the next free slot
 * of its list; with weights, an endpoint of weight w takes a turn on w / w_max of the rounds
 * (Envoy's target_weight rule), so its share of slots is its share of weight, to within a slot.
 * A key's slot is key_hash x M >> 64 (Lemire's multiply-shift, no division).
 *
 * One departure from the paper, for the rebuild's cost: the fill costs about M ln(M / F) probes to
 * leave F slots free, so its last few percent cost most of it (filling every slot: about M (ln M +
 * 0.58), 767,000 probes at M = 65,537, 1.5 ms of CPU on the loaded bench machine; stopping at
 * F = M / 64: M ln 64, 272,000). The fill stops there, and
 * each slot still free takes the owner of the next taken slot clockwise (a ring over the last
 * 1/64, consistent in the same way). Shares stay within a few percent of the weights instead of
 * one slot; tests/unit/test_lb.c bounds both.
 *
 * Why Maglev rather than the ring of virtual nodes ftrpc had: a rebuild fills M slots in about
 * M ln(M / F) cheap probes of an 8 KiB bitmap that stays in L1 (F above), where the ring hashed and
 * sorted 160 points per 100 units of weight (320,000 points at 1,000 endpoints of weight 100–300):
 * tens of ms per view change. A pick is one multiply and one table read. The price is Maglev's
 * documented disruption: adding or removing one endpoint moves its ~1/N share of the keys, and also
 * a small share between the other endpoints (the fill order shifts), where the ring moved only the
 * changed endpoint's keys. tests/unit/test_lb.c measures both.
 *
 * An unusable or excluded owner is skipped deterministically, so a key's retries and failover stay
 * consistent and the key returns home when its owner is usable again: probe j (1 .. PROBES) reads
 * the slot of the j-th splitmix64 draw seeded with the key; past the probes, one O(N) check that
 * some endpoint is acceptable, then a walk from the key's slot to the next slot of an acceptable
 * owner. */
#include "cluster/lb_impl.h"

#include <stdlib.h>
#include <string.h>

#include "base/hash.h"

#define PROBES 8
#define MAGLEV_MIN_SLOTS_PER_ENDPOINT 64
/* The fill stops with M / MAGLEV_TAIL slots free (see the file comment). */
#define MAGLEV_TAIL 64

/* Table sizes (primes), as Envoy's table_size must be prime; 65,537 is Envoy's and Maglev's
 * default. */
static const uint32_t MAGLEV_PRIMES[] = {65537,   131071,  262139,  524287,  1048573,
                                         2097143, 4194301, 8388593, 16777213};

typedef struct chash_state {
    uint32_t *table; /* table[slot]: endpoint index */
    uint32_t m;
} chash_state;

/* One endpoint's place in the fill. */
typedef struct fill_entry {
    uint64_t order;  /* the address's hash: fill order independent of the list order */
    uint32_t index;  /* endpoint index in the snapshot */
    uint32_t pos;    /* next slot of its preference list */
    uint32_t skip;   /* step of its preference list, 1 .. M - 1 */
    uint64_t weight; /* its weight */
    uint64_t target; /* it takes a turn in round r once r x weight >= target */
} fill_entry;

static int fill_order(const void *a, const void *b)
{
    const fill_entry *x = a, *y = b;
    if (x->order != y->order) return x->order < y->order ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static inline uint32_t slot_of(uint64_t h, uint32_t m)
{
    __extension__ typedef unsigned __int128 u128;
    return (uint32_t)(((u128)h * m) >> 64);
}

static inline uint32_t add_mod(uint32_t a, uint32_t b, uint32_t m)
{
    uint32_t s = a + b; /* a, b < m <= 2^24: no overflow */
    return s >= m ? s - m : s;
}

#define TAKEN(pos) (taken[(pos) >> 6] >> ((pos)&63) & 1)

uint32_t ft_lb_chash_table_size(size_t n, uint32_t min_size)
{
    uint64_t want = (uint64_t)n * MAGLEV_MIN_SLOTS_PER_ENDPOINT;
    if (want < min_size) want = min_size;
    size_t count = sizeof(MAGLEV_PRIMES) / sizeof(MAGLEV_PRIMES[0]);
    for (size_t i = 0; i < count; i++)
        if (MAGLEV_PRIMES[i] >= want) return MAGLEV_PRIMES[i];
    return MAGLEV_PRIMES[count - 1];
}

static void chash_fini(ft_lb *lb)
{
    chash_state *st = lb->impl;
    if (st == NULL) return;
    free(st->table);
    free(st);
}

static int chash_init(ft_lb *lb, const ft_lb_options *opts)
{
    chash_state *st = calloc(1, sizeof(*st));
    if (st == NULL) return FTRPC_ENOMEM;
    lb->impl = st;
    uint64_t max_weight = 0;
    for (size_t i = 0; i < lb->n; i++) {
        if (lb->eps[i].addr == NULL) return FTRPC_EINVAL;
        if (lb->eps[i].weight > max_weight) max_weight = lb->eps[i].weight;
    }
    if (lb->n == 0) return 0;
    uint32_t m = ft_lb_chash_table_size(lb->n, opts->chash_table_size);
    st->table = malloc((size_t)m * sizeof(uint32_t));
    fill_entry *fe = malloc(lb->n * sizeof(*fe));
    if (st->table == NULL || fe == NULL) {
        free(fe);
        return FTRPC_ENOMEM;
    }
    for (size_t i = 0; i < lb->n; i++) {
        const char *addr = lb->eps[i].addr;
        size_t len = strlen(addr);
        uint64_t h0 = ft_hash64(addr, len, 0);
        fe[i] = (fill_entry){.order = h0,
                             .index = (uint32_t)i,
                             .pos = (uint32_t)(h0 % m),
                             .skip = (uint32_t)(ft_hash64(addr, len, 1) % (m - 1) + 1),
                             .weight = lb->eps[i].weight};
    }
    qsort(fe, lb->n, sizeof(*fe), fill_order);
    /* Whether a slot is taken, one bit each (8 KiB at 65,537 slots: the probes of the fill, most
     * of which hit taken slots late in the fill, stay in L1 instead of walking the 256 KiB table)
     */
    uint64_t *taken = calloc((m + 63) / 64, sizeof(uint64_t));
    if (taken == NULL) {
        free(fe);
        return FTRPC_ENOMEM;
    }
    uint32_t filled = 0, stop = m - m / MAGLEV_TAIL;
    for (uint64_t round = 1; filled < stop; round++) {
        for (size_t k = 0; k < lb->n && filled < stop; k++) {
            fill_entry *e = &fe[k];
            if (round * e->weight < e->target) continue;
            e->target += max_weight;
            uint32_t pos = e->pos;
            while (TAKEN(pos))
                pos = add_mod(pos, e->skip, m);
            taken[pos >> 6] |= UINT64_C(1) << (pos & 63);
            st->table[pos] = e->index;
            e->pos = add_mod(pos, e->skip, m);
            filled++;
        }
    }
    /* the tail: each slot still free takes the owner of the next taken slot clockwise */
    uint32_t f = 0;
    while (!TAKEN(f))
        f++;
    uint32_t owner = st->table[f];
    for (uint32_t k = 1, pos = f; k < m; k++) {
        pos = pos == 0 ? m - 1 : pos - 1;
        if (TAKEN(pos))
            owner = st->table[pos];
        else
            st->table[pos] = owner;
    }
    free(taken);
    free(fe);
    st->m = m;
    return 0;
}

static int any_ok(const ft_lb *lb, const ft_lb_pick *req)
{
    for (size_t i = 0; i < lb->n; i++)
        if (ft_lb_ok(req, i)) return 1;
    return 0;
}

static int chash_select(ft_lb *lb, const ft_lb_pick *req, ft_rand *rng, size_t *out)
{
    const chash_state *st = lb->impl;
    uint64_t h = req->has_key ? req->key_hash : ft_rand_next(rng);
    uint32_t home = slot_of(h, st->m);
    size_t owner = st->table[home];
    if (ft_lb_ok(req, owner)) {
        *out = owner;
        return 0;
    }
    ft_rand probe;
    ft_rand_seed(&probe, h);
    for (int j = 0; j < PROBES; j++) {
        owner = st->table[slot_of(ft_rand_next(&probe), st->m)];
        if (ft_lb_ok(req, owner)) {
            *out = owner;
            return 0;
        }
    }
    if (!any_ok(lb, req)) return FTRPC_ENOENDPOINT;
    size_t refused = st->table[home]; /* neighbouring slots often share an owner: ask once */
    uint32_t pos = home;
    for (uint32_t k = 0; k < st->m; k++) {
        owner = st->table[pos];
        if (owner != refused) {
            if (ft_lb_ok(req, owner)) {
                *out = owner;
                return 0;
            }
            refused = owner;
        }
        if (++pos == st->m) pos = 0;
    }
    return FTRPC_ENOENDPOINT;
}

uint32_t ft_lb_chash_slots(const ft_lb *lb)
{
    const chash_state *st = lb->impl;
    return st->m;
}

const ft_lb_ops ft_lb_chash_ops = {
    .name = "chash",
    .init = chash_init,
    .fini = chash_fini,
    .select = chash_select,
};
