#include <stdlib.h>
#include <string.h>

#include "unit.h"

#include "cjson.h"

/* Canonical form of JSON text, or NULL; err gets the encoder's error. */
static char *canon(const char *text, struct al_error *err)
{
	json_error_t jerr;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
	char *out;

	ck_assert_msg(v != NULL, "test input does not parse: %s", jerr.text);
	out = cjson_encode(v, NULL, err);
	json_decref(v);
	return out;
}

static void assert_canon(const char *in, const char *want)
{
	struct al_error err = {0};
	char *out = canon(in, &err);

	ck_assert_msg(out != NULL, "%s: %s", in, err.message);
	ck_assert_str_eq(out, want);
	free(out);
}

static void assert_refused(json_t *v, const char *message)
{
	struct al_error err = {0};
	char *out = cjson_encode(v, NULL, &err);

	ck_assert_ptr_null(out);
	ck_assert_int_eq(err.status, 400);
	ck_assert_str_eq(err.errcode, "M_BAD_JSON");
	if (message)
		ck_assert_str_eq(err.message, message);
	json_decref(v);
}

START_TEST(test_spec_examples)
{
	assert_canon("{}", "{}");
	assert_canon("{\n    \"one\": 1,\n    \"two\": \"Two\"\n}", "{\"one\":1,\"two\":\"Two\"}");
	assert_canon("{\n    \"b\": \"2\",\n    \"a\": \"1\"\n}", "{\"a\":\"1\",\"b\":\"2\"}");
	assert_canon("{\"b\":\"2\",\"a\":\"1\"}", "{\"a\":\"1\",\"b\":\"2\"}");
	assert_canon("{\"auth\": {\"success\": true, \"mxid\": \"@john.doe:example.com\","
		     " \"profile\": {\"display_name\": \"John Doe\", \"three_pids\": ["
		     "{\"medium\": \"email\", \"address\": \"john.doe@example.org\"},"
		     "{\"medium\": \"msisdn\", \"address\": \"123456789\"}]}}}",
		     "{\"auth\":{\"mxid\":\"@john.doe:example.com\",\"profile\":{\"display_name\":"
		     "\"John Doe\",\"three_pids\":[{\"address\":\"john.doe@example.org\",\"medium\":"
		     "\"email\"},{\"address\":\"123456789\",\"medium\":\"msisdn\"}]},\"success\":true}}");
	assert_canon("{\"a\": \"日本語\"}", "{\"a\":\"日本語\"}");
	assert_canon("{\"本\": 2, \"日\": 1}", "{\"日\":1,\"本\":2}");
	assert_canon("{\"a\": \"\\u65E5\"}", "{\"a\":\"日\"}");
	assert_canon("{\"a\": null}", "{\"a\":null}");
	/* The spec's last example, {"a":-0,"b":1e10}: -0 is an integer for
	 * jansson and comes out as 0; 1e10 is a real and is refused (below). */
	assert_canon("{\"a\": -0}", "{\"a\":0}");
}
END_TEST

START_TEST(test_scalars_and_arrays)
{
	assert_canon("[]", "[]");
	assert_canon("[1, -2, true, false, null, \"x\", [], {}]", "[1,-2,true,false,null,\"x\",[],{}]");
	assert_canon("\"top\"", "\"top\"");
	assert_canon("0", "0");
}
END_TEST

START_TEST(test_escapes)
{
	assert_canon("[\"\\u001F\"]", "[\"\\u001f\"]");
	assert_canon("[\"\\u0001\\u000b\\u000E\\u001a\"]", "[\"\\u0001\\u000b\\u000e\\u001a\"]");
	assert_canon("[\"\\u0008\\u0009\\u000a\\u000C\\u000D\"]", "[\"\\b\\t\\n\\f\\r\"]");
	assert_canon("[\"a\\nb\"]", "[\"a\\nb\"]");
	assert_canon("[\"\\\"\\\\\"]", "[\"\\\"\\\\\"]");
	assert_canon("[\"\\u007f\"]", "[\"\x7f\"]");
	assert_canon("[\"\\/a/b\"]", "[\"/a/b\"]");
	assert_canon("[\"\\u00e9\\ud83d\\ude00\"]", "[\"é😀\"]");
	assert_canon("[\"<>&'\\u2028\"]", "[\"<>&'\xe2\x80\xa8\"]");
}
END_TEST

