/* libFuzzer target for the baidu_std parser (and, through re-packing, the packer).
 *
 * Each input is parsed twice: once from one contiguous block, once arriving in a few pieces cut
 * where the input says (pieces.h), each a block of user memory, with a parse after each piece (a
 * connection's reads: frames wait for their last bytes, and a header or meta cut across pieces is
 * read on the gathering path). Both passes must give the same sequence of results. Every frame
 * that parses OK uncompressed is packed again and parsed again, and must come back with the same
 * fields and bytes. Any disagreement aborts (a finding). max_body is kept at 1 MiB so that a
 * decompression bomb stays cheap.
 *
 * A third pass parses the contiguous input again with the hand-written meta decoder switched off
 * (ft_baidu_std_fast_meta = 0: protobuf-c for every meta), and every frame must decode to the same
 * fields: the fast decoder may only accept what protobuf-c reads the same way. Repacking runs with
 * the fast encoder on; the golden-byte unit tests hold it to protobuf-c's bytes. The stack encoder
 * (ft_baidu_std_encode_*) must write the same bytes as the packer for every frame it accepts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pieces.h"
#include "protocol/baidu_std.h"

#define FUZZ_MAX_BODY (1u << 20)
#define MAX_RECORDS 64

typedef struct record {
    ft_parse_status status;
    int64_t correlation_id;
    size_t payload, attachment;
    const char *reason;
    uint64_t fields; /* a hash of every decoded meta field */
} record;

typedef struct run {
    record r[MAX_RECORDS];
    size_t n;
    size_t left; /* bytes left in the input when parsing stopped */
} run;

static void check(int ok)
{
    if (!ok) abort();
}

/* Compares two buffers a chunk at a time through the stack (malloc costs the most under ASan). */
static int same_buf(const ft_iobuf *a, const ft_iobuf *b)
{
    size_t n = ft_iobuf_size(a);
    if (n != ft_iobuf_size(b)) return 0;
    uint8_t ca[256], cb[256];
    for (size_t off = 0; off < n; off += sizeof ca) {
        size_t k = n - off < sizeof ca ? n - off : sizeof ca;
        ft_iobuf_copy_at(a, off, ca, k);
        ft_iobuf_copy_at(b, off, cb, k);
        if (memcmp(ca, cb, k) != 0) return 0;
    }
    return 1;
}

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* Packs f again, parses the result and compares. */
static void repack(const ft_rpc_frame *f)
{
    ft_iobuf wire;
    ft_iobuf_init(&wire);
    int rc;
    uint8_t small[FT_BAIDU_STD_SMALL_FRAME];
    size_t small_n;
    if (f->is_request) {
        ft_request_header h = {.service = f->service,
                               .method = f->method,
                               .correlation_id = f->correlation_id,
                               .timeout_ms = f->timeout_ms,
                               .log_id = f->log_id,
                               .auth_data = f->auth_data,
                               .auth_len = f->auth_len};
        rc = ft_baidu_std_pack_request(&wire, &h, &f->payload, &f->attachment);
        small_n = ft_baidu_std_encode_request(small, &h, &f->payload, &f->attachment);
    } else {
        rc = ft_baidu_std_pack_response(&wire, f->correlation_id, f->error_code, f->error_text,
                                        &f->payload, &f->attachment);
        small_n = ft_baidu_std_encode_response(small, f->correlation_id, f->error_code,
                                               f->error_text, &f->payload, &f->attachment);
    }
    check(rc == 0);
    if (small_n) { /* the stack encoder, when the frame fits it, writes the packer's bytes */
        uint8_t packed[FT_BAIDU_STD_SMALL_FRAME];
        check(small_n == ft_iobuf_size(&wire) && ft_iobuf_copy_at(&wire, 0, packed, small_n) &&
              memcmp(small, packed, small_n) == 0);
    }
    ft_rpc_frame g;
    const char *reason = NULL;
    check(ft_baidu_std_parse(&wire, FUZZ_MAX_BODY + 1024 * 1024, &g, &reason) == FT_PARSE_OK);
    check(ft_iobuf_size(&wire) == 0);
    check(g.is_request == f->is_request);
    check(g.correlation_id == f->correlation_id);
    check(same_str(g.service, f->service) && same_str(g.method, f->method));
    check(g.timeout_ms == (f->is_request && f->timeout_ms <= 0 ? 1 : f->timeout_ms));
    check(g.log_id == f->log_id);
    if (f->is_request) {
        check(g.auth_len == f->auth_len && (g.auth_data == NULL) == (f->auth_data == NULL));
        check(f->auth_len == 0 || memcmp(g.auth_data, f->auth_data, f->auth_len) == 0);
    } else {
        /* authentication_data means something on requests only: the parser keeps what a response
         * carries, the response packer writes none (corpus: response_with_auth_data) */
        check(g.auth_len == 0);
    }
    check(g.error_code == f->error_code && same_str(g.error_text, f->error_text));
    check(same_buf(&g.payload, &f->payload) && same_buf(&g.attachment, &f->attachment));
    ft_rpc_frame_fini(&g);
    ft_iobuf_fini(&wire);
}

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* A number in one step, not byte by byte: the fuzz build traces every comparison of a loop, and
 * this hash runs on every frame of every pass. */
