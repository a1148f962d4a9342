/* Load balancers (src/cluster/lb.h): exclusion and health honoured by every algorithm, the
 * distributions, consistent hashing's stability, p2c's avoidance of slow nodes, priority's return
 * to the primary and concurrency.
 *
 * Statistical bounds: every random test uses a seeded ft_rand, so it is deterministic; the bound it
 * checks is still the honest one. An endpoint's count over K independent picks with probability p
 * is binomial(K, p), and each count must lie within 5 standard deviations, sqrt(K p (1 - p)), of K
 * p (a correct balancer fails one such check with probability below 6e-7 per count, so a failure
 * means a bias, not bad luck, whatever the seed). Deterministic algorithms (rr, wrr) are held to
 * exact counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <math.h>
#include <pthread.h>
#include <cmocka.h>

#include "base/hash.h"
#include "cluster/lb.h"
#include "cluster/lb_impl.h"

#define MAX_EPS 64

static const char *const all_names[] = {"random", "rr",  "wrr",     "wrandom",
                                        "chash",  "p2c", "priority"};
#define N_NAMES (sizeof(all_names) / sizeof(all_names[0]))

/* A fixture: endpoints with addresses, weights and the figures p2c reads, plus a usable[] map. */
typedef struct fixture {
    ft_lb_endpoint eps[MAX_EPS];
    char addrs[MAX_EPS][48];
    _Atomic int64_t ewma[MAX_EPS];
    atomic_int inflight[MAX_EPS];
    unsigned char up[MAX_EPS];
    size_t n;
} fixture;

static fixture fx;

static void fixture_make(fixture *f, size_t n, const uint32_t *weights)
{
    memset(f, 0, sizeof(*f));
    f->n = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(f->addrs[i], sizeof(f->addrs[i]), "10.0.0.%zu:8000", i + 1);
        atomic_init(&f->ewma[i], 1000);
        atomic_init(&f->inflight[i], 0);
        f->up[i] = 1;
        f->eps[i] = (ft_lb_endpoint){
            .id = &f->eps[i],
            .addr = f->addrs[i],
            .weight = weights ? weights[i] : 0,
            .ewma_latency_us = &f->ewma[i],
            .inflight = &f->inflight[i],
        };
    }
}

static int is_up(void *arg, size_t index)
{
    const fixture *f = arg;
    return f->up[index];
}

static ft_lb *make_lb(const char *name, const fixture *f, const ft_lb_options *opts)
{
    ft_lb *lb = NULL;
    int rc = ft_lb_new(name, f->eps, f->n, opts, &lb);
    if (rc != 0) fail_msg("ft_lb_new(%s) = %d", name, rc);
    return lb;
}

/* A request over fx's health map with a seeded generator. */
static ft_lb_pick pick_req(ft_rand *rng)
{
    return (ft_lb_pick){.usable = is_up, .usable_arg = &fx, .rng = rng};
}

static size_t must_select(ft_lb *lb, const ft_lb_pick *req)
{
    size_t i = SIZE_MAX;
    int rc = ft_lb_select(lb, req, &i);
    if (rc != 0) fail_msg("%s: ft_lb_select = %d", ft_lb_name(lb), rc);
    assert_true(i < ft_lb_size(lb));
    return i;
}

/* counts[i] within 5 sd of binomial(total, p_i), p_i = share[i] / sum(share). */
static void assert_binomial(const char *what, const long *counts, const double *share, size_t n)
{
    long total = 0;
    double share_sum = 0;
    for (size_t i = 0; i < n; i++) {
        total += counts[i];
        share_sum += share[i];
    }
    for (size_t i = 0; i < n; i++) {
        double p = share[i] / share_sum;
        double mean = (double)total * p, sd = sqrt((double)total * p * (1 - p));
        if (fabs((double)counts[i] - mean) > 5 * sd + 1e-9)
            fail_msg("%s: endpoint %zu got %ld, expected %.1f +- %.1f (5 sd)", what, i, counts[i],
                     mean, 5 * sd);
    }
}

/* ---------------------------------------------------------------- creation */

static void unknown_or_bad_arguments_are_einval(void **state)
{
    fixture_make(&fx, 3, NULL);
    ft_lb *lb = NULL;
    assert_int_equal(ft_lb_new("fastest", fx.eps, fx.n, NULL, &lb), FTRPC_EINVAL);
    assert_int_equal(ft_lb_new(NULL, fx.eps, fx.n, NULL, &lb), FTRPC_EINVAL);
    assert_int_equal(ft_lb_new("rr", fx.eps, fx.n, NULL, NULL), FTRPC_EINVAL);
    assert_int_equal(ft_lb_new("rr", NULL, 2, NULL, &lb), FTRPC_EINVAL);
    fx.eps[1].weight = FT_LB_MAX_WEIGHT + 1;
    assert_int_equal(ft_lb_new("wrr", fx.eps, fx.n, NULL, &lb), FTRPC_EINVAL);
    fx.eps[1].weight = 0;
    fx.eps[2].addr = NULL;
    assert_int_equal(ft_lb_new("chash", fx.eps, fx.n, NULL, &lb), FTRPC_EINVAL);
    assert_null(lb);
    assert_false(ft_lb_name_valid("fastest"));
    assert_string_equal(ft_lb_default_name(), "p2c");
    for (size_t k = 0; k < N_NAMES; k++)
        assert_true(ft_lb_name_valid(all_names[k]));
    ft_lb_release(NULL);
}

static void snapshot_is_copied_with_default_weight(void **state)
{
    fixture_make(&fx, 2, (const uint32_t[]){0, 7});
    ft_lb *lb = make_lb("wrr", &fx, NULL);
    strcpy(fx.addrs[0], "changed");
    assert_string_equal(ft_lb_endpoint_at(lb, 0)->addr, "10.0.0.1:8000");
    assert_int_equal(ft_lb_endpoint_at(lb, 0)->weight, FT_LB_DEFAULT_WEIGHT);
    assert_int_equal(ft_lb_endpoint_at(lb, 1)->weight, 7);
    assert_ptr_equal(ft_lb_endpoint_at(lb, 1)->id, &fx.eps[1]);
    assert_null(ft_lb_endpoint_at(lb, 2));
    assert_int_equal(ft_lb_size(lb), 2);
    assert_string_equal(ft_lb_name(lb), "wrr");
    ft_lb_release(lb);
}

/* ------------------------------------------- every balancer: exclusion and health */

