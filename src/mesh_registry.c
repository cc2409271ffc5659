/* mesh_registry.c - the mesh nodes in memory.
 *
 * Nodes live in a slot array (stable indices, freed slots reused), indexed
 * by node_id (open addressing on the uuid's first 8 bytes) and by AuraID
 * (open addressing on a string hash, each entry the head of a chain of that
 * AuraID's nodes). Relay-capable nodes (relay, edge, super_node) are also in
 * a list; eligibility (online, trusted, below 80 % load, media, AIC) is
 * checked when a find builds the list of eligible relays of its media type
 * and AIC rule, which the next finds reuse until the registry changes (a
 * write, or a relay's heartbeat) or one of its relays leaves the online
 * window (eligible_relays).
 * Each node carries a serial (the model's key) and an epoch that is bumped
 * whenever it goes offline, loses trust or is removed: a cached route
 * remembers the epochs of its nodes and is dropped when one changed.
 * Memory per node: the struct below (~300 bytes), its three small strings,
 * and about 50 bytes of index (mesh_registry_memory_bytes counts it); per
 * relay up to 8 pointers more in the lists of eligible relays that finds
 * share (one per media type and AIC rule, see eligible_relays).
 */
#include "mesh_registry.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

struct mesh_node {
	struct mesh_rnode r; /* the search's view; r.m.key = serial */
	char node_id[37];
	char aura_id[48]; /* local AuraIDs are at most 36 bytes; longer ones live in aura_long */
	char *aura_long;
	char *user_id;
	char *address;
	char *region;
	char country_code[3];
	uint8_t type;
	uint8_t trust;
	bool supports_video, supports_audio, supports_screen_share;
	bool accepting, online, dirty, has_position, remote;
	int32_t port;
	int32_t max_connections, current_connections;
	int32_t total_routes, successful_routes;
	int32_t next_same_aura; /* slot, -1 = end */
	float bw_capacity, bw_used, avg_latency, loss;
	float latitude, longitude;
	float uptime_pct;
	int64_t last_hb_ms, created_ms;
	int64_t remote_until_ms; /* remote nodes: usable until then (their TTL) */
};

/* The relays eligible for one media type and AIC rule, kept between finds
 * (see eligible_relays): valid while gen is the registry's and now <
 * valid_until_ms (when the first of them falls out of the online window).
 * A find that read the clock a moment before the list was built (another
 * thread's find) uses it too: it misses the relays whose window ended in
 * that moment. acc_min: their least access delay. */
struct relay_list {
	const struct mesh_rnode **v;
	size_t n, cap;
	double acc_min;
	int64_t valid_until_ms;
	uint64_t gen;
	bool ok;
};

struct idx {
	uint64_t *h; /* 0 = empty */
	int32_t *v;
	size_t cap, count;
};

struct mesh_registry {
	pthread_rwlock_t lock;
	struct mesh_node **slots;
	size_t nslots, cap;
	int32_t *free_slots;
	size_t nfree;
	struct idx by_id, by_aura;
	int32_t *relays;
	size_t nrelays, relays_cap;
	int32_t *dirty;
	size_t ndirty, dirty_cap;
	int32_t *serial_slot; /* serial -> slot, -1 when gone */
	uint32_t nserials, serials_cap;
	struct mesh_model *model;
	uint32_t prior_version; /* mesh_model_prior_version applied to the nodes */
	struct mesh_rep_queue *events;
	struct mesh_route_cache *cache;
	int64_t window_ms, hb_min_ms;
	size_t online;
	/* bumped by every change that may touch a relay (wrlock, and
	 * heartbeats of relay-capable nodes): the relay lists below follow */
	uint64_t gen;
	pthread_mutex_t relay_mu;            /* relay_lists */
	struct relay_list relay_lists[4][2]; /* by media, require_aic */
};

static const char *const type_names[] = {"peer", "relay", "edge", "super_node"};
const char *mesh_node_type_name(int t)
{
	return (unsigned)t < 4 ? type_names[t] : "peer";
}
int mesh_node_type_parse(const char *s)
{
	for (int i = 0; s && i < 4; i++)
		if (!strcmp(s, type_names[i]))
			return i;
	return -1;
}

static const char *const media_names[] = {"audio", "video", "screen_share", "data"};
int mesh_media_parse(const char *s)
{
	for (int i = 0; s && i < 4; i++)
		if (!strcmp(s, media_names[i]))
			return i;
	return -1;
}
const char *mesh_media_name(int m)
{
	return (unsigned)m < 4 ? media_names[m] : "audio";
}

/* ---- index ---- */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h ? h : 1;
}

static uint64_t hash_uuid(const char *id)
{
	/* the uuid text is random enough; hash it the same way */
	return hash_str(id);
}

typedef bool (*idx_match)(struct mesh_registry *r, int32_t slot, const char *key);

static int idx_grow(struct idx *x)
{
	size_t ncap = x->cap ? x->cap * 2 : 1024;
	uint64_t *h = calloc(ncap, sizeof(*h));
	int32_t *v = malloc(ncap * sizeof(*v));
	if (!h || !v) {
		free(h);
		free(v);
		return -1;
	}
	for (size_t i = 0; i < x->cap; i++) {
		if (!x->h[i])
			continue;
		size_t j = x->h[i] & (ncap - 1);
		while (h[j])
			j = (j + 1) & (ncap - 1);
		h[j] = x->h[i];
		v[j] = x->v[i];
	}
	free(x->h);
	free(x->v);
	x->h = h;
	x->v = v;
	x->cap = ncap;
	return 0;
}

/* Position of key in the index, or -1. */
static long idx_find(struct mesh_registry *r, struct idx *x, uint64_t h, const char *key, idx_match m)
{
	if (!x->count)
		return -1;
	for (size_t i = h & (x->cap - 1);; i = (i + 1) & (x->cap - 1)) {
		if (!x->h[i])
			return -1;
		if (x->h[i] == h && m(r, x->v[i], key))
			return (long)i;
	}
}

static int idx_put(struct idx *x, uint64_t h, int32_t v)
{
	if ((x->count + 1) * 2 > x->cap && idx_grow(x) < 0)
		return -1;
	size_t i = h & (x->cap - 1);
	while (x->h[i])
		i = (i + 1) & (x->cap - 1);
	x->h[i] = h;
	x->v[i] = v;
	x->count++;
	return 0;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void idx_del_at(struct idx *x, size_t i)
{
	size_t mask = x->cap - 1;
	x->h[i] = 0;
	x->count--;
	for (size_t j = (i + 1) & mask; x->h[j]; j = (j + 1) & mask) {
		size_t home = x->h[j] & mask;
		/* move j to i when its home is not in (i, j] cyclically */
		bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!between) {
			x->h[i] = x->h[j];
			x->v[i] = x->v[j];
			x->h[j] = 0;
			i = j;
		}
	}
}

static const char *node_aura(const struct mesh_node *n)
{
	return n->aura_long ? n->aura_long : n->aura_id;
}

static bool match_id(struct mesh_registry *r, int32_t slot, const char *key)
{
	return !strcmp(r->slots[slot]->node_id, key);
}

static bool match_aura(struct mesh_registry *r, int32_t slot, const char *key)
{
	return !strcmp(node_aura(r->slots[slot]), key);
}

static struct mesh_node *by_id(struct mesh_registry *r, const char *node_id, int32_t *slot)
{
	long i = idx_find(r, &r->by_id, hash_uuid(node_id), node_id, match_id);
	if (i < 0)
		return NULL;
	if (slot)
		*slot = r->by_id.v[i];
	return r->slots[r->by_id.v[i]];
}

static int32_t aura_head(struct mesh_registry *r, const char *aura)
{
	long i = idx_find(r, &r->by_aura, hash_str(aura), aura, match_aura);
	return i < 0 ? -1 : r->by_aura.v[i];
}

