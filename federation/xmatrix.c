#include "xmatrix.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

json_t *xmatrix_request_object(const char *method, const char *uri, const char *origin, const char *destination,
			       json_t *content)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "method", method, "uri", uri, "origin", origin, "destination",
			      destination);
	if (o && content && json_object_set(o, "content", content) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

char *xmatrix_build_header(const struct sign_key *key, const char *origin, const char *destination, const char *method,
			   const char *uri, json_t *content, struct al_error *err)
{
	char *out = NULL;
	json_t *o = xmatrix_request_object(method, uri, origin, destination, content);
	if (!o) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	if (sign_json(o, origin, key, err) < 0)
		goto done;
	const char *sig = json_string_value(
		json_object_get(json_object_get(json_object_get(o, "signatures"), origin), key->key_id));
	if (!sig) {
		al_error_set(err, 500, "M_UNKNOWN", "signature missing");
		goto done;
	}
	size_t len = strlen(origin) + strlen(destination) + strlen(key->key_id) + strlen(sig) + 64;
	out = malloc(len);
	if (!out) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto done;
	}
	int n = snprintf(out, len, "X-Matrix origin=\"%s\",destination=\"%s\",key=\"%s\",sig=\"%s\"", origin,
			 destination, key->key_id, sig);
	if (n < 0 || (size_t)n >= len) {
		free(out);
		out = NULL;
		al_error_set(err, 500, "M_UNKNOWN", "header too long");
	}
done:
	json_decref(o);
	return out;
}

static int unauth(struct al_error *err, const char *msg)
{
	return al_error_set(err, 401, "M_UNAUTHORIZED", "%s", msg);
}

int xmatrix_parse_header(const char *value, struct xmatrix_auth *out, struct al_error *err)
{
	memset(out, 0, sizeof(*out));
	if (!value)
		return unauth(err, "Missing Authorization header");
	if (strlen(value) > XMATRIX_MAX_HEADER)
		return unauth(err, "Authorization header too long");
	const char *p = value;
	while (*p == ' ')
		p++;
	if (strncasecmp(p, "X-Matrix", 8) != 0 || (p[8] != ' ' && p[8] != '\t'))
		return unauth(err, "Authorization header is not X-Matrix");
	p += 9;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		const char *name = p;
		while (*p && *p != '=' && *p != ',' && *p != ' ')
			p++;
		size_t nlen = (size_t)(p - name);
		if (*p != '=' || nlen == 0)
			return unauth(err, "Malformed X-Matrix parameter");
		p++;
		char val[XMATRIX_MAX_NAME + 1];
		size_t vlen = 0;
		if (*p == '"') {
			p++;
			while (*p && *p != '"') {
				char c = *p++;
				if (c == '\\') {
					if (!*p)
						return unauth(err, "Malformed X-Matrix quoted value");
					c = *p++;
				}
				if (vlen + 1 >= sizeof(val))
					return unauth(err, "X-Matrix parameter value too long");
				val[vlen++] = c;
			}
			if (*p != '"')
				return unauth(err, "Unterminated X-Matrix quoted value");
			p++;
		} else {
			while (*p && *p != ',' && *p != ' ' && *p != '\t') {
				if (vlen + 1 >= sizeof(val))
					return unauth(err, "X-Matrix parameter value too long");
				val[vlen++] = *p++;
			}
		}
		val[vlen] = '\0';
		char *dst = NULL;
		size_t dstmax = 0;
		if (nlen == 6 && strncasecmp(name, "origin", 6) == 0) {
			dst = out->origin;
			dstmax = sizeof(out->origin);
		} else if (nlen == 11 && strncasecmp(name, "destination", 11) == 0) {
			dst = out->destination;
			dstmax = sizeof(out->destination);
		} else if (nlen == 3 && strncasecmp(name, "key", 3) == 0) {
			dst = out->key_id;
			dstmax = sizeof(out->key_id);
		} else if (nlen == 3 && strncasecmp(name, "sig", 3) == 0) {
			dst = out->sig;
			dstmax = sizeof(out->sig);
		}
		if (dst) {
			if (vlen >= dstmax)
				return unauth(err, "X-Matrix parameter value too long");
			memcpy(dst, val, vlen + 1);
		}
	}
	if (!out->origin[0])
		return unauth(err, "X-Matrix header has no origin");
	if (!out->key_id[0])
		return unauth(err, "X-Matrix header has no key");
	if (!out->sig[0])
		return unauth(err, "X-Matrix header has no sig");
	if (strncmp(out->key_id, "ed25519:", 8) != 0 || !out->key_id[8])
		return unauth(err, "X-Matrix key is not an ed25519 key id");
	for (const char *c = out->origin; *c; c++)
		if (!(isalnum((unsigned char)*c) || strchr(".-:[]", *c)))
			return unauth(err, "X-Matrix origin is not a server name");
	return 0;
}

int xmatrix_verify(const struct xmatrix_auth *a, const char *method, const char *uri, const char *destination,
		   json_t *content, const unsigned char pk[32], struct al_error *err)
{
	json_t *o = xmatrix_request_object(method, uri, a->origin, destination, content);
	if (!o)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	json_t *sigs = json_pack("{s:{s:s}}", a->origin, a->key_id, a->sig);
	int rc = -1;
	if (!sigs || json_object_set_new(o, "signatures", sigs) < 0) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto done;
	}
	struct al_error e = {0};
	if (sign_verify_json(o, a->origin, a->key_id, pk, &e) < 0) {
		if (e.status == 400) /* e.g. floats: no canonical form to check */
			al_error_set(err, 400, "M_BAD_JSON", "The request body is not canonical JSON: %s", e.message);
		else
			al_error_set(err, 401, "M_UNAUTHORIZED", "Invalid signature for server %s with key %s on %s %s",
				     a->origin, a->key_id, method, uri);
		goto done;
	}
	rc = 0;
done:
	json_decref(o);
	return rc;
}
