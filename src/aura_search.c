/* aura_search.c - the in-memory AuraID search index (see aura_search.h). */
#define _GNU_SOURCE /* memmem */
#include "aura_search.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT_MAX 50
/* trigrams of one entry: of the folded username and display name */
#define ENTRY_TRIGRAMS_MAX ((AURA_SEARCH_MAX_USERNAME - 2) + (AURA_SEARCH_MAX_DISPLAY - 2))
#define TERM_TRIGRAMS_MAX (AURA_SEARCH_MAX_TERM - 2)
/* a substring candidate list longer than entries / DENSE_DIVISOR is
 * "dense": scanning the handle order finds the limit sooner */
#define DENSE_DIVISOR 4

struct entry {
	uint32_t id;   /* slot; the posting arrays hold it */
	uint16_t ulen; /* strlen(user_lc) */
	uint16_t dlen; /* strlen(display_lc), 0 without a display name */
	bool is_verified;
	const char *aura_id;
	const char *user_id;
	const char *user_lc;
	const char *display;    /* NULL when unset */
	const char *display_lc; /* NULL when unset; == display when folding changed nothing */
	const char *avatar;     /* NULL when unset */
	char data[];
};

struct postings {
	uint32_t key; /* trigram + 1 << 24 (so never 0); 0: empty slot */
	uint32_t n, cap;
	uint32_t *ids; /* ascending */
};

struct index {
	struct entry **slots; /* by id; NULL: free */
	uint32_t nslots, slots_cap;
	uint32_t *free_ids; /* capacity slots_cap, so a push never fails */
	uint32_t nfree;
	struct entry **by_user; /* sorted by user_lc */
	size_t nuser, user_cap;
	struct entry **by_display; /* entries with a display name, by (display_lc, user_lc) */
	size_t ndisplay, display_cap;
	struct postings *tri; /* open addressing, linear probing */
	size_t tri_cap, tri_used;
	size_t entry_bytes, posting_bytes;
};

struct aura_search {
	pthread_rwlock_t lock;
	struct index *idx; /* NULL until the first load */
	bool stale;
};

/* ---- folding and entries ---- */

void aura_search_fold(char *dst, size_t len, const char *src)
{
	size_t i = 0;
	if (!len)
		return;
	for (; src[i] && i + 1 < len; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
	}
	dst[i] = '\0';
}

static bool fold_changes(const char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			return true;
	return false;
}

static size_t bounded_len(const char *s, size_t max, bool *ok)
{
	if (!s)
		return 0;
	size_t n = strnlen(s, max + 1);
	if (n > max)
		*ok = false;
	return n;
}

/* One allocation: header, then aura_id, user_id, user_lc, display,
 * display_lc (unless shared), avatar. NULL: out of memory or out of bounds. */
static struct entry *entry_new(const struct aura_search_row *row)
{
	bool ok = row->aura_id && row->user_id && row->username;
	size_t al = bounded_len(row->aura_id, AURA_SEARCH_MAX_AURA_ID, &ok);
	size_t il = bounded_len(row->user_id, AURA_SEARCH_MAX_USER_ID, &ok);
	size_t ul = bounded_len(row->username, AURA_SEARCH_MAX_USERNAME, &ok);
	size_t dl = bounded_len(row->display_name, AURA_SEARCH_MAX_DISPLAY, &ok);
	size_t vl = bounded_len(row->avatar_url, AURA_SEARCH_MAX_AVATAR, &ok);
	if (!ok || ul == 0)
		return NULL;
	bool own_lc = row->display_name && fold_changes(row->display_name);
	size_t size = sizeof(struct entry) + al + 1 + il + 1 + ul + 1;
	if (row->display_name)
		size += (dl + 1) * (own_lc ? 2 : 1);
	if (row->avatar_url)
		size += vl + 1;
	struct entry *e = malloc(size);
	if (!e)
		return NULL;
	memset(e, 0, sizeof(*e));
	char *p = e->data;
	memcpy(p, row->aura_id, al + 1);
	e->aura_id = p;
	p += al + 1;
	memcpy(p, row->user_id, il + 1);
	e->user_id = p;
	p += il + 1;
	aura_search_fold(p, ul + 1, row->username);
	e->user_lc = p;
	e->ulen = (uint16_t)ul;
	p += ul + 1;
	if (row->display_name) {
		memcpy(p, row->display_name, dl + 1);
		e->display = e->display_lc = p;
		p += dl + 1;
		if (own_lc) {
			aura_search_fold(p, dl + 1, row->display_name);
			e->display_lc = p;
			p += dl + 1;
		}
		e->dlen = (uint16_t)dl;
	}
	if (row->avatar_url) {
		memcpy(p, row->avatar_url, vl + 1);
		e->avatar = p;
	}
	e->is_verified = row->is_verified;
	return e;
}

