/* fed_mesh.c - outbound org.auralink.mesh_nodes queries: the online mesh
 * nodes of a user on her own server, for cross-domain route selection
 * (the records are validated by mesh_registry_add_remote, not here). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fed_internal.h"

#define MESH_QUERY_TIMEOUT_MS 5000

struct mesh_q {
	federation_json_cb cb;
	void *arg;
};

static void mesh_nodes_done(const struct fed_response *resp, void *arg)
{
	struct mesh_q *q = arg;
	q->cb(q->arg, resp->status, resp->body, &resp->err);
	free(q);
}

int federation_query_mesh_nodes(struct app *app, const char *user_id, struct event_base *base, federation_json_cb cb,
				void *arg)
{
	struct federation *fed = fed_of(app);
	const char *colon = user_id ? strchr(user_id, ':') : NULL;
	if (!fed || !colon || !colon[1] || user_id[0] != '@' || strlen(user_id) > 255 ||
	    federation_is_local(app, colon + 1))
		return -1;
	char *enc = evhttp_encode_uri(user_id);
	if (!enc)
		return -1;
	char path[1024];
	int len = snprintf(path, sizeof(path), "/_matrix/federation/v1/query/org.auralink.mesh_nodes?user_id=%s", enc);
	free(enc);
	if (len < 0 || (size_t)len >= sizeof(path))
		return -1;
	struct mesh_q *q = malloc(sizeof(*q));
	if (!q)
		return -1;
	q->cb = cb;
	q->arg = arg;
	struct fed_request rq = {.method = "GET",
				 .destination = colon + 1,
				 .path = path,
				 .sign = true,
				 .timeout_ms = MESH_QUERY_TIMEOUT_MS};
	if (fed_client_submit(fed->fc, &rq, base, mesh_nodes_done, q) < 0) {
		free(q);
		return -1;
	}
	return 0;
}
