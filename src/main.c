/* main.c - auralinkd: command line, start-up, signals, shutdown. */
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "app.h"
#include "audit.h"
#include "aura_id.h"
#include "auth.h"
#include "calls.h"
#include "config.h"
#include "db.h"
#include "federation.h"
#include "handlers_abuse.h"
#include "handlers_account.h"
#include "handlers_account_manage.h"
#include "handlers_admin.h"
#include "handlers_apps.h"
#include "handlers_aura_id.h"
#include "handlers_calls.h"
#include "handlers_discovery.h"
#include "handlers_events.h"
#include "handlers_presence.h"
#include "handlers_pushers.h"
#include "handlers_room.h"
#include "handlers_room_directory.h"
#include "handlers_sync.h"
#include "handlers_tags.h"
#include "http.h"
#include "keys.h"
#include "log.h"
#include "mesh.h"
#include "ratelimit.h"
#include "room.h"
#include "router.h"
#include "uia.h"
#include "workpool.h"

#define EXIT_CONFIG 2

enum action { ACT_SERVE, ACT_CHECK_CONFIG, ACT_GENERATE_KEYS, ACT_ROTATE_KEY, ACT_GRANT_ADMIN };

static void usage(FILE *out)
{
	fprintf(out, "usage: auralinkd --config FILE [ACTION]\n"
		     "\n"
		     "Without an action, auralinkd applies pending database migrations and serves.\n"
		     "\n"
		     "  -c, --config FILE     configuration file (auralinkd.conf(5))\n"
		     "  -n, --check-config    validate the configuration and exit\n"
		     "      --generate-keys   create the signing key at signing_key_path if missing\n"
		     "      --rotate-key      retire the current signing key (kept in old_verify_keys)\n"
		     "                        and create a new one\n"
		     "      --grant-admin USER  make the local user USER (@name:server) a server admin\n"
		     "  -v, --version         print the version and exit\n"
		     "  -h, --help            print this help and exit\n");
}

