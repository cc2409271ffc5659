/* federation.c - start and stop of the federation layer. */
#include "federation.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fed_internal.h"
#include "log.h"

#define TICK_MS 1000

struct federation *fed_of(struct app *app)
{
	return app->federation;
}

void federation_set_notify(struct app *app, federation_notify_fn fn)
{
	if (app->federation)
		app->federation->notify = fn;
}

bool federation_is_local(struct app *app, const char *server_name)
{
	return server_name && strcasecmp(server_name, app->cfg.server_name) == 0;
}

static bool policy_hook(void *arg, const char *destination)
{
	struct federation *fed = arg;
	return fed_servers_allowed(fed->servers, destination);
}

static void traffic_hook(void *arg, const char *destination, int status, int64_t elapsed_ms)
{
	struct federation *fed = arg;
	fed_servers_traffic(fed->servers, destination, status, elapsed_ms);
}

static void tick(void *arg)
{
	struct federation *fed = arg;
	fed_servers_tick(fed->servers);
}

static void fed_free(struct federation *fed)
{
	fed_client_free(fed->fc);
	fed_sender_free(fed->sender);
	fed_aura_free(fed->aura);
	fed_servers_free(fed->servers);
	fed_keys_free(fed->keys);
	free(fed);
}

int federation_start(struct app *app)
{
	struct al_error err = {0};
	struct federation *fed = calloc(1, sizeof(*fed));
	if (!fed)
		return -1;
	fed->app = app;
	fed->keys = fed_keys_new();
	fed->servers = fed_servers_new(fed);
	fed->aura = fed_aura_new();
	if (!fed->keys || !fed->servers || !fed->aura)
		goto fail;
	if (fed_keys_load(fed->keys, app->maint_db, &err) < 0 ||
	    fed_servers_configure(fed->servers, app->maint_db, &err) < 0 ||
	    fed_servers_load(fed->servers, app->maint_db, &err) < 0)
		goto fail;
	fed->fc = fed_client_start(app, &err);
	if (!fed->fc)
		goto fail;
	fed->sender = fed_sender_new(fed);
	if (!fed->sender)
		goto fail;
	fed_client_set_hooks(fed->fc, policy_hook, traffic_hook, fed);
	if (fed_client_add_tick(fed->fc, TICK_MS, tick, fed) < 0 ||
	    fed_client_add_tick(fed->fc, TICK_MS, fed_sender_tick, fed->sender) < 0)
		goto fail;
	app->federation = fed;
	if (fed_handlers_register(app) < 0 || fed_servers_register_routes(app) < 0 || fed_inbound_register(app) < 0 ||
	    fed_rooms_register(app) < 0 || fed_public_rooms_register(app) < 0 || fed_devices_register(app) < 0)
		goto fail_registered;
	if (fed_client_run(fed->fc, &err) < 0)
		goto fail_registered;
	log_info("federation", "started server_name=%s verify_tls=%d allow_loopback=%d whitelist_only=%d",
		 app->cfg.server_name, app->cfg.fed_verify_tls, app->cfg.fed_allow_loopback,
		 app->cfg.fed_whitelist_only);
	return 0;
fail_registered:
	app->federation = NULL;
fail:
	if (err.message[0])
		log_error("federation", "cannot start: %s", err.message);
	fed_free(fed);
	return -1;
}

void federation_stop(struct app *app)
{
	struct federation *fed = app->federation;
	if (!fed)
		return;
	fed_client_stop(fed->fc);
}

void federation_free(struct app *app)
{
	struct federation *fed = app->federation;
	if (!fed)
		return;
	app->federation = NULL;
	fed_free(fed);
}