/* ---- life cycle ---- */

struct mesh_registry *mesh_registry_new(int64_t online_window_ms, int64_t heartbeat_min_interval_ms)
{
	struct mesh_registry *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	pthread_rwlock_init(&r->lock, NULL);
	pthread_mutex_init(&r->relay_mu, NULL);
	r->window_ms = online_window_ms;
	r->hb_min_ms = heartbeat_min_interval_ms;
	r->model = mesh_model_new();
	r->events = mesh_rep_queue_new();
	r->cache = mesh_route_cache_new(4096);
	if (!r->model || !r->events || !r->cache) {
		mesh_registry_free(r);
		return NULL;
	}
	return r;
}

static void node_free(struct mesh_node *n)
{
	if (!n)
		return;
	free(n->aura_long);
	free(n->user_id);
	free(n->address);
	free(n->region);
	free(n);
}

void mesh_registry_free(struct mesh_registry *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nslots; i++)
		node_free(r->slots[i]);
	free(r->slots);
	free(r->free_slots);
	free(r->by_id.h);
	free(r->by_id.v);
	free(r->by_aura.h);
	free(r->by_aura.v);
	free(r->relays);
	free(r->dirty);
	free(r->serial_slot);
	mesh_model_free(r->model);
	mesh_rep_queue_free(r->events);
	mesh_route_cache_free(r->cache);
	for (int m = 0; m < 4; m++)
		for (int a = 0; a < 2; a++)
			free(r->relay_lists[m][a].v);
	pthread_mutex_destroy(&r->relay_mu);
	pthread_rwlock_destroy(&r->lock);
	free(r);
}

/* The write lock; whatever it guards may change a relay's eligibility or
 * access delay, so the relay lists are rebuilt after it. */
static void wrlock(struct mesh_registry *r)
{
	pthread_rwlock_wrlock(&r->lock);
	r->gen++;
}

static int push_i32(int32_t **arr, size_t *len, size_t *cap, int32_t v)
{
	if (*len == *cap) {
		size_t ncap = *cap ? *cap * 2 : 256;
		int32_t *n = realloc(*arr, ncap * sizeof(*n));
		if (!n)
			return -1;
		*arr = n;
		*cap = ncap;
	}
	(*arr)[(*len)++] = v;
	return 0;
}

static void mark_dirty(struct mesh_registry *r, struct mesh_node *n, int32_t slot)
{
	if (n->dirty || n->remote)
		return;
	if (push_i32(&r->dirty, &r->ndirty, &r->dirty_cap, slot) == 0)
		n->dirty = true;
}

static bool relay_capable(int type)
{
	return type == MESH_RELAY || type == MESH_EDGE || type == MESH_SUPER_NODE;
}

/* Online right now: the flag alone lags up to a sweep interval behind, so
 * the heartbeat's age is checked too (remote nodes: their TTL). Every
 * reader that serves or routes through a node asks this. */
static bool node_live(const struct mesh_registry *r, const struct mesh_node *n, int64_t now_ms)
{
	if (!n->online)
		return false;
	if (n->remote)
		return now_ms < n->remote_until_ms;
	return now_ms - n->last_hb_ms < r->window_ms;
}

static void refresh_search_view(struct mesh_node *n)
{
	double avail = (double)n->bw_capacity - n->bw_used;
	n->r.bw_avail_mbps = (float)(avail > 0 ? avail : 0);
	n->r.uptime = n->uptime_pct;
}

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

/* The record's fields into n (strings replaced). Keeps what the registry
 * owns: serial, epoch, the AuraID chain and the learned access delay's
 * variance. -1 when out of memory (n keeps its old strings then). */
static int fill_node(struct mesh_node *n, const struct mesh_node_info *in)
{
	char *user_id = strdup(in->user_id);
	char *address = dup_or_null(in->address);
	char *region = dup_or_null(in->region);
	if (!user_id || (in->address[0] && !address) || (in->region[0] && !region)) {
		free(user_id);
		free(address);
		free(region);
		return -1;
	}
	free(n->user_id);
	free(n->address);
	free(n->region);
	n->user_id = user_id;
	n->address = address;
	n->region = region;
	snprintf(n->country_code, sizeof(n->country_code), "%s", in->country_code);
	n->type = (uint8_t)in->type;
	n->r.m.cls = relay_capable(n->type) ? MESH_CLASS_INFRA : MESH_CLASS_DEVICE;
	n->port = in->port;
	n->max_connections = in->max_connections;
	n->current_connections = in->current_connections;
	n->bw_capacity = (float)in->bandwidth_capacity_mbps;
	n->bw_used = (float)in->bandwidth_used_mbps;
	n->avg_latency = (float)in->avg_latency_ms;
	n->loss = (float)in->packet_loss_rate;
	n->has_position = in->has_position;
	n->latitude = (float)in->latitude;
	n->longitude = (float)in->longitude;
	n->supports_video = in->supports_video;
	n->supports_audio = in->supports_audio;
	n->supports_screen_share = in->supports_screen_share;
	n->r.aic = in->supports_aic;
	n->accepting = in->accepting_connections;
	n->last_hb_ms = in->last_heartbeat_ms;
	n->created_ms = in->created_ms;
	n->r.reputation = (float)in->reputation_score;
	n->trust = (uint8_t)mesh_reputation_tier(in->reputation_score);
	n->uptime_pct = (float)in->uptime_percentage;
	n->total_routes = in->total_routes;
	n->successful_routes = in->successful_routes;
	/* no position: the model has no floor for it; place it at 0,0 and let
	 * the access delay learn (documented limitation) */
	mesh_mnode_set_position(&n->r.m, in->has_position ? in->latitude : 0, in->has_position ? in->longitude : 0);
	refresh_search_view(n);
	return 0;
}

/* Add under the write lock; *out the node. -1 when known or out of memory. */
static int add_locked(struct mesh_registry *r, const struct mesh_node_info *in, int64_t now_ms, bool remote,
		      struct mesh_node **out)
{
	struct mesh_node *n = calloc(1, sizeof(*n));
	if (!n)
		return -1;
	if (by_id(r, in->node_id, NULL))
		goto fail;
	snprintf(n->node_id, sizeof(n->node_id), "%s", in->node_id);
	size_t alen = strnlen(in->aura_id, sizeof(in->aura_id) - 1);
	if (alen < sizeof(n->aura_id))
		memcpy(n->aura_id, in->aura_id, alen + 1);
	else if (!(n->aura_long = strdup(in->aura_id)))
		goto fail;
	if (fill_node(n, in) < 0)
		goto fail;
	n->remote = remote;
	n->online = in->is_online && (remote || now_ms - in->last_heartbeat_ms < r->window_ms);
	n->r.m.acc_ms = (float)(in->access_delay_ms > 0 ? in->access_delay_ms : MESH_ACCESS_PRIOR_MS);
	/* a persisted estimate that moved off the prior was learned: trust it
	 * more than the prior (its variance itself is not persisted); an
	 * unmeasured local node starts at its class's learned mean (a remote
	 * one keeps its server's estimate) */
	n->r.m.acc_var = !remote && in->access_delay_ms > 0 && in->access_delay_ms != MESH_ACCESS_PRIOR_MS ? 25.0f
													   : 0.0f;
	n->r.m.src = n->r.m.acc_var > 0 ? MESH_ACC_MEASURED : MESH_ACC_PRIOR;
	if (!remote)
		mesh_model_apply_prior(r->model, &n->r.m);