static void every_balancer_honors_exclusion_and_usability(void **state)
{
    for (size_t k = 0; k < N_NAMES; k++) {
        fixture_make(&fx, 8, (const uint32_t[]){100, 300, 100, 200, 100, 100, 50, 100});
        fx.up[1] = fx.up[5] = 0;
        const size_t excluded[] = {2, 3};
        ft_lb *lb = make_lb(all_names[k], &fx, NULL);
        ft_rand rng;
        ft_rand_seed(&rng, 1000 + k);
        ft_lb_pick req = pick_req(&rng);
        req.excluded = excluded;
        req.n_excluded = 2;
        long seen[8] = {0};
        for (int i = 0; i < 4000; i++) {
            req.key_hash = ft_hash64(&i, sizeof(i), 0);
            req.has_key = 1;
            seen[must_select(lb, &req)]++;
        }
        if (seen[1] || seen[2] || seen[3] || seen[5])
            fail_msg("%s picked an excluded or unusable endpoint", all_names[k]);
        if (strcmp(all_names[k], "priority") == 0) {
            assert_int_equal(seen[0], 4000);
        } else {
            for (size_t i = 0; i < 8; i++)
                if (fx.up[i] && i != 2 && i != 3 && seen[i] == 0)
                    fail_msg("%s never picked acceptable endpoint %zu", all_names[k], i);
        }
        ft_lb_release(lb);
    }
}

static void every_balancer_reports_no_endpoint_when_none_usable(void **state)
{
    for (size_t k = 0; k < N_NAMES; k++) {
        fixture_make(&fx, 5, NULL);
        memset(fx.up, 0, sizeof(fx.up));
        ft_lb *lb = make_lb(all_names[k], &fx, NULL);
        ft_rand rng;
        ft_rand_seed(&rng, 5);
        ft_lb_pick req = pick_req(&rng);
        size_t out = 77;
        assert_int_equal(ft_lb_select(lb, &req, &out), FTRPC_ENOENDPOINT);
        assert_int_equal(out, 77); /* out-parameters are written only on success */
        /* one comes back: every balancer finds it, even through the slow paths */
        fx.up[3] = 1;
        for (int i = 0; i < 50; i++) {
            req.key_hash = (uint64_t)i * UINT64_C(0x9E3779B97F4A7C15);
            req.has_key = i & 1;
            assert_int_equal(must_select(lb, &req), 3);
        }
        ft_lb_release(lb);
    }
}

static void excluded_fallback_only_when_allowed(void **state)
{
    for (size_t k = 0; k < N_NAMES; k++) {
        fixture_make(&fx, 6, NULL);
        memset(fx.up, 0, sizeof(fx.up));
        fx.up[1] = fx.up[4] = 1;
        const size_t excluded[] = {4, 1, 4};
        ft_lb *lb = make_lb(all_names[k], &fx, NULL);
        ft_rand rng;
        ft_rand_seed(&rng, 9);
        ft_lb_pick req = pick_req(&rng);
        req.excluded = excluded;
        req.n_excluded = 3;
        size_t out;
        assert_int_equal(ft_lb_select(lb, &req, &out), FTRPC_ENOENDPOINT);
        req.allow_excluded_fallback = 1;
        for (int i = 0; i < 20; i++) {
            size_t got = must_select(lb, &req);
            assert_true(got == 1 || got == 4);
        }
        /* the fallback never revives an unusable endpoint */
        fx.up[1] = fx.up[4] = 0;
        assert_int_equal(ft_lb_select(lb, &req, &out), FTRPC_ENOENDPOINT);
        ft_lb_release(lb);
    }
}

static void empty_snapshot_and_bad_requests(void **state)
{
    for (size_t k = 0; k < N_NAMES; k++) {
        ft_lb *lb = NULL;
        assert_int_equal(ft_lb_new(all_names[k], NULL, 0, NULL, &lb), 0);
        ft_lb_pick req = {0};
        size_t out;
        assert_int_equal(ft_lb_select(lb, &req, &out), FTRPC_ENOENDPOINT);
        size_t many[FT_LB_MAX_EXCLUDED + 1] = {0};
        req.excluded = many;
        req.n_excluded = FT_LB_MAX_EXCLUDED + 1;
        assert_int_equal(ft_lb_select(lb, &req, &out), FTRPC_EINVAL);
        req.excluded = NULL;
        req.n_excluded = 1;
        assert_int_equal(ft_lb_select(lb, &req, &out), FTRPC_EINVAL);
        assert_int_equal(ft_lb_select(lb, NULL, &out), FTRPC_EINVAL);
        ft_lb_release(lb);
    }
}

/* ---------------------------------------------------------------- distributions */

typedef struct spread_case {
    const char *name;
    int exact; /* deterministic algorithm: counts must equal the expected ones */
} spread_case;

static void unweighted_balancers_spread_evenly(void **state)
{
    static const spread_case cases[] = {{"random", 0}, {"rr", 1}, {"p2c", 0}, {"chash", 0}};
    enum { N = 10, PICKS = 100000 };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        fixture_make(&fx, N, NULL);
        ft_lb *lb = make_lb(cases[c].name, &fx, NULL);
        ft_rand rng;
        ft_rand_seed(&rng, 77);
        ft_lb_pick req = pick_req(&rng);
        long counts[N] = {0};
        double share[N];
        for (int i = 0; i < PICKS; i++)
            counts[must_select(lb, &req)]++;
        for (int i = 0; i < N; i++) {
            share[i] = 1;
            if (cases[c].exact) assert_int_equal(counts[i], PICKS / N);
        }
        if (strcmp(cases[c].name, "chash") != 0) {
            assert_binomial(cases[c].name, counts, share, N);
        } else {
            /* keyless chash draws a random ring point: an endpoint's share is its arc of the ring,
             * which with 160 points each is within about +-25 % of 1/N, not binomial-tight */
            for (int i = 0; i < N; i++)
                assert_true(counts[i] > PICKS / N * 0.7 && counts[i] < PICKS / N * 1.3);
        }
        ft_lb_release(lb);
    }
}

static void weighted_balancers_follow_weights(void **state)
{
    static const uint32_t weights[] = {100, 200, 300, 400, 50, 0 /* default 100 */};
    enum { N = 6, PICKS = 115000 }; /* 100 periods of wrr's schedule: total 1150, gcd 50 */
    const double share[N] = {100, 200, 300, 400, 50, 100};
    static const spread_case cases[] = {{"wrandom", 0}, {"wrr", 1}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        fixture_make(&fx, N, weights);
        ft_lb *lb = make_lb(cases[c].name, &fx, NULL);
        ft_rand rng;
        ft_rand_seed(&rng, 31);
        ft_lb_pick req = pick_req(&rng);
        long counts[N] = {0};
        for (int i = 0; i < PICKS; i++)
            counts[must_select(lb, &req)]++;
        if (cases[c].exact)
            for (int i = 0; i < N; i++)
                assert_int_equal(counts[i], (long)(PICKS * share[i] / 1150));
        assert_binomial(cases[c].name, counts, share, N);
        ft_lb_release(lb);
    }
}

