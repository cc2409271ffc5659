#include "room_auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int room_auth_key(const char *type, const char *state_key, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s\x1f%s", type, state_key ? state_key : "");
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

json_t *room_auth_state_get(const json_t *state, const char *type, const char *state_key)
{
	char k[ROOM_AUTH_KEY_MAX + 1];
	if (!state || room_auth_key(type, state_key, k, sizeof(k)) < 0)
		return NULL;
	return json_object_get(state, k);
}

static json_t *content_of(const json_t *ev)
{
	json_t *c = json_object_get(ev, "content");
	return json_is_object(c) ? c : NULL;
}

/* An integer level; pre-v10 rooms also accept decimal strings. */
static bool level_value(const json_t *v, bool ints_only, long *out)
{
	if (json_is_integer(v)) {
		*out = (long)json_integer_value(v);
		return true;
	}
	if (!ints_only && json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		errno = 0;
		long x = strtol(s, &end, 10);
		if (*s && !*end && !errno) {
			*out = x;
			return true;
		}
	}
	return false;
}

static long level_or(const json_t *obj, const char *key, long dflt)
{
	long v;
	return level_value(json_object_get(obj, key), false, &v) ? v : dflt;
}

const char *room_auth_membership(const json_t *state, const char *user_id)
{
	const json_t *m = room_auth_state_get(state, "m.room.member", user_id);
	const char *s = m ? json_string_value(json_object_get(content_of(m), "membership")) : NULL;
	return s ? s : "leave";
}

static const char *creator_of(const json_t *create)
{
	const char *c = json_string_value(json_object_get(content_of(create), "creator"));
	return c ? c : json_string_value(json_object_get(create, "sender"));
}

long room_auth_user_level(const json_t *state, const char *user_id)
{
	json_t *pl = room_auth_state_get(state, "m.room.power_levels", "");
	if (!pl) {
		json_t *create = room_auth_state_get(state, "m.room.create", "");
		const char *creator = create ? creator_of(create) : NULL;
		return creator && user_id && strcmp(creator, user_id) == 0 ? 100 : 0;
	}
	json_t *c = content_of(pl);
	long v;
	if (level_value(json_object_get(json_object_get(c, "users"), user_id), false, &v))
		return v;
	return level_or(c, "users_default", 0);
}

long room_auth_event_level(const json_t *state, const char *type, bool is_state)
{
	json_t *pl = room_auth_state_get(state, "m.room.power_levels", "");
	if (!pl) /* the defaults, as Synapse applies them: only the creator sends state */
		return is_state ? 50 : 0;
	json_t *c = content_of(pl);
	long v;
	if (level_value(json_object_get(json_object_get(c, "events"), type), false, &v))
		return v;
	return is_state ? level_or(c, "state_default", 50) : level_or(c, "events_default", 0);
}

long room_auth_named_level(const json_t *state, const char *name)
{
	json_t *pl = room_auth_state_get(state, "m.room.power_levels", "");
	long dflt = strcmp(name, "invite") == 0 ? 0 : 50;
	if (!pl)
		return dflt;
	return level_or(content_of(pl), name, dflt);
}

static int deny(struct al_error *err, const char *why)
{
	return al_error_set(err, 403, "M_FORBIDDEN", "%s", why);
}

static bool user_id_valid(const char *s)
{
	return s && s[0] == '@' && strchr(s + 1, ':') && strlen(s) <= 255;
}

static int check_member(const struct event_rules *r, const json_t *ev, const json_t *state, bool is_first,
			struct al_error *err)
{
	const char *sender = json_string_value(json_object_get(ev, "sender"));
	const char *target = json_string_value(json_object_get(ev, "state_key"));
	json_t *c = content_of(ev);
	const char *membership = c ? json_string_value(json_object_get(c, "membership")) : NULL;
	if (!target || !membership)
		return deny(err, "member event without state_key or membership");
	if (!user_id_valid(target))
		return deny(err, "state_key of a member event must be a user ID");
	const char *sender_m = room_auth_membership(state, sender);
	const char *target_m = room_auth_membership(state, target);
	json_t *jr = room_auth_state_get(state, "m.room.join_rules", "");
	const char *join_rule = jr ? json_string_value(json_object_get(content_of(jr), "join_rule")) : NULL;
	if (!join_rule)
		join_rule = "invite";
	long sender_level = room_auth_user_level(state, sender);
	long target_level = room_auth_user_level(state, target);

