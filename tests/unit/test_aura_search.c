#include "unit.h"
#include <stdio.h>
#include <string.h>

#include "aura_search.h"

static struct aura_search *S;

static void setup(void)
{
	S = aura_search_new();
	ck_assert_ptr_nonnull(S);
}

static void teardown(void)
{
	aura_search_free(S);
	S = NULL;
}

/* put @username.aura with user id @username:x */
static int put(const char *username, const char *display)
{
	char aura_id[64], user_id[64];
	snprintf(aura_id, sizeof(aura_id), "@%s.aura", username);
	snprintf(user_id, sizeof(user_id), "@%s:x", username);
	struct aura_search_row r = {aura_id, user_id, username, display, NULL, false};
	return aura_search_put(S, &r);
}

/* "@a.aura @b.aura" (the handles of the results, space separated) */
static const char *ids(const char *term, int limit)
{
	static char buf[4096];
	json_t *out = NULL;
	int rc = aura_search_query(S, term, limit, &out);
	ck_assert_int_eq(rc, 0);
	size_t off = 0, i;
	json_t *v;
	buf[0] = '\0';
	json_array_foreach(out, i, v)
	{
		int w = snprintf(buf + off, sizeof(buf) - off, "%s%s", i ? " " : "",
				 json_string_value(json_object_get(v, "aura_id")));
		ck_assert(w > 0 && (size_t)w < sizeof(buf) - off);
		off += (size_t)w;
	}
	json_decref(out);
	return buf;
}

START_TEST(not_ready_until_loaded)
{
	json_t *out = NULL;
	ck_assert(!aura_search_ready(S));
	ck_assert_int_eq(aura_search_query(S, "zed", 10, &out), 1);
	ck_assert_ptr_null(out);
	ck_assert_int_eq(put("zed", NULL), 0); /* ignored: the load reads it */
	ck_assert_int_eq(aura_search_load(S, NULL, 0), 0);
	ck_assert(aura_search_ready(S));
	ck_assert_str_eq(ids("zed", 10), "");
	aura_search_invalidate(S);
	ck_assert(!aura_search_ready(S));
	ck_assert_int_eq(aura_search_query(S, "zed", 10, &out), 1);
	ck_assert_int_eq(aura_search_load(S, NULL, 0), 0);
	ck_assert(aura_search_ready(S));
}
END_TEST

START_TEST(ranking_exact_prefix_substring)
{
	ck_assert_int_eq(aura_search_load(S, NULL, 0), 0);
	/* the integration test's set (test_search_ranking_privacy_and_escaping) */
	ck_assert_int_eq(put("zed", NULL), 0);
	ck_assert_int_eq(put("zed_b", NULL), 0);
	ck_assert_int_eq(put("zedxb", NULL), 0);
	ck_assert_int_eq(put("azed", NULL), 0);
	ck_assert_int_eq(put("zedfriends", NULL), 0);
	ck_assert_int_eq(put("named1", "Zed Fan"), 0);
	ck_assert_str_eq(ids("zed", 10),
			 "@zed.aura @named1.aura @zed_b.aura @zedfriends.aura @zedxb.aura @azed.aura");
	ck_assert_str_eq(ids("zed", 2), "@zed.aura @named1.aura");
	ck_assert_str_eq(ids("zed", 1), "@zed.aura");
	/* LIKE metacharacters are plain bytes here */
	ck_assert_str_eq(ids("_", 10), "@zed_b.aura");
	ck_assert_str_eq(ids("d_b", 10), "@zed_b.aura");
	ck_assert_str_eq(ids("%", 10), "");
	ck_assert_str_eq(ids("zed%", 10), "");
	/* exact on the display name beats a handle prefix */
	ck_assert_str_eq(ids("zed fan", 10), "@named1.aura");
	ck_assert_str_eq(ids("fan", 10), "@named1.aura");
	/* two exact matches (handle of one, display name of another): by handle */
	ck_assert_int_eq(put("bob", NULL), 0);
	ck_assert_int_eq(put("alice", "Bob"), 0);
	ck_assert_int_eq(put("carol", "bob"), 0);
	ck_assert_int_eq(put("bobby", NULL), 0);
	ck_assert_int_eq(put("dave", "Bobcat"), 0);
	ck_assert_int_eq(put("abob", NULL), 0);
	ck_assert_str_eq(ids("bob", 10),
			 "@alice.aura @bob.aura @carol.aura @bobby.aura @dave.aura @abob.aura");
	ck_assert_str_eq(ids("bob", 4), "@alice.aura @bob.aura @carol.aura @bobby.aura");
}
END_TEST

