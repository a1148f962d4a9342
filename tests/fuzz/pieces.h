/* Where a fuzz target cuts its input to feed it in pieces, as a connection delivers bytes.
 *
 * A few cuts per input, not one per byte: each piece is a parse call and, in the targets, a block
 * of its own (a malloc), so byte-sized pieces made the split pass most of an input's cost
 * (docs/reliability.md, Fuzzers). The cuts are chosen by the input itself, through a hash of its
 * size and last bytes: the fuzzer moves them by mutating the tail or the length, and keeps them
 * while it mutates the rest, so a split that reaches new code stays reproducible from the file.
 */
#ifndef FT_FUZZ_PIECES_H
#define FT_FUZZ_PIECES_H

#include <stddef.h>
#include <stdint.h>

#define FUZZ_MAX_PIECES 8

/* Writes the end offset of each piece into ends (ascending, the last one size) and returns how
 * many: 2..FUZZ_MAX_PIECES for an input of 2 bytes or more, else one (empty for an empty input,
 * which is still parsed once). */
static inline size_t fuzz_pieces(const uint8_t *data, size_t size, size_t ends[FUZZ_MAX_PIECES])
{
    if (size < 2) {
        ends[0] = size;
        return 1;
    }
    uint64_t h = 1469598103934665603ull ^ size; /* FNV-1a, then xorshift for the cuts */
    for (size_t i = size > 8 ? size - 8 : 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;
    size_t cuts = 1 + (size_t)(h % (FUZZ_MAX_PIECES - 1)), n = 0;
    for (size_t k = 0; k < cuts; k++) {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
        size_t c = 1 + (size_t)(h % (size - 1)), j = 0;
        while (j < n && ends[j] < c)
            j++;
        if (j < n && ends[j] == c) continue; /* a repeat: one piece fewer */
        for (size_t m = n; m > j; m--)
            ends[m] = ends[m - 1];
        ends[j] = c;
        n++;
    }
    ends[n++] = size;
    return n;
}

#endif
