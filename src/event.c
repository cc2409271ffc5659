#include "event.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "cjson.h"

int event_rules_for(const char *version, struct event_rules *out)
{
	if (!version)
		return -1;
	char *end = NULL;
	long v = strtol(version, &end, 10);
	if (!*version || *end || v < 1 || v > 11 || version[0] == '0')
		return -1;
	memset(out, 0, sizeof(*out));
	out->version = (int)v;
	out->id_format = v <= 2 ? 1 : v == 3 ? 3 : 4;
	out->redact_v11 = v >= 11;
	out->keep_aliases = v <= 5;
	out->keep_join_allow = v >= 8;
	out->keep_authorised_via = v >= 9;
	out->redacts_in_content = v >= 11;
	out->knock = v >= 7;
	out->restricted = v >= 8;
	out->integer_power_levels = v >= 10;
	out->creator_is_sender = v >= 11;
	return 0;
}

static bool in_list(const char *k, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(k, *list) == 0)
			return true;
	return false;
}

static void keep_keys(json_t *src, json_t *dst, const char *const *keys)
{
	for (; *keys; keys++) {
		json_t *v = json_object_get(src, *keys);
		if (v)
			json_object_set(dst, *keys, v);
	}
}

json_t *event_redact(const json_t *ev, const struct event_rules *r)
{
	static const char *const top_old[] = {
		"event_id",   "type",  "room_id",     "sender",     "state_key",   "content", "hashes",
		"signatures", "depth", "prev_events", "prev_state", "auth_events", "origin",  "origin_server_ts",
		"membership", NULL};
	static const char *const top_v11[] = {
		"event_id",   "type",  "room_id",     "sender",      "state_key",        "content", "hashes",
		"signatures", "depth", "prev_events", "auth_events", "origin_server_ts", NULL};
	if (!json_is_object(ev))
		return NULL;
	json_t *out = json_object();
	if (!out)
		return NULL;
	const char *k;
	json_t *v;
	const char *const *top = r->redact_v11 ? top_v11 : top_old;
	json_object_foreach((json_t *)ev, k, v)
	{
		if (strcmp(k, "content") != 0 && in_list(k, top))
			json_object_set(out, k, v);
	}
	json_t *content = json_object_get(ev, "content");
	json_t *nc = json_object();
	if (!nc) {
		json_decref(out);
		return NULL;
	}
	const char *type = event_str(ev, "type");
	if (json_is_object(content) && type) {
		if (strcmp(type, "m.room.member") == 0) {
			static const char *const m[] = {"membership", NULL};
			keep_keys(content, nc, m);
			if (r->keep_authorised_via) {
				static const char *const a[] = {"join_authorised_via_users_server", NULL};
				keep_keys(content, nc, a);
			}
			json_t *tpi = json_object_get(content, "third_party_invite");
			if (r->redact_v11 && json_is_object(tpi) && json_object_get(tpi, "signed")) {
				json_t *t = json_object();
				json_object_set(t, "signed", json_object_get(tpi, "signed"));
				json_object_set_new(nc, "third_party_invite", t);
			}
		} else if (strcmp(type, "m.room.create") == 0) {
			if (r->redact_v11) {
				json_object_update(nc, content);
			} else {
				static const char *const c[] = {"creator", NULL};
				keep_keys(content, nc, c);
			}
		} else if (strcmp(type, "m.room.join_rules") == 0) {
			static const char *const j[] = {"join_rule", NULL};
			keep_keys(content, nc, j);
			if (r->keep_join_allow) {
				static const char *const a[] = {"allow", NULL};
				keep_keys(content, nc, a);
			}
		} else if (strcmp(type, "m.room.power_levels") == 0) {
			static const char *const p[] = {"ban",           "events", "events_default", "kick", "redact",
							"state_default", "users",  "users_default",  NULL};
			keep_keys(content, nc, p);
			if (r->redact_v11) {
				static const char *const i[] = {"invite", NULL};
				keep_keys(content, nc, i);
			}
		} else if (strcmp(type, "m.room.aliases") == 0 && r->keep_aliases) {
			static const char *const a[] = {"aliases", NULL};
			keep_keys(content, nc, a);
		} else if (strcmp(type, "m.room.history_visibility") == 0) {
			static const char *const h[] = {"history_visibility", NULL};
			keep_keys(content, nc, h);
		} else if (strcmp(type, "m.room.redaction") == 0 && r->redact_v11) {
			static const char *const h[] = {"redacts", NULL};
			keep_keys(content, nc, h);
		}
	}
	json_object_set_new(out, "content", nc);
	return out;
}

static char *canonical_without(const json_t *ev, const char *const *drop, size_t *len, struct al_error *err)
{
	json_t *c = json_copy((json_t *)ev); /* shallow copy: members shared */
	if (!c) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	for (; *drop; drop++)
		json_object_del(c, *drop);
	char *s = cjson_encode(c, len, err);
	json_decref(c);
	return s;
}

int event_content_hash(const json_t *ev, char out[EVENT_HASH_B64_LEN + 1], struct al_error *err)
{
	static const char *const drop[] = {"unsigned", "signatures", "hashes", NULL};
	if (!json_is_object(ev))
		return al_error_set(err, 400, "M_BAD_JSON", "event is not an object");
	size_t len;
	char *s = canonical_without(ev, drop, &len, err);
	if (!s)
		return -1;
	unsigned char h[32];
	crypto_hash_sha256(h, (const unsigned char *)s, len);
	free(s);
	char *b = b64_encode(h, sizeof(h));
	if (!b)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	memcpy(out, b, EVENT_HASH_B64_LEN);
	out[EVENT_HASH_B64_LEN] = 0;
	free(b);
	return 0;
}

