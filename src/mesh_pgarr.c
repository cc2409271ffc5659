/* mesh_pgarr.c - PostgreSQL array literals in an evbuffer. */
#include "mesh_pgarr.h"

#include <string.h>

int mesh_pgarr_init(struct mesh_pgarr *a)
{
	a->buf = evbuffer_new();
	a->first = true;
	if (!a->buf)
		return -1;
	evbuffer_add(a->buf, "{", 1);
	return 0;
}

void mesh_pgarr_free(struct mesh_pgarr *a)
{
	if (a->buf)
		evbuffer_free(a->buf);
	a->buf = NULL;
}

static void sep(struct mesh_pgarr *a)
{
	if (!a->first)
		evbuffer_add(a->buf, ",", 1);
	a->first = false;
}

void mesh_pgarr_text(struct mesh_pgarr *a, const char *s)
{
	sep(a);
	if (!s) {
		evbuffer_add(a->buf, "NULL", 4);
		return;
	}
	evbuffer_add(a->buf, "\"", 1);
	for (const char *p = s; *p;) {
		size_t run = strcspn(p, "\"\\");
		evbuffer_add(a->buf, p, run);
		p += run;
		if (*p) {
			char esc[2] = {'\\', *p};
			evbuffer_add(a->buf, esc, 2);
			p++;
		}
	}
	evbuffer_add(a->buf, "\"", 1);
}

void mesh_pgarr_double(struct mesh_pgarr *a, double v)
{
	sep(a);
	evbuffer_add_printf(a->buf, "%.9g", v);
}

void mesh_pgarr_long(struct mesh_pgarr *a, long long v)
{
	sep(a);
	evbuffer_add_printf(a->buf, "%lld", v);
}

void mesh_pgarr_bool(struct mesh_pgarr *a, bool v)
{
	sep(a);
	evbuffer_add(a->buf, v ? "t" : "f", 1);
}

const char *mesh_pgarr_finish(struct mesh_pgarr *a)
{
	evbuffer_add(a->buf, "}", 2); /* with the terminating NUL */
	return (const char *)evbuffer_pullup(a->buf, -1);
}
