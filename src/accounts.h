/* accounts.h - local users, passwords, devices, access tokens and profiles
 * (domain logic, no HTTP). Passwords are argon2id (libsodium
 * crypto_pwhash_str); access tokens are 32 random bytes handed out as
 * unpadded URL-safe base64 and stored only as the SHA-256 of that text. */
#ifndef AL_ACCOUNTS_H
#define AL_ACCOUNTS_H

#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "db.h"
#include "error.h"

#define ACCOUNTS_USER_ID_MAX 255    /* bytes, Matrix spec */
#define ACCOUNTS_DEVICE_ID_MAX 255  /* bytes */
#define ACCOUNTS_PASSWORD_MAX 512   /* bytes */
#define ACCOUNTS_NAME_MAX_CHARS 256 /* displaynames, device names (code points) */
#define ACCOUNTS_NAME_MAX_BYTES 1024
#define ACCOUNTS_AVATAR_URL_MAX 2048 /* bytes */
#define ACCOUNTS_TOKEN_MAX 512       /* longest token text looked up */
#define ACCOUNTS_TOKEN_HASH_BYTES 32
#define ACCOUNTS_HASH_STR_MAX crypto_pwhash_STRBYTES

/* Prepare the module: computes the dummy hash that logins of unknown users
 * are verified against, with the configured argon2 limits. */
int accounts_init(const struct al_config *cfg);

/* ---- pure helpers ---- */

/* A localpart of the spec's grammar for new users: 1+ of a-z 0-9 . _ = - / + */
bool accounts_localpart_valid(const char *lp);
/* Lowercase ASCII letters of in into out. -1 if it does not fit. */
int accounts_localpart_lower(const char *in, char *out, size_t outlen);
/* "@lp:server" into out; 400 M_INVALID_USERNAME if lp is invalid or the
 * user ID would exceed 255 bytes. */
int accounts_user_id(const char *lp, const char *server_name, char *out, size_t outlen, struct al_error *err);
/* The user ID a login names: a localpart or "@lp:server_name" (the
 * localpart compared case-insensitively). -1 if it is malformed or names
 * another server. */
int accounts_login_user_id(const char *given, const char *server_name, char *out, size_t outlen);
/* Random localpart for registrations without a username ("u" + 16 hex). */
void accounts_generate_localpart(char out[18]);
/* Random device ID: 10 capital letters. */
void accounts_generate_device_id(char out[11]);
/* 1..255 bytes, no control characters. */
bool accounts_device_id_valid(const char *id);
/* Code points of a UTF-8 string (jansson strings are valid UTF-8). */
size_t accounts_utf8_chars(const char *s);

/* ---- passwords (CPU-bound: call from a workpool thread) ---- */

int accounts_password_hash(const struct al_config *cfg, const char *password, char out[ACCOUNTS_HASH_STR_MAX]);
/* true if password matches hash. hash NULL (unknown user, no password)
 * verifies against the dummy hash, so the work is the same, and is false. */
bool accounts_password_verify(const char *hash, const char *password);

/* Wipe and free a secret string (password, token); NULL is fine. */
void accounts_secret_free(char *s);

/* ---- tokens ---- */

/* A new token (malloc'd text, caller frees with accounts_token_free) and
 * its hash. Returns 0 or -1. */
int accounts_token_new(char **token, unsigned char hash[ACCOUNTS_TOKEN_HASH_BYTES]);
void accounts_token_free(char *token);
void accounts_token_hash(const char *token, size_t len, unsigned char hash[ACCOUNTS_TOKEN_HASH_BYTES]);

/* ---- database ---- */

struct accounts_session {
	char user_id[ACCOUNTS_USER_ID_MAX + 1];
	char device_id[ACCOUNTS_DEVICE_ID_MAX + 1];
	char *access_token; /* NULL when no session was created; accounts_session_clear frees */
	unsigned char token_hash[ACCOUNTS_TOKEN_HASH_BYTES];
	bool device_reused; /* login with a known device_id: its old tokens were revoked */
};
void accounts_session_clear(struct accounts_session *s);

