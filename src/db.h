/* db.h - libpq connections, parameterised queries and migrations. */
#ifndef AL_DB_H
#define AL_DB_H

#include <jansson.h>
#include <libpq-fe.h>

#include "error.h"

#define DB_MAX_PREPARED 32

struct db {
	PGconn *conn;
	char *conninfo;
	/* statements prepared on this connection by db_exec_prepared (their
	 * names, how often each ran); forgotten when the connection is reset */
	const char *prepared[DB_MAX_PREPARED];
	unsigned long prepared_uses[DB_MAX_PREPARED];
	int nprepared;
	int segments; /* pipeline segments sent and not read yet */
};

int db_open(struct db *db, const char *conninfo, struct al_error *err);
void db_close(struct db *db);

/* Run a parameterised statement. Returns the result when it succeeded
 * (PGRES_COMMAND_OK or PGRES_TUPLES_OK); otherwise logs the server's message,
 * fills err with 500 M_UNKNOWN and returns NULL. A broken connection is
 * reset once and the statement retried when no transaction was open. */
PGresult *db_exec(struct db *db, struct al_error *err, const char *sql, int nparams, const char *const *params);

/* db_exec, and the first column of its rows as a new JSON array of
 * strings; NULL with err on failure. */
json_t *db_exec_strings(struct db *db, struct al_error *err, const char *sql, int nparams, const char *const *params);

/* As db_exec, but a unique-violation (23505) is reported as 1 in *conflict
 * instead of as an error, so callers can answer "already taken". */
PGresult *db_exec_unique(struct db *db, struct al_error *err, int *conflict, const char *sql, int nparams,
			 const char *const *params);

/* As db_exec_unique (conflict may be NULL), for a hot statement: prepared
 * on the connection under name (a static string, always with the same
 * sql), then only executed, so it is not parsed and planned each time.
 * It is prepared again after 16, 32, 64 ... 65536 runs and then every
 * 65536: PostgreSQL keeps a generic plan once it chose one, and a plan made
 * while a table was nearly empty (a sequential scan) would stay when the
 * table has grown. */
PGresult *db_exec_prepared(struct db *db, struct al_error *err, int *conflict, const char *name, const char *sql,
			   int nparams, const char *const *params);

/* Several statements in one round trip (libpq pipeline mode), run in
 * order. name: as db_exec_prepared; NULL: planned with its values. */
struct db_stmt {
	const char *name;
	const char *sql;
	int nparams;
	const char *const *params;
	PGresult *result; /* out, the caller's (PQclear) */
};
/* 0 when all succeeded (each result set). -1 when one failed: err filled
 * (500), or *conflict = 1 (conflict may be NULL) for a unique violation;
 * the statements after it did not run, no result is kept. An open
 * transaction is then aborted: roll it back. */
int db_pipeline(struct db *db, struct db_stmt *stmts, int n, int *conflict, struct al_error *err);
/* db_pipeline in two halves, so that the caller works while the server
 * runs the statements. Segments are read in the order sent; while one is
 * in flight only already prepared (or unnamed) statements can be sent.
 * send: 0 queued, -1 not (err). recv: as db_pipeline, for the oldest. */
int db_pipeline_send(struct db *db, struct db_stmt *stmts, int n, struct al_error *err);
int db_pipeline_recv(struct db *db, struct db_stmt *stmts, int n, int *conflict, struct al_error *err);

int db_begin(struct db *db, struct al_error *err);
int db_commit(struct db *db, struct al_error *err);
void db_rollback(struct db *db);

/* Run fn inside a transaction: the caller's when one is open (so a change
 * and its audit entry commit together), else its own, committed when fn
 * returns 0 and rolled back when it fails. */
typedef int (*db_txn_fn)(struct db *db, const void *arg, struct al_error *err);
int db_transaction(struct db *db, struct al_error *err, db_txn_fn fn, const void *arg);

/* Apply the sql/NNN_name.sql files whose number schema_version does not
 * record yet, each in its own transaction, in order. */
int db_migrate(struct db *db, const char *dir, struct al_error *err);

#endif
