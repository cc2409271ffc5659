#include "abuse.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "audit.h"
#include "aura_id.h"
#include "cjson.h"
#include "log.h"
#include "mesh.h"

#define MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"
#define REPORT_JSON                                                                      \
	"json_build_object('id', id, 'reporter_user_id', reporter_user_id,"              \
	" 'reported_aura_id', reported_aura_id, 'reported_node_id', reported_node_id,"   \
	" 'report_type', report_type, 'severity', severity, 'description', description," \
	" 'evidence', evidence, 'related_call_id', related_call_id, 'status', status,"   \
	" 'resolved_by', resolved_by, 'resolution_notes', resolution_notes,"             \
	" 'created_at', " MS("created_at") ", 'resolved_at', " MS(                       \
		"resolved_at") ","                                                       \
			       " 'reputation_applied_at', " MS("reputation_applied_at") ")::text"

static const char *const report_types[] = {"spam",           "harassment",      "impersonation", "fraud",
					   "malicious_node", "illegal_content", "other"};
static const char *const severities[] = {"low", "medium", "high", "critical"};
static const char *const statuses[] = {"pending", "investigating", "confirmed", "dismissed"};
static const char *const fields[] = {"reported_aura_id", "reported_node_id", "report_type",    "severity",
				     "description",      "evidence",         "related_call_id"};

#define IN(list, s) in_list(list, sizeof(list) / sizeof(list[0]), s)