struct accounts_new_user {
	const char *user_id;
	const char *localpart;
	const char *password_hash; /* NULL: no password login */
	bool is_guest;
	bool login;                      /* false: inhibit_login, no device or token */
	const char *device_id;           /* NULL: generated */
	const char *device_display_name; /* may be NULL */
};

/* Create the user and (unless !login) a device and a token, in one
 * transaction. 400 M_USER_IN_USE if the user exists. */
int accounts_register(struct db *db, const struct accounts_new_user *u, struct accounts_session *out,
		      struct al_error *err);

/* A device (reused if device_id names a known one, else created) and a
 * new token for user_id, in one transaction. */
int accounts_login(struct db *db, const char *user_id, const char *device_id, const char *display_name,
		   struct accounts_session *out, struct al_error *err);

struct accounts_login_info {
	bool found;
	bool has_password;
	bool suspended;
	bool deactivated;
	char password_hash[ACCOUNTS_HASH_STR_MAX];
};
int accounts_login_lookup(struct db *db, const char *user_id, struct accounts_login_info *out, struct al_error *err);

/* 1 exists, 0 not, -1 error. */
int accounts_user_exists(struct db *db, const char *user_id, struct al_error *err);

/* Delete one device (its tokens go with it) / every device of the user. */
int accounts_logout_device(struct db *db, const char *user_id, const char *device_id, struct al_error *err);
int accounts_logout_all(struct db *db, const char *user_id, struct al_error *err);

/* Delete the devices named by a JSON array of strings (unknown ones are
 * ignored); their tokens go with them. One statement. */
int accounts_devices_delete(struct db *db, const char *user_id, const json_t *device_ids, struct al_error *err);

/* New password hash; with logout_others every device of the user but
 * logout_except (may be NULL) is logged out. One transaction. */
int accounts_set_password(struct db *db, const char *user_id, const char *password_hash, const char *logout_except,
			  bool logout_others, struct al_error *err);

/* Deactivate for good: no password, no devices or tokens, the AuraID
 * inactive, an audit entry. One transaction. */
int accounts_deactivate(struct db *db, const char *user_id, struct al_error *err);
/* Deactivation with erase: true (spec "Account deactivation"): the user's
 * events are served redacted to whoever asks from now on (users.erased). */
int accounts_erase(struct db *db, const char *user_id, struct al_error *err);

/* {devices: [{device_id, display_name?, last_seen_ip?, last_seen_ts?}]} */
json_t *accounts_devices_list(struct db *db, const char *user_id, struct al_error *err);
/* One device; 404 M_NOT_FOUND when unknown. */
json_t *accounts_device_get(struct db *db, const char *user_id, const char *device_id, struct al_error *err);
/* 404 M_NOT_FOUND when unknown. */
int accounts_device_set_name(struct db *db, const char *user_id, const char *device_id, const char *display_name,
			     struct al_error *err);

/* {displayname?, avatar_url?}; 404 M_NOT_FOUND when the user is unknown. */
json_t *accounts_profile_get(struct db *db, const char *user_id, struct al_error *err);
/* field is "displayname" or "avatar_url"; value NULL clears it. */
int accounts_profile_set(struct db *db, const char *user_id, const char *field, const char *value,
			 struct al_error *err);

/* Suspend (or lift the suspension of) a user and her AuraID
 * (aura_id_registry.status). Runs inside the caller's transaction when one
 * is open (so an audit entry can join it), else in its own. 404
 * M_NOT_FOUND for an unknown user. The caller invalidates cached tokens
 * (auth_forget_user) after the commit. */
int accounts_suspend(struct db *db, const char *user_id, bool suspended, struct al_error *err);

/* users.is_admin = true; 404 M_NOT_FOUND for an unknown user. */
int accounts_grant_admin(struct db *db, const char *user_id, struct al_error *err);
/* 1 admin, 0 not, -1 error. */
int accounts_is_admin(struct db *db, const char *user_id, struct al_error *err);

#endif