static size_t entry_size(const struct entry *e)
{
	size_t size = sizeof(*e) + strlen(e->aura_id) + 1 + strlen(e->user_id) + 1 + e->ulen + 1;
	if (e->display)
		size += (e->dlen + 1u) * (e->display_lc != e->display ? 2 : 1);
	if (e->avatar)
		size += strlen(e->avatar) + 1;
	return size;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static uint32_t trigram_at(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	return (1u << 24) | ((uint32_t)u[0] << 16) | ((uint32_t)u[1] << 8) | u[2];
}

/* The entry's distinct trigram keys, ascending; returns how many. */
static size_t entry_trigrams(const struct entry *e, uint32_t out[ENTRY_TRIGRAMS_MAX])
{
	size_t n = 0;
	for (size_t i = 0; i + 3 <= e->ulen; i++)
		out[n++] = trigram_at(e->user_lc + i);
	for (size_t i = 0; e->display_lc && i + 3 <= e->dlen; i++)
		out[n++] = trigram_at(e->display_lc + i);
	if (n < 2)
		return n;
	qsort(out, n, sizeof(out[0]), cmp_u32);
	size_t w = 1;
	for (size_t i = 1; i < n; i++)
		if (out[i] != out[w - 1])
			out[w++] = out[i];
	return w;
}

/* ---- sorted arrays ---- */

static int cmp_user(const struct entry *a, const struct entry *b)
{
	return strcmp(a->user_lc, b->user_lc);
}

static int cmp_display(const struct entry *a, const struct entry *b)
{
	int c = strcmp(a->display_lc, b->display_lc);
	return c ? c : strcmp(a->user_lc, b->user_lc);
}

static int qsort_user(const void *a, const void *b)
{
	return cmp_user(*(struct entry *const *)a, *(struct entry *const *)b);
}

static int qsort_display(const void *a, const void *b)
{
	return cmp_display(*(struct entry *const *)a, *(struct entry *const *)b);
}

/* first i with user_lc >= key */
static size_t lower_user(const struct index *x, const char *key)
{
	size_t lo = 0, hi = x->nuser;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(x->by_user[mid]->user_lc, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* first i with (display_lc, user_lc) >= (d, u) */
static size_t lower_display(const struct index *x, const char *d, const char *u)
{
	size_t lo = 0, hi = x->ndisplay;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct entry *m = x->by_display[mid];
		int c = strcmp(m->display_lc, d);
		if (c == 0)
			c = strcmp(m->user_lc, u);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int array_insert(struct entry ***arr, size_t *n, size_t *cap, size_t pos, struct entry *e)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct entry **a = realloc(*arr, ncap * sizeof(*a));
		if (!a)
			return -1;
		*arr = a;
		*cap = ncap;
	}
	memmove(*arr + pos + 1, *arr + pos, (*n - pos) * sizeof(**arr));
	(*arr)[pos] = e;
	(*n)++;
	return 0;
}

static void array_delete(struct entry **arr, size_t *n, size_t pos)
{
	memmove(arr + pos, arr + pos + 1, (*n - pos - 1) * sizeof(*arr));
	(*n)--;
}

/* ---- trigram postings ---- */

static size_t tri_slot(uint32_t key, size_t cap)
{
	return (size_t)((key * 2654435761u) & (cap - 1));
}

static struct postings *tri_find(const struct index *x, uint32_t key)
{
	if (!x->tri_cap)
		return NULL;
	for (size_t h = tri_slot(key, x->tri_cap);; h = (h + 1) & (x->tri_cap - 1)) {
		if (x->tri[h].key == key)
			return &x->tri[h];
		if (x->tri[h].key == 0)
			return NULL;
	}
}

/* Rehash into a table for `want` live keys, dropping empty lists. */
static int tri_rehash(struct index *x, size_t want)
{
	size_t cap = 64;
	while (cap < want * 2)
		cap *= 2;
	struct postings *t = calloc(cap, sizeof(*t));
	if (!t)
		return -1;
	size_t used = 0;
	for (size_t i = 0; i < x->tri_cap; i++) {
		struct postings *p = &x->tri[i];
		if (!p->key)
			continue;
		if (!p->n) {
			x->posting_bytes -= (size_t)p->cap * sizeof(uint32_t);
			free(p->ids);
			continue;
		}
		size_t h = tri_slot(p->key, cap);
		while (t[h].key)
			h = (h + 1) & (cap - 1);
		t[h] = *p;
		used++;
	}
	free(x->tri);
	x->tri = t;
	x->tri_cap = cap;
	x->tri_used = used;
	return 0;
}

/* The list of key, created when missing. */
static struct postings *tri_get(struct index *x, uint32_t key)
{
	struct postings *p = tri_find(x, key);
	if (p)
		return p;
	if ((x->tri_used + 1) * 2 > x->tri_cap) {
		size_t live = 0;
		for (size_t i = 0; i < x->tri_cap; i++)
			live += x->tri[i].key && x->tri[i].n;
		/* empty lists are dropped on the way: grow only for live ones */
		if (tri_rehash(x, (live + 1) * 2) < 0)
			return NULL;
	}
	size_t h = tri_slot(key, x->tri_cap);
	while (x->tri[h].key)
		h = (h + 1) & (x->tri_cap - 1);
	x->tri[h].key = key;
	x->tri_used++;
	return &x->tri[h];
}

static size_t ids_lower(const uint32_t *ids, size_t n, uint32_t id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool ids_contain(const struct postings *p, uint32_t id)
{
	size_t i = ids_lower(p->ids, p->n, id);
	return i < p->n && p->ids[i] == id;
}

static int postings_add(struct index *x, struct postings *p, uint32_t id)
{
	size_t pos = ids_lower(p->ids, p->n, id);
	if (pos < p->n && p->ids[pos] == id)
		return 0;
	if (p->n == p->cap) {
		uint32_t ncap = p->cap ? p->cap * 2 : 4;
		uint32_t *ids = realloc(p->ids, (size_t)ncap * sizeof(*ids));
		if (!ids)
			return -1;
		x->posting_bytes += (size_t)(ncap - p->cap) * sizeof(*ids);
		p->ids = ids;
		p->cap = ncap;
	}
	memmove(p->ids + pos + 1, p->ids + pos, (p->n - pos) * sizeof(*p->ids));
	p->ids[pos] = id;
	p->n++;
	return 0;
}

static void postings_del(struct index *x, uint32_t key, uint32_t id)
{
	struct postings *p = tri_find(x, key);
	if (!p)
		return;
	size_t pos = ids_lower(p->ids, p->n, id);
	if (pos >= p->n || p->ids[pos] != id)
		return;
	memmove(p->ids + pos, p->ids + pos + 1, (p->n - pos - 1) * sizeof(*p->ids));
	p->n--;
	if (p->n == 0) { /* keep the slot (probing), give the memory back */
		x->posting_bytes -= (size_t)p->cap * sizeof(*p->ids);
		free(p->ids);
		p->ids = NULL;
		p->cap = 0;
	}
}

/* ---- index ---- */

static void index_free(struct index *x)
{
	if (!x)
		return;
	for (uint32_t i = 0; i < x->nslots; i++)
		free(x->slots[i]);
	for (size_t i = 0; i < x->tri_cap; i++)
		free(x->tri[i].ids);
	free(x->slots);
	free(x->free_ids);
	free(x->by_user);
	free(x->by_display);
	free(x->tri);
	free(x);
}

static int slot_take(struct index *x, struct entry *e)
{
	if (x->nfree) {
		e->id = x->free_ids[--x->nfree];
	} else {
		if (x->nslots == x->slots_cap) {
			uint32_t ncap = x->slots_cap ? x->slots_cap * 2 : 64;
			struct entry **s = realloc(x->slots, (size_t)ncap * sizeof(*s));
			if (!s)
				return -1;
			x->slots = s;
			uint32_t *f = realloc(x->free_ids, (size_t)ncap * sizeof(*f));
			if (!f)
				return -1;
			x->free_ids = f;
			x->slots_cap = ncap;
		}
		e->id = x->nslots++;
	}
	x->slots[e->id] = e;
	return 0;
}

static struct entry *index_find(const struct index *x, const char *user_lc, size_t *pos)
{
	size_t i = lower_user(x, user_lc);
	*pos = i;
	return i < x->nuser && strcmp(x->by_user[i]->user_lc, user_lc) == 0 ? x->by_user[i] : NULL;
}

/* e is not in the index yet (no entry with its username either). */
static int index_insert(struct index *x, struct entry *e)
{
	if (slot_take(x, e) < 0) {
		free(e);
		return -1;
	}
	x->entry_bytes += entry_size(e);
	if (array_insert(&x->by_user, &x->nuser, &x->user_cap, lower_user(x, e->user_lc), e) < 0)
		return -1;
	if (e->display_lc &&
	    array_insert(&x->by_display, &x->ndisplay, &x->display_cap,
			 lower_display(x, e->display_lc, e->user_lc), e) < 0)
		return -1;
	uint32_t keys[ENTRY_TRIGRAMS_MAX];
	size_t n = entry_trigrams(e, keys);
	for (size_t i = 0; i < n; i++) {
		struct postings *p = tri_get(x, keys[i]);
		if (!p || postings_add(x, p, e->id) < 0)
			return -1;
	}
	return 0;
}

/* e is by_user[pos]: take it out of everything and free it. */
static void index_delete(struct index *x, struct entry *e, size_t pos)
{
	array_delete(x->by_user, &x->nuser, pos);
	if (e->display_lc) {
		size_t d = lower_display(x, e->display_lc, e->user_lc);
		if (d < x->ndisplay && x->by_display[d] == e)
			array_delete(x->by_display, &x->ndisplay, d);
	}
	uint32_t keys[ENTRY_TRIGRAMS_MAX];
	size_t n = entry_trigrams(e, keys);
	for (size_t i = 0; i < n; i++)
		postings_del(x, keys[i], e->id);
	x->slots[e->id] = NULL;
	x->free_ids[x->nfree++] = e->id;
	x->entry_bytes -= entry_size(e);
	free(e);
}

/* A whole index from rows: entries sorted by handle (ids in that order),
 * duplicates resolved in favour of the later row, postings appended in id
 * order (so already ascending). */
static struct index *index_build(const struct aura_search_row *rows, size_t n)
{
	struct index *x = calloc(1, sizeof(*x));
	struct entry **v = n ? calloc(n, sizeof(*v)) : NULL;
	if (!x || (n && !v))
		goto fail;
	for (size_t i = 0; i < n; i++)
		if (!(v[i] = entry_new(&rows[i])))
			goto fail;
	/* ids hold the row order for now: of two rows with one name, the
	 * later one wins */
	for (size_t i = 0; i < n; i++)
		v[i]->id = (uint32_t)i;
	if (n > 1)
		qsort(v, n, sizeof(*v), qsort_user);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m && cmp_user(v[m - 1], v[i]) == 0) {
			/* keep the later row */
			struct entry *drop = v[m - 1]->id > v[i]->id ? v[i] : v[m - 1];
			v[m - 1] = drop == v[i] ? v[m - 1] : v[i];
			free(drop);
			continue;
		}
		v[m++] = v[i];
	}
	x->by_user = v;
	v = NULL;
	x->nuser = x->user_cap = m;
	x->slots_cap = m ? (uint32_t)m : 1;
	x->slots = calloc(x->slots_cap, sizeof(*x->slots));
	x->free_ids = calloc(x->slots_cap, sizeof(*x->free_ids));
	x->by_display = m ? calloc(m, sizeof(*x->by_display)) : NULL;
	if (!x->slots || !x->free_ids || (m && !x->by_display))
		goto fail;
	x->display_cap = m;
	for (size_t i = 0; i < m; i++) {
		struct entry *e = x->by_user[i];
		e->id = (uint32_t)i;
		x->slots[i] = e;
		x->entry_bytes += entry_size(e);
		if (e->display_lc)
			x->by_display[x->ndisplay++] = e;
	}
	x->nslots = (uint32_t)m;
	if (x->ndisplay > 1)
		qsort(x->by_display, x->ndisplay, sizeof(*x->by_display), qsort_display);
	uint32_t keys[ENTRY_TRIGRAMS_MAX];
	for (size_t i = 0; i < m; i++) {
		struct entry *e = x->slots[i];
		size_t k = entry_trigrams(e, keys);
		for (size_t j = 0; j < k; j++) {
			struct postings *p = tri_get(x, keys[j]);
			if (!p)
				goto fail;
			if (p->n == p->cap) {
				uint32_t ncap = p->cap ? p->cap * 2 : 4;
				uint32_t *ids = realloc(p->ids, (size_t)ncap * sizeof(*ids));
				if (!ids)
					goto fail;
				x->posting_bytes += (size_t)(ncap - p->cap) * sizeof(*ids);
				p->ids = ids;
				p->cap = ncap;
			}
			p->ids[p->n++] = e->id;
		}
	}
	return x;
fail:
	if (v) {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
	}
	if (x && x->nslots == 0) {
		/* entries are only in by_user so far */
		for (size_t i = 0; i < x->nuser; i++)
			free(x->by_user[i]);
		x->nuser = 0;
	}
	index_free(x);
	return NULL;
}

/* ---- public: lifecycle and changes ---- */

struct aura_search *aura_search_new(void)
{
	struct aura_search *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	if (pthread_rwlock_init(&s->lock, NULL) != 0) {
		free(s);
		return NULL;
	}
	return s;
}

void aura_search_free(struct aura_search *s)
{
	if (!s)
		return;
	index_free(s->idx);
	pthread_rwlock_destroy(&s->lock);
	free(s);
}

int aura_search_load(struct aura_search *s, const struct aura_search_row *rows, size_t n)
{
	struct index *x = index_build(rows, n);
	if (!x)
		return -1;
	pthread_rwlock_wrlock(&s->lock);
	struct index *old = s->idx;
	s->idx = x;
	s->stale = false;
	pthread_rwlock_unlock(&s->lock);
	index_free(old);
	return 0;
}

int aura_search_put(struct aura_search *s, const struct aura_search_row *row)
{
	struct entry *e = entry_new(row);
	pthread_rwlock_wrlock(&s->lock);
	struct index *x = s->idx;
	int rc = 0;
	if (!x || s->stale) {
		/* not loaded, or to be reloaded anyway */
		free(e);
	} else if (!e) {
		s->stale = true;
		rc = -1;
	} else {
		size_t pos;
		struct entry *old = index_find(x, e->user_lc, &pos);
		if (old)
			index_delete(x, old, pos);
		if (index_insert(x, e) < 0) {
			/* half inserted: served no more until the next load */
			s->stale = true;
			rc = -1;
		}
	}
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

int aura_search_remove(struct aura_search *s, const char *handle)
{
	if (!handle)
		return 0;
	if (handle[0] == '@')
		handle++;
	size_t n = strnlen(handle, AURA_SEARCH_MAX_AURA_ID + 1);
	if (n <= 5 || n > AURA_SEARCH_MAX_AURA_ID)
		return 0;
	char key[AURA_SEARCH_MAX_AURA_ID + 1];
	aura_search_fold(key, sizeof(key), handle);
	if (strcmp(key + n - 5, ".aura") != 0)
		return 0;
	key[n - 5] = '\0';
	int removed = 0;
	pthread_rwlock_wrlock(&s->lock);
	if (s->idx && !s->stale) {
		size_t pos;
		struct entry *e = index_find(s->idx, key, &pos);
		if (e) {
			index_delete(s->idx, e, pos);
			removed = 1;
		}
	}
	pthread_rwlock_unlock(&s->lock);
	return removed;
}

void aura_search_invalidate(struct aura_search *s)
{
	pthread_rwlock_wrlock(&s->lock);
	s->stale = true;
	pthread_rwlock_unlock(&s->lock);
}

bool aura_search_ready(struct aura_search *s)
{
	pthread_rwlock_rdlock(&s->lock);
	bool ready = s->idx && !s->stale;
	pthread_rwlock_unlock(&s->lock);
	return ready;
}

void aura_search_stats(struct aura_search *s, struct aura_search_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_rwlock_rdlock(&s->lock);
	const struct index *x = s->idx;
	if (x) {
		out->entries = x->nuser;
		out->bytes = sizeof(*x) + x->entry_bytes + x->posting_bytes +
			     (size_t)x->slots_cap * (sizeof(*x->slots) + sizeof(*x->free_ids)) +
			     x->user_cap * sizeof(*x->by_user) + x->display_cap * sizeof(*x->by_display) +
			     x->tri_cap * sizeof(*x->tri);
		for (size_t i = 0; i < x->tri_cap; i++)
			out->trigrams += x->tri[i].key && x->tri[i].n;
	}
	pthread_rwlock_unlock(&s->lock);
}

/* ---- queries ---- */

/* The best k entries by user_lc seen so far, ascending. */
struct best {
	const struct entry *v[LIMIT_MAX];
	int n, k;
};

/* false when e did not make it (so, for input in handle order, nothing
 * after it will either) */
static bool best_offer(struct best *b, const struct entry *e)
{
	if (b->k <= 0)
		return false;
	if (b->n == b->k && strcmp(e->user_lc, b->v[b->n - 1]->user_lc) >= 0)
		return false;
	int lo = 0, hi = b->n;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (strcmp(b->v[mid]->user_lc, e->user_lc) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (b->n == b->k)
		b->n--;
	memmove(&b->v[lo + 1], &b->v[lo], (size_t)(b->n - lo) * sizeof(b->v[0]));
	b->v[lo] = e;
	b->n++;
	return true;
}

struct term {
	const char *t;
	size_t len;
};

static bool starts(const char *s, size_t slen, const struct term *q)
{
	return s && slen >= q->len && memcmp(s, q->t, q->len) == 0;
}

static bool is_exact(const struct entry *e, const struct term *q)
{
	return (e->ulen == q->len && memcmp(e->user_lc, q->t, q->len) == 0) ||
	       (e->display_lc && e->dlen == q->len && memcmp(e->display_lc, q->t, q->len) == 0);
}

static bool is_prefix(const struct entry *e, const struct term *q)
{
	return starts(e->user_lc, e->ulen, q) || starts(e->display_lc, e->dlen, q);
}

/* substring tier: contains, and no prefix (so no exact) match */
static bool is_substring_only(const struct entry *e, const struct term *q)
{
	if (is_prefix(e, q))
		return false;
	return memmem(e->user_lc, e->ulen, q->t, q->len) ||
	       (e->display_lc && memmem(e->display_lc, e->dlen, q->t, q->len));
}

static void tier_exact(const struct index *x, const struct term *q, struct best *b)
{
	size_t pos;
	const struct entry *eu = q->len <= AURA_SEARCH_MAX_USERNAME ? index_find(x, q->t, &pos) : NULL;
	if (eu)
		best_offer(b, eu);
	/* equal display names are in handle order */
	for (size_t i = lower_display(x, q->t, ""); i < x->ndisplay; i++) {
		const struct entry *e = x->by_display[i];
		if (strcmp(e->display_lc, q->t) != 0)
			break;
		if (e != eu && !best_offer(b, e))
			break;
	}
}

static void tier_prefix(const struct index *x, const struct term *q, struct best *b)
{
	/* handles starting with t: in handle order */
	for (size_t i = lower_user(x, q->t); i < x->nuser; i++) {
		const struct entry *e = x->by_user[i];
		if (!starts(e->user_lc, e->ulen, q))
			break;
		if (!is_exact(e, q) && !best_offer(b, e))
			break;
	}
	/* display names starting with t whose handle does not (those were
	 * offered above): in display order, so every one is offered */
	for (size_t i = lower_display(x, q->t, ""); i < x->ndisplay; i++) {
		const struct entry *e = x->by_display[i];
		if (!starts(e->display_lc, e->dlen, q))
			break;
		if (!starts(e->user_lc, e->ulen, q) && !is_exact(e, q))
			best_offer(b, e);
	}
}

static int cmp_postings_size(const void *a, const void *b)
{
	const struct postings *x = *(const struct postings *const *)a;
	const struct postings *y = *(const struct postings *const *)b;
	return x->n < y->n ? -1 : x->n > y->n;
}

static void tier_substring(const struct index *x, const struct term *q, struct best *b)
{
	const struct postings *lists[TERM_TRIGRAMS_MAX];
	size_t nl = 0;
	bool scan = q->len < 3;
	if (!scan) {
		for (size_t i = 0; i + 3 <= q->len; i++) {
			const struct postings *p = tri_find(x, trigram_at(q->t + i));
			if (!p || p->n == 0)
				return; /* some trigram occurs nowhere */
			lists[nl++] = p;
		}
		qsort(lists, nl, sizeof(lists[0]), cmp_postings_size);
		scan = lists[0]->n > x->nuser / DENSE_DIVISOR;
	}
	if (scan) {
		/* handle order: the first k matches are the answer */
		for (size_t i = 0; i < x->nuser && b->n < b->k; i++)
			if (is_substring_only(x->by_user[i], q))
				best_offer(b, x->by_user[i]);
		return;
	}
	const struct postings *rare = lists[0];
	for (uint32_t i = 0; i < rare->n; i++) {
		uint32_t id = rare->ids[i];
		bool all = true;
		for (size_t j = 1; j < nl && all; j++)
			all = ids_contain(lists[j], id);
		const struct entry *e = all && id < x->nslots ? x->slots[id] : NULL;
		if (e && is_substring_only(e, q))
			best_offer(b, e);
	}
}

static int append_results(json_t *arr, const struct best *b)
{
	for (int i = 0; i < b->n; i++) {
		const struct entry *e = b->v[i];
		json_t *o = json_pack("{s:s, s:s, s:s?, s:s?, s:b}", "aura_id", e->aura_id, "user_id",
				      e->user_id, "display_name", e->display, "avatar_url", e->avatar,
				      "is_verified", e->is_verified);
		if (!o || json_array_append_new(arr, o) < 0)
			return -1;
	}
	return 0;
}

int aura_search_query(struct aura_search *s, const char *term, int limit, json_t **out)
{
	*out = NULL;
	if (!term || limit < 1)
		return -1;
	if (limit > LIMIT_MAX)
		limit = LIMIT_MAX;
	size_t tl = strnlen(term, AURA_SEARCH_MAX_TERM + 1);
	if (tl == 0 || tl > AURA_SEARCH_MAX_TERM)
		return -1;
	char folded[AURA_SEARCH_MAX_TERM + 1];
	aura_search_fold(folded, sizeof(folded), term);
	struct term q = {folded, tl};
	json_t *arr = json_array();
	if (!arr)
		return -1;
	int rc = 0;
	pthread_rwlock_rdlock(&s->lock);
	const struct index *x = s->idx;
	if (!x || s->stale) {
		rc = 1;
		goto out;
	}
	struct best b = {.k = limit};
	tier_exact(x, &q, &b);
	int found = b.n;
	if (append_results(arr, &b) < 0)
		goto oom;
	if (found < limit) {
		b = (struct best){.k = limit - found};
		tier_prefix(x, &q, &b);
		found += b.n;
		if (append_results(arr, &b) < 0)
			goto oom;
	}
	if (found < limit) {
		b = (struct best){.k = limit - found};
		tier_substring(x, &q, &b);
		if (append_results(arr, &b) < 0)
			goto oom;
	}
	goto out;
oom:
	rc = -1;
out:
	pthread_rwlock_unlock(&s->lock);
	if (rc != 0) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return 0;
}
