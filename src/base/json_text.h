/* Strict reading of outside JSON text over json-c, shared by the parsers of JSON that arrives from
 * elsewhere (etcd's answers in src/naming/etcd_json.c, JSON request bodies in
 * src/protocol/json_pb.c).
 *
 * Invariants: pure (no IO, no logging, no globals) and bounded: nesting deeper than the caller's
 * depth, NUL bytes, invalid UTF-8, an unpaired surrogate escape ("\ud800", which json-c would
 * make U+FFFD), "\u0000" in an object key (json-c's keys are C strings), trailing garbage and a top
 * level that is not an object are refused with a static reason. json-c's strict mode still takes
 * single-quoted strings and NaN; callers type-check every value they use. Not here: size limits
 * (each caller has its own). */
#ifndef FT_BASE_JSON_TEXT_H
#define FT_BASE_JSON_TEXT_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

/* Parses buf as exactly one JSON object (whitespace around it allowed), nested at most `depth`
 * deep. The object (the caller puts it), or NULL with *why (when why is not NULL) set. */
json_object *ft_json_parse_object(const char *buf, size_t len, int depth, const char **why);

/* A signed decimal with no sign but '-', no leading zeros, within int64: 0 and *out, or -1. */
int ft_json_i64_text(const char *s, size_t n, int64_t *out);
/* The same for an unsigned decimal within uint64 (no sign at all). */
int ft_json_u64_text(const char *s, size_t n, uint64_t *out);

#endif
