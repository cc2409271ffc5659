#include "unit.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fed_client.h"
#include "fed_internal.h"
#include "fed_keys.h"
#include "fed_sender.h"
#include "sign.h"
#include "xmatrix.h"

START_TEST(xmatrix_build_parse_verify)
{
	struct sign_key k;
	ck_assert_int_eq(sign_key_generate(&k, "ed25519:t1"), 0);
	json_t *content = json_pack("{s:s, s:i}", "a", "b", "n", 3);
	struct al_error err = {0};
	char *h = xmatrix_build_header(&k, "a.test:8448", "b.test", "PUT", "/_matrix/federation/v1/send/1", content,
				       &err);
	ck_assert_ptr_nonnull(h);
	ck_assert(strncmp(h, "X-Matrix origin=\"a.test:8448\",destination=\"b.test\",key=\"ed25519:t1\",sig=\"", 72) ==
		  0);
	struct xmatrix_auth a;
	ck_assert_int_eq(xmatrix_parse_header(h, &a, &err), 0);
	ck_assert_str_eq(a.origin, "a.test:8448");
	ck_assert_str_eq(a.destination, "b.test");
	ck_assert_str_eq(a.key_id, "ed25519:t1");
	ck_assert_int_eq(xmatrix_verify(&a, "PUT", "/_matrix/federation/v1/send/1", "b.test", content, k.pk, &err), 0);
	/* altered body, uri, method, destination */
	json_t *other = json_pack("{s:s, s:i}", "a", "b", "n", 4);
	ck_assert_int_eq(xmatrix_verify(&a, "PUT", "/_matrix/federation/v1/send/1", "b.test", other, k.pk, &err), -1);
	ck_assert_int_eq(err.status, 401);
	ck_assert_int_eq(xmatrix_verify(&a, "PUT", "/_matrix/federation/v1/send/2", "b.test", content, k.pk, &err), -1);
	ck_assert_int_eq(xmatrix_verify(&a, "POST", "/_matrix/federation/v1/send/1", "b.test", content, k.pk, &err),
			 -1);
	ck_assert_int_eq(xmatrix_verify(&a, "PUT", "/_matrix/federation/v1/send/1", "c.test", content, k.pk, &err), -1);
	json_decref(other);
	json_decref(content);
	free(h);
	sign_key_wipe(&k);
}
END_TEST