	int32_t slot;
	if (r->nfree) {
		slot = r->free_slots[--r->nfree];
	} else {
		if (r->nslots == r->cap) {
			size_t ncap = r->cap ? r->cap * 2 : 1024;
			struct mesh_node **s = realloc(r->slots, ncap * sizeof(*s));
			if (!s)
				goto fail;
			r->slots = s;
			r->cap = ncap;
		}
		slot = (int32_t)r->nslots++;
	}
	if (r->nserials == r->serials_cap) {
		uint32_t ncap = r->serials_cap ? r->serials_cap * 2 : 1024;
		int32_t *s = realloc(r->serial_slot, ncap * sizeof(*s));
		if (!s)
			goto fail_slot;
		r->serial_slot = s;
		r->serials_cap = ncap;
	}
	n->r.m.key = ++r->nserials; /* serials start at 1; index serial-1 */
	r->serial_slot[n->r.m.key - 1] = slot;
	r->slots[slot] = n;
	if (idx_put(&r->by_id, hash_uuid(n->node_id), slot) < 0)
		goto fail_slot;
	int32_t head = aura_head(r, node_aura(n));
	if (head >= 0) {
		/* insert after the head so the index entry stays valid */
		n->next_same_aura = r->slots[head]->next_same_aura;
		r->slots[head]->next_same_aura = slot;
	} else {
		n->next_same_aura = -1;
		if (idx_put(&r->by_aura, hash_str(node_aura(n)), slot) < 0) {
			long i = idx_find(r, &r->by_id, hash_uuid(n->node_id), n->node_id, match_id);
			if (i >= 0)
				idx_del_at(&r->by_id, (size_t)i);
			goto fail_slot;
		}
	}
	/* remote nodes are endpoints of their AuraID only, never relays */
	if (relay_capable(n->type) && !remote)
		push_i32(&r->relays, &r->nrelays, &r->relays_cap, slot);
	if (n->online)
		r->online++;
	if (out)
		*out = n;
	return 0;
fail_slot:
	r->slots[slot] = NULL;
	if (r->nserials && r->serial_slot[r->nserials - 1] == slot && n->r.m.key == r->nserials)
		r->serial_slot[r->nserials - 1] = -1;
	r->free_slots = realloc(r->free_slots, (r->nfree + 1) * sizeof(int32_t));
	if (r->free_slots)
		r->free_slots[r->nfree++] = slot;
fail:
	node_free(n);
	return -1;
}

int mesh_registry_add(struct mesh_registry *r, const struct mesh_node_info *in, int64_t now_ms)
{
	wrlock(r);
	int rc = add_locked(r, in, now_ms, false, NULL);
	pthread_rwlock_unlock(&r->lock);
	return rc;
}

/* Remove under the write lock; -1 when unknown. */
static int remove_locked(struct mesh_registry *r, const char *node_id)
{
	long i = idx_find(r, &r->by_id, hash_uuid(node_id), node_id, match_id);
	if (i < 0)
		return -1;
	int32_t slot = r->by_id.v[i];
	struct mesh_node *n = r->slots[slot];
	idx_del_at(&r->by_id, (size_t)i);
	/* unlink from the AuraID chain */
	long ai = idx_find(r, &r->by_aura, hash_str(node_aura(n)), node_aura(n), match_aura);
	if (ai >= 0) {
		int32_t head = r->by_aura.v[ai];
		if (head == slot) {
			if (n->next_same_aura >= 0)
				r->by_aura.v[ai] = n->next_same_aura;
			else
				idx_del_at(&r->by_aura, (size_t)ai);
		} else {
			for (int32_t p = head; p >= 0; p = r->slots[p]->next_same_aura)
				if (r->slots[p]->next_same_aura == slot) {
					r->slots[p]->next_same_aura = n->next_same_aura;
					break;
				}
		}
	}
	for (size_t k = 0; k < r->nrelays; k++)
		if (r->relays[k] == slot) {
			r->relays[k] = r->relays[--r->nrelays];
			break;
		}
	for (size_t k = 0; k < r->ndirty; k++)
		if (r->dirty[k] == slot) {
			r->dirty[k] = r->dirty[--r->ndirty];
			break;
		}
	if (n->online)
		r->online--;
	r->serial_slot[n->r.m.key - 1] = -1;
	mesh_model_forget_node(r->model, n->r.m.key);
	r->slots[slot] = NULL;
	int32_t *fs = realloc(r->free_slots, (r->nfree + 1) * sizeof(*fs));
	if (fs) {
		r->free_slots = fs;
		r->free_slots[r->nfree++] = slot;
	}
	node_free(n);
	return 0;
}

int mesh_registry_remove(struct mesh_registry *r, const char *node_id)
{
	wrlock(r);
	int rc = remove_locked(r, node_id);
	pthread_rwlock_unlock(&r->lock);
	return rc;
}

int mesh_registry_may_register(struct mesh_registry *r, const char *aura_id, struct al_error *err)
{
	int rc = 0, count = 0;
	pthread_rwlock_rdlock(&r->lock);
	for (int32_t p = aura_head(r, aura_id); p >= 0; p = r->slots[p]->next_same_aura) {
		count++;
		if (r->slots[p]->trust == MESH_TRUST_BANNED) {
			rc = al_error_set(err, 403, "ORG_AURALINK_NODE_BANNED", "a node of this AuraID is banned");
			break;
		}
	}
	if (!rc && count >= MESH_MAX_NODES_PER_AURA)
		rc = al_error_set(err, 400, "M_LIMIT_EXCEEDED", "an AuraID may have at most %d nodes",
				  MESH_MAX_NODES_PER_AURA);
	pthread_rwlock_unlock(&r->lock);
	return rc;
}

int mesh_registry_owner(struct mesh_registry *r, const char *node_id, char *user_id, size_t len, char *aura_id,
			size_t alen, struct al_error *err)
{
	int rc = 0;
	pthread_rwlock_rdlock(&r->lock);
	struct mesh_node *n = by_id(r, node_id, NULL);
	if (!n || n->remote) {
		rc = al_error_set(err, 404, "M_NOT_FOUND", "no such node");
	} else {
		snprintf(user_id, len, "%s", n->user_id);
		if (aura_id)
			snprintf(aura_id, alen, "%s", node_aura(n));
	}
	pthread_rwlock_unlock(&r->lock);
	return rc;
}

static void set_offline(struct mesh_registry *r, struct mesh_node *n)
{
	if (!n->online)
		return;
	n->online = false;
	n->r.epoch++;
	r->online--;
}

/* Reputation change under the write lock. */
static void change_reputation(struct mesh_registry *r, struct mesh_node *n, int32_t slot, double change,
			      enum mesh_rep_event e, const char *description, const char *route_id, double *prev_out,
			      double *new_out)
{
	double prev = n->r.reputation;
	double now = mesh_reputation_apply(prev, change);
	uint8_t tier = (uint8_t)mesh_reputation_tier(now);
	if (tier < n->trust)
		n->r.epoch++; /* lost trust: routes through it are dropped */
	n->trust = tier;
	n->r.reputation = (float)now;
	if (prev_out)
		*prev_out = prev;
	if (new_out)
		*new_out = now;
	if (!n->remote) {
		mesh_rep_queue_push(r->events, n->node_id, e, prev, now, change, description, route_id);
		mark_dirty(r, n, slot);
	}
}

