#include "aura_id.h"

#include <ctype.h>
#include <event2/event.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "audit.h"
#include "aura_search.h"
#include "cjson.h"
#include "http.h"
#include "log.h"
#include "verifier.h"

/* ---- cache layout ----
 * A set-associative table: CACHE_SETS sets of CACHE_WAYS entries, so it is
 * bounded by construction; a full set replaces its oldest entry. Sets are
 * guarded by striped rwlocks. Entries are immutable once published, except
 * touched_ms (atomic). A global generation counter, bumped by every
 * invalidation, keeps a lookup that raced with an invalidation from
 * publishing what it read before it. */
#define CACHE_SETS 65536u /* power of two */
#define CACHE_WAYS 4
#define CACHE_STRIPES 256u
/* Changes are announced through NOTIFY (every process drops its copy at
 * once); the TTL only bounds what a lost notification could leave behind.
 * Each entry lives TTL to 2 * TTL so that refetches spread out. */
#define CACHE_TTL_MS 300000
#define CACHE_PRELOAD_MAX 131072 /* most recently used handles loaded at start */
#define TOUCH_INTERVAL_MS 60000 /* last_used_at granularity */
#define TOUCH_MAX_PENDING 200000
#define TICK_MS 1000
#define FLUSH_EVERY_TICKS 5
#define NOTIFY_CHANNEL "auralink_aura_id"
/* Notified handles are re-read for the search index in batches of this
 * many (one query each); a burst of more than SEARCH_RELOAD_AFTER reloads
 * the whole index instead (one query). */
#define NOTIFY_BATCH 512
#define SEARCH_RELOAD_AFTER 8192
#define SEARCH_RETRY_TICKS 10 /* after a failed load */

struct cache_entry {
	char key[AURA_ID_MAX];     /* lower-case handle */
	char aura_id[AURA_ID_MAX]; /* as stored */
	int64_t fetched_ms;
	int64_t expires_ms;
	_Atomic int64_t touched_ms;
	bool found;
	bool active;
	char privacy[8];
	char *user_id; /* points into the same allocation */
	char *json;
	size_t json_len;
};

struct aura_id_state {
	struct cache_entry **slots; /* CACHE_SETS * CACHE_WAYS */
	pthread_rwlock_t locks[CACHE_STRIPES];
	_Atomic uint64_t generation;
	unsigned char hash_key[crypto_shorthash_KEYBYTES];
	pthread_mutex_t touch_lock;
	char (*touched)[AURA_ID_MAX];
	int ntouched;
	const struct verifier *verifier;
	struct event *tick;
	struct event *notify_ev;
	int notify_fd;
	int ticks;
	bool preloaded;
	/* search index (aura_search.c): loaded at start and whenever changes
	 * may have been missed (one query); kept current by this process's
	 * changes at once and by everyone's through the notifications, which
	 * re-read the notified rows. A change applied at once while a load was
	 * reading an older snapshot is undone by the swap, and redone by its
	 * own notification a moment later (we listen before we load). */
	struct aura_search *search;
	_Atomic bool db_folds_unicode; /* the database's lower() folds beyond ASCII */
	char (*changed)[AURA_ID_MAX];  /* NOTIFY_BATCH notified handles */
	int search_retry;              /* ticks until the next load attempt */
};

/* The record: column names of aura_id_registry, timestamps in ms. Column
 * names are unqualified so it serves SELECT and RETURNING alike. */
#define MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"
#define RECORD_JSON                                                                              \
	"json_build_object('id', id, 'aura_id', aura_id, 'user_id', user_id, 'username', username," \
	" 'display_name', display_name, 'avatar_url', avatar_url, 'is_verified', is_verified,"     \
	" 'verification_method', verification_method, 'verified_at', " MS("verified_at") ","       \
	" 'privacy_level', privacy_level, 'allow_discovery', allow_discovery,"                     \
	" 'allow_cross_app_calls', allow_cross_app_calls,"                                         \
	" 'block_unknown_callers', block_unknown_callers, 'federated_domains', federated_domains," \
	" 'federation_enabled', federation_enabled, 'public_metadata', public_metadata,"           \
	" 'status', status, 'created_at', " MS("created_at") ", 'updated_at', " MS("updated_at")   \
	", 'last_used_at', " MS("last_used_at") ")::text"

static const char *const reserved_names[] = {
	"admin",     "administrator", "root",     "support", "system",    "moderator", "mod",
	"auralink",  "aura",          "matrix",   "security", "help",     "abuse",     "postmaster",
	"webmaster", "hostmaster",    "noreply",  "no-reply", "staff",    "official",  "server",
	"federation", "everyone",     "operator", "owner",    "sysadmin", "superuser", "null",
	"undefined", "api",           "www",      "info",     "billing",  "privacy",   "legal",
};

static int64_t now_ms(void)
{
	return http_now_ms();
}

/* ---- names ---- */

bool aura_id_username_valid(const char *u)
{
	if (!u)
		return false;
	size_t n = strlen(u);
	if (n < AURA_ID_USERNAME_MIN || n > AURA_ID_USERNAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)u[i];
		if (!(isascii(c) && (isalnum(c) || c == '_' || c == '-')))
			return false;
	}
	return true;
}

bool aura_id_username_reserved(const char *u)
{
	for (size_t i = 0; i < sizeof(reserved_names) / sizeof(reserved_names[0]); i++)
		if (strcasecmp(u, reserved_names[i]) == 0)
			return true;
	return false;
}

bool aura_id_parse(const char *handle, char *username, size_t len)
{
	if (!handle)
		return false;
	if (handle[0] == '@')
		handle++;
	size_t n = strlen(handle);
	if (n < 5 || strcmp(handle + n - 5, ".aura") != 0 || n - 5 >= len)
		return false;
	memcpy(username, handle, n - 5);
	username[n - 5] = '\0';
	return aura_id_username_valid(username);
}

