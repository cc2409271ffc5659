/* xmatrix.h - the X-Matrix Authorization scheme of server-server requests
 * (spec "Request Authentication"): building the signed header for outbound
 * requests and parsing/verifying it on inbound ones. Pure: no I/O. */
#ifndef AL_XMATRIX_H
#define AL_XMATRIX_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "sign.h"

#define XMATRIX_MAX_HEADER 2048
#define XMATRIX_MAX_NAME 255
#define XMATRIX_MAX_KEY_ID 64
#define XMATRIX_MAX_SIG 128

struct xmatrix_auth {
	char origin[XMATRIX_MAX_NAME + 1];
	char destination[XMATRIX_MAX_NAME + 1]; /* empty when absent */
	char key_id[XMATRIX_MAX_KEY_ID + 1];
	char sig[XMATRIX_MAX_SIG + 1];
};

/* The JSON object that is signed: {method, uri, origin, destination,
 * content?}. content is borrowed (NULL: none). New reference or NULL. */
json_t *xmatrix_request_object(const char *method, const char *uri, const char *origin, const char *destination,
			       json_t *content);

/* Build the whole header value `X-Matrix origin="..",destination="..",
 * key="..",sig=".."` into a malloc'd string (caller frees). NULL with err
 * filled on failure. */
char *xmatrix_build_header(const struct sign_key *key, const char *origin, const char *destination, const char *method,
			   const char *uri, json_t *content, struct al_error *err);

/* Parse a header value. Values may be quoted ("..", with \" and \\ escapes)
 * or bare tokens; parameter names are case-insensitive; unknown parameters
 * are ignored; every value is length-bounded. 0, or -1 with 401
 * M_UNAUTHORIZED and a precise message. */
int xmatrix_parse_header(const char *value, struct xmatrix_auth *out, struct al_error *err);

/* Verify a parsed header against the request and the origin's public key.
 * 0, or -1 with 401 M_UNAUTHORIZED (400 M_BAD_JSON when the content has no
 * canonical form, e.g. floats). */
int xmatrix_verify(const struct xmatrix_auth *a, const char *method, const char *uri, const char *destination,
		   json_t *content, const unsigned char pk[32], struct al_error *err);

#endif