int mesh_registry_heartbeat(struct mesh_registry *r, const char *node_id, const char *user_id,
			    const struct mesh_heartbeat *hb, int64_t now_ms, int64_t *retry_after_ms,
			    struct al_error *err)
{
	int rc = 0;
	int32_t slot;
	/* pthread_rwlock_wrlock, not wrlock: a peer's beat changes no relay
	 * list (gen is bumped below for relay-capable nodes) */
	pthread_rwlock_wrlock(&r->lock);
	struct mesh_node *n = by_id(r, node_id, &slot);
	if (n && relay_capable(n->type))
		r->gen++;
	if (!n || n->remote) {
		rc = al_error_set(err, 404, "M_NOT_FOUND", "no such node");
		goto out;
	}
	if (strcmp(n->user_id, user_id)) {
		rc = al_error_set(err, 403, "M_FORBIDDEN", "the node belongs to another user");
		goto out;
	}
	if (n->trust == MESH_TRUST_BANNED) {
		rc = al_error_set(err, 403, "ORG_AURALINK_NODE_BANNED", "the node is banned");
		goto out;
	}
	/* registration counts as no beat: the first one is never limited */
	if (n->online && r->hb_min_ms > 0 && n->last_hb_ms != n->created_ms && now_ms - n->last_hb_ms < r->hb_min_ms) {
		if (retry_after_ms)
			*retry_after_ms = r->hb_min_ms - (now_ms - n->last_hb_ms);
		rc = al_error_set(err, 429, "M_LIMIT_EXCEEDED", "heartbeats of a node are limited");
		goto out;
	}
	bool was_open = n->accepting && n->current_connections < MESH_RELAY_MAX_LOAD * n->max_connections;
	if (hb->current_connections >= 0)
		n->current_connections = hb->current_connections;
	if (hb->bandwidth_used_mbps >= 0)
		n->bw_used = (float)hb->bandwidth_used_mbps;
	if (hb->avg_latency_ms >= 0) {
		n->avg_latency = (float)hb->avg_latency_ms;
		mesh_model_heartbeat(r->model, &n->r.m, hb->avg_latency_ms);
	}
	if (hb->packet_loss_rate >= 0)
		n->loss = (float)hb->packet_loss_rate;
	if (hb->accepting_connections >= 0)
		n->accepting = hb->accepting_connections != 0;
	/* uptime: exponentially weighted share of time online, fed at each
	 * beat with the time since the previous one (online if within the window) */
	if (n->last_hb_ms > 0 && now_ms > n->last_hb_ms) {
		double gap = (double)(now_ms - n->last_hb_ms);
		double up = gap <= r->window_ms ? 100.0 : 100.0 * r->window_ms / gap;
		double w = gap / (gap + 24.0 * 3600 * 1000); /* about a day's memory */
		n->uptime_pct = (float)(n->uptime_pct * (1 - w) + up * w);
	}
	/* a node that stops accepting or a relay that gets full leaves the
	 * cached routes through it */
	if (was_open && !(n->accepting && n->current_connections < MESH_RELAY_MAX_LOAD * n->max_connections))
		n->r.epoch++;
	n->last_hb_ms = now_ms;
	if (!n->online) {
		n->online = true;
		r->online++;
	}
	refresh_search_view(n);
	mark_dirty(r, n, slot);
out:
	pthread_rwlock_unlock(&r->lock);
	return rc;
}

int mesh_registry_sweep(struct mesh_registry *r, int64_t now_ms)
{
	int count = 0;
	wrlock(r);
	for (size_t i = 0; i < r->nslots; i++) {
		struct mesh_node *n = r->slots[i];
		if (n && n->remote) {
			/* remote nodes leave once their TTL passed: the next
			 * find-optimal asks their server again */
			if (now_ms >= n->remote_until_ms)
				remove_locked(r, n->node_id);
			continue;
		}
		if (!n || !n->online || now_ms - n->last_hb_ms < r->window_ms)
			continue;
		set_offline(r, n);
		if (!n->remote)
			change_reputation(r, n, (int32_t)i, MESH_REP_DELTA_MISSED_HEARTBEAT, MESH_REP_MISSED_HEARTBEAT,
					  "no heartbeat within the online window", NULL, NULL, NULL);
		mark_dirty(r, n, (int32_t)i);
		count++;
	}
	pthread_rwlock_unlock(&r->lock);
	return count;
}

int mesh_registry_reputation(struct mesh_registry *r, const char *node_id, double change, enum mesh_rep_event e,
			     const char *description, const char *route_id, double *out_prev, double *out_new,
			     struct al_error *err)
{
	int rc = 0;
	int32_t slot;
	wrlock(r);
	struct mesh_node *n = by_id(r, node_id, &slot);
	if (!n)
		rc = al_error_set(err, 404, "M_NOT_FOUND", "no such node");
	else
		change_reputation(r, n, slot, change, e, description, route_id, out_prev, out_new);
	pthread_rwlock_unlock(&r->lock);
	return rc;
}

/* ---- JSON ---- */

