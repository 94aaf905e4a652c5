/* store.h - billingd's SQL, all of it (migrations/0003_billing.sql): each
 * statement with the reader of its rows. Every function runs inside the
 * caller's transaction function, in t's tenant; parameters are statement
 * text; what is returned lives in the call's arena (t->arena) until the call
 * ends. Each returns 0 (or the count it says), or -code with fd_tx_err(tx)
 * set; out of memory is -FD_EEXHAUSTED. */
#ifndef BILLINGD_STORE_H
#define BILLINGD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "fd/db.h"
#include "fd/tctx.h"
#include "frontdesk/v1/billing.pb-c.h"

typedef Frontdesk__V1__LedgerEntry entry_t;

/* ---- ledger entries ---- */

/* The entry made under idempotency key idem: 1 with *entry and *hash (the
 * request's hash it was made for, hex; borrowed until the transaction
 * function returns), 0 if none. */
int store_entry_by_idem(fd_tx_t *tx, const fd_tctx_t *t, const char *idem, entry_t **entry,
                        const char **hash) FD_MUSTCHECK;

/* Charge's parameters, by name: debit the reseller by the amount unless its
 * balance is short, and write the entry, in one statement. */
enum charge_param {
	CHARGE_TENANT, CHARGE_RESELLER, CHARGE_AMOUNT,
	CHARGE_REASON,               /* CHARGE_REASON_NAMES */
	CHARGE_LINE,                 /* NULL: none */
	CHARGE_NOTE, CHARGE_ACTOR_SERVICE, CHARGE_IDEM, CHARGE_HASH,
	CHARGE_NPARAMS
};
/* *entry: the charge, or NULL when the balance was short (or the reseller has
 * none). An entry under the same key already fails on the unique index
 * (-FD_EEXISTS). flags as fd_tx_exec's (FD_TX_LAST: Charge's whole
 * transaction). */
int store_charge(fd_tx_t *tx, const fd_tctx_t *t, const char *const params[CHARGE_NPARAMS], unsigned flags,
                 entry_t **entry) FD_MUSTCHECK;

/* Refund's parameters, by name: credit (part of) a charge back, in one
 * statement. */
enum refund_param {
	REFUND_TENANT, REFUND_CHARGE,
	REFUND_AMOUNT,               /* "0": the whole charge */
	REFUND_NOTE, REFUND_ACTOR_SERVICE, REFUND_IDEM, REFUND_HASH,
	REFUND_NPARAMS
};
/* *entry: the refund, or NULL when the charge does not exist or is smaller
 * than the amount. A second refund of one charge, or an entry under the same
 * key, fails on a unique index (-FD_EEXISTS). flags as fd_tx_exec's. */
int store_refund(fd_tx_t *tx, const fd_tctx_t *t, const char *const params[REFUND_NPARAMS], unsigned flags,
                 entry_t **entry) FD_MUSTCHECK;
/* Charge entry charge: 1 with its amount and whether it was refunded, or 0 if
 * the tenant has no such charge. */
int store_charge_entry(fd_tx_t *tx, const fd_tctx_t *t, const char *charge, int64_t *amount,
                       bool *refunded) FD_MUSTCHECK;

/* Mint's and Transfer's parameters, by name: move the amount from one
 * account to another, both already locked (store_lock_two). */
enum move_param {
	MOVE_TENANT, MOVE_FROM, MOVE_TO, MOVE_AMOUNT,
	MOVE_KIND,                   /* ENTRY_KIND_NAMES: "mint" or "transfer" */
	MOVE_NOTE,
	MOVE_ACTOR_ACCOUNT, MOVE_ACTOR_SERVICE,   /* one of them NULL */
	MOVE_IDEM, MOVE_HASH,
	MOVE_NPARAMS
};
/* *entry: the movement, or NULL when from's balance is short (the issuance
 * account never is). An entry under the same key fails on the unique index
 * (-FD_EEXISTS); a balance overflow is -FD_EINVAL. */
int store_move(fd_tx_t *tx, const fd_tctx_t *t, const char *const params[MOVE_NPARAMS], entry_t **entry) FD_MUSTCHECK;

/* The entries ListLedger asks for, by name. */
enum list_param {
	LIST_TENANT,
	LIST_BEFORE,                 /* "0", or only ids below it */
	LIST_ACCOUNT,                /* "0", or only entries from or to it */
	LIST_PREFIX,                 /* fd_subtree_prefix: only entries touching that subtree */
	LIST_KINDS,                  /* NULL, or a text[] literal of ENTRY_KIND_NAMES */
	LIST_FROM, LIST_TO,          /* "0", or created at or after / before (Unix seconds) */
	LIST_LINE,                   /* "0", or only that line's */
	LIST_LIMIT,
	LIST_NPARAMS
};
/* Newest first: *out (an array of *n entries, in the arena). */
int store_list(fd_tx_t *tx, const fd_tctx_t *t, const char *const params[LIST_NPARAMS], entry_t ***out,
               size_t *n) FD_MUSTCHECK;

/* ---- accounts and balances ---- */

/* The reseller tree's path of account id ("1.5.9."): 1 with *path (in the
 * arena), 0 if the tenant has no such account. */
int store_account_path(fd_tx_t *tx, const fd_tctx_t *t, int64_t id, const char **path) FD_MUSTCHECK;
/* Account id's balance and the time of its last entry (Unix seconds); both 0
 * if it has no balance row yet. ACCOUNT_CONSUMPTION is derived: minus the
 * sum of every other balance. */
int store_balance(fd_tx_t *tx, const fd_tctx_t *t, int64_t id, int64_t *balance, int64_t *updated_at) FD_MUSTCHECK;
/* Gives accounts from and to a balance row if they have none, then locks both
 * rows in account order (so two movements never deadlock); *from_balance is
 * from's balance. */
int store_lock_two(fd_tx_t *tx, const fd_tctx_t *t, const char *from, const char *to,
                   int64_t *from_balance) FD_MUSTCHECK;

#endif