static void wrandom_keeps_exact_odds_for_skewed_weights(void **state)
{
    /* the alias table's integer arithmetic must not lose the light endpoints next to a heavy one */
    static const uint32_t weights[] = {1, FT_LB_MAX_WEIGHT, 7, 3, 500, 1};
    enum { N = 6, PICKS = 400000 };
    double share[N];
    for (int i = 0; i < N; i++)
        share[i] = weights[i];
    fixture_make(&fx, N, weights);
    ft_lb *lb = make_lb("wrandom", &fx, NULL);
    ft_rand rng;
    ft_rand_seed(&rng, 5);
    ft_lb_pick req = pick_req(&rng);
    long counts[N] = {0};
    for (int i = 0; i < PICKS; i++)
        counts[must_select(lb, &req)]++;
    assert_binomial("wrandom skewed", counts, share, N);
    assert_true(counts[0] > 0 && counts[5] > 0);
    ft_lb_release(lb);
}

static void wrr_follows_nginx_smooth_sequence_in_both_modes(void **state)
{
    /* nginx's documented example: weights {5, 1, 1} give a a b a c a a */
    static const size_t want[] = {0, 0, 1, 0, 2, 0, 0};
    for (int locked = 0; locked <= 1; locked++) {
        fixture_make(&fx, 3, (const uint32_t[]){5, 1, 1});
        ft_lb_options opts = {.wrr_max_schedule = locked ? 2 : 0};
        ft_lb *lb = make_lb("wrr", &fx, &opts);
        assert_int_equal(ft_lb_wrr_is_scheduled(lb), !locked);
        ft_lb_pick req = pick_req(NULL);
        for (int round = 0; round < 3; round++)
            for (size_t s = 0; s < 7; s++)
                assert_int_equal(must_select(lb, &req), want[s]);
        ft_lb_release(lb);
    }
}

/* The schedule is built per group of equal weights (O(P x G), lb_wrr.c), so a long period over
 * many endpoints is still precomputed: 200 endpoints, P = 1,000,001 (P x N = 2 x 10^8 steps, which
 * nginx's O(N) step cannot afford at build time). Its picks must be nginx's sequence, which the
 * locked mode runs step by step. */
static void wrr_schedules_long_periods_over_many_endpoints_exactly(void **state)
{
    enum { N = 200, PICKS = 30000 };
    static ft_lb_endpoint eps[N];
    for (size_t i = 0; i < N; i++)
        eps[i] = (ft_lb_endpoint){.weight = i == 77 ? 5001 : 5000};
    ft_lb *scheduled = NULL, *locked = NULL;
    assert_int_equal(ft_lb_new("wrr", eps, N, NULL, &scheduled), 0);
    ft_lb_options lo = {.wrr_max_schedule = 2};
    assert_int_equal(ft_lb_new("wrr", eps, N, &lo, &locked), 0);
    assert_int_equal(ft_lb_wrr_is_scheduled(scheduled), 1);
    assert_int_equal(ft_lb_wrr_is_scheduled(locked), 0);
    ft_lb_pick req = {0};
    for (int k = 0; k < PICKS; k++)
        assert_int_equal(must_select(scheduled, &req), must_select(locked, &req));
    ft_lb_release(scheduled);
    ft_lb_release(locked);

    /* and mixed weights, several of each, both modes step for step over two periods */
    static const uint32_t w[] = {3, 1, 2, 3, 3, 1, 7, 2, 2, 3, 1, 7, 4};
    enum { M = sizeof w / sizeof w[0] };
    for (size_t i = 0; i < M; i++)
        eps[i] = (ft_lb_endpoint){.weight = w[i]};
    assert_int_equal(ft_lb_new("wrr", eps, M, NULL, &scheduled), 0);
    assert_int_equal(ft_lb_new("wrr", eps, M, &lo, &locked), 0);
    for (int k = 0; k < 2 * 39; k++)
        assert_int_equal(must_select(scheduled, &req), must_select(locked, &req));
    ft_lb_release(scheduled);
    ft_lb_release(locked);
}

static void wrr_redistributes_an_unusable_endpoints_share(void **state)
{
    for (int locked = 0; locked <= 1; locked++) {
        fixture_make(&fx, 4, (const uint32_t[]){100, 100, 200, 400});
        fx.up[3] = 0;
        ft_lb_options opts = {.wrr_max_schedule = locked ? 2 : 0};
        ft_lb *lb = make_lb("wrr", &fx, &opts);
        ft_rand rng;
        ft_rand_seed(&rng, 3);
        ft_lb_pick req = pick_req(&rng);
        long counts[4] = {0};
        for (int i = 0; i < 40000; i++)
            counts[must_select(lb, &req)]++;
        /* the down node's slots drop out of the sequence: the others keep exactly 1 : 1 : 2 */
        assert_int_equal(counts[0], 10000);
        assert_int_equal(counts[1], 10000);
        assert_int_equal(counts[2], 20000);
        assert_int_equal(counts[3], 0);
        ft_lb_release(lb);
    }
}

typedef struct suspended_case {
    const char *name;
    size_t n;
    uint32_t weights[5]; /* all 0: equal (the default weight) */
    unsigned char down[5];
} suspended_case;

/* A suspended endpoint's share is spread over the healthy ones in proportion to their own shares
 * (as Envoy's and Finagle's round robin), never handed to whichever endpoint follows it in the
 * list: with one endpoint of three down, "rr" used to give the one after it two thirds of the
 * calls, which invites a cascade. Acceptance: every healthy endpoint within 10 % of its share. */
