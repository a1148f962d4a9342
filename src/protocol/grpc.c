/* gRPC's wire pieces above HTTP/2: see grpc.h. Pure functions over bytes and a caller's clock. */
#include "protocol/grpc.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "ftrpc/common.h"
#include "protocol/baidu_std.h"

_Static_assert(FT_GRPC_BUSINESS_BASE == FTRPC_BUSINESS_CODE_MIN, "business codes start there");

int ft_h2_sniff(const ft_iobuf *in)
{
    char tmp[FT_H2_PREFACE_LEN];
    size_t n = ft_iobuf_size(in) < sizeof tmp ? ft_iobuf_size(in) : sizeof tmp;
    if (n == 0) return -1;
    const char *p = ft_iobuf_fetch(in, tmp, n);
    if (memcmp(p, FT_H2_PREFACE, n) != 0) return 0;
    return n == FT_H2_PREFACE_LEN ? 1 : -1;
}

/* brpc's framework codes as gRPC statuses: the table of docs/grpc.md (brpc's grpc.cpp maps the
 * same way where both have a code). */
static const struct {
    int32_t wire;
    int status;
} WIRE_TO_STATUS[] = {
    {-FTRPC_ENOSERVICE, FT_GRPC_UNIMPLEMENTED},
    {-FTRPC_ENOMETHOD, FT_GRPC_UNIMPLEMENTED},
    {-FTRPC_EREQUEST, FT_GRPC_INVALID_ARGUMENT},
    {-FTRPC_ERPCAUTH, FT_GRPC_UNAUTHENTICATED},
    {-FTRPC_ERPCTIMEDOUT, FT_GRPC_DEADLINE_EXCEEDED},
    {-FTRPC_EFAILEDSOCKET, FT_GRPC_UNAVAILABLE},
    {-FTRPC_EOVERCROWDED, FT_GRPC_RESOURCE_EXHAUSTED},
    {-FTRPC_EEOF, FT_GRPC_UNAVAILABLE},
    {-FTRPC_EINTERNAL, FT_GRPC_INTERNAL},
    {-FTRPC_ERESPONSE, FT_GRPC_INTERNAL},
    {-FTRPC_ELOGOFF, FT_GRPC_UNAVAILABLE},
    {-FTRPC_ELIMIT, FT_GRPC_RESOURCE_EXHAUSTED},
};

int ft_grpc_status_of(int32_t wire_code)
{
    if (wire_code == 0) return FT_GRPC_OK;
    for (size_t i = 0; i < sizeof WIRE_TO_STATUS / sizeof WIRE_TO_STATUS[0]; i++)
        if (WIRE_TO_STATUS[i].wire == wire_code) return WIRE_TO_STATUS[i].status;
    /* the business codes that ft_grpc_wire_code_of makes of gRPC's application statuses go back
     * as those statuses */
    int n = wire_code - FT_GRPC_BUSINESS_BASE;
    if (n > 0 && n <= 16 && ft_grpc_wire_code_of(n) == wire_code) return n;
    return FT_GRPC_UNKNOWN;
}

int32_t ft_grpc_wire_code_of(int status)
{
    switch (status) {
    case FT_GRPC_OK:
        return 0;
    case FT_GRPC_CANCELLED:
        return -FTRPC_ERPCTIMEDOUT; /* the server gave up on the call */
    case FT_GRPC_INVALID_ARGUMENT:
        return -FTRPC_EREQUEST;
    case FT_GRPC_DEADLINE_EXCEEDED:
        return -FTRPC_ERPCTIMEDOUT;
    case FT_GRPC_RESOURCE_EXHAUSTED:
        return -FTRPC_ELIMIT;
    case FT_GRPC_UNIMPLEMENTED:
        return -FTRPC_ENOMETHOD;
    case FT_GRPC_INTERNAL:
        return -FTRPC_EINTERNAL;
    case FT_GRPC_UNAVAILABLE:
        return -FTRPC_ELOGOFF;
    case FT_GRPC_UNAUTHENTICATED:
        return -FTRPC_ERPCAUTH;
    case FT_GRPC_NOT_FOUND:
    case FT_GRPC_ALREADY_EXISTS:
    case FT_GRPC_PERMISSION_DENIED:
    case FT_GRPC_FAILED_PRECONDITION:
    case FT_GRPC_ABORTED:
    case FT_GRPC_OUT_OF_RANGE:
    case FT_GRPC_DATA_LOSS:
        return FT_GRPC_BUSINESS_BASE + status;
    default:
        return -FTRPC_EINTERNAL; /* UNKNOWN, and statuses gRPC does not define */
    }
}

int32_t ft_grpc_parse_pushback(const char *v, size_t len)
{
    if (len == 0) return -1;
    int64_t ms = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        if (ms < INT32_MAX) ms = ms * 10 + (v[i] - '0');
    }
    return ms < INT32_MAX ? (int32_t)ms : INT32_MAX;
}

