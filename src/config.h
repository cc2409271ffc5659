/* config.h - auralinkd.conf (libconfig) loaded into one immutable struct. */
#ifndef AL_CONFIG_H
#define AL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_MAX_LIST 64

struct config_listener {
	bool enabled;
	char bind[64];
	int port;
};

struct config_string_list {
	int count;
	char *items[CONFIG_MAX_LIST];
};

struct al_config {
	char server_name[256];
	char public_baseurl[512];    /* for /.well-known/matrix/client */
	char well_known_server[256]; /* for /.well-known/matrix/server */
	struct config_listener client;
	struct config_listener federation;
	char tls_certificate[1024];
	char tls_private_key[1024];
	char conninfo[1024];
	char migrations_dir[1024];
	char signing_key_path[1024];
	int key_validity_hours;
	int worker_threads;
	char log_level[16];
	bool registration_enabled;
	bool allow_guests;
	int password_ops_limit; /* argon2id; 0 = libsodium's interactive */
	size_t password_mem_limit;
	size_t max_body_bytes;
	int max_json_depth;
	double rate_per_second; /* token bucket refill; 0 disables */
	int rate_burst;
	bool fed_verify_tls;
	char fed_ca_file[1024];
	bool fed_allow_loopback;
	bool fed_whitelist_only;
	struct config_string_list fed_whitelist;
	struct config_string_list fed_blacklist;
	long long fed_clock_skew_ms;              /* tolerance for remote clocks */
	int fed_key_refetch_interval_s;           /* unknown key id: refetch at most this often */
	int fed_health_interval_s;                /* periodic /version check of known peers */
	struct config_string_list fed_connect_to; /* CURLOPT_CONNECT_TO entries */
	struct config_string_list admins;
	int mesh_online_window_s;           /* mesh: online = heartbeat within this */
	int mesh_flush_interval_ms;         /* mesh: batched writes */
	int mesh_heartbeat_min_interval_ms; /* mesh: per-node heartbeat limit */
	bool dev_verifier;                  /* built-in verifier that logs codes */
	char default_room_version[4];       /* rooms.default_room_version: createRoom without room_version */
};

/* Load and validate. On failure returns -1 and writes one line naming the
 * setting into errbuf. DATABASE_URL in the environment overrides
 * database.conninfo. */
int config_load_file(const char *path, struct al_config *cfg, char *errbuf, size_t errlen);
int config_load_string(const char *text, struct al_config *cfg, char *errbuf, size_t errlen);
void config_free(struct al_config *cfg);

bool config_list_contains(const struct config_string_list *list, const char *value);

#endif
