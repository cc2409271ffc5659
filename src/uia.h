/* uia.h - user-interactive auth sessions: for /register the parameters of
 * the first request are remembered (the password only in memory, wiped on
 * expiry), and a completed session answers again with the same user; the
 * password-protected operations (devices, password, deactivation) keep the
 * operation a session began with, so it cannot be switched part-way.
 * Bounded (oldest evicted) and expiring; per process. */
#ifndef AL_UIA_H
#define AL_UIA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define UIA_SESSION_ID_LEN 32
#define UIA_MAX_SESSIONS 10000
#define UIA_TTL_MS (15 * 60 * 1000)

struct uia_sessions;

struct uia_sessions *uia_sessions_new(size_t max_sessions, int64_t ttl_ms);
void uia_sessions_free(struct uia_sessions *s);

/* Remember params (a copy is kept) and password (may be NULL); writes the
 * new session id. Returns 0 or -1. */
int uia_session_create(struct uia_sessions *s, const json_t *params, const char *password, int64_t now_ms,
		       char id[UIA_SESSION_ID_LEN + 1]);

struct uia_session_view {
	json_t *params;              /* new reference; caller decrefs */
	char *password;              /* malloc'd copy or NULL; free with accounts_secret_free */
	char completed_user_id[256]; /* "" until completed */
};

/* 0 and fills view, or -1 for an unknown or expired session. */
int uia_session_get(struct uia_sessions *s, const char *id, int64_t now_ms, struct uia_session_view *view);
void uia_session_complete(struct uia_sessions *s, const char *id, const char *user_id);

#endif