int ft_grpc_parse_timeout(const char *v, size_t len, int64_t *ms)
{
    if (len < 2 || len > 9) return -1;
    int64_t n = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        n = n * 10 + (v[i] - '0');
    }
    int64_t out;
    switch (v[len - 1]) {
    case 'H':
        out = n * 3600000;
        break;
    case 'M':
        out = n * 60000;
        break;
    case 'S':
        out = n * 1000;
        break;
    case 'm':
        out = n;
        break;
    case 'u':
        out = (n + 999) / 1000;
        break;
    case 'n':
        out = (n + 999999) / 1000000;
        break;
    default:
        return -1;
    }
    *ms = out > INT32_MAX ? INT32_MAX : out;
    return 0;
}

/* digits then the unit, no snprintf: this runs for every call a gRPC client sends */
static size_t format_amount(int64_t v, char unit, char *out)
{
    char tmp[8];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0); /* v <= 99999999: 8 digits at most */
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = unit;
    out[n + 1] = '\0';
    return n + 1;
}

size_t ft_grpc_format_timeout(int64_t ms, char *out)
{
    if (ms < 0) ms = 0;
    if (ms <= 99999999) return format_amount(ms, 'm', out);
    int64_t s = (ms + 999) / 1000;
    if (s > 99999999) s = 99999999;
    return format_amount(s, 'S', out);
}

int ft_grpc_unframe(ft_iobuf *body, int gzip, size_t max, ft_iobuf *msg, int *status,
                    const char **reason)
{
    uint8_t h[5];
    if (ft_iobuf_copy_at(body, 0, h, sizeof h) != sizeof h) {
        *status = FT_GRPC_INTERNAL;
        *reason = "the request has no whole gRPC message";
        return -1;
    }
    size_t len = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
    size_t have = ft_iobuf_size(body) - sizeof h;
    if (h[0] > 1) {
        *status = FT_GRPC_INTERNAL;
        *reason = "bad compressed flag in the message prefix";
        return -1;
    }
    if (len > max) {
        *status = FT_GRPC_RESOURCE_EXHAUSTED;
        *reason = "request message larger than max_body_size";
        return -1;
    }
    if (have < len) {
        *status = FT_GRPC_INTERNAL;
        *reason = "the request's message is cut short";
        return -1;
    }
    if (have > len) {
        *status = FT_GRPC_UNIMPLEMENTED;
        *reason = "more than one request message: streaming calls are not supported by ftrpc";
        return -1;
    }
    if (h[0] == 1 && !gzip) {
        *status = FT_GRPC_UNIMPLEMENTED;
        *reason = "compressed message without a supported grpc-encoding (identity, gzip)";
        return -1;
    }
    ft_iobuf_pop_front(body, sizeof h);
    if (h[0] == 0) {
        ft_iobuf_move(msg, body);
        return 0;
    }
    if (ft_inflate_iobuf(body, 1, max, msg, reason) != 0) {
        *status = FT_GRPC_INTERNAL;
        return -1;
    }
    ft_iobuf_clear(body);
    return 0;
}

int ft_grpc_frame(ft_iobuf *out, const ft_iobuf *msg)
{
    size_t len = msg ? ft_iobuf_size(msg) : 0;
    if (len > UINT32_MAX) return FTRPC_EINVAL;
    uint8_t h[5] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                    (uint8_t)len};
    if (ft_iobuf_append(out, h, sizeof h) != 0) return FTRPC_ENOMEM;
    if (len && ft_iobuf_append_buf(out, msg) != 0) return FTRPC_ENOMEM;
    return 0;
}

size_t ft_grpc_message_encode(const char *text, char *out, size_t cap)
{
    static const char HEX[] = "0123456789ABCDEF";
    size_t n = 0;
    if (cap == 0) return 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            if (n + 1 >= cap) break;
            out[n++] = (char)*p;
        } else {
            if (n + 3 >= cap) break;
            out[n++] = '%';
            out[n++] = HEX[*p >> 4];
            out[n++] = HEX[*p & 15];
        }
    }
    out[n] = '\0';
    return n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

size_t ft_grpc_message_decode(char *text, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (text[i] == '%' && i + 2 < len && (hi = hexval(text[i + 1])) >= 0 &&
            (lo = hexval(text[i + 2])) >= 0) {
            text[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            text[o++] = text[i];
        }
    }
    text[o] = '\0';
    return o;
}

int ft_rate_bucket_take(ft_rate_bucket *b, uint32_t burst, uint32_t per_second, int64_t now_ns)
{
    if (!b->started) {
        b->started = 1;
        b->tokens = burst;
        b->last_ns = now_ns;
    } else if (now_ns > b->last_ns) {
        b->tokens += (double)(now_ns - b->last_ns) * per_second / 1e9;
        if (b->tokens > burst) b->tokens = burst;
        b->last_ns = now_ns;
    }
    if (b->tokens < 1) return -1;
    b->tokens -= 1;
    return 0;
}
