#include "db.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define MIGRATION_LOCK_ID "7246913"
#define MAX_MIGRATIONS 1000
#define MAX_MIGRATION_BYTES (4 * 1024 * 1024)

/* Settings of every session: UTC; no JIT (it compiled for over a second
 * queries that run in milliseconds, whose estimates crossed
 * jit_above_cost: recursive CTEs, statistics of a table that just grew). */
static void session_setup(struct db *db)
{
	PGresult *r = PQexec(db->conn, "SET TIME ZONE 'UTC'; SET jit = off");
	PQclear(r);
}

int db_open(struct db *db, const char *conninfo, struct al_error *err)
{
	memset(db, 0, sizeof(*db));
	db->conninfo = strdup(conninfo);
	if (!db->conninfo)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	db->conn = PQconnectdb(conninfo);
	if (PQstatus(db->conn) != CONNECTION_OK) {
		al_error_set(err, 500, "M_UNKNOWN", "database connection failed: %s", PQerrorMessage(db->conn));
		db_close(db);
		return -1;
	}
	session_setup(db);
	return 0;
}

void db_close(struct db *db)
{
	if (db->conn)
		PQfinish(db->conn);
	free(db->conninfo);
	memset(db, 0, sizeof(*db));
}

static int result_ok(const PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

static int prepared_slot(const struct db *db, const char *name)
{
	for (int i = 0; i < db->nprepared; i++)
		if (strcmp(db->prepared[i], name) == 0)
			return i;
	return -1;
}

static bool replan_due(unsigned long uses)
{
	return uses >= 16 && (uses <= 65536 ? (uses & (uses - 1)) == 0 : uses % 65536 == 0);
}

static PGresult *prepare(struct db *db, const char *name, const char *sql, int nparams)
{
	PGresult *p = PQprepare(db->conn, name, sql, nparams, NULL);
	if (!result_ok(p))
		return p;
	PQclear(p);
	return NULL;
}

/* Make name usable on this connection: prepared when new (false in
 * *use when the table is full: run it unnamed), prepared again when
 * replan_due. NULL, or the failed result. */
static PGresult *ensure_prepared(struct db *db, const char *name, const char *sql, int nparams, bool *use)
{
	PGresult *fail;
	int slot = prepared_slot(db, name);
	*use = false;
	if (slot >= 0 && replan_due(++db->prepared_uses[slot])) {
		char *ident = PQescapeIdentifier(db->conn, name, strlen(name));
		char stmt[256];
		if (!ident || snprintf(stmt, sizeof(stmt), "DEALLOCATE %s", ident) >= (int)sizeof(stmt)) {
			PQfreemem(ident);
			return NULL; /* unnamed this time */
		}
		PQfreemem(ident);
		PGresult *d = PQexec(db->conn, stmt);
		if (!result_ok(d))
			return d;
		PQclear(d);
		if ((fail = prepare(db, name, sql, nparams)) != NULL) {
			/* forgotten: the next call prepares it anew */
			db->prepared[slot] = db->prepared[db->nprepared - 1];
			db->prepared_uses[slot] = db->prepared_uses[db->nprepared - 1];
			db->nprepared--;
			return fail;
		}
	}
	if (slot < 0 && db->nprepared < DB_MAX_PREPARED) {
		if ((fail = prepare(db, name, sql, nparams)) != NULL)
			return fail;
		slot = db->nprepared++;
		db->prepared[slot] = name;
		db->prepared_uses[slot] = 1;
	}
	*use = slot >= 0;
	return NULL;
}

/* name: run as the prepared statement of that name (ensure_prepared);
 * NULL: parsed and planned now. */
static PGresult *exec_once(struct db *db, const char *name, const char *sql, int nparams, const char *const *params)
{
	bool use = false;
	PGresult *fail = name ? ensure_prepared(db, name, sql, nparams, &use) : NULL;
	if (fail)
		return fail;
	if (use)
		return PQexecPrepared(db->conn, name, nparams, params, NULL, NULL, 0);
	return PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
}

static PGresult *exec_named(struct db *db, struct al_error *err, int *conflict, const char *name, const char *sql,
			    int nparams, const char *const *params)
{
	int was_idle = PQtransactionStatus(db->conn) == PQTRANS_IDLE;
	PGresult *r = exec_once(db, name, sql, nparams, params);
	if (!result_ok(r) && PQstatus(db->conn) == CONNECTION_BAD && was_idle) {
		log_warn("db", "connection lost, reconnecting");
		PQclear(r);
		PQreset(db->conn);
		db->nprepared = 0; /* a new session has none */
		db->segments = 0;
		session_setup(db);
		r = exec_once(db, name, sql, nparams, params);
	}
	if (result_ok(r))
		return r;
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	if (conflict && state && strcmp(state, "23505") == 0) {
		*conflict = 1;
		PQclear(r);
		return NULL;
	}
	log_error("db", "query failed: %s sqlstate=%s",
		  PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
								 : PQerrorMessage(db->conn),
		  state ? state : "-");
	al_error_set(err, 500, "M_UNKNOWN", "internal database error");
	PQclear(r);
	return NULL;
}

static PGresult *exec_checked(struct db *db, struct al_error *err, int *conflict, const char *sql, int nparams,
			      const char *const *params)
{
	return exec_named(db, err, conflict, NULL, sql, nparams, params);
}

PGresult *db_exec_prepared(struct db *db, struct al_error *err, int *conflict, const char *name, const char *sql,
			   int nparams, const char *const *params)
{
	if (conflict)
		*conflict = 0;
	return exec_named(db, err, conflict, name, sql, nparams, params);
}

PGresult *db_exec(struct db *db, struct al_error *err, const char *sql, int nparams, const char *const *params)
{
	return exec_checked(db, err, NULL, sql, nparams, params);
}

json_t *db_exec_strings(struct db *db, struct al_error *err, const char *sql, int nparams, const char *const *params)
{
	PGresult *r = db_exec(db, err, sql, nparams, params);
	if (!r)
		return NULL;
	json_t *a = json_array();
	for (int i = 0; a && i < PQntuples(r); i++)
		json_array_append_new(a, json_string(PQgetvalue(r, i, 0)));
	PQclear(r);
	if (!a)
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	return a;
}

PGresult *db_exec_unique(struct db *db, struct al_error *err, int *conflict, const char *sql, int nparams,
			 const char *const *params)
{
	*conflict = 0;
	return exec_checked(db, err, conflict, sql, nparams, params);
}

static void pipeline_error(PGresult *r, const char *what, int *conflict, struct al_error *err)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	if (conflict && state && strcmp(state, "23505") == 0) {
		*conflict = 1;
		return;
	}
	const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	log_error("db", "pipelined query failed: %s sqlstate=%s", msg ? msg : what, state ? state : "-");
	al_error_set(err, 500, "M_UNKNOWN", "internal database error");
}