START_TEST(case_insensitive)
{
	ck_assert_int_eq(aura_search_load(S, NULL, 0), 0);
	ck_assert_int_eq(put("Alice", "ALICE Liddell"), 0);
	ck_assert_int_eq(put("bob", "\xc3\x89mile"), 0); /* Émile */
	ck_assert_str_eq(ids("alice", 10), "@Alice.aura");
	ck_assert_str_eq(ids("ALICE", 10), "@Alice.aura");
	ck_assert_str_eq(ids("aLiCe lid", 10), "@Alice.aura");
	ck_assert_str_eq(ids("DELL", 10), "@Alice.aura");
	/* ASCII folding only, as lower() in a C-ctype database */
	ck_assert_str_eq(ids("\xc3\x89MILE", 10), "@bob.aura");
	ck_assert_str_eq(ids("\xc3\xa9mile", 10), "");
	ck_assert_str_eq(ids("mile", 10), "@bob.aura");
	/* results carry the stored spelling */
	json_t *out = NULL;
	ck_assert_int_eq(aura_search_query(S, "alice", 10, &out), 0);
	json_t *r = json_array_get(out, 0);
	ck_assert_str_eq(json_string_value(json_object_get(r, "aura_id")), "@Alice.aura");
	ck_assert_str_eq(json_string_value(json_object_get(r, "user_id")), "@Alice:x");
	ck_assert_str_eq(json_string_value(json_object_get(r, "display_name")), "ALICE Liddell");
	ck_assert(json_is_null(json_object_get(r, "avatar_url")));
	ck_assert(json_is_false(json_object_get(r, "is_verified")));
	ck_assert_int_eq(json_object_size(r), 5);
	json_decref(out);
	char buf[8];
	aura_search_fold(buf, sizeof(buf), "AbC-\xc3\x89xyzW");
	ck_assert_str_eq(buf, "abc-\xc3\x89x"); /* and bounded */
}
END_TEST

START_TEST(prefix_edges)
{
	ck_assert_int_eq(aura_search_load(S, NULL, 0), 0);
	ck_assert_str_eq(ids("a", 10), ""); /* empty index */
	const char *names[] = {"aaa", "aab", "abz", "b00", "zzz", "zzzz"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		ck_assert_int_eq(put(names[i], NULL), 0);
	ck_assert_str_eq(ids("a", 10), "@aaa.aura @aab.aura @abz.aura"); /* at the start */
	ck_assert_str_eq(ids("zzz", 10), "@zzz.aura @zzzz.aura");       /* at the end */
	ck_assert_str_eq(ids("zzzz", 10), "@zzzz.aura");
	ck_assert_str_eq(ids("zzzzz", 10), ""); /* longer than every name */
	ck_assert_str_eq(ids("b", 10), "@b00.aura @aab.aura @abz.aura");
	ck_assert_str_eq(ids("0", 10), "@b00.aura");
	ck_assert_str_eq(ids("~", 10), ""); /* sorts after everything */
	ck_assert_str_eq(ids("!", 10), ""); /* before everything */
	/* a name longer than any handle, and handle and display name both
	 * prefixed: listed once */
	ck_assert_str_eq(ids("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 10), "");
	ck_assert_int_eq(put("abba", "ABBA fans"), 0);
	ck_assert_str_eq(ids("ab", 10), "@abba.aura @abz.aura @aab.aura");
	ck_assert_str_eq(ids("abba", 10), "@abba.aura");
	/* limit 50 with more matches */
	for (int i = 0; i < 60; i++) {
		char u[16];
		snprintf(u, sizeof(u), "many%02d", i);
		ck_assert_int_eq(put(u, NULL), 0);
	}
	json_t *out = NULL;
	ck_assert_int_eq(aura_search_query(S, "many", 50, &out), 0);
	ck_assert_int_eq(json_array_size(out), 50);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(out, 49), "aura_id")),
			 "@many49.aura");
	json_decref(out);
	/* bounds */
	ck_assert_int_eq(aura_search_query(S, "", 10, &out), -1);
	char big[AURA_SEARCH_MAX_TERM + 2];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(aura_search_query(S, big, 10, &out), -1);
	big[AURA_SEARCH_MAX_TERM] = '\0';
	ck_assert_str_eq(ids(big, 10), "");
}
END_TEST

