/* baidu_std codec: cuts frames out of a read buffer and packs frames into a write buffer.
 *
 * Parsing checks, in this order, and stops at the first failure:
 *   magic, body_size <= max_body, meta_size <= body_size    -> FT_PARSE_CLOSE (framing broken)
 *   whole frame present                                      -> else FT_PARSE_NEED_MORE
 *   RpcMeta unpacks                                          -> FT_PARSE_CLOSE
 *   attachment_size, compress_type, checksum, decompression  -> FT_PARSE_BAD_FRAME (consumed)
 * Nothing is consumed unless the status is OK or BAD_FRAME, so a caller may retry after NEED_MORE
 * with more bytes appended. Payload and attachment are cut from the input without copying; only a
 * gzip/zlib payload is copied (inflated into fresh blocks, never past max_body).
 *
 * Memory for the unpacked meta: protobuf-c allocates each string and sub-message separately, so a
 * plain unpack costs 3-5 mallocs per frame. Instead each frame takes one arena (2 KiB, enough for
 * any ordinary meta; larger allocations spill to malloc and are freed with the arena) from a small
 * per-thread free list, when the meta needs memory at all (the hand-written decoder takes it at the
 * first string; an answer without error text needs none). The arena is the frame's meta_owner
 * (NULL when none was taken) and lives until ft_rpc_frame_fini, so
 * frames outlive later parses; a frame fini'ed on another thread returns its arena to that
 * thread's list, as iobuf blocks do. Measured figures are in the final report of the protocol
 * branch and in bench/ (parse of a small request frame, arena vs plain malloc).
 *
 * The send side never compresses and never checksums; it always sends timeout_ms in requests and
 * error_code in responses (as brpc does), and attachment_size only when > 0.
 */
#include "protocol/baidu_std.h"

#include <assert.h>
#include <limits.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "base/crc32c.h"
#include "base/thread_exit.h"
#include "ftrpc/common.h"
#include "rpc_meta.pb-c.h"

typedef Brpc__Policy__RpcMeta rpc_meta;

enum { CHECKSUM_NONE = 0, CHECKSUM_CRC32C = 1 };

/* ---- per-frame arena for protobuf-c ---- */

enum { ARENA_BYTES = 2048, ARENA_CACHE_MAX = 32 };

/* An allocation that did not fit the arena; the header keeps max alignment for what follows. */
typedef union spill {
    union spill *next;
    max_align_t align;
} spill;

typedef struct meta_arena {
    struct meta_arena *next_free; /* link in the per-thread free list */
    spill *spills;                /* malloc'ed overflow, freed when the arena is released */
    size_t used;
    rpc_meta *meta;
    alignas(max_align_t) char data[ARENA_BYTES];
} meta_arena;

static _Thread_local meta_arena *arena_free_list;
static _Thread_local int arena_free_len;
/* 0: no exit hook yet; 1: the free list is freed when the thread exits; 2: no caching. Blocking
 * callers parse their own answers on their threads (client/call.c), so arenas are cached on user
 * threads too, which come and go. */
static _Thread_local int arena_cache_state;

static void arena_cache_drain(void)
{
    arena_cache_state = 2;
    while (arena_free_list) {
        meta_arena *a = arena_free_list;
        arena_free_list = a->next_free;
        free(a);
    }
    arena_free_len = 0;
}

static inline __attribute__((always_inline)) meta_arena *arena_get(void)
{
    meta_arena *a = arena_free_list;
    if (a) {
        arena_free_list = a->next_free;
        arena_free_len--;
    } else {
        a = malloc(sizeof *a);
        if (!a) return NULL;
    }
    a->next_free = NULL;
    a->spills = NULL;
    a->used = 0;
    a->meta = NULL;
    return a;
}

static void arena_put(meta_arena *a)
{
    while (a->spills) {
        spill *s = a->spills;
        a->spills = s->next;
        free(s);
    }
    if (arena_free_len < ARENA_CACHE_MAX &&
        ft_thread_cache_usable(&arena_cache_state, arena_cache_drain)) {
        a->next_free = arena_free_list;
        arena_free_list = a;
        arena_free_len++;
    } else {
        free(a);
    }
}

static void *arena_alloc(void *data, size_t size)
{
    meta_arena *a = data;
    const size_t align = alignof(max_align_t);
    if (size > SIZE_MAX - sizeof(spill) - align) return NULL;
    size_t rounded = (size + align - 1) & ~(align - 1);
    if (rounded <= ARENA_BYTES - a->used) {
        void *p = a->data + a->used;
        a->used += rounded;
        return p;
    }
    spill *s = malloc(sizeof(spill) + size);
    if (!s) return NULL;
    s->next = a->spills;
    a->spills = s;
    return s + 1;
}

static void arena_free(void *data, void *ptr)
{
    /* everything goes back at once in arena_put */
    (void)data;
    (void)ptr;
}

/* ---- frames ---- */

void ft_rpc_frame_init(ft_rpc_frame *f)
{
    f->is_request = 0;
    f->correlation_id = -1;
    f->service = NULL;
    f->method = NULL;
    f->timeout_ms = 0;
    f->log_id = 0;
    f->tied = 0;
    f->started = 0;
    f->auth_data = NULL;
    f->auth_len = 0;
    f->attempt = 0;
    f->error_code = 0;
    f->retry_after_ms = 0;
    f->error_text = "";
    f->compress_type = FT_COMPRESS_NONE;
    ft_iobuf_init(&f->payload);
    ft_iobuf_init(&f->attachment);
    f->meta_owner = NULL;
}

void ft_rpc_frame_fini(ft_rpc_frame *f)
{
    ft_iobuf_fini(&f->payload);
    ft_iobuf_fini(&f->attachment);
    if (f->meta_owner) arena_put(f->meta_owner);
    ft_rpc_frame_init(f);
}

