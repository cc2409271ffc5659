/* mesh_pgarr.h - PostgreSQL array literals ('{...}') built in an evbuffer,
 * for the batched statements of the mesh (UPDATE ... FROM unnest($1::uuid[],
 * ...)). The literal is a parameter value, never SQL text. */
#ifndef AL_MESH_PGARR_H
#define AL_MESH_PGARR_H

#include <event2/buffer.h>
#include <stdbool.h>

struct mesh_pgarr {
	struct evbuffer *buf;
	bool first;
};

int mesh_pgarr_init(struct mesh_pgarr *a);
void mesh_pgarr_free(struct mesh_pgarr *a);
/* Quoted text element (backslash and double quote escaped); NULL -> NULL. */
void mesh_pgarr_text(struct mesh_pgarr *a, const char *s);
void mesh_pgarr_double(struct mesh_pgarr *a, double v);
void mesh_pgarr_long(struct mesh_pgarr *a, long long v);
void mesh_pgarr_bool(struct mesh_pgarr *a, bool v);
/* Close the literal; the string stays owned by a (NULL when out of memory). */
const char *mesh_pgarr_finish(struct mesh_pgarr *a);

#endif