/* Queue stmts and a sync. With segments already in flight nothing
 * synchronous may be sent: a named statement runs prepared only if it
 * already is (no replan), else unnamed. -1: nothing queued (err set);
 * else 0, *failed the first statement that could not be queued (or -1). */
static int pipeline_queue(struct db *db, struct db_stmt *stmts, int n, int *failed, struct al_error *err)
{
	bool busy = db->segments > 0;
	*failed = -1;
	for (int i = 0; i < n; i++)
		stmts[i].result = NULL;
	bool *use = calloc((size_t)n + 1, sizeof(*use));
	if (!use)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	for (int i = 0; i < n; i++) {
		if (!stmts[i].name)
			continue;
		if (busy) {
			use[i] = prepared_slot(db, stmts[i].name) >= 0;
			continue;
		}
		PGresult *fail = ensure_prepared(db, stmts[i].name, stmts[i].sql, stmts[i].nparams, &use[i]);
		if (fail) {
			pipeline_error(fail, "prepare", NULL, err);
			PQclear(fail);
			free(use);
			return -1;
		}
	}
	if (!busy && !PQenterPipelineMode(db->conn)) {
		free(use);
		pipeline_error(NULL, PQerrorMessage(db->conn), NULL, err);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		int ok = use[i] ? PQsendQueryPrepared(db->conn, stmts[i].name, stmts[i].nparams, stmts[i].params, NULL,
						      NULL, 0)
				: PQsendQueryParams(db->conn, stmts[i].sql, stmts[i].nparams, NULL, stmts[i].params,
						    NULL, NULL, 0);
		if (!ok) {
			*failed = i;
			break;
		}
	}
	free(use);
	if (*failed >= 0 || !PQpipelineSync(db->conn)) {
		pipeline_error(NULL, PQerrorMessage(db->conn), NULL, err);
		*failed = *failed >= 0 ? *failed : 0;
		/* what was sent still answers; read up to the sync or a dead end */
	}
	db->segments++;
	return 0;
}