static void lower_copy(char *dst, size_t len, const char *src)
{
	size_t i = 0;
	for (; src[i] && i + 1 < len; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	dst[i] = '\0';
}

static bool valid_privacy(const char *p)
{
	return p && (strcmp(p, "public") == 0 || strcmp(p, "friends") == 0 || strcmp(p, "private") == 0);
}

static bool valid_method(const char *m)
{
	return m && (strcmp(m, "phone") == 0 || strcmp(m, "email") == 0 || strcmp(m, "kyc") == 0);
}

/* ---- cache ---- */

static unsigned cache_set_of(struct aura_id_state *st, const char *key)
{
	unsigned char h[crypto_shorthash_BYTES];
	crypto_shorthash(h, (const unsigned char *)key, strlen(key), st->hash_key);
	uint32_t v;
	memcpy(&v, h, sizeof(v));
	return v & (CACHE_SETS - 1);
}

static pthread_rwlock_t *cache_lock(struct aura_id_state *st, unsigned set)
{
	return &st->locks[set & (CACHE_STRIPES - 1)];
}

void aura_id_cache_forget(struct app *app, const char *aura_id)
{
	struct aura_id_state *st = app->aura_id;
	if (!st || !aura_id)
		return;
	char key[AURA_ID_MAX];
	lower_copy(key, sizeof(key), aura_id);
	unsigned set = cache_set_of(st, key);
	pthread_rwlock_wrlock(cache_lock(st, set));
	atomic_fetch_add(&st->generation, 1);
	struct cache_entry **ways = &st->slots[set * CACHE_WAYS];
	for (int i = 0; i < CACHE_WAYS; i++)
		if (ways[i] && strcmp(ways[i]->key, key) == 0) {
			free(ways[i]);
			ways[i] = NULL;
		}
	pthread_rwlock_unlock(cache_lock(st, set));
}

void aura_id_cache_forget_all(struct app *app)
{
	struct aura_id_state *st = app->aura_id;
	if (!st)
		return;
	for (unsigned s = 0; s < CACHE_STRIPES; s++)
		pthread_rwlock_wrlock(&st->locks[s]);
	atomic_fetch_add(&st->generation, 1);
	for (size_t i = 0; i < (size_t)CACHE_SETS * CACHE_WAYS; i++) {
		free(st->slots[i]);
		st->slots[i] = NULL;
	}
	for (unsigned s = 0; s < CACHE_STRIPES; s++)
		pthread_rwlock_unlock(&st->locks[s]);
}

static void touch_push(struct aura_id_state *st, const char *aura_id)
{
	pthread_mutex_lock(&st->touch_lock);
	if (st->ntouched < TOUCH_MAX_PENDING)
		snprintf(st->touched[st->ntouched++], AURA_ID_MAX, "%s", aura_id);
	pthread_mutex_unlock(&st->touch_lock);
}

/* The entry's use is recorded at most once per TOUCH_INTERVAL_MS. */
static void touch_entry(struct aura_id_state *st, struct cache_entry *e, int64_t now)
{
	int64_t last = atomic_load(&e->touched_ms);
	if (now - last < TOUCH_INTERVAL_MS)
		return;
	if (atomic_compare_exchange_strong(&e->touched_ms, &last, now))
		touch_push(st, e->aura_id);
}

enum cache_result { CACHE_MISS, CACHE_HIT };

/* What a lookup learned about a handle, copied out of the cache (or read
 * from PostgreSQL) so that the privacy decision, which may query the
 * database, runs with no lock held. */
struct lookup {
	bool found;  /* an AuraID by that name is hosted here */
	bool active;
	char aura_id[AURA_ID_MAX];
	char user_id[256]; /* users.user_id is at most 255 bytes */
	char privacy[8];
	char *json; /* malloc'd copy of the answer, or NULL */
	size_t json_len;
};

static void lookup_fill(struct lookup *l, const struct cache_entry *e, bool want_json)
{
	l->found = e->found;
	l->active = e->active;
	snprintf(l->aura_id, sizeof(l->aura_id), "%s", e->aura_id);
	snprintf(l->user_id, sizeof(l->user_id), "%s", e->user_id);
	snprintf(l->privacy, sizeof(l->privacy), "%s", e->privacy);
	l->json = NULL;
	l->json_len = 0;
	if (want_json && e->found && e->active) {
		l->json = malloc(e->json_len + 1);
		if (l->json) {
			memcpy(l->json, e->json, e->json_len + 1);
			l->json_len = e->json_len;
		}
	}
}

/* Under the read lock: copy the entry out and apply the privacy rule's
 * lock-free part (aura_id_visibility); when that already says visible,
 * record the use (touch) here. AURA_ID_IF_FRIENDS is settled by the caller
 * after the lock is released. */
static enum cache_result cache_lookup(struct app *app, const char *key, const char *viewer,
				      bool want_json, bool touch, struct lookup *out,
				      enum aura_id_visibility *visibility)
{
	struct aura_id_state *st = app->aura_id;
	unsigned set = cache_set_of(st, key);
	int64_t now = now_ms();
	enum cache_result res = CACHE_MISS;
	pthread_rwlock_rdlock(cache_lock(st, set));
	struct cache_entry **ways = &st->slots[set * CACHE_WAYS];
	for (int i = 0; i < CACHE_WAYS; i++) {
		struct cache_entry *e = ways[i];
		if (!e || strcmp(e->key, key) != 0 || now >= e->expires_ms)
			continue;
		res = CACHE_HIT;
		*visibility = e->found && e->active ? aura_id_visibility(viewer, e->user_id, e->privacy)
						    : AURA_ID_HIDDEN;
		lookup_fill(out, e, want_json && *visibility != AURA_ID_HIDDEN);
		if (touch && *visibility == AURA_ID_VISIBLE)
			touch_entry(st, e, now);
		break;
	}
	pthread_rwlock_unlock(cache_lock(st, set));
	return res;
}

/* Record a use of a cached handle after a visibility query (the entry may
 * have been replaced meanwhile: then the next lookup records it). */
static void cache_touch(struct app *app, const char *key)
{
	struct aura_id_state *st = app->aura_id;
	unsigned set = cache_set_of(st, key);
	pthread_rwlock_rdlock(cache_lock(st, set));
	struct cache_entry **ways = &st->slots[set * CACHE_WAYS];
	for (int i = 0; i < CACHE_WAYS; i++)
		if (ways[i] && strcmp(ways[i]->key, key) == 0) {
			touch_entry(st, ways[i], now_ms());
			break;
		}
	pthread_rwlock_unlock(cache_lock(st, set));
}

static struct cache_entry *entry_new(const char *key, const char *aura_id, const char *user_id,
				     const char *privacy, bool active, const char *json, size_t json_len)
{
	size_t ulen = user_id ? strlen(user_id) + 1 : 1;
	struct cache_entry *e = malloc(sizeof(*e) + ulen + json_len + 1);
	if (!e)
		return NULL;
	memset(e, 0, sizeof(*e));
	snprintf(e->key, sizeof(e->key), "%s", key);
	snprintf(e->aura_id, sizeof(e->aura_id), "%s", aura_id ? aura_id : key);
	e->user_id = (char *)(e + 1);
	memcpy(e->user_id, user_id ? user_id : "", ulen);
	e->json = e->user_id + ulen;
	if (json_len)
		memcpy(e->json, json, json_len);
	e->json[json_len] = '\0';
	e->json_len = json_len;
	e->found = user_id != NULL;
	e->active = active;
	snprintf(e->privacy, sizeof(e->privacy), "%s", privacy ? privacy : "");
	e->fetched_ms = now_ms();
	e->expires_ms = e->fetched_ms + CACHE_TTL_MS + (int64_t)randombytes_uniform(CACHE_TTL_MS);
	atomic_init(&e->touched_ms, 0);
	return e;
}

static void cache_insert(struct aura_id_state *st, struct cache_entry *e, uint64_t generation)
{
	unsigned set = cache_set_of(st, e->key);
	pthread_rwlock_wrlock(cache_lock(st, set));
	if (atomic_load(&st->generation) != generation) {
		/* invalidated while we read: do not publish a stale copy */
		pthread_rwlock_unlock(cache_lock(st, set));
		free(e);
		return;
	}
	struct cache_entry **ways = &st->slots[set * CACHE_WAYS];
	int victim = 0;
	for (int i = 0; i < CACHE_WAYS; i++) {
		if (!ways[i] || strcmp(ways[i]->key, e->key) == 0) {
			victim = i;
			break;
		}
		if (ways[i]->fetched_ms < ways[victim]->fetched_ms)
			victim = i;
	}
	free(ways[victim]);
	ways[victim] = e;
	pthread_rwlock_unlock(cache_lock(st, set));
}

/* ---- resolve ---- */

enum aura_id_visibility aura_id_visibility(const char *viewer, const char *owner,
					   const char *privacy_level)
{
	if (viewer && owner && owner[0] && strcmp(viewer, owner) == 0)
		return AURA_ID_VISIBLE;
	if (privacy_level && strcmp(privacy_level, "public") == 0)
		return AURA_ID_VISIBLE;
	if (viewer && viewer[0] && privacy_level && strcmp(privacy_level, "friends") == 0)
		return AURA_ID_IF_FRIENDS;
	return AURA_ID_HIDDEN; /* private, or an unknown level: fail closed */
}

/* Friends: both currently joined to one room at least. Index-only scans
 * of room_memberships_joined_idx (032): one user's joined rooms, each
 * probed for the other (or merged on room_id); stops at the first hit. */
#define FRIENDS_SQL                                                                       \
	"SELECT EXISTS (SELECT 1 FROM room_memberships o JOIN room_memberships v"          \
	" ON v.room_id = o.room_id AND v.user_id = $2 AND v.membership = 'join'"           \
	" WHERE o.user_id = $1 AND o.membership = 'join')"

int aura_id_visible_to(struct db *db, const char *viewer, const char *owner, const char *privacy_level,
		       struct al_error *err)
{
	switch (aura_id_visibility(viewer, owner, privacy_level)) {
	case AURA_ID_VISIBLE:
		return 1;
	case AURA_ID_HIDDEN:
		return 0;
	case AURA_ID_IF_FRIENDS:
		break;
	}
	const char *params[] = {owner, viewer};
	PGresult *r = db_exec(db, err, FRIENDS_SQL, 2, params);
	if (!r)
		return -1;
	int visible = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	return visible;
}

#define RESOLVE_COLUMNS                                                                     \
	"SELECT r.aura_id, r.user_id, r.display_name, r.avatar_url, r.is_verified,"          \
	" r.privacy_level, r.status = 'active',"                                             \
	" EXISTS (SELECT 1 FROM mesh_nodes n WHERE n.aura_id = r.aura_id AND n.is_online)" \
	" FROM aura_id_registry r"

/* A cache entry from row i of a RESOLVE_COLUMNS result. */
static struct cache_entry *entry_from_row(struct app *app, PGresult *r, int i)
{
	char key[AURA_ID_MAX];
	lower_copy(key, sizeof(key), PQgetvalue(r, i, 0));
	json_t *doc = json_pack(
		"{s:s, s:s, s:o, s:o, s:b, s:b, s:s, s:s}", "aura_id", PQgetvalue(r, i, 0), "user_id",
		PQgetvalue(r, i, 1), "display_name",
		PQgetisnull(r, i, 2) ? json_null() : json_string(PQgetvalue(r, i, 2)), "avatar_url",
		PQgetisnull(r, i, 3) ? json_null() : json_string(PQgetvalue(r, i, 3)), "is_verified",
		PQgetvalue(r, i, 4)[0] == 't', "is_online", PQgetvalue(r, i, 7)[0] == 't',
		"privacy_level", PQgetvalue(r, i, 5), "server", app->cfg.server_name);
	char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (!text)
		return NULL;
	struct cache_entry *e = entry_new(key, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
					  PQgetvalue(r, i, 5), PQgetvalue(r, i, 6)[0] == 't', text,
					  strlen(text));
	free(text);
	return e;
}

static struct cache_entry *resolve_fetch(struct app *app, struct db *db, const char *key,
					 struct al_error *err)
{
	const char *params[] = {key};
	PGresult *r = db_exec(db, err, RESOLVE_COLUMNS " WHERE lower(r.aura_id) = $1", 1, params);
	if (!r)
		return NULL;
	struct cache_entry *e = PQntuples(r) == 0 ? entry_new(key, NULL, NULL, NULL, false, "", 0)
						  : entry_from_row(app, r, 0);
	PQclear(r);
	if (!e)
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	return e;
}

/* Main thread: fill the cache with the most recently used active handles,
 * so a restart does not send every first resolve to PostgreSQL. */
static void cache_preload(struct app *app)
{
	struct aura_id_state *st = app->aura_id;
	struct al_error err = {0};
	char max[16];
	snprintf(max, sizeof(max), "%d", CACHE_PRELOAD_MAX);
	const char *params[] = {max};
	uint64_t gen = atomic_load(&st->generation);
	int64_t t0 = now_ms();
	PGresult *r = db_exec(app->maint_db, &err,
			      RESOLVE_COLUMNS " WHERE r.status = 'active'"
			      " ORDER BY r.last_used_at DESC NULLS LAST, r.created_at DESC LIMIT $1::integer",
			      1, params);
	if (!r)
		return;
	int n = PQntuples(r);
	for (int i = 0; i < n; i++) {
		struct cache_entry *e = entry_from_row(app, r, i);
		if (e)
			cache_insert(st, e, gen);
	}
	PQclear(r);
	log_info("aura_id", "cache preloaded handles=%d ms=%lld", n, (long long)(now_ms() - t0));
}

/* Look key up (cache, else PostgreSQL, then cached) and decide whether
 * viewer may see it, the friends query running with no lock held. touch:
 * count this as a use for last_used_at. 1 visible, 0 not, -1 error. *l is
 * filled in every case; l->json (want_json, visible) is the caller's. */
static int lookup_visible(struct app *app, struct db *db, const char *key, const char *viewer,
			  bool want_json, bool touch, struct lookup *l, struct al_error *err)
{
	struct aura_id_state *st = app->aura_id;
	enum aura_id_visibility vis = AURA_ID_HIDDEN;
	memset(l, 0, sizeof(*l));
	if (cache_lookup(app, key, viewer, want_json, touch, l, &vis) == CACHE_MISS) {
		uint64_t gen = atomic_load(&st->generation);
		struct cache_entry *e = resolve_fetch(app, db, key, err);
		if (!e)
			return -1;
		vis = e->found && e->active ? aura_id_visibility(viewer, e->user_id, e->privacy)
					    : AURA_ID_HIDDEN;
		lookup_fill(l, e, want_json && vis != AURA_ID_HIDDEN);
		if (touch && vis == AURA_ID_VISIBLE) {
			atomic_store(&e->touched_ms, now_ms());
			touch_push(st, e->aura_id);
		}
		cache_insert(st, e, gen); /* e belongs to the cache now (or is freed) */
	}
	int visible = vis == AURA_ID_VISIBLE;
	if (vis == AURA_ID_IF_FRIENDS) {
		visible = aura_id_visible_to(db, viewer, l->user_id, l->privacy, err);
		if (visible > 0 && touch)
			cache_touch(app, key);
	}
	if (visible <= 0) {
		free(l->json);
		l->json = NULL;
	}
	return visible;
}

/* "@Name.aura" / "name.aura" -> "@name.aura" (the cache key); false when
 * malformed. */
static bool handle_key(const char *handle, char key[AURA_ID_MAX])
{
	char username[AURA_ID_MAX];
	if (!aura_id_parse(handle, username, sizeof(username)))
		return false;
	char lower_user[AURA_ID_USERNAME_MAX + 2];
	lower_copy(lower_user, sizeof(lower_user), username);
	snprintf(key, AURA_ID_MAX, "@%s.aura", lower_user);
	return true;
}

char *aura_id_resolve(struct app *app, struct db *db, const char *viewer, const char *handle,
		      size_t *len, bool *unknown, struct al_error *err)
{
	char key[AURA_ID_MAX];
	struct lookup l;
	if (unknown)
		*unknown = false;
	if (!handle_key(handle, key)) {
		al_error_set(err, 404, "M_NOT_FOUND", "no such AuraID");
		return NULL;
	}
	int visible = lookup_visible(app, db, key, viewer, true, true, &l, err);
	if (visible < 0)
		return NULL;
	if (!visible) {
		if (unknown)
			*unknown = !l.found;
		al_error_set(err, 404, "M_NOT_FOUND", "no such AuraID");
		return NULL;
	}
	if (!l.json) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	*len = l.json_len;
	return l.json;
}

int aura_id_check_visible(struct app *app, struct db *db, const char *viewer, const char *handle,
			  struct al_error *err)
{
	char key[AURA_ID_MAX];
	struct lookup l;
	if (!handle_key(handle, key))
		return al_error_set(err, 404, "M_NOT_FOUND", "no such AuraID");
	int visible = lookup_visible(app, db, key, viewer, false, false, &l, err);
	if (visible < 0)
		return -1;
	return visible ? 0 : al_error_set(err, 404, "M_NOT_FOUND", "no such AuraID");
}

/* ---- last_used_at batches ---- */

/* A text[] literal {"@a.aura","@b.aura"} of n handles (malloc'd); handles
 * hold no quote or backslash (those that do are skipped anyway). */
static char *handles_literal(const char (*handles)[AURA_ID_MAX], int n)
{
	size_t cap = (size_t)n * (AURA_ID_MAX + 3) + 3, off = 0;
	char *lit = malloc(cap);
	if (!lit)
		return NULL;
	lit[off++] = '{';
	for (int i = 0; i < n; i++) {
		if (strpbrk(handles[i], "\"\\{},"))
			continue;
		int w = snprintf(lit + off, cap - off, "%s\"%s\"", off > 1 ? "," : "", handles[i]);
		if (w < 0 || (size_t)w >= cap - off) {
			free(lit);
			return NULL;
		}
		off += (size_t)w;
	}
	lit[off++] = '}';
	lit[off] = '\0';
	return lit;
}

int aura_id_flush_touches(struct app *app)
{
	struct aura_id_state *st = app->aura_id;
	if (!st || !app->maint_db || !app->maint_db->conn)
		return 0;
	pthread_mutex_lock(&st->touch_lock);
	int n = st->ntouched;
	char(*batch)[AURA_ID_MAX] = NULL;
	if (n > 0) {
		batch = malloc((size_t)n * AURA_ID_MAX);
		if (batch) {
			memcpy(batch, st->touched, (size_t)n * AURA_ID_MAX);
			st->ntouched = 0;
		}
	}
	pthread_mutex_unlock(&st->touch_lock);
	if (n == 0)
		return 0;
	if (!batch)
		return -1;
	char *lit = handles_literal((const char(*)[AURA_ID_MAX])batch, n);
	int rc = -1;
	if (!lit)
		goto out;
	struct al_error err = {0};
	const char *params[] = {lit};
	PGresult *r = db_exec(app->maint_db, &err,
			      "UPDATE aura_id_registry AS r SET last_used_at = now()"
			      " FROM unnest($1::text[]) AS t(aura_id)"
			      " WHERE r.aura_id = t.aura_id"
			      " AND (r.last_used_at IS NULL OR r.last_used_at < now() - interval '55 seconds')",
			      1, params);
	if (!r) {
		log_warn("aura_id", "last_used_at flush failed handles=%d", n);
		goto out;
	}
	rc = atoi(PQcmdTuples(r));
	PQclear(r);
	log_debug("aura_id", "last_used_at flushed handles=%d written=%d", n, rc);
out:
	free(lit);
	free(batch);
	return rc;
}

/* ---- search index upkeep ---- */

/* Columns of a search row, and whether it is discoverable (the predicate
 * of the partial indexes of 001, and of the SQL search below). */
#define SEARCH_COLUMNS                                                                        \
	"r.aura_id, r.user_id, r.username, r.display_name, r.avatar_url, r.is_verified,"      \
	" coalesce(r.allow_discovery AND r.privacy_level <> 'private' AND r.status = 'active'," \
	" false)"
#define SEARCH_NCOLS 7

static const char *col_or_null(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* Row i of a SEARCH_COLUMNS result starting at column c; returns whether
 * it is discoverable. */
static bool search_row(PGresult *r, int i, int c, struct aura_search_row *row)
{
	row->aura_id = PQgetvalue(r, i, c);
	row->user_id = PQgetvalue(r, i, c + 1);
	row->username = PQgetvalue(r, i, c + 2);
	row->display_name = col_or_null(r, i, c + 3);
	row->avatar_url = col_or_null(r, i, c + 4);
	row->is_verified = PQgetvalue(r, i, c + 5)[0] == 't';
	return PQgetvalue(r, i, c + 6)[0] == 't';
}

/* Rows of a SEARCH_COLUMNS result into the index: discoverable ones put,
 * the others removed. */
static void search_apply(struct aura_search *s, PGresult *r, int c)
{
	for (int i = 0; i < PQntuples(r); i++) {
		if (PQgetisnull(r, i, c))
			continue;
		struct aura_search_row row;
		if (search_row(r, i, c, &row)) {
			if (aura_search_put(s, &row) < 0)
				log_warn("aura_id", "search index: cannot add aura_id=%s", row.aura_id);
		} else {
			aura_search_remove(s, row.aura_id);
		}
	}
}

/* Main thread: the whole index from PostgreSQL, one query (and one to learn
 * how the database folds case). */
static int search_load(struct app *app)
{
	struct aura_id_state *st = app->aura_id;
	struct al_error err = {0};
	int64_t t0 = now_ms();
	PGresult *f = db_exec(app->maint_db, &err, "SELECT lower(chr(201)) <> chr(201)", 0, NULL);
	if (!f)
		return -1;
	atomic_store(&st->db_folds_unicode, PQntuples(f) == 1 && PQgetvalue(f, 0, 0)[0] == 't');
	PQclear(f);
	PGresult *r = db_exec(app->maint_db, &err,
			      "SELECT " SEARCH_COLUMNS " FROM aura_id_registry r"
			      " WHERE r.allow_discovery AND r.privacy_level <> 'private' AND r.status = 'active'",
			      0, NULL);
	if (!r)
		return -1;
	int n = PQntuples(r);
	struct aura_search_row *rows = n ? calloc((size_t)n, sizeof(*rows)) : NULL;
	int rc = -1;
	if (n && !rows)
		goto out;
	for (int i = 0; i < n; i++)
		search_row(r, i, 0, &rows[i]);
	rc = aura_search_load(st->search, rows, (size_t)n);
out:
	free(rows);
	PQclear(r);
	if (rc < 0) {
		log_warn("aura_id", "search index: load failed rows=%d", n);
		return -1;
	}
	struct aura_search_stats stats;
	aura_search_stats(st->search, &stats);
	log_info("aura_id", "search index loaded entries=%zu bytes=%zu trigrams=%zu ms=%lld%s",
		 stats.entries, stats.bytes, stats.trigrams, (long long)(now_ms() - t0),
		 atomic_load(&st->db_folds_unicode) ? " non_ascii_terms=sql" : "");
	return 0;
}

/* Main thread: re-read n notified handles (lower-case keys) for the index,
 * one query; those no longer in the table are removed. */
static void search_refresh(struct app *app, const char (*keys)[AURA_ID_MAX], int n)
{
	struct aura_id_state *st = app->aura_id;
	if (n == 0 || !aura_search_ready(st->search))
		return;
	char *lit = handles_literal(keys, n);
	if (!lit) {
		aura_search_invalidate(st->search);
		return;
	}
	struct al_error err = {0};
	const char *params[] = {lit};
	PGresult *r = db_exec(app->maint_db, &err,
			      "SELECT t.h, " SEARCH_COLUMNS " FROM unnest($1::text[]) AS t(h)"
			      " LEFT JOIN aura_id_registry r ON lower(r.aura_id) = t.h",
			      1, params);
	free(lit);
	if (!r) {
		/* missed changes: answer from SQL until the next load */
		aura_search_invalidate(st->search);
		return;
	}
	for (int i = 0; i < PQntuples(r); i++)
		if (PQgetisnull(r, i, 1))
			aura_search_remove(st->search, PQgetvalue(r, i, 0));
	search_apply(st->search, r, 1);
	PQclear(r);
}

/* After this process changed an AuraID: the record (RECORD_JSON) into the
 * index at once, so the change shows up in the next search here. */
static void search_apply_record(struct app *app, const json_t *rec)
{
	struct aura_id_state *st = app->aura_id;
	if (!st || !st->search || !rec)
		return;
	const char *aura_id = json_string_value(json_object_get(rec, "aura_id"));
	const char *privacy = json_string_value(json_object_get(rec, "privacy_level"));
	const char *status = json_string_value(json_object_get(rec, "status"));
	if (!aura_id)
		return;
	bool discoverable = json_is_true(json_object_get(rec, "allow_discovery")) && privacy &&
			    strcmp(privacy, "private") != 0 && status && strcmp(status, "active") == 0;
	struct aura_search_row row = {
		aura_id,
		json_string_value(json_object_get(rec, "user_id")),
		json_string_value(json_object_get(rec, "username")),
		json_string_value(json_object_get(rec, "display_name")),
		json_string_value(json_object_get(rec, "avatar_url")),
		json_is_true(json_object_get(rec, "is_verified")),
	};
	if (!discoverable)
		aura_search_remove(st->search, aura_id);
	else if (aura_search_put(st->search, &row) < 0)
		log_warn("aura_id", "search index: cannot add aura_id=%s", aura_id);
}

int aura_id_user_changed(struct app *app, struct db *db, const char *user_id)
{
	struct aura_id_state *st = app->aura_id;
	struct al_error err = {0};
	if (!st)
		return 0;
	const char *params[] = {user_id};
	PGresult *r = db_exec(db, &err,
			      "SELECT " SEARCH_COLUMNS " FROM aura_id_registry r WHERE r.user_id = $1", 1,
			      params);
	if (!r)
		return -1; /* the notification will still come */
	if (PQntuples(r) == 1) {
		search_apply(st->search, r, 0);
		aura_id_cache_forget(app, PQgetvalue(r, 0, 0));
	}
	PQclear(r);
	return 0;
}

/* ---- change notifications from PostgreSQL ---- */

/* The payload is the handle of a changed AuraID (its record, or its owner's
 * online mesh nodes). The search index re-reads those rows (a batch per
 * query) before the resolve cache drops them, so once a resolve shows a
 * change, search does too. */
static void changed_flush(struct app *app, int n)
{
	struct aura_id_state *st = app->aura_id;
	search_refresh(app, (const char(*)[AURA_ID_MAX])st->changed, n);
	for (int i = 0; i < n; i++)
		aura_id_cache_forget(app, st->changed[i]);
}

static void drain_notifies(struct app *app)
{
	struct aura_id_state *st = app->aura_id;
	PGnotify *n;
	int nb = 0, total = 0;
	bool reload = false;
	/* re-read the connection each time: a query in between may reset it */
	while (app->maint_db->conn && (n = PQnotifies(app->maint_db->conn)) != NULL) {
		char key[AURA_ID_MAX];
		if (!n->extra || !handle_key(n->extra, key)) {
			if (n->extra && n->extra[0])
				aura_id_cache_forget(app, n->extra);
		} else if (reload || ++total > SEARCH_RELOAD_AFTER) {
			if (!reload) {
				/* a burst: one load at the end instead */
				reload = true;
				aura_search_invalidate(st->search);
			}
			aura_id_cache_forget(app, key);
		} else {
			memcpy(st->changed[nb++], key, AURA_ID_MAX);
			if (nb == NOTIFY_BATCH) {
				changed_flush(app, nb);
				nb = 0;
			}
		}
		PQfreemem(n);
	}
	if (nb)
		changed_flush(app, nb);
	if (reload && search_load(app) < 0)
		st->search_retry = SEARCH_RETRY_TICKS;
}

static void on_notify_readable(evutil_socket_t fd, short what, void *arg)
{
	struct app *app = arg;
	struct aura_id_state *st = app->aura_id;
	if (!PQconsumeInput(app->maint_db->conn)) {
		log_warn("aura_id", "change notifications lost: %s", PQerrorMessage(app->maint_db->conn));
		event_free(st->notify_ev);
		st->notify_ev = NULL;
		st->notify_fd = -1;
		aura_search_invalidate(st->search);
		aura_id_cache_forget_all(app);
		return;
	}
	drain_notifies(app);
}

/* (Re)subscribe when the maintenance connection is new or was reset. */
static void ensure_listening(struct app *app)
{
	struct aura_id_state *st = app->aura_id;
	struct db *db = app->maint_db;
	if (!db || !db->conn)
		return;
	int fd = PQsocket(db->conn);
	if (st->notify_ev && fd == st->notify_fd && PQstatus(db->conn) == CONNECTION_OK)
		return;
	if (st->notify_ev) {
		event_free(st->notify_ev);
		st->notify_ev = NULL;
	}
	struct al_error err = {0};
	PGresult *r = db_exec(db, &err, "LISTEN " NOTIFY_CHANNEL, 0, NULL);
	if (!r)
		return;
	PQclear(r);
	st->notify_fd = PQsocket(db->conn);
	st->notify_ev = event_new(app->main_base, st->notify_fd, EV_READ | EV_PERSIST,
				  on_notify_readable, app);
	if (st->notify_ev)
		event_add(st->notify_ev, NULL);
	/* whatever changed while we were not listening */
	aura_search_invalidate(st->search);
	aura_id_cache_forget_all(app);
	st->search_retry = search_load(app) < 0 ? SEARCH_RETRY_TICKS : 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct app *app = arg;
	struct aura_id_state *st = app->aura_id;
	ensure_listening(app);
	if (!st->preloaded && st->notify_ev) {
		st->preloaded = true;
		cache_preload(app);
	}
	if (st->notify_ev && !aura_search_ready(st->search) && --st->search_retry <= 0)
		st->search_retry = search_load(app) < 0 ? SEARCH_RETRY_TICKS : 0;
	if (app->maint_db && app->maint_db->conn) {
		/* other modules' queries on this connection may have read
		 * notifications into libpq's queue */
		PQconsumeInput(app->maint_db->conn);
		drain_notifies(app);
	}
	if (++st->ticks >= FLUSH_EVERY_TICKS) {
		st->ticks = 0;
		aura_id_flush_touches(app);
	}
}

/* ---- lifecycle ---- */

int aura_id_start(struct app *app)
{
	struct aura_id_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -1;
	st->slots = calloc((size_t)CACHE_SETS * CACHE_WAYS, sizeof(*st->slots));
	st->touched = calloc(TOUCH_MAX_PENDING, AURA_ID_MAX);
	st->changed = calloc(NOTIFY_BATCH, AURA_ID_MAX);
	st->search = aura_search_new();
	if (!st->slots || !st->touched || !st->changed || !st->search) {
		free(st->slots);
		free(st->touched);
		free(st->changed);
		aura_search_free(st->search);
		free(st);
		return -1;
	}
	for (unsigned i = 0; i < CACHE_STRIPES; i++)
		pthread_rwlock_init(&st->locks[i], NULL);
	pthread_mutex_init(&st->touch_lock, NULL);
	crypto_shorthash_keygen(st->hash_key);
	atomic_init(&st->generation, 0);
	st->verifier = verifier_from_config(&app->cfg);
	st->notify_fd = -1;
	app->aura_id = st;
	if (app->main_base) {
		ensure_listening(app);
		st->tick = event_new(app->main_base, -1, EV_PERSIST, on_tick, app);
		struct timeval tv = {TICK_MS / 1000, (TICK_MS % 1000) * 1000};
		if (!st->tick || event_add(st->tick, &tv) < 0) {
			aura_id_stop(app);
			return -1;
		}
	}
	log_info("aura_id", "started verifier=%s cache_entries=%u",
		 st->verifier ? st->verifier->name : "none", CACHE_SETS * CACHE_WAYS);
	return 0;
}

void aura_id_stop(struct app *app)
{
	struct aura_id_state *st = app->aura_id;
	if (!st)
		return;
	aura_id_flush_touches(app);
	if (st->tick)
		event_free(st->tick);
	if (st->notify_ev)
		event_free(st->notify_ev);
	for (size_t i = 0; i < (size_t)CACHE_SETS * CACHE_WAYS; i++)
		free(st->slots[i]);
	free(st->slots);
	free(st->touched);
	free(st->changed);
	aura_search_free(st->search);
	for (unsigned i = 0; i < CACHE_STRIPES; i++)
		pthread_rwlock_destroy(&st->locks[i]);
	pthread_mutex_destroy(&st->touch_lock);
	free(st);
	app->aura_id = NULL;
}

/* ---- records ---- */

static json_t *record_from(PGresult *r, int row, int col, struct al_error *err)
{
	json_t *rec = json_loads(PQgetvalue(r, row, col), 0, NULL);
	if (!rec)
		al_error_set(err, 500, "M_UNKNOWN", "cannot read the record");
	return rec;
}

static const char *bool_param(int v)
{
	return v < 0 ? NULL : v ? "true" : "false";
}

int aura_id_create(struct app *app, struct db *db, const char *user_id, const char *username,
		   const char *privacy_level, int federation_enabled, json_t **out,
		   struct al_error *err)
{
	if (!aura_id_username_valid(username))
		return al_error_set(err, 400, "M_INVALID_PARAM",
				    "username: 3-30 characters of A-Z, a-z, 0-9, '_' and '-'");
	if (aura_id_username_reserved(username))
		return al_error_set(err, 400, "ORG_AURALINK_AURA_ID_RESERVED",
				    "the name '%s' is reserved", username);
	if (privacy_level && !valid_privacy(privacy_level))
		return al_error_set(err, 400, "M_INVALID_PARAM",
				    "privacy_level: one of public, friends, private");
	char aura_id[AURA_ID_MAX];
	snprintf(aura_id, sizeof(aura_id), "@%s.aura", username);
	const char *params[] = {aura_id, username, privacy_level, bool_param(federation_enabled), user_id};
	int conflict = 0;
	*out = NULL;
	PGresult *r = NULL;
	json_t *details = NULL;
	if (db_begin(db, err) < 0)
		return -1;
	r = db_exec_unique(db, err, &conflict,
			   "INSERT INTO aura_id_registry (aura_id, user_id, username, display_name, avatar_url,"
			   " privacy_level, federation_enabled)"
			   " SELECT $1, u.user_id, $2, u.displayname, u.avatar_url, coalesce($3, 'public'),"
			   " coalesce($4::boolean, true) FROM users u WHERE u.user_id = $5"
			   " ON CONFLICT (user_id) DO NOTHING RETURNING " RECORD_JSON,
			   5, params);
	if (conflict) {
		al_error_set(err, 409, "ORG_AURALINK_AURA_ID_IN_USE", "%s is already taken", aura_id);
		goto fail;
	}
	if (!r)
		goto fail;
	if (PQntuples(r) == 0) {
		al_error_set(err, 409, "ORG_AURALINK_AURA_ID_EXISTS", "you already have an AuraID");
		goto fail;
	}
	*out = record_from(r, 0, 0, err);
	if (!*out)
		goto fail;
	details = json_pack("{s:s, s:b}", "privacy_level", privacy_level ? privacy_level : "public",
			    "federation_enabled", federation_enabled != 0);
	if (audit_append(db, "identity", "aura_id.create", user_id, aura_id, NULL, details, err) < 0 ||
	    db_commit(db, err) < 0)
		goto fail;
	json_decref(details);
	PQclear(r);
	aura_id_cache_forget(app, aura_id);
	search_apply_record(app, *out);
	log_info("aura_id", "created aura_id=%s user=%s", aura_id, user_id);
	return 0;
fail:
	if (out && *out) {
		json_decref(*out);
		*out = NULL;
	}
	json_decref(details);
	PQclear(r);
	db_rollback(db);
	return -1;
}

int aura_id_get_own(struct db *db, const char *user_id, json_t **out, struct al_error *err)
{
	const char *params[] = {user_id};
	PGresult *r = db_exec(db, err, "SELECT " RECORD_JSON " FROM aura_id_registry WHERE user_id = $1",
			      1, params);
	if (!r)
		return -1;
	int rc = 0;
	if (PQntuples(r) == 0)
		rc = al_error_set(err, 404, "ORG_AURALINK_NO_AURA_ID", "you have no AuraID");
	else if (!(*out = record_from(r, 0, 0, err)))
		rc = -1;
	PQclear(r);
	return rc;
}

int aura_id_of_user(struct db *db, const char *user_id, char *out, struct al_error *err)
{
	const char *params[] = {user_id};
	PGresult *r = db_exec(db, err, "SELECT aura_id FROM aura_id_registry WHERE user_id = $1", 1, params);
	if (!r)
		return -1;
	int rc = 0;
	if (PQntuples(r) == 0)
		rc = al_error_set(err, 404, "ORG_AURALINK_NO_AURA_ID",
				  "you have no AuraID: create one first");
	else
		snprintf(out, AURA_ID_MAX, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return rc;
}

int aura_id_available(struct db *db, const char *username, bool *available, struct al_error *err)
{
	if (!aura_id_username_valid(username))
		return al_error_set(err, 400, "M_INVALID_PARAM",
				    "username: 3-30 characters of A-Z, a-z, 0-9, '_' and '-'");
	if (aura_id_username_reserved(username)) {
		*available = false;
		return 0;
	}
	char key[AURA_ID_MAX], lower_user[AURA_ID_USERNAME_MAX + 2];
	lower_copy(lower_user, sizeof(lower_user), username);
	snprintf(key, sizeof(key), "@%s.aura", lower_user);
	const char *params[] = {key};
	PGresult *r = db_exec(db, err, "SELECT 1 FROM aura_id_registry WHERE lower(aura_id) = $1", 1, params);
	if (!r)
		return -1;
	*available = PQntuples(r) == 0;
	PQclear(r);
	return 0;
}

/* ---- update ---- */

/* A Matrix server name: DNS name, IPv4 or [IPv6] literal, optional :port. */
static bool valid_server_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 255)
		return false;
	const char *host_end = s + n;
	const char *colon = NULL;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close == s + 1)
			return false;
		for (const char *p = s + 1; p < close; p++)
			if (!(isxdigit((unsigned char)*p) || *p == ':' || *p == '.'))
				return false;
		if (close[1] == ':')
			colon = close + 1;
		else if (close[1] != '\0')
			return false;
	} else {
		colon = strchr(s, ':');
		host_end = colon ? colon : s + n;
		if (host_end == s)
			return false;
		const char *label = s;
		for (const char *p = s; p <= host_end; p++) {
			if (p == host_end || *p == '.') {
				size_t ll = (size_t)(p - label);
				if (ll == 0 || ll > 63 || label[0] == '-' || p[-1] == '-')
					return false;
				label = p + 1;
			} else if (!(isalnum((unsigned char)*p) || *p == '-')) {
				return false;
			}
		}
	}
	if (colon) {
		const char *d = colon + 1;
		size_t dl = strlen(d);
		if (dl == 0 || dl > 5)
			return false;
		long port = 0;
		for (const char *p = d; *p; p++) {
			if (!isdigit((unsigned char)*p))
				return false;
			port = port * 10 + (*p - '0');
		}
		if (port < 1 || port > 65535)
			return false;
	}
	return true;
}

