#include "router.h"

#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

struct route {
	unsigned methods;
	int nseg;
	char *seg[ROUTER_MAX_SEGMENTS];
	void *handler;
};

struct router {
	struct route *routes;
	int count;
	int cap;
};

struct router *router_new(void)
{
	return calloc(1, sizeof(struct router));
}

static void route_free(struct route *rt)
{
	for (int i = 0; i < rt->nseg; i++)
		free(rt->seg[i]);
}

void router_free(struct router *r)
{
	if (!r)
		return;
	for (int i = 0; i < r->count; i++)
		route_free(&r->routes[i]);
	free(r->routes);
	free(r);
}

static int is_capture(const char *seg)
{
	size_t n = strlen(seg);
	return n >= 2 && seg[0] == '{' && seg[n - 1] == '}';
}

int router_add(struct router *r, unsigned methods, const char *pattern, void *handler)
{
	if (pattern[0] != '/')
		return -1;
	if (r->count == r->cap) {
		int cap = r->cap ? r->cap * 2 : 64;
		struct route *n = realloc(r->routes, (size_t)cap * sizeof(*n));
		if (!n)
			return -1;
		r->routes = n;
		r->cap = cap;
	}
	struct route rt = {.methods = methods, .handler = handler};
	const char *p = pattern + 1;
	int params = 0;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (rt.nseg == ROUTER_MAX_SEGMENTS)
			goto fail;
		rt.seg[rt.nseg] = strndup(p, len);
		if (!rt.seg[rt.nseg])
			goto fail;
		if (is_capture(rt.seg[rt.nseg]) && ++params > ROUTER_MAX_PARAMS) {
			rt.nseg++;
			goto fail;
		}
		rt.nseg++;
		if (!slash)
			break;
		p = slash + 1;
	}
	r->routes[r->count++] = rt;
	return 0;
fail:
	route_free(&rt);
	return -1;
}

int router_split_path(const char *raw_path, char **segments, int max)
{
	if (!raw_path || raw_path[0] != '/')
		return -1;
	int n = 0;
	const char *p = raw_path + 1;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (n == max)
			goto fail;
		char *raw = strndup(p, len);
		if (!raw)
			goto fail;
		size_t outlen = 0;
		segments[n] = evhttp_uridecode(raw, 0, &outlen);
		free(raw);
		if (!segments[n])
			goto fail;
		n++;
		if (strlen(segments[n - 1]) != outlen)
			goto fail; /* an encoded NUL */
		if (!slash)
			break;
		p = slash + 1;
	}
	return n;
fail:
	for (int i = 0; i < n; i++)
		free(segments[i]);
	return -1;
}

static int literal_matches(const char *pat, const char *seg)
{
	size_t seglen = strlen(seg);
	for (;;) {
		const char *bar = strchr(pat, '|');
		size_t len = bar ? (size_t)(bar - pat) : strlen(pat);
		if (len == seglen && memcmp(pat, seg, len) == 0)
			return 1;
		if (!bar)
			return 0;
		pat = bar + 1;
	}
}

static int route_matches(const struct route *rt, char *const *segments, int nseg, const char **params, int *nparams)
{
	if (rt->nseg != nseg)
		return 0;
	int np = 0;
	for (int i = 0; i < nseg; i++) {
		if (is_capture(rt->seg[i]))
			params[np++] = segments[i];
		else if (!literal_matches(rt->seg[i], segments[i]))
			return 0;
	}
	*nparams = np;
	return 1;
}

enum router_result router_match(const struct router *r, unsigned method, char *const *segments, int nseg,
				void **handler, const char **params, int *nparams)
{
	enum router_result result = ROUTER_NOT_FOUND;
	for (int i = 0; i < r->count; i++) {
		const struct route *rt = &r->routes[i];
		const char *p[ROUTER_MAX_PARAMS];
		int np = 0;
		if (!route_matches(rt, segments, nseg, p, &np))
			continue;
		if (!(rt->methods & method)) {
			result = ROUTER_BAD_METHOD;
			continue;
		}
		*handler = rt->handler;
		memcpy(params, p, (size_t)np * sizeof(*p));
		*nparams = np;
		return ROUTER_FOUND;
	}
	return result;
}
