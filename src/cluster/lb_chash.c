/* "chash": consistent hashing on a ring of virtual nodes (Karger et al.; Ketama's layout).
 *
 * Endpoint i owns max(1, vnodes x weight_i / 100) points (vnodes default 160 per weight 100), point
 * k at ft_hash64(addr_i, len, seed = k). A key's hash goes to the first point at or after it,
 * wrapping at the top. Points depend only on the address and weight, never on the list order or the
 * other endpoints, so adding an endpoint only inserts its points: the keys that move are exactly
 * those now falling on the new points (about 1/(N+1) of them) and they all move to the new
 * endpoint; removing one moves only its own keys. Ties between equal point hashes (astronomically
 * rare) are broken by address so that every snapshot orders them alike.
 *
 * An unusable or excluded owner is skipped by walking clockwise to the next point of another owner,
 * so a key's retry and its failover are themselves consistent. When the first WALK_CHECK points are
 * all refused, one O(N) check establishes that some endpoint is acceptable before walking on (the
 * walk then ends; without it, "everything down" would cost a walk of the whole ring per pick).
 *
 * The search is O(1): a table indexed by the top `bits` bits of the hash gives the range of ring
 * positions in that slice (about one point each), which replaces ~17 cache-missing steps of a
 * binary search over a 160,000-point ring with one table read and a short scan. Building is O(M)
 * for M points (a counting sort on the same top bits): a ring rebuild is the one expensive
 * operation here (tens of ms at 1,000 endpoints), done when the endpoint set changes. */
#include "cluster/lb_impl.h"

#include <stdlib.h>
#include <string.h>

#include "base/hash.h"

#define WALK_CHECK 64

typedef struct chash_point {
    uint64_t hash;
    uint32_t owner;
} chash_point;

typedef struct chash_state {
    uint64_t *hashes; /* ring point hashes, ascending */
    uint32_t *owners; /* owners[p]: endpoint index of point p */
    size_t m;
    int shift;       /* 64 - bits */
    uint32_t *slice; /* slice[b] = first position with hash >> shift >= b; slice[1 << bits] = m */
} chash_state;

/* Ring order: by hash, then by address (so equal hashes order alike in every snapshot), then by
 * index (the same address twice in one snapshot). */
static int point_before(const ft_lb *lb, uint64_t ha, uint32_t oa, uint64_t hb, uint32_t ob)
{
    if (ha != hb) return ha < hb;
    int c = strcmp(lb->eps[oa].addr, lb->eps[ob].addr);
    return c != 0 ? c < 0 : oa < ob;
}

static void chash_fini(ft_lb *lb)
{
    chash_state *st = lb->impl;
    if (st == NULL) return;
    free(st->hashes);
    free(st->owners);
    free(st->slice);
    free(st);
}

static int chash_init(ft_lb *lb, const ft_lb_options *opts)
{
    uint64_t vnodes = opts->chash_vnodes ? opts->chash_vnodes : FT_LB_CHASH_DEFAULT_VNODES;
    chash_state *st = calloc(1, sizeof(*st));
    if (st == NULL) return FTRPC_ENOMEM;
    lb->impl = st;

    uint64_t m = 0;
    for (size_t i = 0; i < lb->n; i++) {
        if (lb->eps[i].addr == NULL) return FTRPC_EINVAL;
        uint64_t v = vnodes * lb->eps[i].weight / 100;
        m += v ? v : 1;
    }
    if (m > UINT32_MAX) return FTRPC_EINVAL;
    int bits = 1;
    while (bits < 24 && (UINT64_C(1) << bits) < m)
        bits++;
    st->shift = 64 - bits;
    size_t nslices = (size_t)1 << bits;

    chash_point *pts = malloc((m ? m : 1) * sizeof(*pts));
    uint32_t *cursor = malloc(nslices * sizeof(uint32_t));
    st->hashes = malloc((m ? m : 1) * sizeof(uint64_t));
    st->owners = malloc((m ? m : 1) * sizeof(uint32_t));
    st->slice = calloc(nslices + 1, sizeof(uint32_t));
    if (pts == NULL || cursor == NULL || st->hashes == NULL || st->owners == NULL ||
        st->slice == NULL) {
        free(pts);
        free(cursor);
        return FTRPC_ENOMEM;
    }
    size_t p = 0;
    for (size_t i = 0; i < lb->n; i++) {
        const char *addr = lb->eps[i].addr;
        size_t len = strlen(addr);
        uint64_t v = vnodes * lb->eps[i].weight / 100;
        for (uint64_t k = 0; k < (v ? v : 1); k++)
            pts[p++] = (chash_point){ft_hash64(addr, len, k), (uint32_t)i};
    }
    /* Counting sort on the top bits (the hashes are uniform, so about one point per slice), which
     * also yields the slice table; then insertion sort inside each slice. O(M), where qsort took
     * most of a 1,000-endpoint rebuild. */
    for (size_t q = 0; q < m; q++)
        st->slice[(pts[q].hash >> st->shift) + 1]++;
    for (size_t b = 0; b < nslices; b++) {
        st->slice[b + 1] += st->slice[b];
        cursor[b] = st->slice[b];
    }
    for (size_t q = 0; q < m; q++) {
        uint32_t at = cursor[pts[q].hash >> st->shift]++;
        st->hashes[at] = pts[q].hash;
        st->owners[at] = pts[q].owner;
    }
    free(pts);
    free(cursor);
    for (size_t b = 0; b < nslices; b++) {
        for (size_t q = st->slice[b] + 1; q < st->slice[b + 1]; q++) {
            uint64_t h = st->hashes[q];
            uint32_t o = st->owners[q];
            size_t j = q;
            for (; j > st->slice[b] && point_before(lb, h, o, st->hashes[j - 1], st->owners[j - 1]);
                 j--) {
                st->hashes[j] = st->hashes[j - 1];
                st->owners[j] = st->owners[j - 1];
            }
            st->hashes[j] = h;
            st->owners[j] = o;
        }
    }
    st->m = m;
    return 0;
}

/* The position of the first point whose hash is >= h (m when h is above every point). */
static size_t ring_lower_bound(const chash_state *st, uint64_t h)
{
    uint64_t b = h >> st->shift;
    size_t lo = st->slice[b], hi = st->slice[b + 1];
    while (lo < hi && st->hashes[lo] < h)
        lo++;
    return lo;
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
    size_t pos = ring_lower_bound(st, h);
    if (pos == st->m) pos = 0;
    size_t refused = SIZE_MAX; /* consecutive points often share an owner: ask once */
    for (size_t k = 0; k < st->m; k++) {
        size_t owner = st->owners[pos];
        if (owner != refused) {
            if (ft_lb_ok(req, owner)) {
                *out = owner;
                return 0;
            }
            refused = owner;
        }
        if (k == WALK_CHECK && !any_ok(lb, req)) return FTRPC_ENOENDPOINT;
        if (++pos == st->m) pos = 0;
    }
    return FTRPC_ENOENDPOINT;
}

const ft_lb_ops ft_lb_chash_ops = {
    .name = "chash",
    .init = chash_init,
    .fini = chash_fini,
    .select = chash_select,
};
