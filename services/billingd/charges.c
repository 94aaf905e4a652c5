/* charges.c - Charge and Refund: linesd's service token moving a reseller's
 * credits to the tenant's consumption account for a line, and back.
 *
 * Charge, the hot path, is one statement (store_charge) sent with BEGIN, the
 * tenant setting and COMMIT in one round trip; its parameters are made before
 * the transaction, so an attempt run again repeats nothing else. Only a
 * charge that wrote nothing asks more, in a second transaction: a replay (or
 * a concurrent duplicate that lost on the key's index) is answered from the
 * first entry, anything else is "not enough credits".
 *
 * Neither writes an audit row: linesd audits the line actions that cause
 * them, and Charge stays one statement. */
#include <inttypes.h>
#include "billingd.h"
#include "enums.h"
#include "money.h"
#include "store.h"

/* ---- Charge ---- */

typedef struct charge_q {
	money_t *m;
	int64_t reseller;
	const char *params[CHARGE_NPARAMS];
	bool replayed;
	int64_t balance;             /* when refused */
} charge_q_t;

static int charge_tx(fd_tx_t *tx, void *arg)
{
	charge_q_t *q = arg;
	return store_charge(tx, &q->m->t, q->params, FD_TX_LAST, &q->m->entry);
}

/* Nothing was charged: a replay of a charge made earlier, or not enough credits. */
static int charge_refused_tx(fd_tx_t *tx, void *arg)
{
	charge_q_t *q = arg;
	int64_t updated_at;
	int rc = money_replay(tx, q->m);
	if (rc != 0)
		return rc < 0 ? rc : (q->replayed = true, 0);
	if ((rc = account_visible(tx, &q->m->t, q->reseller, false)) < 0)
		return rc;   /* not this tenant's: NOT_FOUND, not "not enough credits" */
	return store_balance(tx, &q->m->t, q->reseller, &q->balance, &updated_at);
}

