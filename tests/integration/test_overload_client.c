/* Overload control, the client side (docs/overload-client.md), over real sockets:
 *  - pushback: a fake baidu_std server answers FTRPC_ELIMIT with ftrpc_retry_after_ms set and
 *    counts the attempts it receives: > 0 holds its endpoint (the calls go elsewhere, and it is not
 *    suspended), -1 ends the call's retries, and many such answers trip no breaker;
 *    and a hold on every endpoint does not stop a first attempt (it goes to the hold that ends
 *    first);
 *  - adaptive throttling: against a server that refuses everything for overload the client sheds
 *    most calls itself (FTRPC_ETHROTTLED), and with throttle_k -1 sends them all; a refusal that
 *    carries a hold does not count for the throttle;
 *  - deadline propagation: a handler's downstream call (worker and sync, IO thread and async,
 *    the explicit parent) ends when the upstream deadline passes, not at its own longer timeout;
 *  - chain-stop: A -> B -> C, three servers a layer, failover at every hop and C failing: C sees
 *    the retries of the bottom hop only (retries + 1), not their product; and, on the wire, which
 *    answers carry the pushback -1 that stops the callers' retries (only an RPC error after a
 *    call below spent its retries: never a success, a business error or an error with no retry).
 * Bounded waits only; no assertion on how long anything took. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>

#include "base/iobuf.h"
#include "harness.h"
#include "protocol/baidu_std.h" /* the fake server parses requests with it */
#include "rpc_meta.pb-c.h"      /* and answers with ftrpc's own RpcMeta */

#if defined(__SANITIZE_ADDRESS__) || H_UNDER_TSAN
#define SLOW 4
#else
#define SLOW 1
#endif

/* ---- a fake overloaded server: baidu_std, every request answered with `code` and, when
 * retry_after_ms is not 0, the ftrpc_retry_after_ms extension (a brpc server would not send it; an
 * ftrpc server built from the limiter branch does) ---- */

enum { FAKE_MAX_CONNS = 8 };

typedef struct fake {
    int listen_fd;
    int port;
    char addr[32];
    pthread_t thread;
    atomic_int stop;
    atomic_int requests;       /* requests received */
    atomic_int code;           /* wire error_code answered (0: success, echoing the payload) */
    atomic_int retry_after_ms; /* 0: the field is not sent */
    atomic_int attempt_seen;   /* the largest ftrpc_attempt received */
} fake;

/* The answer, its meta packed by protobuf-c from ftrpc's own rpc_meta.proto (the extension field
 * included), payload echoed on success. */
static void fake_answer(fake *f, int fd, int64_t cid, const ft_iobuf *payload)
{
    int32_t code = atomic_load(&f->code);
    int32_t after = atomic_load(&f->retry_after_ms);
    Brpc__Policy__RpcResponseMeta rs = BRPC__POLICY__RPC_RESPONSE_META__INIT;
    rs.has_error_code = 1;
    rs.error_code = code;
    rs.has_ftrpc_retry_after_ms = after != 0;
    rs.ftrpc_retry_after_ms = after;
    Brpc__Policy__RpcMeta m = BRPC__POLICY__RPC_META__INIT;
    m.response = &rs;
    m.has_correlation_id = 1;
    m.correlation_id = cid;
    size_t meta_size = brpc__policy__rpc_meta__get_packed_size(&m);
    size_t psize = code == 0 && payload ? ft_iobuf_size(payload) : 0;
    uint8_t frame[12 + 64 + 256];
    assert_true(meta_size <= 64 && psize <= 256);
    h_header(frame, "PRPC", (uint32_t)(meta_size + psize), (uint32_t)meta_size);
    brpc__policy__rpc_meta__pack(&m, frame + 12);
    if (psize) ft_iobuf_copy_at(payload, 0, frame + 12 + meta_size, psize);
    h_raw_send(fd, frame, 12 + meta_size + psize);
}

static void *fake_main(void *arg)
{
    fake *f = arg;
    struct pollfd pfd[1 + FAKE_MAX_CONNS];
    ft_iobuf in[FAKE_MAX_CONNS];
    int n = 0;
    pfd[0] = (struct pollfd){.fd = f->listen_fd, .events = POLLIN};
    while (!atomic_load(&f->stop)) {
        if (poll(pfd, (nfds_t)(1 + n), 5) <= 0) continue;
        if ((pfd[0].revents & POLLIN) && n < FAKE_MAX_CONNS) {
            int fd = accept(f->listen_fd, NULL, NULL);
            if (fd >= 0) {
                pfd[1 + n] = (struct pollfd){.fd = fd, .events = POLLIN};
                ft_iobuf_init(&in[n]);
                n++;
            }
        }
        for (int i = 0; i < n; i++) {
            if (!(pfd[1 + i].revents & (POLLIN | POLLHUP | POLLERR)) || pfd[1 + i].fd < 0) continue;
            char buf[4096];
            ssize_t got = read(pfd[1 + i].fd, buf, sizeof buf);
            if (got <= 0) {
                close(pfd[1 + i].fd);
                pfd[1 + i].fd = -1; /* poll skips it */
                continue;
            }
            ft_iobuf_append(&in[i], buf, (size_t)got);
            for (;;) {
                ft_rpc_frame fr;
                const char *reason = NULL;
                ft_rpc_frame_init(&fr);
                ft_parse_status st = ft_baidu_std_parse(&in[i], 1 << 20, &fr, &reason);
                if (st == FT_PARSE_NEED_MORE) break;
                assert_int_equal(st, FT_PARSE_OK);
                if (strcmp(fr.service, "ftrpc.Control") != 0) { /* cancels are not attempts */
                    atomic_fetch_add(&f->requests, 1);
                    if (fr.attempt > atomic_load(&f->attempt_seen))
                        atomic_store(&f->attempt_seen, fr.attempt);
                    fake_answer(f, pfd[1 + i].fd, fr.correlation_id, &fr.payload);
                }
                ft_rpc_frame_fini(&fr);
            }
        }
    }
    for (int i = 0; i < n; i++) {
        if (pfd[1 + i].fd >= 0) close(pfd[1 + i].fd);
        ft_iobuf_fini(&in[i]);
    }
    return NULL;
}

