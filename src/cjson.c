#include "cjson.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if JANSSON_VERSION_HEX < 0x020e00
#error "cjson needs jansson >= 2.14 (json_object_iter_key_len, keys containing NUL)"
#endif

/* ---- output buffer ---- */

struct cjson_enc {
	char *data;
	size_t len;
	size_t cap;
	struct al_error *err;
};

static int cjson_oom(struct cjson_enc *e)
{
	return al_error_set(e->err, 500, "M_UNKNOWN", "out of memory");
}

static int cjson_reserve(struct cjson_enc *e, size_t more)
{
	size_t need, cap;
	char *p;

	if (more > SIZE_MAX - e->len - 1)
		return cjson_oom(e);
	need = e->len + more + 1; /* room for the final NUL */
	if (need <= e->cap)
		return 0;
	cap = e->cap ? e->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(e->data, cap);
	if (!p)
		return cjson_oom(e);
	e->data = p;
	e->cap = cap;
	return 0;
}

static int cjson_put(struct cjson_enc *e, const void *p, size_t n)
{
	if (cjson_reserve(e, n) != 0)
		return -1;
	memcpy(e->data + e->len, p, n);
	e->len += n;
	return 0;
}

static int cjson_putc(struct cjson_enc *e, char c)
{
	return cjson_put(e, &c, 1);
}

/* ---- scalars ---- */

/* Strings built with jansson's *_nocheck functions may hold any bytes;
 * canonical JSON is UTF-8, so check rather than sign garbage. */
static int cjson_utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i];
		size_t k;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			k = 1, cp = c & 0x1F, min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			k = 2, cp = c & 0x0F, min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			k = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		if (n - i - 1 < k)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + j] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += k + 1;
	}
	return 1;
}

static const char *cjson_short_escape(unsigned char c)
{
	switch (c) {
	case '"': return "\\\"";
	case '\\': return "\\\\";
	case '\b': return "\\b";
	case '\t': return "\\t";
	case '\n': return "\\n";
	case '\f': return "\\f";
	case '\r': return "\\r";
	default: return NULL;
	}
}

static int cjson_put_escape(struct cjson_enc *e, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	const char *s = cjson_short_escape(c);
	char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0x0F]};

	if (s)
		return cjson_put(e, s, 2);
	return cjson_put(e, u, sizeof(u));
}

static int cjson_put_string(struct cjson_enc *e, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t run = 0; /* start of the pending literal run */

	if (!cjson_utf8_valid(u, n))
		return al_error_set(e->err, 400, "M_BAD_JSON", "string is not valid UTF-8");
	if (cjson_putc(e, '"') != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (u[i] >= 0x20 && u[i] != '"' && u[i] != '\\')
			continue;
		if (cjson_put(e, s + run, i - run) != 0 || cjson_put_escape(e, u[i]) != 0)
			return -1;
		run = i + 1;
	}
	if (cjson_put(e, s + run, n - run) != 0)
		return -1;
	return cjson_putc(e, '"');
}

static int cjson_put_integer(struct cjson_enc *e, json_int_t i)
{
	char num[32];
	int n;

	if (i < -CJSON_INT_MAX || i > CJSON_INT_MAX)
		return al_error_set(e->err, 400, "M_BAD_JSON",
				    "integer %" JSON_INTEGER_FORMAT " out of range for canonical JSON", i);
	n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, i);
	if (n < 0 || (size_t)n >= sizeof(num))
		return al_error_set(e->err, 500, "M_UNKNOWN", "integer formatting failed");
	return cjson_put(e, num, (size_t)n);
}

/* ---- containers ---- */

static int cjson_put_value(struct cjson_enc *e, const json_t *v, int depth);

struct cjson_member {
	const char *key;
	size_t len;
	json_t *value;
};

/* Byte order of UTF-8 is code point order; a key that is a prefix of
 * another sorts first. */
static int cjson_member_cmp(const void *pa, const void *pb)
{
	const struct cjson_member *a = pa, *b = pb;
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->key, b->key, n);

	if (c != 0)
		return c;
	return (a->len > b->len) - (a->len < b->len);
}

static struct cjson_member *cjson_sorted_members(const json_t *obj, size_t *count)
{
	size_t n = json_object_size(obj), i = 0;
	struct cjson_member *m = calloc(n ? n : 1, sizeof(*m));

	if (!m)
		return NULL;
	/* jansson's iterator API is not const-qualified; it does not modify. */
	for (void *it = json_object_iter((json_t *)obj); it && i < n;
	     it = json_object_iter_next((json_t *)obj, it), i++) {
		m[i].key = json_object_iter_key(it);
		m[i].len = json_object_iter_key_len(it);
		m[i].value = json_object_iter_value(it);
	}
	qsort(m, i, sizeof(*m), cjson_member_cmp);
	*count = i;
	return m;
}