START_TEST(test_key_order)
{
	assert_canon("{\"b\":1,\"aa\":2,\"a\":3,\"B\":4,\"\\u00e9\":5,\"z\":6,\"\":7}",
		     "{\"\":7,\"B\":4,\"a\":3,\"aa\":2,\"b\":1,\"z\":6,\"é\":5}");
	/* nested objects are sorted too, arrays keep their order */
	assert_canon("{\"z\":{\"y\":1,\"x\":[{\"d\":1,\"c\":2},3]},\"a\":0}",
		     "{\"a\":0,\"z\":{\"x\":[{\"c\":2,\"d\":1},3],\"y\":1}}");
	/* U+FFFF sorts before U+10000 in code point (and UTF-8 byte) order */
	assert_canon("{\"\\ud800\\udc00\":1,\"\\uffff\":2}", "{\"\xef\xbf\xbf\":2,\"\xf0\x90\x80\x80\":1}");
}
END_TEST

START_TEST(test_nul_in_keys_and_strings)
{
	static const char want[] = "{\"a\":2,\"a\\u0000b\":[\"x\\u0000y\"]}";
	json_t *obj = json_object();
	struct al_error err = {0};
	size_t len = 0;
	char *out;

	ck_assert_int_eq(json_object_setn_new(obj, "a\0b", 3, json_pack("[s#]", "x\0y", 3)), 0);
	ck_assert_int_eq(json_object_set_new(obj, "a", json_integer(2)), 0);
	out = cjson_encode(obj, &len, &err);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(len, sizeof(want) - 1);
	ck_assert_mem_eq(out, want, len);
	free(out);
	json_decref(obj);
}
END_TEST

START_TEST(test_len_out)
{
	json_t *v = json_pack("{s:s}", "k", "日");
	size_t len = 0;
	char *out = cjson_encode(v, &len, NULL);

	ck_assert_uint_eq(len, strlen("{\"k\":\"日\"}"));
	ck_assert_uint_eq(len, strlen(out));
	free(out);
	json_decref(v);
}
END_TEST

START_TEST(test_integer_range)
{
	assert_canon("[9007199254740991, -9007199254740991]", "[9007199254740991,-9007199254740991]");
	assert_refused(json_pack("[I]", (json_int_t)9007199254740992LL), NULL);
	assert_refused(json_pack("[I]", (json_int_t)-9007199254740992LL), NULL);
	assert_refused(json_pack("{s:I}", "big", (json_int_t)9223372036854775807LL), NULL);
}
END_TEST

START_TEST(test_reals_refused)
{
	static const char msg[] = "floats are not allowed in canonical JSON";

	assert_refused(json_real(1.5), msg);
	assert_refused(json_pack("{s:f}", "a", 1.0), msg);
	assert_refused(json_loads("{\"a\":-0,\"b\":1e10}", 0, NULL), msg);
}
END_TEST

static json_t *nested_arrays(int depth)
{
	json_t *v = json_array();

	for (int i = 1; i < depth; i++) {
		json_t *outer = json_array();

		json_array_append_new(outer, v);
		v = outer;
	}
	return v;
}

START_TEST(test_depth_limit)
{
	json_t *v = nested_arrays(CJSON_MAX_DEPTH);
	json_t *obj;
	char *out = cjson_encode(v, NULL, NULL);

	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(strlen(out), 2 * CJSON_MAX_DEPTH);
	free(out);
	json_decref(v);
	assert_refused(nested_arrays(CJSON_MAX_DEPTH + 1), "JSON nested too deeply");
	obj = json_object();
	json_object_set_new(obj, "k", nested_arrays(CJSON_MAX_DEPTH));
	assert_refused(obj, "JSON nested too deeply");
}
END_TEST

START_TEST(test_invalid_utf8_refused)
{
	assert_refused(json_pack("[o]", json_stringn_nocheck("\xff", 1)), "string is not valid UTF-8");
	assert_refused(json_pack("[o]", json_stringn_nocheck("\xc0\xaf", 2)), NULL);     /* overlong */
	assert_refused(json_pack("[o]", json_stringn_nocheck("\xed\xa0\x80", 3)), NULL); /* surrogate */
	assert_refused(json_pack("[o]", json_stringn_nocheck("\xe6\x97", 2)), NULL);     /* truncated */
}
END_TEST

/* ---- cjson_parse ---- */

static const struct cjson_limits small = {64, 4};

static void assert_parse_error(const char *buf, size_t len, const struct cjson_limits *lim, int status,
			       const char *errcode)
{
	struct al_error err = {0};
	json_t *v = cjson_parse(buf, len, lim, &err);

	ck_assert_msg(v == NULL, "accepted %.*s", (int)len, buf ? buf : "");
	ck_assert_int_eq(err.status, status);
	ck_assert_str_eq(err.errcode, errcode);
	ck_assert_str_ne(err.message, "");
}

static void assert_parses(const char *buf, const struct cjson_limits *lim)
{
	struct al_error err = {0};
	json_t *v = cjson_parse(buf, strlen(buf), lim, &err);

	ck_assert_msg(v != NULL, "%s: %s", buf, err.message);
	json_decref(v);
}

