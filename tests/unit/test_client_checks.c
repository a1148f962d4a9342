/* The checks a tool makes on its users' options before making a client (ftrpc/client.h):
 * ftrpc_lb_name_valid knows every balancer ftrpc_client_options.lb takes, and
 * ftrpc_max_request_payload answers the payload whose widest request frame is exactly the limit;
 * and the client's own check of the dead-connection and backup_request_us options. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"
#include "ftrpc/client.h"
#include "protocol/baidu_std.h"

static void lb_names_are_the_ones_a_client_takes(void **state)
{
    static const char *const names[] = {"random", "rr",  "wrr",     "wrandom",
                                        "chash",  "p2c", "priority"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        assert_true(ftrpc_lb_name_valid(names[i]));
        ftrpc_client *c = NULL;
        ftrpc_client_options o = {.lb = names[i]};
        assert_int_equal(ftrpc_client_new("list://127.0.0.1:1", &o, &c), 0);
        ftrpc_client_free(c);
    }
    assert_false(ftrpc_lb_name_valid("fastest"));
    assert_false(ftrpc_lb_name_valid(""));
    assert_false(ftrpc_lb_name_valid(NULL));
}

/* The dead-connection options (client.md, Dead connections): -1 turns a mechanism off, other
 * negative values are refused at creation, as every bad option is. */
