#include <stdlib.h>
#include <string.h>

#include "unit.h"

#include "b64.h"
#include "cjson.h"
#include "sign.h"

/* Test vectors from the spec ("Signing JSON" test vectors), cross-checked
 * with python3-signedjson. */
#define SEED_B64 "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
#define PK_B64 "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
#define SIG_EMPTY "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
#define SIG_ONE_TWO "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"

static struct sign_key key;

static void setup(void)
{
	unsigned char seed[32];
	size_t n;

	ck_assert_int_ge(sodium_init(), 0);
	ck_assert_int_eq(b64_decode(SEED_B64, strlen(SEED_B64), seed, sizeof(seed), &n), 0);
	ck_assert_uint_eq(n, 32);
	ck_assert_int_eq(sign_key_from_seed(&key, "ed25519:1", seed), 0);
}

static void teardown(void)
{
	sign_key_wipe(&key);
}

static json_t *load(const char *text)
{
	json_error_t jerr;
	json_t *v = json_loads(text, 0, &jerr);

	ck_assert_msg(v != NULL, "%s", jerr.text);
	return v;
}

static void assert_canon(const json_t *v, const char *want)
{
	char *out = cjson_encode(v, NULL, NULL);

	ck_assert_ptr_nonnull(out);
	ck_assert_str_eq(out, want);
	free(out);
}

static const char *sig_of(const json_t *obj, const char *signer, const char *key_id)
{
	return json_string_value(json_object_get(json_object_get(json_object_get(obj, "signatures"), signer), key_id));
}

START_TEST(test_key_from_seed)
{
	char *pk = sign_public_b64(&key);

	ck_assert_str_eq(key.key_id, "ed25519:1");
	ck_assert_str_eq(pk, PK_B64);
	free(pk);
}
END_TEST

START_TEST(test_key_id_checked)
{
	struct sign_key k;
	char long_id[80];

	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	memcpy(long_id, "ed25519:", 8);
	ck_assert_int_eq(sign_key_from_seed(&k, "rsa:1", key.seed), -1);
	ck_assert_int_eq(sign_key_from_seed(&k, "ed25519:", key.seed), -1);
	ck_assert_int_eq(sign_key_from_seed(&k, NULL, key.seed), -1);
	ck_assert_int_eq(sign_key_from_seed(&k, long_id, key.seed), -1);
	ck_assert_int_eq(sign_key_generate(&k, "ed25519"), -1);
	long_id[63] = '\0';
	ck_assert_int_eq(sign_key_from_seed(&k, long_id, key.seed), 0);
	ck_assert_str_eq(k.key_id, long_id);
}
END_TEST

START_TEST(test_generate_and_wipe)
{
	static const struct sign_key zero;
	struct sign_key a, b;

	ck_assert_int_eq(sign_key_generate(&a, "ed25519:a_AbCd"), 0);
	ck_assert_int_eq(sign_key_generate(&b, "ed25519:a_AbCd"), 0);
	ck_assert_str_eq(a.key_id, "ed25519:a_AbCd");
	ck_assert_int_ne(memcmp(a.seed, b.seed, sizeof(a.seed)), 0);
	ck_assert_int_ne(memcmp(a.pk, b.pk, sizeof(a.pk)), 0);
	sign_key_wipe(&a);
	ck_assert_mem_eq(&a, &zero, sizeof(a));
	sign_key_wipe(&b);
}
END_TEST

START_TEST(test_vector_empty)
{
	json_t *obj = json_object();
	struct al_error err = {0};

	ck_assert_int_eq(sign_json(obj, "domain", &key, &err), 0);
	assert_canon(obj, "{\"signatures\":{\"domain\":{\"ed25519:1\":\"" SIG_EMPTY "\"}}}");
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), 0);
	json_decref(obj);
}
END_TEST

START_TEST(test_vector_one_two)
{
	json_t *obj = load("{\"one\": 1, \"two\": \"Two\"}");
	struct al_error err = {0};

	ck_assert_int_eq(sign_json(obj, "domain", &key, &err), 0);
	assert_canon(obj,
		     "{\"one\":1,\"signatures\":{\"domain\":{\"ed25519:1\":\"" SIG_ONE_TWO "\"}},\"two\":\"Two\"}");
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), 0);
	json_decref(obj);
}
END_TEST

