/* rpcz rings (src/metrics/rpcz.{h,c}): the switch and its bounds, a ring bounded to its capacity
 * and newest first across the wrap-around, the capacity a ring keeps from its first record, a
 * held slot dropping a record rather than waiting, readers skipping a slot being written, whole
 * records under concurrent writers and a reader, the page's text and JSON, a record's attempts
 * bounded, and method names cut to fit. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftrpc/ftrpc.h"
#include "metrics/rpcz.h"

/* Writes one record whose every field derives from v, so that a torn one shows. */
static int put(ft_rpcz_ring *r, int64_t v)
{
    ft_rpcz_span *sp = ft_rpcz_begin(r);
    if (!sp) return 0;
    sp->latency_us = v;
    sp->log_id = v * 3;
    snprintf(sp->method, sizeof sp->method, "svc/m%lld", (long long)v);
    sp->nattempts = 1;
    snprintf(sp->attempt[0].endpoint, sizeof sp->attempt[0].endpoint, "10.0.0.1:%lld",
             (long long)(v % 60000));
    sp->attempt[0].sent_us = v * 7;
    ft_rpcz_commit(sp);
    return 1;
}

static int whole(const ft_rpcz_span *sp)
{
    int64_t v = sp->latency_us;
    char m[128], ep[64];
    snprintf(m, sizeof m, "svc/m%lld", (long long)v);
    snprintf(ep, sizeof ep, "10.0.0.1:%lld", (long long)(v % 60000));
    return sp->log_id == v * 3 && strcmp(sp->method, m) == 0 &&
           strcmp(sp->attempt[0].endpoint, ep) == 0 && sp->attempt[0].sent_us == v * 7;
}

/* Turns rpcz on with this capacity and makes a ring. */
static ft_rpcz_ring *ring_of(int capacity, int kind, const char *name)
{
    assert_int_equal(ftrpc_rpcz_enable(capacity), 0);
    ft_rpcz_ring *r = NULL;
    assert_int_equal(ft_rpcz_ring_new(kind, name, &r), 0);
    return r;
}

static void the_switch_takes_a_bounded_capacity(void **state)
{
    (void)state;
    assert_int_equal(ftrpc_rpcz_capacity(), 0); /* off by default */
    assert_int_equal(ftrpc_rpcz_enable(-1), FTRPC_EINVAL);
    assert_int_equal(ftrpc_rpcz_enable(FTRPC_RPCZ_MAX_CAPACITY + 1), FTRPC_EINVAL);
    assert_int_equal(ftrpc_rpcz_capacity(), 0);
    assert_int_equal(ftrpc_rpcz_enable(0), 0);
    assert_int_equal(ftrpc_rpcz_capacity(), FTRPC_RPCZ_DEFAULT_CAPACITY);
    assert_true(ft_rpcz_on());
    assert_int_equal(ftrpc_rpcz_enable(5), 0);
    assert_int_equal(ftrpc_rpcz_capacity(), 5);
    ftrpc_rpcz_disable();
    assert_int_equal(ftrpc_rpcz_capacity(), 0);
    assert_false(ft_rpcz_on());
}

static void the_ring_keeps_the_newest_calls_newest_first(void **state)
{
    (void)state;
    ft_rpcz_ring *r = ring_of(4, FT_RPCZ_CLIENT, "c1 list://x");
    ft_rpcz_span *spans;
    assert_int_equal(ft_rpcz_ring_copy(r, &spans), 0); /* nothing yet */
    assert_null(spans);
    for (int v = 1; v <= 10; v++)
        assert_true(put(r, v));
    size_t n = ft_rpcz_ring_copy(r, &spans);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(spans[i].seq, 10 - i);
        assert_int_equal(spans[i].latency_us, 10 - (int64_t)i);
        assert_true(whole(&spans[i]));
    }
    free(spans);
    assert_int_equal(ft_rpcz_ring_dropped(r), 0);
    ft_rpcz_ring_free(r);
    ftrpc_rpcz_disable();
}

static void a_ring_keeps_the_capacity_of_its_first_record(void **state)
{
    (void)state;
    ft_rpcz_ring *r = ring_of(2, FT_RPCZ_SERVER, "127.0.0.1:1");
    ftrpc_rpcz_enable(8); /* before the first record: this one applies */
    for (int v = 1; v <= 20; v++)
        put(r, v);
    ftrpc_rpcz_enable(3); /* after: the ring keeps 8 */
    for (int v = 21; v <= 30; v++)
        put(r, v);
    ft_rpcz_span *spans;
    size_t n = ft_rpcz_ring_copy(r, &spans);
    assert_int_equal(n, 8);
    assert_int_equal(spans[0].latency_us, 30);
    assert_int_equal(spans[7].latency_us, 23);
    free(spans);
    ft_rpcz_ring_free(r);
    ftrpc_rpcz_disable();
}

