/* state_res.c - state resolution v2. The events of the states and of their
 * auth chains become an array of nodes (auth edges as indexes); sets of
 * nodes are byte arrays. Tie-breaks follow the spec: power level of the
 * sender (from the event's own auth events), origin_server_ts, event ID. */
#include "state_res.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct node {
	const char *id;
	const json_t *pdu;
	const char *type;
	const char *state_key; /* NULL: not a state event */
	int64_t ts;
	bool rejected;
	int *auth; /* indexes of the known auth events */
	int nauth;
	long power; /* sender's level from its auth events (computed lazily) */
	bool power_done;
};

struct sr {
	const struct event_rules *r;
	const struct state_res_source *src;
	struct node *nodes;
	int n, cap;
	json_t *index; /* event ID -> integer index */
	struct al_error *err;
};

static int node_index(struct sr *s, const char *id)
{
	json_t *v = json_object_get(s->index, id);
	return v ? (int)json_integer_value(v) : -1;
}

/* Add event id (and nothing else); -1 when unknown. */
static int node_add(struct sr *s, const char *id)
{
	int i = node_index(s, id);
	if (i >= 0)
		return i;
	const json_t *pdu = s->src->event(s->src->arg, id);
	if (!json_is_object(pdu))
		return -1;
	if (s->n >= STATE_RES_MAX_EVENTS)
		return -2;
	if (s->n == s->cap) {
		int nc = s->cap ? s->cap * 2 : 64;
		struct node *nn = realloc(s->nodes, (size_t)nc * sizeof(*nn));
		if (!nn)
			return -2;
		s->nodes = nn;
		s->cap = nc;
	}
	struct node *nd = &s->nodes[s->n];
	memset(nd, 0, sizeof(*nd));
	nd->id = json_string_value(json_object_get(pdu, "event_id"));
	if (!nd->id)
		nd->id = id;
	nd->pdu = pdu;
	nd->type = json_string_value(json_object_get(pdu, "type"));
	nd->state_key = json_string_value(json_object_get(pdu, "state_key"));
	nd->ts = json_integer_value(json_object_get(pdu, "origin_server_ts"));
	nd->rejected = s->src->rejected ? s->src->rejected(s->src->arg, id) : false;
	if (!nd->type)
		nd->type = "";
	json_object_set_new(s->index, id, json_integer(s->n));
	return s->n++;
}

/* Every event reachable from the states through auth_events. */
static int build_nodes(struct sr *s, json_t *const *states, int n)
{
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		const char *k;
		json_t *v;
		json_object_foreach(states[i], k, v)
		{
			const char *id = json_string_value(v);
			int x = id ? node_add(s, id) : -1;
			if (x < 0) {
				rc = x == -2 ? al_error_set(s->err, 500, "M_UNKNOWN", "state too large to resolve")
					     : al_error_set(s->err, 500, "M_UNKNOWN", "state event %s is unknown",
							    id ? id : "?");
				break;
			}
		}
	}
	/* walk auth edges; nodes appended while walking are walked too */
	for (int i = 0; rc == 0 && i < s->n; i++) {
		json_t *ae = json_object_get(s->nodes[i].pdu, "auth_events");
		size_t na = json_array_size(ae);
		int *auth = na ? calloc(na, sizeof(int)) : NULL;
		int cnt = 0;
		for (size_t j = 0; j < na; j++) {
			const char *aid = event_ref_id(json_array_get(ae, j));
			int x = aid ? node_add(s, aid) : -1;
			if (x == -2) {
				rc = al_error_set(s->err, 500, "M_UNKNOWN", "state too large to resolve");
				break;
			}
			if (x >= 0 && auth)
				auth[cnt++] = x;
		}
		s->nodes[i].auth = auth;
		s->nodes[i].nauth = cnt;
	}
	return rc;
}

static void sr_free(struct sr *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->nodes[i].auth);
	free(s->nodes);
	json_decref(s->index);
}

static bool is_key(const struct node *nd, const char *type, const char *sk)
{
	return nd->state_key && strcmp(nd->type, type) == 0 && strcmp(nd->state_key, sk) == 0;
}

static bool is_power_event(const struct node *nd)
{
	if (!nd->state_key)
		return false;
	if (is_key(nd, "m.room.power_levels", "") || is_key(nd, "m.room.join_rules", "") ||
	    is_key(nd, "m.room.create", ""))
		return true;
	if (strcmp(nd->type, "m.room.member") == 0) {
		const char *m = json_string_value(json_object_get(json_object_get(nd->pdu, "content"), "membership"));
		const char *sender = json_string_value(json_object_get(nd->pdu, "sender"));
		return m && sender && (strcmp(m, "leave") == 0 || strcmp(m, "ban") == 0) &&
		       strcmp(sender, nd->state_key) != 0;
	}
	return false;
}

