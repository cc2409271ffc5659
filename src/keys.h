/* keys.h - this server's ed25519 signing keys: the key file, rotation, and
 * the self-signed /_matrix/key/v2/server document (cached, re-signed only
 * when it changes or nears expiry). */
#ifndef AL_KEYS_H
#define AL_KEYS_H

#include <jansson.h>
#include <stdint.h>

#include "error.h"
#include "sign.h"

struct keys;
struct evbuffer;

/* Key file: one line "ed25519 <version> <unpadded base64 seed>" (the format
 * Synapse uses). Old keys: "<path>.old", lines
 * "ed25519 <version> <base64 public key> <expired_ts>". */
int keys_generate_file(const char *path, int *created, struct al_error *err);
int keys_rotate_file(const char *path, int64_t now_ms, struct al_error *err);

struct keys *keys_load(const char *path, const char *server_name, int validity_hours, struct al_error *err);
void keys_free(struct keys *k);

const struct sign_key *keys_current(const struct keys *k);
const char *keys_server_name(const struct keys *k);

/* Append the current signed key document to out. */
int keys_write_server_document(struct keys *k, int64_t now_ms, struct evbuffer *out);

/* A fresh, signed copy of the document (caller decrefs). */
json_t *keys_server_document(struct keys *k, int64_t now_ms);

/* Public key for one of our own key ids (current or old), for checking our
 * own past signatures. Returns 0 and fills pk, or -1. */
int keys_lookup_own(const struct keys *k, const char *key_id, unsigned char pk[32]);

#endif