static void iso_time(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static json_t *node_json(const struct mesh_registry *r, const struct mesh_node *n, int64_t now_ms)
{
	char hb[80], cr[80];
	iso_time(n->last_hb_ms, hb, sizeof(hb));
	iso_time(n->created_ms, cr, sizeof(cr));
	json_t *o = json_pack(
		"{s:s, s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:f, s:b, s:b, s:b, s:b, s:b, s:b, s:s, s:f,"
		" s:s, s:f, s:i, s:i, s:s, s:f, s:b}",
		"node_id", n->node_id, "aura_id", node_aura(n), "node_type", mesh_node_type_name(n->type),
		"max_connections", (int)n->max_connections, "current_connections", (int)n->current_connections,
		"bandwidth_capacity_mbps", (double)n->bw_capacity, "bandwidth_used_mbps", (double)n->bw_used,
		"avg_latency_ms", (double)n->avg_latency, "packet_loss_rate", (double)n->loss, "supports_video",
		n->supports_video, "supports_audio", n->supports_audio, "supports_screen_share",
		n->supports_screen_share, "supports_aic", n->r.aic, "accepting_connections", n->accepting, "is_online",
		node_live(r, n, now_ms), "last_heartbeat_at", hb, "reputation_score", (double)n->r.reputation,
		"trust_level", mesh_trust_name((enum mesh_trust)n->trust), "uptime_percentage", (double)n->uptime_pct,
		"total_routes", (int)n->total_routes, "successful_routes", (int)n->successful_routes, "created_at", cr,
		"access_delay_ms", (double)n->r.m.acc_ms, "is_remote", n->remote);
	if (!o)
		return NULL;
	json_object_set_new(o, "address", n->address ? json_string(n->address) : json_null());
	json_object_set_new(o, "port", n->port ? json_integer(n->port) : json_null());
	json_object_set_new(o, "region", n->region ? json_string(n->region) : json_null());
	json_object_set_new(o, "country_code", n->country_code[0] ? json_string(n->country_code) : json_null());
	json_object_set_new(o, "latitude", n->has_position ? json_real(n->latitude) : json_null());
	json_object_set_new(o, "longitude", n->has_position ? json_real(n->longitude) : json_null());
	return o;
}

json_t *mesh_registry_node_json(struct mesh_registry *r, const char *node_id, int64_t now_ms)
{
	pthread_rwlock_rdlock(&r->lock);
	struct mesh_node *n = by_id(r, node_id, NULL);
	json_t *o = n ? node_json(r, n, now_ms) : NULL;
	pthread_rwlock_unlock(&r->lock);
	return o;
}

json_t *mesh_registry_aura_json(struct mesh_registry *r, const char *aura_id, int64_t now_ms)
{
	json_t *a = json_array();
	if (!a)
		return NULL;
	pthread_rwlock_rdlock(&r->lock);
	for (int32_t p = aura_head(r, aura_id); p >= 0; p = r->slots[p]->next_same_aura)
		json_array_append_new(a, node_json(r, r->slots[p], now_ms));
	pthread_rwlock_unlock(&r->lock);
	return a;
}

json_t *mesh_registry_status_json(struct mesh_registry *r, int64_t now_ms)
{
	json_t *by_type = json_object(), *by_trust = json_object(), *by_region = json_object();
	size_t total = 0, online = 0, conns = 0, maxconns = 0, lat_n = 0;
	double lat = 0, bw_used = 0, bw_cap = 0;
	for (int i = 0; i < 4; i++)
		json_object_set_new(by_type, type_names[i], json_integer(0));
	for (int i = 0; i < 5; i++)
		json_object_set_new(by_trust, mesh_trust_name((enum mesh_trust)i), json_integer(0));
	pthread_rwlock_rdlock(&r->lock);
	for (size_t i = 0; i < r->nslots; i++) {
		struct mesh_node *n = r->slots[i];
		if (!n || n->remote)
			continue;
		total++;
		if (!node_live(r, n, now_ms))
			continue;
		online++;
		json_t *v = json_object_get(by_type, type_names[n->type]);
		json_integer_set(v, json_integer_value(v) + 1);
		v = json_object_get(by_trust, mesh_trust_name((enum mesh_trust)n->trust));
		json_integer_set(v, json_integer_value(v) + 1);
		const char *reg = n->region ? n->region : "unknown";
		v = json_object_get(by_region, reg);
		if (v)
			json_integer_set(v, json_integer_value(v) + 1);
		else
			json_object_set_new(by_region, reg, json_integer(1));
		if (n->avg_latency > 0) {
			lat += n->avg_latency;
			lat_n++;
		}
		conns += (size_t)n->current_connections;
		maxconns += (size_t)n->max_connections;
		bw_used += n->bw_used;
		bw_cap += n->bw_capacity;
	}
	pthread_rwlock_unlock(&r->lock);
	return json_pack("{s:I, s:I, s:o, s:o, s:o, s:f, s:{s:I, s:I, s:f, s:f, s:f, s:f}}", "total_nodes",
			 (json_int_t)total, "online_nodes", (json_int_t)online, "online_by_type", by_type,
			 "online_by_trust_level", by_trust, "online_by_region", by_region, "avg_latency_ms",
			 lat_n ? lat / (double)lat_n : 0.0, "capacity", "current_connections", (json_int_t)conns,
			 "max_connections", (json_int_t)maxconns, "connections_in_use",
			 maxconns ? (double)conns / (double)maxconns : 0.0, "bandwidth_used_mbps", bw_used,
			 "bandwidth_capacity_mbps", bw_cap, "bandwidth_in_use", bw_cap > 0 ? bw_used / bw_cap : 0.0);
}

/* ---- routes ---- */

static bool supports_media(const struct mesh_node *n, int media)
{
	switch (media) {
	case MESH_MEDIA_VIDEO: return n->supports_video;
	case MESH_MEDIA_SCREEN_SHARE: return n->supports_screen_share;
	case MESH_MEDIA_AUDIO: return n->supports_audio;
	default: return true;
	}
}

/* How good a node is as an endpoint: capacity, reputation, latency, loss,
 * uptime (each 0..1, weights in the spirit of the path score). */
static double endpoint_score(const struct mesh_node *n)
{
	double lat = n->avg_latency / MESH_LATENCY_SCALE_MS;
	double bw = n->r.bw_avail_mbps / MESH_BANDWIDTH_SCALE_MBPS;
	double load = n->max_connections > 0 ? (double)n->current_connections / n->max_connections : 1;
	lat = lat > 1 ? 1 : lat;
	bw = bw > 1 ? 1 : bw;
	load = load > 1 ? 1 : load;
	return -0.30 * lat + 0.20 * bw + 0.15 * n->r.reputation / 100.0 - 0.15 * n->loss +
	       0.10 * n->uptime_pct / 100.0 - 0.10 * load;
}

static struct mesh_node *best_endpoint(struct mesh_registry *r, const char *aura, int media, bool require_aic,
				       int64_t now_ms)
{
	struct mesh_node *best = NULL;
	double bs = -1e30;
	for (int32_t p = aura_head(r, aura); p >= 0; p = r->slots[p]->next_same_aura) {
		struct mesh_node *n = r->slots[p];
		if (!node_live(r, n, now_ms) || !n->accepting || n->trust == MESH_TRUST_BANNED ||
		    !supports_media(n, media) || (require_aic && !n->r.aic))
			continue;
		double s = endpoint_score(n);
		if (s > bs) {
			bs = s;
			best = n;
		}
	}
	return best;
}

static bool relay_eligible(const struct mesh_registry *r, const struct mesh_node *n, int media, bool require_aic,
			   int64_t now_ms)
{
	return node_live(r, n, now_ms) && n->accepting && n->trust >= MESH_TRUST_TRUSTED &&
	       n->r.reputation >= MESH_RELAY_MIN_REPUTATION &&
	       n->current_connections < MESH_RELAY_MAX_LOAD * n->max_connections && supports_media(n, media) &&
	       (!require_aic || n->r.aic);
}

struct valid_ctx {
	const struct mesh_registry *r;
	int64_t now_ms;
};

static bool still_valid(void *ctx, uint32_t key, uint32_t epoch)
{
	const struct valid_ctx *vc = ctx;
	const struct mesh_registry *r = vc->r;
	if (key == 0 || key > r->nserials)
		return false;
	int32_t slot = r->serial_slot[key - 1];
	if (slot < 0 || !r->slots[slot])
		return false;
	const struct mesh_node *n = r->slots[slot];
	return n->r.m.key == key && n->r.epoch == epoch && node_live(r, n, vc->now_ms);
}

/* The relays eligible for a call between s and d (a malloc'd copy; *nr of
 * them; *acc_min <= their access delays), NULL when out of memory. Under
 * the read lock. The list of a media type and AIC rule is kept until the
 * registry changes (gen) or a relay on it leaves the online window, so a
 * find copies it instead of checking every relay. */
static const struct mesh_rnode **eligible_relays(struct mesh_registry *r, const struct mesh_node *s,
						 const struct mesh_node *d, int media, bool require_aic, int64_t now_ms,
						 size_t *nr, double *acc_min)
{
	const struct mesh_rnode **relays = NULL;
	*nr = 0;
	pthread_mutex_lock(&r->relay_mu);
	struct relay_list *l = &r->relay_lists[(unsigned)media & 3][require_aic ? 1 : 0];
	if (!l->ok || l->gen != r->gen || now_ms >= l->valid_until_ms) {
		l->ok = false;
		if (l->cap < r->nrelays) {
			const struct mesh_rnode **v = realloc(l->v, r->nrelays * sizeof(*v));
			if (!v)
				goto out;
			l->v = v;
			l->cap = r->nrelays;
		}
		l->n = 0;
		l->acc_min = HUGE_VAL;
		l->valid_until_ms = INT64_MAX;
		for (size_t i = 0; i < r->nrelays; i++) {
			struct mesh_node *n = r->slots[r->relays[i]];
			if (!relay_eligible(r, n, media, require_aic, now_ms))
				continue;
			l->v[l->n++] = &n->r;
			if (n->r.m.acc_ms < l->acc_min)
				l->acc_min = n->r.m.acc_ms;
			/* relays are local nodes: live until the window ends */
			if (n->last_hb_ms + r->window_ms < l->valid_until_ms)
				l->valid_until_ms = n->last_hb_ms + r->window_ms;
		}
		l->gen = r->gen;
		l->ok = true;
	}
	relays = malloc((l->n + 1) * sizeof(*relays));
	if (!relays)
		goto out;
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i] != &s->r && l->v[i] != &d->r)
			relays[(*nr)++] = l->v[i];
	*acc_min = l->acc_min;
out:
	pthread_mutex_unlock(&r->relay_mu);
	return relays;
}

static void cache_key(char *buf, size_t len, const char *src, const char *dst, int media, bool aic)
{
	snprintf(buf, len, "%s|%s|%d|%d", src, dst, media, aic ? 1 : 0);
}