	if (strcmp(membership, "join") == 0) {
		json_t *create = room_auth_state_get(state, "m.room.create", "");
		if (is_first && create && creator_of(create) && strcmp(creator_of(create), target) == 0)
			return 0;
		if (strcmp(sender, target) != 0)
			return deny(err, "cannot make another user join");
		if (strcmp(sender_m, "ban") == 0)
			return deny(err, "user is banned from this room");
		if (strcmp(join_rule, "public") == 0)
			return 0;
		if (strcmp(sender_m, "join") == 0 || strcmp(sender_m, "invite") == 0) {
			if (strcmp(join_rule, "invite") == 0 || (r->knock && strcmp(join_rule, "knock") == 0) ||
			    (r->restricted && (strcmp(join_rule, "restricted") == 0 ||
					       (r->version >= 10 && strcmp(join_rule, "knock_restricted") == 0))))
				return 0;
		}
		return deny(err, "you are not invited to this room");
	}
	if (strcmp(membership, "invite") == 0) {
		if (json_object_get(c, "third_party_invite"))
			return deny(err, "third-party invites are not supported");
		if (strcmp(sender_m, "join") != 0)
			return deny(err, "you are not in this room");
		if (strcmp(target_m, "ban") == 0)
			return deny(err, "the user is banned from this room");
		if (strcmp(target_m, "join") == 0)
			return deny(err, "the user is already in this room");
		if (sender_level < room_auth_named_level(state, "invite"))
			return deny(err, "your power level is too low to invite");
		return 0;
	}
	if (strcmp(membership, "leave") == 0) {
		if (strcmp(sender, target) == 0) {
			if (strcmp(sender_m, "join") == 0 || strcmp(sender_m, "invite") == 0 ||
			    (r->knock && strcmp(sender_m, "knock") == 0))
				return 0;
			return deny(err, "you are not in this room");
		}
		if (strcmp(sender_m, "join") != 0)
			return deny(err, "you are not in this room");
		if (strcmp(target_m, "ban") == 0 && sender_level < room_auth_named_level(state, "ban"))
			return deny(err, "your power level is too low to unban");
		if (sender_level >= room_auth_named_level(state, "kick") && target_level < sender_level)
			return 0;
		return deny(err, "your power level is too low to kick this user");
	}
	if (strcmp(membership, "ban") == 0) {
		if (strcmp(sender_m, "join") != 0)
			return deny(err, "you are not in this room");
		if (sender_level >= room_auth_named_level(state, "ban") && target_level < sender_level)
			return 0;
		return deny(err, "your power level is too low to ban this user");
	}
	if (strcmp(membership, "knock") == 0 && r->knock) {
		if (strcmp(join_rule, "knock") != 0 &&
		    !(r->version >= 10 && strcmp(join_rule, "knock_restricted") == 0))
			return deny(err, "this room does not accept knocks");
		if (strcmp(sender, target) != 0)
			return deny(err, "cannot knock on behalf of another user");
		if (strcmp(sender_m, "ban") != 0 && strcmp(sender_m, "invite") != 0 && strcmp(sender_m, "join") != 0)
			return 0;
		return deny(err, "you cannot knock in your current membership");
	}
	return deny(err, "unknown membership");
}

/* v10+: every level in power_levels content must be an integer. */
static bool pl_types_ok(const struct event_rules *r, json_t *c)
{
	static const char *const named[] = {"users_default", "events_default", "state_default", "ban",
					    "redact",        "kick",           "invite",        NULL};
	long v;
	for (const char *const *n = named; *n; n++) {
		json_t *x = json_object_get(c, *n);
		if (x && !level_value(x, r->integer_power_levels, &v))
			return false;
	}
	static const char *const maps[] = {"events", "users", "notifications", NULL};
	for (const char *const *m = maps; *m; m++) {
		json_t *obj = json_object_get(c, *m);
		if (!obj)
			continue;
		if (!json_is_object(obj))
			return false;
		const char *k;
		json_t *x;
		json_object_foreach(obj, k, x)
		{
			if (!level_value(x, r->integer_power_levels, &v))
				return false;
			if (strcmp(*m, "users") == 0 && !user_id_valid(k))
				return false;
		}
	}
	return true;
}

/* Does a change of one level from old (present?) to new pass? */
static bool level_change_ok(const json_t *o, const json_t *n, long dflt, long sender_level)
{
	long ov = dflt, nv = dflt;
	bool have_o = o && level_value(o, false, &ov), have_n = n && level_value(n, false, &nv);
	if (have_o == have_n && ov == nv)
		return true;
	if (have_o && ov > sender_level)
		return false;
	if (have_n && nv > sender_level)
		return false;
	return true;
}