int billingd_charge(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ChargeRequest *req = (const void *)msg;
	billingd_t *b = billingd_of(call);
	fd_err_t *err = fd_call_err(call);
	money_t m;
	int rc = money_begin(&m, call, "Charge", FRONTDESK__V1__SCOPE__SCOPE_CREDITS_CHARGE, req->tenant_id,
	                     req->idempotency_key, msg);
	if (rc < 0)
		return rc;
	if (m.t.c.kind != FD_CRED_SERVICE_TOKEN)
		return fd_call_fail(call, FD_EPERM, "Charge is for services (linesd's service token) only");
	if (req->tenant_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: required");
	if (req->reseller_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: required");
	if ((rc = check_amount(req->amount, b->cfg->max_per_call, err)) < 0 || (rc = check_note(req->note, err)) < 0)
		return rc;
	if (req->line_id < 0)
		return fd_call_fail(call, FD_EINVAL, "line_id: must not be negative");
	const char *reason = enum_text(CHARGE_REASON_NAMES, req->reason);
	if (!reason)
		return fd_call_fail(call, FD_EINVAL, "reason: LINE_CREATED or LINE_EXTENDED");
	fd_arena_t *ar = m.t.arena;
	charge_q_t q = { .m = &m, .reseller = req->reseller_id,
		             .params = { [CHARGE_TENANT] = m.t.tenant_s,
		                         [CHARGE_RESELLER] = fd_arena_printf(ar, "%" PRId64, req->reseller_id),
		                         [CHARGE_AMOUNT] = fd_arena_printf(ar, "%" PRId64, req->amount),
		                         [CHARGE_REASON] = reason,
		                         [CHARGE_LINE] = req->line_id ? fd_arena_printf(ar, "%" PRId64, req->line_id) : NULL,
		                         [CHARGE_NOTE] = req->note,
		                         [CHARGE_ACTOR_SERVICE] = m.actor_service,
		                         [CHARGE_IDEM] = m.idem,
		                         [CHARGE_HASH] = m.hash } };
	if (!q.params[CHARGE_RESELLER] || !q.params[CHARGE_AMOUNT] || (req->line_id && !q.params[CHARGE_LINE]))
		return OOM(call);
	rc = fd_tctx_run(&m.t, b->db, NULL, charge_tx, &q);
	if (rc < 0 && rc != -FD_EEXISTS)
		return rc;
	if (!m.entry) {
		/* Refused, or lost to a concurrent call with the same key. */
		if ((rc = fd_tctx_run(&m.t, b->db, NULL, charge_refused_tx, &q)) < 0)
			return rc;
		if (!q.replayed)
			return fd_call_fail(call, FD_EPRECOND, "not enough credits: reseller %" PRId64 " has balance %" PRId64
			                    ", needs %" PRId64, req->reseller_id, q.balance, req->amount);
	}
	Frontdesk__V1__ChargeResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->entry = m.entry;
	return 0;
}

/* ---- Refund ---- */

typedef struct refund_q {
	money_t *m;
	const char *params[REFUND_NPARAMS];
	bool replayed, found, refunded;
	int64_t charged;
} refund_q_t;

static int refund_tx(fd_tx_t *tx, void *arg)
{
	refund_q_t *q = arg;
	return store_refund(tx, &q->m->t, q->params, FD_TX_LAST, &q->m->entry);
}

/* Nothing was refunded: a replay, or why not. */
static int refund_refused_tx(fd_tx_t *tx, void *arg)
{
	refund_q_t *q = arg;
	int rc = money_replay(tx, q->m);
	if (rc != 0)
		return rc < 0 ? rc : (q->replayed = true, 0);
	if ((rc = store_charge_entry(tx, &q->m->t, q->params[REFUND_CHARGE], &q->charged, &q->refunded)) < 0)
		return rc;
	q->found = rc == 1;
	return 0;
}

int billingd_refund(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__RefundRequest *req = (const void *)msg;
	billingd_t *b = billingd_of(call);
	fd_err_t *err = fd_call_err(call);
	money_t m;
	int rc = money_begin(&m, call, "Refund", FRONTDESK__V1__SCOPE__SCOPE_CREDITS_REFUND, req->tenant_id,
	                     req->idempotency_key, msg);
	if (rc < 0)
		return rc;
	if (m.t.c.kind != FD_CRED_SERVICE_TOKEN)
		return fd_call_fail(call, FD_EPERM, "Refund is for services (linesd's service token) only");
	if (req->tenant_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: required");
	if (req->charge_entry_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "charge_entry_id: required");
	if ((rc = check_refund_amount(req->amount, b->cfg->max_per_call, err)) < 0 ||
	    (rc = check_note(req->note, err)) < 0)
		return rc;
	fd_arena_t *ar = m.t.arena;
	refund_q_t q = { .m = &m,
		             .params = { [REFUND_TENANT] = m.t.tenant_s,
		                         [REFUND_CHARGE] = fd_arena_printf(ar, "%" PRId64, req->charge_entry_id),
		                         [REFUND_AMOUNT] = fd_arena_printf(ar, "%" PRId64, req->amount),
		                         [REFUND_NOTE] = req->note,
		                         [REFUND_ACTOR_SERVICE] = m.actor_service,
		                         [REFUND_IDEM] = m.idem,
		                         [REFUND_HASH] = m.hash } };
	if (!q.params[REFUND_CHARGE] || !q.params[REFUND_AMOUNT])
		return OOM(call);
	rc = fd_tctx_run(&m.t, b->db, NULL, refund_tx, &q);
	if (rc < 0 && rc != -FD_EEXISTS)
		return rc;
	if (!m.entry) {
		if ((rc = fd_tctx_run(&m.t, b->db, NULL, refund_refused_tx, &q)) < 0)
			return rc;
		if (!q.replayed) {
			if (!q.found)
				return fd_call_fail(call, FD_ENOTFOUND, "charge %" PRId64 " not found", req->charge_entry_id);
			if (q.refunded)
				return fd_call_fail(call, FD_EPRECOND, "charge %" PRId64 " was already refunded", req->charge_entry_id);
			return fd_call_fail(call, FD_EPRECOND, "amount: %" PRId64 " is more than the %" PRId64 " charged",
			                    req->amount, q.charged);
		}
	}
	Frontdesk__V1__RefundResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->entry = m.entry;
	return 0;
}
