/* The fail-mode decisions (client/fail_policy.h) without a socket: every fail mode, the tried
 * endpoints, non-retryable codes, business errors, free re-sends, budget exhaustion, backoff
 * against the deadline, a stopping client, backups and the fallback table. Time is an
 * ft_manual_clock; the jitter comes from a seeded ft_rand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base/clock.h"
#include "base/rand.h"
#include "client/fail_policy.h"
#include "client/retry_budget.h"
#include "ftrpc/client.h"

#define MS(x) ((int64_t)(x)*FT_NS_PER_MS)

typedef struct fixture {
    ft_manual_clock clock;
    ft_retry_budget budget;
    /* what the decisions read: no_retry_codes, the classifier, backoff */
    ftrpc_client_options opts;
    ft_rand rng;
    ft_fail_state st;
    ft_fail_tried tried;
    int64_t deadline_ns;
} fixture;

static const ft_retry_budget_options unlimited = {.ratio = FT_RETRY_BUDGET_OFF};
/* no floor and no requests counted: the first spend is refused */
static const ft_retry_budget_options empty = {.ratio = 0.1,
                                              .min_per_sec = FT_RETRY_BUDGET_NO_FLOOR};

static int64_t now(fixture *f)
{
    return ft_clock_now_ns(&f->clock.base);
}

static fixture *make(ftrpc_fail_mode mode, int retries, const ft_retry_budget_options *budget)
{
    fixture *f = test_calloc(1, sizeof(*f));
    ft_manual_clock_init(&f->clock, MS(5000));
    assert_int_equal(ft_retry_budget_init(&f->budget, budget), 0);
    ft_rand_seed(&f->rng, 42);
    f->st.mode = mode;
    f->st.retries_left = retries;
    f->st.last_endpoint = -1;
    f->deadline_ns = now(f) + MS(1000);
    return f;
}

static void destroy(fixture *f)
{
    ft_retry_budget_fini(&f->budget);
    test_free(f);
}

/* One attempt failed with (kind, code), no other copy out. */
static ft_fail_decision fail_with(fixture *f, ftrpc_result_kind kind, int code, int never_on_wire)
{
    ft_fail_event ev = {.kind = kind,
                        .code = code,
                        .text = "text",
                        .never_on_wire = never_on_wire,
                        .now_ns = now(f),
                        .deadline_ns = f->deadline_ns};
    return ft_fail_after_error(&f->st, &ev, &f->opts, &f->budget, &f->rng);
}

static ft_fail_decision timed_out(fixture *f)
{
    return fail_with(f, FTRPC_RESULT_RPC_ERROR, FTRPC_ERPCTIMEDOUT, 0);
}

static void failfast_completes_after_one_failure(void **s)
{
    fixture *f = make(FTRPC_FAILFAST, 3, &unlimited);
    ft_fail_decision d = timed_out(f);
    assert_int_equal(d.action, FT_FAIL_COMPLETE);
    assert_false(d.retry_spent);
    assert_int_equal(f->st.retries_left, 3);
    destroy(f);
}

static void failover_retries_up_to_retries_then_completes(void **s)
{
    fixture *f = make(FTRPC_FAILOVER, 2, &unlimited);
    for (int i = 0; i < 2; i++) {
        ft_fail_decision d = timed_out(f);
        assert_int_equal(d.action, FT_FAIL_RETRY_NOW);
        assert_true(d.retry_spent);
    }
    assert_int_equal(f->st.retries_left, 0);
    assert_int_equal(f->st.retries_done, 2);
    ft_fail_decision d = timed_out(f);
    assert_int_equal(d.action, FT_FAIL_COMPLETE);
    assert_false(d.retry_spent);
    assert_false(d.budget_refused);
    destroy(f);
}

static void failover_excludes_tried_endpoints_per_target(void **s)
{
    fixture *f = make(FTRPC_FAILOVER, 2, &unlimited);
    int target = -1;
    assert_int_equal(ft_fail_reuse_endpoint(&f->st, &target), -1); /* the balancer picks */
    ft_fail_note_sent(&f->st, &f->tried, 3, 0);
    ft_fail_note_sent(&f->st, &f->tried, 5, 1);
    ft_fail_note_sent(&f->st, &f->tried, 7, 0);
    ft_fail_note_sent(&f->st, &f->tried, 3, 0); /* a backup to the same endpoint: noted once */
    assert_int_equal(f->st.ntried, 3);
    assert_int_equal(ft_fail_reuse_endpoint(&f->st, &target), -1);
    size_t out[FT_LB_MAX_EXCLUDED];
    assert_int_equal(ft_fail_excluded(&f->st, &f->tried, 0, out), 2);
    assert_int_equal(out[0], 3);
    assert_int_equal(out[1], 7);
    assert_int_equal(ft_fail_excluded(&f->st, &f->tried, 1, out), 1);
    assert_int_equal(out[0], 5);
    assert_int_equal(ft_fail_excluded(&f->st, &f->tried, 2, out), 0);
    /* the list stops at what the balancer can exclude; a call going on past it still works */
    for (int i = 100; i < 100 + (int)FT_LB_MAX_EXCLUDED; i++)
        ft_fail_note_sent(&f->st, &f->tried, i, 0);
    assert_int_equal(f->st.ntried, FT_LB_MAX_EXCLUDED);
    assert_int_equal(f->st.last_endpoint, 100 + (int)FT_LB_MAX_EXCLUDED - 1);
    destroy(f);
}