int event_reference_hash(const json_t *ev, const struct event_rules *r, unsigned char out[32], struct al_error *err)
{
	static const char *const drop[] = {"signatures", "unsigned", NULL};
	static const char *const drop_id[] = {"signatures", "unsigned", "event_id", NULL};
	json_t *red = event_redact(ev, r);
	if (!red)
		return al_error_set(err, 400, "M_BAD_JSON", "event is not an object");
	size_t len;
	char *s = canonical_without(red, r->id_format >= 3 ? drop_id : drop, &len, err);
	json_decref(red);
	if (!s)
		return -1;
	crypto_hash_sha256(out, (const unsigned char *)s, len);
	free(s);
	return 0;
}

int event_compute_id(const json_t *ev, const struct event_rules *r, char *out, size_t outlen, struct al_error *err)
{
	if (r->id_format == 1) {
		const char *id = event_str(ev, "event_id");
		if (!id || strlen(id) + 1 > outlen)
			return al_error_set(err, 400, "M_BAD_JSON", "event has no event_id");
		memcpy(out, id, strlen(id) + 1);
		return 0;
	}
	unsigned char h[32];
	if (event_reference_hash(ev, r, h, err) < 0)
		return -1;
	char *b = r->id_format == 3 ? b64_encode(h, 32) : b64url_encode(h, 32);
	if (!b)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	int n = snprintf(out, outlen, "$%s", b);
	free(b);
	if (n < 0 || (size_t)n >= outlen)
		return al_error_set(err, 500, "M_UNKNOWN", "event ID buffer too small");
	return 0;
}

int event_hash_and_sign(json_t *ev, const struct event_rules *r, const char *server_name, const struct sign_key *key,
			struct al_error *err)
{
	char h[EVENT_HASH_B64_LEN + 1];
	if (event_content_hash(ev, h, err) < 0)
		return -1;
	if (json_object_set_new(ev, "hashes", json_pack("{s:s}", "sha256", h)) < 0)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	json_t *red = event_redact(ev, r);
	if (!red)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	json_object_del(red, "signatures");
	int rc = sign_json(red, server_name, key, err);
	if (rc == 0) {
		json_t *sigs = json_object_get(ev, "signatures");
		if (!json_is_object(sigs)) {
			sigs = json_object();
			json_object_set_new(ev, "signatures", sigs);
		}
		json_t *mine = json_object_get(json_object_get(red, "signatures"), server_name);
		json_t *have = json_object_get(sigs, server_name);
		if (json_is_object(have))
			json_object_update(have, mine);
		else
			json_object_set(sigs, server_name, mine);
	}
	json_decref(red);
	return rc;
}

int event_check_content_hash(const json_t *ev, struct al_error *err)
{
	char h[EVENT_HASH_B64_LEN + 1];
	const char *given = json_string_value(json_object_get(json_object_get(ev, "hashes"), "sha256"));
	if (!given)
		return al_error_set(err, 400, "M_BAD_JSON", "event has no sha256 hash");
	if (event_content_hash(ev, h, err) < 0)
		return -1;
	if (strcmp(h, given) != 0)
		return al_error_set(err, 400, "M_BAD_JSON", "content hash mismatch");
	return 0;
}

long event_canonical_size(const json_t *ev)
{
	size_t len;
	char *s = cjson_encode(ev, &len, NULL);
	if (!s)
		return -1;
	free(s);
	return (long)len;
}

const char *event_ref_id(const json_t *entry)
{
	if (json_is_string(entry))
		return json_string_value(entry);
	if (json_is_array(entry) && json_array_size(entry) == 2)
		return json_string_value(json_array_get(entry, 0));
	return NULL;
}

json_t *event_ref_ids(const json_t *list)
{
	json_t *out = json_array();
	size_t i;
	json_t *v;
	json_array_foreach((json_t *)list, i, v)
	{
		const char *id = event_ref_id(v);
		if (id)
			json_array_append_new(out, json_string(id));
	}
	return out;
}

json_t *event_ref_make(const json_t *pdu, const char *id, const struct event_rules *r)
{
	if (r->id_format != 1)
		return json_string(id);
	unsigned char h[32];
	if (!pdu || event_reference_hash(pdu, r, h, NULL) < 0)
		return NULL;
	char *b = b64_encode(h, sizeof(h));
	json_t *e = b ? json_pack("[s, {s:s}]", id, "sha256", b) : NULL;
	free(b);
	return e;
}

const char *event_str(const json_t *ev, const char *key)
{
	return json_string_value(json_object_get(ev, key));
}

const char *event_content_str(const json_t *ev, const char *key)
{
	return json_string_value(json_object_get(json_object_get(ev, "content"), key));
}

json_t *event_to_client(const json_t *pdu, const char *event_id)
{
	static const char *const keep[] = {"content", "origin_server_ts", "room_id", "sender", "state_key",
					   "type",    "unsigned",         "redacts", NULL};
	json_t *o = json_object();
	if (!o)
		return NULL;
	keep_keys((json_t *)pdu, o, keep);
	json_object_set_new(o, "event_id", json_string(event_id));
	if (!json_object_get(o, "redacts")) {
		const char *type = event_str(pdu, "type");
		const char *rd = event_content_str(pdu, "redacts");
		if (type && rd && strcmp(type, "m.room.redaction") == 0)
			json_object_set_new(o, "redacts", json_string(rd));
	}
	return o;
}
