/* sign.h - ed25519 signing keys and Matrix JSON signatures
 * (spec appendix "Signing JSON"). */
#ifndef AL_SIGN_H
#define AL_SIGN_H

#include <jansson.h>
#include <stddef.h>

#include "error.h"

#define SIGN_SIG_BYTES 64

struct sign_key {
	char key_id[64];        /* "ed25519:<version>", e.g. "ed25519:a_AbCd" */
	unsigned char seed[32]; /* the secret; what gets stored on disk */
	unsigned char pk[32];
	unsigned char sk[64];
};

/* Derive the key pair from a 32-byte seed. key_id must be "ed25519:" plus a
 * non-empty version and fit in key_id[]. Returns 0 or -1. */
int sign_key_from_seed(struct sign_key *k, const char *key_id, const unsigned char seed[32]);

/* A new key pair from a random seed. Returns 0 or -1. */
int sign_key_generate(struct sign_key *k, const char *key_id);

/* Zero the secret material (and everything else in k). */
void sign_key_wipe(struct sign_key *k);

/* Unpadded base64 of the public key, malloc'd (caller frees); NULL on OOM. */
char *sign_public_b64(const struct sign_key *k);

/* Sign the canonical JSON of obj without its "signatures" and "unsigned"
 * members and store the signature at obj.signatures[signer][k->key_id].
 * Other signatures and "unsigned" stay. Returns 0, or -1 with err filled
 * (400 M_BAD_JSON if obj is not an object, cannot be canonicalised or has a
 * malformed "signatures" member; 500 M_UNKNOWN when out of memory). */
int sign_json(json_t *obj, const char *signer, const struct sign_key *k, struct al_error *err);

/* 0 if obj.signatures[signer][key_id] is a valid signature by pk over the
 * canonical JSON of obj without "signatures" and "unsigned". Otherwise -1
 * with err filled: 401 M_UNAUTHORIZED (missing signature, bad base64,
 * signature does not verify), or 400 M_BAD_JSON when obj is not an object
 * or cannot be canonicalised. */
int sign_verify_json(const json_t *obj, const char *signer, const char *key_id, const unsigned char pk[32],
		     struct al_error *err);

/* Detached signature of len bytes at msg, as unpadded base64 in *sig_out
 * (malloc'd, caller frees). Returns 0 or -1 (out of memory). */
int sign_detached_b64(const struct sign_key *k, const void *msg, size_t len, char **sig_out);

/* 0 if sig_b64 (padded or unpadded, either alphabet) is a valid signature
 * by pk over msg, else -1. */
int sign_verify_detached_b64(const unsigned char pk[32], const void *msg, size_t len, const char *sig_b64);

#endif