static void failtry_retries_the_same_endpoint(void **s)
{
    fixture *f = make(FTRPC_FAILTRY, 2, &unlimited);
    ft_fail_note_sent(&f->st, &f->tried, 4, 1);
    assert_int_equal(timed_out(f).action, FT_FAIL_RETRY_NOW);
    int target = -1;
    assert_int_equal(ft_fail_reuse_endpoint(&f->st, &target), 4);
    assert_int_equal(target, 1);
    size_t out[FT_LB_MAX_EXCLUDED];
    assert_int_equal(ft_fail_excluded(&f->st, &f->tried, 1, out), 0);
    assert_int_equal(f->st.ntried, 0);
    assert_int_equal(timed_out(f).action, FT_FAIL_RETRY_NOW);
    assert_int_equal(timed_out(f).action, FT_FAIL_COMPLETE);
    destroy(f);
}

typedef struct fake_policy {
    ftrpc_backup_policy base;
    int agree;
    int asked, refused;
} fake_policy;

static int fake_should_backup(ftrpc_backup_policy *self, const char *service, const char *method)
{
    fake_policy *p = (fake_policy *)self;
    assert_string_equal(service, "svc");
    assert_string_equal(method, "m");
    p->asked++;
    return p->agree;
}

static void fake_on_backup_refused(ftrpc_backup_policy *self, const char *service,
                                   const char *method)
{
    ((fake_policy *)self)->refused++;
}

static fake_policy make_policy(int agree)
{
    fake_policy p = {.agree = agree};
    p.base.should_backup = fake_should_backup;
    p.base.on_backup_refused = fake_on_backup_refused;
    return p;
}

static void failbackup_backs_up_only_a_lone_first_attempt(void **s)
{
    fixture *f = make(FTRPC_FAILBACKUP, 2, &unlimited);
    assert_int_equal(ft_fail_backup(&f->st, 1, 1, 2, 0, NULL, "svc", "m", &f->budget, now(f)),
                     FT_BACKUP_SEND);
    /* the first copy already has its backup out, or failed and a retry is out */
    assert_int_equal(ft_fail_backup(&f->st, 2, 2, 2, 0, NULL, "svc", "m", &f->budget, now(f)),
                     FT_BACKUP_SKIP);
    assert_int_equal(ft_fail_backup(&f->st, 1, 2, 2, 0, NULL, "svc", "m", &f->budget, now(f)),
                     FT_BACKUP_SKIP);
    assert_int_equal(ft_fail_backup(&f->st, 0, 1, 2, 0, NULL, "svc", "m", &f->budget, now(f)),
                     FT_BACKUP_SKIP);
    fake_policy no = make_policy(0), yes = make_policy(1);
    assert_int_equal(ft_fail_backup(&f->st, 1, 1, 2, 0, &no.base, "svc", "m", &f->budget, now(f)),
                     FT_BACKUP_SKIP);
    assert_int_equal(no.asked, 1);
    assert_int_equal(ft_fail_backup(&f->st, 1, 1, 2, 0, &yes.base, "svc", "m", &f->budget, now(f)),
                     FT_BACKUP_SEND);
    assert_int_equal(yes.refused, 0);
    destroy(f);
}

/* gRPC A6 hedging: up to max_copies copies, each after the delay while one is still out, none once
 * the call retries. */
static void hedging_sends_copies_up_to_max_attempts_while_one_is_out(void **s)
{
    static const struct {
        int in_flight, attempts, max_copies, retries_done;
        ft_backup_verdict want;
    } cases[] = {
        {1, 1, 3, 0, FT_BACKUP_SEND}, /* the second copy */
        {2, 2, 3, 0, FT_BACKUP_SEND}, /* the third, both earlier ones still out */
        {1, 2, 3, 0, FT_BACKUP_SEND}, /* the third, one earlier copy failed */
        {3, 3, 3, 0, FT_BACKUP_SKIP}, /* three sent: no fourth */
        {2, 4, 5, 0, FT_BACKUP_SEND}, /* the fifth of five */
        {0, 2, 3, 0, FT_BACKUP_SKIP}, /* nothing out: the fail mode decides */
        {1, 2, 3, 1, FT_BACKUP_SKIP}, /* every copy failed and a retry is out */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture *f = make(FTRPC_FAILBACKUP, 2, &unlimited);
        f->st.retries_done = cases[i].retries_done;
        assert_int_equal(ft_fail_backup(&f->st, cases[i].in_flight, cases[i].attempts,
                                        cases[i].max_copies, 0, NULL, "svc", "m", &f->budget,
                                        now(f)),
                         cases[i].want);
        destroy(f);
    }
}

/* Each copy past the first is a backup: with brpc's accounting it uses up a retry, and with none
 * left the copy is not sent. */
static void each_hedged_copy_uses_up_a_retry_under_brpc_accounting(void **s)
{
    fixture *f = make(FTRPC_FAILBACKUP, 2, &unlimited);
    assert_int_equal(ft_fail_backup(&f->st, 1, 1, 5, 1, NULL, "svc", "m", NULL, now(f)),
                     FT_BACKUP_SEND);
    assert_int_equal(ft_fail_backup(&f->st, 2, 2, 5, 1, NULL, "svc", "m", NULL, now(f)),
                     FT_BACKUP_SEND);
    assert_int_equal(f->st.retries_left, 0);
    assert_int_equal(ft_fail_backup(&f->st, 3, 3, 5, 1, NULL, "svc", "m", NULL, now(f)),
                     FT_BACKUP_SKIP);
    destroy(f);
}