static void rr_and_wrr_spread_a_suspended_endpoints_share_evenly(void **state)
{
    static const suspended_case cases[] = {
        {"rr", 3, {0}, {0, 0, 1}},
        {"rr", 4, {0}, {0, 1, 0, 0}},
        {"rr", 4, {0}, {0, 1, 1, 0}},
        {"rr", 5, {0}, {1, 0, 1, 0, 0}},
        {"wrr", 4, {0}, {0, 1, 0, 0}},
        {"wrr", 4, {0}, {0, 1, 1, 0}},
        {"wrr", 4, {1, 2, 3, 3}, {0, 0, 0, 1}},
        {"wrr", 3, {1, 2, 3}, {0, 1, 0}},
    };
    enum { PICKS = 30000 };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const suspended_case *sc = &cases[c];
        fixture_make(&fx, sc->n, sc->weights);
        for (size_t i = 0; i < sc->n; i++)
            fx.up[i] = !sc->down[i];
        ft_lb *lb = make_lb(sc->name, &fx, NULL);
        ft_rand rng;
        ft_rand_seed(&rng, 19);
        ft_lb_pick req = pick_req(&rng);
        long counts[5] = {0};
        for (int k = 0; k < PICKS; k++)
            counts[must_select(lb, &req)]++;
        double healthy_weight = 0;
        for (size_t i = 0; i < sc->n; i++)
            if (fx.up[i]) healthy_weight += ft_lb_endpoint_at(lb, i)->weight;
        for (size_t i = 0; i < sc->n; i++) {
            double weight = fx.up[i] ? ft_lb_endpoint_at(lb, i)->weight : 0;
            double expected = PICKS * weight / healthy_weight;
            if (fabs((double)counts[i] - expected) > 0.1 * expected)
                fail_msg("%s, case %zu: endpoint %zu got %ld of %d picks, expected %.0f +- 10 %%",
                         sc->name, c, i, counts[i], PICKS, expected);
        }
        ft_lb_release(lb);
    }
}

/* ---------------------------------------------------------------- consistent hash */

enum { CH_KEYS = 10000 };

/* For each key k (hashed from its number), the address chosen by a "chash" over the first n fixture
 * endpoints, skipping endpoint `skip` (SIZE_MAX: none) when building the snapshot. */
static void chash_map(size_t n, size_t skip, const char **owner_addr)
{
    ft_lb_endpoint eps[MAX_EPS];
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (i != skip) eps[m++] = fx.eps[i];
    ft_lb *lb = NULL;
    assert_int_equal(ft_lb_new("chash", eps, m, NULL, &lb), 0);
    ft_lb_pick req = {.has_key = 1};
    for (int k = 0; k < CH_KEYS; k++) {
        char key[32];
        int len = snprintf(key, sizeof(key), "user-%d", k);
        req.key_hash = ft_hash64(key, (size_t)len, 0);
        size_t i = must_select(lb, &req);
        /* addresses point into the fixture, which outlives the balancer */
        owner_addr[k] = eps[i].addr;
        assert_string_equal(owner_addr[k], ft_lb_endpoint_at(lb, i)->addr);
    }
    ft_lb_release(lb);
}

/* The Maglev table as the paper writes it (permutation[i][j] = (offset_i + j x skip_i) mod M, one
 * turn each in round-robin order), weighted by Envoy's rule, filled in the order of the addresses'
 * hashes until M / 64 slots are left, which take the next taken slot's owner: an independent,
 * plain reading of the placement documented in lb_chash.c. */