START_TEST(xmatrix_parse_variants)
{
	struct xmatrix_auth a;
	struct al_error err = {0};
	/* unquoted values, other order, spaces, case-insensitive names */
	ck_assert_int_eq(
		xmatrix_parse_header("X-Matrix  Key=ed25519:x, sig=abc,origin=o.test ,destination=d.test", &a, &err),
		0);
	ck_assert_str_eq(a.origin, "o.test");
	ck_assert_str_eq(a.key_id, "ed25519:x");
	ck_assert_str_eq(a.sig, "abc");
	ck_assert_str_eq(a.destination, "d.test");
	/* quoted with escapes; destination absent */
	ck_assert_int_eq(xmatrix_parse_header("X-Matrix origin=\"o.test\",key=\"ed25519:\\x\",sig=\"s\"", &a, &err), 0);
	ck_assert_str_eq(a.key_id, "ed25519:x");
	ck_assert_str_eq(a.destination, "");
	/* refusals */
	ck_assert_int_eq(xmatrix_parse_header(NULL, &a, &err), -1);
	ck_assert_str_eq(err.message, "Missing Authorization header");
	ck_assert_int_eq(xmatrix_parse_header("Bearer abc", &a, &err), -1);
	ck_assert_int_eq(xmatrix_parse_header("X-Matrix origin=o.test,key=ed25519:x", &a, &err), -1);
	ck_assert_int_eq(xmatrix_parse_header("X-Matrix origin=\"o.test,key=ed25519:x,sig=s", &a, &err), -1);
	ck_assert_int_eq(xmatrix_parse_header("X-Matrix origin=o/x,key=ed25519:x,sig=s", &a, &err), -1);
	ck_assert_int_eq(xmatrix_parse_header("X-Matrix origin=o.test,key=rsa:x,sig=s", &a, &err), -1);
	char big[4000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(xmatrix_parse_header(big, &a, &err), -1);
	char longval[600] = "X-Matrix origin=";
	memset(longval + 16, 'a', 400);
	longval[416] = '\0';
	ck_assert_int_eq(xmatrix_parse_header(longval, &a, &err), -1);
	ck_assert_int_eq(err.status, 401);
}
END_TEST

START_TEST(backoff_math)
{
	ck_assert_int_eq(fed_backoff_next(0), FED_BACKOFF_MIN_MS);
	ck_assert_int_eq(fed_backoff_next(2000), 4000);
	ck_assert_int_eq(fed_backoff_next(4000), 8000);
	int64_t v = 0;
	for (int i = 0; i < 40; i++)
		v = fed_backoff_next(v);
	ck_assert_int_eq(v, FED_BACKOFF_MAX_MS);
	ck_assert_int_eq(fed_backoff_next(FED_BACKOFF_MAX_MS), FED_BACKOFF_MAX_MS);
	ck_assert_int_eq(fed_backoff_next(400000), FED_BACKOFF_MAX_MS);
}
END_TEST

START_TEST(discovery_parsing)
{
	char host[256];
	int port;
	bool ip;
	ck_assert_int_eq(fed_server_name_split("example.org", host, sizeof(host), &port, &ip), 0);
	ck_assert_str_eq(host, "example.org");
	ck_assert_int_eq(port, 0);
	ck_assert(!ip);
	ck_assert_int_eq(fed_server_name_split("localhost:8448", host, sizeof(host), &port, &ip), 0);
	ck_assert_str_eq(host, "localhost");
	ck_assert_int_eq(port, 8448);
	ck_assert_int_eq(fed_server_name_split("1.2.3.4", host, sizeof(host), &port, &ip), 0);
	ck_assert(ip);
	ck_assert_int_eq(fed_server_name_split("[::1]:99", host, sizeof(host), &port, &ip), 0);
	ck_assert_str_eq(host, "[::1]");
	ck_assert_int_eq(port, 99);
	ck_assert(ip);
	ck_assert_int_eq(fed_server_name_split("", host, sizeof(host), &port, &ip), -1);
	ck_assert_int_eq(fed_server_name_split("a.test:0", host, sizeof(host), &port, &ip), -1);
	ck_assert_int_eq(fed_server_name_split("a.test:70000", host, sizeof(host), &port, &ip), -1);
	ck_assert_int_eq(fed_server_name_split("a.test:", host, sizeof(host), &port, &ip), -1);
	ck_assert_int_eq(fed_server_name_split("a_b.test", host, sizeof(host), &port, &ip), -1);
	ck_assert_int_eq(fed_server_name_split("[::1", host, sizeof(host), &port, &ip), -1);

	char out[256];
	const char *wk = "{\"m.server\": \"matrix.example.org:443\"}";
	ck_assert_int_eq(fed_wellknown_parse(wk, strlen(wk), out, sizeof(out)), 0);
	ck_assert_str_eq(out, "matrix.example.org:443");
	const char *bad1 = "{\"m.server\": 5}";
	ck_assert_int_eq(fed_wellknown_parse(bad1, strlen(bad1), out, sizeof(out)), -1);
	const char *bad2 = "{\"m.server\": \"evil/path\"}";
	ck_assert_int_eq(fed_wellknown_parse(bad2, strlen(bad2), out, sizeof(out)), -1);
	ck_assert_int_eq(fed_wellknown_parse("nope", 4, out, sizeof(out)), -1);

	ck_assert_int_eq(fed_cache_control_max_age(NULL, 86400, 60, 172800), 86400);
	ck_assert_int_eq(fed_cache_control_max_age("public, max-age=3600", 86400, 60, 172800), 3600);
	ck_assert_int_eq(fed_cache_control_max_age("max-age=5", 86400, 60, 172800), 60);
	ck_assert_int_eq(fed_cache_control_max_age("max-age=99999999", 86400, 60, 172800), 172800);
	ck_assert_int_eq(fed_cache_control_max_age("no-store", 86400, 60, 172800), 60);

	struct sockaddr_in a4 = {.sin_family = AF_INET};
	inet_pton(AF_INET, "127.0.0.2", &a4.sin_addr);
	ck_assert(fed_addr_is_loopback((struct sockaddr *)&a4));
	inet_pton(AF_INET, "10.1.2.3", &a4.sin_addr);
	ck_assert(!fed_addr_is_loopback((struct sockaddr *)&a4));
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
	inet_pton(AF_INET6, "::1", &a6.sin6_addr);
	ck_assert(fed_addr_is_loopback((struct sockaddr *)&a6));
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &a6.sin6_addr);
	ck_assert(fed_addr_is_loopback((struct sockaddr *)&a6));
	inet_pton(AF_INET6, "2001:db8::1", &a6.sin6_addr);
	ck_assert(!fed_addr_is_loopback((struct sockaddr *)&a6));
}
END_TEST

