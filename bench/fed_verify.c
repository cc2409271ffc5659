/* bench/fed_verify.c - time to verify an inbound transaction of 50 signed
 * PDUs: the X-Matrix header over the whole body, then each PDU's ed25519
 * signature over its canonical JSON (the work /send does per PDU before
 * rooms get involved). Baseline from the same run: canonical JSON encoding
 * of the same 50 PDUs. Prints figures; never passes or fails.
 *
 *   fed_verify [rounds]   (default 300) */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cjson.h"
#include "sign.h"
#include "xmatrix.h"

#define NPDUS 50

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *what, double *t, int n)
{
	qsort(t, (size_t)n, sizeof(double), cmp);
	printf("%-44s median %.3f ms  p99 %.3f ms  (%d rounds)\n", what, t[n / 2], t[(n * 99) / 100], n);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 300;
	if (rounds < 10 || sodium_init() < 0)
		return 1;
	struct sign_key k;
	sign_key_generate(&k, "ed25519:bench");
	const char *origin = "origin.bench:8448";
	json_t *pdus = json_array();
	for (int i = 0; i < NPDUS; i++) {
		char body[400];
		memset(body, 'x', sizeof(body) - 1);
		body[sizeof(body) - 1] = '\0';
		json_t *pdu = json_pack("{s:s, s:s, s:s, s:I, s:{s:s, s:s}, s:[s], s:[s], s:i, s:{s:s}}", "room_id",
					"!room:origin.bench", "sender", "@alice:origin.bench", "type", "m.room.message",
					"origin_server_ts", (json_int_t)1700000000000 + i, "content", "msgtype",
					"m.text", "body", body, "prev_events", "$prev:origin.bench", "auth_events",
					"$create:origin.bench", "depth", i + 10, "hashes", "sha256",
					"b64hashplaceholderxxxxxxxxxxxxxxxxxxxxxxxxx");
		sign_json(pdu, origin, &k, NULL);
		json_array_append_new(pdus, pdu);
	}
	json_t *txn = json_pack("{s:s, s:I, s:O, s:[]}", "origin", origin, "origin_server_ts",
				(json_int_t)1700000000000, "pdus", pdus, "edus");
	const char *uri = "/_matrix/federation/v1/send/1700000000000.bench";
	char *hdr = xmatrix_build_header(&k, origin, "dest.bench", "PUT", uri, txn, NULL);
	size_t body_len = 0;
	char *body_text = cjson_encode(txn, &body_len, NULL);
	double *t = calloc((size_t)rounds, sizeof(double));
	double *b = calloc((size_t)rounds, sizeof(double));
	double *c = calloc((size_t)rounds, sizeof(double));
	/* raw crypto: 50 detached verifications of PDU-sized messages */
	unsigned char msg[NPDUS][800], sigs[NPDUS][64];
	for (int i = 0; i < NPDUS; i++) {
		randombytes_buf(msg[i], sizeof(msg[i]));
		crypto_sign_detached(sigs[i], NULL, msg[i], sizeof(msg[i]), k.sk);
	}
	int bad = 0;
	for (int r = 0; r < rounds; r++) {
		double t0 = now_ms();
		/* what the server does: parse the body, check X-Matrix, each PDU */
		json_t *parsed = cjson_parse_object(body_text, body_len, NULL, NULL);
		struct xmatrix_auth a;
		if (xmatrix_parse_header(hdr, &a, NULL) < 0 ||
		    xmatrix_verify(&a, "PUT", uri, "dest.bench", parsed, k.pk, NULL) < 0)
			bad++;
		size_t i;
		json_t *pdu;
		json_array_foreach(json_object_get(parsed, "pdus"), i,
				   pdu) if (sign_verify_json(pdu, origin, "ed25519:bench", k.pk, NULL) < 0) bad++;
		json_decref(parsed);
		t[r] = now_ms() - t0;

		t0 = now_ms();
		parsed = cjson_parse_object(body_text, body_len, NULL, NULL);
		json_array_foreach(json_object_get(parsed, "pdus"), i, pdu)
		{
			char *c = cjson_encode(pdu, NULL, NULL);
			free(c);
		}
		json_decref(parsed);
		b[r] = now_ms() - t0;

		t0 = now_ms();
		for (int j = 0; j < NPDUS; j++)
			if (crypto_sign_verify_detached(sigs[j], msg[j], sizeof(msg[j]), k.pk) != 0)
				bad++;
		c[r] = now_ms() - t0;
	}
	printf("transaction: %d PDUs, %zu bytes, %d verification failures\n", NPDUS, body_len, bad);
	report("verify txn (parse + X-Matrix + 50 PDU sigs)", t, rounds);
	report("baseline: parse + canonical JSON of 50 PDUs", b, rounds);
	report("baseline: 50 raw ed25519 verifications", c, rounds);
	free(t);
	free(b);
	free(c);
	free(hdr);
	free(body_text);
	json_decref(txn);
	json_decref(pdus);
	sign_key_wipe(&k);
	return 0;
}
