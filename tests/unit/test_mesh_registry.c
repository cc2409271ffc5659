/* test_mesh_registry.c - registry in memory: heartbeats, online window,
 * relay eligibility, cache invalidation on offline / trust loss, removal. */
#include <stdio.h>
#include <string.h>

#include "mesh_registry.h"
#include "unit.h"

static void info(struct mesh_node_info *in, int i, const char *aura, int type, double lat, double lon,
		 double rep, int64_t now)
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

START_TEST(lifecycle_and_routes)
{
	int64_t now = 1000000;
	struct mesh_registry *r = mesh_registry_new(90000, 1000);
	struct mesh_node_info in;
	struct al_error err = {0};
	info(&in, 1, "@alice.aura", MESH_PEER, 51.5, -0.1, 50, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), -1); /* duplicate */
	info(&in, 2, "@bob.aura", MESH_PEER, -33.9, 151.2, 50, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	info(&in, 3, "@relay.aura", MESH_RELAY, 1.35, 103.8, 80, now); /* Singapore */
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	size_t online = 0;
	ck_assert_uint_eq(mesh_registry_count(r, &online), 3);
	ck_assert_uint_eq(online, 3);

	/* make the direct link look terrible: the relay wins */
	const char ids_direct[2][37] = {"00000000-0000-0000-0000-000000000001",
					"00000000-0000-0000-0000-000000000002"};
	for (int k = 0; k < 5; k++)
		mesh_registry_feedback(r, "x", ids_direct, 2, 400, false);
	struct mesh_cached_route rt;
	struct mesh_find_stats st;
	ck_assert_int_eq(mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now, &rt, &st,
					    &err), 0);
	ck_assert(!st.cached);
	ck_assert_msg(rt.n == 3, "n %d lat %f score %f relays %zu", rt.n, rt.pm.latency_ms, rt.score, st.relays_considered);
	ck_assert_str_eq(rt.node_ids[1], "00000000-0000-0000-0000-000000000003");
	snprintf(rt.route_id, sizeof(rt.route_id), "r1");
	mesh_registry_cache_put(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, &rt);
	ck_assert_int_eq(mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now, &rt, &st,
					    &err), 0);
	ck_assert(st.cached);

	/* the relay loses trust: the cached route is dropped and it is not used */
	double prev, nw;
	ck_assert_int_eq(mesh_registry_reputation(r, "00000000-0000-0000-0000-000000000003", -20,
						  MESH_REP_ADMIN_ADJUSTMENT, "test", NULL, &prev, &nw, &err), 0);
	ck_assert_double_eq(prev, 80);
	ck_assert_double_eq(nw, 60);
	ck_assert_int_eq(mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now, &rt, &st,
					    &err), 0);
	ck_assert(!st.cached);
	ck_assert_int_eq(rt.n, 2);
	ck_assert_uint_eq(st.relays_considered, 0);

	/* trusted again but full (8 of 10 connections): not eligible */
	mesh_registry_reputation(r, "00000000-0000-0000-0000-000000000003", 20, MESH_REP_ADMIN_ADJUSTMENT,
				 NULL, NULL, NULL, NULL, &err);
	struct mesh_heartbeat hb = {8, -1, -1, -1, -1};
	int64_t retry = 0;
	ck_assert_int_eq(mesh_registry_heartbeat(r, "00000000-0000-0000-0000-000000000003", "@someone:test",
						 &hb, now + 2000, &retry, &err), -1);
	ck_assert_int_eq(err.status, 403);
	/* the first beat after registration is never limited */
	ck_assert_int_eq(mesh_registry_heartbeat(r, "00000000-0000-0000-0000-000000000003", "@urelay.aura:test",
						 &hb, now + 2000, &retry, &err), 0);
	ck_assert_int_eq(mesh_registry_heartbeat(r, "00000000-0000-0000-0000-000000000003", "@urelay.aura:test",
						 &hb, now + 2500, &retry, &err), -1);
	ck_assert_int_eq(err.status, 429);
	ck_assert_int_eq(retry, 500);
	ck_assert_int_eq(mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now + 2000, &rt,
					    &st, &err), 0);
	ck_assert_uint_eq(st.relays_considered, 0);
	hb.current_connections = 7;
	ck_assert_int_eq(mesh_registry_heartbeat(r, "00000000-0000-0000-0000-000000000003", "@urelay.aura:test",
						 &hb, now + 4000, &retry, &err), 0);
	ck_assert_int_eq(mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now + 4000, &rt,
					    &st, &err), 0);
	ck_assert_uint_eq(st.relays_considered, 1);
	ck_assert_int_eq(rt.n, 3);
	snprintf(rt.route_id, sizeof(rt.route_id), "r2");
	mesh_registry_cache_put(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, &rt);

	/* expiry: only the relay keeps beating; the endpoints go offline */
	ck_assert_int_eq(mesh_registry_heartbeat(r, "00000000-0000-0000-0000-000000000003", "@urelay.aura:test",
						 &hb, now + 80000, &retry, &err), 0);
	ck_assert_int_eq(mesh_registry_sweep(r, now + 91000), 2);
	mesh_registry_count(r, &online);
	ck_assert_uint_eq(online, 1);
	ck_assert_int_eq(mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now + 91000,
					    &rt, &st, &err), -1);
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
	mesh_registry_reputation(r, "00000000-0000-0000-0000-000000000003", -45, MESH_REP_ABUSE_CONFIRMED,
				 NULL, NULL, NULL, NULL, &err);
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
	info(&in, 1, "@alice.aura", MESH_PEER, 51.5, -0.1, 50, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	info(&in, 2, "@bob.aura", MESH_PEER, -33.9, 151.2, 50, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	info(&in, 3, "@relay.aura", MESH_RELAY, 1.35, 103.8, 80, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	info(&in, 4, "@carol.aura", MESH_PEER, 48.9, 2.35, 50, now);
	ck_assert_int_eq(mesh_registry_add(r, &in, now), 0);
	const char *relay = "00000000-0000-0000-0000-000000000003";

	/* a route through the relay, cached */
	const char ids_direct[2][37] = {"00000000-0000-0000-0000-000000000001",
					"00000000-0000-0000-0000-000000000002"};
	for (int k = 0; k < 5; k++)
		mesh_registry_feedback(r, "x", ids_direct, 2, 400, false);
	ck_assert_int_eq(mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, now, &rt, &st,
					    &err), 0);
	ck_assert_int_eq(rt.n, 3);
	snprintf(rt.route_id, sizeof(rt.route_id), "r1");
	mesh_registry_cache_put(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, &rt);

	/* the endpoints keep beating, the relay and carol do not; no sweep */
	struct mesh_heartbeat hb = {0, -1, -1, -1, -1};
	int64_t later = now + window, retry = 0;
	ck_assert_int_eq(mesh_registry_heartbeat(r, ids_direct[0], "@ualice.aura:test", &hb, later - 10, &retry,
						 &err), 0);
	ck_assert_int_eq(mesh_registry_heartbeat(r, ids_direct[1], "@ubob.aura:test", &hb, later - 10, &retry,
						 &err), 0);

	/* just inside the window: still online everywhere */
	json_t *j = mesh_registry_node_json(r, relay, later - 1);
	ck_assert(json_is_true(json_object_get(j, "is_online")));
	json_decref(j);
	ck_assert_int_eq(mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, later - 1,
					    &rt, &st, &err), 0);
	ck_assert(st.cached);

	/* at the window's end: the cached route is dropped, the relay is not
	 * eligible and carol has no endpoint, although the flags still say
	 * online (the sweeper has not run) */
	ck_assert_int_eq(mesh_registry_find(r, "@alice.aura", "@bob.aura", MESH_MEDIA_AUDIO, false, later, &rt,
					    &st, &err), 0);
	ck_assert(!st.cached);
	ck_assert_int_eq(rt.n, 2);
	ck_assert_uint_eq(st.relays_considered, 0);
	ck_assert_int_eq(mesh_registry_find(r, "@alice.aura", "@carol.aura", MESH_MEDIA_AUDIO, false, later, &rt,
					    &st, &err), -1);
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

UNIT_MAIN("mesh_registry", lifecycle_and_routes, many_nodes_per_aura_and_bans, stale_nodes_between_sweeps,
	  memory_per_node)
