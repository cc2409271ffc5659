#include "handlers_discovery.h"

#include <event2/buffer.h>

#include "http.h"
#include "keys.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.0.0"
#endif

static const char client_versions[] =
	"{\"versions\":[\"r0.5.0\",\"r0.6.0\",\"r0.6.1\",\"v1.1\",\"v1.2\",\"v1.3\",\"v1.4\",\"v1.5\","
	"\"v1.6\",\"v1.7\",\"v1.8\",\"v1.9\",\"v1.10\",\"v1.11\"],\"unstable_features\":{}}";

static void get_client_versions(struct http_req *req)
{
	http_reply_raw(req, 200, client_versions, sizeof(client_versions) - 1);
}

static void get_federation_version(struct http_req *req)
{
	http_reply_json(req, 200,
			json_pack("{s:{s:s, s:s}}", "server", "name", "auralink", "version", PACKAGE_VERSION));
}

static void get_well_known_server(struct http_req *req)
{
	http_reply_json(req, 200, json_pack("{s:s}", "m.server", req->app->cfg.well_known_server));
}

static void get_well_known_client(struct http_req *req)
{
	http_reply_json(req, 200, json_pack("{s:{s:s}}", "m.homeserver", "base_url", req->app->cfg.public_baseurl));
}

static void get_server_keys(struct http_req *req)
{
	struct evbuffer *buf = evbuffer_new();
	if (!buf || keys_write_server_document(req->app->keys, http_now_ms(), buf) < 0) {
		if (buf)
			evbuffer_free(buf);
		http_reply_error(req, 500, "M_UNKNOWN", "cannot sign the key document");
		return;
	}
	http_reply_buffer(req, 200, buf);
	evbuffer_free(buf);
}

int discovery_register_routes(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_GET, "/_matrix/client/versions", get_client_versions);
	rc |= http_route(app, ROUTER_GET, "/_matrix/federation/v1/version", get_federation_version);
	rc |= http_route(app, ROUTER_GET, "/.well-known/matrix/server", get_well_known_server);
	rc |= http_route(app, ROUTER_GET, "/.well-known/matrix/client", get_well_known_client);
	rc |= http_route(app, ROUTER_GET, "/_matrix/key/v2/server", get_server_keys);
	rc |= http_route(app, ROUTER_GET, "/_matrix/key/v2/server/{keyId}", get_server_keys);
	return rc ? -1 : 0;
}