/* A copy failed while others are out: a retryable error sends the next copy at once (gRPC's
 * non-fatal status), a fatal one or a full set of copies leaves the others to decide. */
static void a_retryable_error_of_one_copy_sends_the_next_at_once(void **s)
{
    fixture *f = make(FTRPC_FAILBACKUP, 2, &unlimited);
    ft_fail_event ev = {.kind = FTRPC_RESULT_RPC_ERROR,
                        .code = FTRPC_EINTERNAL,
                        .text = "x",
                        .in_flight = 1,
                        .now_ns = now(f),
                        .deadline_ns = f->deadline_ns};
    assert_int_equal(ft_fail_after_error(&f->st, &ev, &f->opts, &f->budget, &f->rng).action,
                     FT_FAIL_WAIT);
    assert_int_equal(ft_fail_hedge_after_error(&f->st, &ev, &f->opts, 2, 3), 1);
    assert_int_equal(ft_fail_hedge_after_error(&f->st, &ev, &f->opts, 3, 3), 0);
    assert_int_equal(ft_fail_hedge_after_error(&f->st, &ev, &f->opts, 2, 2), 0);
    ft_fail_event fatal = ev;
    fatal.code = FTRPC_EREQUEST; /* the request itself is wrong: another copy would fail too */
    assert_int_equal(ft_fail_hedge_after_error(&f->st, &fatal, &f->opts, 2, 3), 0);
    ft_fail_event business = ev;
    business.kind = FTRPC_RESULT_BUSINESS_ERROR;
    business.code = 7; /* no classifier: never retried */
    assert_int_equal(ft_fail_hedge_after_error(&f->st, &business, &f->opts, 2, 3), 0);
    ft_fail_event stopping = ev;
    stopping.stopping = 1;
    assert_int_equal(ft_fail_hedge_after_error(&f->st, &stopping, &f->opts, 2, 3), 0);
    f->st.mode = FTRPC_FAILOVER;
    assert_int_equal(ft_fail_hedge_after_error(&f->st, &ev, &f->opts, 2, 3), 0);
    destroy(f);
}

static void failbackup_backup_refused_by_budget_tells_the_policy(void **s)
{
    fixture *f = make(FTRPC_FAILBACKUP, 2, &empty);
    fake_policy p = make_policy(1);
    assert_int_equal(ft_fail_backup(&f->st, 1, 1, 2, 0, &p.base, "svc", "m", &f->budget, now(f)),
                     FT_BACKUP_REFUSED);
    assert_int_equal(p.refused, 1);
    ft_retry_budget_stats st;
    ft_retry_budget_stats_get(&f->budget, &st);
    assert_int_equal(st.exhausted, 1);
    destroy(f);
}

/* brpc's accounting (its client guide: "backup request consumes one retry"): with retries = 1
 * the call sends its first copy and the backup, and when both fail it has no retry left, two
 * requests in all as brpc's max_retry = 1; without it (ftrpc's default) the backup leaves the
 * retry to the failure, three requests. With no retry at all, brpc sends no backup. */
static void a_backup_uses_up_a_retry_under_brpc_accounting(void **s)
{
    for (int counts = 0; counts < 2; counts++) {
        fixture *f = make(FTRPC_FAILBACKUP, 1, &unlimited);
        ft_fail_note_sent(&f->st, &f->tried, 0, 0);
        assert_int_equal(ft_fail_backup(&f->st, 1, 1, 2, counts, NULL, "svc", "m", NULL, now(f)),
                         FT_BACKUP_SEND);
        ft_fail_note_sent(&f->st, &f->tried, 1, 0);
        assert_int_equal(f->st.retries_left, counts ? 0 : 1);
        ft_fail_event ev = {.kind = FTRPC_RESULT_RPC_ERROR,
                            .code = FTRPC_ERPCTIMEDOUT,
                            .in_flight = 1,
                            .now_ns = now(f),
                            .deadline_ns = f->deadline_ns};
        assert_int_equal(ft_fail_after_error(&f->st, &ev, &f->opts, &f->budget, &f->rng).action,
                         FT_FAIL_WAIT);
        /* the other copy fails too: a third request only under ftrpc's accounting */
        assert_int_equal(timed_out(f).action, counts ? FT_FAIL_COMPLETE : FT_FAIL_RETRY_NOW);
        destroy(f);
    }
    fixture *f = make(FTRPC_FAILBACKUP, 0, &unlimited);
    fake_policy p = make_policy(1);
    assert_int_equal(ft_fail_backup(&f->st, 1, 1, 2, 1, &p.base, "svc", "m", NULL, now(f)),
                     FT_BACKUP_SKIP);
    assert_int_equal(p.asked, 0); /* not asked: a policy counting decisions would count it */
    assert_int_equal(ft_fail_backup(&f->st, 1, 1, 2, 0, &p.base, "svc", "m", NULL, now(f)),
                     FT_BACKUP_SEND);
    destroy(f);
}

/* A backup that draws on no budget (a fixed delay by default) is sent however empty the budget,
 * which is not touched. */