static void fake_start(fake *f, int code, int retry_after_ms)
{
    memset(f, 0, sizeof *f);
    atomic_store(&f->code, code);
    atomic_store(&f->retry_after_ms, retry_after_ms);
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->listen_fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->listen_fd, 8), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(f->listen_fd, (struct sockaddr *)&sa, &len), 0);
    f->port = ntohs(sa.sin_port);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", f->port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(fake *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    close(f->listen_fd);
}

static ftrpc_client *client_for(const char *url, ftrpc_client_options *o)
{
    ftrpc_client *c = NULL;
    if (!o->timeout_ms) o->timeout_ms = 2000 * SLOW;
    assert_int_equal(ftrpc_client_new(url, o, &c), 0);
    return c;
}

static int call_echo(ftrpc_client *c, const ftrpc_call_options *co, ftrpc_result *r)
{
    ftrpc_buf *req = h_pattern_buf(32, 3);
    int rc = ftrpc_call(c, "test.Svc", "M", req, NULL, co, r);
    ftrpc_buf_free(req);
    return rc;
}

/* ---- pushback ---- */

/* An endpoint that answered ELIMIT with a 60 s pushback gets nothing more: the calls fail over to
 * the other endpoint and succeed, and the held endpoint is not suspended (ACTIVE, usable later). */
static void pushback_holds_the_endpoint_and_calls_go_elsewhere(void **state)
{
    (void)state;
    fake busy, ok;
    fake_start(&busy, 2004, 60000);
    fake_start(&ok, 0, 0);
    char url[96];
    snprintf(url, sizeof url, "list://%s,%s", busy.addr, ok.addr);
    ftrpc_client_options o = {.lb = "rr", .throttle_k = -1};
    ftrpc_client *c = client_for(url, &o);
    for (int i = 0; i < 20; i++) {
        ftrpc_result r;
        assert_int_equal(call_echo(c, NULL, &r), 0);
        ftrpc_result_fini(&r);
    }
    print_message("held endpoint received %d, the other %d\n", atomic_load(&busy.requests),
                  atomic_load(&ok.requests));
    assert_int_equal(atomic_load(&busy.requests), 1);
    assert_int_equal(atomic_load(&ok.requests), 20);
    /* the failover after the pushback said it was a retry (ftrpc_attempt 1); nothing else did */
    assert_int_equal(atomic_load(&busy.attempt_seen), 0);
    assert_int_equal(atomic_load(&ok.attempt_seen), 1);
    int64_t usable_in = 0;
    assert_int_equal(ftrpc_client_endpoint_state(c, busy.addr, &usable_in), FTRPC_ENDPOINT_ACTIVE);
    assert_true(usable_in > 0); /* held, not suspended */
    ftrpc_client_free(c);
    fake_stop(&busy);
    fake_stop(&ok);
}

/* Both endpoints held by a long pushback: a first attempt still goes out, to the endpoint whose
 * hold ends first, instead of failing at once in the client (which left the servers idle while
 * the client refused their calls: bench/overload.c's goodput). Retries off, so that every
 * request the fakes count is a first attempt. */
static void a_hold_on_every_endpoint_does_not_stop_first_attempts(void **state)
{
    (void)state;
    fake f[2];
    for (int i = 0; i < 2; i++)
        fake_start(&f[i], 2004, 60000);
    char url[96];
    snprintf(url, sizeof url, "list://%s,%s", f[0].addr, f[1].addr);
    ftrpc_client_options o = {.lb = "rr", .retries = FTRPC_NO_RETRY, .throttle_k = -1};
    ftrpc_client *c = client_for(url, &o);
    int unsent = 0;
    for (int i = 0; i < 10; i++) {
        ftrpc_result r;
        assert_int_equal(call_echo(c, NULL, &r), FTRPC_ELIMIT);
        if (r.attempts == 0) unsent++;
        ftrpc_result_fini(&r);
    }
    int total = atomic_load(&f[0].requests) + atomic_load(&f[1].requests);
    print_message("10 calls, both endpoints held after the first two: %d sent, %d unsent\n", total,
                  unsent);
    assert_int_equal(unsent, 0);
    assert_int_equal(total, 10);
    for (int i = 0; i < 2; i++) { /* held, still not suspended */
        int64_t usable_in = 0;
        assert_int_equal(ftrpc_client_endpoint_state(c, f[i].addr, &usable_in),
                         FTRPC_ENDPOINT_ACTIVE);
        assert_true(usable_in > 0);
    }
    ftrpc_client_free(c);
    for (int i = 0; i < 2; i++)
        fake_stop(&f[i]);
}