int mesh_registry_find(struct mesh_registry *r, const char *src_aura, const char *dst_aura, int media, bool require_aic,
		       int64_t now_ms, struct mesh_cached_route *out, struct mesh_find_stats *st, struct al_error *err)
{
	char key[MESH_ROUTE_KEY_MAX];
	const struct mesh_rnode **relays = NULL;
	int rc = -1;
	memset(out, 0, sizeof(*out));
	memset(st, 0, sizeof(*st));
	cache_key(key, sizeof(key), src_aura, dst_aura, media, require_aic);
	pthread_rwlock_rdlock(&r->lock);
	struct valid_ctx vc = {r, now_ms};
	if (mesh_route_cache_get(r->cache, key, now_ms, still_valid, &vc, out) == 0) {
		st->cached = true;
		rc = 0;
		goto out;
	}
	struct mesh_node *s = best_endpoint(r, src_aura, media, require_aic, now_ms);
	struct mesh_node *d = best_endpoint(r, dst_aura, media, require_aic, now_ms);
	if (!s) {
		al_error_set(err, 404, "M_NOT_FOUND", "source_aura_id has no online node for this call");
		goto out;
	}
	if (!d) {
		al_error_set(err, 404, "M_NOT_FOUND", "destination_aura_id has no online node for this call");
		goto out;
	}
	if (s == d) {
		al_error_set(err, 400, "M_INVALID_PARAM", "destination_aura_id: same node as the source");
		goto out;
	}
	size_t nr = 0;
	double acc_min = 0;
	relays = eligible_relays(r, s, d, media, require_aic, now_ms, &nr, &acc_min);
	if (!relays) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto out;
	}
	struct mesh_oracle o;
	mesh_route_model_oracle(&o, r->model);
	struct mesh_route_query q = {.src = &s->r,
				     .dst = &d->r,
				     .relays = relays,
				     .nrelays = nr,
				     .require_aic = require_aic,
				     .max_relays = 2,
				     .lat = &o,
				     .explore_cost = MESH_EXPLORE_COST_POINTS,
				     .acc_min_known = true,
				     .acc_min = acc_min};
	struct mesh_route_result res;
	if (mesh_route_search(&q, &res) < 0) {
		al_error_set(err, 404, "M_NOT_FOUND", "no route satisfies require_aic");
		goto out;
	}
	st->relays_considered = nr;
	st->paths_evaluated = res.evaluated;
	st->explored = res.explored;
	out->expires_ms = now_ms + MESH_ROUTE_TTL_MS;
	out->n = res.n;
	for (int i = 0; i < res.n; i++) {
		/* the rnode is the first member of its mesh_node */
		const struct mesh_node *n = (const struct mesh_node *)(const void *)res.path[i];
		out->keys[i] = n->r.m.key;
		out->epochs[i] = n->r.epoch;
		snprintf(out->node_ids[i], sizeof(out->node_ids[i]), "%s", n->node_id);
	}
	out->pm = res.pm;
	out->score = res.score;
	rc = 0;
out:
	pthread_rwlock_unlock(&r->lock);
	free(relays);
	return rc;
}

void mesh_registry_cache_put(struct mesh_registry *r, const char *src_aura, const char *dst_aura, int media,
			     bool require_aic, const struct mesh_cached_route *route)
{
	char key[MESH_ROUTE_KEY_MAX];
	cache_key(key, sizeof(key), src_aura, dst_aura, media, require_aic);
	mesh_route_cache_put(r->cache, key, route);
}

/* After learning, under the write lock: when a class mean moved, the local
 * nodes nobody measured yet follow it (O(nodes), rarely: the means settle
 * as reports come in). */
static void follow_priors(struct mesh_registry *r)
{
	uint32_t v = mesh_model_prior_version(r->model);
	if (v == r->prior_version)
		return;
	r->prior_version = v;
	for (size_t i = 0; i < r->nslots; i++) {
		struct mesh_node *n = r->slots[i];
		if (n && !n->remote)
			mesh_model_apply_prior(r->model, &n->r.m);
	}
}

void mesh_registry_feedback(struct mesh_registry *r, const char *route_id, const char (*node_ids)[37], int n,
			    double actual_latency_ms, bool success)
{
	struct mesh_mnode *path[4];
	struct mesh_node *nodes[4];
	int32_t slots[4];
	int found = 0;
	if (n < 2 || n > 4)
		return;
	mesh_route_cache_drop_route(r->cache, route_id);
	wrlock(r);
	for (int i = 0; i < n; i++) {
		nodes[i] = by_id(r, node_ids[i], &slots[i]);
		if (nodes[i])
			path[found++] = &nodes[i]->r.m;
	}
	if (found == n && actual_latency_ms >= 0) {
		mesh_model_learn(r->model, path, n, actual_latency_ms);
		follow_priors(r);
		for (int i = 0; i < n; i++)
			mark_dirty(r, nodes[i], slots[i]); /* access_delay_ms is persisted */
	}
	for (int i = 0; i < n; i++) {
		if (!nodes[i])
			continue;
		nodes[i]->total_routes++;
		if (success)
			nodes[i]->successful_routes++;
		change_reputation(r, nodes[i], slots[i],
				  success ? MESH_REP_DELTA_ROUTE_SUCCESS : MESH_REP_DELTA_ROUTE_FAILURE,
				  success ? MESH_REP_ROUTE_SUCCESS : MESH_REP_ROUTE_FAILURE,
				  success ? "route performed well" : "route performed badly", route_id, NULL, NULL);
	}
	pthread_rwlock_unlock(&r->lock);
}

int mesh_registry_rescore(struct mesh_registry *r, const char (*node_ids)[37], int n, double actual_latency_ms,
			  int media, bool require_aic, int64_t now_ms, double *actual, double *best, bool *same)
{
	const struct mesh_rnode *path[4];
	const struct mesh_node *nodes[4];
	int rc = -1;
	if (n < 2 || n > 4 || !(actual_latency_ms >= 0))
		return -1;
	pthread_rwlock_rdlock(&r->lock);
	for (int i = 0; i < n; i++) {
		if (!(nodes[i] = by_id(r, node_ids[i], NULL)))
			goto out;
		path[i] = &nodes[i]->r;
	}
	struct mesh_oracle o;
	mesh_route_model_oracle(&o, r->model);
	struct mesh_path_metrics pm;
	mesh_route_path_metrics(&o, path, n, &pm);
	pm.latency_ms = actual_latency_ms;
	*actual = mesh_route_score(&pm);
	size_t nr = 0;
	double acc_min = 0;
	const struct mesh_rnode **relays = eligible_relays(r, nodes[0], nodes[n - 1], media, require_aic, now_ms, &nr,
							   &acc_min);
	if (!relays)
		goto out;
	struct mesh_route_query q = {.src = path[0],
				     .dst = path[n - 1],
				     .relays = relays,
				     .nrelays = nr,
				     .require_aic = require_aic,
				     .max_relays = 2,
				     .lat = &o,
				     .acc_min_known = true,
				     .acc_min = acc_min};
	struct mesh_route_result res;
	if (mesh_route_search(&q, &res) == 0) {
		*same = res.n == n;
		for (int i = 0; *same && i < n; i++)
			*same = res.path[i] == path[i];
		*best = *same ? *actual : res.score;
		rc = 0;
	}
	free(relays);
out:
	pthread_rwlock_unlock(&r->lock);
	return rc;
}

int mesh_registry_predict(struct mesh_registry *r, const char (*node_ids)[37], int n, struct mesh_path_metrics *pm)
{
	const struct mesh_rnode *path[4];
	const struct mesh_node *node;
	int rc = -1;
	if (n < 2 || n > 4)
		return -1;
	pthread_rwlock_rdlock(&r->lock);
	for (int i = 0; i < n; i++) {
		if (!(node = by_id(r, node_ids[i], NULL)))
			goto out;
		path[i] = &node->r;
	}
	struct mesh_oracle o;
	mesh_route_model_oracle(&o, r->model);
	mesh_route_path_metrics(&o, path, n, pm);
	rc = 0;
out:
	pthread_rwlock_unlock(&r->lock);
	return rc;
}