/* ---- parsing ---- */

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Whether the first n (< 4 allowed) bytes agree with a 4-byte magic. */
static int magic_prefix(const uint8_t *p, size_t n, const char *magic)
{
    /* a whole header, the common case, with a constant length: one 4-byte compare, no call */
    if (n >= 4) return memcmp(p, magic, 4) == 0;
    return memcmp(p, magic, n) == 0;
}

static uint32_t iobuf_crc32c(const ft_iobuf *b, uint32_t crc)
{
    for (uint32_t i = b->start; i < b->end; i++) {
        const ft_slice *s = &b->slices[i];
        crc = ft_crc32c_extend(crc, s->block->data + s->off, s->len);
    }
    return crc;
}

int ft_inflate_iobuf(const ft_iobuf *src, int gzip, size_t limit, ft_iobuf *dst,
                     const char **reason)
{
    if (src->size == 0) return 0; /* an empty message stays empty, compressed or not */
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, gzip ? 15 + 16 : 15) != Z_OK) {
        *reason = "out of memory inflating the payload";
        return -1;
    }
    int ret = -1;
    uint32_t next = src->start;
    size_t total = 0;
    for (;;) {
        if (zs.avail_in == 0 && next < src->end) {
            const ft_slice *s = &src->slices[next++];
            zs.next_in = (Bytef *)(s->block->data + s->off);
            zs.avail_in = s->len;
        }
        char *out;
        size_t room;
        if (ft_iobuf_reserve(dst, 1, &out, &room) != 0) {
            *reason = "out of memory inflating the payload";
            break;
        }
        if (room > UINT_MAX) room = UINT_MAX;
        uInt in_before = zs.avail_in;
        zs.next_out = (Bytef *)out;
        zs.avail_out = (uInt)room;
        int rc = inflate(&zs, Z_NO_FLUSH);
        size_t produced = room - zs.avail_out;
        if (produced > limit - total) {
            *reason = "decompressed payload larger than max_body";
            break;
        }
        total += produced;
        ft_iobuf_commit(dst, produced);
        if (rc == Z_STREAM_END) {
            if (zs.avail_in != 0 || next < src->end) {
                *reason = "trailing bytes after the compressed payload";
                break;
            }
            ret = 0;
            break;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            *reason = "compressed payload does not decompress";
            break;
        }
        /* no progress with all input fed means the stream is cut short */
        if (produced == 0 && zs.avail_in == in_before && next >= src->end) {
            *reason = "compressed payload is truncated";
            break;
        }
    }
    inflateEnd(&zs);
    /* dst is a frame's payload, not a read buffer: drop the write block so that the buffer is
     * an ordinary one (its slices keep their own references) */
    if (dst->write_block) {
        ft_block_release(dst->write_block);
        dst->write_block = NULL;
    }
    if (ret != 0) ft_iobuf_clear(dst);
    return ret;
}

/* What parse_body needs from the meta, whichever decoder read it. */
typedef struct body_meta {
    int has_attachment_size;
    int32_t attachment_size;
    int32_t checksum_type;
    int has_checksum_value;
    size_t checksum_len;
    uint8_t checksum[4]; /* copied when checksum_len == 4 (the only length accepted) */
    int checksum_with_attachment;
} body_meta;

static void fill_frame(ft_rpc_frame *out, body_meta *bm, const rpc_meta *m)
{
    static const uint8_t empty_bytes[1];
    out->correlation_id = m->has_correlation_id ? m->correlation_id : -1;
    out->compress_type = m->has_compress_type ? m->compress_type : FT_COMPRESS_NONE;
    if (m->has_authentication_data) {
        out->auth_data = m->authentication_data.data ? m->authentication_data.data : empty_bytes;
        out->auth_len = m->authentication_data.len;
    }
    if (m->request) {
        /* a meta with both request and response is taken as a request, as a brpc server does */
        out->is_request = 1;
        out->service = m->request->service_name;
        out->method = m->request->method_name;
        out->timeout_ms = m->request->has_timeout_ms ? m->request->timeout_ms : 0;
        out->log_id = m->request->has_log_id ? m->request->log_id : 0;
        out->attempt = m->request->has_ftrpc_attempt ? m->request->ftrpc_attempt : 0;
        out->tied = m->request->has_ftrpc_tied && m->request->ftrpc_tied;
    } else {
        /* neither: a response; brpc's client takes a meta with only correlation_id as success */
        out->is_request = 0;
        if (m->response) {
            out->error_code = m->response->has_error_code ? m->response->error_code : 0;
            if (m->response->error_text) out->error_text = m->response->error_text;
            if (m->response->has_ftrpc_retry_after_ms)
                out->retry_after_ms = m->response->ftrpc_retry_after_ms;
            out->started = m->response->has_ftrpc_started && m->response->ftrpc_started;
        }
    }
    memset(bm, 0, sizeof *bm);
    bm->has_attachment_size = m->has_attachment_size;
    bm->attachment_size = m->attachment_size;
    bm->checksum_type = m->has_checksum_type ? m->checksum_type : CHECKSUM_NONE;
    bm->has_checksum_value = m->has_checksum_value;
    bm->checksum_len = m->checksum_value.len;
    if (m->has_checksum_value && m->checksum_value.len == 4)
        memcpy(bm->checksum, m->checksum_value.data, 4);
    bm->checksum_with_attachment = m->has_checksum_with_attachment && m->checksum_with_attachment;
}

/* ---- the hand-written meta decoder (the common fields) ----
 *
 * protobuf-c's generic unpack cost ~1,700 instructions per request meta on the server (callgrind,
 * bench_echo async@64: a third of the server's work per call). This decoder reads the fields that
 * ftrpc and brpc send on every call -- request {service_name, method_name, log_id, timeout_ms},
 * response {error_code, error_text}, compress_type, correlation_id, attachment_size,
 * authentication_data and the checksum fields -- straight into the frame. It only ever accepts
 * input on which protobuf-c would agree: anything else (an unknown or repeated field, a wire type
 * that does not match, a missing required name, a malformed varint or length, a field it does not
 * read such as trace ids, chunk_info or user_fields) makes it give up, and protobuf-c decodes the
 * meta as before, with its exact semantics (merging of repeated sub-messages, unknown fields kept,
 * errors). The fuzz target checks that both decoders agree on every input. */