static json_t *key_doc(struct sign_key *k, const char *server, int64_t valid_until)
{
	char *pub = sign_public_b64(k);
	json_t *doc = json_pack("{s:s, s:{s:{s:s}}, s:{}, s:I}", "server_name", server, "verify_keys", k->key_id, "key",
				pub, "old_verify_keys", "valid_until_ts", (json_int_t)valid_until);
	free(pub);
	ck_assert_int_eq(sign_json(doc, server, k, NULL), 0);
	return doc;
}

START_TEST(key_document_checks)
{
	struct sign_key k, other;
	ck_assert_int_eq(sign_key_generate(&k, "ed25519:a"), 0);
	ck_assert_int_eq(sign_key_generate(&other, "ed25519:a"), 0);
	struct fed_key_doc d;
	struct al_error err = {0};
	json_t *doc = key_doc(&k, "s.test", 1000);
	ck_assert_int_eq(fed_keys_parse_document(doc, "s.test", &d, &err), 0);
	ck_assert_int_eq(d.nkeys, 1);
	ck_assert_int_eq(d.valid_until_ts, 1000);
	ck_assert_int_eq(fed_keys_parse_document(doc, "x.test", &d, &err), -1);
	/* signed by a different key under the same id: refused */
	json_object_del(doc, "signatures");
	ck_assert_int_eq(sign_json(doc, "s.test", &other, NULL), 0);
	ck_assert_int_eq(fed_keys_parse_document(doc, "s.test", &d, &err), -1);
	json_decref(doc);
	/* old keys need expired_ts */
	doc = key_doc(&k, "s.test", 1000);
	json_object_set_new(json_object_get(doc, "old_verify_keys"), "ed25519:old",
			    json_pack("{s:s}", "key", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
	json_object_del(doc, "signatures");
	ck_assert_int_eq(sign_json(doc, "s.test", &k, NULL), 0);
	ck_assert_int_eq(fed_keys_parse_document(doc, "s.test", &d, &err), -1);
	json_object_set_new(json_object_get(json_object_get(doc, "old_verify_keys"), "ed25519:old"), "expired_ts",
			    json_integer(500));
	json_object_del(doc, "signatures");
	ck_assert_int_eq(sign_json(doc, "s.test", &k, NULL), 0);
	ck_assert_int_eq(fed_keys_parse_document(doc, "s.test", &d, &err), 0);
	ck_assert_int_eq(d.nkeys, 2);
	ck_assert_int_eq(d.keys[1].expired_ts, 500);
	json_decref(doc);
	sign_key_wipe(&k);
	sign_key_wipe(&other);
}
END_TEST

static void resign(json_t *doc, const char *server, struct sign_key *k)
{
	json_object_del(doc, "signatures");
	ck_assert_int_eq(sign_json(doc, server, k, NULL), 0);
}

START_TEST(key_lookup_times)
{
	struct sign_key cur, old;
	ck_assert_int_eq(sign_key_generate(&cur, "ed25519:cur"), 0);
	ck_assert_int_eq(sign_key_generate(&old, "ed25519:old"), 0);
	const int64_t now = 1700000000000LL, skew = 300000;
	struct al_error err = {0};
	json_t *doc = key_doc(&cur, "s.test", now + 1000);
	char *oldpub = sign_public_b64(&old);
	json_object_set_new(json_object_get(doc, "old_verify_keys"), "ed25519:old",
			    json_pack("{s:s, s:I}", "key", oldpub, "expired_ts", (json_int_t)(now - 5000)));
	free(oldpub);
	resign(doc, "s.test", &cur);
	struct fed_keys *ks = fed_keys_new();
	ck_assert_int_eq(fed_keys_memory_store(ks, doc, "s.test", now, &err), 0);
	unsigned char pk[32];
	/* a current key: until valid_until_ts, plus the tolerance */
	ck_assert_int_eq(fed_keys_lookup(ks, "s.test", "ed25519:cur", now + 1000, pk), FED_KEY_OK);
	ck_assert(memcmp(pk, cur.pk, 32) == 0);
	ck_assert_int_eq(fed_keys_lookup(ks, "s.test", "ed25519:cur", now + 1001, pk), FED_KEY_EXPIRED);
	ck_assert_int_eq(fed_keys_lookup_skew(ks, "s.test", "ed25519:cur", now + 1001, skew, pk), FED_KEY_OK);
	ck_assert_int_eq(fed_keys_lookup_skew(ks, "s.test", "ed25519:cur", now + 1001 + skew, skew, pk),
			 FED_KEY_EXPIRED);
	/* an old key: for signatures made before its expired_ts (strict) */
	memset(pk, 0, sizeof(pk));
	ck_assert_int_eq(fed_keys_lookup_skew(ks, "s.test", "ed25519:old", now - 5001, skew, pk), FED_KEY_OK);
	ck_assert(memcmp(pk, old.pk, 32) == 0);
	ck_assert_int_eq(fed_keys_lookup_skew(ks, "s.test", "ed25519:old", now - 5000, skew, pk), FED_KEY_EXPIRED);
	ck_assert_int_eq(fed_keys_lookup_skew(ks, "s.test", "ed25519:old", now, skew, pk), FED_KEY_EXPIRED);
	ck_assert_int_eq(fed_keys_lookup(ks, "s.test", "ed25519:nope", now, pk), FED_KEY_UNKNOWN);
	ck_assert_int_eq(fed_keys_lookup(ks, "x.test", "ed25519:cur", now, pk), FED_KEY_UNKNOWN);
	/* hostile timestamps do not overflow */
	ck_assert_int_eq(fed_keys_lookup_skew(ks, "s.test", "ed25519:cur", INT64_MAX, INT64_MAX, pk), FED_KEY_OK);
	ck_assert_int_eq(fed_keys_lookup_skew(ks, "s.test", "ed25519:cur", INT64_MIN, skew, pk), FED_KEY_OK);
	json_decref(doc);
	/* valid_until_ts is believed for 7 days after the fetch at most */
	doc = key_doc(&cur, "far.test", now + 30LL * 24 * 3600 * 1000);
	ck_assert_int_eq(fed_keys_memory_store(ks, doc, "far.test", now, &err), 0);
	int64_t cap = now + FED_KEYS_MAX_VALIDITY_MS;
	ck_assert_int_eq(fed_keys_lookup(ks, "far.test", "ed25519:cur", cap, pk), FED_KEY_OK);
	ck_assert_int_eq(fed_keys_lookup(ks, "far.test", "ed25519:cur", cap + 1, pk), FED_KEY_EXPIRED);
	int64_t vu = 0;
	free(fed_keys_document(ks, "far.test", &vu));
	ck_assert_int_eq(vu, cap);
	json_decref(doc);
	fed_keys_free(ks);

	/* issued_ts / valid_until_ts of attestations */
	ck_assert(fed_keys_times_check(now, now + 10, now, 0));
	ck_assert(!fed_keys_times_check(now + 1, now + 10, now, 0));
	ck_assert(fed_keys_times_check(now + skew, now + 2 * skew, now, skew));
	ck_assert(!fed_keys_times_check(now + skew + 1, now + 2 * skew, now, skew));
	ck_assert(!fed_keys_times_check(now - 20, now - 10, now, 0));
	ck_assert(fed_keys_times_check(now - 20, now - 10, now, 10));
	ck_assert(!fed_keys_times_check(now, now - 1, now, skew));
	ck_assert(!fed_keys_times_check(INT64_MAX, INT64_MAX, now, skew));
	ck_assert(!fed_keys_times_check(INT64_MIN, INT64_MIN, now, skew));
	sign_key_wipe(&cur);
	sign_key_wipe(&old);
}
END_TEST

/* An org.auralink.aura_id answer as the owner's server builds it. */
static json_t *aura_answer(const char *server, const char *aura_id, const char *user_id, json_int_t valid_until)
{
	return json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s, s:I, s:I}}", "aura_id", aura_id, "user_id", user_id,
			 "server", server, "attestation", "aura_id", aura_id, "user_id", user_id, "server", server,
			 "issued_ts", (json_int_t)1000, "valid_until_ts", valid_until);
}