START_TEST(test_unsigned_ignored_and_kept)
{
	json_t *obj = load("{\"one\": 1, \"two\": \"Two\", \"unsigned\": {\"age_ts\": 1}}");
	struct al_error err = {0};

	ck_assert_int_eq(sign_json(obj, "domain", &key, &err), 0);
	ck_assert_str_eq(sig_of(obj, "domain", "ed25519:1"), SIG_ONE_TWO);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(obj, "unsigned"), "age_ts")), 1);
	json_object_set_new(obj, "unsigned", json_pack("{s:i}", "age_ts", 999));
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), 0);
	json_object_del(obj, "unsigned");
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), 0);
	json_decref(obj);
}
END_TEST

START_TEST(test_other_signatures_kept)
{
	json_t *obj = load("{\"one\": 1, \"two\": \"Two\", \"signatures\": {"
			   "\"other.org\": {\"ed25519:x\": \"abc\"},"
			   "\"domain\": {\"ed25519:0\": \"old\"}}}");
	struct al_error err = {0};

	ck_assert_int_eq(sign_json(obj, "domain", &key, &err), 0);
	ck_assert_str_eq(sig_of(obj, "domain", "ed25519:1"), SIG_ONE_TWO);
	ck_assert_str_eq(sig_of(obj, "domain", "ed25519:0"), "old");
	ck_assert_str_eq(sig_of(obj, "other.org", "ed25519:x"), "abc");
	/* signing again replaces our own signature and nothing else */
	ck_assert_int_eq(sign_json(obj, "domain", &key, &err), 0);
	ck_assert_uint_eq(json_object_size(json_object_get(json_object_get(obj, "signatures"), "domain")), 2);
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), 0);
	json_decref(obj);
}
END_TEST

START_TEST(test_verify_fails_after_change)
{
	json_t *obj = load("{\"one\": 1, \"two\": \"Two\", \"nested\": {\"a\": [1, 2]}}");
	struct al_error err = {0};

	ck_assert_int_eq(sign_json(obj, "domain", &key, &err), 0);
	json_object_set_new(obj, "two", json_string("Three"));
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), -1);
	ck_assert_int_eq(err.status, 401);
	ck_assert_str_eq(err.errcode, "M_UNAUTHORIZED");
	ck_assert_ptr_nonnull(strstr(err.message, "does not verify"));
	json_object_set_new(obj, "two", json_string("Two"));
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), 0);
	json_array_append_new(json_object_get(json_object_get(obj, "nested"), "a"), json_integer(3));
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), -1);
	json_decref(obj);
}
END_TEST

START_TEST(test_verify_fails_with_wrong_key)
{
	json_t *obj = load("{\"one\": 1}");
	struct al_error err = {0};
	struct sign_key other;

	ck_assert_int_eq(sign_key_generate(&other, "ed25519:1"), 0);
	ck_assert_int_eq(sign_json(obj, "domain", &key, &err), 0);
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", other.pk, &err), -1);
	ck_assert_int_eq(err.status, 401);
	ck_assert_str_eq(err.errcode, "M_UNAUTHORIZED");
	sign_key_wipe(&other);
	json_decref(obj);
}
END_TEST

START_TEST(test_verify_missing_or_malformed)
{
	json_t *obj = load("{\"one\": 1}");
	struct al_error err = {0};

	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), -1);
	ck_assert_int_eq(err.status, 401);
	ck_assert_ptr_nonnull(strstr(err.message, "missing signature"));
	ck_assert_int_eq(sign_json(obj, "domain", &key, &err), 0);
	ck_assert_int_eq(sign_verify_json(obj, "other.org", "ed25519:1", key.pk, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.message, "missing signature"));
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:2", key.pk, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.message, "missing signature"));

	json_object_set_new(json_object_get(json_object_get(obj, "signatures"), "domain"), "ed25519:1",
			    json_string("not*base64"));
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), -1);
	ck_assert_int_eq(err.status, 401);
	ck_assert_ptr_nonnull(strstr(err.message, "bad base64"));
	json_object_set_new(json_object_get(json_object_get(obj, "signatures"), "domain"), "ed25519:1",
			    json_string("Zm9v"));
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.message, "bad base64"));
	json_object_set_new(json_object_get(json_object_get(obj, "signatures"), "domain"), "ed25519:1",
			    json_integer(5));
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), -1);
	ck_assert_ptr_nonnull(strstr(err.message, "missing signature"));
	json_decref(obj);
}
END_TEST

