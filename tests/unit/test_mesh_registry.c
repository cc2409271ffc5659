/* test_mesh_registry.c - registry in memory: heartbeats, online window,
 * relay eligibility, cache invalidation on offline / trust loss, removal. */
#include <stdio.h>
#include <string.h>

#include "mesh_registry.h"
#include "unit.h"

static void info(struct mesh_node_info *in, int i, const char *aura, int type, double lat, double lon, double rep,
		 int64_t now)
{
	memset(in, 0, sizeof(*in));
	snprintf(in->node_id, sizeof(in->node_id), "00000000-0000-0000-0000-%012d", i);
	snprintf(in->aura_id, sizeof(in->aura_id), "%s", aura);
	snprintf(in->user_id, sizeof(in->user_id), "@u%s:test", aura + 1);
	in->type = type;
	in->max_connections = 10;
	in->bandwidth_capacity_mbps = 100;
	in->has_position = true;
	in->latitude = lat;
	in->longitude = lon;
	in->supports_audio = in->supports_video = true;
	in->accepting_connections = in->is_online = true;
	in->last_heartbeat_ms = in->created_ms = now;
	in->reputation_score = rep;
	in->uptime_percentage = 100;
}

/* alice in London and bob in Sydney (peers, nodes 1 and 2) and a relay in
 * Singapore (node 3); in is left holding the relay. */
static void add_far_peers_and_relay(struct mesh_registry *r, struct mesh_node_info *in, int64_t now)
{
	info(in, 1, "@alice.aura", MESH_PEER, 51.5, -0.1, 50, now);
	ck_assert_int_eq(mesh_registry_add(r, in, now), 0);
	info(in, 2, "@bob.aura", MESH_PEER, -33.9, 151.2, 50, now);
	ck_assert_int_eq(mesh_registry_add(r, in, now), 0);
	info(in, 3, "@relay.aura", MESH_RELAY, 1.35, 103.8, 80, now);
	ck_assert_int_eq(mesh_registry_add(r, in, now), 0);
}