static bool in_list(const char *const *list, size_t n, const char *s)
{
	for (size_t i = 0; s && i < n; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

static bool uuid_ok(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

int abuse_report_create(struct db *db, const char *reporter, const json_t *body, json_t **out, int64_t *retry_after_ms,
			struct al_error *err)
{
	*out = NULL;
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)body, key, v)
	{
		if (!IN(fields, key))
			return al_error_set(err, 400, "M_INVALID_PARAM", "unknown field '%.64s'", key);
	}
	bool bad = false;
	const char *aura = cjson_opt_string(body, "reported_aura_id", &bad);
	const char *node = cjson_opt_string(body, "reported_node_id", &bad);
	const char *type = cjson_opt_string(body, "report_type", &bad);
	const char *severity = cjson_opt_string(body, "severity", &bad);
	const char *desc = cjson_opt_string(body, "description", &bad);
	const char *call = cjson_opt_string(body, "related_call_id", &bad);
	if (bad)
		return al_error_set(err, 400, "M_INVALID_PARAM",
				    "reported_aura_id, reported_node_id, report_type, severity,"
				    " description and related_call_id are strings");
	if ((aura != NULL) == (node != NULL))
		return al_error_set(err, 400, "M_INVALID_PARAM",
				    "exactly one of reported_aura_id and reported_node_id");
	char username[AURA_ID_MAX], norm[AURA_ID_MAX + 8];
	if (aura) {
		if (!aura_id_parse(aura, username, sizeof(username)))
			return al_error_set(err, 400, "M_INVALID_PARAM", "reported_aura_id: an AuraID @name.aura");
		snprintf(norm, sizeof(norm), "@%s.aura", username);
		aura = norm;
	}
	if (node && !uuid_ok(node))
		return al_error_set(err, 400, "M_INVALID_PARAM", "reported_node_id: a node ID (UUID)");
	if (!type)
		return al_error_set(err, 400, "M_MISSING_PARAM", "report_type is required");
	if (!IN(report_types, type))
		return al_error_set(err, 400, "M_INVALID_PARAM",
				    "report_type: one of spam, harassment, impersonation, fraud,"
				    " malicious_node, illegal_content, other");
	if (severity && !IN(severities, severity))
		return al_error_set(err, 400, "M_INVALID_PARAM", "severity: one of low, medium, high, critical");
	if (!desc)
		return al_error_set(err, 400, "M_MISSING_PARAM", "description is required");
	size_t dl = accounts_utf8_chars(desc);
	if (dl < 1 || dl > ABUSE_DESCRIPTION_MAX)
		return al_error_set(err, 400, "M_INVALID_PARAM", "description: 1-%d characters", ABUSE_DESCRIPTION_MAX);
	if (call && (strlen(call) < 1 || strlen(call) > 255))
		return al_error_set(err, 400, "M_INVALID_PARAM", "related_call_id: 1-255 bytes");
	json_t *evidence = json_object_get(body, "evidence");
	char *evidence_text = NULL;
	if (evidence && !json_is_null(evidence)) {
		if (!json_is_object(evidence))
			return al_error_set(err, 400, "M_INVALID_PARAM", "evidence: an object");
		evidence_text = json_dumps(evidence, JSON_COMPACT | JSON_SORT_KEYS);
		if (!evidence_text)
			return al_error_set(err, 400, "M_INVALID_PARAM", "evidence: not serialisable");
		if (strlen(evidence_text) > ABUSE_EVIDENCE_MAX_BYTES) {
			free(evidence_text);
			return al_error_set(err, 400, "M_INVALID_PARAM", "evidence: at most %d bytes of JSON",
					    ABUSE_EVIDENCE_MAX_BYTES);
		}
	}
	PGresult *r = NULL, *ins = NULL;
	json_t *details = NULL;
	char max[16];
	snprintf(max, sizeof(max), "%d", ABUSE_MAX_PER_HOUR);
	if (db_begin(db, err) < 0)
		goto fail;
	/* One reporter's reports are serialised so the hourly cap holds. The
	 * lock is its own statement: the count below needs a snapshot taken
	 * after the lock was granted. */
	const char *lp[] = {reporter};
	r = db_exec(db, err, "SELECT pg_advisory_xact_lock(hashtext('abuse_reports:' || $1))", 1, lp);
	if (!r)
		goto fail;
	PQclear(r);
	const char *cp[] = {reporter, aura, node};
	r = db_exec(db, err,
		    "SELECT NULL,"
		    " (SELECT count(*) FROM abuse_reports WHERE reporter_user_id = $1"
		    "  AND created_at > now() - interval '1 hour'),"
		    " (SELECT " MS("min(created_at) + interval '1 hour'") " - " MS(
			    "now()") "  FROM abuse_reports WHERE reporter_user_id = $1"
				     "  AND created_at > now() - interval '1 hour'),"
				     " EXISTS (SELECT 1 FROM aura_id_registry WHERE user_id = $1 AND lower(aura_id) = "
				     "lower($2)),"
				     " EXISTS (SELECT 1 FROM mesh_nodes WHERE user_id = $1 AND node_id = $3::uuid)",
		    3, cp);
	if (!r)
		goto fail;
	if (PQgetvalue(r, 0, 3)[0] == 't' || PQgetvalue(r, 0, 4)[0] == 't') {
		al_error_set(err, 400, "ORG_AURALINK_CANNOT_REPORT_SELF", "you cannot report yourself");
		goto fail;
	}
	if (atoi(PQgetvalue(r, 0, 1)) >= ABUSE_MAX_PER_HOUR) {
		long long retry = PQgetisnull(r, 0, 2) ? 60000 : strtoll(PQgetvalue(r, 0, 2), NULL, 10);
		*retry_after_ms = retry > 0 ? retry : 1000;
		al_error_set(err, 429, "M_LIMIT_EXCEEDED", "at most %d abuse reports per hour", ABUSE_MAX_PER_HOUR);
		goto fail;
	}
	const char *ip[] = {reporter, aura, node, type, severity, desc, evidence_text, call};
	ins = db_exec(db, err,
		      "INSERT INTO abuse_reports (reporter_user_id, reported_aura_id, reported_node_id,"
		      " report_type, severity, description, evidence, related_call_id)"
		      " VALUES ($1, $2, $3::uuid, $4, coalesce($5, 'medium'), $6,"
		      " coalesce($7::jsonb, '{}'), $8) RETURNING id, status",
		      8, ip);
	if (!ins)
		goto fail;
	const char *id = PQgetvalue(ins, 0, 0);
	details = json_pack("{s:s, s:s, s:s}", "report_id", id, "report_type", type, "severity",
			    severity ? severity : "medium");
	if (audit_append(db, "abuse", "abuse_report.create", reporter, aura ? aura : node, NULL, details, err) < 0 ||
	    db_commit(db, err) < 0)
		goto fail;
	*out = json_pack("{s:s, s:s}", "id", id, "status", PQgetvalue(ins, 0, 1));
	json_decref(details);
	PQclear(r);
	PQclear(ins);
	free(evidence_text);
	return *out ? 0 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
fail:
	db_rollback(db);
	json_decref(details);
	PQclear(r);
	PQclear(ins);
	free(evidence_text);
	return -1;
}

int abuse_report_list(struct db *db, const char *status, int limit, json_t **out, struct al_error *err)
{
	if (status && !IN(statuses, status))
		return al_error_set(err, 400, "M_INVALID_PARAM",
				    "status: one of pending, investigating, confirmed, dismissed");
	if (limit < 1 || limit > 500)
		return al_error_set(err, 400, "M_INVALID_PARAM", "limit: 1-500");
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", limit);
	const char *params[] = {status, lim};
	PGresult *r = db_exec(db, err,
			      "SELECT " REPORT_JSON " FROM abuse_reports"
			      " WHERE $1::text IS NULL OR status = $1"
			      " ORDER BY created_at DESC, id LIMIT $2::integer",
			      2, params);
	if (!r)
		return -1;
	json_t *reports = json_array();
	for (int i = 0; reports && i < PQntuples(r); i++)
		json_array_append_new(reports, json_loads(PQgetvalue(r, i, 0), 0, NULL));
	PQclear(r);
	if (!reports)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	size_t n = json_array_size(reports);
	*out = json_pack("{s:o, s:I}", "reports", reports, "count", (json_int_t)n);
	return *out ? 0 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
}

int abuse_report_update(struct app *app, struct db *db, const char *admin, const char *id, const json_t *body,
			json_t **out, struct al_error *err)
{
	*out = NULL;
	if (!uuid_ok(id))
		return al_error_set(err, 404, "M_NOT_FOUND", "no such abuse report");
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)body, key, v)
	{
		if (strcmp(key, "status") != 0 && strcmp(key, "resolution_notes") != 0)
			return al_error_set(err, 400, "M_INVALID_PARAM", "unknown field '%.64s'", key);
	}
	bool bad = false;
	const char *status = cjson_opt_string(body, "status", &bad);
	const char *notes = cjson_opt_string(body, "resolution_notes", &bad);
	if (bad)
		return al_error_set(err, 400, "M_INVALID_PARAM", "status and resolution_notes are strings");
	if (!status)
		return al_error_set(err, 400, "M_MISSING_PARAM", "status is required");
	if (!IN(statuses, status))
		return al_error_set(err, 400, "M_INVALID_PARAM",
				    "status: one of pending, investigating, confirmed, dismissed");
	if (notes && accounts_utf8_chars(notes) > 4000)
		return al_error_set(err, 400, "M_INVALID_PARAM", "resolution_notes: at most 4000 characters");
	PGresult *r = NULL;
	json_t *details = NULL;
	if (db_begin(db, err) < 0)
		return -1;
	const char *params[] = {id, status, notes, admin};
	/* The first confirmation of a report against a node marks it
	 * (reputation_applied_at) and says so in column 1: the penalty is
	 * applied once, however often the report is reopened and confirmed. */
	r = db_exec(db, err,
		    "WITH old AS (SELECT id AS old_id, reputation_applied_at AS applied FROM abuse_reports"
		    "  WHERE id = $1::uuid FOR UPDATE)"
		    " UPDATE abuse_reports SET status = $2,"
		    " resolution_notes = coalesce($3, resolution_notes),"
		    " resolved_by = CASE WHEN $2 IN ('confirmed', 'dismissed') THEN $4 END,"
		    " resolved_at = CASE WHEN $2 IN ('confirmed', 'dismissed') THEN now() END,"
		    " reputation_applied_at = CASE WHEN $2 = 'confirmed' AND reported_node_id IS NOT NULL"
		    "  THEN coalesce(reputation_applied_at, now()) ELSE reputation_applied_at END"
		    " FROM old WHERE id = old.old_id RETURNING " REPORT_JSON ","
		    " old.applied IS NULL AND reputation_applied_at IS NOT NULL, reported_node_id::text, severity",
		    4, params);
	if (!r)
		goto fail;
	if (PQntuples(r) == 0) {
		al_error_set(err, 404, "M_NOT_FOUND", "no such abuse report");
		goto fail;
	}
	details = json_pack("{s:s, s:s}", "report_id", id, "status", status);
	if (audit_append(db, "admin", "abuse_report.update", admin, id, NULL, details, err) < 0 ||
	    db_commit(db, err) < 0)
		goto fail;
	if (PQgetvalue(r, 0, 1)[0] == 't' && app) {
		/* committed: now the node pays (in memory, flushed with its
		 * abuse_confirmed reputation event) */
		struct al_error merr = {0};
		if (mesh_node_abuse_confirmed(app, PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3), id, &merr) < 0)
			log_info("abuse", "confirmed report without a node to penalise report=%s node=%s: %s", id,
				 PQgetvalue(r, 0, 2), merr.message);
	}
	*out = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
	json_decref(details);
	PQclear(r);
	return *out ? 0 : al_error_set(err, 500, "M_UNKNOWN", "cannot read the report");
fail:
	db_rollback(db);
	json_decref(details);
	PQclear(r);
	return -1;
}
