/* idem.h - the one idempotency scheme of every create and every call that
 * must not run twice (DESIGN.md, API conventions: the same key and the same
 * request returns the first result; the same key with another request is
 * FAILED_PRECONDITION).
 *
 * A key is scoped by method and actor ("CreateLine/acct:42/<client key>"),
 * so two callers, or two methods, never share one; the request is
 * fingerprinted by a BLAKE2b of its re-packed bytes keyed with the service's
 * secret hash key (fd_request_mac: a create may carry a password, and a
 * plain hash of it, stored, could be tested against guesses). Both
 * live in frontdesk.idempotency (migrations/0013_idempotency.sql), one row
 * per key, each service walled to its own rows.
 *
 * The key is claimed first, in the transaction that does the work: a
 * duplicate sent while the first is in flight waits on the claim (the
 * row's unique index) until the first commits, then answers the first
 * result; if the first rolled back, the duplicate claims the key and does
 * the work itself. So N identical requests at once have one effect and one
 * answer, whatever the interleaving. (billingd keeps its keys in the ledger
 * row itself, which serves the same way without an extra write per Charge.)
 *
 *     fd_idem_t k;
 *     fd_idem_replay_t first;
 *     rc = fd_idem_make(&t, "linesd", "CreateStream", req->idempotency_key, true, msg, &k);
 *     ... in the transaction:
 *     rc = fd_idem_claim(tx, &k, &first);     1: answer from first.result_id
 *     ... the work ...
 *     rc = fd_idem_done(tx, &k, new_id, NULL);                                     */
#ifndef FD_IDEM_H
#define FD_IDEM_H

#include <stdbool.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "fd/db.h"
#include "fd/tctx.h"

typedef struct fd_idem {
	const char *service;        /* the rows' owner: "linesd" (static) */
	const char *key;            /* "<Method>/<actor>/<client key>", in the call's arena; NULL: none */
	const char *hash;           /* 64 hex digits, in the call's arena */
	fd_arena_t *arena;          /* where a replay's response is copied */
} fd_idem_t;

typedef struct fd_idem_replay {
	int64_t result_id;          /* what the first call created (0: none recorded) */
	ProtobufCBinaryData response;   /* the first answer, when recorded (in the arena) */
} fd_idem_replay_t;

/* The key of t's call for method: client_key checked (fd_check_idem_key),
 * "" allowed only when !required (then out->key is NULL and the call is not
 * idempotent). Out of memory fails the call (RESOURCE_EXHAUSTED): a key
 * without its fingerprint could match another request. 0 or -code with the
 * call's error set. */
int fd_idem_make(const fd_tctx_t *t, const char *service, const char *method, const char *client_key,
                 bool required, const ProtobufCMessage *req, fd_idem_t *out) FD_MUSTCHECK;

/* In the work's transaction, before the work: 0 claimed (do the work, then
 * fd_idem_done in the same transaction), 1 a replay (*first filled: answer
 * from it, do nothing), or -code: FAILED_PRECONDITION when the key was used
 * with another request. A NULL key claims nothing and returns 0. */
int fd_idem_claim(fd_tx_t *tx, const fd_idem_t *k, fd_idem_replay_t *first) FD_MUSTCHECK;

/* Records the first result under the key claimed in this transaction:
 * result_id, and response (NULL: none) when an id is not enough to answer a
 * replay. flags as fd_tx_exec's. A NULL key records nothing. */
int fd_idem_done(fd_tx_t *tx, const fd_idem_t *k, int64_t result_id, const ProtobufCBinaryData *response,
                 unsigned flags) FD_MUSTCHECK;

#endif