static int check_power_levels(const struct event_rules *r, const json_t *ev, const json_t *state, struct al_error *err)
{
	json_t *c = content_of(ev);
	if (!c || !pl_types_ok(r, c))
		return deny(err, "power levels must be integers and users must be user IDs");
	json_t *old = room_auth_state_get(state, "m.room.power_levels", "");
	if (!old)
		return 0;
	json_t *oc = content_of(old);
	const char *sender = json_string_value(json_object_get(ev, "sender"));
	long sl = room_auth_user_level(state, sender);
	static const char *const named[] = {"users_default", "events_default", "state_default", "ban",
					    "redact",        "kick",           "invite",        NULL};
	for (const char *const *n = named; *n; n++)
		if (!level_change_ok(json_object_get(oc, *n), json_object_get(c, *n), 0, sl))
			return deny(err, "cannot change a power level above your own");
	static const char *const maps[] = {"events", "notifications", NULL};
	for (const char *const *m = maps; *m; m++) {
		json_t *om = json_object_get(oc, *m), *nm = json_object_get(c, *m);
		const char *k;
		json_t *x;
		json_object_foreach(om, k, x)
		{
			if (!level_change_ok(x, json_object_get(nm, k), 0, sl))
				return deny(err, "cannot change a power level above your own");
		}
		json_object_foreach(nm, k, x)
		{
			if (!level_change_ok(json_object_get(om, k), x, 0, sl))
				return deny(err, "cannot change a power level above your own");
		}
	}
	json_t *ou = json_object_get(oc, "users"), *nu = json_object_get(c, "users");
	const char *k;
	json_t *x;
	json_object_foreach(ou, k, x)
	{
		json_t *y = json_object_get(nu, k);
		long ov = 0, nv = 0;
		level_value(x, false, &ov);
		if (y && level_value(y, false, &nv) && nv == ov)
			continue;
		if (strcmp(k, sender) != 0 && ov >= sl)
			return deny(err, "cannot change the power level of a user at or above your own");
		if (y && nv > sl)
			return deny(err, "cannot raise a user above your own power level");
	}
	json_object_foreach(nu, k, x)
	{
		if (json_object_get(ou, k))
			continue;
		long nv = 0;
		level_value(x, false, &nv);
		if (nv > sl)
			return deny(err, "cannot raise a user above your own power level");
	}
	return 0;
}

int room_auth_check(const struct event_rules *r, const json_t *ev, const json_t *state, bool is_first,
		    struct al_error *err)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	const char *sender = json_string_value(json_object_get(ev, "sender"));
	json_t *skv = json_object_get(ev, "state_key");
	const char *state_key = json_string_value(skv);
	if (!type || !sender)
		return deny(err, "event without type or sender");
	if (strcmp(type, "m.room.create") == 0 && state_key && !*state_key) {
		json_t *prev = json_object_get(ev, "prev_events");
		if (json_array_size(prev) > 0)
			return deny(err, "m.room.create must be the first event");
		if (!r->creator_is_sender && !json_string_value(json_object_get(content_of(ev), "creator")))
			return deny(err, "m.room.create needs content.creator in this room version");
		return 0;
	}
	json_t *create = room_auth_state_get(state, "m.room.create", "");
	if (!create)
		return deny(err, "no m.room.create event in the room state");
	if (strcmp(type, "m.room.member") == 0)
		return check_member(r, ev, state, is_first, err);
	if (strcmp(room_auth_membership(state, sender), "join") != 0)
		return deny(err, "you are not in this room");
	long sl = room_auth_user_level(state, sender);
	if (room_auth_event_level(state, type, skv != NULL) > sl)
		return deny(err, "your power level is too low to send this event");
	if (state_key && state_key[0] == '@' && strcmp(state_key, sender) != 0)
		return deny(err, "state keys starting with @ belong to that user");
	if (strcmp(type, "m.room.power_levels") == 0 && state_key && !*state_key)
		return check_power_levels(r, ev, state, err);
	return 0;
}

int room_auth_select(const json_t *ev, const json_t *state, const char **ids, int max,
		     const char *(*get_id)(const json_t *pdu))
{
	int n = 0;
	const char *type = json_string_value(json_object_get(ev, "type"));
	const char *sender = json_string_value(json_object_get(ev, "sender"));
	if (type && strcmp(type, "m.room.create") == 0)
		return 0;
	const json_t *pick[5] = {0};
	pick[0] = room_auth_state_get(state, "m.room.create", "");
	pick[1] = room_auth_state_get(state, "m.room.power_levels", "");
	pick[2] = room_auth_state_get(state, "m.room.member", sender);
	if (type && strcmp(type, "m.room.member") == 0) {
		const char *target = json_string_value(json_object_get(ev, "state_key"));
		const char *m = json_string_value(json_object_get(content_of(ev), "membership"));
		if (target && strcmp(target, sender) != 0)
			pick[3] = room_auth_state_get(state, "m.room.member", target);
		if (m && (strcmp(m, "join") == 0 || strcmp(m, "invite") == 0 || strcmp(m, "knock") == 0))
			pick[4] = room_auth_state_get(state, "m.room.join_rules", "");
	}
	for (int i = 0; i < 5 && n < max; i++) {
		const char *id = pick[i] ? get_id(pick[i]) : NULL;
		if (id)
			ids[n++] = id;
	}
	return n;
}
