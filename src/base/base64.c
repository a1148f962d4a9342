/* Base64 (see base64.h). */
#include "base/base64.h"

#include <stdbool.h>
#include <stdint.h>

#include "ftrpc/common.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ft_b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

void ft_b64_encode(const void *in, size_t n, char *out)
{
    const unsigned char *p = in;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        out[o++] = B64[(v >> 18) & 63];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? B64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? B64[v & 63] : '=';
    }
    out[o] = '\0';
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int ft_b64_decode(const char *in, size_t n, void *out, size_t cap, size_t *out_len)
{
    if (n % 4 != 0) return FTRPC_EINVAL;
    unsigned char *o = out;
    size_t len = 0;
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        int pad = 0;
        if (last && in[i + 3] == '=') pad = in[i + 2] == '=' ? 2 : 1;
        int v[4];
        for (int k = 0; k < 4 - pad; k++)
            if ((v[k] = b64_val(in[i + (size_t)k])) < 0) return FTRPC_EINVAL;
        for (int k = 4 - pad; k < 4; k++)
            v[k] = 0;
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* Non-zero pad bits would make two texts decode to the same bytes. */
        if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff))) return FTRPC_EINVAL;
        size_t nb = (size_t)(3 - pad);
        if (len + nb > cap) return FTRPC_EINVAL;
        o[len] = (unsigned char)(w >> 16);
        if (nb > 1) o[len + 1] = (unsigned char)(w >> 8);
        if (nb > 2) o[len + 2] = (unsigned char)w;
        len += nb;
    }
    *out_len = len;
    return 0;
}