void mesh_registry_learn(struct mesh_registry *r, const char (*node_ids)[37], int n, double actual_ms)
{
	struct mesh_mnode *path[4];
	struct mesh_node *node;
	int32_t slot;
	if (n < 2 || n > 4 || !(actual_ms >= 0))
		return;
	wrlock(r);
	for (int i = 0; i < n; i++) {
		if (!(node = by_id(r, node_ids[i], &slot)))
			goto out;
		path[i] = &node->r.m;
		mark_dirty(r, node, slot);
	}
	mesh_model_learn(r->model, path, n, actual_ms);
	follow_priors(r);
out:
	pthread_rwlock_unlock(&r->lock);
}

/* ---- remote nodes ---- */

static bool uuid_text(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
			return false;
		}
	}
	return true;
}

/* o[key] as a number in [min, max] into *out; absent (or null when
 * nullable) leaves *out and returns 0 (*present false). -1 when bad. */
static int remote_num(const json_t *o, const char *key, double min, double max, bool integer, double *out,
		      bool *present)
{
	json_t *v = json_object_get(o, key);
	if (present)
		*present = false;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v) || (integer && !json_is_integer(v)))
		return -1;
	double d = json_number_value(v);
	if (!isfinite(d) || d < min || d > max)
		return -1;
	*out = d;
	if (present)
		*present = true;
	return 0;
}

static int remote_bool(const json_t *o, const char *key, bool *out)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return -1;
	*out = json_is_true(v);
	return 0;
}

/* o[key] a string of 1..max bytes without control characters, or
 * absent/null (""). */
static int remote_str(const json_t *o, const char *key, size_t max, char *out, size_t outlen)
{
	json_t *v = json_object_get(o, key);
	out[0] = 0;
	if (!v || json_is_null(v))
		return 0;
	const char *t = json_string_value(v);
	size_t len = t ? strlen(t) : 0;
	if (!t || len < 1 || len > max || len >= outlen || len != json_string_length(v))
		return -1;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)t[i] < 0x20 || t[i] == 0x7f)
			return -1;
	memcpy(out, t, len + 1);
	return 0;
}

/* One record of an org.auralink.mesh_nodes answer into *o. Every field is
 * checked for type and range (the same ranges as register and heartbeat
 * over the client API); *field names the first bad one. 1 ok, 0 skip (an
 * offline node), -1 bad. */
static int remote_parse(const json_t *rec, const char *aura_id, const char *user_id, struct mesh_node_info *o,
			const char **field, int64_t now_ms)
{
	double maxc = 50, cc = 0, bwc = 0, bwu = 0, lat = 0, loss = 0, la = 0, lo = 0;
	double rep = MESH_REPUTATION_INITIAL, up = 100, acc = 0, port = 0;
	bool has_la, has_lo, online = true;
	memset(o, 0, sizeof(*o));
	o->supports_video = o->supports_audio = o->accepting_connections = true;
	*field = "node";
	if (!json_is_object(rec))
		return -1;
	const char *id = json_string_value(json_object_get(rec, "node_id"));
	*field = "node_id";
	if (!uuid_text(id))
		return -1;
	for (int i = 0; i < 36; i++)
		o->node_id[i] = (char)((id[i] >= 'A' && id[i] <= 'F') ? id[i] - 'A' + 'a' : id[i]);
	json_t *a = json_object_get(rec, "aura_id");
	*field = "aura_id";
	if (a && (!json_is_string(a) || strcasecmp(json_string_value(a), aura_id)))
		return -1;
	*field = "node_type";
	o->type = mesh_node_type_parse(json_string_value(json_object_get(rec, "node_type")));
	if (o->type < 0)
		return -1;
#define NUM(key, min, max, integer, var, present)                               \
	do {                                                                    \
		*field = key;                                                   \
		if (remote_num(rec, key, min, max, integer, &var, present) < 0) \
			return -1;                                              \
	} while (0)
#define BOOL(key, var)                               \
	do {                                         \
		*field = key;                        \
		if (remote_bool(rec, key, &var) < 0) \
			return -1;                   \
	} while (0)
	NUM("max_connections", 1, 1000000, true, maxc, NULL);
	NUM("current_connections", 0, 1000000, true, cc, NULL);
	NUM("bandwidth_capacity_mbps", 0, 1e6, false, bwc, NULL);
	NUM("bandwidth_used_mbps", 0, 1e6, false, bwu, NULL);
	NUM("avg_latency_ms", 0, 1e5, false, lat, NULL);
	NUM("packet_loss_rate", 0, 1, false, loss, NULL);
	NUM("latitude", -90, 90, false, la, &has_la);
	NUM("longitude", -180, 180, false, lo, &has_lo);
	NUM("reputation_score", 0, 100, false, rep, NULL);
	NUM("uptime_percentage", 0, 100, false, up, NULL);
	NUM("access_delay_ms", 0, 1000, false, acc, NULL);
	NUM("port", 1, 65535, true, port, NULL);
	BOOL("supports_video", o->supports_video);
	BOOL("supports_audio", o->supports_audio);
	BOOL("supports_screen_share", o->supports_screen_share);
	BOOL("supports_aic", o->supports_aic);
	BOOL("accepting_connections", o->accepting_connections);
	BOOL("is_online", online);
#undef NUM
#undef BOOL
	*field = "latitude";
	if (has_la != has_lo)
		return -1;
	*field = "address";
	if (remote_str(rec, "address", 255, o->address, sizeof(o->address)) < 0)
		return -1;
	*field = "region";
	if (remote_str(rec, "region", 64, o->region, sizeof(o->region)) < 0)
		return -1;
	*field = "country_code";
	if (remote_str(rec, "country_code", 2, o->country_code, sizeof(o->country_code)) < 0 ||
	    (o->country_code[0] && (strlen(o->country_code) != 2 || o->country_code[0] < 'A' ||
				    o->country_code[0] > 'Z' || o->country_code[1] < 'A' || o->country_code[1] > 'Z')))
		return -1;
	*field = NULL;
	if (!online)
		return 0;
	snprintf(o->aura_id, sizeof(o->aura_id), "%s", aura_id);
	snprintf(o->user_id, sizeof(o->user_id), "%s", user_id);
	o->max_connections = (int)maxc;
	o->current_connections = (int)cc;
	o->bandwidth_capacity_mbps = bwc;
	o->bandwidth_used_mbps = bwu;
	o->avg_latency_ms = lat;
	o->packet_loss_rate = loss;
	o->has_position = has_la;
	o->latitude = la;
	o->longitude = lo;
	o->reputation_score = rep;
	o->uptime_percentage = up;
	o->access_delay_ms = acc;
	o->port = (int)port;
	o->is_online = true;
	o->last_heartbeat_ms = o->created_ms = now_ms;
	return 1;
}

