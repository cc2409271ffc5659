/* cjson.h - Matrix canonical JSON (spec appendix "Canonical JSON") and
 * bounded parsing of untrusted JSON, on top of jansson. */
#ifndef AL_CJSON_H
#define AL_CJSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"

/* Deepest nesting of arrays/objects the encoder accepts (the top-level
 * container counts as 1) and the default for cjson_parse. */
#define CJSON_MAX_DEPTH 128
/* Default body size limit for cjson_parse when lim is NULL. */
#define CJSON_DEFAULT_MAX_BYTES (1024 * 1024)

/* Largest magnitude canonical JSON allows: 2^53 - 1. */
#define CJSON_INT_MAX 9007199254740991LL

/* Encode v as canonical JSON: UTF-8, no whitespace, object keys sorted by
 * code point, minimal escapes (lowercase \u00xx), integers only, within
 * +-CJSON_INT_MAX, nesting at most CJSON_MAX_DEPTH. Keys and strings may
 * contain NUL. Returns malloc'd NUL-terminated text (the caller frees) and
 * its length in *len_out (if non-NULL); NULL and err filled on failure
 * (400 M_BAD_JSON for values canonical JSON cannot hold, 500 M_UNKNOWN when
 * out of memory). */
char *cjson_encode(const json_t *v, size_t *len_out, struct al_error *err);

struct cjson_limits {
	size_t max_bytes; /* larger bodies: 413 M_TOO_LARGE */
	int max_depth;    /* deeper nesting of [ and {: 400 M_BAD_JSON */
};

/* Parse untrusted JSON text of len bytes (NUL termination not required).
 * lim NULL means { CJSON_DEFAULT_MAX_BYTES, CJSON_MAX_DEPTH }. Size and
 * depth are checked before jansson sees the text. Duplicate keys and
 * \u0000 inside strings are rejected. Any JSON value is accepted at the top
 * level. Returns a new reference the caller releases with json_decref, or
 * NULL with err filled (413 M_TOO_LARGE, 400 M_BAD_JSON, 400 M_NOT_JSON). */
json_t *cjson_parse(const char *buf, size_t len, const struct cjson_limits *lim, struct al_error *err);

/* o[key] when it is a string; NULL when absent or null; NULL and *bad set
 * when it is there but not a string (so several fields can be read and
 * checked once). */
const char *cjson_opt_string(const json_t *o, const char *key, bool *bad);

/* cjson_parse, and the top-level value must be an object
 * (else 400 M_BAD_JSON). */
json_t *cjson_parse_object(const char *buf, size_t len, const struct cjson_limits *lim, struct al_error *err);

#endif