static void a_backup_without_a_budget_is_sent_when_the_budget_is_empty(void **s)
{
    fixture *f = make(FTRPC_FAILBACKUP, 2, &empty);
    assert_int_equal(ft_fail_backup(&f->st, 1, 1, 2, 0, NULL, "svc", "m", &f->budget, now(f)),
                     FT_BACKUP_REFUSED);
    assert_int_equal(ft_fail_backup(&f->st, 1, 1, 2, 0, NULL, "svc", "m", NULL, now(f)),
                     FT_BACKUP_SEND);
    ft_retry_budget_stats st;
    ft_retry_budget_stats_get(&f->budget, &st);
    assert_int_equal(st.exhausted, 1);
    assert_int_equal(st.retries, 0);
    destroy(f);
}

static void failbackup_waits_for_the_other_copy_then_retries_as_failover(void **s)
{
    fixture *f = make(FTRPC_FAILBACKUP, 1, &unlimited);
    ft_fail_note_sent(&f->st, &f->tried, 0, 0);
    ft_fail_note_sent(&f->st, &f->tried, 1, 0); /* the backup */
    ft_fail_event ev = {.kind = FTRPC_RESULT_RPC_ERROR,
                        .code = FTRPC_ERPCTIMEDOUT,
                        .in_flight = 1,
                        .now_ns = now(f),
                        .deadline_ns = f->deadline_ns};
    ft_fail_decision d = ft_fail_after_error(&f->st, &ev, &f->opts, &f->budget, &f->rng);
    assert_int_equal(d.action, FT_FAIL_WAIT);
    assert_int_equal(f->st.retries_left, 1);
    assert_int_equal(timed_out(f).action, FT_FAIL_RETRY_NOW);
    size_t out[FT_LB_MAX_EXCLUDED];
    assert_int_equal(ft_fail_excluded(&f->st, &f->tried, 0, out), 2); /* both copies' endpoints */
    int target;
    assert_int_equal(ft_fail_reuse_endpoint(&f->st, &target), -1);
    assert_int_equal(timed_out(f).action, FT_FAIL_COMPLETE);
    destroy(f);
}

static void non_retryable_codes_complete_at_once(void **s)
{
    const int codes[] = {FTRPC_ERPCAUTH, FTRPC_ETLS, FTRPC_ENOMETHOD, FTRPC_ECANCELED,
                         FTRPC_ENOENDPOINT};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        fixture *f = make(FTRPC_FAILOVER, 3, &unlimited);
        assert_int_equal(fail_with(f, FTRPC_RESULT_RPC_ERROR, codes[i], 0).action,
                         FT_FAIL_COMPLETE);
        assert_int_equal(f->st.retries_left, 3);
        destroy(f);
    }
    fixture *f = make(FTRPC_FAILOVER, 3, &unlimited);
    f->opts.no_retry_codes[0] = FTRPC_ELIMIT;
    f->opts.no_retry_codes[1] = FTRPC_ERPCTIMEDOUT;
    assert_int_equal(fail_with(f, FTRPC_RESULT_RPC_ERROR, FTRPC_ERPCTIMEDOUT, 0).action,
                     FT_FAIL_COMPLETE);
    assert_int_equal(fail_with(f, FTRPC_RESULT_RPC_ERROR, FTRPC_EFAILEDSOCKET, 0).action,
                     FT_FAIL_RETRY_NOW);
    destroy(f);
}

static int retry_odd_codes(int code, const char *text, void *arg)
{
    assert_string_equal(text, "text");
    (*(int *)arg)++;
    return code % 2;
}

static void business_errors_retried_only_when_the_classifier_says_so(void **s)
{
    fixture *f = make(FTRPC_FAILOVER, 3, &unlimited);
    assert_int_equal(fail_with(f, FTRPC_RESULT_BUSINESS_ERROR, 7, 0).action, FT_FAIL_COMPLETE);
    int asked = 0;
    f->opts.retry_classifier = retry_odd_codes;
    f->opts.retry_classifier_arg = &asked;
    assert_int_equal(fail_with(f, FTRPC_RESULT_BUSINESS_ERROR, 8, 0).action, FT_FAIL_COMPLETE);
    assert_int_equal(fail_with(f, FTRPC_RESULT_BUSINESS_ERROR, 7, 0).action, FT_FAIL_RETRY_NOW);
    assert_int_equal(asked, 2);
    /* RPC errors do not ask the classifier */
    assert_int_equal(fail_with(f, FTRPC_RESULT_RPC_ERROR, FTRPC_EFAILEDSOCKET, 0).action,
                     FT_FAIL_RETRY_NOW);
    assert_int_equal(asked, 2);
    destroy(f);
}

static void free_resends_do_not_use_up_retries_but_are_bounded(void **s)
{
    fixture *f = make(FTRPC_FAILOVER, 1, &unlimited);
    f->st.free_resends_left = 2;
    f->opts.backoff = (ftrpc_backoff){.kind = FTRPC_BACKOFF_FIXED, .initial_ms = 10};
    for (int i = 0; i < 2; i++) {
        ft_fail_decision d = fail_with(f, FTRPC_RESULT_RPC_ERROR, FTRPC_ECONNREFUSED, 1);
        assert_int_equal(d.action, FT_FAIL_RETRY_NOW); /* no backoff: it never left */
        assert_true(d.retry_spent);
    }
    assert_int_equal(f->st.retries_left, 1);
    assert_int_equal(f->st.free_resends_left, 0);
    assert_int_equal(f->st.retries_done, 2);
    /* free re-sends spent: a refusal now costs a real retry, with its backoff */
    ft_fail_decision d = fail_with(f, FTRPC_RESULT_RPC_ERROR, FTRPC_ECONNECT, 1);
    assert_int_equal(d.action, FT_FAIL_RETRY_AT);
    assert_int_equal(d.at_ns, now(f) + MS(10));
    assert_int_equal(fail_with(f, FTRPC_RESULT_RPC_ERROR, FTRPC_ECONNREFUSED, 1).action,
                     FT_FAIL_COMPLETE);
    destroy(f);
}

