/* error.h - the one error type every module fills when its caller must report it. */
#ifndef AL_ERROR_H
#define AL_ERROR_H

struct al_error {
	int status;        /* HTTP status the client should see, e.g. 400 */
	char errcode[48];  /* Matrix errcode, e.g. "M_BAD_JSON" */
	char message[256]; /* human-readable; never contains secrets */
};

/* Fill err (if non-NULL) and return -1, so callers can write
 * `return al_error_set(err, 400, "M_BAD_JSON", "...");` */
int al_error_set(struct al_error *err, int status, const char *errcode, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

void al_error_clear(struct al_error *err);

#endif