/* The only endpoint in TIMEOUT inside its retry_delay_ms (a mark code), then held by a pushback:
 * without the hold a first attempt goes there anyway (the all-unusable fallback), and the hold must
 * not stop it either, or a hold stops the cluster for as long as the TIMEOUT lasts. */
static void a_hold_on_a_lone_endpoint_in_timeout_does_not_stop_first_attempts(void **state)
{
    (void)state;
    fake f;
    fake_start(&f, 2001, 0); /* EINTERNAL, made a mark code below */
    char url[64];
    snprintf(url, sizeof url, "list://%s", f.addr);
    ftrpc_client_options o = {.retries = FTRPC_NO_RETRY,
                              .throttle_k = -1,
                              .health = {.retries_before_suspension = 100,
                                         .retry_delay_ms = 60000,
                                         .mark_codes = {FTRPC_EINTERNAL},
                                         .breaker_reject = -1}};
    ftrpc_client *c = client_for(url, &o);
    ftrpc_result r;
    assert_int_equal(call_echo(c, NULL, &r), FTRPC_EINTERNAL);
    ftrpc_result_fini(&r);
    int64_t usable_in = 0;
    assert_int_equal(ftrpc_client_endpoint_state(c, f.addr, &usable_in), FTRPC_ENDPOINT_TIMEOUT);
    atomic_store(&f.code, 2004);
    atomic_store(&f.retry_after_ms, 60000);
    for (int i = 0; i < 3; i++) { /* the first puts the hold, the others find it */
        assert_int_equal(call_echo(c, NULL, &r), FTRPC_ELIMIT);
        print_message("call %d: %d attempt(s): %s\n", i, r.attempts, r.error_text);
        assert_int_equal(r.attempts, 1);
        ftrpc_result_fini(&r);
    }
    assert_int_equal(atomic_load(&f.requests), 4);
    ftrpc_client_free(c);
    fake_stop(&f);
}

/* ftrpc_retry_after_ms -1: the call's retries stop at the first such answer, whatever `retries`
 * and the number of endpoints say. */
static void pushback_minus_one_stops_the_retries(void **state)
{
    (void)state;
    fake f[3];
    for (int i = 0; i < 3; i++)
        fake_start(&f[i], 2004, -1);
    char url[128];
    snprintf(url, sizeof url, "list://%s,%s,%s", f[0].addr, f[1].addr, f[2].addr);
    ftrpc_client_options o = {.retries = 3, .throttle_k = -1};
    ftrpc_client *c = client_for(url, &o);
    ftrpc_result r;
    assert_int_equal(call_echo(c, NULL, &r), FTRPC_ELIMIT);
    assert_int_equal(r.attempts, 1);
    ftrpc_result_fini(&r);
    int total = 0;
    for (int i = 0; i < 3; i++)
        total += atomic_load(&f[i].requests);
    assert_int_equal(total, 1);
    ftrpc_client_free(c);
    for (int i = 0; i < 3; i++)
        fake_stop(&f[i]);
}

/* A hostile or broken server's pushback values, on the endpoint a call meets first (rr from
 * f[0]) of three that all answer ELIMIT with it, retries 3: a huge one holds the endpoint for the
 * client's cap (60 s), not for weeks, and the call still fails over (3 attempts: the fourth finds
 * every endpoint held past its deadline and ends with the server's error); any negative one stops
 * the retries as -1 does (gRPC A6 reads every negative grpc-retry-pushback-ms so, and the gRPC path
 * did already: a value must not mean one thing on one protocol and another on the other). Before,
 * -7 and INT32_MIN were ignored on baidu_std and the call made its 4 attempts. */
