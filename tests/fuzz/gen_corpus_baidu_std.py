#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_baidu_std into tests/fuzz/corpus/baidu_std/.

Small frames built field by field from docs/protocol.md: valid requests and responses
(plain, attachment, auth, gzip, zlib, CRC32C) and one of each bad case the parser knows. Run it
again after changing it; the regression inputs that fuzzing found (named crash-*) are kept.
Usage: tests/fuzz/gen_corpus_baidu_std.py [OUT_DIR]
"""
import gzip
import os
import struct
import sys
import zlib


def varint(n):
    n &= (1 << 64) - 1  # negative int32/int64 travel as 10-byte two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def vfield(num, value):
    return varint(num << 3) + varint(value)


def bfield(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def request_meta(service, method, timeout=None, log_id=None):
    m = bfield(1, service) + bfield(2, method)
    if log_id is not None:
        m += vfield(3, log_id)
    if timeout is not None:
        m += vfield(8, timeout)
    return m


def frame(meta, payload=b"", attachment=b"", magic=b"PRPC", body_size=None, meta_size=None):
    body = meta + payload + attachment
    return (magic + struct.pack(">II", len(body) if body_size is None else body_size,
                                len(meta) if meta_size is None else meta_size) + body)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def mask(c):
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "baidu_std")
    os.makedirs(out, exist_ok=True)
    echo = request_meta("example.EchoService", "Echo", timeout=500)
    seeds = {
        "ok_echo_request": frame(bfield(1, echo) + vfield(4, 1), b"hi"),
        "ok_echo_response": frame(bfield(2, vfield(1, 0)) + vfield(4, 1), b"hi"),
        "ok_error_response": frame(bfield(2, vfield(1, 1002) + bfield(2, "no")) + vfield(4, 7)),
        "ok_only_correlation_id": frame(vfield(4, 5), b"z"),
        "ok_attachment": frame(bfield(1, request_meta("a.S", "M", 1)) + vfield(4, 2) +
                               vfield(5, 2), b"x", b"yz"),
        "ok_auth_log_id": frame(bfield(1, request_meta("a.S", "M", 9, 300)) + vfield(4, 3) +
                                bfield(7, "tok")),
        "ok_user_fields": frame(bfield(2, vfield(1, 0)) + vfield(4, 9) +
                                bfield(9, bfield(1, "k") + bfield(2, "v")) + vfield(10, 1), b"{}"),
        "ok_gzip": frame(bfield(1, echo) + vfield(3, 2) + vfield(4, 4),
                         gzip.compress(b"hello hello hello hello", mtime=0)),
        "ok_zlib_with_attachment": frame(bfield(2, vfield(1, 0)) + vfield(3, 3) + vfield(4, 4) +
                                         vfield(5, 3), zlib.compress(b"abcabcabcabc"), b"att"),
        "ok_crc32c": frame(vfield(4, 6) + vfield(5, 3) + vfield(11, 1) +
                           bfield(12, struct.pack(">I", mask(crc32c(b"payloadatt")))) +
                           vfield(13, 1), b"payload", b"att"),
        "bad_crc32c": frame(vfield(4, 6) + vfield(11, 1) + bfield(12, b"\0\0\0\0"), b"payload"),
        "bad_attachment_size": frame(vfield(4, 8) + vfield(5, -1), b"abc"),
        "bad_compress_lz4": frame(vfield(3, 4) + vfield(4, 8), b"abc"),
        "bad_gzip_truncated": frame(vfield(3, 2) + vfield(4, 8), gzip.compress(b"hello", mtime=0)[:-6]),
        "close_strm": frame(b"", b"ab", magic=b"STRM"),
        "close_http": b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "close_meta_size_over_body": frame(vfield(4, 1), meta_size=3),
        "close_meta_garbage": frame(b"\x20\xff"),
        "needmore_truncated": frame(bfield(1, echo) + vfield(4, 1), b"hi")[:-1],
    }
    seeds["ok_two_frames"] = seeds["ok_echo_request"] + seeds["ok_echo_response"]
    seeds["bad_then_ok"] = seeds["bad_compress_lz4"] + seeds["ok_echo_response"]
    for name, data in sorted(seeds.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), out))


if __name__ == "__main__":
    main()