START_TEST(remove_and_update)
{
	ck_assert_int_eq(aura_search_load(S, NULL, 0), 0);
	ck_assert_int_eq(put("dora", "Dora"), 0);
	ck_assert_int_eq(put("dorian", NULL), 0);
	ck_assert_int_eq(put("theodora", NULL), 0);
	ck_assert_str_eq(ids("dora", 10), "@dora.aura @theodora.aura");
	/* a new display name: old one gone (exact, prefix and trigrams), new one found */
	ck_assert_int_eq(put("dora", "Dora Explorer"), 0);
	ck_assert_str_eq(ids("explorer", 10), "@dora.aura");
	ck_assert_int_eq(put("dora", "Map Reader"), 0);
	ck_assert_str_eq(ids("explorer", 10), "");
	ck_assert_str_eq(ids("reader", 10), "@dora.aura");
	ck_assert_str_eq(ids("dora", 10), "@dora.aura @theodora.aura");
	ck_assert_int_eq(put("dora", NULL), 0);
	ck_assert_str_eq(ids("reader", 10), "");
	/* a changed spelling of the same handle replaces it */
	ck_assert_int_eq(put("Dora", NULL), 0);
	ck_assert_str_eq(ids("dora", 10), "@Dora.aura @theodora.aura");
	struct aura_search_stats st;
	aura_search_stats(S, &st);
	ck_assert_int_eq(st.entries, 3);
	/* removal, by handle in any case */
	ck_assert_int_eq(aura_search_remove(S, "@DORA.aura"), 1);
	ck_assert_int_eq(aura_search_remove(S, "@dora.aura"), 0);
	ck_assert_int_eq(aura_search_remove(S, "theodora.aura"), 1);
	ck_assert_int_eq(aura_search_remove(S, "nonsense"), 0);
	ck_assert_int_eq(aura_search_remove(S, NULL), 0);
	ck_assert_str_eq(ids("dora", 10), "");
	ck_assert_str_eq(ids("dor", 10), "@dorian.aura");
	ck_assert_int_eq(aura_search_remove(S, "@dorian.aura"), 1);
	aura_search_stats(S, &st);
	ck_assert_int_eq(st.entries, 0);
	ck_assert_int_eq(st.trigrams, 0);
	/* a row beyond the table's bounds: refused, and the index is stale */
	ck_assert_int_eq(put("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL), -1); /* 31 */
	ck_assert(!aura_search_ready(S));
}
END_TEST

START_TEST(load_replaces_and_later_row_wins)
{
	struct aura_search_row rows[] = {
		{"@alpha.aura", "@a:x", "alpha", "First", NULL, false},
		{"@beta.aura", "@b:x", "beta", NULL, "mxc://x/b", true},
		{"@Alpha.aura", "@a2:x", "Alpha", "Second", NULL, false},
	};
	ck_assert_int_eq(aura_search_load(S, rows, 3), 0);
	ck_assert_str_eq(ids("alpha", 10), "@Alpha.aura");
	ck_assert_str_eq(ids("second", 10), "@Alpha.aura");
	ck_assert_str_eq(ids("first", 10), "");
	json_t *out = NULL;
	ck_assert_int_eq(aura_search_query(S, "beta", 10, &out), 0);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(out, 0), "avatar_url")),
			 "mxc://x/b");
	ck_assert(json_is_true(json_object_get(json_array_get(out, 0), "is_verified")));
	json_decref(out);
	ck_assert_int_eq(aura_search_load(S, rows + 1, 1), 0);
	ck_assert_str_eq(ids("alpha", 10), "");
	ck_assert_str_eq(ids("beta", 10), "@beta.aura");
	/* a row out of bounds: the load fails and the old index stays */
	struct aura_search_row bad = {"@x.aura", "@x:x", "", NULL, NULL, false};
	ck_assert_int_eq(aura_search_load(S, &bad, 1), -1);
	ck_assert_str_eq(ids("beta", 10), "@beta.aura");
}
END_TEST

/* ---- against a model: the tiers computed naively, after random changes ---- */

