#include "fields.h"

#include <string.h>

#include "accounts.h"

int fields_string(struct http_req *req, json_t *body, const char *key, bool required, size_t max_bytes,
		  size_t max_chars, const char **out)
{
	json_t *v = json_object_get(body, key);
	*out = NULL;
	if (!v || json_is_null(v)) {
		if (!required)
			return 0;
		http_reply_error(req, 400, "M_MISSING_PARAM", "Missing parameter: %s", key);
		return -1;
	}
	if (!json_is_string(v)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "%s must be a string", key);
		return -1;
	}
	const char *s = json_string_value(v);
	if (json_string_length(v) > max_bytes || (max_chars && accounts_utf8_chars(s) > max_chars)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "%s is too long (at most %zu %s)", key,
				 max_chars ? max_chars : max_bytes, max_chars ? "characters" : "bytes");
		return -1;
	}
	if (strlen(s) != json_string_length(v)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "%s contains a NUL character", key);
		return -1;
	}
	*out = s;
	return 0;
}

int fields_bool(struct http_req *req, json_t *body, const char *key, bool *out)
{
	json_t *v = json_object_get(body, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "%s must be a boolean", key);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

int fields_user_identifier(struct http_req *req, json_t *dict, bool required, const char **user)
{
	json_t *ident = json_object_get(dict, "identifier");
	if (ident && !json_is_null(ident)) {
		if (!json_is_object(ident)) {
			http_reply_error(req, 400, "M_INVALID_PARAM", "identifier must be an object");
			return -1;
		}
		const char *type;
		if (fields_string(req, ident, "type", true, 64, 0, &type) < 0)
			return -1;
		if (strcmp(type, "m.id.user") != 0) {
			http_reply_error(req, 400, "M_UNKNOWN", "Unsupported identifier type: only m.id.user");
			return -1;
		}
		return fields_string(req, ident, "user", true, 1024, 0, user);
	}
	if (fields_string(req, dict, "user", false, 1024, 0, user) < 0)
		return -1;
	if (!*user && required) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "Missing parameter: identifier");
		return -1;
	}
	return 0;
}
