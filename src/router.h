/* router.h - method + path pattern -> handler. Patterns are split on '/';
 * a segment is a literal, alternatives "r0|v3", or a capture "{name}" that
 * matches one (possibly empty) segment. Built once at start, read-only after. */
#ifndef AL_ROUTER_H
#define AL_ROUTER_H

#define ROUTER_MAX_SEGMENTS 16
#define ROUTER_MAX_PARAMS 6

enum router_method {
	ROUTER_GET = 1 << 0,
	ROUTER_POST = 1 << 1,
	ROUTER_PUT = 1 << 2,
	ROUTER_DELETE = 1 << 3,
	ROUTER_PATCH = 1 << 4,
	ROUTER_OPTIONS = 1 << 5,
	ROUTER_HEAD = 1 << 6,
};

enum router_result { ROUTER_FOUND, ROUTER_NOT_FOUND, ROUTER_BAD_METHOD };

struct router;

struct router *router_new(void);
void router_free(struct router *r);

/* handler is opaque to the router (the HTTP layer stores a function pointer). */
int router_add(struct router *r, unsigned methods, const char *pattern, void *handler);

/* Split a raw path into percent-decoded segments (malloc'd, caller frees each).
 * Returns the count, or -1 when the path is malformed, too deep or decodes
 * to something with a NUL byte. */
int router_split_path(const char *raw_path, char **segments, int max);

enum router_result router_match(const struct router *r, unsigned method, char *const *segments, int nseg,
				void **handler, const char **params, int *nparams);

#endif