int ft_baidu_std_fast_meta = 1;

/* A varint of at most max_bytes bytes (protobuf-c: 5 for tags and lengths, 10 for values);
 * *nonzero says whether any payload bit was set, even one shifted out (protobuf-c's bool). */
static inline int rd_varint_n(const uint8_t **pp, const uint8_t *end, int max_bytes, uint64_t *v,
                              int *nonzero)
{
    const uint8_t *p = *pp;
    if (p < end && *p < 0x80) { /* one byte: every key and most values of a meta */
        *v = *p;
        if (nonzero) *nonzero = *p != 0;
        *pp = p + 1;
        return 0;
    }
    uint64_t r = 0;
    int any = 0;
    for (int i = 0; i < max_bytes && p < end; i++) {
        uint8_t b = *p++;
        r |= (uint64_t)(b & 0x7f) << (7 * i);
        any |= b & 0x7f;
        if (!(b & 0x80)) {
            *pp = p;
            *v = r;
            if (nonzero) *nonzero = any != 0;
            return 0;
        }
    }
    return -1;
}

/* A field's key; field numbers past 15 are not ours (the caller gives up on them). */
static inline int rd_key(const uint8_t **pp, const uint8_t *end, unsigned *field, unsigned *wt)
{
    uint64_t key;
    if (rd_varint_n(pp, end, 5, &key, NULL) != 0 || key > 0xff) return -1;
    *field = (unsigned)(key >> 3);
    *wt = (unsigned)(key & 7);
    return 0;
}

/* A length-delimited field's bytes. */
static inline int rd_bytes(const uint8_t **pp, const uint8_t *end, const uint8_t **data,
                           size_t *len)
{
    uint64_t n;
    if (rd_varint_n(pp, end, 5, &n, NULL) != 0 || n > (uint64_t)(end - *pp)) return -1;
    *data = *pp;
    *len = (size_t)n;
    *pp += n;
    return 0;
}

/* Room in the frame's arena, taken at the first need: most answers (no error text, no
 * authentication data) need none, and then cost no arena at all. */
static inline __attribute__((always_inline)) void *frame_alloc(meta_arena **a, size_t n)
{
    if (!*a && !(*a = arena_get())) return NULL;
    return arena_alloc(*a, n);
}

/* A NUL-terminated copy in the frame's arena (protobuf-c also copies strings). Inlined, as it was
 * before the arena was taken lazily: as a call it cost the server ~20 instructions a request. */
