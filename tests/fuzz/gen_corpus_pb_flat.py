#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_pb_flat into tests/fuzz/corpus/pb_flat/.

Each seed is a type byte (0 flattest.Flat3, 1 flattest2.Flat2, 2 flattest.Edge: the order of
TYPES in fuzz_pb_flat.c), a byte that picks where the input is cut in two slices and the pack_into
room, then a message: valid ones of every scalar kind at their edges, which protoc encodes from
text (tests/unit/pb_flat_test*.proto), and raw_* bytes for the wire-format cases of
docs/reliability.md (over-long varints, wrong wire types, bad lengths, keys). Needs protoc. Run it again after changing it; the
inputs that fuzzing found or grew (named crash-* or grown_*) are kept.
Usage: tests/fuzz/gen_corpus_pb_flat.py [OUT_DIR]
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "unit")

SEEDS = [
    ("flat3_empty", 0, "flattest.Flat3", "pb_flat_test.proto", ""),
    ("flat3_max", 0, "flattest.Flat3", "pb_flat_test.proto",
     "i32: 2147483647 i64: 9223372036854775807 u32: 4294967295 u64: 18446744073709551615 "
     "s32: 2147483647 s64: 9223372036854775807 f32: 4294967295 f64: 18446744073709551615 "
     "sf32: 2147483647 sf64: 9223372036854775807 fl: 3.5 db: 1e300 flag: true "
     "text: \"caf\\303\\251\" data: \"\\000\\001\\377\\200\" kind: KIND_BIG"),
    ("flat3_min", 0, "flattest.Flat3", "pb_flat_test.proto",
     "i32: -2147483648 i64: -9223372036854775808 s32: -2147483648 s64: -9223372036854775808 "
     "sf32: -2147483648 sf64: -9223372036854775808 fl: -0.25 db: -2 text: \"x\" kind: KIND_ONE"),
    ("flat3_small", 7, "flattest.Flat3", "pb_flat_test.proto",
     "i32: 1 u64: 127 s32: -1 data: \"a\" far: 5"),
    ("flat2_empty", 1, "flattest2.Flat2", "pb_flat_test2.proto", ""),
    ("flat2_all", 1, "flattest2.Flat2", "pb_flat_test2.proto",
     "name: \"\" n: -5 on: true z: -1 blob: \"\" d: 0 fx: 9 big: 18446744073709551615"),
    ("flat2_defaults_sent", 200, "flattest2.Flat2", "pb_flat_test2.proto",
     "name: \"dflt\" n: 7 d: 1.5"),
    ("edge_keys", 2, "flattest.Edge", "pb_flat_test.proto",
     "a: -1 s: \"s\" x: -2 hi: 3 b: \"bb\" top: \"t\""),
    ("edge_two_byte_key", 2, "flattest.Edge", "pb_flat_test.proto", "x: 1 a: 300"),
]


def varint(n, pad=0):
    """The varint of n (negative: 64-bit two's complement), padded to pad bytes (over-long)."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append(n & 0x7F)
        n >>= 7
        if not n and len(out) >= pad:
            return bytes(out)
        out[-1] |= 0x80


# Bytes protoc does not write, one for each point of the wire format the reader is checked on
# (type byte 0: flattest.Flat3, 2: flattest.Edge).
RAW = [
    ("raw_int32_negative_10_bytes", 0, varint(1 << 3) + varint(-5)),
    ("raw_varint_11_bytes", 0, b"\x08" + b"\x80" * 10 + b"\x00"),
    ("raw_varint_10_bytes_high_bits", 0, b"\x10" + b"\xff" * 9 + b"\x7f"),
    ("raw_key_zero_overlong", 0, b"\x80\x00\x01"),
    ("raw_key_overlong_two_bytes", 0, b"\x88\x00\x01"),
    ("raw_wire_mismatch", 0, b"\x0d\x01\x02\x03\x04"),
    ("raw_packed_singular", 0, b"\x0a\x02\x01\x02"),
    ("raw_len_over_rest", 0, b"\x72\x05ab"),
    ("raw_len_near_size_max", 0, b"\x72" + varint((1 << 64) - 2) + b"ab"),
    ("raw_len_prefix_5_bytes", 0, b"\x72" + varint(2, 5) + b"ab"),
    ("raw_duplicates", 0, b"\x08\x01\x72\x01a\x08\x02\x72\x02bc\x7a\x00\x7a\x01z"),
    ("raw_not_utf8", 0, b"\x72\x03\xff\xfe\xc0"),
    ("raw_unknown_field", 0, varint(99 << 3) + b"\x01\x08\x01"),
    ("raw_group", 0, b"\x0b\x0c"),
    ("raw_bool_as_fixed", 0, b"\x6d\x00\x00\x00\x01"),
    ("raw_edge_key_2047_2048_max", 2,
     varint(2047 << 3 | 1) + b"\x01" * 8 + varint(2048 << 3) + b"\x05" +
     varint(536870911 << 3 | 2) + b"\x01t"),
    ("raw_edge_key_too_big", 2, varint((1 << 32) - 1 << 3 | 0) + b"\x01"),
]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus", "pb_flat")
    os.makedirs(out, exist_ok=True)
    for name, spare, msg_type, proto, text in SEEDS:
        body = subprocess.run(["protoc", "--encode=" + msg_type, "-I" + PROTO_DIR, proto],
                              input=text.encode(), capture_output=True, check=True,
                              cwd=PROTO_DIR).stdout
        kind = {"flattest.Flat3": 0, "flattest2.Flat2": 1, "flattest.Edge": 2}[msg_type]
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([kind, spare]) + body)
    for name, kind, body in RAW:
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([kind, len(body) // 2]) + body)


if __name__ == "__main__":
    main()