#define MODEL_N 1500
struct model {
	char username[16];
	char display[24];
	bool has_display;
	bool live;
};
static struct model M[MODEL_N];
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static void rnd_text(char *out, size_t len, const char *alphabet)
{
	size_t a = strlen(alphabet);
	for (size_t i = 0; i < len; i++)
		out[i] = alphabet[rnd((uint32_t)a)];
	out[len] = '\0';
}

static int model_rank(const struct model *m, const char *t)
{
	char u[32], d[32];
	aura_search_fold(u, sizeof(u), m->username);
	aura_search_fold(d, sizeof(d), m->display);
	size_t tl = strlen(t);
	if (strcmp(u, t) == 0 || (m->has_display && strcmp(d, t) == 0))
		return 0;
	if (strncmp(u, t, tl) == 0 || (m->has_display && strncmp(d, t, tl) == 0))
		return 1;
	if (strstr(u, t) || (m->has_display && strstr(d, t)))
		return 2;
	return 3;
}

static const char *model_term;
static int cmp_model(const void *a, const void *b)
{
	const struct model *x = *(const struct model *const *)a, *y = *(const struct model *const *)b;
	int rx = model_rank(x, model_term), ry = model_rank(y, model_term);
	if (rx != ry)
		return rx - ry;
	char ux[32], uy[32];
	aura_search_fold(ux, sizeof(ux), x->username);
	aura_search_fold(uy, sizeof(uy), y->username);
	return strcmp(ux, uy);
}

static const char *model_ids(const char *term, int limit)
{
	static char buf[4096];
	static const struct model *v[MODEL_N];
	char t[64];
	aura_search_fold(t, sizeof(t), term);
	size_t n = 0, off = 0;
	for (int i = 0; i < MODEL_N; i++)
		if (M[i].live && model_rank(&M[i], t) < 3)
			v[n++] = &M[i];
	model_term = t;
	qsort(v, n, sizeof(v[0]), cmp_model);
	buf[0] = '\0';
	for (size_t i = 0; i < n && i < (size_t)limit; i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s@%s.aura", i ? " " : "",
					v[i]->username);
	return buf;
}

static void model_put(int i)
{
	/* model slot i always holds the same handle (folded): "u<i>" + noise */
	struct model *m = &M[i];
	char noise[8];
	rnd_text(noise, 1 + rnd(5), "abAB_-1");
	snprintf(m->username, sizeof(m->username), "%c%04d%s", rnd(2) ? 'u' : 'U', i, noise);
	m->has_display = rnd(4) != 0;
	rnd_text(m->display, rnd(12), "abAB 1-");
	if (!m->has_display)
		m->display[0] = '\0';
	m->live = true;
	ck_assert_int_eq(put(m->username, m->has_display ? m->display : NULL), 0);
}