static int load_config(const char *path, struct al_config *cfg)
{
	char err[1200];
	if (!path) {
		fprintf(stderr, "config: --config FILE is required\n");
		return -1;
	}
	if (config_load_file(path, cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	enum log_level lvl = LOG_LVL_INFO;
	log_level_parse(cfg->log_level, &lvl);
	log_set_level(lvl);
	return 0;
}

static int run_key_action(enum action act, const struct al_config *cfg)
{
	struct al_error err = {0};
	int created = 0;
	int rc = act == ACT_GENERATE_KEYS ? keys_generate_file(cfg->signing_key_path, &created, &err)
					  : keys_rotate_file(cfg->signing_key_path, http_now_ms(), &err);
	if (rc < 0) {
		fprintf(stderr, "keys: %s\n", err.message);
		return 1;
	}
	if (act == ACT_ROTATE_KEY)
		printf("rotated signing key %s\n", cfg->signing_key_path);
	else
		printf("%s signing key %s\n", created ? "created" : "kept existing", cfg->signing_key_path);
	return 0;
}

static int open_database(const struct al_config *cfg, struct db *db);

/* --grant-admin: users.is_admin = true, with an audit entry. */
static int run_grant_admin(const struct al_config *cfg, const char *user_id)
{
	struct db db = {0};
	struct al_error err = {0};
	int rc = 1;
	if (open_database(cfg, &db) < 0)
		return 1;
	if (db_begin(&db, &err) < 0 || accounts_grant_admin(&db, user_id, &err) < 0 ||
	    audit_append(&db, "admin", "grant_admin", "auralinkd --grant-admin", user_id, NULL, NULL, &err) < 0 ||
	    db_commit(&db, &err) < 0) {
		db_rollback(&db);
		if (err.status == 404)
			fprintf(stderr, "auralinkd: no such user %s on this server\n", user_id);
		else
			fprintf(stderr, "auralinkd: cannot grant admin: %s\n", err.message);
		goto out;
	}
	printf("%s is now a server admin\n", user_id);
	rc = 0;
out:
	db_close(&db);
	return rc;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	log_info("main", "signal %d received, shutting down", (int)sig);
	event_base_loopexit((struct event_base *)arg, NULL);
}

/* Each module registers its routes and periodic tasks; one line each. */
static int start_modules(struct app *app)
{
	int rc = 0;
	rc |= discovery_register_routes(app);
	rc |= (app->workpool = workpool_new(WORKPOOL_DEFAULT_THREADS)) ? 0 : -1;
	rc |= ratelimit_start(app);
	rc |= auth_start(app);
	rc |= (app->uia = uia_sessions_new(UIA_MAX_SESSIONS, UIA_TTL_MS)) ? 0 : -1;
	rc |= account_register_routes(app);
	rc |= admin_register_routes(app);
	rc |= account_manage_register_routes(app);
	rc |= aura_id_handlers_start(app);
	rc |= apps_register_routes(app);
	rc |= abuse_register_routes(app);
	rc |= mesh_start(app);
	rc |= federation_start(app);
	room_set_default_version(app->cfg.default_room_version);
	rc |= rooms_start(app);
	rc |= calls_handlers_start(app);
	rc |= presence_register_routes(app);
	rc |= events_start(app);
	rc |= room_directory_register_routes(app);
	rc |= pushers_register_routes(app);
	rc |= tags_register_routes(app);
	federation_set_notify(app, sync_notify);
	return rc ? -1 : 0;
}

/* After the workers stopped: flush and free module state, one line each. */
static void stop_modules(struct app *app)
{
	workpool_free(app->workpool); /* normally already stopped in serve() */
	app->workpool = NULL;
	ratelimit_stop(app);
	auth_stop(app);
	uia_sessions_free(app->uia);
	sync_stop(app);
	events_stop(app);
	aura_id_stop(app);
	mesh_stop(app);
	calls_stop(app);
	federation_free(app);
}

/* Opens the maintenance connection and applies pending migrations. */
static int open_database(const struct al_config *cfg, struct db *db)
{
	struct al_error err = {0};
	if (db_open(db, cfg->conninfo, &err) < 0) {
		log_error("main", "database.conninfo: %s", err.message);
		return -1;
	}
	if (db_migrate(db, cfg->migrations_dir, &err) < 0) {
		log_error("main", "database: %s", err.message);
		db_close(db);
		return -1;
	}
	return 0;
}

static int serve(struct app *app)
{
	struct al_error err = {0};
	int rc = 1;
	struct event_base *base = event_base_new();
	struct event *sigint = NULL, *sigterm = NULL;
	struct http_server *srv = NULL;
	struct db maint = {0};
	app->router = router_new();
	app->main_base = base;
	app->maint_db = &maint;
	if (!base || !app->router || open_database(&app->cfg, &maint) < 0)
		goto out;
	if (start_modules(app) < 0)
		goto out;
	/* Before the listeners: once a client can reach us, SIGTERM must mean
	 * a clean shutdown, not the default action. */
	sigint = evsignal_new(base, SIGINT, on_signal, base);
	sigterm = evsignal_new(base, SIGTERM, on_signal, base);
	if (!sigint || !sigterm || evsignal_add(sigint, NULL) < 0 || evsignal_add(sigterm, NULL) < 0)
		goto out;
	srv = http_server_start(app, &err);
	if (!srv) {
		log_error("main", "%s", err.message);
		goto out;
	}
	log_info("main", "serving server_name=%s client=%s:%d federation=%s:%d workers=%d", app->cfg.server_name,
		 app->cfg.client.bind, app->cfg.client.port, app->cfg.federation.bind, app->cfg.federation.port,
		 app->cfg.worker_threads);
	event_base_dispatch(base);
	rc = 0;
out:
	/* The pool hands results to the workers' loops: stop it while they
	 * still run (queued jobs finish, their replies go out). */
	workpool_free(app->workpool);
	app->workpool = NULL;
	federation_stop(app); /* same reason: its callbacks run on the workers */
	rooms_stop(app);      /* same reason: the room writers answer on the workers */
	sync_drain(app);
	events_drain(app);
	http_server_stop(srv);
	stop_modules(app);
	if (sigint)
		event_free(sigint);
	if (sigterm)
		event_free(sigterm);
	if (base)
		event_base_free(base);
	if (maint.conn)
		db_close(&maint);
	router_free(app->router);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 'n'},
		{"generate-keys", no_argument, NULL, 'g'},
		{"rotate-key", no_argument, NULL, 'r'},
		{"grant-admin", required_argument, NULL, 'a'},
		{"version", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *config_path = NULL;
	const char *grant_user = NULL;
	enum action act = ACT_SERVE;
	int c;
	while ((c = getopt_long(argc, argv, "c:nvh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config_path = optarg; break;
		case 'n': act = ACT_CHECK_CONFIG; break;
		case 'g': act = ACT_GENERATE_KEYS; break;
		case 'r': act = ACT_ROTATE_KEY; break;
		case 'a':
			act = ACT_GRANT_ADMIN;
			grant_user = optarg;
			break;
		case 'v': printf("auralinkd %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_CONFIG;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "auralinkd: unexpected argument '%s'\n", argv[optind]);
		return EXIT_CONFIG;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "auralinkd: libsodium cannot initialise\n");
		return 1;
	}
	static struct app app;
	if (load_config(config_path, &app.cfg) < 0)
		return EXIT_CONFIG;
	int rc = 0;
	if (act == ACT_CHECK_CONFIG) {
		printf("config %s is valid\n", config_path);
	} else if (act == ACT_GRANT_ADMIN) {
		rc = run_grant_admin(&app.cfg, grant_user);
	} else if (act == ACT_GENERATE_KEYS || act == ACT_ROTATE_KEY) {
		rc = run_key_action(act, &app.cfg);
	} else {
		signal(SIGPIPE, SIG_IGN);
		evthread_use_pthreads();
		struct al_error err = {0};
		app.keys = keys_load(app.cfg.signing_key_path, app.cfg.server_name, app.cfg.key_validity_hours, &err);
		if (!app.keys) {
			fprintf(stderr, "config: %s\n", err.message);
			config_free(&app.cfg);
			return EXIT_CONFIG;
		}
		rc = serve(&app);
		keys_free(app.keys);
	}
	config_free(&app.cfg);
	return rc;
}