static int json_depth(const json_t *v)
{
	int max = 0;
	if (json_is_object(v)) {
		const char *k;
		json_t *c;
		json_object_foreach((json_t *)v, k, c)
		{
			int d = json_depth(c);
			if (d > max)
				max = d;
		}
		return max + 1;
	}
	if (json_is_array(v)) {
		size_t i;
		json_t *c;
		json_array_foreach(v, i, c)
		{
			int d = json_depth(c);
			if (d > max)
				max = d;
		}
		return max + 1;
	}
	return 0;
}

/* federated_domains -> text[] literal, lower-cased and de-duplicated. */
static char *domains_literal(const json_t *v, struct al_error *err)
{
	if (!json_is_array(v) || json_array_size(v) > AURA_ID_MAX_FEDERATED_DOMAINS) {
		al_error_set(err, 400, "M_INVALID_PARAM",
			     "federated_domains: an array of at most %d server names",
			     AURA_ID_MAX_FEDERATED_DOMAINS);
		return NULL;
	}
	size_t cap = json_array_size(v) * 260 + 3, off = 0;
	char *lit = malloc(cap);
	if (!lit) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	lit[off++] = '{';
	size_t i;
	json_t *d;
	json_array_foreach(v, i, d)
	{
		const char *s = json_string_value(d);
		if (!s || !valid_server_name(s)) {
			al_error_set(err, 400, "M_INVALID_PARAM",
				     "federated_domains: '%.64s' is not a server name", s ? s : "(not a string)");
			free(lit);
			return NULL;
		}
		char low[260];
		lower_copy(low, sizeof(low), s);
		bool dup = false;
		for (size_t j = 0; j < i && !dup; j++) {
			const char *o = json_string_value(json_array_get(v, j));
			dup = strcasecmp(o, s) == 0;
		}
		if (dup)
			continue;
		int w = snprintf(lit + off, cap - off, "%s\"%s\"", off > 1 ? "," : "", low);
		if (w < 0 || (size_t)w >= cap - off) {
			free(lit);
			al_error_set(err, 500, "M_UNKNOWN", "internal error");
			return NULL;
		}
		off += (size_t)w;
	}
	lit[off++] = '}';
	lit[off] = '\0';
	return lit;
}