static uint64_t mix_int(uint64_t h, uint64_t v)
{
    h = (h ^ v) * 1099511628211ull;
    return h ^ (h >> 32);
}

static uint64_t mix_str(uint64_t h, const char *s)
{
    return s ? mix(mix_int(h, 's'), s, strlen(s) + 1) : mix_int(h, 'n');
}

static uint64_t fields_hash(const ft_rpc_frame *f)
{
    uint64_t h = 1469598103934665603ull;
    h = mix_int(h, (uint64_t)f->is_request);
    h = mix_int(h, (uint64_t)f->correlation_id);
    h = mix_str(h, f->service);
    h = mix_str(h, f->method);
    h = mix_int(h, (uint64_t)f->timeout_ms);
    h = mix_int(h, (uint64_t)f->log_id);
    h = mix_int(h, f->auth_len);
    h = f->auth_data ? mix(mix_int(h, 'a'), f->auth_data, f->auth_len) : mix_int(h, 'n');
    h = mix_int(h, (uint64_t)f->error_code);
    h = mix_str(h, f->error_text);
    h = mix_int(h, (uint64_t)f->compress_type);
    return h;
}

/* Parses frames off the front of `in` into out until one needs more bytes or the stream must
 * close. That status is recorded only when `last` (the input is all in) or on CLOSE: fed in
 * pieces, every piece but the last may end in NEED_MORE. Returns 1 when feeding should stop: on
 * CLOSE, or once MAX_RECORDS frames were read (every frame is parsed from the same state, so more
 * of them in one input add work, not behaviour: inputs of a thousand 12-byte frames cost
 * milliseconds). */