static void a_held_slot_drops_the_record_and_readers_skip_it(void **state)
{
    (void)state;
    ft_rpcz_ring *r = ring_of(1, FT_RPCZ_CLIENT, "c2 list://y");
    ft_rpcz_span *held = ft_rpcz_begin(r);
    assert_non_null(held);
    held->latency_us = 1;
    held->log_id = 3;
    /* a writer a whole ring behind: the slot is held, the record is dropped, nobody waits */
    assert_false(put(r, 2));
    assert_int_equal(ft_rpcz_ring_dropped(r), 1);
    ft_rpcz_span *spans;
    assert_int_equal(ft_rpcz_ring_copy(r, &spans), 0); /* being written: not shown half done */
    ft_rpcz_commit(held);
    assert_int_equal(ft_rpcz_ring_copy(r, &spans), 1);
    assert_int_equal(spans[0].latency_us, 1);
    assert_int_equal(spans[0].seq, 1);
    free(spans);
    ft_rpcz_ring_free(r);
    ftrpc_rpcz_disable();
}

enum { WRITERS = 4, PER_WRITER = 20000, RACE_CAP = 64 };

struct race {
    ft_rpcz_ring *ring;
    int index;
    atomic_int *stored;
};

static void *writer(void *arg)
{
    struct race *w = arg;
    for (int i = 0; i < PER_WRITER; i++)
        if (put(w->ring, (int64_t)w->index * PER_WRITER + i + 1)) atomic_fetch_add(w->stored, 1);
    return NULL;
}

