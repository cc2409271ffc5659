/* fields.h - field validation shared by the handlers of this layer.
 * Each helper replies the Matrix error itself and returns -1 when the field
 * is unacceptable, so a handler writes `if (fields_string(...) < 0) return;`. */
#ifndef AL_FIELDS_H
#define AL_FIELDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "http.h"

/* body[key] as a string of at most max_bytes bytes (and max_chars code
 * points when max_chars > 0). Absent or null gives *out = NULL, which is a
 * 400 M_MISSING_PARAM when required. Wrong type or too long: 400
 * M_INVALID_PARAM. */
int fields_string(struct http_req *req, json_t *body, const char *key, bool required, size_t max_bytes,
		  size_t max_chars, const char **out);

/* body[key] as a boolean; absent or null leaves *out unchanged. */
int fields_bool(struct http_req *req, json_t *body, const char *key, bool *out);

/* The user named by a login or auth dict: identifier {type: m.id.user,
 * user} or the deprecated top-level user. *out is NULL when neither is
 * given (then 400 M_MISSING_PARAM when required). */
int fields_user_identifier(struct http_req *req, json_t *dict, bool required, const char **out);

#endif