START_TEST(lifecycle_and_routes)
{
	int64_t now = 1000000;
	struct mesh_registry *r = mesh_registry_new(90000, 1000);
	struct mesh_node_info in;
	struct al_error err = {0};
	add_far_peers_and_relay(r, &in, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), -1); /* duplicate */
	size_t online = 0;
	ck_assert_uint_eq(mesh_registry_count(r, &online), 3);
	ck_assert_uint_eq(online, 3);

	/* make the direct link look terrible: the relay wins */
	const char ids_direct[2][37] = {"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"};
	for (int k = 0; k < 5; k++)
		mesh_registry_feedback(r, "x", ids_direct, 2, 400, false);
	struct mesh_cached_route rt;
	struct mesh_find_stats st;
	ck_assert_int_eq(
		mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now, &rt, &st, &err), 0);
	ck_assert(!st.cached);
	ck_assert_msg(rt.n == 3, "n %d lat %f score %f relays %zu", rt.n, rt.pm.latency_ms, rt.score,
		      st.relays_considered);
	ck_assert_str_eq(rt.node_ids[1], "00000000-0000-0000-0000-000000000003");
	snprintf(rt.route_id, sizeof(rt.route_id), "r1");
	mesh_registry_cache_put(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, &rt);
	ck_assert_int_eq(
		mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now, &rt, &st, &err), 0);
	ck_assert(st.cached);

	/* the relay loses trust: the cached route is dropped and it is not used */
	double prev, nw;
	ck_assert_int_eq(mesh_registry_reputation(r, "00000000-0000-0000-0000-000000000003", -20,
						  MESH_REP_ADMIN_ADJUSTMENT, "test", NULL, &prev, &nw, &err),
			 0);
	ck_assert_double_eq(prev, 80);
	ck_assert_double_eq(nw, 60);
	ck_assert_int_eq(
		mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now, &rt, &st, &err), 0);
	ck_assert(!st.cached);
	ck_assert_int_eq(rt.n, 2);
	ck_assert_uint_eq(st.relays_considered, 0);

	/* trusted again but full (8 of 10 connections): not eligible */
	mesh_registry_reputation(r, "00000000-0000-0000-0000-000000000003", 20, MESH_REP_ADMIN_ADJUSTMENT, NULL, NULL,
				 NULL, NULL, &err);
	struct mesh_heartbeat hb = {8, -1, -1, -1, -1};
	int64_t retry = 0;
	ck_assert_int_eq(mesh_registry_heartbeat(r, "00000000-0000-0000-0000-000000000003", "@someone:test", &hb,
						 now + 2000, &retry, &err),
			 -1);
	ck_assert_int_eq(err.status, 403);
	/* the first beat after registration is never limited */
	ck_assert_int_eq(mesh_registry_heartbeat(r, "00000000-0000-0000-0000-000000000003", "@urelay.aura:test", &hb,
						 now + 2000, &retry, &err),
			 0);
	ck_assert_int_eq(mesh_registry_heartbeat(r, "00000000-0000-0000-0000-000000000003", "@urelay.aura:test", &hb,
						 now + 2500, &retry, &err),
			 -1);
	ck_assert_int_eq(err.status, 429);
	ck_assert_int_eq(retry, 500);
	ck_assert_int_eq(
		mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now + 2000, &rt, &st, &err),
		0);
	ck_assert_uint_eq(st.relays_considered, 0);
	hb.current_connections = 7;
	ck_assert_int_eq(mesh_registry_heartbeat(r, "00000000-0000-0000-0000-000000000003", "@urelay.aura:test", &hb,
						 now + 4000, &retry, &err),
			 0);
	ck_assert_int_eq(
		mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now + 4000, &rt, &st, &err),
		0);
	ck_assert_uint_eq(st.relays_considered, 1);
	ck_assert_int_eq(rt.n, 3);
	snprintf(rt.route_id, sizeof(rt.route_id), "r2");
	mesh_registry_cache_put(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, &rt);

	/* expiry: only the relay keeps beating; the endpoints go offline */
	ck_assert_int_eq(mesh_registry_heartbeat(r, "00000000-0000-0000-0000-000000000003", "@urelay.aura:test", &hb,
						 now + 80000, &retry, &err),
			 0);
	ck_assert_int_eq(mesh_registry_sweep(r, now + 91000), 2);
	mesh_registry_count(r, &online);
	ck_assert_uint_eq(online, 1);
	ck_assert_int_eq(
		mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now + 91000, &rt, &st, &err),
		-1);
	ck_assert_int_eq(err.status, 404);
	json_t *j = mesh_registry_node_json(r, "00000000-0000-0000-0000-000000000001", now + 91000);
	ck_assert(json_is_false(json_object_get(j, "is_online")));
	ck_assert_double_eq(json_real_value(json_object_get(j, "reputation_score")), 39);
	json_decref(j);
	ck_assert_uint_gt(mesh_rep_queue_len(mesh_registry_events(r)), 5);

	/* dirty set drained once */
	struct mesh_node_info *dirty = NULL;
	size_t nd = mesh_registry_take_dirty(r, &dirty);
	ck_assert_uint_eq(nd, 3);
	free(dirty);
	ck_assert_uint_eq(mesh_registry_take_dirty(r, &dirty), 0);

	ck_assert_int_eq(mesh_registry_remove(r, "00000000-0000-0000-0000-000000000001"), 0);
	ck_assert_int_eq(mesh_registry_remove(r, "00000000-0000-0000-0000-000000000001"), -1);
	j = mesh_registry_aura_json(r, "@alice.aura", now + 91000);
	ck_assert_uint_eq(json_array_size(j), 0);
	json_decref(j);
	mesh_registry_free(r);
}
END_TEST