static void dead_connection_options_are_checked_at_creation(void **state)
{
    (void)state;
    static const struct {
        ftrpc_client_options o;
        int rc;
    } cases[] = {
        {{.tcp_keepalive_idle_s = -1, .tcp_user_timeout_ms = -1, .health_check_ms = -1}, 0},
        {{.tcp_keepalive_idle_s = 1,
          .tcp_keepalive_interval_s = 1,
          .tcp_keepalive_count = 1,
          .tcp_user_timeout_ms = 100,
          .health_check_ms = 10,
          .health_check_timeout_ms = 10},
         0},
        {{.tcp_keepalive_idle_s = -2}, FTRPC_EINVAL},
        {{.tcp_keepalive_interval_s = -1}, FTRPC_EINVAL},
        {{.tcp_keepalive_count = -1}, FTRPC_EINVAL},
        {{.tcp_user_timeout_ms = -2}, FTRPC_EINVAL},
        /* the kernel's largest (MAX_TCP_KEEPIDLE, _KEEPINTVL, _KEEPCNT), and one past each */
        {{.tcp_keepalive_idle_s = 32767,
          .tcp_keepalive_interval_s = 32767,
          .tcp_keepalive_count = 127},
         0},
        {{.tcp_keepalive_idle_s = 32768}, FTRPC_EINVAL},
        {{.tcp_keepalive_interval_s = 32768}, FTRPC_EINVAL},
        {{.tcp_keepalive_count = 128}, FTRPC_EINVAL},
        {{.health_check_ms = -2}, FTRPC_EINVAL},
        {{.health_check_timeout_ms = -1}, FTRPC_EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ftrpc_client *c = NULL;
        assert_int_equal(ftrpc_client_new("list://127.0.0.1:1", &cases[i].o, &c), cases[i].rc);
        ftrpc_client_free(c);
    }
}

/* backup_request_us (docs/backup-requests.md, The delay's resolution): -1 off, 0 "the ms field
 * decides", a delay up to backup_request_ms's range; anything else refused at creation, or when
 * the call is made. A positive us delay turns backups on as a positive ms one does (failover
 * becomes failbackup, failfast refuses it) and -1 wins over a positive backup_request_ms. */
static void backup_request_us_is_checked_and_takes_priority_over_ms(void **state)
{
    (void)state;
    static const struct {
        ftrpc_client_options o;
        int rc;
        ftrpc_fail_mode mode; /* the client's fail mode once made */
    } cases[] = {
        {{.backup_request_us = 300}, 0, FTRPC_FAILBACKUP},
        {{.backup_request_us = -1, .backup_request_ms = 5}, 0, FTRPC_FAIL_DEFAULT},
        {{.backup_request_us = -1, .backup_request_ms = 5, .fail_mode = FTRPC_FAILFAST},
         0,
         FTRPC_FAILFAST},
        {{.backup_request_us = FT_BACKUP_US_MAX}, 0, FTRPC_FAILBACKUP},
        {{.backup_request_us = -2}, FTRPC_EINVAL, 0},
        {{.backup_request_us = FT_BACKUP_US_MAX + 1}, FTRPC_EINVAL, 0},
        {{.backup_request_us = 300, .fail_mode = FTRPC_FAILFAST}, FTRPC_EINVAL, 0},
        {{.backup_request_us = 300, .fail_mode = FTRPC_FAILTRY}, FTRPC_EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ftrpc_client *c = NULL;
        assert_int_equal(ftrpc_client_new("list://127.0.0.1:1", &cases[i].o, &c), cases[i].rc);
        if (c && cases[i].mode != FTRPC_FAIL_DEFAULT)
            assert_int_equal(c->opts.fail_mode, cases[i].mode);
        if (c && cases[i].mode == FTRPC_FAIL_DEFAULT)
            assert_int_not_equal(c->opts.fail_mode, FTRPC_FAILBACKUP);
        ftrpc_client_free(c);
    }

    /* per call: refused before anything is sent */
    ftrpc_client *c = NULL;
    ftrpc_client_options co = {.timeout_ms = 200, .fail_mode = FTRPC_FAILFAST};
    assert_int_equal(ftrpc_client_new("list://127.0.0.1:1", &co, &c), 0);
    static const ftrpc_call_options bad[] = {
        {.backup_request_us = -2},
        {.backup_request_us = FT_BACKUP_US_MAX + 1},
        {.backup_request_us = 300}, /* a backup the client's failfast cannot send */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ftrpc_result r;
        assert_int_equal(ftrpc_call(c, "svc", "m", NULL, NULL, &bad[i], &r), FTRPC_EINVAL);
        ftrpc_result_fini(&r);
    }
    /* -1 in us opts the call out whatever its ms says: the call is made (and finds no server) */
    ftrpc_call_options out = {.backup_request_us = -1, .backup_request_ms = 5};
    ftrpc_result r;
    assert_int_not_equal(ftrpc_call(c, "svc", "m", NULL, NULL, &out, &r), FTRPC_EINVAL);
    ftrpc_result_fini(&r);
    ftrpc_client_free(c);

    /* the levels: the first non-zero of (us, ms) decides, us first */
    assert_int_equal(ft_backup_delay_us(0, 0), 0);
    assert_int_equal(ft_backup_delay_us(0, 2), 2000);
    assert_int_equal(ft_backup_delay_us(0, -1), -1);
    assert_int_equal(ft_backup_delay_us(300, 2), 300);
    assert_int_equal(ft_backup_delay_us(-1, 2), -1);
    assert_int_equal(ft_backup_delay_us(300, -1), 300);
}

/* The size of a frame carrying `payload` bytes with the widest meta a call can send. */
static size_t widest_frame(const char *service, const char *method, size_t payload)
{
    static uint8_t credential[1024];
    char *bytes = calloc(1, payload ? payload : 1);
    assert_non_null(bytes);
    ft_iobuf body, frame;
    ft_iobuf_init(&body);
    ft_iobuf_init(&frame);
    assert_int_equal(ft_iobuf_append(&body, bytes, payload), 0);
    ft_request_header h = {.service = service,
                           .method = method,
                           .correlation_id = INT64_MIN,
                           .timeout_ms = INT32_MAX,
                           .log_id = INT64_MIN,
                           .auth_data = credential,
                           .auth_len = sizeof credential};
    assert_int_equal(ft_baidu_std_pack_request(&frame, &h, &body, NULL), 0);
    size_t size = ft_iobuf_size(&frame);
    ft_iobuf_fini(&frame);
    ft_iobuf_fini(&body);
    free(bytes);
    return size;
}

static void max_payload_fills_the_frame_exactly(void **state)
{
    size_t max = 0;
    assert_int_equal(ftrpc_max_request_payload("example.EchoService", "Echo", 0, &max), 0);
    assert_true(max < FTRPC_DEFAULT_MAX_BODY_SIZE);
    assert_true(max > FTRPC_DEFAULT_MAX_BODY_SIZE - 2048);
    assert_int_equal(widest_frame("example.EchoService", "Echo", max), FTRPC_DEFAULT_MAX_BODY_SIZE);

    /* a smaller limit, a longer name: the meta grows by the name's bytes */
    size_t small = 0, longer = 0;
    assert_int_equal(ftrpc_max_request_payload("example.EchoService", "Echo", 4096, &small), 0);
    assert_int_equal(widest_frame("example.EchoService", "Echo", small), 4096);
    assert_int_equal(ftrpc_max_request_payload("example.EchoService", "EchoLonger", 4096, &longer),
                     0);
    assert_int_equal(longer, small - 6);
}

static void max_payload_refuses_what_no_call_could_carry(void **state)
{
    size_t max = 7;
    assert_int_equal(ftrpc_max_request_payload("example.EchoService", "Echo", 100, &max),
                     FTRPC_EINVAL); /* the meta with its 1 KiB credential does not fit */
    assert_int_equal(ftrpc_max_request_payload("", "Echo", 0, &max), FTRPC_EINVAL);
    assert_int_equal(ftrpc_max_request_payload("example.EchoService", NULL, 0, &max), FTRPC_EINVAL);
    assert_int_equal(ftrpc_max_request_payload("example.EchoService", "Echo", 0, NULL),
                     FTRPC_EINVAL);
    assert_int_equal(max, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lb_names_are_the_ones_a_client_takes),
        cmocka_unit_test(dead_connection_options_are_checked_at_creation),
        cmocka_unit_test(backup_request_us_is_checked_and_takes_priority_over_ms),
        cmocka_unit_test(max_payload_fills_the_frame_exactly),
        cmocka_unit_test(max_payload_refuses_what_no_call_could_carry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
