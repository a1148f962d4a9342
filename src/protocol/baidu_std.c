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
 * per-thread free list. The arena is the frame's meta_owner and lives until ft_rpc_frame_fini, so
 * frames outlive later parses; a frame fini'ed on another thread returns its arena to that
 * thread's list, as iobuf blocks do. Measured figures are in the final report of the protocol
 * branch and in bench/ (parse of a small request frame, arena vs plain malloc).
 *
 * The send side never compresses and never checksums; it always sends timeout_ms in requests and
 * error_code in responses (as brpc does), and attachment_size only when > 0.
 */
#include "protocol/baidu_std.h"

#include <limits.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "base/crc32c.h"
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

static meta_arena *arena_get(void)
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
    if (arena_free_len < ARENA_CACHE_MAX) {
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
    f->auth_data = NULL;
    f->auth_len = 0;
    f->error_code = 0;
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
    return memcmp(p, magic, n < 4 ? n : 4) == 0;
}

static uint32_t iobuf_crc32c(const ft_iobuf *b, uint32_t crc)
{
    for (uint32_t i = b->start; i < b->end; i++) {
        const ft_slice *s = &b->slices[i];
        crc = ft_crc32c_extend(crc, s->block->data + s->off, s->len);
    }
    return crc;
}

/* Inflates src (gzip or zlib framing) into dst, at most `limit` bytes. 0, or -1 with *reason. */
static int inflate_iobuf(const ft_iobuf *src, int gzip, size_t limit, ft_iobuf *dst,
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

static void fill_frame(ft_rpc_frame *out, const rpc_meta *m)
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
    } else {
        /* neither: a response; brpc's client takes a meta with only correlation_id as success */
        out->is_request = 0;
        if (m->response) {
            out->error_code = m->response->has_error_code ? m->response->error_code : 0;
            if (m->response->error_text) out->error_text = m->response->error_text;
        }
    }
}

/* Everything after a successful meta unpack; the frame's bytes past the header and meta (`rest`)
 * are still at the front of `in`. Always consumes them. */
static ft_parse_status parse_body(ft_iobuf *in, size_t rest, uint32_t max_body, const rpc_meta *m,
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
    int32_t cs = m->has_checksum_type ? m->checksum_type : CHECKSUM_NONE;
    if (cs != CHECKSUM_NONE &&
        (cs != CHECKSUM_CRC32C || !m->has_checksum_value || m->checksum_value.len != 4)) {
        ft_iobuf_pop_front(in, rest);
        *reason =
            cs != CHECKSUM_CRC32C ? "unsupported checksum_type" : "checksum_value is not 4 bytes";
        return FT_PARSE_BAD_FRAME;
    }

    ft_iobuf raw;
    ft_iobuf_init(&raw);
    ft_iobuf *payload_dst = ct == FT_COMPRESS_NONE ? &out->payload : &raw;
    if (ft_iobuf_cut(in, payload_dst, rest - att) != 0 ||
        ft_iobuf_cut(in, &out->attachment, att) != 0) {
        /* cut moves whole slices before it can fail, so the stream position is unknown */
        ft_iobuf_fini(&raw);
        *reason = "out of memory cutting the frame";
        return FT_PARSE_CLOSE;
    }

    ft_parse_status st = FT_PARSE_OK;
    if (cs == CHECKSUM_CRC32C) {
        uint32_t crc = iobuf_crc32c(payload_dst, 0);
        if (m->has_checksum_with_attachment && m->checksum_with_attachment)
            crc = iobuf_crc32c(&out->attachment, crc);
        if (ft_crc32c_mask(crc) != get_be32(m->checksum_value.data)) {
            *reason = "checksum mismatch";
            st = FT_PARSE_BAD_FRAME;
        }
    }
    if (st == FT_PARSE_OK && ct != FT_COMPRESS_NONE &&
        inflate_iobuf(&raw, ct == FT_COMPRESS_GZIP, max_body, &out->payload, reason) != 0)
        st = FT_PARSE_BAD_FRAME;
    ft_iobuf_fini(&raw);
    if (st != FT_PARSE_OK) {
        ft_iobuf_clear(&out->payload);
        ft_iobuf_clear(&out->attachment);
    }
    return st;
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

    meta_arena *arena = arena_get();
    if (!arena) {
        free(meta_heap);
        *reason = "out of memory unpacking the meta";
        return FT_PARSE_CLOSE;
    }
    ProtobufCAllocator alloc = {.alloc = arena_alloc, .free = arena_free, .allocator_data = arena};
    arena->meta = brpc__policy__rpc_meta__unpack(&alloc, meta_size, meta_bytes);
    free(meta_heap);
    if (!arena->meta) {
        arena_put(arena);
        *reason = "RpcMeta does not parse";
        return FT_PARSE_CLOSE;
    }

    out->meta_owner = arena;
    fill_frame(out, arena->meta);
    ft_iobuf_pop_front(in, (size_t)FT_BAIDU_STD_HEADER_SIZE + meta_size);
    ft_parse_status st =
        parse_body(in, (size_t)body_size - meta_size, max_body, arena->meta, out, reason);
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

int ft_baidu_std_pack_request(ft_iobuf *out, const ft_request_header *h, const ft_iobuf *payload,
                              const ft_iobuf *attachment)
{
    if (!out || !h || !h->service || !h->method || (!h->auth_data && h->auth_len > 0))
        return FTRPC_EINVAL;
    Brpc__Policy__RpcRequestMeta rq = BRPC__POLICY__RPC_REQUEST_META__INIT;
    rq.service_name = (char *)h->service;
    rq.method_name = (char *)h->method;
    rq.has_timeout_ms = 1;
    rq.timeout_ms = h->timeout_ms > 0 ? h->timeout_ms : 1;
    if (h->log_id != 0) {
        rq.has_log_id = 1;
        rq.log_id = h->log_id;
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
