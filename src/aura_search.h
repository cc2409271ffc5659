/* aura_search.h - the in-memory AuraID search index: the discoverable
 * AuraIDs (allow_discovery, not private, status active; the caller decides
 * which rows those are), searched the way aura_id_search's SQL does:
 *
 *   tier 0, exact:     lower(username) = t or lower(display_name) = t
 *   tier 1, prefix:    either starts with t (and not exact)
 *   tier 2, substring: either contains t (and not prefix)
 *
 * each tier ordered by lower(username) (unique: handles are unique
 * case-insensitively) in byte order, the order of PostgreSQL's C collation
 * that run.sh's cluster uses (with another collation the SQL would order
 * '_' and '-' among letters differently; the index keeps byte order);
 * results are the tiers concatenated, cut at the limit.
 *
 * Case folding (aura_search_fold) maps ASCII A-Z to a-z and leaves every
 * other byte alone: PostgreSQL's lower() in a C/POSIX ctype database. A
 * database whose ctype folds beyond ASCII (en_US.UTF-8, ...) lower-cases
 * non-ASCII letters too; the caller detects that and sends terms with
 * non-ASCII bytes to SQL (see aura_id.c). What remains different there:
 * the few non-ASCII letters whose lower case is ASCII (U+212A KELVIN SIGN,
 * U+0130) match an ASCII term in SQL and not here. Matching is byte-wise
 * on UTF-8, which equals character-wise LIKE for valid UTF-8.
 *
 * Structure: the entries, one allocation each; an array of them sorted by
 * lower(username) (exact and prefix on the handle: binary search), one
 * sorted by (lower(display_name), lower(username)) (exact and prefix on the
 * display name), and a trigram index (a hash table from the 3-byte
 * substrings of both folded strings to sorted arrays of entry ids) that
 * finds substring candidates for terms of 3 bytes or more; shorter terms,
 * and terms whose rarest trigram is common, scan the handle order and stop
 * at the limit. The substring tier runs only when the first two leave the
 * limit unfilled.
 *
 * Memory per entry: 64 bytes of header, the strings (aura_id <= 40,
 * user_id <= 255, folded username <= 31, display name and its folded copy
 * <= 1025 each, the copy shared when folding changes nothing, avatar_url
 * <= 2049), 8 bytes in each of the two sorted arrays and the slot table,
 * and 4 bytes per distinct trigram (<= 28 + 1022) in the posting arrays,
 * which grow by doubling (so up to twice that). Bounded by about 13 KiB;
 * an AuraID with a 9-character handle and a 16-byte display name takes
 * about 300 bytes (bench/aura_resolve.sh prints the measured total).
 *
 * Thread safety: one pthread rwlock; queries take it shared, changes
 * exclusively; aura_search_load builds the new index without the lock and
 * swaps it in. */
#ifndef AL_AURA_SEARCH_H
#define AL_AURA_SEARCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Bounds of one row: the table's CHECK constraints (001_core.sql). A row
 * beyond them is refused (-1), never truncated. */
#define AURA_SEARCH_MAX_AURA_ID 39       /* "@" + 30 + ".aura" */
#define AURA_SEARCH_MAX_USERNAME 30
#define AURA_SEARCH_MAX_USER_ID 255
#define AURA_SEARCH_MAX_DISPLAY 1024     /* bytes: 256 characters of UTF-8 */
#define AURA_SEARCH_MAX_AVATAR 2048
#define AURA_SEARCH_MAX_TERM 256         /* bytes: 64 characters of UTF-8 */

struct aura_search_row {
	const char *aura_id;      /* "@Name.aura", as stored */
	const char *user_id;
	const char *username;     /* as stored ("Name"); folded here */
	const char *display_name; /* NULL when unset */
	const char *avatar_url;   /* NULL when unset */
	bool is_verified;
};

struct aura_search;

struct aura_search *aura_search_new(void);
void aura_search_free(struct aura_search *s);

/* Replace the whole index by rows (every one discoverable); the index is
 * ready afterwards. A later row with the same username (case-insensitive)
 * replaces an earlier one. 0, or -1 (out of memory, a row out of bounds:
 * the old index stays, still marked as it was). */
int aura_search_load(struct aura_search *s, const struct aura_search_row *rows, size_t n);

/* Insert row, or replace the entry of the same username. Before the first
 * load this does nothing (the load will read the row). 0, or -1: out of
 * memory or a row out of bounds; the index is then marked stale. */
int aura_search_put(struct aura_search *s, const struct aura_search_row *row);

/* Drop the entry of handle ("@name.aura" or "name.aura", any case): 1
 * removed, 0 there was none. */
int aura_search_remove(struct aura_search *s, const char *handle);

/* Stale: changes may have been missed (lost notifications, a failed
 * update). Queries answer 1 until the next successful load. */
void aura_search_invalidate(struct aura_search *s);
/* Loaded and not stale. */
bool aura_search_ready(struct aura_search *s);

struct aura_search_stats {
	size_t entries;
	size_t bytes;    /* everything the index allocated */
	size_t trigrams; /* distinct trigrams with postings */
};
void aura_search_stats(struct aura_search *s, struct aura_search_stats *out);

/* Search for term (the bare text: the caller strips "@" and ".aura"), at
 * most limit (1..50) results. *out: array of {aura_id, user_id,
 * display_name, avatar_url, is_verified}. 0; 1 when the index is not ready
 * (the caller asks PostgreSQL); -1 out of memory or a term beyond
 * AURA_SEARCH_MAX_TERM bytes. */
int aura_search_query(struct aura_search *s, const char *term, int limit, json_t **out);

/* ASCII-only lower case (see above), at most len - 1 bytes. */
void aura_search_fold(char *dst, size_t len, const char *src);

#endif