START_TEST(matches_model)
{
	/* start with a load of half, then random puts, updates and removals */
	static struct aura_search_row rows[MODEL_N];
	static char aura_ids[MODEL_N][32], user_ids[MODEL_N][32];
	size_t nrows = 0;
	memset(M, 0, sizeof(M));
	for (int i = 0; i < MODEL_N; i += 2) {
		struct model *m = &M[i];
		char noise[8];
		rnd_text(noise, 1 + rnd(5), "abAB_-1");
		snprintf(m->username, sizeof(m->username), "u%04d%s", i, noise);
		rnd_text(m->display, rnd(12), "abAB 1-");
		m->has_display = true;
		m->live = true;
		snprintf(aura_ids[nrows], sizeof(aura_ids[0]), "@%.15s.aura", m->username);
		snprintf(user_ids[nrows], sizeof(user_ids[0]), "@%.15s:x", m->username);
		rows[nrows] = (struct aura_search_row){aura_ids[nrows], user_ids[nrows], m->username,
						       m->display, NULL, false};
		nrows++;
	}
	ck_assert_int_eq(aura_search_load(S, rows, nrows), 0);
	const char *terms_alphabet = "abAB1 -_u0";
	for (int round = 0; round < 6; round++) {
		for (int k = 0; k < 400; k++) {
			int i = (int)rnd(MODEL_N);
			if (M[i].live && rnd(3) == 0) {
				char h[32];
				snprintf(h, sizeof(h), "@%s.aura", M[i].username);
				ck_assert_int_eq(aura_search_remove(S, h), 1);
				M[i].live = false;
			} else {
				if (M[i].live) { /* same handle, new spelling/display */
					char h[32];
					snprintf(h, sizeof(h), "@%s.aura", M[i].username);
					ck_assert_int_eq(aura_search_remove(S, h), 1);
				}
				model_put(i);
			}
		}
		ck_assert(aura_search_ready(S));
		for (int k = 0; k < 150; k++) {
			char term[8];
			rnd_text(term, 1 + rnd(5), terms_alphabet);
			int limit = 1 + (int)rnd(50);
			char want[4096];
			snprintf(want, sizeof(want), "%s", model_ids(term, limit));
			ck_assert_msg(strcmp(ids(term, limit), want) == 0, "term '%s' limit %d:\n got %s\nwant %s",
				      term, limit, ids(term, limit), want);
		}
		/* and terms taken from live names (exact and substring hits) */
		for (int k = 0; k < 100; k++) {
			const struct model *m = &M[rnd(MODEL_N)];
			if (!m->live)
				continue;
			const char *src = rnd(2) && m->has_display && m->display[0] ? m->display : m->username;
			size_t sl = strlen(src), start = rnd((uint32_t)sl), len = 1 + rnd((uint32_t)(sl - start));
			char term[32];
			snprintf(term, sizeof(term), "%.*s", (int)len, src + start);
			if (term[0] == '\0')
				continue;
			char want[4096];
			snprintf(want, sizeof(want), "%s", model_ids(term, 10));
			ck_assert_msg(strcmp(ids(term, 10), want) == 0, "term '%s':\n got %s\nwant %s", term,
				      ids(term, 10), want);
		}
	}
	struct aura_search_stats st;
	aura_search_stats(S, &st);
	size_t live = 0;
	for (int i = 0; i < MODEL_N; i++)
		live += M[i].live;
	ck_assert_int_eq(st.entries, live);
	ck_assert(st.bytes > 0);
}
END_TEST

/* The bench's shape: 20,000 "userN" with "Bench User N"; mostly the
 * trigram path, with a dense trigram ("use") for the scan path. */
START_TEST(bench_shape)
{
	enum { N = 20000 };
	static struct aura_search_row rows[N];
	static char a[N][24], u[N][24], n[N][16], d[N][24];
	for (int i = 0; i < N; i++) {
		snprintf(n[i], sizeof(n[i]), "user%d", i + 1);
		snprintf(a[i], sizeof(a[i]), "@user%d.aura", i + 1);
		snprintf(u[i], sizeof(u[i]), "@user%d:x", i + 1);
		snprintf(d[i], sizeof(d[i]), "Bench User %d", i + 1);
		rows[i] = (struct aura_search_row){a[i], u[i], n[i], d[i], NULL, false};
	}
	ck_assert_int_eq(aura_search_load(S, rows, N), 0);
	ck_assert_str_eq(ids("user1999", 10),
			 "@user1999.aura @user19990.aura @user19991.aura @user19992.aura "
			 "@user19993.aura @user19994.aura @user19995.aura @user19996.aura "
			 "@user19997.aura @user19998.aura");
	ck_assert_str_eq(ids("user19999", 10), "@user19999.aura");
	ck_assert_str_eq(ids("ser1999", 3), "@user1999.aura @user19990.aura @user19991.aura");
	ck_assert_str_eq(ids("er 1999", 3), "@user1999.aura @user19990.aura @user19991.aura");
	ck_assert_str_eq(ids("bench user 7", 2), "@user7.aura @user70.aura");
	ck_assert_str_eq(ids("ench", 2), "@user1.aura @user10.aura");
	struct aura_search_stats st;
	aura_search_stats(S, &st);
	ck_assert_int_eq(st.entries, N);
	fprintf(stderr, "aura_search: %d entries, %zu bytes (%zu per entry), %zu trigrams\n", N,
		st.bytes, st.bytes / N, st.trigrams);
	ck_assert(st.bytes / N < 1024);
}
END_TEST

UNIT_MAIN_WITH_FIXTURE("aura_search", setup, teardown, not_ready_until_loaded,
		       ranking_exact_prefix_substring, case_insensitive, prefix_edges, remove_and_update,
		       load_replaces_and_later_row_wins, matches_model, bench_shape)
