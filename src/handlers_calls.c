/* handlers_calls.c - GET /_auralink/client/v1/calls?limit= */
#include "handlers_calls.h"

#include <errno.h>
#include <stdlib.h>

#include "auth.h"
#include "calls.h"
#include "http.h"
#include "ratelimit.h"

#define PREFIX "/_auralink/client/v1"

static void get_calls(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	if (auth_require(req) < 0 || ratelimit_check(req, "calls.read") < 0)
		return;
	long limit = CALLS_LIST_DEFAULT;
	const char *s = http_req_query(req, "limit");
	if (s) {
		char *end = NULL;
		errno = 0;
		limit = strtol(s, &end, 10);
		if (!*s || *end || errno || limit < 1 || limit > CALLS_LIST_MAX) {
			http_reply_error(req, 400, "M_INVALID_PARAM", "limit must be between 1 and %d",
					 CALLS_LIST_MAX);
			return;
		}
	}
	if (calls_list(&req->worker->db, req->user_id, (int)limit, &out, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, out);
}

int calls_handlers_start(struct app *app)
{
	if (calls_start(app) < 0)
		return -1;
	return http_route(app, ROUTER_GET, PREFIX "/calls", get_calls);
}
