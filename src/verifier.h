/* verifier.h - delivery of AuraID verification codes (phone, email, kyc)
 * through a pluggable backend. The server generates, hashes and checks the
 * codes (aura_id.c); a verifier only gets a code to the user. */
#ifndef AL_VERIFIER_H
#define AL_VERIFIER_H

#include "config.h"
#include "error.h"

struct verifier {
	const char *name;
	/* Deliver `code` for `aura_id` by `method` (phone|email|kyc). 0, or -1
	 * with err filled. Called from worker threads: must be thread-safe. */
	int (*send_code)(const struct verifier *v, const char *aura_id, const char *method, const char *code,
			 struct al_error *err);
	void *ctx;
};

/* The development verifier: logs the code at info level
 * ("verifier: code for @x.aura method=email code=123456"). The one place a
 * secret is logged, and only when verification.dev_verifier is on. */
extern const struct verifier verifier_dev;

/* The verifier the configuration selects, or NULL when none is configured
 * (verification then answers ORG_AURALINK_VERIFIER_UNAVAILABLE). */
const struct verifier *verifier_from_config(const struct al_config *cfg);

#endif