static void absurd_pushback_values_are_capped_or_read_as_do_not_retry(void **state)
{
    (void)state;
    static const struct {
        int32_t value;
        int attempts;     /* the call's */
        int64_t max_hold; /* the held endpoint's usable_in_ms is in (0, max_hold]; 0: no hold */
    } cases[] = {
        {INT32_MAX, 3, 60000}, {60001, 3, 60000}, {-7, 1, 0}, {INT32_MIN, 1, 0}, {-1, 1, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        fake f[3];
        for (int i = 0; i < 3; i++)
            fake_start(&f[i], 2004, cases[k].value);
        char url[128];
        snprintf(url, sizeof url, "list://%s,%s,%s", f[0].addr, f[1].addr, f[2].addr);
        ftrpc_client_options o = {.lb = "rr", .retries = 3, .throttle_k = -1};
        ftrpc_client *c = client_for(url, &o);
        ftrpc_result r;
        assert_int_equal(call_echo(c, NULL, &r), FTRPC_ELIMIT);
        int total = 0;
        for (int i = 0; i < 3; i++)
            total += atomic_load(&f[i].requests);
        int64_t usable_in = 0;
        assert_int_equal(ftrpc_client_endpoint_state(c, f[0].addr, &usable_in),
                         FTRPC_ENDPOINT_ACTIVE);
        print_message("pushback %d: %d attempts, %d requests received, first endpoint usable in "
                      "%lld ms\n",
                      (int)cases[k].value, r.attempts, total, (long long)usable_in);
        assert_int_equal(r.attempts, cases[k].attempts);
        assert_true(total >= cases[k].attempts && total <= 4); /* the holds end none of them */
        if (cases[k].max_hold) {
            assert_true(usable_in > 0);
            assert_true(usable_in <= cases[k].max_hold);
        } else
            assert_int_equal(usable_in, 0);
        ftrpc_result_fini(&r);
        ftrpc_client_free(c);
        for (int i = 0; i < 3; i++)
            fake_stop(&f[i]);
    }
}

/* Every endpoint answers ELIMIT with a short pushback, for many calls: past the breaker's minimum
 * of 20 calls at 100% errors, yet no endpoint is suspended (without a pushback every one would
 * trip, up to max_suspended_ratio). */
static void overload_with_pushback_trips_no_breaker(void **state)
{
    (void)state;
    fake f[3];
    for (int i = 0; i < 3; i++)
        fake_start(&f[i], 2004, 1);
    char url[128];
    snprintf(url, sizeof url, "list://%s,%s,%s", f[0].addr, f[1].addr, f[2].addr);
    ftrpc_client_options o = {.retries = FTRPC_NO_RETRY, .throttle_k = -1};
    ftrpc_client *c = client_for(url, &o);
    int sent = 0;
    for (int i = 0; i < 300; i++) {
        ftrpc_result r;
        int rc = call_echo(c, NULL, &r);
        assert_true(rc == FTRPC_ELIMIT);
        sent += r.attempts;
        ftrpc_result_fini(&r);
        if (sent >= 90) break;
        h_sleep_ms(3); /* pacing: past the 1 ms holds, so that most calls are sent */
    }
    assert_true(sent >= 90); /* 30 an endpoint at least, on average */
    for (int i = 0; i < 3; i++) {
        int st = ftrpc_client_endpoint_state(c, f[i].addr, NULL);
        print_message("%s: %d requests, state %d\n", f[i].addr, atomic_load(&f[i].requests), st);
        assert_int_not_equal(st, FTRPC_ENDPOINT_SUSPENDED);
        assert_int_not_equal(st, FTRPC_ENDPOINT_PROBING);
    }
    ftrpc_client_free(c);
    for (int i = 0; i < 3; i++)
        fake_stop(&f[i]);
}

/* ---- adaptive throttling ---- */

static int run_against_overload(double k, int calls, int *throttled)
{
    fake f;
    fake_start(&f, 2004, 0); /* plain ELIMIT, no pushback */
    char url[64];
    snprintf(url, sizeof url, "list://%s", f.addr);
    /* the breaker would stop the calls too (plain ELIMIT feeds it): -1 sends them anyway, so that
     * the throttle alone decides */
    ftrpc_client_options o = {
        .retries = FTRPC_NO_RETRY, .throttle_k = k, .health.breaker_reject = -1};
    ftrpc_client *c = client_for(url, &o);
    *throttled = 0;
    for (int i = 0; i < calls; i++) {
        ftrpc_result r;
        int rc = call_echo(c, NULL, &r);
        assert_true(rc == FTRPC_ELIMIT || rc == FTRPC_ETHROTTLED);
        if (rc == FTRPC_ETHROTTLED) {
            (*throttled)++;
            assert_int_equal(r.attempts, 0); /* never sent */
        }
        ftrpc_result_fini(&r);
    }
    ftrpc_client_free(c);
    fake_stop(&f);
    return atomic_load(&f.requests);
}

/* The SRE book's rule with k = 2, the default: with every attempt refused, the rejection
 * probability after n requests is n / (n + 1), so of 200 calls only a handful reach the server.
 * With throttle_k -1 all 200 do. */
static void a_client_facing_overload_sheds_locally(void **state)
{
    (void)state;
    int throttled = 0;
    int reached = run_against_overload(0, 200, &throttled);
    print_message("k=2: %d of 200 calls reached the server, %d throttled\n", reached, throttled);
    assert_int_equal(reached + throttled, 200);
    assert_true(reached < 40); /* expected ~ln(200) = 5; 40 is far out in the tail */
    int reached_off = run_against_overload(-1, 200, &throttled);
    print_message("off: %d of 200 reached the server, %d throttled\n", reached_off, throttled);
    assert_int_equal(reached_off, 200);
    assert_int_equal(throttled, 0);
}

/* An ELIMIT that carries a hold (pushback > 0) is the hold's business alone: it does not count
 * as a refusal for the throttle, so that the client does not shed on top of the hold (k = 2, the
 * default, would throttle nearly all of 200 calls, as above). */
static void an_overload_answer_with_a_hold_does_not_feed_the_throttle(void **state)
{
    (void)state;
    fake f;
    fake_start(&f, 2004, 1);
    char url[64];
    snprintf(url, sizeof url, "list://%s", f.addr);
    ftrpc_client_options o = {.retries = FTRPC_NO_RETRY, .health.breaker_reject = -1};
    ftrpc_client *c = client_for(url, &o);
    int throttled = 0;
    for (int i = 0; i < 200; i++) {
        ftrpc_result r;
        int rc = call_echo(c, NULL, &r);
        assert_true(rc == FTRPC_ELIMIT || rc == FTRPC_ETHROTTLED);
        if (rc == FTRPC_ETHROTTLED) throttled++;
        ftrpc_result_fini(&r);
    }
    print_message("k=2, ELIMIT with a 1 ms hold: %d of 200 reached the server, %d throttled\n",
                  atomic_load(&f.requests), throttled);
    assert_int_equal(throttled, 0);
    assert_int_equal(atomic_load(&f.requests), 200);
    ftrpc_client_free(c);
    fake_stop(&f);
}

/* ---- deadline propagation ---- */

/* A downstream server whose handler never answers by itself: it keeps its calls until the test
 * lets them go (on the IO thread, so that a call is kept at once). */
typedef struct sink {
    ftrpc_server *server;
    char addr[64];
    pthread_mutex_t lock;
    ftrpc_server_call *held[16];
    int nheld;
    atomic_int received;
} sink;

static void sink_handler(ftrpc_server_call *call, void *arg)
{
    sink *s = arg;
    atomic_fetch_add(&s->received, 1);
    pthread_mutex_lock(&s->lock);
    if (s->nheld < 16)
        s->held[s->nheld++] = call;
    else
        ftrpc_server_call_fail(call, 2001, "sink full");
    pthread_mutex_unlock(&s->lock);
}

static void sink_start(sink *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    assert_int_equal(ftrpc_server_new(NULL, &s->server), 0);
    assert_int_equal(ftrpc_server_add_method(s->server, "down.Svc", "M", sink_handler, s, NULL), 0);
    assert_int_equal(ftrpc_server_start(s->server, "127.0.0.1:0"), 0);
    snprintf(s->addr, sizeof s->addr, "list://127.0.0.1:%d", ftrpc_server_port(s->server));
}

static void sink_stop(sink *s)
{
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->nheld; i++)
        ftrpc_server_call_fail(s->held[i], 2001, "released");
    s->nheld = 0;
    pthread_mutex_unlock(&s->lock);
    assert_int_equal(ftrpc_server_stop(s->server, 3000), 0);
    ftrpc_server_free(s->server);
    pthread_mutex_destroy(&s->lock);
}