static int bool_field(const json_t *v, const char *name, const char **out, struct al_error *err)
{
	if (!json_is_boolean(v))
		return al_error_set(err, 400, "M_INVALID_PARAM", "%s: a boolean", name);
	*out = json_is_true(v) ? "true" : "false";
	return 0;
}

int aura_id_update(struct app *app, struct db *db, const char *user_id, const json_t *changes,
		   json_t **out, struct al_error *err)
{
	/* $2 privacy_level, $3 allow_discovery, $4 allow_cross_app_calls,
	 * $5 block_unknown_callers, $6 federation_enabled, $7 federated_domains,
	 * $8 public_metadata */
	const char *p[8] = {user_id};
	char *domains = NULL, *metadata = NULL;
	json_t *details = json_object();
	json_t *changed = json_array();
	PGresult *r = NULL;
	*out = NULL;
	if (!details || !changed) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto fail;
	}
	if (!json_is_object(changes) || json_object_size(changes) == 0) {
		al_error_set(err, 400, "M_MISSING_PARAM", "nothing to update");
		goto fail;
	}
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)changes, key, v)
	{
		int rc = 0;
		if (strcmp(key, "privacy_level") == 0) {
			if (!valid_privacy(json_string_value(v)))
				rc = al_error_set(err, 400, "M_INVALID_PARAM",
						  "privacy_level: one of public, friends, private");
			p[1] = json_string_value(v);
		} else if (strcmp(key, "allow_discovery") == 0) {
			rc = bool_field(v, key, &p[2], err);
		} else if (strcmp(key, "allow_cross_app_calls") == 0) {
			rc = bool_field(v, key, &p[3], err);
		} else if (strcmp(key, "block_unknown_callers") == 0) {
			rc = bool_field(v, key, &p[4], err);
		} else if (strcmp(key, "federation_enabled") == 0) {
			rc = bool_field(v, key, &p[5], err);
		} else if (strcmp(key, "federated_domains") == 0) {
			domains = domains_literal(v, err);
			rc = domains ? 0 : -1;
			p[6] = domains;
		} else if (strcmp(key, "public_metadata") == 0) {
			size_t mlen = 0;
			if (!json_is_object(v)) {
				rc = al_error_set(err, 400, "M_INVALID_PARAM", "public_metadata: an object");
			} else if (json_depth(v) > AURA_ID_METADATA_MAX_DEPTH) {
				rc = al_error_set(err, 400, "M_INVALID_PARAM",
						  "public_metadata: nested deeper than %d levels",
						  AURA_ID_METADATA_MAX_DEPTH);
			} else if (!(metadata = cjson_encode(v, &mlen, err))) {
				rc = -1;
			} else if (mlen > AURA_ID_METADATA_MAX_BYTES) {
				rc = al_error_set(err, 400, "M_INVALID_PARAM",
						  "public_metadata: %zu bytes of canonical JSON, at most %d",
						  mlen, AURA_ID_METADATA_MAX_BYTES);
			}
			p[7] = metadata;
		} else {
			rc = al_error_set(err, 400, "M_INVALID_PARAM", "unknown or read-only field '%.64s'", key);
		}
		if (rc < 0)
			goto fail;
		json_array_append_new(changed, json_string(key));
		if (strcmp(key, "public_metadata") != 0)
			json_object_set(details, key, v);
	}
	json_object_set(details, "changed", changed);
	if (db_begin(db, err) < 0)
		goto fail;
	r = db_exec(db, err,
		    "UPDATE aura_id_registry SET privacy_level = coalesce($2, privacy_level),"
		    " allow_discovery = coalesce($3::boolean, allow_discovery),"
		    " allow_cross_app_calls = coalesce($4::boolean, allow_cross_app_calls),"
		    " block_unknown_callers = coalesce($5::boolean, block_unknown_callers),"
		    " federation_enabled = coalesce($6::boolean, federation_enabled),"
		    " federated_domains = coalesce($7::text[], federated_domains),"
		    " public_metadata = coalesce($8::jsonb, public_metadata)"
		    " WHERE user_id = $1 RETURNING aura_id, " RECORD_JSON,
		    8, p);
	if (!r)
		goto fail;
	if (PQntuples(r) == 0) {
		al_error_set(err, 404, "ORG_AURALINK_NO_AURA_ID", "you have no AuraID");
		goto fail;
	}
	char aura_id[AURA_ID_MAX];
	snprintf(aura_id, sizeof(aura_id), "%s", PQgetvalue(r, 0, 0));
	if (!(*out = record_from(r, 0, 1, err)))
		goto fail;
	if (audit_append(db, "identity", "aura_id.update_settings", user_id, aura_id, NULL, details,
			 err) < 0 ||
	    db_commit(db, err) < 0)
		goto fail;
	aura_id_cache_forget(app, aura_id);
	search_apply_record(app, *out);
	PQclear(r);
	free(domains);
	free(metadata);
	json_decref(details);
	json_decref(changed);
	return 0;