static long sender_power(struct sr *s, struct node *nd)
{
	if (nd->power_done)
		return nd->power;
	const char *sender = json_string_value(json_object_get(nd->pdu, "sender"));
	json_t *st = json_object();
	for (int i = 0; i < nd->nauth; i++) {
		struct node *a = &s->nodes[nd->auth[i]];
		char k[ROOM_AUTH_KEY_MAX + 1];
		if (a->state_key && room_auth_key(a->type, a->state_key, k, sizeof(k)) == 0)
			json_object_set(st, k, (json_t *)a->pdu);
	}
	nd->power = sender ? room_auth_user_level(st, sender) : 0;
	nd->power_done = true;
	json_decref(st);
	return nd->power;
}

/* -1 when a sorts before b in the reverse topological power ordering */
static int power_cmp(struct sr *s, int a, int b)
{
	long pa = sender_power(s, &s->nodes[a]), pb = sender_power(s, &s->nodes[b]);
	if (pa != pb)
		return pa > pb ? -1 : 1;
	if (s->nodes[a].ts != s->nodes[b].ts)
		return s->nodes[a].ts < s->nodes[b].ts ? -1 : 1;
	return strcmp(s->nodes[a].id, s->nodes[b].id);
}

int state_res_auth_types(const json_t *ev, char keys[STATE_RES_AUTH_TYPES][ROOM_AUTH_KEY_MAX + 1])
{
	int n = 0;
	const char *type = json_string_value(json_object_get(ev, "type"));
	const char *sender = json_string_value(json_object_get(ev, "sender"));
	if (!type || strcmp(type, "m.room.create") == 0)
		return 0;
	room_auth_key("m.room.create", "", keys[n++], ROOM_AUTH_KEY_MAX + 1);
	room_auth_key("m.room.power_levels", "", keys[n++], ROOM_AUTH_KEY_MAX + 1);
	if (sender && room_auth_key("m.room.member", sender, keys[n], ROOM_AUTH_KEY_MAX + 1) == 0)
		n++;
	if (strcmp(type, "m.room.member") == 0) {
		const char *target = json_string_value(json_object_get(ev, "state_key"));
		json_t *c = json_object_get(ev, "content");
		const char *m = json_string_value(json_object_get(c, "membership"));
		if (target && (!sender || strcmp(target, sender) != 0) &&
		    room_auth_key("m.room.member", target, keys[n], ROOM_AUTH_KEY_MAX + 1) == 0)
			n++;
		if (m && (strcmp(m, "join") == 0 || strcmp(m, "invite") == 0 || strcmp(m, "knock") == 0))
			room_auth_key("m.room.join_rules", "", keys[n++], ROOM_AUTH_KEY_MAX + 1);
		const char *token = json_string_value(
			json_object_get(json_object_get(json_object_get(c, "third_party_invite"), "signed"), "token"));
		if (m && strcmp(m, "invite") == 0 && token && n < STATE_RES_AUTH_TYPES &&
		    room_auth_key("m.room.third_party_invite", token, keys[n], ROOM_AUTH_KEY_MAX + 1) == 0)
			n++;
		const char *via = json_string_value(json_object_get(c, "join_authorised_via_users_server"));
		if (m && strcmp(m, "join") == 0 && via && n < STATE_RES_AUTH_TYPES &&
		    room_auth_key("m.room.member", via, keys[n], ROOM_AUTH_KEY_MAX + 1) == 0)
			n++;
	}
	return n;
}

/* The iterative auth checks of the spec over order[0..n) on partial. */
static void iterative_auth(struct sr *s, const int *order, int n, json_t *partial)
{
	for (int i = 0; i < n; i++) {
		struct node *nd = &s->nodes[order[i]];
		if (nd->rejected || !nd->state_key)
			continue;
		json_t *auth = json_object();
		char k[ROOM_AUTH_KEY_MAX + 1];
		for (int j = 0; j < nd->nauth; j++) {
			struct node *a = &s->nodes[nd->auth[j]];
			if (!a->rejected && a->state_key && room_auth_key(a->type, a->state_key, k, sizeof(k)) == 0)
				json_object_set(auth, k, (json_t *)a->pdu);
		}
		char keys[STATE_RES_AUTH_TYPES][ROOM_AUTH_KEY_MAX + 1];
		int nk = state_res_auth_types(nd->pdu, keys);
		for (int j = 0; j < nk; j++) {
			const char *id = json_string_value(json_object_get(partial, keys[j]));
			int x = id ? node_index(s, id) : -1;
			if (x >= 0 && !s->nodes[x].rejected)
				json_object_set(auth, keys[j], (json_t *)s->nodes[x].pdu);
		}
		/* "the only previous event is the create event" */
		bool is_first = false;
		json_t *prev = json_object_get(nd->pdu, "prev_events");
		json_t *create = room_auth_state_get(auth, "m.room.create", "");
		if (create && json_array_size(prev) == 1) {
			const char *cid = json_string_value(json_object_get(create, "event_id"));
			const char *p0 = event_ref_id(json_array_get(prev, 0));
			is_first = cid && p0 && strcmp(cid, p0) == 0;
		}
		struct al_error e = {0};
		if (room_auth_check(s->r, nd->pdu, auth, is_first, &e) == 0 &&
		    room_auth_key(nd->type, nd->state_key, k, sizeof(k)) == 0)
			json_object_set_new(partial, k, json_string(nd->id));
		json_decref(auth);
	}
}