/* The upstream server: its handler calls down.Svc/M through `down` (timeout 60 s) in one of three
 * ways and records how that call ended. */
enum { VIA_SYNC_WORKER, VIA_ASYNC_IO, VIA_EXPLICIT_PARENT };

typedef struct upstream {
    ftrpc_server *server;
    char url[64];
    ftrpc_client *down;
    int via;
    atomic_int done;     /* the downstream call ended */
    atomic_int code;     /* its code */
    atomic_int attempts; /* and its requests sent */
} upstream;

/* The one upstream of the running case, for the async callback (whose arg is the served call). */
static upstream *the_upstream;

static void downstream_done(ftrpc_result *r, void *arg)
{
    ftrpc_server_call *call = arg;
    upstream *u = the_upstream;
    atomic_store(&u->code, r->code);
    atomic_store(&u->attempts, r->attempts);
    atomic_store(&u->done, 1);
    ftrpc_server_call_fail(call, 2001, "downstream failed");
}

static void upstream_handler(ftrpc_server_call *call, void *arg)
{
    upstream *u = arg;
    ftrpc_call_options co = {.timeout_ms = 60000}; /* far longer than the upstream's deadline */
    if (u->via == VIA_SYNC_WORKER) {
        ftrpc_result r;
        ftrpc_call(u->down, "down.Svc", "M", NULL, NULL, &co, &r);
        atomic_store(&u->code, r.code);
        atomic_store(&u->attempts, r.attempts);
        atomic_store(&u->done, 1);
        ftrpc_result_fini(&r);
        ftrpc_server_call_fail(call, 2001, "downstream failed");
        return;
    }
    if (u->via == VIA_EXPLICIT_PARENT) co.parent = call;
    assert_int_equal(
        ftrpc_call_async(u->down, "down.Svc", "M", NULL, NULL, &co, downstream_done, call, NULL),
        0);
}

static void upstream_start(upstream *u, int via, const char *down_url, int propagation,
                           int margin_ms)
{
    memset(u, 0, sizeof *u);
    u->via = via;
    ftrpc_client_options o = {
        .timeout_ms = 60000, .deadline_propagation = propagation, .deadline_margin_ms = margin_ms};
    assert_int_equal(ftrpc_client_new(down_url, &o, &u->down), 0);
    assert_int_equal(ftrpc_server_new(NULL, &u->server), 0);
    ftrpc_method_options mo = {.run_mode = via == VIA_SYNC_WORKER ? FTRPC_RUN_IN_WORKER
                                                                  : FTRPC_RUN_IN_IO_THREAD};
    assert_int_equal(ftrpc_server_add_method(u->server, "up.Svc", "M", upstream_handler, u, &mo),
                     0);
    assert_int_equal(ftrpc_server_start(u->server, "127.0.0.1:0"), 0);
    snprintf(u->url, sizeof u->url, "list://127.0.0.1:%d", ftrpc_server_port(u->server));
}

static int upstream_done(void *arg)
{
    return atomic_load(&((upstream *)arg)->done);
}