static void maglev_reference(const ft_lb *lb, uint32_t m, uint32_t *table)
{
    size_t n = ft_lb_size(lb);
    size_t order[MAX_EPS];
    uint64_t offset[MAX_EPS], skip[MAX_EPS], next[MAX_EPS] = {0}, target[MAX_EPS] = {0}, wmax = 0;
    for (size_t i = 0; i < n; i++) {
        const char *addr = ft_lb_endpoint_at(lb, i)->addr;
        offset[i] = ft_hash64(addr, strlen(addr), 0) % m;
        skip[i] = ft_hash64(addr, strlen(addr), 1) % (m - 1) + 1;
        if (ft_lb_endpoint_at(lb, i)->weight > wmax) wmax = ft_lb_endpoint_at(lb, i)->weight;
        order[i] = i;
    }
    for (size_t i = 1; i < n; i++) /* insertion sort by the address hash */
        for (size_t j = i; j > 0; j--) {
            const char *x = ft_lb_endpoint_at(lb, order[j - 1])->addr;
            const char *y = ft_lb_endpoint_at(lb, order[j])->addr;
            if (ft_hash64(x, strlen(x), 0) <= ft_hash64(y, strlen(y), 0)) break;
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (uint32_t s = 0; s < m; s++)
        table[s] = UINT32_MAX;
    uint32_t filled = 0, stop = m - m / 64;
    for (uint64_t round = 1; filled < stop; round++)
        for (size_t k = 0; k < n && filled < stop; k++) {
            size_t i = order[k];
            if (round * ft_lb_endpoint_at(lb, i)->weight < target[i]) continue;
            target[i] += wmax;
            uint64_t c;
            do
                c = (offset[i] + next[i]++ * skip[i]) % m;
            while (table[c] != UINT32_MAX);
            table[c] = (uint32_t)i;
            filled++;
        }
    /* the last 1/64 of the slots: the owner of the next taken slot clockwise */
    static uint32_t tail[65537 * 4];
    for (uint32_t s = 0; s < m; s++) {
        uint32_t t = s;
        while (table[t] == UINT32_MAX)
            t = (t + 1) % m;
        tail[s] = table[t];
    }
    memcpy(table, tail, m * sizeof *table);
}

/* Every slot of the table against the reference, for weighted endpoints (each round lists whose
 * turn it is) and equal ones (every entry takes every round), and slots in proportion to weight. */
static void chash_picks_the_maglev_slot_of_the_key(void **state)
{
    (void)state;
    static const uint32_t weights[][10] = {{100, 100, 50, 200, 100, 100, 100, 100, 100, 1},
                                           {7, 7, 7, 7, 7, 7, 7, 7, 7, 7}};
    for (size_t c = 0; c < sizeof(weights) / sizeof(weights[0]); c++) {
        fixture_make(&fx, 10, weights[c]);
        ft_lb *lb = make_lb("chash", &fx, NULL);
        uint32_t m = ft_lb_chash_slots(lb);
        assert_int_equal(m, 65537); /* Envoy's and the paper's default */
        static uint32_t table[65537];
        maglev_reference(lb, m, table);
        ft_lb_pick req = pick_req(NULL);
        req.has_key = 1;
        long slots[10] = {0}, total = 0;
        for (uint32_t s = 0; s < m; s++) {
            slots[table[s]]++;
            /* the smallest key of slot s */
            req.key_hash = (uint64_t)((((unsigned __int128)s << 64) + m - 1) / m);
            assert_int_equal(must_select(lb, &req), table[s]);
        }
        req.key_hash = UINT64_MAX;
        assert_int_equal(must_select(lb, &req), table[m - 1]);
        for (size_t i = 0; i < 10; i++)
            total += ft_lb_endpoint_at(lb, i)->weight;
        /* slots in proportion to weight, to within 3 % (the tail's 1/64 spreads by chance) */
        for (size_t i = 0; i < 10; i++) {
            double want = (double)m * ft_lb_endpoint_at(lb, i)->weight / (double)total;
            if (fabs((double)slots[i] - want) > want * 0.03 + 2)
                fail_msg("endpoint %zu (weight %u) holds %ld slots, expected %.0f", i,
                         ft_lb_endpoint_at(lb, i)->weight, slots[i], want);
        }
        ft_lb_release(lb);
    }
}

static void chash_table_grows_with_the_endpoints_and_option(void **state)
{
    assert_int_equal(ft_lb_chash_table_size(1, 0), 65537);
    assert_int_equal(ft_lb_chash_table_size(1024, 0), 65537);
    assert_int_equal(ft_lb_chash_table_size(1025, 0), 131071);
    assert_int_equal(ft_lb_chash_table_size(10, 70000), 131071);
    assert_int_equal(ft_lb_chash_table_size(1000000, 0), 16777213);
    fixture_make(&fx, 3, NULL);
    ft_lb_options o = {.chash_table_size = 200000};
    ft_lb *lb = make_lb("chash", &fx, &o);
    assert_int_equal(ft_lb_chash_slots(lb), 262139);
    ft_lb_release(lb);
}

static void chash_does_not_depend_on_list_order(void **state)
{
    fixture_make(&fx, 10, (const uint32_t[]){100, 300, 100, 200, 100, 100, 100, 100, 100, 50});
    ft_lb *a = make_lb("chash", &fx, NULL);
    ft_lb_endpoint rev[10];
    for (size_t i = 0; i < 10; i++)
        rev[i] = fx.eps[9 - i];
    ft_lb *b = NULL;
    assert_int_equal(ft_lb_new("chash", rev, 10, NULL, &b), 0);
    ft_lb_pick req = {.has_key = 1};
    for (int k = 0; k < 5000; k++) {
        req.key_hash = ft_hash64(&k, sizeof k, 0);
        assert_string_equal(ft_lb_endpoint_at(a, must_select(a, &req))->addr,
                            ft_lb_endpoint_at(b, must_select(b, &req))->addr);
    }
    ft_lb_release(a);
    ft_lb_release(b);
}

static void chash_same_key_same_endpoint(void **state)
{
    fixture_make(&fx, 10, NULL);
    static const char *a[CH_KEYS], *b[CH_KEYS];
    chash_map(10, SIZE_MAX, a);
    chash_map(10, SIZE_MAX, b);
    long per[10] = {0};
    for (int k = 0; k < CH_KEYS; k++) {
        assert_ptr_equal(a[k], b[k]);
        per[(a[k] - fx.addrs[0]) / (ptrdiff_t)sizeof(fx.addrs[0])]++;
    }
    for (int i = 0; i < 10; i++)
        assert_true(per[i] > CH_KEYS / 10 / 2); /* every node owns a fair part of the keys */
}

/* Maglev's disruption (the paper, section 5.3; lb_chash.c): a node that joins takes about
 * 1/(N+1) of the keys, and the fill order it shifts moves a small share between the other nodes,
 * where a ring of virtual nodes moved none. */
static void chash_adding_a_node_moves_about_one_in_n_keys_mostly_to_it(void **state)
{
    fixture_make(&fx, 11, NULL);
    static const char *before[CH_KEYS], *after[CH_KEYS];
    chash_map(10, SIZE_MAX, before);
    chash_map(11, SIZE_MAX, after);
    long to_new = 0, between_others = 0;
    for (int k = 0; k < CH_KEYS; k++) {
        if (before[k] == after[k]) continue;
        if (after[k] == fx.addrs[10])
            to_new++;
        else
            between_others++;
    }
    double expect = CH_KEYS / 11.0; /* 909, binomial: 5 sd = 144 */
    if (to_new < expect - 144 || to_new > expect + 144)
        fail_msg("adding 1 node to 10 gave it %ld keys, expected about %.0f", to_new, expect);
    fprintf(stderr, "chash: adding 1 node to 10 moved %ld keys to it, %ld between the others\n",
            to_new, between_others);
    if (between_others > CH_KEYS / 100)
        fail_msg("adding 1 node to 10 moved %ld keys between the others (Maglev: under 1 %%)",
                 between_others);
}

static void chash_removing_a_node_moves_its_keys_and_few_others(void **state)
{
    fixture_make(&fx, 10, NULL);
    static const char *before[CH_KEYS], *after[CH_KEYS];
    chash_map(10, SIZE_MAX, before);
    chash_map(10, 4, after);
    long moved = 0, others = 0;
    for (int k = 0; k < CH_KEYS; k++) {
        if (before[k] == fx.addrs[4]) {
            moved++;
            assert_ptr_not_equal(after[k], fx.addrs[4]);
        } else if (after[k] != before[k]) {
            others++;
        }
    }
    fprintf(stderr, "chash: removing 1 node of 10 moved its %ld keys and %ld others\n", moved,
            others);
    assert_true(moved > 0);
    if (others > CH_KEYS / 100)
        fail_msg("removing 1 node of 10 moved %ld other keys (Maglev: under 1 %%)", others);
}

static void chash_failover_is_consistent_and_returns(void **state)
{
    fixture_make(&fx, 10, NULL);
    ft_lb *lb = make_lb("chash", &fx, NULL);
    for (int k = 0; k < 200; k++) {
        ft_lb_pick req = pick_req(NULL);
        req.has_key = 1;
        req.key_hash = ft_hash64(&k, sizeof(k), 0);
        size_t home = must_select(lb, &req);
        /* a retry excluding home goes to one next node, the same on every retry of that key */
        req.excluded = &home;
        req.n_excluded = 1;
        size_t next = must_select(lb, &req);
        assert_true(next != home);
        assert_int_equal(must_select(lb, &req), next);
        /* home down: same as excluded; home back: the key goes home again */
        req.n_excluded = 0;
        fx.up[home] = 0;
        assert_int_equal(must_select(lb, &req), next);
        fx.up[home] = 1;
        assert_int_equal(must_select(lb, &req), home);
    }
    ft_lb_release(lb);
}

static void chash_weight_scales_the_share_of_keys(void **state)
{
    fixture_make(&fx, 4, (const uint32_t[]){100, 100, 100, 300});
    ft_lb *lb = make_lb("chash", &fx, NULL);
    long counts[4] = {0};
    ft_lb_pick req = pick_req(NULL);
    req.has_key = 1;
    for (int k = 0; k < 60000; k++) {
        req.key_hash = ft_hash64(&k, sizeof(k), 0);
        counts[must_select(lb, &req)]++;
    }
    /* expected 50 % for the weight-300 node; ring arcs wander by a few percent */
    assert_true(counts[3] > 60000 * 0.42 && counts[3] < 60000 * 0.58);
    ft_lb_release(lb);
}

/* ---------------------------------------------------------------- p2c */

typedef struct p2c_case {
    const char *what;
    int64_t ewma_slow; /* ewma of endpoint 3 (others 1000 us) */
    int inflight_slow; /* in-flight of endpoint 3 (others 0) */
    double max_share;  /* endpoint 3's share must stay below max_share / N */
} p2c_case;

/* A node whose one slow answer raised its figure, and that was never picked since, is picked
 * again once that figure has decayed (Finagle's PeakEwma decays at read time): without the decay
 * it would lose every draw against the others forever, and no new sample could lower it. */
static void p2c_decays_a_stale_figure_so_a_node_once_slow_is_picked_again(void **state)
{
    (void)state;
    enum { N = 3, PICKS = 30000 };
    const int64_t decay_ns = 10 * INT64_C(1000000000); /* the health module's default, 10 s */
    _Atomic int64_t stamp[N];
    fixture_make(&fx, N, NULL);
    for (int i = 0; i < N; i++) {
        atomic_init(&stamp[i], 0);
        fx.eps[i].ewma_stamp_ns = &stamp[i];
        fx.eps[i].ewma_decay_ns = decay_ns;
        atomic_store(&fx.inflight[i], 2); /* the others are busy */
    }
    atomic_store(&fx.ewma[0], 2000000); /* one 2 s answer at t = 0 ... */
    atomic_store(&fx.inflight[0], 0);   /* ... and idle since */
    ft_lb *lb = make_lb("p2c", &fx, NULL);
    ft_rand rng;
    ft_rand_seed(&rng, 5);
    ft_lb_pick req = pick_req(&rng);
    const int64_t later = 120 * INT64_C(1000000000); /* 2 min on; the others sampled just now */
    for (int i = 1; i < N; i++)
        atomic_store(&stamp[i], later);
    long picked0 = 0;
    req.now_ns = 0; /* no clock: the figure read as it is: node 0 always loses */
    for (int i = 0; i < PICKS; i++)
        picked0 += must_select(lb, &req) == 0;
    assert_int_equal(picked0, 0);
    req.now_ns = later; /* 2 s x e^-12 = 12 us, below the others' 1000 us x 3 */
    picked0 = 0;
    for (int i = 0; i < PICKS; i++)
        picked0 += must_select(lb, &req) == 0;
    if (picked0 < PICKS / 2)
        fail_msg("p2c: the decayed node got %ld of %d picks (expected every draw it is in)",
                 picked0, PICKS);
    ft_lb_release(lb);
}

/* The client counts an endpoint's requests in flight per IO loop (inflight_shards counters,
 * inflight_stride bytes apart): p2c must weigh their sum, not the first loop's count. */
static void p2c_sums_the_shards_of_an_inflight_figure(void **state)
{
    (void)state;
    enum { N = 2, SHARDS = 3, PICKS = 20000 };
    struct shard {
        atomic_int n;
        char pad[60];
    } counts[N][SHARDS];
    memset(counts, 0, sizeof counts);
    fixture_make(&fx, N, NULL);
    for (int i = 0; i < N; i++) {
        fx.eps[i].inflight = &counts[i][0].n;
        fx.eps[i].inflight_shards = SHARDS;
        fx.eps[i].inflight_stride = sizeof(struct shard);
    }
    /* node 0: 1 in flight on the first loop and 40 on the last; node 1: 2 on the first */
    atomic_store(&counts[0][0].n, 1);
    atomic_store(&counts[0][SHARDS - 1].n, 40);
    atomic_store(&counts[1][0].n, 2);
    ft_lb *lb = make_lb("p2c", &fx, NULL);
    ft_rand rng;
    ft_rand_seed(&rng, 3);
    ft_lb_pick req = pick_req(&rng);
    long picked0 = 0;
    for (int i = 0; i < PICKS; i++)
        picked0 += must_select(lb, &req) == 0;
    /* both drawn: node 1 (cost 3 x ewma) beats node 0 (42 x); node 0 only when drawn twice */
    if (picked0 > PICKS / 3)
        fail_msg("p2c: the node with 41 in flight got %ld of %d picks", picked0, PICKS);
    ft_lb_release(lb);
}

static void p2c_sends_clearly_less_to_a_costly_node(void **state)
{
    static const p2c_case cases[] = {
        {"ewma 10x the others", 10000, 0, 0.25},
        {"50 requests in flight", 1000, 50, 0.25},
        {"unmeasured with requests in flight", 0, 3, 0.25},
    };
    enum { N = 10, PICKS = 100000 };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        fixture_make(&fx, N, NULL);
        atomic_store(&fx.ewma[3], cases[c].ewma_slow);
        atomic_store(&fx.inflight[3], cases[c].inflight_slow);
        ft_lb *lb = make_lb("p2c", &fx, NULL);
        ft_rand rng;
        ft_rand_seed(&rng, 11);
        ft_lb_pick req = pick_req(&rng);
        long counts[N] = {0};
        for (int i = 0; i < PICKS; i++)
            counts[must_select(lb, &req)]++;
        if (counts[3] >= PICKS / N * cases[c].max_share)
            fail_msg("p2c, %s: the costly node got %ld of %d picks", cases[c].what, counts[3],
                     PICKS);
        /* the others share the rest evenly */
        double share[N - 1];
        long rest[N - 1];
        for (int i = 0, j = 0; i < N; i++)
            if (i != 3) {
                rest[j] = counts[i];
                share[j++] = 1;
            }
        assert_binomial("p2c others", rest, share, N - 1);
        ft_lb_release(lb);
    }
}