START_TEST(many_nodes_per_aura_and_bans)
{
	int64_t now = 5000;
	struct mesh_registry *r = mesh_registry_new(90000, 0);
	struct mesh_node_info in;
	struct al_error err = {0};
	for (int i = 1; i <= 40; i++) {
		info(&in, i, i % 2 ? "@odd.aura" : "@even.aura", MESH_PEER, 10, 10, 50, now);
		ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	}
	for (int i = 1; i <= 40; i += 3) {
		char id[37];
		snprintf(id, sizeof(id), "00000000-0000-0000-0000-%012d", i);
		ck_assert_int_eq(mesh_registry_remove(r, id), 0);
	}
	json_t *j = mesh_registry_aura_json(r, "@odd.aura", now);
	json_t *k = mesh_registry_aura_json(r, "@even.aura", now);
	ck_assert_uint_eq(json_array_size(j) + json_array_size(k), 40 - 14);
	json_decref(j);
	json_decref(k);
	for (int i = 2; i <= 40; i += 3) {
		char id[37];
		snprintf(id, sizeof(id), "00000000-0000-0000-0000-%012d", i);
		json_t *n = mesh_registry_node_json(r, id, now);
		ck_assert_ptr_nonnull(n);
		json_decref(n);
	}
	ck_assert_int_eq(mesh_registry_may_register(r, "@odd.aura", &err), 0);
	mesh_registry_reputation(r, "00000000-0000-0000-0000-000000000003", -45, MESH_REP_ABUSE_CONFIRMED, NULL, NULL,
				 NULL, NULL, &err);
	ck_assert_int_eq(mesh_registry_may_register(r, "@odd.aura", &err), -1);
	ck_assert_int_eq(err.status, 403);
	mesh_registry_free(r);
}
END_TEST

/* Between two sweeps a node whose last heartbeat left the online window is
 * already offline for every reader: endpoint choice, relay eligibility,
 * cached routes, JSON records and the network status. */
START_TEST(stale_nodes_between_sweeps)
{
	int64_t now = 1000000, window = 90000;
	struct mesh_registry *r = mesh_registry_new(window, 0);
	struct mesh_node_info in;
	struct al_error err = {0};
	struct mesh_cached_route rt;
	struct mesh_find_stats st;
	add_far_peers_and_relay(r, &in, now);
	info(&in, 4, "@carol.aura", MESH_PEER, 48.9, 2.35, 50, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	const char *relay = "00000000-0000-0000-0000-000000000003";

	/* a route through the relay, cached */
	const char ids_direct[2][37] = {"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"};
	for (int k = 0; k < 5; k++)
		mesh_registry_feedback(r, "x", ids_direct, 2, 400, false);
	ck_assert_int_eq(
		mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now, &rt, &st, &err), 0);
	ck_assert_int_eq(rt.n, 3);
	snprintf(rt.route_id, sizeof(rt.route_id), "r1");
	mesh_registry_cache_put(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, &rt);

	/* the endpoints keep beating, the relay and carol do not; no sweep */
	struct mesh_heartbeat hb = {0, -1, -1, -1, -1};
	int64_t later = now + window, retry = 0;
	ck_assert_int_eq(mesh_registry_heartbeat(r, ids_direct[0], "@ualice.aura:test", &hb, later - 10, &retry, &err),
			 0);
	ck_assert_int_eq(mesh_registry_heartbeat(r, ids_direct[1], "@ubob.aura:test", &hb, later - 10, &retry, &err),
			 0);

	/* just inside the window: still online everywhere */
	json_t *j = mesh_registry_node_json(r, relay, later - 1);
	ck_assert(json_is_true(json_object_get(j, "is_online")));
	json_decref(j);
	ck_assert_int_eq(
		mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, later - 1, &rt, &st, &err),
		0);
	ck_assert(st.cached);

	/* at the window's end: the cached route is dropped, the relay is not
	 * eligible and carol has no endpoint, although the flags still say
	 * online (the sweeper has not run) */
	ck_assert_int_eq(
		mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, later, &rt, &st, &err), 0);
	ck_assert(!st.cached);
	ck_assert_int_eq(rt.n, 2);
	ck_assert_uint_eq(st.relays_considered, 0);
	ck_assert_int_eq(
		mesh_registry_find(r, "@alice.aura", "@carol.aura", MESH_MEDIA_AUDIO, false, later, &rt, &st, &err),
		-1);
	ck_assert_int_eq(err.status, 404);
	j = mesh_registry_node_json(r, relay, later);
	ck_assert(json_is_false(json_object_get(j, "is_online")));
	json_decref(j);
	j = mesh_registry_aura_json(r, "@carol.aura", later);
	ck_assert(json_is_false(json_object_get(json_array_get(j, 0), "is_online")));
	json_decref(j);
	j = mesh_registry_status_json(r, later);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "online_nodes")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "online_by_type"), "relay")), 0);
	json_decref(j);
	size_t online = 0;
	mesh_registry_count(r, &online);
	ck_assert_uint_eq(online, 4); /* the flags: the sweeper's job */
	ck_assert_int_eq(mesh_registry_sweep(r, later), 2);
	mesh_registry_free(r);
}
END_TEST