fail:
	db_rollback(db);
	PQclear(r);
	free(domains);
	free(metadata);
	json_decref(details);
	json_decref(changed);
	json_decref(*out);
	*out = NULL;
	return -1;
}

/* ---- search ---- */

/* Well-formed UTF-8 without control characters; *chars: code points. */
static bool valid_text(const char *s, size_t *chars)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = 0;
	while (*p) {
		unsigned c = *p;
		int extra;
		if (c < 0x20 || c == 0x7f)
			return false;
		if (c < 0x80)
			extra = 0;
		else if ((c & 0xe0) == 0xc0 && c >= 0xc2)
			extra = 1;
		else if ((c & 0xf0) == 0xe0)
			extra = 2;
		else if ((c & 0xf8) == 0xf0 && c <= 0xf4)
			extra = 3;
		else
			return false;
		for (int i = 1; i <= extra; i++)
			if ((p[i] & 0xc0) != 0x80)
				return false;
		p += extra + 1;
		n++;
	}
	*chars = n;
	return true;
}

int aura_id_search(struct app *app, struct db *db, const char *q, int limit, json_t **out,
		   struct al_error *err)
{
	size_t chars = 0;
	if (!q || !valid_text(q, &chars) || chars < 1 || chars > AURA_ID_SEARCH_MAX_QUERY)
		return al_error_set(err, 400, "M_INVALID_PARAM", "q: 1-%d characters of text",
				    AURA_ID_SEARCH_MAX_QUERY);
	if (limit < 1 || limit > AURA_ID_SEARCH_MAX_LIMIT)
		return al_error_set(err, 400, "M_INVALID_PARAM", "limit: 1-%d", AURA_ID_SEARCH_MAX_LIMIT);
	/* "@alice.aura" searches for "alice" */
	char term[AURA_ID_SEARCH_MAX_QUERY * 4 + 1];
	snprintf(term, sizeof(term), "%s", q[0] == '@' ? q + 1 : q);
	size_t tl = strlen(term);
	if (tl > 5 && strcasecmp(term + tl - 5, ".aura") == 0)
		term[tl - 5] = '\0';
	if (!term[0])
		return al_error_set(err, 400, "M_INVALID_PARAM", "q: 1-%d characters of text",
				    AURA_ID_SEARCH_MAX_QUERY);
	/* The index, unless it is not (yet, or no longer) current, or the term
	 * has non-ASCII bytes and the database's lower() folds those (the
	 * index folds ASCII only): then PostgreSQL, the same tiers in SQL. */
	struct aura_id_state *st = app->aura_id;
	bool ascii = true;
	for (const char *s = term; *s && ascii; s++)
		ascii = (unsigned char)*s < 0x80;
	if (st && st->search && (ascii || !atomic_load(&st->db_folds_unicode))) {
		int rc = aura_search_query(st->search, term, limit, out);
		if (rc == 0)
			return 0;
		if (rc < 0)
			return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	}
	/* LIKE pattern body with \ % _ escaped */
	char esc[sizeof(term) * 2];
	size_t o = 0;
	for (const char *s = term; *s && o + 2 < sizeof(esc); s++) {
		if (*s == '\\' || *s == '%' || *s == '_')
			esc[o++] = '\\';
		esc[o++] = *s;
	}
	esc[o] = '\0';
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", limit);
	const char *params[] = {term, esc, lim};
	/* One statement, three tiers (exact, prefix, substring), each ordered
	 * and limited on its own; the outer LIMIT stops the Append as soon as
	 * the earlier tiers filled it, so the substring tier (trigram index or
	 * scan) only runs when exact and prefix matches are too few. Patterns
	 * are built from the parameters in SQL so the planner sees constants
	 * (unnamed statements are planned with their values) and uses the
	 * partial indexes of 001/003. */
#define DISCOVERABLE " r.allow_discovery AND r.privacy_level <> 'private' AND r.status = 'active'"
#define TIER_COLUMNS " lower(r.username), r.aura_id, r.user_id, r.display_name, r.avatar_url, r.is_verified"
#define EXACT "(lower(r.username) = lower($1) OR lower(r.display_name) = lower($1))"
#define PREFIX \
	"(lower(r.username) LIKE (lower($2) || '%') OR lower(r.display_name) LIKE (lower($2) || '%'))"
#define TIER_END " ORDER BY lower(r.username), r.username LIMIT $3::integer)"
	PGresult *r = db_exec(
		db, err,
		"SELECT rank, aura_id, user_id, display_name, avatar_url, is_verified FROM ("
		"(SELECT 0 AS rank," TIER_COLUMNS " FROM aura_id_registry r WHERE" DISCOVERABLE
		" AND " EXACT TIER_END
		" UNION ALL (SELECT 1," TIER_COLUMNS " FROM aura_id_registry r WHERE" DISCOVERABLE
		" AND " PREFIX " AND NOT coalesce(" EXACT ", false)" TIER_END
		" UNION ALL (SELECT 2," TIER_COLUMNS " FROM aura_id_registry r WHERE" DISCOVERABLE
		" AND r.search_text LIKE ('%' || lower($2) || '%') AND NOT coalesce(" PREFIX ", false)"
		TIER_END ") AS t LIMIT $3::integer",
		3, params);
#undef DISCOVERABLE
#undef TIER_COLUMNS
#undef EXACT
#undef PREFIX
#undef TIER_END
	if (!r)
		return -1;
	json_t *results = json_array();
	/* rows arrive tier by tier; keep that order even if a plan mixed them */
	for (int rank = 0; rank < 3; rank++)
		for (int i = 0; results && i < PQntuples(r); i++) {
			if (atoi(PQgetvalue(r, i, 0)) != rank)
				continue;
			json_array_append_new(
				results,
				json_pack("{s:s, s:s, s:o, s:o, s:b}", "aura_id", PQgetvalue(r, i, 1),
					  "user_id", PQgetvalue(r, i, 2), "display_name",
					  PQgetisnull(r, i, 3) ? json_null() : json_string(PQgetvalue(r, i, 3)),
					  "avatar_url",
					  PQgetisnull(r, i, 4) ? json_null() : json_string(PQgetvalue(r, i, 4)),
					  "is_verified", PQgetvalue(r, i, 5)[0] == 't'));
		}
	PQclear(r);
	if (!results)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	*out = results;
	return 0;
}

