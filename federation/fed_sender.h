/* fed_sender.h - the durable federation sender (sender.c) and inbound
 * transactions (fed_inbound.c). The outbox is federation_outbox; each
 * destination has at most one transaction in flight, of at most
 * FED_TXN_MAX_PDUS PDUs and FED_TXN_MAX_EDUS EDUs; items leave the outbox
 * only after a 200; failures back off exponentially (persisted in
 * federation_destinations). A transaction's items are tagged with its
 * txnId before it is sent, so a retry (also after a crash) resends the
 * same items under the same txnId and the receiver's de-duplication makes
 * delivery exactly-once. */
#ifndef AL_FED_SENDER_H
#define AL_FED_SENDER_H

#include <jansson.h>
#include <stdint.h>

#include "db.h"
#include "error.h"

#define FED_TXN_MAX_PDUS 50
#define FED_TXN_MAX_PDUS_STR "50"
#define FED_TXN_MAX_EDUS 100
#define FED_TXN_MAX_EDUS_STR "100"
#define FED_BACKOFF_MIN_MS 2000
#define FED_BACKOFF_MAX_MS (10 * 60 * 1000)
#define FED_EDU_TYPE_MAX 128

/* Next retry interval after a failure, given the current one (0 = none). */
int64_t fed_backoff_next(int64_t current_ms);

/* Handler for one EDU type: called once per inbound transaction with the
 * array of that type's contents (each checked to be an object), inside
 * the transaction that records the txnId. 0 or -1 with err. */
struct app;
typedef int (*fed_edu_handler)(struct app *app, struct db *db, const char *origin, json_t *contents,
			       struct al_error *err);

/* Register before the HTTP workers start. 0 or -1 (table full). */
int fed_edu_register(const char *type, fed_edu_handler fn);

/* Inbound counters for tests: EDUs dispatched, transactions de-duplicated. */
long fed_inbound_edus_dispatched(void);

#endif
