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
 * The rebuild's cost at 1,000 endpoints (M = 65,537; docs/load-balancing.md): about 6.5 M
 * instructions, more than half of them the probe loop. The fill's state is kept one array a field
 * in fill order, a round first lists the entries whose turn it is without a branch per entry, the
 * fill order is a radix sort, and the tail is filled a bitmap word at a time: 0.85 ms of CPU
 * against 1.05 ms before, on the same loaded machine.
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

/* An endpoint's place in the fill order: its address's hash (so the table depends on the set of
 * endpoints, never on the list order), then its index. */
typedef struct fill_key {
    uint64_t order;
    uint32_t index;
} fill_key;

/* Sorts k[0 .. n) by (order, index) in tmp's company (n more): an LSD radix sort of the top 32
 * bits of order, 11 bits a pass, stable (so equal orders keep the index order they came in), then
 * an insertion pass for the rare equal top halves. At 1,000 endpoints a seventh of the
 * instructions of the qsort it replaced, whose comparator call per comparison was 5 % of a
 * rebuild. */
static void sort_fill_keys(fill_key *k, fill_key *tmp, size_t n)
{
    fill_key *src = k, *dst = tmp;
    for (unsigned shift = 32; shift < 64; shift += 11) {
        uint32_t count[2049] = {0};
        for (size_t i = 0; i < n; i++)
            count[(src[i].order >> shift & 2047) + 1]++;
        for (size_t b = 1; b < 2049; b++)
            count[b] += count[b - 1];
        for (size_t i = 0; i < n; i++)
            dst[count[src[i].order >> shift & 2047]++] = src[i];
        fill_key *t = src;
        src = dst;
        dst = t;
    }
    /* three passes: the sorted keys are in tmp */
    for (size_t i = 0; i < n; i++) {
        fill_key x = src[i];
        size_t j = i;
        for (; j > 0 && k[j - 1].order > x.order; j--)
            k[j] = k[j - 1];
        k[j] = x;
    }
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
    /* The fill's state, one array a field in fill order: a round's scan reads only weights and
     * targets, a claim only its entry's pos and skip. */
    size_t n = lb->n;
    fill_key *keys = malloc(n * 2 * sizeof(*keys));
    uint64_t *weight = malloc(n * 2 * sizeof(uint64_t)), *target = weight + n;
    uint32_t *pos = malloc(n * 4 * sizeof(uint32_t)), *skip = pos + n, *index = skip + n,
             *turns = index + n;
    /* Whether a slot is taken, one bit each (8 KiB at 65,537 slots: the probes of the fill, most
     * of which hit taken slots late in the fill, stay in L1 instead of walking the 256 KiB table)
     */
    uint64_t *taken = calloc((m + 63) / 64, sizeof(uint64_t));
    uint32_t *table = st->table;
    if (table == NULL || keys == NULL || weight == NULL || pos == NULL || taken == NULL) {
        free(taken);
        free(pos);
        free(weight);
        free(keys);
        return FTRPC_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        keys[i] = (fill_key){.order = ft_hash64(lb->eps[i].addr, strlen(lb->eps[i].addr), 0),
                             .index = (uint32_t)i};
    sort_fill_keys(keys, keys + n, n);
    int uniform = 1;
    for (size_t k = 0; k < n; k++) {
        uint32_t i = keys[k].index;
        const char *addr = lb->eps[i].addr;
        index[k] = i;
        pos[k] = (uint32_t)(keys[k].order % m);
        skip[k] = (uint32_t)(ft_hash64(addr, strlen(addr), 1) % (m - 1) + 1);
        weight[k] = lb->eps[i].weight;
        target[k] = 0;
        turns[k] = (uint32_t)k;
        if (weight[k] != max_weight) uniform = 0;
    }
    /* Each round, first the list of the entries whose turn it is (no branch per entry: which of
     * them take a turn is as good as random, so a branch there was often mispredicted), then their
     * claims. With equal weights every entry takes every round. */
    uint32_t filled = 0, stop = m - m / MAGLEV_TAIL;
    for (uint64_t round = 1; filled < stop; round++) {
        size_t count = n;
        if (!uniform) {
            count = 0;
            for (uint32_t k = 0; k < n; k++) {
                turns[count] = k;
                count += round * weight[k] >= target[k];
            }
        }
        if (count > stop - filled) count = stop - filled;
        for (size_t j = 0; j < count; j++) {
            uint32_t k = turns[j], p = pos[k], step = skip[k];
            target[k] += max_weight;
            /* the probe loop, most of the fill's cost: it claims the slot it stops at (3-4 % less
             * time than a loop that only finds it, on the same instructions) */
            for (;;) {
                uint64_t *word = &taken[p >> 6], bit = UINT64_C(1) << (p & 63);
                if (!(*word & bit)) {
                    *word |= bit;
                    break;
                }
                p += step;
                p -= p >= m ? m : 0;
            }
            table[p] = index[k];
            pos[k] = add_mod(p, step, m);
        }
        filled += (uint32_t)count;
    }
    /* The tail: each slot still free takes the owner of the next taken slot clockwise. A word of
     * the bitmap at a time, from the top down; `owner` is the owner of the lowest taken slot above
     * the word. Most words are full and cost one test. */
    size_t words = (m + 63) / 64;
    uint32_t owner = 0;
    for (size_t w = 0; w < words; w++) /* the first taken slot clockwise from slot 0 */
        if (taken[w]) {
            owner = table[w * 64 + (size_t)__builtin_ctzll(taken[w])];
            break;
        }
    for (size_t w = words; w-- > 0;) {
        uint64_t t = taken[w], free_bits = ~t;
        if (w == words - 1 && m % 64) free_bits &= (UINT64_C(1) << (m % 64)) - 1; /* not slots */
        while (free_bits) {
            unsigned bit = 63 - (unsigned)__builtin_clzll(free_bits); /* highest free first */
            uint64_t above = bit == 63 ? 0 : t >> (bit + 1) << (bit + 1);
            uint32_t o = above ? table[w * 64 + (size_t)__builtin_ctzll(above)] : owner;
            table[w * 64 + bit] = o;
            free_bits &= ~(UINT64_C(1) << bit);
        }
        if (t) owner = table[w * 64 + (size_t)__builtin_ctzll(t)];
    }
    free(taken);
    free(pos);
    free(weight);
    free(keys);
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