/* Issue #20, point 16: failtry's free re-sends of a refused request all went back to its one
 * endpoint, as many times as the service had endpoints (6 refusals of the same dead node in a
 * 6-endpoint service) where the docs promise one per endpoint. */
static void free_resends_are_one_per_endpoint_the_call_may_go_to(void **s)
{
    static const struct {
        ftrpc_fail_mode mode;
        size_t endpoints;
        int expect;
    } cases[] = {
        {FTRPC_FAILOVER, 6, 6}, {FTRPC_FAILBACKUP, 6, 6}, {FTRPC_FAILTRY, 6, 1},
        {FTRPC_FAILTRY, 1, 1},  {FTRPC_FAILFAST, 6, 0},   {FTRPC_FAILOVER, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(ft_fail_free_resends(cases[i].mode, cases[i].endpoints), cases[i].expect);

    /* failtry on a dead node of six, no retries: the refused request is re-sent there once */
    fixture *f = make(FTRPC_FAILTRY, 0, &unlimited);
    f->st.free_resends_left = ft_fail_free_resends(FTRPC_FAILTRY, 6);
    int sent = 1;
    while (fail_with(f, FTRPC_RESULT_RPC_ERROR, FTRPC_ECONNREFUSED, 1).action == FT_FAIL_RETRY_NOW)
        sent++;
    assert_int_equal(sent, 2);
    destroy(f);
}

static ft_fail_decision refused_with(fixture *f, int untried_usable)
{
    ft_fail_event ev = {.kind = FTRPC_RESULT_RPC_ERROR,
                        .code = FTRPC_ECONNREFUSED,
                        .never_on_wire = 1,
                        .untried_usable = untried_usable,
                        .now_ns = now(f),
                        .deadline_ns = f->deadline_ns};
    return ft_fail_after_error(&f->st, &ev, &f->opts, &f->budget, &f->rng);
}

/* Issue #20: with 7 of 10 endpoints refusing, the free re-sends drew on the budget, so that once
 * the budget was spent refused calls failed although 3 servers were up. A re-send that goes to an
 * untried usable endpoint costs no server anything: it is free of the budget too. */
static void a_free_resend_to_an_untried_usable_endpoint_costs_no_budget(void **s)
{
    fixture *f = make(FTRPC_FAILOVER, 0, &empty);
    f->st.free_resends_left = 3;
    ft_fail_decision d = refused_with(f, 1);
    assert_int_equal(d.action, FT_FAIL_RETRY_NOW);
    assert_true(d.retry_spent);
    assert_false(d.budget_refused);
    assert_int_equal(f->st.free_resends_left, 2);
    /* nothing untried is usable: the budget decides (here it is empty) */
    d = refused_with(f, 0);
    assert_int_equal(d.action, FT_FAIL_COMPLETE);
    assert_true(d.budget_refused);
    destroy(f);

    /* failtry goes back to the same endpoint: the budget pays whatever else is usable */
    f = make(FTRPC_FAILTRY, 0, &empty);
    f->st.free_resends_left = 1;
    d = refused_with(f, 1);
    assert_int_equal(d.action, FT_FAIL_COMPLETE);
    assert_true(d.budget_refused);
    destroy(f);
}

static void budget_exhaustion_completes_and_is_counted(void **s)
{
    fixture *f = make(FTRPC_FAILOVER, 3, &empty);
    f->st.free_resends_left = 1;
    ft_fail_decision d = timed_out(f);
    assert_int_equal(d.action, FT_FAIL_COMPLETE);
    assert_true(d.budget_refused);
    assert_false(d.retry_spent);
    assert_int_equal(f->st.retries_left, 3);
    /* a free re-send draws on the budget too, when nothing untried is usable */
    d = fail_with(f, FTRPC_RESULT_RPC_ERROR, FTRPC_ECONNREFUSED, 1);
    assert_int_equal(d.action, FT_FAIL_COMPLETE);
    assert_true(d.budget_refused);
    assert_int_equal(f->st.free_resends_left, 1);
    ft_retry_budget_stats st;
    ft_retry_budget_stats_get(&f->budget, &st);
    assert_int_equal(st.exhausted, 2);
    assert_int_equal(st.retries, 0);
    destroy(f);
}

static void fixed_backoff_never_reaches_the_deadline(void **s)
{
    fixture *f = make(FTRPC_FAILOVER, 10, &unlimited);
    f->opts.backoff = (ftrpc_backoff){.kind = FTRPC_BACKOFF_FIXED, .initial_ms = 50};
    f->deadline_ns = now(f) + MS(100);
    ft_fail_decision d = timed_out(f);
    assert_int_equal(d.action, FT_FAIL_RETRY_AT);
    assert_int_equal(d.at_ns, now(f) + MS(50));
    ft_manual_clock_advance(&f->clock, MS(49));
    d = timed_out(f);
    assert_int_equal(d.action, FT_FAIL_RETRY_AT);
    assert_true(d.at_ns < f->deadline_ns);
    ft_manual_clock_advance(&f->clock, MS(1)); /* the backoff would end exactly at the deadline */
    d = timed_out(f);
    assert_int_equal(d.action, FT_FAIL_COMPLETE);
    assert_true(d.retry_spent); /* the retry was spent, and counted, before the backoff was known */
    destroy(f);
}

static void exponential_backoff_is_full_jitter_bounded_by_max_and_the_deadline(void **s)
{
    ftrpc_backoff b = {
        .kind = FTRPC_BACKOFF_EXPONENTIAL, .initial_ms = 10, .multiplier = 2, .max_ms = 40};
    assert_int_equal(ft_fail_backoff_ns(&b, 1, 0.5), MS(5));
    assert_int_equal(ft_fail_backoff_ns(&b, 2, 0.5), MS(10));
    assert_int_equal(ft_fail_backoff_ns(&b, 3, 0.5), MS(20));
    assert_int_equal(ft_fail_backoff_ns(&b, 9, 0.5), MS(20)); /* the cap is max_ms */
    assert_int_equal(ft_fail_backoff_ns(&b, 1, 0), 0);
    assert_true(ft_fail_backoff_ns(&b, 30, 0.9999999) < MS(40));

    fixture *f = make(FTRPC_FAILOVER, 1000, &unlimited);
    f->opts.backoff = b;
    f->deadline_ns = now(f) + MS(500);
    int later = 0, completed = 0;
    while (now(f) < f->deadline_ns) {
        int step = f->st.backoff_step + 1;
        double cap = step >= 3 ? 40 : 10 << (step - 1);
        ft_fail_decision d = timed_out(f);
        if (d.action == FT_FAIL_RETRY_AT) {
            assert_true(d.at_ns > now(f));
            assert_true(d.at_ns - now(f) < MS(cap));
            assert_true(d.at_ns < f->deadline_ns);
            later++;
        } else {
            assert_true(d.action == FT_FAIL_COMPLETE || d.action == FT_FAIL_RETRY_NOW);
            completed += d.action == FT_FAIL_COMPLETE;
        }
        ft_manual_clock_advance(&f->clock, MS(7));
    }
    assert_true(later > 50);
    assert_true(completed > 0); /* near the deadline, draws that would overrun it end the call */
    destroy(f);
}

static void a_stopping_client_never_retries(void **s)
{
    fixture *f = make(FTRPC_FAILOVER, 3, &unlimited);
    f->st.free_resends_left = 3;
    ft_fail_event ev = {.kind = FTRPC_RESULT_RPC_ERROR,
                        .code = FTRPC_ECONNREFUSED,
                        .never_on_wire = 1,
                        .stopping = 1,
                        .now_ns = now(f),
                        .deadline_ns = f->deadline_ns};
    ft_fail_decision d = ft_fail_after_error(&f->st, &ev, &f->opts, &f->budget, &f->rng);
    assert_int_equal(d.action, FT_FAIL_COMPLETE);
    assert_false(d.retry_spent);
    destroy(f);
}

/* A server's pushback -1 (ftrpc_retry_after_ms): the call completes with retries and budget left.
 */
static void a_pushback_of_minus_one_ends_the_retries(void **s)
{
    fixture *f = make(FTRPC_FAILOVER, 3, &unlimited);
    ft_fail_event ev = {.kind = FTRPC_RESULT_RPC_ERROR,
                        .code = FTRPC_ELIMIT,
                        .text = "overloaded",
                        .retries_stopped = 1,
                        .now_ns = now(f),
                        .deadline_ns = f->deadline_ns};
    ft_fail_decision d = ft_fail_after_error(&f->st, &ev, &f->opts, &f->budget, &f->rng);
    assert_int_equal(d.action, FT_FAIL_COMPLETE);
    assert_false(d.retry_spent);
    assert_int_equal(f->st.retries_left, 3);
    ev.retries_stopped = 0; /* the same failure without it is retried */
    assert_int_equal(ft_fail_after_error(&f->st, &ev, &f->opts, &f->budget, &f->rng).action,
                     FT_FAIL_RETRY_NOW);
    destroy(f);
}

static void fallback_fn(const ftrpc_fallback_input *in, ftrpc_fallback_output *out, void *arg) {}

static void fallback_applies_table(void **s)
{
    struct {
        ftrpc_fallback_kind kind;
        ftrpc_result_kind result;
        int code;
        int applies;
    } rows[] = {
        {FTRPC_FALLBACK_OFF, FTRPC_RESULT_RPC_ERROR, FTRPC_ERPCTIMEDOUT, 0},
        {FTRPC_FALLBACK_ERRORS_AND_RESPONSES, FTRPC_RESULT_OK, 0, 1},
        {FTRPC_FALLBACK_ERRORS_AND_RESPONSES, FTRPC_RESULT_BUSINESS_ERROR, 5, 1},
        {FTRPC_FALLBACK_ERRORS_AND_RESPONSES, FTRPC_RESULT_RPC_ERROR, FTRPC_ECANCELED, 0},
        {FTRPC_FALLBACK_ERRORS, FTRPC_RESULT_OK, 0, 0},
        {FTRPC_FALLBACK_ERRORS, FTRPC_RESULT_BUSINESS_ERROR, 5, 1},
        {FTRPC_FALLBACK_ERRORS, FTRPC_RESULT_RPC_ERROR, FTRPC_EFAILEDSOCKET, 1},
        {FTRPC_FALLBACK_ERRORS, FTRPC_RESULT_RPC_ERROR, FTRPC_ECANCELED, 0},
        {FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER, FTRPC_RESULT_RPC_ERROR, FTRPC_ERPCTIMEDOUT, 1},
        {FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER, FTRPC_RESULT_RPC_ERROR, FTRPC_ENOENDPOINT, 1},
        {FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER, FTRPC_RESULT_RPC_ERROR, FTRPC_EFAILEDSOCKET, 0},
        {FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER, FTRPC_RESULT_BUSINESS_ERROR, 5, 0},
        {FTRPC_FALLBACK_TIMEOUTS_AND_BREAKER, FTRPC_RESULT_OK, 0, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        ftrpc_fallback fb = {.kind = rows[i].kind, .fn = fallback_fn};
        ftrpc_result r = {.kind = rows[i].result, .code = rows[i].code};
        assert_int_equal(ft_fail_fallback_applies(&fb, &r), rows[i].applies);
        fb.fn = NULL; /* no function, nothing to run */
        assert_int_equal(ft_fail_fallback_applies(&fb, &r), 0);
    }
}

static void wire_codes_and_health_codes(void **s)
{
    ftrpc_result_kind kind;
    int code;
    ft_fail_classify_wire(0, &kind, &code);
    assert_int_equal(kind, FTRPC_RESULT_OK);
    ft_fail_classify_wire(-FTRPC_ERPCTIMEDOUT, &kind, &code);
    assert_int_equal(kind, FTRPC_RESULT_RPC_ERROR);
    assert_int_equal(code, FTRPC_ERPCTIMEDOUT);
    ft_fail_classify_wire(110, &kind, &code); /* a brpc server's errno */
    assert_int_equal(code, FTRPC_EINTERNAL);
    ft_fail_classify_wire(FTRPC_BUSINESS_CODE_MIN, &kind, &code);
    assert_int_equal(kind, FTRPC_RESULT_BUSINESS_ERROR);
    assert_int_equal(ft_fail_health_code(FTRPC_RESULT_OK, 0), 0);
    assert_int_equal(ft_fail_health_code(FTRPC_RESULT_BUSINESS_ERROR, -3), 1); /* it answered */
    assert_int_equal(ft_fail_health_code(FTRPC_RESULT_RPC_ERROR, FTRPC_EFAILEDSOCKET),
                     FTRPC_EFAILEDSOCKET);
}

/* An attempt timed out and left its endpoint in TIMEOUT until usable_at_ns, under WSO2's
 * retry_in_timeout with retries_before_suspension 3. */
static ft_fail_decision timed_out_in_timeout(fixture *f, int64_t usable_at_ns)
{
    ft_fail_event ev = {.kind = FTRPC_RESULT_RPC_ERROR,
                        .code = FTRPC_ERPCTIMEDOUT,
                        .now_ns = now(f),
                        .deadline_ns = f->deadline_ns,
                        .in_timeout = 1,
                        .timeout_usable_at_ns = usable_at_ns,
                        .timeout_retries_max = 3};
    return ft_fail_after_error(&f->st, &ev, &f->opts, &f->budget, &f->rng);
}

/* WSO2's example 2 as a configuration: markForSuspension retriesBeforeSuspension 3, retryDelay
 * 100 ms. An attempt whose timeout left its endpoint in TIMEOUT is retried on that endpoint at the
 * end of the delay, three times, without using up `retries`; then the failover rule applies. */
static void wso2_timeout_endpoint_is_retried_retry_delay_apart_then_failover(void **s)
{
    fixture *f = make(FTRPC_FAILOVER, 1, &unlimited);
    f->deadline_ns = now(f) + MS(2000);
    ft_fail_note_sent(&f->st, &f->tried, 0, 0);
    for (int i = 0; i < 3; i++) {
        ft_fail_decision d = timed_out_in_timeout(f, now(f) + MS(100));
        assert_int_equal(d.action, FT_FAIL_RETRY_AT);
        assert_int_equal(d.at_ns, now(f) + MS(100));
        assert_true(d.same_endpoint);
        int target = -1;
        assert_int_equal(ft_fail_reuse_endpoint(&f->st, &target), 0);
        assert_int_equal(target, 0);
        ft_manual_clock_advance(&f->clock, MS(100));
        ft_fail_note_sent(&f->st, &f->tried, 0, 0);
    }
    assert_int_equal(f->st.retries_left, 1); /* `retries` untouched */
    /* the fourth: still in TIMEOUT, but the endpoint's retries are spent: fail over */
    ft_fail_decision d = timed_out_in_timeout(f, now(f) + MS(100));
    assert_int_equal(d.action, FT_FAIL_RETRY_NOW);
    assert_false(d.same_endpoint);
    int target = -1;
    assert_int_equal(ft_fail_reuse_endpoint(&f->st, &target), -1);
    size_t out[FT_LB_MAX_EXCLUDED];
    assert_int_equal(ft_fail_excluded(&f->st, &f->tried, 0, out), 1); /* not the one tried */
    assert_int_equal(f->st.retries_left, 0);
    destroy(f);
}

/* A TIMEOUT retry whose delay would end at or past the deadline is not waited for: the fail
 * mode's own rule applies (here: fail over at once). */
static void timeout_retry_never_waits_past_the_deadline(void **s)
{
    fixture *f = make(FTRPC_FAILOVER, 1, &unlimited);
    ft_fail_note_sent(&f->st, &f->tried, 0, 0);
    ft_fail_decision d = timed_out_in_timeout(f, f->deadline_ns);
    assert_int_equal(d.action, FT_FAIL_RETRY_NOW);
    assert_false(d.same_endpoint);
    destroy(f);
}

/* retry_delay_ms paces a retry that has only an endpoint in TIMEOUT to go to: at its end, or not
 * at all when that is past the deadline. */
static void pace_retry_waits_for_the_timeout_endpoint_within_the_deadline(void **s)
{
    ft_fail_decision d = ft_fail_pace_retry(MS(1000), MS(1200), MS(2000));
    assert_int_equal(d.action, FT_FAIL_RETRY_AT);
    assert_int_equal(d.at_ns, MS(1200));
    d = ft_fail_pace_retry(MS(1000), MS(2000), MS(2000));
    assert_int_equal(d.action, FT_FAIL_COMPLETE);
    d = ft_fail_pace_retry(MS(1000), MS(1000), MS(2000));
    assert_int_equal(d.action, FT_FAIL_RETRY_NOW);
}

/* Per-endpoint codes (WSO2's retry config of a child endpoint): non-retry wins over retry, retry
 * overrides the client-wide no_retry_codes, and neither makes a wrong call retryable. */
static void endpoint_codes_non_retry_wins_and_retry_overrides_the_client(void **s)
{
    ftrpc_client_options o = {.no_retry_codes = {FTRPC_EINTERNAL}};
    ftrpc_endpoint_codes ep = {.endpoint = "127.0.0.1:1",
                               .retry_codes = {FTRPC_EINTERNAL, FTRPC_ELIMIT, FTRPC_ECANCELED},
                               .no_retry_codes = {FTRPC_ELIMIT, FTRPC_EOVERCROWDED}};
    const ftrpc_result_kind R = FTRPC_RESULT_RPC_ERROR;
    assert_false(ft_fail_retryable(&o, NULL, R, FTRPC_EINTERNAL, ""));
    assert_true(ft_fail_retryable(&o, &ep, R, FTRPC_EINTERNAL, ""));
    assert_false(ft_fail_retryable(&o, &ep, R, FTRPC_ELIMIT, ""));       /* in both: non-retry */
    assert_false(ft_fail_retryable(&o, &ep, R, FTRPC_EOVERCROWDED, "")); /* non-retry */
    assert_true(ft_fail_retryable(&o, NULL, R, FTRPC_EOVERCROWDED, ""));
    assert_false(ft_fail_retryable(&o, &ep, R, FTRPC_ECANCELED, ""));
    assert_true(ft_fail_retryable(&o, &ep, R, FTRPC_ERPCTIMEDOUT, "")); /* in neither */
    /* and in a decision: the call completes at once */
    fixture *f = make(FTRPC_FAILOVER, 3, &unlimited);
    ft_fail_event ev = {.kind = R,
                        .code = FTRPC_ELIMIT,
                        .now_ns = now(f),
                        .deadline_ns = f->deadline_ns,
                        .endpoint_codes = &ep};
    assert_int_equal(ft_fail_after_error(&f->st, &ev, &f->opts, &f->budget, &f->rng).action,
                     FT_FAIL_COMPLETE);
    destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(failfast_completes_after_one_failure),
        cmocka_unit_test(failover_retries_up_to_retries_then_completes),
        cmocka_unit_test(failover_excludes_tried_endpoints_per_target),
        cmocka_unit_test(failtry_retries_the_same_endpoint),
        cmocka_unit_test(failbackup_backs_up_only_a_lone_first_attempt),
        cmocka_unit_test(hedging_sends_copies_up_to_max_attempts_while_one_is_out),
        cmocka_unit_test(each_hedged_copy_uses_up_a_retry_under_brpc_accounting),
        cmocka_unit_test(a_retryable_error_of_one_copy_sends_the_next_at_once),
        cmocka_unit_test(failbackup_backup_refused_by_budget_tells_the_policy),
        cmocka_unit_test(failbackup_waits_for_the_other_copy_then_retries_as_failover),
        cmocka_unit_test(a_backup_uses_up_a_retry_under_brpc_accounting),
        cmocka_unit_test(a_backup_without_a_budget_is_sent_when_the_budget_is_empty),
        cmocka_unit_test(non_retryable_codes_complete_at_once),
        cmocka_unit_test(business_errors_retried_only_when_the_classifier_says_so),
        cmocka_unit_test(free_resends_do_not_use_up_retries_but_are_bounded),
        cmocka_unit_test(free_resends_are_one_per_endpoint_the_call_may_go_to),
        cmocka_unit_test(a_free_resend_to_an_untried_usable_endpoint_costs_no_budget),
        cmocka_unit_test(budget_exhaustion_completes_and_is_counted),
        cmocka_unit_test(fixed_backoff_never_reaches_the_deadline),
        cmocka_unit_test(exponential_backoff_is_full_jitter_bounded_by_max_and_the_deadline),
        cmocka_unit_test(a_stopping_client_never_retries),
        cmocka_unit_test(a_pushback_of_minus_one_ends_the_retries),
        cmocka_unit_test(fallback_applies_table),
        cmocka_unit_test(wire_codes_and_health_codes),
        cmocka_unit_test(wso2_timeout_endpoint_is_retried_retry_delay_apart_then_failover),
        cmocka_unit_test(timeout_retry_never_waits_past_the_deadline),
        cmocka_unit_test(pace_retry_waits_for_the_timeout_endpoint_within_the_deadline),
        cmocka_unit_test(endpoint_codes_non_retry_wins_and_retry_overrides_the_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