typedef struct p2c_failure_case {
    const char *what;
    int64_t ewma;                /* of endpoint 3; the others 1000 us with 3 requests in flight */
    int64_t failure_ppm;         /* of endpoint 3; the others 0 */
    double min_share, max_share; /* endpoint 3's share, in fair shares (1/N) */
} p2c_failure_case;

/* Issue #20: a refused connect takes microseconds, so a dead node's latency figure was the lowest
 * and p2c sent it the most calls (1,000 endpoints, 1 alive: 1 call in 210,614 got through). The
 * failure ratio adds up to 1 s to the cost: a node failing fast loses its draws, while one
 * failure among a busy node's many successes changes nothing. */
static void p2c_failures_weigh_in_the_cost_so_a_fast_failure_attracts_no_load(void **state)
{
    (void)state;
    static const p2c_failure_case cases[] = {
        {"every attempt refused in 20 us", 20, 1000000, 0, 0.25},
        {"one attempt in ten failing in 20 us", 20, 100000, 0, 0.25},
        {"unmeasured, every attempt failed", 0, 1000000, 0, 0.25},
        {"fast, one failure in 100,000", 20, 10, 1.5, 2.5}, /* in every draw it is in */
    };
    enum { N = 10, PICKS = 100000 };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        _Atomic int64_t failures[N];
        fixture_make(&fx, N, NULL);
        for (int i = 0; i < N; i++) {
            atomic_init(&failures[i], 0);
            fx.eps[i].failure_ppm = &failures[i];
            atomic_store(&fx.inflight[i], 3);
        }
        atomic_store(&fx.ewma[3], cases[c].ewma);
        atomic_store(&fx.inflight[3], 0);
        atomic_store(&failures[3], cases[c].failure_ppm);
        ft_lb *lb = make_lb("p2c", &fx, NULL);
        ft_rand rng;
        ft_rand_seed(&rng, 17);
        ft_lb_pick req = pick_req(&rng);
        long counts[N] = {0};
        for (int i = 0; i < PICKS; i++)
            counts[must_select(lb, &req)]++;
        double share = (double)counts[3] / (PICKS / N);
        print_message("p2c, %s: %ld of %d picks (%.2f fair shares)\n", cases[c].what, counts[3],
                      PICKS, share);
        if (share < cases[c].min_share || share >= cases[c].max_share)
            fail_msg("p2c, %s: %.2f fair shares, expected [%.2f, %.2f)", cases[c].what, share,
                     cases[c].min_share, cases[c].max_share);
        ft_lb_release(lb);
    }
}