/* The index of the m.room.power_levels event among nd's auth events, -1. */
static int pl_auth_of(struct sr *s, const struct node *nd)
{
	for (int j = 0; j < nd->nauth; j++)
		if (is_key(&s->nodes[nd->auth[j]], "m.room.power_levels", ""))
			return nd->auth[j];
	return -1;
}

struct mainline_item {
	int node;
	long depth;
	int64_t ts;
	const char *id;
};

static int mainline_cmp(const void *a, const void *b)
{
	const struct mainline_item *x = a, *y = b;
	if (x->depth != y->depth)
		return x->depth < y->depth ? -1 : 1;
	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	return strcmp(x->id, y->id);
}

json_t *state_res_v2(const struct event_rules *r, json_t *const *states, int n, const struct state_res_source *src,
		     struct al_error *err)
{
	if (n <= 0)
		return json_object();
	if (n == 1)
		return json_deep_copy(states[0]);
	struct sr s = {.r = r, .src = src, .err = err, .index = json_object()};
	json_t *unconflicted = json_object(), *out = NULL;
	unsigned char *conflicted = NULL, *fcs = NULL, *inx = NULL, *marks = NULL;
	int *order = NULL, *outdeg = NULL, *rest = NULL;
	struct mainline_item *items = NULL;
	if (!s.index || !unconflicted) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto done;
	}
	if (build_nodes(&s, states, n) < 0)
		goto done;
	int N = s.n;
	size_t NB = s.n > 0 ? (size_t)s.n : 0;
	conflicted = calloc(NB + 1, 1);
	fcs = calloc(NB + 1, 1);
	inx = calloc(NB + 1, 1);
	marks = calloc(NB + 1, 1);
	order = calloc(NB + 1, sizeof(int));
	outdeg = calloc(NB + 1, sizeof(int));
	rest = calloc(NB + 1, sizeof(int));
	int *count = calloc(NB + 1, sizeof(int));
	if (!conflicted || !fcs || !inx || !marks || !order || !outdeg || !rest || !count) {
		free(count);
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto done;
	}
	/* 1. unconflicted state map and conflicted state set */
	bool any_conflict = false;
	json_t *seen = json_object();
	for (int i = 0; i < n; i++) {
		const char *k;
		json_t *v;
		json_object_foreach(states[i], k, v)
		{
			if (json_object_get(seen, k))
				continue;
			json_object_set_new(seen, k, json_true());
			bool same = true;
			for (int j = 0; j < n && same; j++) {
				const char *o = json_string_value(json_object_get(states[j], k));
				same = o && strcmp(o, json_string_value(v)) == 0;
			}
			if (same) {
				json_object_set(unconflicted, k, v);
				continue;
			}
			any_conflict = true;
			for (int j = 0; j < n; j++) {
				const char *o = json_string_value(json_object_get(states[j], k));
				int x = o ? node_index(&s, o) : -1;
				if (x >= 0)
					conflicted[x] = 1;
			}
		}
	}
	json_decref(seen);
	if (!any_conflict) {
		free(count);
		out = unconflicted;
		unconflicted = NULL;
		goto done;
	}
	/* 2. auth difference: in some but not all full auth chains (each
	 * chain includes the state's own events) */
	for (int i = 0; i < n; i++) {
		memset(marks, 0, NB);
		int sp = 0;
		const char *k;
		json_t *v;
		json_object_foreach(states[i], k, v)
		{
			int x = node_index(&s, json_string_value(v));
			if (x >= 0 && !marks[x]) {
				marks[x] = 1;
				order[sp++] = x;
			}
		}
		while (sp > 0) {
			int x = order[--sp];
			count[x]++;
			for (int j = 0; j < s.nodes[x].nauth; j++) {
				int a = s.nodes[x].auth[j];
				if (!marks[a]) {
					marks[a] = 1;
					order[sp++] = a;
				}
			}
		}
	}
	for (int x = 0; x < N; x++)
		fcs[x] = conflicted[x] || (count[x] > 0 && count[x] < n);
	free(count);
	/* 3. power events of the full conflicted set and, walking auth
	 * events inside it, what they depend on */
	int sp = 0, nx = 0;
	for (int x = 0; x < N; x++)
		if (fcs[x] && is_power_event(&s.nodes[x])) {
			inx[x] = 1;
			order[sp++] = x;
		}
	while (sp > 0) {
		int x = order[--sp];
		nx++;
		for (int j = 0; j < s.nodes[x].nauth; j++) {
			int a = s.nodes[x].auth[j];
			if (fcs[a] && !inx[a]) {
				inx[a] = 1;
				order[sp++] = a;
			}
		}
	}
	/* Kahn's algorithm, smallest candidate first: auth events before the
	 * events that cite them */
	for (int x = 0; x < N; x++) {
		if (!inx[x])
			continue;
		for (int j = 0; j < s.nodes[x].nauth; j++) {
			int a = s.nodes[x].auth[j];
			bool dup = false;
			for (int q = 0; q < j && !dup; q++)
				dup = s.nodes[x].auth[q] == a;
			if (inx[a] && !dup)
				outdeg[x]++;
		}
	}
	int nout = 0;
	memset(marks, 0, NB); /* 1 = emitted */
	while (nout < nx) {
		int best = -1;
		for (int x = 0; x < N; x++)
			if (inx[x] && !marks[x] && outdeg[x] == 0 && (best < 0 || power_cmp(&s, x, best) < 0))
				best = x;
		if (best < 0)
			break; /* a cycle cannot happen with hashed IDs; stop */
		marks[best] = 1;
		order[nout++] = best;
		for (int y = 0; y < N; y++) {
			if (!inx[y] || marks[y])
				continue;
			for (int j = 0; j < s.nodes[y].nauth; j++) {
				bool dup = false;
				for (int q = 0; q < j && !dup; q++)
					dup = s.nodes[y].auth[q] == s.nodes[y].auth[j];
				if (s.nodes[y].auth[j] == best && !dup)
					outdeg[y]--;
			}
		}
	}
	/* 4. iterative auth checks from the unconflicted state */
	json_t *partial = json_deep_copy(unconflicted);
	iterative_auth(&s, order, nout, partial);
	/* 5. the other events, in mainline order of the resolved power levels */
	int nrest = 0;
	for (int x = 0; x < N; x++)
		if (fcs[x] && !inx[x])
			rest[nrest++] = x;
	if (nrest > 0) {
		/* the mainline of the resolved power levels; mdepth[x] is the
		 * position of x on it counted from the root (1), 0 when off it */
		int ml[1024];
		int nml = 0;
		char plk[ROOM_AUTH_KEY_MAX + 1];
		room_auth_key("m.room.power_levels", "", plk, sizeof(plk));
		const char *pid = json_string_value(json_object_get(partial, plk));
		int p = pid ? node_index(&s, pid) : -1;
		while (p >= 0 && nml < 1024) {
			ml[nml++] = p;
			p = pl_auth_of(&s, &s.nodes[p]);
		}
		long *mdepth = calloc(NB + 1, sizeof(long));
		items = calloc((size_t)nrest, sizeof(*items));
		if (!mdepth || !items) {
			free(mdepth);
			json_decref(partial);
			al_error_set(err, 500, "M_UNKNOWN", "out of memory");
			goto done;
		}
		for (int i = 0; i < nml; i++)
			mdepth[ml[i]] = nml - i;
		for (int i = 0; i < nrest; i++) {
			int e = rest[i];
			long d = 0;
			int guard = 0;
			while (e >= 0 && guard++ < 100000) {
				if (mdepth[e]) {
					d = mdepth[e];
					break;
				}
				e = pl_auth_of(&s, &s.nodes[e]);
			}
			items[i].node = rest[i];
			items[i].depth = d;
			items[i].ts = s.nodes[rest[i]].ts;
			items[i].id = s.nodes[rest[i]].id;
		}
		free(mdepth);
		qsort(items, (size_t)nrest, sizeof(*items), mainline_cmp);
		for (int i = 0; i < nrest; i++)
			rest[i] = items[i].node;
		iterative_auth(&s, rest, nrest, partial);
	}
	/* 6. the unconflicted state wins */
	json_object_update(partial, unconflicted);
	out = partial;
done:
	json_decref(unconflicted);
	free(conflicted);
	free(fcs);
	free(inx);
	free(marks);
	free(order);
	free(outdeg);
	free(rest);
	free(items);
	sr_free(&s);
	return out;
}