START_TEST(aura_attestation_checks)
{
	json_t *rec = aura_answer("b.test", "@bob.aura", "@bob:b.test", 5000);
	ck_assert_int_eq(fed_aura_attestation_check("b.test", "@bob.aura", rec, 4000, 0), 1);
	ck_assert_int_eq(fed_aura_attestation_check("B.TEST", "@BOB.aura", rec, 4000, 0), 1);
	/* expired */
	ck_assert_int_eq(fed_aura_attestation_check("b.test", "@bob.aura", rec, 6000, 0), 0);
	/* another handle than asked for */
	ck_assert_int_eq(fed_aura_attestation_check("b.test", "@bobby.aura", rec, 4000, 0), 0);
	/* answered by another server than the one it names */
	ck_assert_int_eq(fed_aura_attestation_check("c.test", "@bob.aura", rec, 4000, 0), 0);
	json_decref(rec);
	/* c.test vouching for a user of b.test (or of a server whose name only
	 * starts or ends like its own) is refused */
	const char *foreign[] = {
		"@bob:b.test", "@bob:c.test.evil", "@bob:evil.c.test", "@bob:c.test:8448", "bob:c.test", "@:c.test",
		"@bob"};
	for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
		rec = aura_answer("c.test", "@bob.aura", foreign[i], 5000);
		ck_assert_msg(fed_aura_attestation_check("c.test", "@bob.aura", rec, 4000, 0) == 0, "%s", foreign[i]);
		json_decref(rec);
	}
	/* a port is part of the server name */
	rec = aura_answer("c.test:8448", "@bob.aura", "@bob:c.test:8448", 5000);
	ck_assert_int_eq(fed_aura_attestation_check("c.test:8448", "@bob.aura", rec, 4000, 0), 1);
	ck_assert_int_eq(fed_aura_attestation_check("c.test", "@bob.aura", rec, 4000, 0), 0);
	/* the record's own fields must match what is signed */
	json_object_set_new(rec, "user_id", json_string("@mallory:c.test:8448"));
	ck_assert_int_eq(fed_aura_attestation_check("c.test:8448", "@bob.aura", rec, 4000, 0), 0);
	json_object_set_new(rec, "user_id", json_string("@bob:c.test:8448"));
	json_object_set_new(rec, "aura_id", json_string("@other.aura"));
	ck_assert_int_eq(fed_aura_attestation_check("c.test:8448", "@bob.aura", rec, 4000, 0), 0);
	/* no attestation, or fields of the wrong type */
	json_object_del(rec, "attestation");
	ck_assert_int_eq(fed_aura_attestation_check("c.test:8448", "@bob.aura", rec, 4000, 0), 0);
	json_decref(rec);
	rec = aura_answer("c.test", "@bob.aura", "@bob:c.test", 5000);
	json_object_set_new(json_object_get(rec, "attestation"), "valid_until_ts", json_string("5000"));
	ck_assert_int_eq(fed_aura_attestation_check("c.test", "@bob.aura", rec, 4000, 0), 0);
	json_decref(rec);
	ck_assert_int_eq(fed_aura_attestation_check("c.test", "@bob.aura", NULL, 4000, 0), 0);
	/* the clock tolerance applies to valid_until_ts */
	rec = aura_answer("b.test", "@bob.aura", "@bob:b.test", 5000);
	ck_assert_int_eq(fed_aura_attestation_check("b.test", "@bob.aura", rec, 6000, 1000), 1);
	ck_assert_int_eq(fed_aura_attestation_check("b.test", "@bob.aura", rec, 6001, 1000), 0);
	json_decref(rec);
}
END_TEST

UNIT_MAIN("federation", xmatrix_build_parse_verify, xmatrix_parse_variants, backoff_math, discovery_parsing,
	  key_document_checks, key_lookup_times, aura_attestation_checks)