static void check_downstream_ends_with_upstream_deadline(int via, int propagation, int margin_ms)
{
    sink s;
    sink_start(&s);
    upstream u;
    upstream_start(&u, via, s.addr, propagation, margin_ms);
    ftrpc_client *c = NULL;
    ftrpc_client_options o = {.timeout_ms = 300, .retries = FTRPC_NO_RETRY};
    assert_int_equal(ftrpc_client_new(u.url, &o, &c), 0);
    the_upstream = &u;
    ftrpc_result r;
    /* the upstream's answer ("downstream failed") and its caller's own deadline race */
    int rc = ftrpc_call(c, "up.Svc", "M", NULL, NULL, NULL, &r);
    assert_true(rc == FTRPC_ERPCTIMEDOUT || rc == FTRPC_EINTERNAL);
    ftrpc_result_fini(&r);
    /* the downstream call's own timeout is 60 s: only the inherited deadline ends it in time */
    assert_true(h_wait_until(upstream_done, &u, 10000 * SLOW));
    assert_int_equal(atomic_load(&u.code), FTRPC_ERPCTIMEDOUT);
    /* a margin past the whole deadline: the downstream call is not even sent */
    assert_int_equal(atomic_load(&s.received), margin_ms >= 300 ? 0 : 1);
    assert_int_equal(atomic_load(&u.attempts), margin_ms >= 300 ? 0 : 1);
    ftrpc_client_free(c);
    assert_int_equal(ftrpc_server_stop(u.server, 3000), 0);
    ftrpc_server_free(u.server);
    ftrpc_client_free(u.down);
    sink_stop(&s);
}

static void a_sync_call_in_a_worker_handler_inherits_the_deadline(void **state)
{
    (void)state;
    check_downstream_ends_with_upstream_deadline(VIA_SYNC_WORKER, 0, 0);
}

static void an_async_call_in_an_io_handler_inherits_the_deadline(void **state)
{
    (void)state;
    check_downstream_ends_with_upstream_deadline(VIA_ASYNC_IO, 0, 0);
}

/* With the thread's context ignored (deadline_propagation -1), the explicit parent still bounds
 * the call. */
static void an_explicit_parent_bounds_the_call(void **state)
{
    (void)state;
    check_downstream_ends_with_upstream_deadline(VIA_EXPLICIT_PARENT, -1, 0);
}

/* deadline_margin_ms longer than the upstream's whole deadline (300 ms): the downstream call fails
 * with FTRPC_ERPCTIMEDOUT at once, and the downstream server never sees it. */
static void a_margin_past_the_deadline_sends_nothing(void **state)
{
    (void)state;
    check_downstream_ends_with_upstream_deadline(VIA_SYNC_WORKER, 0, 100000);
}

/* ---- chain-stop ---- */

/* A layer: three servers whose handler calls the next layer (NULL: fails with EINTERNAL), on a
 * worker, with a sync call, and answers as it got answered. */
typedef struct layer {
    ftrpc_server *server[3];
    char url[200];
    ftrpc_client *next; /* NULL at the bottom */
    atomic_int received;
} layer;

static void layer_handler(ftrpc_server_call *call, void *arg)
{
    layer *l = arg;
    atomic_fetch_add(&l->received, 1);
    if (!l->next) {
        ftrpc_server_call_fail(call, 2001, "the bottom fails");
        return;
    }
    ftrpc_result r;
    ftrpc_call(l->next, "chain.Svc", "M", NULL, NULL, NULL, &r);
    ftrpc_result_fini(&r);
    ftrpc_server_call_fail(call, 2001, "below failed"); /* EINTERNAL: retried by the caller */
}

static ftrpc_client *chain_client(const char *url, int chain_stop)
{
    ftrpc_client *c = NULL;
    ftrpc_client_options o = {.timeout_ms = 5000 * SLOW,
                              .retries = 2,
                              .fail_mode = FTRPC_FAILOVER,
                              .retry_budget_ratio = -1, /* `retries` alone bounds them */
                              .throttle_k = -1,
                              .retry_chain_stop = chain_stop};
    assert_int_equal(ftrpc_client_new(url, &o, &c), 0);
    return c;
}

/* Three servers of `service`/M, each with 4 workers, and their list:// URL in url. */
static void trio_start(ftrpc_server *server[3], char *url, size_t cap, const char *service,
                       ftrpc_handler_cb handler, void *arg, ftrpc_run_mode mode)
{
    int off = snprintf(url, cap, "list://");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ftrpc_server_new(&(ftrpc_server_options){.worker_threads = 4}, &server[i]),
                         0);
        ftrpc_method_options mo = {.run_mode = mode};
        assert_int_equal(ftrpc_server_add_method(server[i], service, "M", handler, arg, &mo), 0);
        assert_int_equal(ftrpc_server_start(server[i], "127.0.0.1:0"), 0);
        off += snprintf(url + off, cap - (size_t)off, "%s127.0.0.1:%d", i ? "," : "",
                        ftrpc_server_port(server[i]));
    }
}

static void trio_stop(ftrpc_server *server[3])
{
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ftrpc_server_stop(server[i], 3000), 0);
        ftrpc_server_free(server[i]);
    }
}

static void layer_start(layer *l, ftrpc_client *next)
{
    memset(l, 0, sizeof *l);
    l->next = next;
    trio_start(l->server, l->url, sizeof l->url, "chain.Svc", layer_handler, l,
               FTRPC_RUN_IN_WORKER);
}

static void layer_stop(layer *l)
{
    trio_stop(l->server);
}