/* Read the oldest segment in flight into stmts (the n it was queued
 * with); pipeline mode ends with the last one. */
static int pipeline_collect(struct db *db, struct db_stmt *stmts, int n, int failed, int *conflict,
			    struct al_error *err)
{
	int q = 0, nulls = 0;
	bool synced = false;
	if (conflict)
		*conflict = 0;
	/* Each statement's result, then NULL; finally PGRES_PIPELINE_SYNC. */
	while (!synced && nulls < 2 * n + 4 && PQstatus(db->conn) == CONNECTION_OK) {
		PGresult *r = PQgetResult(db->conn);
		if (!r) {
			q++;
			nulls++;
			continue;
		}
		nulls = 0;
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_PIPELINE_SYNC) {
			synced = true;
		} else if (q < n && result_ok(r) && !stmts[q].result) {
			stmts[q].result = r;
			continue;
		} else if (st != PGRES_PIPELINE_ABORTED && failed < 0) {
			failed = q;
			pipeline_error(r, "query", conflict, err);
		}
		PQclear(r);
	}
	if (!synced && failed < 0) {
		failed = q < n ? q : n - 1;
		pipeline_error(NULL, PQerrorMessage(db->conn), NULL, err);
	}
	db->segments = synced && db->segments > 0 ? db->segments - 1 : 0;
	if (synced && db->segments == 0)
		PQexitPipelineMode(db->conn);
	for (int i = 0; failed >= 0 && i < n; i++) {
		PQclear(stmts[i].result);
		stmts[i].result = NULL;
	}
	return failed >= 0 ? -1 : 0;
}

int db_pipeline(struct db *db, struct db_stmt *stmts, int n, int *conflict, struct al_error *err)
{
	int failed;
	if (conflict)
		*conflict = 0;
	if (pipeline_queue(db, stmts, n, &failed, err) < 0)
		return -1;
	return pipeline_collect(db, stmts, n, failed, conflict, err);
}

int db_pipeline_send(struct db *db, struct db_stmt *stmts, int n, struct al_error *err)
{
	int failed;
	if (pipeline_queue(db, stmts, n, &failed, err) < 0)
		return -1;
	if (failed < 0)
		return 0;
	if (db->segments == 1) { /* half sent, alone: read what there is */
		pipeline_collect(db, stmts, n, failed, NULL, err);
		return -1;
	}
	/* half sent behind others (a broken connection, in practice): start
	 * again; what was in flight reads as failed, its outcome unknown */
	log_warn("db", "pipeline send failed with segments in flight, reconnecting");
	PQreset(db->conn);
	db->nprepared = 0;
	db->segments = 0;
	session_setup(db);
	return -1;
}

int db_pipeline_recv(struct db *db, struct db_stmt *stmts, int n, int *conflict, struct al_error *err)
{
	return pipeline_collect(db, stmts, n, -1, conflict, err);
}

static int exec_simple(struct db *db, struct al_error *err, const char *sql)
{
	PGresult *r = db_exec(db, err, sql, 0, NULL);
	if (!r)
		return -1;
	PQclear(r);
	return 0;
}

int db_begin(struct db *db, struct al_error *err)
{
	return exec_simple(db, err, "BEGIN");
}

int db_commit(struct db *db, struct al_error *err)
{
	return exec_simple(db, err, "COMMIT");
}

void db_rollback(struct db *db)
{
	if (PQtransactionStatus(db->conn) != PQTRANS_IDLE)
		PQclear(PQexec(db->conn, "ROLLBACK"));
}

int db_transaction(struct db *db, struct al_error *err, db_txn_fn fn, const void *arg)
{
	bool own = PQtransactionStatus(db->conn) == PQTRANS_IDLE;
	if (own && db_begin(db, err) < 0)
		return -1;
	if (fn(db, arg, err) == 0 && (!own || db_commit(db, err) == 0))
		return 0;
	if (own)
		db_rollback(db);
	return -1;
}

/* ---- migrations ---- */

struct migration {
	int version;
	char name[256];
};

static int migration_cmp(const void *a, const void *b)
{
	return ((const struct migration *)a)->version - ((const struct migration *)b)->version;
}

static int parse_migration_name(const char *name, struct migration *m)
{
	size_t len = strlen(name);
	if (len < 9 || len >= sizeof(m->name) || strcmp(name + len - 4, ".sql") != 0)
		return -1;
	for (int i = 0; i < 3; i++)
		if (name[i] < '0' || name[i] > '9')
			return -1;
	if (name[3] != '_')
		return -1;
	m->version = (name[0] - '0') * 100 + (name[1] - '0') * 10 + (name[2] - '0');
	snprintf(m->name, sizeof(m->name), "%s", name);
	return 0;
}