static int cjson_put_object(struct cjson_enc *e, const json_t *obj, int depth)
{
	size_t n = 0;
	struct cjson_member *m = cjson_sorted_members(obj, &n);

	if (!m)
		return cjson_oom(e);
	if (cjson_putc(e, '{') != 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && cjson_putc(e, ',') != 0)
			goto fail;
		if (cjson_put_string(e, m[i].key, m[i].len) != 0 || cjson_putc(e, ':') != 0 ||
		    cjson_put_value(e, m[i].value, depth) != 0)
			goto fail;
	}
	free(m);
	return cjson_putc(e, '}');
fail:
	free(m);
	return -1;
}

static int cjson_put_array(struct cjson_enc *e, const json_t *arr, int depth)
{
	size_t n = json_array_size(arr);

	if (cjson_putc(e, '[') != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && cjson_putc(e, ',') != 0)
			return -1;
		if (cjson_put_value(e, json_array_get(arr, i), depth) != 0)
			return -1;
	}
	return cjson_putc(e, ']');
}

/* depth: number of containers around v. */
static int cjson_put_value(struct cjson_enc *e, const json_t *v, int depth)
{
	if (!v)
		return al_error_set(e->err, 400, "M_BAD_JSON", "missing JSON value");
	if ((json_is_object(v) || json_is_array(v)) && depth + 1 > CJSON_MAX_DEPTH)
		return al_error_set(e->err, 400, "M_BAD_JSON", "JSON nested too deeply");
	switch (json_typeof(v)) {
	case JSON_OBJECT: return cjson_put_object(e, v, depth + 1);
	case JSON_ARRAY: return cjson_put_array(e, v, depth + 1);
	case JSON_STRING: return cjson_put_string(e, json_string_value(v), json_string_length(v));
	case JSON_INTEGER: return cjson_put_integer(e, json_integer_value(v));
	case JSON_REAL: return al_error_set(e->err, 400, "M_BAD_JSON", "floats are not allowed in canonical JSON");
	case JSON_TRUE: return cjson_put(e, "true", 4);
	case JSON_FALSE: return cjson_put(e, "false", 5);
	case JSON_NULL: return cjson_put(e, "null", 4);
	}
	return al_error_set(e->err, 400, "M_BAD_JSON", "unknown JSON type");
}

char *cjson_encode(const json_t *v, size_t *len_out, struct al_error *err)
{
	struct cjson_enc e = {.err = err};

	if (cjson_put_value(&e, v, 0) != 0 || cjson_reserve(&e, 0) != 0)
		goto fail;
	e.data[e.len] = '\0';
	if (len_out)
		*len_out = e.len;
	return e.data;
fail:
	free(e.data);
	return NULL;
}

/* ---- parsing ---- */

/* jansson recurses while parsing; count nesting on the raw bytes first so
 * a hostile body never reaches it. Brackets inside strings do not count. */
static int cjson_depth_ok(const char *buf, size_t len, int max_depth)
{
	int depth = 0, in_string = 0;

	for (size_t i = 0; i < len; i++) {
		char c = buf[i];

		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = 0;
			continue;
		}
		if (c == '"')
			in_string = 1;
		else if ((c == '[' || c == '{') && ++depth > max_depth)
			return 0;
		else if (c == ']' || c == '}')
			depth--;
	}
	return 1;
}

json_t *cjson_parse(const char *buf, size_t len, const struct cjson_limits *lim, struct al_error *err)
{
	static const struct cjson_limits defaults = {CJSON_DEFAULT_MAX_BYTES, CJSON_MAX_DEPTH};
	json_error_t jerr;
	json_t *v;

	if (!lim)
		lim = &defaults;
	if (len > lim->max_bytes) {
		al_error_set(err, 413, "M_TOO_LARGE", "body too large (%zu bytes, limit %zu)", len, lim->max_bytes);
		return NULL;
	}
	if (!buf || len == 0) {
		al_error_set(err, 400, "M_NOT_JSON", "empty body");
		return NULL;
	}
	if (!cjson_depth_ok(buf, len, lim->max_depth)) {
		al_error_set(err, 400, "M_BAD_JSON", "JSON nested too deeply");
		return NULL;
	}
	v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!v)
		al_error_set(err, 400, "M_NOT_JSON", "%s", jerr.text);
	return v;
}

json_t *cjson_parse_object(const char *buf, size_t len, const struct cjson_limits *lim, struct al_error *err)
{
	json_t *v = cjson_parse(buf, len, lim, err);

	if (v && !json_is_object(v)) {
		json_decref(v);
		al_error_set(err, 400, "M_BAD_JSON", "body must be a JSON object");
		return NULL;
	}
	return v;
}

const char *cjson_opt_string(const json_t *o, const char *key, bool *bad)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return NULL;
	if (!json_is_string(v)) {
		*bad = true;
		return NULL;
	}
	return json_string_value(v);
}
