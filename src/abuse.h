/* abuse.h - abuse reports against one AuraID or one mesh node, and their
 * moderation by server admins. Domain module: no HTTP. */
#ifndef AL_ABUSE_H
#define AL_ABUSE_H

#include <jansson.h>
#include <stdint.h>

#include "db.h"
#include "error.h"

#define ABUSE_MAX_PER_HOUR 20         /* reports per reporter, enforced in the database */
#define ABUSE_DESCRIPTION_MAX 4000    /* characters */
#define ABUSE_EVIDENCE_MAX_BYTES 8192 /* compact JSON */

/* Validate and store a report by `reporter` (body as POST /abuse_reports).
 * *out: {id, status}. 400 ORG_AURALINK_CANNOT_REPORT_SELF for her own
 * AuraID or node; 429 M_LIMIT_EXCEEDED beyond ABUSE_MAX_PER_HOUR, with
 * *retry_after_ms. Written with an audit entry (category abuse). */
int abuse_report_create(struct db *db, const char *reporter, const json_t *body, json_t **out, int64_t *retry_after_ms,
			struct al_error *err);

/* Admin: reports with the given status (NULL: all), newest first. */
int abuse_report_list(struct db *db, const char *status, int limit, json_t **out, struct al_error *err);
/* Admin: set status (and resolution_notes); audit entry (category admin).
 * The first time a report with reported_node_id becomes confirmed, the
 * node's reputation drops by mesh_reputation_abuse_delta(severity) (low -5,
 * medium -10, high -20, critical -40) with an abuse_confirmed
 * node_reputation_events row (mesh_node_abuse_confirmed); the report keeps
 * reputation_applied_at, so confirming it again later changes nothing. */
struct app;
int abuse_report_update(struct app *app, struct db *db, const char *admin, const char *id, const json_t *body,
			json_t **out, struct al_error *err);

#endif