static json_t *remote_rec(const char *id, const char *type, double lat, double lon)
{
	return json_pack("{s:s, s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:f, s:b, s:b, s:b, s:b, s:b, s:b, s:f,"
			 " s:s, s:f, s:f, s:f, s:n, s:n, s:s, s:s}",
			 "node_id", id, "aura_id", "@bob.aura", "node_type", type, "max_connections", 10,
			 "current_connections", 0, "bandwidth_capacity_mbps", 100.0, "bandwidth_used_mbps", 0.0,
			 "avg_latency_ms", 5.0, "packet_loss_rate", 0.0, "supports_video", 1, "supports_audio", 1,
			 "supports_screen_share", 0, "supports_aic", 0, "accepting_connections", 1, "is_online", 1,
			 "reputation_score", 95.0, "trust_level", "verified", "uptime_percentage", 100.0, "latitude",
			 lat, "longitude", lon, "address", "port", "region", "ap-south", "country_code", "AU");
}

/* org.auralink.mesh_nodes answers: validated, replace the previous ones,
 * endpoints only, never flushed, gone after their TTL. */
START_TEST(remote_nodes)
{
	int64_t now = 1000000;
	struct mesh_registry *r = mesh_registry_new(90000, 0);
	struct mesh_node_info in;
	struct al_error err = {0};
	struct mesh_cached_route rt;
	struct mesh_find_stats st;
	info(&in, 1, "@alice.aura", MESH_PEER, 51.5, -0.1, 50, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	struct mesh_node_info *dirty = NULL;
	mesh_registry_take_dirty(r, &dirty); /* alice, registered */
	free(dirty);
	const char *b1 = "10000000-0000-0000-0000-0000000000b1", *b2 = "10000000-0000-0000-0000-0000000000B2";
	const char *u = "@bob:b.test";

	/* nothing before the answer */
	ck_assert(!mesh_registry_remote_fresh(r, "@bob.aura", now));
	ck_assert_int_eq(
		mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now, &rt, &st, &err), -1);
	ck_assert_int_eq(err.status, 404);

	json_t *a = json_array();
	json_array_append_new(a, remote_rec(b1, "peer", -33.9, 151.2));
	json_array_append_new(a, remote_rec(b2, "relay", -33.8, 151.0));
	ck_assert_int_eq(mesh_registry_add_remote(r, "@bob.aura", u, a, now, &err), 2);
	ck_assert(mesh_registry_remote_fresh(r, "@bob.aura", now));
	ck_assert_int_eq(
		mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now, &rt, &st, &err), 0);
	ck_assert_int_eq(rt.n, 2);
	json_t *j = mesh_registry_node_json(r, "10000000-0000-0000-0000-0000000000b2", now); /* ids lower-cased */
	ck_assert_ptr_nonnull(j);
	ck_assert(json_is_true(json_object_get(j, "is_remote")));
	ck_assert(json_is_true(json_object_get(j, "is_online")));
	json_decref(j);
	/* not the local owner's: no heartbeat, no owner, never flushed */
	char owner[64];
	ck_assert_int_eq(mesh_registry_owner(r, b1, owner, sizeof(owner), NULL, 0, &err), -1);
	struct mesh_heartbeat hb = {0, -1, -1, -1, -1};
	int64_t retry;
	ck_assert_int_eq(mesh_registry_heartbeat(r, b1, u, &hb, now, &retry, &err), -1);
	ck_assert_uint_eq(mesh_registry_take_dirty(r, &dirty), 0);
	free(dirty);
	/* the remote relay is no relay for local calls */
	info(&in, 2, "@carol.aura", MESH_PEER, 40.7, -74.0, 50, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	ck_assert_int_eq(
		mesh_registry_find(r, "@alice.aura", "@carol.aura", MESH_MEDIA_AUDIO, false, now, &rt, &st, &err), 0);
	ck_assert_uint_eq(st.relays_considered, 0);

	/* bad answers change nothing and name the field */
	struct {
		const char *key;
		json_t *value;
	} bad[] = {
		{"latitude", json_real(91)},
		{"longitude", json_string("east")},
		{"max_connections", json_integer(0)},
		{"current_connections", json_real(1.5)},
		{"packet_loss_rate", json_real(1.5)},
		{"reputation_score", json_real(101)},
		{"node_type", json_string("bogus")},
		{"node_id", json_string("not-a-uuid")},
		{"aura_id", json_string("@mallory.aura")},
		{"supports_aic", json_string("yes")},
		{"country_code", json_string("au")},
		{"region", json_string("")},
		{"access_delay_ms", json_real(-1)},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *x = json_array(), *rec = remote_rec("10000000-0000-0000-0000-0000000000b3", "peer", 0, 0);
		json_object_set_new(rec, bad[i].key, bad[i].value);
		json_array_append_new(x, remote_rec(b1, "peer", -33.9, 151.2));
		json_array_append_new(x, rec);
		memset(&err, 0, sizeof(err));
		ck_assert_int_eq(mesh_registry_add_remote(r, "@bob.aura", u, x, now, &err), -1);
		ck_assert_int_eq(err.status, 502);
		ck_assert_msg(strstr(err.message, bad[i].key), "%s: %s", bad[i].key, err.message);
		json_decref(x);
	}
	j = mesh_registry_aura_json(r, "@bob.aura", now);
	ck_assert_uint_eq(json_array_size(j), 2);
	json_decref(j);
	/* too many, a repeated id, a local node's id, a local AuraID */
	json_t *x = json_array();
	for (int i = 0; i <= MESH_MAX_NODES_PER_AURA; i++) {
		char id[37];
		snprintf(id, sizeof(id), "20000000-0000-0000-0000-%012d", i);
		json_array_append_new(x, remote_rec(id, "peer", 0, 0));
	}
	ck_assert_int_eq(mesh_registry_add_remote(r, "@bob.aura", u, x, now, &err), -1);
	json_decref(x);
	x = json_pack("[o, o]", remote_rec(b1, "peer", 0, 0), remote_rec(b1, "peer", 0, 0));
	ck_assert_int_eq(mesh_registry_add_remote(r, "@bob.aura", u, x, now, &err), -1);
	json_decref(x);
	x = json_pack("[o]", remote_rec("00000000-0000-0000-0000-000000000001", "peer", 0, 0));
	ck_assert_int_eq(mesh_registry_add_remote(r, "@bob.aura", u, x, now, &err), -1);
	ck_assert_int_eq(err.status, 502);
	json_decref(x);
	x = json_array();
	ck_assert_int_eq(mesh_registry_add_remote(r, "@alice.aura", u, x, now, &err), -1);
	ck_assert_int_eq(err.status, 409);
	ck_assert_int_eq(mesh_registry_add_remote(r, "@bob.aura", u, json_object_get(a, "x"), now, &err), -1);
	json_decref(x);

	/* a newer answer replaces the older: b2 left, b1 stays; offline skipped */
	json_decref(a);
	a = json_array();
	json_array_append_new(a, remote_rec(b1, "peer", -33.9, 151.2));
	json_t *off = remote_rec("10000000-0000-0000-0000-0000000000b4", "peer", 0, 0);
	json_object_set_new(off, "is_online", json_false());
	json_array_append_new(a, off);
	ck_assert_int_eq(mesh_registry_add_remote(r, "@bob.aura", u, a, now + 1000, &err), 1);
	j = mesh_registry_aura_json(r, "@bob.aura", now + 1000);
	ck_assert_uint_eq(json_array_size(j), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "node_id")), b1);
	json_decref(j);
	json_decref(a);

	/* TTL: usable until now + 1000 + MESH_REMOTE_TTL_MS, then swept away */
	int64_t end = now + 1000 + MESH_REMOTE_TTL_MS;
	ck_assert(mesh_registry_remote_fresh(r, "@bob.aura", end - 1));
	ck_assert(!mesh_registry_remote_fresh(r, "@bob.aura", end));
	ck_assert_int_eq(
		mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, end, &rt, &st, &err), -1);
	size_t before = mesh_registry_count(r, NULL);
	mesh_registry_sweep(r, end);
	ck_assert_uint_eq(mesh_registry_count(r, NULL), before - 1);
	ck_assert_ptr_null(mesh_registry_node_json(r, b1, end));
	mesh_registry_free(r);
}
END_TEST