START_TEST(test_verify_accepts_padded_urlsafe_signature)
{
	static const char padded[] = SIG_ONE_TWO "==";
	json_t *obj = load("{\"one\": 1, \"two\": \"Two\"}");
	struct al_error err = {0};

	ck_assert_int_eq(sign_json(obj, "domain", &key, &err), 0);
	json_object_set_new(json_object_get(json_object_get(obj, "signatures"), "domain"), "ed25519:1",
			    json_string(padded));
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), 0);
	json_decref(obj);
}
END_TEST

START_TEST(test_sign_refuses_bad_input)
{
	struct al_error err = {0};
	json_t *arr = json_array();
	json_t *obj = load("{\"signatures\": []}");
	json_t *flt = load("{\"a\": 1.5}");

	ck_assert_int_eq(sign_json(arr, "domain", &key, &err), -1);
	ck_assert_int_eq(err.status, 400);
	ck_assert_int_eq(sign_json(obj, "domain", &key, &err), -1);
	ck_assert_str_eq(err.errcode, "M_BAD_JSON");
	ck_assert_int_eq(sign_json(flt, "domain", &key, &err), -1);
	ck_assert_str_eq(err.message, "floats are not allowed in canonical JSON");
	ck_assert_ptr_null(json_object_get(flt, "signatures"));
	json_decref(arr);
	json_decref(obj);
	json_decref(flt);
}
END_TEST

/* jansson's json_copy drops the part of a key after a NUL; signing must not. */
START_TEST(test_sign_covers_nul_keys)
{
	json_t *obj = json_object();
	struct al_error err = {0};
	char *text, *sig;
	size_t len;

	json_object_setn_new(obj, "k\0x", 3, json_string("v"));
	json_object_set_new(obj, "k", json_integer(1));
	json_object_set_new(obj, "unsigned", json_object());
	text = cjson_encode(obj, &len, &err);
	ck_assert_ptr_nonnull(text);
	ck_assert_str_eq(text, "{\"k\":1,\"k\\u0000x\":\"v\",\"unsigned\":{}}");
	json_object_del(obj, "unsigned");
	free(text);
	text = cjson_encode(obj, &len, &err);
	ck_assert_ptr_nonnull(text);
	ck_assert_int_eq(sign_detached_b64(&key, text, len, &sig), 0);
	ck_assert_int_eq(sign_json(obj, "domain", &key, &err), 0);
	ck_assert_str_eq(sig_of(obj, "domain", "ed25519:1"), sig);
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), 0);
	json_object_set_new(obj, "k", json_integer(2));
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), -1);
	json_object_set_new(obj, "k", json_integer(1));
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), 0);
	json_object_setn_new(obj, "k\0x", 3, json_string("w"));
	ck_assert_int_eq(sign_verify_json(obj, "domain", "ed25519:1", key.pk, &err), -1);
	free(text);
	free(sig);
	json_decref(obj);
}
END_TEST

START_TEST(test_detached)
{
	static const char msg[] = "{\"one\":1,\"two\":\"Two\"}";
	char *sig = NULL;

	ck_assert_int_eq(sign_detached_b64(&key, msg, strlen(msg), &sig), 0);
	ck_assert_str_eq(sig, SIG_ONE_TWO);
	ck_assert_int_eq(sign_verify_detached_b64(key.pk, msg, strlen(msg), sig), 0);
	ck_assert_int_eq(sign_verify_detached_b64(key.pk, msg, strlen(msg) - 1, sig), -1);
	ck_assert_int_eq(sign_verify_detached_b64(key.pk, msg, strlen(msg), "Zm9v"), -1);
	ck_assert_int_eq(sign_verify_detached_b64(key.pk, msg, strlen(msg), "!!"), -1);
	ck_assert_int_eq(sign_verify_detached_b64(key.pk, msg, strlen(msg), NULL), -1);
	sig[0] = sig[0] == 'K' ? 'L' : 'K';
	ck_assert_int_eq(sign_verify_detached_b64(key.pk, msg, strlen(msg), sig), -1);
	free(sig);
}
END_TEST

UNIT_MAIN_WITH_FIXTURE("sign", setup, teardown, test_key_from_seed, test_key_id_checked, test_generate_and_wipe,
		       test_vector_empty, test_vector_one_two, test_unsigned_ignored_and_kept,
		       test_other_signatures_kept, test_verify_fails_after_change, test_verify_fails_with_wrong_key,
		       test_verify_missing_or_malformed, test_verify_accepts_padded_urlsafe_signature,
		       test_sign_refuses_bad_input, test_sign_covers_nul_keys, test_detached)