static void p2c_keeps_some_traffic_on_slow_nodes_when_two_meet(void **state)
{
    /* half the nodes slow: two slow ones meet with probability ~ (1/2)(4/9), so the slow half keeps
     * a trickle (its EWMA can recover) while the fast half takes most */
    enum { N = 10, PICKS = 100000 };
    fixture_make(&fx, N, NULL);
    for (int i = 0; i < N / 2; i++)
        atomic_store(&fx.ewma[i], 8000);
    ft_lb *lb = make_lb("p2c", &fx, NULL);
    ft_rand rng;
    ft_rand_seed(&rng, 12);
    ft_lb_pick req = pick_req(&rng);
    long slow = 0;
    for (int i = 0; i < PICKS; i++)
        slow += must_select(lb, &req) < N / 2;
    double p = (5.0 / 10) * (4.0 / 9); /* both draws slow */
    double sd = sqrt(PICKS * p * (1 - p));
    assert_true(fabs((double)slow - PICKS * p) <= 5 * sd);
    ft_lb_release(lb);
}

/* ---------------------------------------------------------------- priority */

static void priority_returns_to_primary_as_soon_as_usable(void **state)
{
    fixture_make(&fx, 4, NULL);
    ft_lb *lb = make_lb("priority", &fx, NULL);
    ft_lb_pick req = pick_req(NULL);
    assert_int_equal(must_select(lb, &req), 0);
    fx.up[0] = 0;
    assert_int_equal(must_select(lb, &req), 1);
    fx.up[1] = 0;
    assert_int_equal(must_select(lb, &req), 2);
    fx.up[0] = 1; /* primary back: the very next pick goes to it */
    assert_int_equal(must_select(lb, &req), 0);
    size_t tried = 0;
    req.excluded = &tried;
    req.n_excluded = 1;
    assert_int_equal(must_select(lb, &req), 2); /* a retry goes down the list */
    ft_lb_release(lb);
}

/* Sticky (WSO2 dynamic="false"): traffic stays on the endpoint failed over to after the primary
 * is back, moves only when that one is unusable, and a retry that excludes it does not move it. */
static void priority_sticky_stays_on_the_endpoint_failed_over_to(void **state)
{
    fixture_make(&fx, 3, NULL);
    ft_lb_options o = {.priority_sticky = 1};
    ft_lb *lb = make_lb("priority", &fx, &o);
    ft_lb_pick req = pick_req(NULL);
    assert_int_equal(must_select(lb, &req), 0);
    fx.up[0] = 0;
    assert_int_equal(must_select(lb, &req), 1);
    fx.up[0] = 1; /* primary back: traffic stays on 1 */
    for (int i = 0; i < 10; i++)
        assert_int_equal(must_select(lb, &req), 1);
    size_t tried = 1;
    req.excluded = &tried;
    req.n_excluded = 1;
    assert_int_equal(must_select(lb, &req), 0); /* a retry goes elsewhere, once */
    req.n_excluded = 0;
    assert_int_equal(must_select(lb, &req), 1);
    fx.up[1] = 0; /* the one stuck to fails: the first usable in list order */
    assert_int_equal(must_select(lb, &req), 0);
    fx.up[1] = 1;
    assert_int_equal(must_select(lb, &req), 0);
    ft_lb_release(lb);
    /* not sticky (the default): back to the primary at once */
    fixture_make(&fx, 3, NULL);
    lb = make_lb("priority", &fx, NULL);
    fx.up[0] = 0;
    assert_int_equal(must_select(lb, &req), 1);
    fx.up[0] = 1;
    assert_int_equal(must_select(lb, &req), 0);
    ft_lb_release(lb);
}

/* "rr" turns once per call: a backup (or retry) of every call, picked with the call's endpoints
 * excluded, takes no turn of the rotation of first attempts, which still rotate over every
 * endpoint. Before the fix the backup took a ticket of the same counter, and with two endpoints
 * every first attempt landed on endpoint 0. */