/* is_optimal's judgement: the reported path re-scored with its measured
 * latency against the search's best path between its ends. */
START_TEST(rescore_after_feedback)
{
	int64_t now = 1000000;
	struct mesh_registry *r = mesh_registry_new(90000, 0);
	struct mesh_node_info in;
	info(&in, 1, "@alice.aura", MESH_PEER, 51.5, -0.13, 80, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	info(&in, 2, "@bob.aura", MESH_PEER, 48.86, 2.35, 80, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	info(&in, 3, "@relay.aura", MESH_RELAY, 50.85, 4.35, 80, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	const char direct[2][37] = {"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"};
	const char gone[2][37] = {"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000009"};
	double actual, best;
	bool same;
	/* as predicted: the direct path is the search's choice */
	ck_assert_int_eq(mesh_registry_rescore(r, direct, 2, 25, MESH_MEDIA_AUDIO, false, now, &actual, &best, &same),
			 0);
	ck_assert(same);
	ck_assert_double_eq(actual, best);
	/* measured slow, learned: the relayed path now beats it by far */
	for (int k = 0; k < 3; k++)
		mesh_registry_feedback(r, "x", direct, 2, 250, true);
	ck_assert_int_eq(mesh_registry_rescore(r, direct, 2, 250, MESH_MEDIA_AUDIO, false, now, &actual, &best, &same),
			 0);
	ck_assert(!same);
	ck_assert_msg(actual < best - MESH_OPTIMAL_TOLERANCE_POINTS, "actual %f best %f", actual, best);
	/* no judgement about a path with a node that is gone */
	ck_assert_int_eq(mesh_registry_rescore(r, gone, 2, 25, MESH_MEDIA_AUDIO, false, now, &actual, &best, &same),
			 -1);
	mesh_registry_free(r);
}
END_TEST

/* Heartbeats with avg_latency_ms give a node nobody measured its access
 * delay prior (mesh_model_heartbeat); predict reports the model's view. */
START_TEST(heartbeat_latency_prior)
{
	int64_t now = 1000000;
	struct mesh_registry *r = mesh_registry_new(90000, 0);
	struct mesh_node_info in;
	info(&in, 1, "@alice.aura", MESH_PEER, 51.5, -0.13, 80, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	info(&in, 2, "@bob.aura", MESH_PEER, 48.86, 2.35, 80, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	const char ids[2][37] = {"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"};
	struct mesh_path_metrics before, after;
	ck_assert_int_eq(mesh_registry_predict(r, ids, 2, &before), 0);
	json_t *j = mesh_registry_node_json(r, ids[0], now);
	ck_assert_double_eq_tol(json_real_value(json_object_get(j, "access_delay_ms")), MESH_ACCESS_PRIOR_MS, 1e-4);
	json_decref(j);
	struct mesh_heartbeat hb = {-1, -1, 30, -1, -1};
	struct al_error err = {0};
	ck_assert_int_eq(mesh_registry_heartbeat(r, ids[0], "@ualice.aura:test", &hb, now + 1000, NULL, &err), 0);
	j = mesh_registry_node_json(r, ids[0], now + 1000);
	ck_assert_double_eq_tol(json_real_value(json_object_get(j, "access_delay_ms")), 30 - MESH_HB_OFFSET_PRIOR_MS,
				1e-4);
	ck_assert_double_eq_tol(json_real_value(json_object_get(j, "avg_latency_ms")), 30, 1e-4);
	json_decref(j);
	ck_assert_int_eq(mesh_registry_predict(r, ids, 2, &after), 0);
	ck_assert_double_eq_tol(after.latency_ms - before.latency_ms,
				30 - MESH_HB_OFFSET_PRIOR_MS - MESH_ACCESS_PRIOR_MS, 1e-3);
	const char gone[2][37] = {"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000009"};
	ck_assert_int_eq(mesh_registry_predict(r, gone, 2, &after), -1);
	mesh_registry_free(r);
}
END_TEST

/* The eligible relays are kept between finds (per media type and AIC
 * rule) and follow every change: a relay that stops accepting, a peer's
 * beat (keeps the list), a relay's window ending with no write at all,
 * a removed relay, one that does not carry the media. */
START_TEST(relay_lists_follow_changes)
{
	int64_t now = 1000000, window = 90000;
	struct mesh_registry *r = mesh_registry_new(window, 0);
	struct mesh_node_info in;
	struct al_error err = {0};
	struct mesh_cached_route rt;
	struct mesh_find_stats st;
	add_far_peers_and_relay(r, &in, now);
	info(&in, 4, "@relay.aura", MESH_RELAY, 1.30, 103.9, 80, now + 20000);
	ck_assert_int_eq(mesh_registry_add(r, &in, now + 20000), 0);
	info(&in, 5, "@relay.aura", MESH_EDGE, 1.32, 103.7, 80, now);
	in.supports_video = false;
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	const char *ids[6] = {NULL};
	char idbuf[6][37];
	for (int i = 1; i < 6; i++) {
		snprintf(idbuf[i], sizeof(idbuf[i]), "00000000-0000-0000-0000-%012d", i);
		ids[i] = idbuf[i];
	}
#define FIND(media, t) \
	ck_assert_int_eq(mesh_registry_find(r, "@alice.aura", "@bob.aura", media, false, t, &rt, &st, &err), 0)
	FIND(MESH_MEDIA_AUDIO, now + 20000);
	ck_assert_uint_eq(st.relays_considered, 3);
	FIND(MESH_MEDIA_VIDEO, now + 20000);
	ck_assert_uint_eq(st.relays_considered, 2);
	/* relay 3 stops accepting */
	struct mesh_heartbeat hb = {0, -1, -1, -1, 0};
	ck_assert_int_eq(mesh_registry_heartbeat(r, ids[3], "@urelay.aura:test", &hb, now + 30000, NULL, &err), 0);
	FIND(MESH_MEDIA_AUDIO, now + 30000);
	ck_assert_uint_eq(st.relays_considered, 2);
	FIND(MESH_MEDIA_VIDEO, now + 30000);
	ck_assert_uint_eq(st.relays_considered, 1);
	/* a peer beats: nothing changes for the relays */
	hb.accepting_connections = 1;
	ck_assert_int_eq(mesh_registry_heartbeat(r, ids[1], "@ualice.aura:test", &hb, now + 40000, NULL, &err), 0);
	FIND(MESH_MEDIA_AUDIO, now + 40000);
	ck_assert_uint_eq(st.relays_considered, 2);
	/* relay 5's window ends (it never beat again), relay 4's does not;
	 * the endpoints keep beating */
	ck_assert_int_eq(mesh_registry_heartbeat(r, ids[1], "@ualice.aura:test", &hb, now + 80000, NULL, &err), 0);
	ck_assert_int_eq(mesh_registry_heartbeat(r, ids[2], "@ubob.aura:test", &hb, now + 80000, NULL, &err), 0);
	FIND(MESH_MEDIA_AUDIO, now + window - 1);
	ck_assert_uint_eq(st.relays_considered, 2);
	FIND(MESH_MEDIA_AUDIO, now + window);
	ck_assert_uint_eq(st.relays_considered, 1);
	/* relay 4 removed */
	ck_assert_int_eq(mesh_registry_remove(r, ids[4]), 0);
	FIND(MESH_MEDIA_AUDIO, now + window);
	ck_assert_uint_eq(st.relays_considered, 0);
	ck_assert_int_eq(rt.n, 2);
#undef FIND
	mesh_registry_free(r);
}
END_TEST

START_TEST(memory_per_node)
{
	struct mesh_registry *r = mesh_registry_new(90000, 0);
	struct mesh_node_info in;
	char aura[32];
	for (int i = 1; i <= 5000; i++) {
		snprintf(aura, sizeof(aura), "@user%d.aura", i);
		info(&in, i, aura, i % 5 ? MESH_PEER : MESH_RELAY, 10, 10, 50, 1000);
		snprintf(in.address, sizeof(in.address), "203.0.113.%d", i % 250);
		snprintf(in.region, sizeof(in.region), "eu-west");
		ck_assert_int_eq(mesh_registry_add(r, &in, 1000), 0);
	}
	size_t per = mesh_registry_memory_bytes(r) / 5000;
	ck_assert_msg(per < 1024, "%zu bytes per node", per);
	mesh_registry_free(r);
}
END_TEST

UNIT_MAIN("mesh_registry", lifecycle_and_routes, many_nodes_per_aura_and_bans, stale_nodes_between_sweeps, remote_nodes,
	  rescore_after_feedback, heartbeat_latency_prior, relay_lists_follow_changes, memory_per_node)