static inline __attribute__((always_inline)) const char *arena_strdup(meta_arena **a,
                                                                      const uint8_t *s, size_t n)
{
    char *d = frame_alloc(a, n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

enum { WT_VARINT = 0, WT_LEN = 2 };

/* One field: its number, wire type and value (a varint, or a length-delimited run of bytes). */
typedef struct field_val {
    unsigned field, wt;
    uint64_t v;
    int nonzero; /* any bit of the varint set (protobuf-c's bool) */
    const uint8_t *d;
    size_t n;
} field_val;

/* Reads the next field; -1 for a field number past 15, one seen before (protobuf-c would merge or
 * replace: let it), a wire type other than varint and length-delimited, or a malformed value.
 * Always inlined into its three callers: as a call it cost ~70 instructions a field, a third of
 * the server's meta decoding (callgrind, bench_echo async@64), mostly for passing `f` in memory. */
static inline __attribute__((always_inline)) int next_field(const uint8_t **pp, const uint8_t *end,
                                                            unsigned *seen, field_val *f)
{
    if (rd_key(pp, end, &f->field, &f->wt) != 0 || f->field >= 16 || (*seen & (1u << f->field)))
        return -1;
    *seen |= 1u << f->field;
    if (f->wt == WT_VARINT) return rd_varint_n(pp, end, 10, &f->v, &f->nonzero);
    if (f->wt == WT_LEN) return rd_bytes(pp, end, &f->d, &f->n);
    return -1;
}

static int fast_request(const uint8_t *p, const uint8_t *end, meta_arena **a, ft_rpc_frame *out)
{
    unsigned seen = 0;
    field_val f = {0}; /* every path sets what it reads; zeroed for the compiler's sake */
    while (p < end) {
        if (next_field(&p, end, &seen, &f) != 0) return -1;
        if ((f.field == 1 || f.field == 2) && f.wt == WT_LEN) { /* service_name, method_name */
            const char *str = arena_strdup(a, f.d, f.n);
            if (!str) return -1;
            if (f.field == 1)
                out->service = str;
            else
                out->method = str;
        } else if (f.field == 3 && f.wt == WT_VARINT) { /* log_id */
            out->log_id = (int64_t)f.v;
        } else if (f.field == 8 && f.wt == WT_VARINT) { /* timeout_ms */
            out->timeout_ms = (int32_t)(uint32_t)f.v;
        } else {
            return -1;
        }
    }
    return (seen & 6u) == 6u ? 0 : -1; /* both names are required */
}

static int fast_response(const uint8_t *p, const uint8_t *end, meta_arena **a, ft_rpc_frame *out)
{
    unsigned seen = 0;
    field_val f = {0}; /* every path sets what it reads; zeroed for the compiler's sake */
    while (p < end) {
        if (next_field(&p, end, &seen, &f) != 0) return -1;
        if (f.field == 1 && f.wt == WT_VARINT) {
            out->error_code = (int32_t)(uint32_t)f.v;
        } else if (f.field == 2 && f.wt == WT_LEN) {
            if (!(out->error_text = arena_strdup(a, f.d, f.n))) return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* 0 with *out and *bm filled, or -1: let protobuf-c decode it (out may be partly written). *a is
 * the frame's arena, NULL until something needs room in it. */
static int fast_meta(const uint8_t *p, size_t len, meta_arena **a, ft_rpc_frame *out, body_meta *bm)
{
    static const uint8_t empty_bytes[1];
    /* the wire type each field we read wants: 1 varint, 2 length-delimited */
    static const uint8_t want[16] = {
        [1] = 2, [2] = 2, [3] = 1, [4] = 1, [5] = 1, [7] = 2, [11] = 1, [12] = 2, [13] = 1};
    const uint8_t *end = p + len;
    const uint8_t *req = NULL, *resp = NULL;
    size_t req_len = 0, resp_len = 0;
    unsigned seen = 0;
    field_val f = {0}; /* every path sets what it reads; zeroed for the compiler's sake */
    memset(bm, 0, sizeof *bm);
    while (p < end) {
        if (next_field(&p, end, &seen, &f) != 0) return -1;
        if (want[f.field] != (f.wt == WT_LEN ? 2 : 1)) return -1;
        switch (f.field) {
        case 1:
            req = f.d, req_len = f.n;
            break;
        case 2:
            resp = f.d, resp_len = f.n;
            break;
        case 3:
            out->compress_type = (int32_t)(uint32_t)f.v;
            break;
        case 4:
            out->correlation_id = (int64_t)f.v;
            break;
        case 5:
            bm->has_attachment_size = 1;
            bm->attachment_size = (int32_t)(uint32_t)f.v;
            break;
        case 7:
            if (f.n == 0) {
                out->auth_data = empty_bytes;
            } else {
                uint8_t *copy = frame_alloc(a, f.n);
                if (!copy) return -1;
                memcpy(copy, f.d, f.n);
                out->auth_data = copy;
            }
            out->auth_len = f.n;
            break;
        case 11:
            bm->checksum_type = (int32_t)(uint32_t)f.v;
            break;
        case 12:
            bm->has_checksum_value = 1;
            bm->checksum_len = f.n;
            if (f.n == 4) memcpy(bm->checksum, f.d, 4);
            break;
        case 13:
            bm->checksum_with_attachment = f.nonzero;
            break;
        }
    }
    if (req && resp) return -1; /* protobuf-c would still check the response's bytes */
    if (req) {
        out->is_request = 1;
        return fast_request(req, req + req_len, a, out);
    }
    out->is_request = 0;
    return resp ? fast_response(resp, resp + resp_len, a, out) : 0;
}

/* Everything after a successful meta unpack; the frame's bytes past the header and meta (`rest`)
 * are still at the front of `in`. Always consumes them. */
static ft_parse_status parse_body(ft_iobuf *in, size_t rest, uint32_t max_body, const body_meta *m,
                                  ft_rpc_frame *out, const char **reason)
{
    size_t att = 0;
    if (m->has_attachment_size) {
        if (m->attachment_size < 0 || (size_t)m->attachment_size > rest) {
            ft_iobuf_pop_front(in, rest);
            *reason = "attachment_size negative or larger than the body";
            return FT_PARSE_BAD_FRAME;
        }
        att = (size_t)m->attachment_size;
    }
    int32_t ct = out->compress_type;
    if (ct != FT_COMPRESS_NONE && ct != FT_COMPRESS_GZIP && ct != FT_COMPRESS_ZLIB) {
        ft_iobuf_pop_front(in, rest);
        *reason = "unsupported compress_type";
        return FT_PARSE_BAD_FRAME;
    }
    int32_t cs = m->checksum_type;
    if (cs != CHECKSUM_NONE &&
        (cs != CHECKSUM_CRC32C || !m->has_checksum_value || m->checksum_len != 4)) {
        ft_iobuf_pop_front(in, rest);
        *reason =
            cs != CHECKSUM_CRC32C ? "unsupported checksum_type" : "checksum_value is not 4 bytes";
        return FT_PARSE_BAD_FRAME;
    }

    ft_iobuf raw;
    ft_iobuf_init(&raw);
    ft_iobuf *payload_dst = ct == FT_COMPRESS_NONE ? &out->payload : &raw;
    if (ft_iobuf_cut(in, payload_dst, rest - att) != 0 ||
        (att && ft_iobuf_cut(in, &out->attachment, att) != 0)) {
        /* cut moves whole slices before it can fail, so the stream position is unknown */
        ft_iobuf_fini(&raw);
        *reason = "out of memory cutting the frame";
        return FT_PARSE_CLOSE;
    }

    ft_parse_status st = FT_PARSE_OK;
    if (cs == CHECKSUM_CRC32C) {
        uint32_t crc = iobuf_crc32c(payload_dst, 0);
        if (m->checksum_with_attachment) crc = iobuf_crc32c(&out->attachment, crc);
        if (ft_crc32c_mask(crc) != get_be32(m->checksum)) {
            *reason = "checksum mismatch";
            st = FT_PARSE_BAD_FRAME;
        }
    }
    if (st == FT_PARSE_OK && ct != FT_COMPRESS_NONE &&
        ft_inflate_iobuf(&raw, ct == FT_COMPRESS_GZIP, max_body, &out->payload, reason) != 0)
        st = FT_PARSE_BAD_FRAME;
    ft_iobuf_fini(&raw);
    if (st != FT_PARSE_OK) {
        ft_iobuf_clear(&out->payload);
        ft_iobuf_clear(&out->attachment);
    }
    return st;
}

size_t ft_baidu_std_frame_size(const ft_iobuf *in, uint32_t max_body)
{
    uint8_t h[FT_BAIDU_STD_HEADER_SIZE];
    if (max_body == 0) max_body = FT_BAIDU_STD_DEFAULT_MAX_BODY;
    if (ft_iobuf_copy_at(in, 0, h, sizeof h) != sizeof h || memcmp(h, "PRPC", 4) != 0) return 0;
    uint32_t body_size = get_be32(h + 4);
    if (body_size > max_body || get_be32(h + 8) > body_size) return 0;
    return (size_t)FT_BAIDU_STD_HEADER_SIZE + body_size;
}

ft_parse_status ft_baidu_std_parse(ft_iobuf *in, uint32_t max_body, ft_rpc_frame *out,
                                   const char **reason)
{
    const char *unused_reason;
    if (!reason) reason = &unused_reason;
    ft_rpc_frame_init(out);
    if (max_body == 0) max_body = FT_BAIDU_STD_DEFAULT_MAX_BODY;

    uint8_t hdr_tmp[FT_BAIDU_STD_HEADER_SIZE];
    size_t have = ft_iobuf_size(in);
    size_t peek = have < sizeof hdr_tmp ? have : sizeof hdr_tmp;
    const uint8_t *h = ft_iobuf_fetch(in, hdr_tmp, peek);
    if (!magic_prefix(h, peek, "PRPC")) {
        if (magic_prefix(h, peek, "STRM")) {
            if (peek < 4) return FT_PARSE_NEED_MORE;
            *reason = "streaming frame (STRM) not supported";
        } else {
            *reason = "bad magic: not a baidu_std (PRPC) frame";
        }
        return FT_PARSE_CLOSE;
    }
    if (have < FT_BAIDU_STD_HEADER_SIZE) return FT_PARSE_NEED_MORE;
    uint32_t body_size = get_be32(h + 4);
    uint32_t meta_size = get_be32(h + 8);
    if (body_size > max_body) {
        *reason = "body_size larger than max_body";
        return FT_PARSE_CLOSE;
    }
    if (meta_size > body_size) {
        *reason = "meta_size larger than body";
        return FT_PARSE_CLOSE;
    }
    if (have - FT_BAIDU_STD_HEADER_SIZE < body_size) return FT_PARSE_NEED_MORE;

    /* the meta, contiguous: in place when the first slice holds it, else copied */
    uint8_t meta_stack[256];
    uint8_t *meta_heap = NULL;
    const uint8_t *meta_bytes;
    const ft_slice *first = &in->slices[in->start];
    if (first->len >= (size_t)FT_BAIDU_STD_HEADER_SIZE + meta_size) {
        meta_bytes = (const uint8_t *)first->block->data + first->off + FT_BAIDU_STD_HEADER_SIZE;
    } else {
        uint8_t *tmp = meta_stack;
        if (meta_size > sizeof meta_stack && !(tmp = meta_heap = malloc(meta_size))) {
            *reason = "out of memory reading the meta";
            return FT_PARSE_CLOSE;
        }
        ft_iobuf_copy_at(in, FT_BAIDU_STD_HEADER_SIZE, tmp, meta_size);
        meta_bytes = tmp;
    }

    meta_arena *arena = NULL;
    body_meta bm;
    if (!ft_baidu_std_fast_meta || fast_meta(meta_bytes, meta_size, &arena, out, &bm) != 0) {
        /* the general path: start over with a clean frame and arena */
        ft_rpc_frame_init(out);
        if (!arena && !(arena = arena_get())) {
            free(meta_heap);
            *reason = "out of memory unpacking the meta";
            return FT_PARSE_CLOSE;
        }
        arena->used = 0;
        ProtobufCAllocator alloc = {
            .alloc = arena_alloc, .free = arena_free, .allocator_data = arena};
        arena->meta = brpc__policy__rpc_meta__unpack(&alloc, meta_size, meta_bytes);
        if (!arena->meta) {
            free(meta_heap);
            arena_put(arena);
            *reason = "RpcMeta does not parse";
            return FT_PARSE_CLOSE;
        }
        fill_frame(out, &bm, arena->meta);
    }
    free(meta_heap);

    out->meta_owner = arena;
    ft_iobuf_pop_front(in, (size_t)FT_BAIDU_STD_HEADER_SIZE + meta_size);
    ft_parse_status st = parse_body(in, (size_t)body_size - meta_size, max_body, &bm, out, reason);
    if (st == FT_PARSE_CLOSE) ft_rpc_frame_fini(out);
    return st;
}

int ft_baidu_std_sniff(const ft_iobuf *in)
{
    uint8_t tmp[4];
    size_t n = ft_iobuf_size(in) < 4 ? ft_iobuf_size(in) : 4;
    const uint8_t *p = ft_iobuf_fetch(in, tmp, n);
    if (!magic_prefix(p, n, "PRPC")) return 0;
    return n < 4 ? -1 : 1;
}

/* ---- packing ---- */

/* A ProtobufCBuffer that appends straight into an iobuf, for metas too big for the stack. */
typedef struct iobuf_pb_sink {
    ProtobufCBuffer base;
    ft_iobuf *out;
    int err;
} iobuf_pb_sink;

static void iobuf_pb_append(ProtobufCBuffer *buffer, size_t len, const uint8_t *data)
{
    iobuf_pb_sink *sink = (iobuf_pb_sink *)buffer;
    if (sink->err == 0) sink->err = ft_iobuf_append(sink->out, data, len);
}

static int append_frame(ft_iobuf *out, const rpc_meta *m, size_t meta_size, const ft_iobuf *payload,
                        const ft_iobuf *attachment)
{
    size_t psize = payload ? ft_iobuf_size(payload) : 0;
    size_t asize = attachment ? ft_iobuf_size(attachment) : 0;
    size_t body = meta_size + psize + asize;
    uint8_t stack[256];
    put_be32(stack, 0x50525043u); /* "PRPC" */
    put_be32(stack + 4, (uint32_t)body);
    put_be32(stack + 8, (uint32_t)meta_size);
    int rc;
    if (FT_BAIDU_STD_HEADER_SIZE + meta_size <= sizeof stack) {
        /* the common case: header and meta in one copy into out's tail block */
        brpc__policy__rpc_meta__pack(m, stack + FT_BAIDU_STD_HEADER_SIZE);
        rc = ft_iobuf_append(out, stack, FT_BAIDU_STD_HEADER_SIZE + meta_size);
    } else {
        rc = ft_iobuf_append(out, stack, FT_BAIDU_STD_HEADER_SIZE);
        if (rc == 0) {
            iobuf_pb_sink sink = {.base = {.append = iobuf_pb_append}, .out = out, .err = 0};
            brpc__policy__rpc_meta__pack_to_buffer(m, &sink.base);
            rc = sink.err;
        }
    }
    if (rc == 0 && payload) rc = ft_iobuf_append_buf(out, payload);
    if (rc == 0 && attachment) rc = ft_iobuf_append_buf(out, attachment);
    return rc;
}

/* Packs `m` (attachment_size filled in here) and the bodies. On failure `out` is restored when it
 * was empty; otherwise it may end with a partial frame and the connection must be closed. */
static int pack_frame(ft_iobuf *out, rpc_meta *m, const ft_iobuf *payload,
                      const ft_iobuf *attachment)
{
    size_t psize = payload ? ft_iobuf_size(payload) : 0;
    size_t asize = attachment ? ft_iobuf_size(attachment) : 0;
    /* body_size is a u32 on the wire and attachment_size an int32 */
    if (asize > INT32_MAX || psize > UINT32_MAX || psize + asize > UINT32_MAX) return FTRPC_EINVAL;
    if (asize > 0) {
        m->has_attachment_size = 1;
        m->attachment_size = (int32_t)asize;
    }
    size_t meta_size = brpc__policy__rpc_meta__get_packed_size(m);
    if (meta_size > UINT32_MAX - psize - asize) return FTRPC_EINVAL;
    size_t before = ft_iobuf_size(out);
    int rc = append_frame(out, m, meta_size, payload, attachment);
    if (rc != 0 && before == 0) ft_iobuf_clear(out);
    return rc;
}

/* ---- the hand-written meta encoder ----
 *
 * The metas ftrpc sends have a handful of fields; protobuf-c's generic get_packed_size + pack cost
 * ~1,300 instructions per frame where writing them directly costs ~100. The bytes are the ones
 * protobuf-c writes (fields in number order, int32 sign-extended to ten bytes when negative), which
 * the golden-byte tests check; a meta that does not fit the stack buffer (long names, a large
 * credential) still goes through protobuf-c. */

/* FAST_FRAME_MAX: header + meta the fast encoder writes on the stack. SMALL_BODY_MAX: payload +
 * attachment small enough to be copied behind them, so that the frame is one append (one slice)
 * instead of three, with no reference taken on the bodies' blocks. */
enum { FAST_FRAME_MAX = 256, SMALL_BODY_MAX = FT_BAIDU_STD_SMALL_FRAME - FAST_FRAME_MAX };

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* an int32 as protobuf-c writes it: negative values sign-extended to 64 bits */
static uint64_t int32_wire(int32_t v)
{
    return (uint64_t)(int64_t)v;
}

static uint8_t *put_len_field(uint8_t *p, uint8_t key, const void *data, size_t n)
{
    *p++ = key;
    p = put_varint(p, n);
    memcpy(p, data, n);
    return p + n;
}

/* Writes the 12-byte header for a meta of meta_size bytes and bodies of psize + asize. */
static void put_header(uint8_t *frame, size_t meta_size, size_t psize, size_t asize)
{
    put_be32(frame, 0x50525043u); /* "PRPC" */
    put_be32(frame + 4, (uint32_t)(meta_size + psize + asize));
    put_be32(frame + 8, (uint32_t)meta_size);
}

/* Appends the frame whose header + meta (`head` bytes) `frame` holds, then the bodies: copied
 * behind the head when small (`frame` has room for FAST_FRAME_MAX + SMALL_BODY_MAX bytes), else
 * shared. */
static int append_fast_frame(ft_iobuf *out, uint8_t *frame, size_t head, const ft_iobuf *payload,
                             size_t psize, const ft_iobuf *attachment, size_t asize)
{
    size_t before = ft_iobuf_size(out);
    int rc;
    if (psize + asize <= SMALL_BODY_MAX) {
        if (psize) ft_iobuf_copy_at(payload, 0, frame + head, psize);
        if (asize) ft_iobuf_copy_at(attachment, 0, frame + head + psize, asize);
        rc = ft_iobuf_append(out, frame, head + psize + asize);
    } else {
        rc = ft_iobuf_append(out, frame, head);
        if (rc == 0 && psize) rc = ft_iobuf_append_buf(out, payload);
        if (rc == 0 && asize) rc = ft_iobuf_append_buf(out, attachment);
    }
    if (rc != 0 && before == 0) ft_iobuf_clear(out);
    return rc;
}

/* Sizes the fast encoders leave to the general path, which checks them exactly: near the u32
 * limit of body_size, or an attachment_size past int32. */
static int sizes_too_large(size_t psize, size_t asize)
{
    return psize > UINT32_MAX || asize > INT32_MAX || psize + asize > UINT32_MAX - FAST_FRAME_MAX;
}

/* Writes header + meta of a request into frame (FAST_FRAME_MAX bytes); returns their size, or 0
 * when they do not fit (the caller then packs with protobuf-c). */
static size_t encode_request_head(uint8_t *frame, const ft_request_header *h, size_t psize,
                                  size_t asize)
{
    /* the rare retry's ftrpc_attempt (field 1000) and a tied copy's ftrpc_tied (1001) are left
     * to protobuf-c */
    if (sizes_too_large(psize, asize) || h->attempt != 0 || h->tied) return 0;
    size_t sl = h->service_len ? h->service_len : strlen(h->service);
    size_t ml = h->method_len ? h->method_len : strlen(h->method);
    if (sl > FAST_FRAME_MAX || ml > FAST_FRAME_MAX || h->auth_len > FAST_FRAME_MAX) return 0;
    int32_t timeout = h->timeout_ms > 0 ? h->timeout_ms : 1;
    size_t rq =
        1 + varint_size(sl) + sl + 1 + varint_size(ml) + ml + 1 + varint_size(int32_wire(timeout));
    if (h->log_id != 0) rq += 1 + varint_size((uint64_t)h->log_id);
    size_t meta = 1 + varint_size(rq) + rq + 1 + varint_size((uint64_t)h->correlation_id);
    if (asize > 0) meta += 1 + varint_size(asize);
    if (h->auth_data) meta += 1 + varint_size(h->auth_len) + h->auth_len;
    if (FT_BAIDU_STD_HEADER_SIZE + meta > FAST_FRAME_MAX) return 0;
    put_header(frame, meta, psize, asize);
    uint8_t *p = frame + FT_BAIDU_STD_HEADER_SIZE;
    *p++ = 0x0a; /* request (1) */
    p = put_varint(p, rq);
    p = put_len_field(p, 0x0a, h->service, sl); /* service_name (1) */
    p = put_len_field(p, 0x12, h->method, ml);  /* method_name (2) */
    if (h->log_id != 0) {
        *p++ = 0x18; /* log_id (3) */
        p = put_varint(p, (uint64_t)h->log_id);
    }
    *p++ = 0x40; /* timeout_ms (8) */
    p = put_varint(p, int32_wire(timeout));
    *p++ = 0x20; /* correlation_id (4) */
    p = put_varint(p, (uint64_t)h->correlation_id);
    if (asize > 0) {
        *p++ = 0x28; /* attachment_size (5) */
        p = put_varint(p, asize);
    }
    if (h->auth_data) p = put_len_field(p, 0x3a, h->auth_data, h->auth_len); /* (7) */
    assert((size_t)(p - frame) == FT_BAIDU_STD_HEADER_SIZE + meta);
    return FT_BAIDU_STD_HEADER_SIZE + meta;
}

/* The same for a response. */
static size_t encode_response_head(uint8_t *frame, int64_t correlation_id, int32_t error_code,
                                   const char *error_text, size_t psize, size_t asize)
{
    if (sizes_too_large(psize, asize)) return 0;
    size_t tl = error_text ? strlen(error_text) : 0;
    if (tl > FAST_FRAME_MAX) return 0;
    size_t rs = 1 + varint_size(int32_wire(error_code));
    if (tl > 0) rs += 1 + varint_size(tl) + tl;
    size_t meta = 1 + varint_size(rs) + rs + 1 + varint_size((uint64_t)correlation_id);
    if (asize > 0) meta += 1 + varint_size(asize);
    if (FT_BAIDU_STD_HEADER_SIZE + meta > FAST_FRAME_MAX) return 0;
    put_header(frame, meta, psize, asize);
    uint8_t *p = frame + FT_BAIDU_STD_HEADER_SIZE;
    *p++ = 0x12; /* response (2) */
    p = put_varint(p, rs);
    *p++ = 0x08; /* error_code (1) */
    p = put_varint(p, int32_wire(error_code));
    if (tl > 0) p = put_len_field(p, 0x12, error_text, tl); /* error_text (2) */
    *p++ = 0x20;                                            /* correlation_id (4) */
    p = put_varint(p, (uint64_t)correlation_id);
    if (asize > 0) {
        *p++ = 0x28; /* attachment_size (5) */
        p = put_varint(p, asize);
    }
    assert((size_t)(p - frame) == FT_BAIDU_STD_HEADER_SIZE + meta);
    return FT_BAIDU_STD_HEADER_SIZE + meta;
}

/* 1 when the fast encoder wrote the frame (rc in *rc), 0 when the meta does not fit its buffer. */
static int fast_pack_request(ft_iobuf *out, const ft_request_header *h, const ft_iobuf *payload,
                             const ft_iobuf *attachment, int *rc)
{
    size_t psize = payload ? ft_iobuf_size(payload) : 0;
    size_t asize = attachment ? ft_iobuf_size(attachment) : 0;
    uint8_t frame[FT_BAIDU_STD_SMALL_FRAME];
    size_t head = encode_request_head(frame, h, psize, asize);
    if (!head) return 0;
    *rc = append_fast_frame(out, frame, head, payload, psize, attachment, asize);
    return 1;
}

static int fast_pack_response(ft_iobuf *out, int64_t correlation_id, int32_t error_code,
                              const char *error_text, const ft_iobuf *payload,
                              const ft_iobuf *attachment, int *rc)
{
    size_t psize = payload ? ft_iobuf_size(payload) : 0;
    size_t asize = attachment ? ft_iobuf_size(attachment) : 0;
    uint8_t frame[FT_BAIDU_STD_SMALL_FRAME];
    size_t head = encode_response_head(frame, correlation_id, error_code, error_text, psize, asize);
    if (!head) return 0;
    *rc = append_fast_frame(out, frame, head, payload, psize, attachment, asize);
    return 1;
}

/* Copies the small bodies behind a head the fast encoder wrote; the whole frame's size, or 0 when
 * the bodies are too large to be copied. */
static size_t finish_small_frame(uint8_t *buf, size_t head, const ft_iobuf *payload, size_t psize,
                                 const ft_iobuf *attachment, size_t asize)
{
    if (!head) return 0;
    if (psize) ft_iobuf_copy_at(payload, 0, buf + head, psize);
    if (asize) ft_iobuf_copy_at(attachment, 0, buf + head + psize, asize);
    return head + psize + asize;
}

size_t ft_baidu_std_encode_request(uint8_t *buf, const ft_request_header *h,
                                   const ft_iobuf *payload, const ft_iobuf *attachment)
{
    size_t psize = payload ? ft_iobuf_size(payload) : 0;
    size_t asize = attachment ? ft_iobuf_size(attachment) : 0;
    if (!ft_baidu_std_fast_meta || psize + asize > SMALL_BODY_MAX || !h || !h->service ||
        !h->method || (!h->auth_data && h->auth_len > 0))
        return 0;
    return finish_small_frame(buf, encode_request_head(buf, h, psize, asize), payload, psize,
                              attachment, asize);
}

size_t ft_baidu_std_encode_response(uint8_t *buf, int64_t correlation_id, int32_t error_code,
                                    const char *error_text, const ft_iobuf *payload,
                                    const ft_iobuf *attachment)
{
    size_t psize = payload ? ft_iobuf_size(payload) : 0;
    size_t asize = attachment ? ft_iobuf_size(attachment) : 0;
    if (!ft_baidu_std_fast_meta || psize + asize > SMALL_BODY_MAX) return 0;
    return finish_small_frame(
        buf, encode_response_head(buf, correlation_id, error_code, error_text, psize, asize),
        payload, psize, attachment, asize);
}

size_t ft_baidu_std_encode_reply_bytes(uint8_t *buf, int64_t correlation_id, const void *payload,
                                       size_t psize)
{
    if (!ft_baidu_std_fast_meta || psize > SMALL_BODY_MAX) return 0;
    size_t head = encode_response_head(buf, correlation_id, 0, NULL, psize, 0);
    if (head && psize) memcpy(buf + head, payload, psize);
    return head ? head + psize : 0;
}

int ft_baidu_std_pack_request(ft_iobuf *out, const ft_request_header *h, const ft_iobuf *payload,
                              const ft_iobuf *attachment)
{
    if (!out || !h || !h->service || !h->method || (!h->auth_data && h->auth_len > 0))
        return FTRPC_EINVAL;
    int rc;
    if (ft_baidu_std_fast_meta && fast_pack_request(out, h, payload, attachment, &rc)) return rc;
    Brpc__Policy__RpcRequestMeta rq = BRPC__POLICY__RPC_REQUEST_META__INIT;
    rq.service_name = (char *)h->service;
    rq.method_name = (char *)h->method;
    rq.has_timeout_ms = 1;
    rq.timeout_ms = h->timeout_ms > 0 ? h->timeout_ms : 1;
    if (h->log_id != 0) {
        rq.has_log_id = 1;
        rq.log_id = h->log_id;
    }
    if (h->attempt != 0) {
        rq.has_ftrpc_attempt = 1;
        rq.ftrpc_attempt = h->attempt;
    }
    if (h->tied) {
        rq.has_ftrpc_tied = 1;
        rq.ftrpc_tied = 1;
    }
    rpc_meta m = BRPC__POLICY__RPC_META__INIT;
    m.request = &rq;
    m.has_correlation_id = 1;
    m.correlation_id = h->correlation_id;
    if (h->auth_data) {
        m.has_authentication_data = 1;
        m.authentication_data.data = (uint8_t *)h->auth_data;
        m.authentication_data.len = h->auth_len;
    }
    return pack_frame(out, &m, payload, attachment);
}

int ft_baidu_std_pack_response(ft_iobuf *out, int64_t correlation_id, int32_t error_code,
                               const char *error_text, const ft_iobuf *payload,
                               const ft_iobuf *attachment)
{
    if (!out) return FTRPC_EINVAL;
    int rc;
    if (ft_baidu_std_fast_meta &&
        fast_pack_response(out, correlation_id, error_code, error_text, payload, attachment, &rc))
        return rc;
    Brpc__Policy__RpcResponseMeta rs = BRPC__POLICY__RPC_RESPONSE_META__INIT;
    rs.has_error_code = 1;
    rs.error_code = error_code;
    if (error_text && error_text[0] != '\0') rs.error_text = (char *)error_text;
    rpc_meta m = BRPC__POLICY__RPC_META__INIT;
    m.response = &rs;
    m.has_correlation_id = 1;
    m.correlation_id = correlation_id;
    return pack_frame(out, &m, payload, attachment);
}

int ft_baidu_std_pack_pushback(ft_iobuf *out, int64_t correlation_id, int32_t error_code,
                               const char *error_text, int32_t retry_after_ms)
{
    if (!out) return FTRPC_EINVAL;
    if (retry_after_ms == 0)
        return ft_baidu_std_pack_response(out, correlation_id, error_code, error_text, NULL, NULL);
    /* rare (a refused call) and not on the fast encoder's list: protobuf-c packs it */
    Brpc__Policy__RpcResponseMeta rs = BRPC__POLICY__RPC_RESPONSE_META__INIT;
    rs.has_error_code = 1;
    rs.error_code = error_code;
    if (error_text && error_text[0] != '\0') rs.error_text = (char *)error_text;
    rs.has_ftrpc_retry_after_ms = 1;
    rs.ftrpc_retry_after_ms = retry_after_ms;
    rpc_meta m = BRPC__POLICY__RPC_META__INIT;
    m.response = &rs;
    m.has_correlation_id = 1;
    m.correlation_id = correlation_id;
    return pack_frame(out, &m, NULL, NULL);
}

int ft_baidu_std_pack_started(ft_iobuf *out, int64_t correlation_id)
{
    if (!out) return FTRPC_EINVAL;
    Brpc__Policy__RpcResponseMeta rs = BRPC__POLICY__RPC_RESPONSE_META__INIT;
    rs.has_ftrpc_started = 1;
    rs.ftrpc_started = 1;
    rpc_meta m = BRPC__POLICY__RPC_META__INIT;
    m.response = &rs;
    m.has_correlation_id = 1;
    m.correlation_id = correlation_id;
    return pack_frame(out, &m, NULL, NULL);
}