/* ---- verification ---- */

static void code_hash_hex(const char *aura_id, const char *method, const char *code, char hex[65])
{
	unsigned char h[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_state s;
	crypto_hash_sha256_init(&s);
	crypto_hash_sha256_update(&s, (const unsigned char *)aura_id, strlen(aura_id));
	crypto_hash_sha256_update(&s, (const unsigned char *)"\n", 1);
	crypto_hash_sha256_update(&s, (const unsigned char *)method, strlen(method));
	crypto_hash_sha256_update(&s, (const unsigned char *)"\n", 1);
	crypto_hash_sha256_update(&s, (const unsigned char *)code, strlen(code));
	crypto_hash_sha256_final(&s, h);
	sodium_bin2hex(hex, 65, h, sizeof(h));
}

int aura_id_verify_request(struct app *app, struct db *db, const char *user_id, const char *method,
			   json_t **out, struct al_error *err)
{
	struct aura_id_state *st = app->aura_id;
	if (!valid_method(method))
		return al_error_set(err, 400, "M_INVALID_PARAM", "method: one of phone, email, kyc");
	if (!st || !st->verifier)
		return al_error_set(err, 501, "ORG_AURALINK_VERIFIER_UNAVAILABLE",
				    "no verifier is configured on this server");
	char aura_id[AURA_ID_MAX];
	if (aura_id_of_user(db, user_id, aura_id, err) < 0)
		return -1;
	char code[8], hex[65], bytea[68];
	snprintf(code, sizeof(code), "%06u", (unsigned)randombytes_uniform(1000000));
	code_hash_hex(aura_id, method, code, hex);
	snprintf(bytea, sizeof(bytea), "\\x%s", hex);
	char ttl[16];
	snprintf(ttl, sizeof(ttl), "%d", AURA_ID_VERIFY_TTL_SECONDS);
	const char *params[] = {aura_id, method, bytea, ttl};
	PGresult *r = db_exec(db, err,
			      "INSERT INTO aura_id_verifications (aura_id, method, code_hash, expires_at)"
			      " VALUES ($1, $2, $3::bytea, now() + make_interval(secs => $4::integer))"
			      " ON CONFLICT (aura_id, method) DO UPDATE SET code_hash = EXCLUDED.code_hash,"
			      " expires_at = EXCLUDED.expires_at, attempts = 0, created_at = now()",
			      4, params);
	sodium_memzero(hex, sizeof(hex));
	sodium_memzero(bytea, sizeof(bytea));
	if (!r)
		return -1;
	PQclear(r);
	int rc = st->verifier->send_code(st->verifier, aura_id, method, code, err);
	sodium_memzero(code, sizeof(code));
	if (rc < 0)
		return -1;
	*out = json_pack("{s:s, s:s, s:I}", "status", "code_sent", "method", method, "expires_in_ms",
			 (json_int_t)AURA_ID_VERIFY_TTL_SECONDS * 1000);
	return *out ? 0 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
}

int aura_id_verify_confirm(struct app *app, struct db *db, const char *user_id, const char *method,
			   const char *code, json_t **out, struct al_error *err)
{
	if (!valid_method(method))
		return al_error_set(err, 400, "M_INVALID_PARAM", "method: one of phone, email, kyc");
	if (!code || !code[0] || strlen(code) > 32)
		return al_error_set(err, 400, "M_INVALID_PARAM", "code: 1-32 characters");
	PGresult *r = NULL, *u = NULL;
	json_t *details = NULL;
	*out = NULL;
	bool commit_failure = false;
	if (db_begin(db, err) < 0)
		return -1;
	const char *params[] = {user_id, method};
	r = db_exec(db, err,
		    "SELECT v.aura_id, encode(v.code_hash, 'hex'), v.attempts, v.expires_at > now()"
		    " FROM aura_id_verifications v JOIN aura_id_registry a ON a.aura_id = v.aura_id"
		    " WHERE a.user_id = $1 AND v.method = $2 FOR UPDATE OF v",
		    2, params);
	if (!r)
		goto fail;
	if (PQntuples(r) == 0) {
		al_error_set(err, 400, "ORG_AURALINK_VERIFICATION_NOT_STARTED",
			     "no pending %s verification: request a code first", method);
		goto fail;
	}
	char aura_id[AURA_ID_MAX];
	snprintf(aura_id, sizeof(aura_id), "%s", PQgetvalue(r, 0, 0));
	int attempts = atoi(PQgetvalue(r, 0, 2));
	const char *vp[] = {aura_id, method};
	if (PQgetvalue(r, 0, 3)[0] != 't') {
		u = db_exec(db, err, "DELETE FROM aura_id_verifications WHERE aura_id = $1 AND method = $2",
			    2, vp);
		if (!u || db_commit(db, err) < 0)
			goto fail;
		al_error_set(err, 400, "ORG_AURALINK_VERIFICATION_EXPIRED",
			     "the code expired: request a new one");
		commit_failure = true;
		goto fail;
	}
	if (attempts >= AURA_ID_VERIFY_MAX_ATTEMPTS) {
		al_error_set(err, 403, "ORG_AURALINK_VERIFICATION_LOCKED",
			     "too many wrong codes: request a new one");
		goto fail;
	}
	char want[65], got[65];
	snprintf(want, sizeof(want), "%s", PQgetvalue(r, 0, 1));
	code_hash_hex(aura_id, method, code, got);
	bool match = strlen(want) == 64 && sodium_memcmp(want, got, 64) == 0;
	sodium_memzero(got, sizeof(got));
	if (!match) {
		u = db_exec(db, err,
			    "UPDATE aura_id_verifications SET attempts = attempts + 1"
			    " WHERE aura_id = $1 AND method = $2",
			    2, vp);
		if (!u || db_commit(db, err) < 0)
			goto fail;
		al_error_set(err, 400, "ORG_AURALINK_INVALID_CODE", "wrong code: %d attempt(s) left",
			     AURA_ID_VERIFY_MAX_ATTEMPTS - attempts - 1);
		commit_failure = true;
		goto fail;
	}
	u = db_exec(db, err,
		    "WITH d AS (DELETE FROM aura_id_verifications WHERE aura_id = $1 AND method = $2)"
		    " UPDATE aura_id_registry SET is_verified = true, verification_method = $2,"
		    " verified_at = now() WHERE aura_id = $1 RETURNING " RECORD_JSON,
		    2, vp);
	if (!u || PQntuples(u) != 1)
		goto fail;
	if (!(*out = record_from(u, 0, 0, err)))
		goto fail;
	details = json_pack("{s:s}", "method", method);
	if (audit_append(db, "identity", "aura_id.verify", user_id, aura_id, NULL, details, err) < 0 ||
	    db_commit(db, err) < 0)
		goto fail;
	json_decref(details);
	PQclear(r);
	PQclear(u);
	aura_id_cache_forget(app, aura_id);
	search_apply_record(app, *out);
	log_info("aura_id", "verified aura_id=%s method=%s", aura_id, method);
	return 0;
fail:
	if (!commit_failure)
		db_rollback(db);
	json_decref(details);
	json_decref(*out);
	*out = NULL;
	PQclear(r);
	PQclear(u);
	if (!err->errcode[0])
		al_error_set(err, 500, "M_UNKNOWN", "internal error");
	return -1;
}
