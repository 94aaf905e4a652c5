/* money.h - what every billingd call shares: the ledger's account ids, the
 * prelude of a call that moves credits (its tenant context, idempotency key
 * and request hash), the look-up of an earlier answer under that key, the
 * subtree rule applied to an account, and the checks of amounts and notes.
 *
 * A money-moving call's idempotency record is its ledger entry itself: the
 * entry carries the key (scoped to method and caller) under a unique index,
 * so no other write is made for it (issue 12, item 8). */
#ifndef BILLINGD_MONEY_H
#define BILLINGD_MONEY_H

#include <stdbool.h>
#include <stdint.h>
#include "fd/tctx.h"
#include "frontdesk/v1/billing.pb-c.h"

/* A tenant's own accounts; resellers' accounts are their ids (> 0). */
#define ACCOUNT_ISSUANCE 0
#define ACCOUNT_CONSUMPTION (-1)

/* The kind of account id (> 0: a reseller's). */
Frontdesk__V1__AccountKind account_kind(int64_t id);

/* A call that moves credits: who, where, which key. Strings in the call's
 * arena. */
typedef struct money {
	fd_tctx_t t;                 /* caller, tenant (and its text) */
	const char *idem;            /* "<Method>/<actor>/<key>" */
	const char *hash;            /* the request's hash, hex */
	const char *actor_account;   /* one of these is NULL */
	const char *actor_service;
	Frontdesk__V1__LedgerEntry *entry;   /* the answer, once made or found */
} money_t;

/* The prelude of a money-moving handler: the tenant context (fd_tctx_begin:
 * caller, scope, tenant; the platform has no credits), then the key (required,
 * fd_check_idem_key), scoped to method and actor, and the request's hash. Out
 * of memory fails the call. 0, or -code with the call's error set. */
int money_begin(money_t *m, fd_call_t *call, const char *method, fd_scope_t scope, int64_t tenant_id,
                const char *key, const ProtobufCMessage *req) FD_MUSTCHECK;

/* Within a transaction: the entry already made under m's key, if any. 1:
 * m->entry is the first answer; 0: none; -code: the key was used for another
 * request (FAILED_PRECONDITION) or the database failed. */
int money_replay(fd_tx_t *tx, money_t *m) FD_MUSTCHECK;

/* Within a transaction of t's tenant: is account id (a reseller's) visible to
 * t's caller (fd_subtree_contains; strictly: below the caller, not itself)?
 * 0, or -FD_ENOTFOUND as if it did not exist, or the database's -code. */
int account_visible(fd_tx_t *tx, const fd_tctx_t *t, int64_t id, bool strictly) FD_MUSTCHECK;

/* The amount a Mint, Transfer or Charge moves: 1 to max. */
int check_amount(int64_t amount, int64_t max, fd_err_t *err) FD_MUSTCHECK;
/* A Refund's amount: 0 (the whole charge) to max. */
int check_refund_amount(int64_t amount, int64_t max, fd_err_t *err) FD_MUSTCHECK;
/* A ledger entry's note: free text (fd_check_text), empty or up to 500
 * characters. */
int check_note(const char *note, fd_err_t *err) FD_MUSTCHECK;

#endif