int mesh_registry_add_remote(struct mesh_registry *r, const char *aura_id, const char *user_id, const json_t *nodes,
			     int64_t now_ms, struct al_error *err)
{
	if (!aura_id || !*aura_id || strlen(aura_id) > 255 || !user_id || strlen(user_id) > 255)
		return al_error_set(err, 400, "M_INVALID_PARAM", "remote nodes: bad AuraID or user");
	if (!json_is_array(nodes))
		return al_error_set(err, 502, "M_UNKNOWN", "remote nodes: not an array");
	size_t count = json_array_size(nodes);
	if (count > MESH_MAX_NODES_PER_AURA)
		return al_error_set(err, 502, "M_UNKNOWN", "remote nodes: more than %d", MESH_MAX_NODES_PER_AURA);
	struct mesh_node_info *v = count ? calloc(count, sizeof(*v)) : NULL;
	if (count && !v)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	size_t n = 0;
	int rc = 0;
	/* validate every record before anything changes */
	for (size_t i = 0; i < count; i++) {
		const char *field = NULL;
		int ok = remote_parse(json_array_get(nodes, i), aura_id, user_id, &v[n], &field, now_ms);
		if (ok < 0) {
			rc = al_error_set(err, 502, "M_UNKNOWN", "remote node %zu: bad %s", i, field);
			goto out;
		}
		for (size_t k = 0; ok && k < n; k++)
			if (!strcmp(v[k].node_id, v[n].node_id)) {
				rc = al_error_set(err, 502, "M_UNKNOWN", "remote node %zu: node_id repeated", i);
				goto out;
			}
		n += (size_t)ok;
	}
	wrlock(r);
	/* an AuraID with local nodes is ours; a node_id that is local or
	 * another AuraID's is refused (a peer cannot take over nodes) */
	for (int32_t p = aura_head(r, aura_id); p >= 0; p = r->slots[p]->next_same_aura)
		if (!r->slots[p]->remote) {
			rc = al_error_set(err, 409, "M_UNKNOWN", "remote nodes: %s is hosted here", aura_id);
			goto unlock;
		}
	for (size_t i = 0; i < n; i++) {
		struct mesh_node *x = by_id(r, v[i].node_id, NULL);
		if (x && (!x->remote || strcmp(node_aura(x), aura_id))) {
			rc = al_error_set(err, 502, "M_UNKNOWN", "remote node %s: id already in use", v[i].node_id);
			goto unlock;
		}
	}
	/* drop the AuraID's remote nodes that are not in the answer */
	size_t chain = 0, ndrop = 0;
	for (int32_t p = aura_head(r, aura_id); p >= 0; p = r->slots[p]->next_same_aura)
		chain++;
	char(*drop)[37] = chain ? malloc(chain * sizeof(*drop)) : NULL;
	if (chain && !drop) {
		rc = al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto unlock;
	}
	for (int32_t p = aura_head(r, aura_id); p >= 0; p = r->slots[p]->next_same_aura) {
		bool kept = false;
		for (size_t i = 0; i < n && !kept; i++)
			kept = !strcmp(v[i].node_id, r->slots[p]->node_id);
		if (!kept)
			memcpy(drop[ndrop++], r->slots[p]->node_id, 37);
	}
	for (size_t i = 0; i < ndrop; i++)
		remove_locked(r, drop[i]);
	free(drop);
	/* refresh the others in place (a node keeps its serial, so what the
	 * model learned about it stays), add the new ones */
	for (size_t i = 0; i < n; i++) {
		int32_t slot;
		struct mesh_node *x = by_id(r, v[i].node_id, &slot);
		if (x) {
			float acc = x->r.m.acc_ms, var = x->r.m.acc_var;
			if (fill_node(x, &v[i]) < 0) {
				rc = al_error_set(err, 500, "M_UNKNOWN", "out of memory");
				break;
			}
			if (var == 0) /* not learned here: the peer's estimate */
				acc = (float)(v[i].access_delay_ms > 0 ? v[i].access_delay_ms : MESH_ACCESS_PRIOR_MS);
			x->r.m.acc_ms = acc;
			x->r.m.acc_var = var;
			x->r.epoch++; /* routes through it are chosen again */
			if (!x->online) {
				x->online = true;
				r->online++;
			}
		} else if (add_locked(r, &v[i], now_ms, true, &x) < 0) {
			rc = al_error_set(err, 500, "M_UNKNOWN", "out of memory");
			break;
		}
		x->remote_until_ms = now_ms + MESH_REMOTE_TTL_MS;
	}
	if (!rc)
		rc = (int)n;
unlock:
	pthread_rwlock_unlock(&r->lock);
out:
	free(v);
	return rc;
}

bool mesh_registry_remote_fresh(struct mesh_registry *r, const char *aura_id, int64_t now_ms)
{
	bool fresh = false;
	pthread_rwlock_rdlock(&r->lock);
	for (int32_t p = aura_head(r, aura_id); p >= 0 && !fresh; p = r->slots[p]->next_same_aura)
		fresh = node_live(r, r->slots[p], now_ms) && r->slots[p]->remote;
	pthread_rwlock_unlock(&r->lock);
	return fresh;
}

/* ---- persistence ---- */

static void to_info(const struct mesh_node *n, struct mesh_node_info *o)
{
	memset(o, 0, sizeof(*o));
	snprintf(o->node_id, sizeof(o->node_id), "%s", n->node_id);
	o->current_connections = n->current_connections;
	o->bandwidth_used_mbps = n->bw_used;
	o->avg_latency_ms = n->avg_latency;
	o->packet_loss_rate = n->loss;
	o->accepting_connections = n->accepting;
	o->is_online = n->online;
	o->last_heartbeat_ms = n->last_hb_ms;
	o->reputation_score = n->r.reputation;
	o->uptime_percentage = n->uptime_pct;
	/* only what reports taught is stored; a node they never measured is
	 * stored as the prior, so a restart starts it at its class's mean
	 * again (and its next heartbeat gives it its own prior) */
	o->access_delay_ms = n->r.m.src == MESH_ACC_MEASURED ? n->r.m.acc_ms : MESH_ACCESS_PRIOR_MS;
	o->total_routes = n->total_routes;
	o->successful_routes = n->successful_routes;
}

size_t mesh_registry_take_dirty(struct mesh_registry *r, struct mesh_node_info **out)
{
	*out = NULL;
	wrlock(r);
	size_t n = r->ndirty;
	struct mesh_node_info *v = n ? malloc(n * sizeof(*v)) : NULL;
	if (n && !v) {
		pthread_rwlock_unlock(&r->lock);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		struct mesh_node *node = r->slots[r->dirty[i]];
		to_info(node, &v[i]);
		node->dirty = false;
	}
	r->ndirty = 0;
	pthread_rwlock_unlock(&r->lock);
	*out = v;
	return n;
}

struct mesh_rep_queue *mesh_registry_events(struct mesh_registry *r)
{
	return r->events;
}

size_t mesh_registry_count(struct mesh_registry *r, size_t *online)
{
	size_t total = 0;
	pthread_rwlock_rdlock(&r->lock);
	for (size_t i = 0; i < r->nslots; i++)
		total += r->slots[i] != NULL;
	if (online)
		*online = r->online;
	pthread_rwlock_unlock(&r->lock);
	return total;
}

static size_t str_mem(const char *s)
{
	/* glibc malloc: 8 bytes of header, 16-byte granularity, 32 minimum */
	if (!s)
		return 0;
	size_t n = strlen(s) + 1 + 8;
	n = (n + 15) & ~(size_t)15;
	return n < 32 ? 32 : n;
}

size_t mesh_registry_memory_bytes(struct mesh_registry *r)
{
	size_t b = sizeof(*r);
	pthread_rwlock_rdlock(&r->lock);
	b += r->cap * sizeof(*r->slots) + r->serials_cap * sizeof(int32_t) + r->relays_cap * sizeof(int32_t) +
	     r->dirty_cap * sizeof(int32_t) + r->nfree * sizeof(int32_t);
	b += r->by_id.cap * 12 + r->by_aura.cap * 12;
	pthread_mutex_lock(&r->relay_mu);
	for (int m = 0; m < 4; m++)
		for (int a = 0; a < 2; a++)
			b += r->relay_lists[m][a].cap * sizeof(*r->relay_lists[m][a].v);
	pthread_mutex_unlock(&r->relay_mu);
	size_t node = (sizeof(struct mesh_node) + 8 + 15) & ~(size_t)15;
	for (size_t i = 0; i < r->nslots; i++) {
		struct mesh_node *n = r->slots[i];
		if (!n)
			continue;
		b += node + str_mem(n->aura_long) + str_mem(n->user_id) + str_mem(n->address) + str_mem(n->region);
	}
	pthread_rwlock_unlock(&r->lock);
	return b;
}

struct mesh_model *mesh_registry_model(struct mesh_registry *r)
{
	return r->model;
}