/* C's attempts for one call into A, through A -> B -> C with 2 retries at every hop. */
static int chain_attempts_at_c(int chain_stop)
{
    layer a, b, cl;
    layer_start(&cl, NULL);
    ftrpc_client *to_c = chain_client(cl.url, chain_stop);
    layer_start(&b, to_c);
    ftrpc_client *to_b = chain_client(b.url, chain_stop);
    layer_start(&a, to_b);
    ftrpc_client *to_a = chain_client(a.url, chain_stop);
    ftrpc_result r;
    assert_int_equal(ftrpc_call(to_a, "chain.Svc", "M", NULL, NULL, NULL, &r), FTRPC_EINTERNAL);
    /* with chain-stop, B's answer says the retries below were spent (pushback -1), and so A's */
    assert_int_equal(r.attempts, chain_stop < 0 ? 3 : 1);
    ftrpc_result_fini(&r);
    int at_c = atomic_load(&cl.received);
    assert_int_equal(atomic_load(&a.received), chain_stop < 0 ? 3 : 1);
    assert_int_equal(atomic_load(&b.received), chain_stop < 0 ? 9 : 1);
    print_message("chain-stop %s: A received %d, B %d, C %d\n", chain_stop < 0 ? "off" : "on",
                  atomic_load(&a.received), atomic_load(&b.received), at_c);
    ftrpc_client_free(to_a);
    layer_stop(&a);
    ftrpc_client_free(to_b);
    layer_stop(&b);
    ftrpc_client_free(to_c);
    layer_stop(&cl);
    return at_c;
}

/* Without chain-stop the retries multiply: (2 + 1)^3 = 27 attempts reach C. With it, the bottom
 * hop retries (2 + 1 = 3 attempts at C); B's error answer then carries pushback -1, since the call
 * it made spent its retries, and A's in turn (its call was told to stop): no layer above retries,
 * and C sees retries + 1 = 3 attempts per original call. */
static void chain_stop_keeps_retries_from_multiplying(void **state)
{
    (void)state;
    assert_int_equal(chain_attempts_at_c(-1), 27);
    assert_int_equal(chain_attempts_at_c(0), 3);
}

/* ---- chain-stop's way back: which answers carry pushback -1 ---- */

/* A downstream service: three servers (so that failover has somewhere to go) sharing one count;
 * the first `fail_first` calls fail with EINTERNAL (-1: all of them), the others succeed. */
typedef struct flaky {
    ftrpc_server *server[3];
    char url[200];
    int fail_first;
    atomic_int received;
} flaky;

static void flaky_handler(ftrpc_server_call *call, void *arg)
{
    flaky *f = arg;
    int n = atomic_fetch_add(&f->received, 1);
    if (f->fail_first < 0 || n < f->fail_first)
        ftrpc_server_call_fail(call, 2001, "flaky fails");
    else
        ftrpc_server_call_reply(call, NULL, NULL);
}

static void flaky_start(flaky *f, int fail_first)
{
    memset(f, 0, sizeof *f);
    f->fail_first = fail_first;
    trio_start(f->server, f->url, sizeof f->url, "down.Svc", flaky_handler, f,
               FTRPC_RUN_IN_IO_THREAD);
}

/* The middle service: its handler calls down.Svc/M (sync on a worker, or async from the IO thread
 * with the answer made in the callback) and answers success when that call succeeded, else
 * `fail_code` (an RPC error or a business error). */
typedef struct middle {
    ftrpc_server *server;
    ftrpc_client *down;
    int async;
    int explicit_parent;
    int fail_code;
} middle;

static void middle_answer(ftrpc_server_call *call, const middle *m, int ok)
{
    if (ok)
        ftrpc_server_call_reply(call, NULL, NULL);
    else
        ftrpc_server_call_fail(call, m->fail_code, "below failed");
}

static middle *the_middle;

static void middle_done(ftrpc_result *r, void *arg)
{
    middle_answer(arg, the_middle, r->kind == FTRPC_RESULT_OK);
}

static void middle_handler(ftrpc_server_call *call, void *arg)
{
    middle *m = arg;
    if (!m->async) {
        ftrpc_result r;
        int rc = ftrpc_call(m->down, "down.Svc", "M", NULL, NULL, NULL, &r);
        ftrpc_result_fini(&r);
        middle_answer(call, m, rc == 0);
        return;
    }
    ftrpc_call_options co = {.parent = m->explicit_parent ? call : NULL};
    assert_int_equal(
        ftrpc_call_async(m->down, "down.Svc", "M", NULL, NULL, &co, middle_done, call, NULL), 0);
}

/* One request to the middle service over a raw socket: the answer's ftrpc_retry_after_ms as it is
 * on the wire (0: absent), its error_code in *code. */
static int32_t raw_call_retry_after(int port, int32_t *code)
{
    int fd = h_raw_connect(port);
    assert_true(fd >= 0);
    ft_request_header h = {
        .service = "mid.Svc", .method = "M", .correlation_id = 7, .timeout_ms = 5000 * SLOW};
    ft_iobuf req;
    ft_iobuf_init(&req);
    assert_int_equal(ft_baidu_std_pack_request(&req, &h, NULL, NULL), 0);
    size_t n = ft_iobuf_size(&req);
    uint8_t out[256];
    assert_true(n <= sizeof out);
    ft_iobuf_copy_at(&req, 0, out, n);
    ft_iobuf_fini(&req);
    assert_int_equal(h_raw_send(fd, out, n), 0);
    uint8_t head[12], body[1024];
    assert_int_equal(h_raw_read_exact(fd, head, sizeof head, 10000 * SLOW), 1);
    uint32_t body_size =
        (uint32_t)head[4] << 24 | (uint32_t)head[5] << 16 | (uint32_t)head[6] << 8 | head[7];
    assert_true(body_size <= sizeof body);
    assert_int_equal(h_raw_read_exact(fd, body, body_size, 10000 * SLOW), 1);
    close(fd);
    ft_iobuf in;
    ft_iobuf_init(&in);
    ft_iobuf_append(&in, head, sizeof head);
    ft_iobuf_append(&in, body, body_size);
    ft_rpc_frame fr;
    ft_rpc_frame_init(&fr);
    const char *reason = NULL;
    assert_int_equal(ft_baidu_std_parse(&in, 1 << 20, &fr, &reason), FT_PARSE_OK);
    assert_int_equal(fr.correlation_id, 7);
    *code = fr.error_code;
    int32_t after = fr.retry_after_ms;
    ft_rpc_frame_fini(&fr);
    ft_iobuf_fini(&in);
    return after;
}