static void rr_retries_and_backups_take_no_turn(void **state)
{
    enum { CALLS = 300 };
    for (size_t n = 2; n <= 3; n++) {
        fixture_make(&fx, n, NULL);
        ft_lb *lb = make_lb("rr", &fx, NULL);
        long first[3] = {0};
        for (int call = 0; call < CALLS; call++) {
            ft_lb_pick req = pick_req(NULL);
            size_t tried[2];
            tried[0] = must_select(lb, &req);
            assert_int_equal(tried[0], (size_t)call % n); /* the rotation, undisturbed */
            first[tried[0]]++;
            req.excluded = tried;
            req.n_excluded = 1;
            tried[1] = must_select(lb, &req); /* the backup */
            assert_int_not_equal(tried[1], tried[0]);
            if (n == 3) {
                req.n_excluded = 2; /* and a retry after both: the one left */
                assert_int_equal(must_select(lb, &req), 3 - tried[0] - tried[1]);
            }
        }
        for (size_t e = 0; e < n; e++)
            assert_int_equal(first[e], CALLS / (long)n);
        ft_lb_release(lb);
    }
}

/* The later picks rotate among themselves: when one endpoint of three fails every call, the
 * retries of its calls go to both others in equal parts (the later tickets that fall on the failed
 * one are dropped, as for a down endpoint), and the other calls' rotation is untouched. */
static void rr_retries_off_one_failing_endpoint_spread_over_the_others(void **state)
{
    enum { CALLS = 600 };
    fixture_make(&fx, 3, NULL);
    ft_lb *lb = make_lb("rr", &fx, NULL);
    long retried_on[3] = {0};
    for (int call = 0; call < CALLS; call++) {
        ft_lb_pick req = pick_req(NULL);
        size_t tried = must_select(lb, &req);
        assert_int_equal(tried, (size_t)call % 3);
        if (tried != 0) continue;
        req.excluded = &tried;
        req.n_excluded = 1;
        retried_on[must_select(lb, &req)]++;
    }
    /* CALLS / 3 retries on later tickets 0 (dropped) 1, 2, 3 (dropped) 4, 5, ...: half each */
    assert_int_equal(retried_on[0], 0);
    assert_int_equal(retried_on[1], CALLS / 3 / 2);
    assert_int_equal(retried_on[2], CALLS / 3 / 2);
    ft_lb_release(lb);
}

/* ---------------------------------------------------------------- concurrency */

enum { THREAD_PICKS = 1000000, RR_N = 10 };

typedef struct picker {
    ft_lb *lb;
    long counts[RR_N];
    long errors;
} picker;

static void *pick_loop(void *arg)
{
    picker *p = arg;
    ft_lb_pick req = {0};
    for (int i = 0; i < THREAD_PICKS; i++) {
        size_t out;
        if (ft_lb_select(p->lb, &req, &out) == 0 && out < RR_N)
            p->counts[out]++;
        else
            p->errors++;
    }
    return NULL;
}

static void rr_two_threads_spread_exactly_evenly(void **state)
{
    fixture_make(&fx, RR_N, NULL);
    ft_lb *lb = make_lb("rr", &fx, NULL);
    picker p[2] = {{.lb = lb}, {.lb = lb}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, pick_loop, &p[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    /* one shared counter hands out 2M consecutive tickets: each endpoint gets exactly 1/N */
    for (int e = 0; e < RR_N; e++)
        assert_int_equal(p[0].counts[e] + p[1].counts[e], 2L * THREAD_PICKS / RR_N);
    assert_int_equal(p[0].errors + p[1].errors, 0);
    ft_lb_release(lb);
}

static void seeded_picks_are_reproducible(void **state)
{
    for (size_t k = 0; k < N_NAMES; k++) {
        fixture_make(&fx, 20, NULL);
        ft_lb *a = make_lb(all_names[k], &fx, NULL), *b = make_lb(all_names[k], &fx, NULL);
        ft_rand ra, rb;
        ft_rand_seed(&ra, 2024);
        ft_rand_seed(&rb, 2024);
        ft_lb_pick qa = pick_req(&ra), qb = pick_req(&rb);
        for (int i = 0; i < 1000; i++)
            assert_int_equal(must_select(a, &qa), must_select(b, &qb));
        ft_lb_release(a);
        ft_lb_release(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unknown_or_bad_arguments_are_einval),
        cmocka_unit_test(snapshot_is_copied_with_default_weight),
        cmocka_unit_test(every_balancer_honors_exclusion_and_usability),
        cmocka_unit_test(every_balancer_reports_no_endpoint_when_none_usable),
        cmocka_unit_test(excluded_fallback_only_when_allowed),
        cmocka_unit_test(empty_snapshot_and_bad_requests),
        cmocka_unit_test(unweighted_balancers_spread_evenly),
        cmocka_unit_test(weighted_balancers_follow_weights),
        cmocka_unit_test(wrandom_keeps_exact_odds_for_skewed_weights),
        cmocka_unit_test(wrr_follows_nginx_smooth_sequence_in_both_modes),
        cmocka_unit_test(wrr_schedules_long_periods_over_many_endpoints_exactly),
        cmocka_unit_test(wrr_redistributes_an_unusable_endpoints_share),
        cmocka_unit_test(rr_and_wrr_spread_a_suspended_endpoints_share_evenly),
        cmocka_unit_test(chash_picks_the_maglev_slot_of_the_key),
        cmocka_unit_test(chash_table_grows_with_the_endpoints_and_option),
        cmocka_unit_test(chash_does_not_depend_on_list_order),
        cmocka_unit_test(chash_same_key_same_endpoint),
        cmocka_unit_test(chash_adding_a_node_moves_about_one_in_n_keys_mostly_to_it),
        cmocka_unit_test(chash_removing_a_node_moves_its_keys_and_few_others),
        cmocka_unit_test(chash_failover_is_consistent_and_returns),
        cmocka_unit_test(chash_weight_scales_the_share_of_keys),
        cmocka_unit_test(p2c_sends_clearly_less_to_a_costly_node),
        cmocka_unit_test(p2c_decays_a_stale_figure_so_a_node_once_slow_is_picked_again),
        cmocka_unit_test(p2c_keeps_some_traffic_on_slow_nodes_when_two_meet),
        cmocka_unit_test(p2c_failures_weigh_in_the_cost_so_a_fast_failure_attracts_no_load),
        cmocka_unit_test(priority_returns_to_primary_as_soon_as_usable),
        cmocka_unit_test(priority_sticky_stays_on_the_endpoint_failed_over_to),
        cmocka_unit_test(rr_retries_and_backups_take_no_turn),
        cmocka_unit_test(rr_retries_off_one_failing_endpoint_spread_over_the_others),
        cmocka_unit_test(rr_two_threads_spread_exactly_evenly),
        cmocka_unit_test(seeded_picks_are_reproducible),
        cmocka_unit_test(p2c_sums_the_shards_of_an_inflight_figure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