static void concurrent_writers_and_a_reader_see_only_whole_records(void **state)
{
    (void)state;
    ft_rpcz_ring *r = ring_of(RACE_CAP, FT_RPCZ_CLIENT, "c3 list://z");
    atomic_int stored = 0;
    pthread_t t[WRITERS];
    struct race w[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (struct race){r, i, &stored};
        pthread_create(&t[i], NULL, writer, &w[i]);
    }
    int reads = 0;
    while (atomic_load(&stored) + (int)ft_rpcz_ring_dropped(r) < WRITERS * PER_WRITER ||
           reads < 10) {
        ft_rpcz_span *spans;
        size_t n = ft_rpcz_ring_copy(r, &spans);
        assert_true(n <= RACE_CAP);
        for (size_t i = 0; i < n; i++) {
            assert_true(whole(&spans[i]));
            if (i) assert_true(spans[i].seq < spans[i - 1].seq); /* newest first, no twice */
        }
        free(spans);
        reads++;
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(t[i], NULL);
    /* every record was either stored or counted as dropped, never lost silently */
    assert_int_equal(atomic_load(&stored) + (int)ft_rpcz_ring_dropped(r), WRITERS * PER_WRITER);
    ft_rpcz_span *spans;
    size_t n = ft_rpcz_ring_copy(r, &spans);
    assert_true(n > 0 && n <= RACE_CAP);
    assert_true(spans[0].seq <= (uint64_t)WRITERS * PER_WRITER);
    free(spans);
    ft_rpcz_ring_free(r);
    ftrpc_rpcz_disable();
}

/* The wall clock's lead over the monotonic one that the page is rendered with. */
#define LEAD_US INT64_C(1796667400000000)

/* The page (JSON or text) holds every one of the NULL-terminated needles. */
static void page_has(int json, const char *const *needles)
{
    ft_strbuf o;
    ft_strbuf_init(&o, 0);
    assert_int_equal(ft_rpcz_render_at(&o, json, LEAD_US), 0);
    for (const char *page = ft_strbuf_cstr(&o); *needles; needles++)
        if (!strstr(page, *needles)) fail_msg("no '%s' in:\n%s", *needles, page);
    ft_strbuf_fini(&o);
}

static void the_page_says_off_and_shows_attempts_as_text_and_json(void **state)
{
    (void)state;
    ftrpc_buf *b = ftrpc_buf_new();
    assert_int_equal(ftrpc_rpcz_dump(0, NULL), FTRPC_EINVAL);
    assert_int_equal(ftrpc_rpcz_dump(0, b), 0); /* the public form of the same page */
    assert_non_null(strstr(ftrpc_buf_flatten(b), "rpcz is off"));
    page_has(0, (const char *const[]){"rpcz is off", NULL});
    page_has(1, (const char *const[]){"\"enabled\":false", NULL});

    ft_rpcz_ring *r = ring_of(0, FT_RPCZ_CLIENT, "c9 list://q");
    ft_rpcz_span *sp = ft_rpcz_begin(r);
    assert_non_null(sp);
    sp->start_ns = INT64_C(5000123456789); /* + LEAD_US: 19:40:00.123456Z */
    sp->latency_us = 52000;
    snprintf(sp->method, sizeof sp->method, "example.EchoService/Echo");
    sp->kind = FTRPC_RESULT_OK;
    sp->attempts = 2;
    sp->backups = 1;
    sp->nattempts = 2;
    sp->attempt[0] = (ft_rpcz_attempt){.endpoint = "127.0.0.1:1",
                                       .sent_us = 0,
                                       .done_us = 52000,
                                       .code = FTRPC_ECANCELED,
                                       .cancelled = 1};
    sp->attempt[1] = (ft_rpcz_attempt){
        .endpoint = "127.0.0.1:2", .sent_us = 20000, .done_us = 51000, .backup = 1, .winner = 1};
    ft_rpcz_commit(sp);
    page_has(
        1,
        (const char *const[]){
            "\"enabled\":true,\"capacity\":256", "\"kind\":\"client\",\"name\":\"c9 list://q\"",
            "\"start\":\"2026-12-07T19:40:00.123456Z\",\"start_us\":1796672400123456,",
            "\"result\":\"OK\"",
            "{\"endpoint\":\"127.0.0.1:1\",\"sent_us\":0,\"done_us\":52000,\"code\":-8,"
            "\"error\":\"FTRPC_ECANCELED\",\"backup\":false,\"winner\":false,\"cancelled\":true}",
            "{\"endpoint\":\"127.0.0.1:2\",\"sent_us\":20000,\"done_us\":51000,\"code\":0,"
            "\"error\":\"\",\"backup\":true,\"winner\":true,\"cancelled\":false}",
            NULL});
    page_has(0, (const char *const[]){
                    "rpcz is on: the last 256 calls",
                    "example.EchoService/Echo OK code=0 latency_us=52000 attempts=2",
                    "#0 127.0.0.1:1 sent_us=0 done_us=52000 code=-8 FTRPC_ECANCELED cancelled\n",
                    "#1 127.0.0.1:2 sent_us=20000 done_us=51000 code=0 backup winner\n", NULL});
    ftrpc_buf_free(b);
    ft_rpcz_ring_free(r);
    ftrpc_rpcz_disable();
}

static void a_record_shows_at_most_its_bounded_attempts(void **state)
{
    (void)state;
    ft_rpcz_ring *r = ring_of(0, FT_RPCZ_CLIENT, "c10 list://b");
    ft_rpcz_span *sp = ft_rpcz_begin(r);
    assert_non_null(sp);
    sp->attempts = 40; /* a call of 40 attempts keeps the first FTRPC_RPCZ_MAX_ATTEMPTS */
    sp->nattempts = 255;
    for (int i = 0; i < FTRPC_RPCZ_MAX_ATTEMPTS; i++)
        sp->attempt[i] = (ft_rpcz_attempt){.endpoint = "127.0.0.1:9", .code = FTRPC_ERPCTIMEDOUT};
    ft_rpcz_commit(sp);
    ft_strbuf o;
    ft_strbuf_init(&o, 0);
    assert_int_equal(ft_rpcz_render_at(&o, 1, 0), 0);
    int n = 0;
    for (const char *p = strstr(ft_strbuf_cstr(&o), "{\"endpoint\":"); p;
         p = strstr(p + 1, "{\"endpoint\":"))
        n++;
    assert_int_equal(n, FTRPC_RPCZ_MAX_ATTEMPTS);
    assert_non_null(strstr(ft_strbuf_cstr(&o), "\"attempts\":40,"));
    ft_strbuf_fini(&o);
    ft_rpcz_ring_free(r);
    ftrpc_rpcz_disable();
}

static void the_method_name_is_cut_to_fit(void **state)
{
    (void)state;
    ft_rpcz_span sp;
    ft_rpcz_set_method(&sp, "example.EchoService", 19, "Echo", 4);
    assert_string_equal(sp.method, "example.EchoService/Echo");
    char longer[300];
    memset(longer, 's', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    ft_rpcz_set_method(&sp, "a.B", 3, longer, strlen(longer));
    assert_int_equal(strlen(sp.method), sizeof sp.method - 1);
    assert_memory_equal(sp.method, "a.B/sss", 7);
    ft_rpcz_set_method(&sp, longer, strlen(longer), "M", 1);
    assert_int_equal(strlen(sp.method), sizeof sp.method - 1);
    assert_int_equal(sp.method[0], 's');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_switch_takes_a_bounded_capacity),
        cmocka_unit_test(the_ring_keeps_the_newest_calls_newest_first),
        cmocka_unit_test(a_ring_keeps_the_capacity_of_its_first_record),
        cmocka_unit_test(a_held_slot_drops_the_record_and_readers_skip_it),
        cmocka_unit_test(concurrent_writers_and_a_reader_see_only_whole_records),
        cmocka_unit_test(the_page_says_off_and_shows_attempts_as_text_and_json),
        cmocka_unit_test(a_record_shows_at_most_its_bounded_attempts),
        cmocka_unit_test(the_method_name_is_cut_to_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
