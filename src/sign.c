#include "sign.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "cjson.h"

static int sign_key_id_valid(const char *key_id)
{
	static const char prefix[] = "ed25519:";
	size_t n;

	if (!key_id)
		return 0;
	n = strlen(key_id);
	return n > sizeof(prefix) - 1 && n < sizeof(((struct sign_key *)0)->key_id) &&
	       memcmp(key_id, prefix, sizeof(prefix) - 1) == 0;
}

int sign_key_from_seed(struct sign_key *k, const char *key_id, const unsigned char seed[32])
{
	if (!k || !seed || !sign_key_id_valid(key_id))
		return -1;
	memset(k, 0, sizeof(*k));
	memcpy(k->key_id, key_id, strlen(key_id) + 1);
	memcpy(k->seed, seed, sizeof(k->seed));
	if (crypto_sign_seed_keypair(k->pk, k->sk, k->seed) != 0) {
		sign_key_wipe(k);
		return -1;
	}
	return 0;
}

int sign_key_generate(struct sign_key *k, const char *key_id)
{
	unsigned char seed[32];
	int rc;

	randombytes_buf(seed, sizeof(seed));
	rc = sign_key_from_seed(k, key_id, seed);
	sodium_memzero(seed, sizeof(seed));
	return rc;
}

void sign_key_wipe(struct sign_key *k)
{
	if (k)
		sodium_memzero(k, sizeof(*k));
}

char *sign_public_b64(const struct sign_key *k)
{
	return b64_encode(k->pk, sizeof(k->pk));
}

int sign_detached_b64(const struct sign_key *k, const void *msg, size_t len, char **sig_out)
{
	unsigned char sig[SIGN_SIG_BYTES];

	*sig_out = NULL;
	if (crypto_sign_detached(sig, NULL, msg, len, k->sk) != 0)
		return -1;
	*sig_out = b64_encode(sig, sizeof(sig));
	return *sig_out ? 0 : -1;
}

int sign_verify_detached_b64(const unsigned char pk[32], const void *msg, size_t len, const char *sig_b64)
{
	unsigned char sig[SIGN_SIG_BYTES];
	size_t n;

	if (!sig_b64 || b64_decode(sig_b64, strlen(sig_b64), sig, sizeof(sig), &n) != 0 || n != sizeof(sig))
		return -1;
	return crypto_sign_verify_detached(sig, msg, len, pk) == 0 ? 0 : -1;
}

static int sign_key_is(const char *key, size_t len, const char *name)
{
	return len == strlen(name) && memcmp(key, name, len) == 0;
}

/* Canonical JSON of obj without "signatures" and "unsigned": the bytes a
 * signature covers. The copy is built by hand because jansson 2.14's
 * json_copy truncates keys at an embedded NUL. */
static char *sign_signable(const json_t *obj, size_t *len, struct al_error *err)
{
	json_t *copy = NULL;
	char *text = NULL;

	if (!json_is_object(obj)) {
		al_error_set(err, 400, "M_BAD_JSON", "only JSON objects can be signed");
		return NULL;
	}
	copy = json_object();
	if (!copy)
		goto oom;
	/* jansson's iterator API is not const-qualified; it does not modify. */
	for (void *it = json_object_iter((json_t *)obj); it; it = json_object_iter_next((json_t *)obj, it)) {
		const char *key = json_object_iter_key(it);
		size_t klen = json_object_iter_key_len(it);

		if (sign_key_is(key, klen, "signatures") || sign_key_is(key, klen, "unsigned"))
			continue;
		if (json_object_setn_nocheck(copy, key, klen, json_object_iter_value(it)) != 0)
			goto oom;
	}
	text = cjson_encode(copy, len, err);
	json_decref(copy);
	return text;
oom:
	json_decref(copy);
	al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	return NULL;
}

/* obj.signatures[signer], created if missing. Borrowed reference. */
static json_t *sign_signer_entry(json_t *obj, const char *signer, struct al_error *err)
{
	json_t *sigs = json_object_get(obj, "signatures");
	json_t *entry;

	if (!sigs) {
		sigs = json_object();
		if (!sigs || json_object_set_new(obj, "signatures", sigs) != 0)
			goto oom;
	} else if (!json_is_object(sigs)) {
		al_error_set(err, 400, "M_BAD_JSON", "\"signatures\" is not an object");
		return NULL;
	}
	entry = json_object_get(sigs, signer);
	if (!entry) {
		entry = json_object();
		if (!entry || json_object_set_new(sigs, signer, entry) != 0)
			goto oom;
	} else if (!json_is_object(entry)) {
		al_error_set(err, 400, "M_BAD_JSON", "signatures of %s is not an object", signer);
		return NULL;
	}
	return entry;
oom:
	al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	return NULL;
}

int sign_json(json_t *obj, const char *signer, const struct sign_key *k, struct al_error *err)
{
	size_t len;
	char *text = NULL, *sig = NULL;
	json_t *entry;
	int rc = -1;

	text = sign_signable(obj, &len, err);
	if (!text)
		goto fail;
	if (sign_detached_b64(k, text, len, &sig) != 0) {
		al_error_set(err, 500, "M_UNKNOWN", "signing failed");
		goto fail;
	}
	entry = sign_signer_entry(obj, signer, err);
	if (!entry)
		goto fail;
	if (json_object_set_new(entry, k->key_id, json_string(sig)) != 0) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto fail;
	}
	rc = 0;
fail:
	free(text);
	free(sig);
	return rc;
}

int sign_verify_json(const json_t *obj, const char *signer, const char *key_id, const unsigned char pk[32],
		     struct al_error *err)
{
	json_t *sig = json_object_get(json_object_get(json_object_get(obj, "signatures"), signer), key_id);
	unsigned char raw[SIGN_SIG_BYTES];
	size_t n, len;
	char *text = NULL;
	int rc = -1;

	if (!json_is_string(sig)) {
		al_error_set(err, 401, "M_UNAUTHORIZED", "missing signature by %s with %s", signer, key_id);
		goto fail;
	}
	if (b64_decode(json_string_value(sig), json_string_length(sig), raw, sizeof(raw), &n) != 0 ||
	    n != sizeof(raw)) {
		al_error_set(err, 401, "M_UNAUTHORIZED", "bad base64 in signature by %s with %s", signer, key_id);
		goto fail;
	}
	text = sign_signable(obj, &len, err);
	if (!text)
		goto fail;
	if (crypto_sign_verify_detached(raw, (const unsigned char *)text, len, pk) != 0) {
		al_error_set(err, 401, "M_UNAUTHORIZED", "signature by %s with %s does not verify", signer, key_id);
		goto fail;
	}
	rc = 0;
fail:
	free(text);
	return rc;
}