static int list_migrations(const char *dir, struct migration *out, int max, struct al_error *err)
{
	DIR *d = opendir(dir);
	if (!d)
		return al_error_set(err, 500, "M_UNKNOWN", "migrations directory %s cannot be opened", dir);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		struct migration m;
		if (parse_migration_name(e->d_name, &m) < 0)
			continue;
		if (n == max) {
			closedir(d);
			return al_error_set(err, 500, "M_UNKNOWN", "too many migrations in %s", dir);
		}
		out[n++] = m;
	}
	closedir(d);
	qsort(out, (size_t)n, sizeof(*out), migration_cmp);
	for (int i = 1; i < n; i++)
		if (out[i].version == out[i - 1].version)
			return al_error_set(err, 500, "M_UNKNOWN", "two migrations numbered %03d in %s", out[i].version,
					    dir);
	return n;
}

static char *read_file(const char *path, struct al_error *err)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		al_error_set(err, 500, "M_UNKNOWN", "cannot read %s", path);
		return NULL;
	}
	char *buf = malloc(MAX_MIGRATION_BYTES + 1);
	size_t n = buf ? fread(buf, 1, MAX_MIGRATION_BYTES + 1, f) : 0;
	fclose(f);
	if (!buf || n > MAX_MIGRATION_BYTES) {
		free(buf);
		al_error_set(err, 500, "M_UNKNOWN", "%s is too large", path);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* Marks applied[v] for every version recorded in schema_version. A version
 * is looked up by itself, not against the highest one: a migration numbered
 * below one already applied (added later on another branch) still runs. */
static int applied_versions(struct db *db, bool applied[1000], struct al_error *err)
{
	if (exec_simple(db, err,
			"CREATE TABLE IF NOT EXISTS schema_version ("
			" version integer PRIMARY KEY, name text NOT NULL,"
			" applied_at timestamptz NOT NULL DEFAULT now())") < 0)
		return -1;
	PGresult *r = db_exec(db, err, "SELECT version FROM schema_version", 0, NULL);
	if (!r)
		return -1;
	for (int i = 0; i < PQntuples(r); i++) {
		int v = atoi(PQgetvalue(r, i, 0));
		if (v >= 0 && v < 1000)
			applied[v] = true;
	}
	PQclear(r);
	return 0;
}

static int apply_migration(struct db *db, const char *dir, const struct migration *m, struct al_error *err)
{
	char path[2048];
	snprintf(path, sizeof(path), "%s/%s", dir, m->name);
	char *sql = read_file(path, err);
	if (!sql)
		return -1;
	if (db_begin(db, err) < 0) {
		free(sql);
		return -1;
	}
	PGresult *r = PQexec(db->conn, sql);
	free(sql);
	if (!result_ok(r)) {
		al_error_set(err, 500, "M_UNKNOWN", "migration %s failed: %s", m->name, PQresultErrorMessage(r));
		PQclear(r);
		db_rollback(db);
		return -1;
	}
	PQclear(r);
	char version[16];
	snprintf(version, sizeof(version), "%d", m->version);
	const char *params[] = {version, m->name};
	r = db_exec(db, err, "INSERT INTO schema_version (version, name) VALUES ($1, $2)", 2, params);
	if (!r) {
		db_rollback(db);
		return -1;
	}
	PQclear(r);
	if (db_commit(db, err) < 0)
		return -1;
	log_info("db", "applied migration %s", m->name);
	return 0;
}

int db_migrate(struct db *db, const char *dir, struct al_error *err)
{
	static struct migration found[MAX_MIGRATIONS];
	int n = list_migrations(dir, found, MAX_MIGRATIONS, err);
	if (n < 0)
		return -1;
	if (exec_simple(db, err, "SELECT pg_advisory_lock(" MIGRATION_LOCK_ID ")") < 0)
		return -1;
	bool applied[1000] = {false};
	int rc = applied_versions(db, applied, err);
	for (int i = 0; rc == 0 && i < n; i++)
		if (!applied[found[i].version])
			rc = apply_migration(db, dir, &found[i], err);
	struct al_error ignored;
	PGresult *r = db_exec(db, &ignored, "SELECT pg_advisory_unlock(" MIGRATION_LOCK_ID ")", 0, NULL);
	PQclear(r);
	return rc;
}