START_TEST(test_parse_ok)
{
	struct al_error err = {0};
	const char *text = "{\"a\":[1,2,{\"b\":null}]} trailing";
	json_t *v = cjson_parse(text, strlen("{\"a\":[1,2,{\"b\":null}]}"), &small, &err);

	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(v, "a"), 1)), 2);
	json_decref(v);
	assert_parses("[[[[]]]]", &small);
	assert_parses("42", NULL);
	assert_parses("\"s\"", NULL);
}
END_TEST

START_TEST(test_parse_too_large)
{
	char buf[65];

	memset(buf, ' ', sizeof(buf));
	buf[0] = '{';
	buf[64] = '}';
	assert_parse_error(buf, sizeof(buf), &small, 413, "M_TOO_LARGE");
	/* size is checked before depth */
	memset(buf, '[', sizeof(buf));
	assert_parse_error(buf, sizeof(buf), &small, 413, "M_TOO_LARGE");
}
END_TEST

START_TEST(test_parse_too_deep)
{
	char buf[400];
	struct al_error err = {0};

	for (int i = 0; i < 200; i++) {
		buf[i] = '[';
		buf[200 + i] = ']';
	}
	ck_assert_ptr_null(cjson_parse(buf, sizeof(buf), NULL, &err));
	ck_assert_int_eq(err.status, 400);
	ck_assert_str_eq(err.errcode, "M_BAD_JSON");
	ck_assert_str_eq(err.message, "JSON nested too deeply");
	assert_parse_error("[[[[[]]]]]", 10, &small, 400, "M_BAD_JSON");
	assert_parse_error("{\"a\":[{\"b\":[[1]]}]}", 19, &small, 400, "M_BAD_JSON");
}
END_TEST

START_TEST(test_parse_depth_ignores_strings)
{
	/* brackets inside strings do not count */
	assert_parses("{\"a\":\"[[[[[[{{{{{{\"}", &small);
	/* an escaped quote does not end the string */
	assert_parses("{\"a\":\"\\\"[[[[[[\"}", &small);
	/* an escaped backslash does end it: the brackets after count */
	assert_parse_error("[\"\\\\\",[[[[]]]]]", 15, &small, 400, "M_BAD_JSON");
	assert_parses("[\"\\\\\",[[[]]]]", &small);
}
END_TEST

START_TEST(test_parse_not_json)
{
	assert_parse_error("", 0, &small, 400, "M_NOT_JSON");
	assert_parse_error(NULL, 0, NULL, 400, "M_NOT_JSON");
	assert_parse_error("   ", 3, &small, 400, "M_NOT_JSON");
	assert_parse_error("{\"a\":", 5, &small, 400, "M_NOT_JSON");
	assert_parse_error("{\"a\":1} x", 9, &small, 400, "M_NOT_JSON");
	assert_parse_error("hello", 5, &small, 400, "M_NOT_JSON");
	assert_parse_error("{\"a\":\"\\u0000\"}", 14, &small, 400, "M_NOT_JSON");
	assert_parse_error("{\"a\":\"\\ud800\"}", 14, &small, 400, "M_NOT_JSON");
	assert_parse_error("[\"\xff\"]", 4, &small, 400, "M_NOT_JSON");
}
END_TEST

START_TEST(test_parse_duplicate_keys)
{
	struct al_error err = {0};

	ck_assert_ptr_null(cjson_parse("{\"a\":1,\"a\":2}", 13, &small, &err));
	ck_assert_str_eq(err.errcode, "M_NOT_JSON");
	ck_assert_ptr_nonnull(strstr(err.message, "duplicate"));
}
END_TEST

START_TEST(test_parse_object)
{
	struct al_error err = {0};
	json_t *v = cjson_parse_object("{\"a\":1}", 7, &small, &err);

	ck_assert_ptr_nonnull(v);
	json_decref(v);
	ck_assert_ptr_null(cjson_parse_object("[1]", 3, &small, &err));
	ck_assert_int_eq(err.status, 400);
	ck_assert_str_eq(err.errcode, "M_BAD_JSON");
	ck_assert_str_eq(err.message, "body must be a JSON object");
	ck_assert_ptr_null(cjson_parse_object("{", 1, &small, &err));
	ck_assert_str_eq(err.errcode, "M_NOT_JSON");
}
END_TEST

UNIT_MAIN("cjson", test_spec_examples, test_scalars_and_arrays, test_escapes, test_key_order,
	  test_nul_in_keys_and_strings, test_len_out, test_integer_range, test_reals_refused, test_depth_limit,
	  test_invalid_utf8_refused, test_parse_ok, test_parse_too_large, test_parse_too_deep,
	  test_parse_depth_ignores_strings, test_parse_not_json, test_parse_duplicate_keys, test_parse_object)