typedef struct way_back_case {
    const char *name;
    int fail_first; /* down.Svc's failures before it succeeds (-1: always) */
    int retries;    /* the middle's client: its retries (FTRPC_NO_RETRY: none) */
    int chain_stop; /* and its retry_chain_stop */
    int async;      /* the middle calls down async from the IO thread and answers in the callback */
    int explicit_parent;
    int fail_code;      /* what the middle answers when its call failed */
    int32_t want_code;  /* the middle's answer on the wire */
    int32_t want_after; /* its ftrpc_retry_after_ms (0: absent) */
    int want_down;      /* requests down.Svc received */
} way_back_case;

static const way_back_case way_back_cases[] = {
    {"sync, retries spent, RPC error: -1", -1, 2, 0, 0, 0, 2001, 2001, -1, 3},
    {"async callback, retries spent: -1", -1, 2, 0, 1, 0, 2001, 2001, -1, 3},
    {"async explicit parent, retries spent: -1", -1, 2, 0, 1, 1, 2001, 2001, -1, 3},
    {"success after a retry: no mark", 1, 2, 0, 0, 0, 2001, 0, 0, 2},
    {"async success after a retry: no mark", 1, 2, 0, 1, 0, 2001, 0, 0, 2},
    {"failed without a retry: no -1", -1, FTRPC_NO_RETRY, 0, 0, 0, 2001, 2001, 0, 1},
    {"retries spent, business error: no -1", -1, 2, 0, 0, 0, 3001, 3001, 0, 3},
    {"retry_chain_stop -1: no -1", -1, 2, -1, 0, 0, 2001, 2001, 0, 3},
};

/* A served call's error answer carries pushback -1 exactly when a call made on its behalf spent
 * its retries and the answer is an RPC error: never on a success, a business error, an error with
 * no retry below, or with chain-stop off. Observed on the wire, with a raw client. */
static void an_error_after_retries_below_stops_the_callers_retries(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof way_back_cases / sizeof way_back_cases[0]; i++) {
        const way_back_case *c = &way_back_cases[i];
        print_message("case: %s\n", c->name);
        flaky f;
        flaky_start(&f, c->fail_first);
        middle m = {
            .async = c->async, .explicit_parent = c->explicit_parent, .fail_code = c->fail_code};
        the_middle = &m;
        ftrpc_client_options o = {.timeout_ms = 5000 * SLOW,
                                  .retries = c->retries,
                                  .fail_mode = FTRPC_FAILOVER,
                                  .retry_budget_ratio = -1,
                                  .throttle_k = -1,
                                  .retry_chain_stop = c->chain_stop};
        assert_int_equal(ftrpc_client_new(f.url, &o, &m.down), 0);
        assert_int_equal(ftrpc_server_new(NULL, &m.server), 0);
        ftrpc_method_options mo = {.run_mode =
                                       c->async ? FTRPC_RUN_IN_IO_THREAD : FTRPC_RUN_IN_WORKER};
        assert_int_equal(ftrpc_server_add_method(m.server, "mid.Svc", "M", middle_handler, &m, &mo),
                         0);
        assert_int_equal(ftrpc_server_start(m.server, "127.0.0.1:0"), 0);
        int32_t code = -1;
        int32_t after = raw_call_retry_after(ftrpc_server_port(m.server), &code);
        assert_int_equal(code, c->want_code);
        assert_int_equal(after, c->want_after);
        assert_int_equal(atomic_load(&f.received), c->want_down);
        assert_int_equal(ftrpc_server_stop(m.server, 3000), 0);
        ftrpc_server_free(m.server);
        ftrpc_client_free(m.down);
        trio_stop(f.server);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pushback_holds_the_endpoint_and_calls_go_elsewhere),
        cmocka_unit_test(a_hold_on_every_endpoint_does_not_stop_first_attempts),
        cmocka_unit_test(a_hold_on_a_lone_endpoint_in_timeout_does_not_stop_first_attempts),
        cmocka_unit_test(pushback_minus_one_stops_the_retries),
        cmocka_unit_test(absurd_pushback_values_are_capped_or_read_as_do_not_retry),
        cmocka_unit_test(overload_with_pushback_trips_no_breaker),
        cmocka_unit_test(a_client_facing_overload_sheds_locally),
        cmocka_unit_test(an_overload_answer_with_a_hold_does_not_feed_the_throttle),
        cmocka_unit_test(a_sync_call_in_a_worker_handler_inherits_the_deadline),
        cmocka_unit_test(an_async_call_in_an_io_handler_inherits_the_deadline),
        cmocka_unit_test(an_explicit_parent_bounds_the_call),
        cmocka_unit_test(a_margin_past_the_deadline_sends_nothing),
        cmocka_unit_test(chain_stop_keeps_retries_from_multiplying),
        cmocka_unit_test(an_error_after_retries_below_stops_the_callers_retries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