static int parse_frames(ft_iobuf *in, run *out, int do_repack, int last)
{
    while (out->n < MAX_RECORDS) {
        ft_rpc_frame f;
        const char *reason = NULL;
        size_t before = ft_iobuf_size(in);
        /* the size a reader reserves for: never more than max_body + header, and exactly the
         * frame parse cuts when it cuts one */
        size_t announced = ft_baidu_std_frame_size(in, FUZZ_MAX_BODY);
        check(announced <= (size_t)FUZZ_MAX_BODY + FT_BAIDU_STD_HEADER_SIZE);
        ft_parse_status st = ft_baidu_std_parse(in, FUZZ_MAX_BODY, &f, &reason);
        check(st != FT_PARSE_OK || announced == before - ft_iobuf_size(in));
        int done = st != FT_PARSE_OK && st != FT_PARSE_BAD_FRAME;
        if (!done || last || st == FT_PARSE_CLOSE) {
            record *r = &out->r[out->n++];
            r->status = st;
            r->correlation_id = f.correlation_id;
            r->payload = ft_iobuf_size(&f.payload);
            r->attachment = ft_iobuf_size(&f.attachment);
            r->reason = reason;
            r->fields = done ? 0 : fields_hash(&f);
        }
        if (!done) {
            /* a frame is at least its header: the loop always ends */
            check(ft_iobuf_size(in) + FT_BAIDU_STD_HEADER_SIZE <= before);
            check(reason != NULL || st == FT_PARSE_OK);
            if (st == FT_PARSE_OK && do_repack && f.compress_type == FT_COMPRESS_NONE) repack(&f);
            ft_rpc_frame_fini(&f);
            continue;
        }
        check(st == FT_PARSE_NEED_MORE || st == FT_PARSE_CLOSE);
        check(st == FT_PARSE_NEED_MORE || reason != NULL);
        check(ft_iobuf_size(in) == before); /* nothing consumed */
        ft_rpc_frame_fini(&f);
        return st == FT_PARSE_CLOSE;
    }
    return 1;
}

static void parse_all(ft_iobuf *in, run *out, int do_repack)
{
    out->n = 0;
    (void)parse_frames(in, out, do_repack, 1);
    out->left = ft_iobuf_size(in);
}

static int expected_sniff(const uint8_t *data, size_t size)
{
    if (size == 0) return -1;
    if (memcmp(data, "PRPC", size < 4 ? size : 4) != 0) return 0;
    return size < 4 ? -1 : 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static run a, b, c;
    ft_iobuf in;

    ft_iobuf_init(&in);
    if (size > 0) check(ft_iobuf_append(&in, data, size) == 0);
    check(ft_baidu_std_sniff(&in) == expected_sniff(data, size));
    parse_all(&in, &a, 1);
    ft_iobuf_fini(&in);

    /* the same bytes arriving in pieces (pieces.h), each its own block, with a parse after each:
     * a frame or its header cut across pieces is read on the gathering path */
    size_t ends[FUZZ_MAX_PIECES];
    size_t npieces = fuzz_pieces(data, size, ends), appended = 0;
    ft_iobuf_init(&in);
    b.n = 0;
    for (size_t k = 0; k < npieces; k++) {
        check(ft_iobuf_append_user(&in, data + appended, ends[k] - appended, NULL, NULL) == 0);
        appended = ends[k];
        if (parse_frames(&in, &b, 0, k + 1 == npieces)) break;
    }
    b.left = ft_iobuf_size(&in) + size - appended; /* left unread, appended or not */
    ft_iobuf_fini(&in);

    /* the same bytes again, every meta through protobuf-c */
    ft_iobuf_init(&in);
    if (size > 0) check(ft_iobuf_append(&in, data, size) == 0);
    ft_baidu_std_fast_meta = 0;
    parse_all(&in, &c, 0);
    ft_baidu_std_fast_meta = 1;
    ft_iobuf_fini(&in);

    check(a.n == b.n && a.left == b.left && a.n == c.n && a.left == c.left);
    for (size_t i = 0; i < a.n; i++) {
        check(a.r[i].status == b.r[i].status && a.r[i].status == c.r[i].status);
        check(a.r[i].correlation_id == b.r[i].correlation_id);
        check(a.r[i].correlation_id == c.r[i].correlation_id);
        check(a.r[i].payload == b.r[i].payload && a.r[i].attachment == b.r[i].attachment);
        check(a.r[i].payload == c.r[i].payload && a.r[i].attachment == c.r[i].attachment);
        check(same_str(a.r[i].reason, b.r[i].reason) && same_str(a.r[i].reason, c.r[i].reason));
        check(a.r[i].fields == b.r[i].fields && a.r[i].fields == c.r[i].fields);
    }
    return 0;
}
