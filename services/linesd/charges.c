/* charges.c - the charges made for lines: frontdesk.line_charges, an outbox
 * (migrations/0004_lines.sql), settled with billingd in steps (claim,
 * Charge with no transaction open, apply under the row's lock if still
 * pending), and the reconciliation of charges left pending.
 *
 * The prepare (lines.c) commits the pending charge row (and, for a create,
 * the pending line, which holds its username). A crash anywhere after
 * leaves the row pending; settling it again (a retry of the same request,
 * or the reconciliation job) calls Charge with the same key and request,
 * which answers the first charge, so the line is completed and nothing is
 * charged twice. A refusal for good (not enough credits, reseller or tenant
 * gone) removes the pending rows: nothing was charged. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "charges.h"
#include "enums.h"
#include "linesd.h"
#include "store.h"
#include "fd/audit.h"
#include "fd/jobs.h"
#include "fd/log.h"
#include "frontdesk/v1/billing.pb-c.h"

/* ---- settling a charge ---- */

/* billingd's answer is final (nothing was charged and retrying will not
 * change it) for these; anything else (unreachable, timeout, our token) may
 * be retried later. */
static bool refusal_is_final(int rc)
{
	return rc == -FD_EPRECOND || rc == -FD_ENOTFOUND || rc == -FD_EINVAL;
}

static int call_charge(settle_t *s, Frontdesk__V1__ChargeResponse **out, fd_err_t *err)
{
	char auth[FD_BEARER_MAX];
	int rc = fd_token_source_get(s->l->billing_token, auth, sizeof(auth), err);
	if (rc < 0)
		return rc;
	Frontdesk__V1__ChargeRequest req = FRONTDESK__V1__CHARGE_REQUEST__INIT;
	req.tenant_id = s->tenant;
	req.reseller_id = s->reseller;
	req.amount = s->amount;
	req.reason = s->extend ? FRONTDESK__V1__CHARGE_REASON__CHARGE_REASON_LINE_EXTENDED
	                       : FRONTDESK__V1__CHARGE_REASON__CHARGE_REASON_LINE_CREATED;
	req.line_id = s->line_id;
	req.note = s->extend ? "ExtendLine" : "CreateLine";
	char key[40];
	snprintf(key, sizeof(key), "lc-%" PRId64, s->charge_id);
	req.idempotency_key = key;
	int64_t left = s->deadline_ms - fd_real_ms();
	fd_call_opts_t o = { .timeout_ms = left > 0 && left < 5000 ? left : 5000, .idempotent = true,
		                 .authorization = auth };
	ProtobufCMessage *resp = NULL;
	rc = fd_channel_unary(s->l->billingd, "/frontdesk.v1.BillingService/Charge", &req.base,
	                      &frontdesk__v1__charge_response__descriptor, s->arena, &resp, &o, err);
	*out = rc == 0 ? (Frontdesk__V1__ChargeResponse *)resp : NULL;
	return rc;
}

/* billingd's Refund of charge entry `entry` (the line charge charge_id),
 * under the key "lr-<charge id>": a charge is refunded at most once, so one
 * key per charge serves every path that gives it back. Never called inside
 * a transaction. */
int charges_refund(linesd_t *l, fd_arena_t *arena, int64_t tenant, int64_t charge_id, int64_t entry,
                       int64_t amount, const char *why, int64_t *refund_entry, fd_err_t *err)
{
	char auth[FD_BEARER_MAX];
	int rc = fd_token_source_get(l->billing_token, auth, sizeof(auth), err);
	if (rc < 0)
		return rc;
	Frontdesk__V1__RefundRequest req = FRONTDESK__V1__REFUND_REQUEST__INIT;
	char key[40];
	snprintf(key, sizeof(key), "lr-%" PRId64, charge_id);
	req.tenant_id = tenant;
	req.charge_entry_id = entry;
	req.amount = amount;
	req.note = (char *)why;
	req.idempotency_key = key;
	fd_call_opts_t o = { .timeout_ms = 5000, .idempotent = true, .authorization = auth };
	ProtobufCMessage *resp;
	if ((rc = fd_channel_unary(l->billingd, "/frontdesk.v1.BillingService/Refund", &req.base,
	                           &frontdesk__v1__refund_response__descriptor, arena, &resp, &o, err)) < 0)
		return rc;
	Frontdesk__V1__RefundResponse *rr = (void *)resp;
	*refund_entry = rr->entry ? rr->entry->id : 0;
	return 0;
}

/* The row's fields (CHARGE_COLUMNS) into s. */
static int charge_fields(settle_t *s, PGresult *res)
{
	s->line_id = col_i64(res, 0, CH_LINE);
	s->reseller = col_i64(res, 0, CH_RESELLER);
	s->extend = enum_value(&CHARGE_KIND, PQgetvalue(res, 0, CH_KIND)) == CHARGE_EXTEND;
	s->package = col_i64(res, 0, CH_PACKAGE);
	s->periods = (int32_t)col_i64(res, 0, CH_PERIODS);
	s->amount = col_i64(res, 0, CH_AMOUNT);
	s->trials_left = (int32_t)col_i64(res, 0, CH_TRIALS_LEFT);
	return 0;
}

/* The stored result of an applied row, and the line as it is now. */
static int answer_applied(fd_tx_t *tx, settle_t *s, PGresult *res)
{
	charge_fields(s, res);
	s->entry_id = col_i64(res, 0, CH_ENTRY);
	s->balance_after = col_i64(res, 0, CH_BALANCE);
	s->refused = s->drop = false;
	const char *pl[] = { s->tenant_s, fd_arena_printf(s->arena, "%" PRId64, s->line_id) };
	if (!pl[1])
		return TX_OOM(tx);
	int rc = fd_tx_exec(tx, &SQL_LINE_BY_ID, pl, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 1 && !(s->line = line_message(s->l, s->arena, s->tenant, res, 0, 0)))
		return TX_OOM(tx);
	return 0;
}

/* Step 1: claim the pending row (short; commits before billingd is asked).
 * An applied row is answered from what was applied. */
static int claim_tx(fd_tx_t *tx, void *arg)
{
	settle_t *s = arg;
	s->busy = s->gone = s->claimed = false;
	s->line = NULL;
	const char *p2[] = { s->tenant_s, s->charge_s };
	PGresult *res;
	int rc = fd_tx_exec(tx, s->reconcile ? &SQL_CHARGE_CLAIM_LAPSED : &SQL_CHARGE_CLAIM, p2, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 1) {
		s->claimed = true;
		return charge_fields(s, res);
	}
	if (s->reconcile) {          /* held, claimed, or settled meanwhile: not ours to do now */
		s->busy = true;
		return 0;
	}
	if ((rc = fd_tx_exec(tx, &SQL_CHARGE_READ, p2, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) == 0) {
		s->gone = true;
		return 0;
	}
	return answer_applied(tx, s, res);
}

/* The audit row of a create or an extension, written by whoever applies it
 * (the call, its retry, or the reconciliation pass on any replica): the
 * actor is the caller that asked, as its charge row keeps it. */
static int audit_charge(fd_tx_t *tx, settle_t *s, PGresult *res, const char *line_s)
{
	fd_caller_t c = { 0 };
	c.kind = (int)col_i64(res, 0, CH_ACTOR_KIND);
	c.role = (fd_role_t)col_i64(res, 0, CH_ACTOR_ROLE);
	c.tenant_id = col_i64(res, 0, CH_ACTOR_TENANT);
	c.account_id = col_i64(res, 0, CH_ACTOR_ACCOUNT);
	c.api_key_id = col_i64(res, 0, CH_ACTOR_KEY);
	snprintf(c.service, sizeof(c.service), "%s", PQgetvalue(res, 0, CH_ACTOR_SERVICE));
	snprintf(c.path, sizeof(c.path), "%s", PQgetvalue(res, 0, CH_ACTOR_PATH));
	const char *detail[] = {
		"reseller_id", fd_arena_printf(s->arena, "%" PRId64, s->reseller),
		"package_id", fd_arena_printf(s->arena, "%" PRId64, s->package),
		"periods", fd_arena_printf(s->arena, "%" PRId32, s->periods),
		"credits_charged", fd_arena_printf(s->arena, "%" PRId64, s->entry_id ? s->amount : 0),
		"charge_entry_id", fd_arena_printf(s->arena, "%" PRId64, s->entry_id),
		"trial", col_bool(res, 0, CH_TRIAL) ? "true" : "false",
		NULL,
	};
	for (size_t i = 1; i < 10; i += 2)
		if (!detail[i])
			return TX_OOM(tx);
	fd_audit_t ev = { .actor = &c, .action = s->extend ? "line.extend" : "line.create",
		              .target = fd_arena_printf(s->arena, "line:%s", line_s),
		              .source = PQgetvalue(res, 0, CH_ACTOR_SOURCE), .outcome = FD_AUDIT_OK, .detail = detail };
	if (!ev.target)
		return TX_OOM(tx);
	return fd_audit_add(tx, s->arena, &ev, 0);
}

/* Step 3, under the row's lock: applies the charge if the row is still
 * pending (or, with s->drop, removes it), else answers from what another
 * settler did meanwhile. */
static int finish_tx(fd_tx_t *tx, void *arg)
{
	settle_t *s = arg;
	s->give_back = s->gone = s->vanished = false;
	s->line = NULL;
	const char *p2[] = { s->tenant_s, s->charge_s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_CHARGE_LOCK, p2, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 0) {
		/* Dropped by another settler, which billingd refused or whose line
		 * was deleted: a charge made to us meanwhile (the same key) has
		 * nothing left to pay for. */
		if (!s->drop && s->entry_id)
			s->give_back = true;
		else if (!s->drop)
			s->gone = true;
		return 0;
	}
	if (enum_value(&CHARGE_STATE, PQgetvalue(res, 0, CH_STATE)) == CHARGE_APPLIED)
		return answer_applied(tx, s, res);
	if (s->drop)
		return fd_tx_exec(tx, &SQL_CHARGE_DROP, p2, FD_TX_LAST, NULL);
	const char *line_s = fd_arena_printf(s->arena, "%" PRId64, s->line_id);
	const char *pa[] = { s->tenant_s, line_s, fd_arena_printf(s->arena, "%" PRId32, s->periods),
		                 fd_arena_printf(s->arena, "%" PRId64, s->package) };
	const char *pc[] = { s->tenant_s, s->charge_s, fd_arena_printf(s->arena, "%" PRId64, s->entry_id),
		                 fd_arena_printf(s->arena, "%" PRId64, s->balance_after) };
	const char *pe[] = { s->tenant_s, s->extend ? "2" : "1", line_s,
		                 fd_arena_printf(s->arena, "%" PRId64, s->reseller), "0", "0" };
	if (!line_s || !pa[2] || !pa[3] || !pc[2] || !pc[3] || !pe[3])
		return TX_OOM(tx);
	PGresult *applied;
	if ((rc = fd_tx_exec(tx, s->extend ? &SQL_APPLY_EXTEND : &SQL_APPLY_CREATE, pa, 0, &applied)) < 0)
		return rc;
	if (strcmp(PQcmdTuples(applied), "1") != 0) {
		/* The line was deleted while its extension was being charged: the
		 * charge is given back (after this transaction, which writes
		 * nothing), then the row dropped. */
		s->give_back = s->entry_id != 0;
		s->vanished = !s->give_back;
		return 0;
	}
	/* The line expires then: the expiry job is due for it (janitor.c). */
	if ((rc = fd_tx_exec(tx, &SQL_CHARGE_APPLIED, pc, 0, NULL)) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_EVENT, pe, 0, NULL)) < 0 || (rc = audit_charge(tx, s, res, line_s)) < 0 ||
	    (rc = fd_job_due(tx, JOB_EXPIRY, col_i64(applied, 0, APPLY_COL_EXPIRES), 0)) < 0)
		return rc;
	const char *pl[] = { s->tenant_s, line_s };
	if ((rc = fd_tx_exec(tx, &SQL_LINE_BY_ID, pl, FD_TX_LAST, &res)) < 0)
		return rc;
	if (PQntuples(res) == 1 && !(s->line = line_message(s->l, s->arena, s->tenant, res, 0, 0)))
		return TX_OOM(tx);
	return 0;
}

/* Settles charge id of tenant in steps, with no transaction open while
 * billingd is asked (db.h: a transaction function has no effects outside
 * it; a slow billingd must not hold linesd's pool or the row's lock):
 *   1. claim the pending row (claim_tx; skipped after a fresh prepare, which
 *      committed the row claimed);
 *   2. Charge under the key "lc-<charge id>", no transaction open;
 *   3. apply under the row's lock if it is still pending (finish_tx); if
 *      another settler applied it meanwhile, answer from what it applied.
 * A charge made for a row found gone, or for a line deleted meanwhile, is
 * refunded (no transaction open) and the row then dropped. Killed anywhere,
 * the row stays pending and is settled again by a retry or the
 * reconciliation pass, each step answering the same under the same keys.
 * Returns 0 with s's results, or -code in err. */
int charges_settle(settle_t *s, fd_err_t *err)
{
	s->tenant_s = fd_arena_printf(s->arena, "%" PRId64, s->tenant);
	s->charge_s = fd_arena_printf(s->arena, "%" PRId64, s->charge_id);
	if (!s->tenant_s || !s->charge_s)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	fd_tx_opts_t o = { .tenant_id = s->tenant, .deadline_ms = s->deadline_ms };
	int rc;
	s->busy = s->gone = s->refused = s->drop = s->give_back = s->vanished = false;
	s->entry_id = s->balance_after = 0;
	if (!s->claimed) {
		if ((rc = fd_db_run_opts(s->l->db, &o, claim_tx, s, err)) < 0)
			return rc;
		if (!s->claimed)         /* busy, gone, or answered from the applied row */
			return 0;
	}
	if (s->amount > 0) {
		Frontdesk__V1__ChargeResponse *cr;
		fd_err_t cerr = { 0 };
		rc = call_charge(s, &cr, &cerr);
		if (rc < 0 && refusal_is_final(rc)) {
			s->drop = s->refused = true;
			s->refusal = cerr;
		} else if (rc < 0) {
			return fd_err_set(err, rc == -FD_EDEADLINE ? FD_EDEADLINE : FD_EUNAVAIL,
			                  "billing did not answer (%s); the %s is kept pending and completed when it "
			                  "does: retry with the same idempotency_key",
			                  cerr.msg, s->extend ? "extension" : "line");
		} else if (!cr || !cr->entry) {
			return fd_err_set(err, FD_EINTERNAL, "billing answered Charge without an entry");
		} else {
			s->entry_id = cr->entry->id;
			s->balance_after = cr->entry->from_balance_after;
			if (s->l->cfg->fault[0] && strcmp(s->l->cfg->fault, "kill_after_charge") == 0) {
				fd_warn("FRONTDESK_LINESD_FAULT=kill_after_charge: killing linesd after charge %" PRId64,
				        s->entry_id);
				raise(SIGKILL);
			}
		}
	}
	if ((rc = fd_db_run_opts(s->l->db, &o, finish_tx, s, err)) < 0)
		return rc;
	if (s->give_back) {
		int64_t refund_entry;
		fd_err_t rerr = { 0 };
		if ((rc = charges_refund(s->l, s->arena, s->tenant, s->charge_id, s->entry_id, s->amount,
		                      "line charge not applied", &refund_entry, &rerr)) < 0)
			return fd_err_set(err, FD_EUNAVAIL, "line %" PRId64 " is gone; giving its charge back failed (%s): "
			                  "retry with the same idempotency_key", s->line_id, rerr.msg);
		s->give_back = false;
		s->drop = true;
		if ((rc = fd_db_run_opts(s->l->db, &o, finish_tx, s, err)) < 0)
			return rc;
		if (!s->line) {
			s->refused = true;
			s->refusal = (fd_err_t){ .code = FD_ENOTFOUND };
			snprintf(s->refusal.msg, sizeof(s->refusal.msg), "line %" PRId64 " not found (deleted, or the "
			         "request refused meanwhile; its charge was refunded)", s->line_id);
		}
	} else if (s->vanished) {
		/* A free extension of a line deleted meanwhile. */
		s->drop = true;
		if ((rc = fd_db_run_opts(s->l->db, &o, finish_tx, s, err)) < 0)
			return rc;
		s->refused = true;
		s->refusal = (fd_err_t){ .code = FD_ENOTFOUND };
		snprintf(s->refusal.msg, sizeof(s->refusal.msg), "line %" PRId64 " not found (deleted)", s->line_id);
	}
	return 0;
}

/* Settles the call's charge; 0 with s filled, or -code (the call's error
 * set). s: charge_id, and when the call's prepare has just committed the row
 * (claimed) its fields. */
int charges_settle_for_call(const fd_tctx_t *r, settle_t *s)
{
	s->l = linesd_of(r->call);
	s->arena = r->arena;
	s->tenant = r->tenant;
	s->deadline_ms = fd_call_deadline_ms(r->call);
	int rc = charges_settle(s, fd_call_err(r->call));
	if (rc < 0)
		return rc;
	if (s->refused) {
		fd_err_t *e = fd_call_err(r->call);
		*e = s->refusal;
		return -s->refusal.code;
	}
	if (s->gone || !s->line)
		return fd_call_fail(r->call, FD_EABORTED, "the request was refused earlier and its rows removed: "
		                    "send it again with a new idempotency_key");
	return 0;
}

/* ---- reconciliation ---- */

typedef struct pending_q {
	fd_arena_t *arena;
	const char *params[2];
	int64_t *ids;
	int n;
} pending_q_t;

static int pending_tx(fd_tx_t *tx, void *arg)
{
	pending_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_PENDING, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	q->n = PQntuples(res);
	if (!(q->ids = fd_arena_alloc(q->arena, ((size_t)q->n + 1) * sizeof(int64_t))))
		return TX_OOM(tx);
	for (int i = 0; i < q->n; i++)
		q->ids[i] = col_i64(res, i, 0);
	return 0;
}

int charges_reconcile(linesd_t *l, int64_t tenant, fd_err_t *err)
{
	fd_arena_t arena;
	fd_arena_init(&arena, 0);
	pending_q_t q = { .arena = &arena,
		              .params = { fd_arena_printf(&arena, "%" PRId64, tenant),
		                          fd_arena_printf(&arena, "%" PRId64, l->cfg->reconcile_after) } };
	int rc = !q.params[0] || !q.params[1] ? fd_err_set(err, FD_EEXHAUSTED, "out of memory")
	                                      : fd_tenant_run(l->db, tenant, pending_tx, &q, err);
	for (int i = 0; rc == 0 && i < q.n && !l->stopping; i++) {
		settle_t s = { .l = l, .arena = &arena, .tenant = tenant, .charge_id = q.ids[i], .reconcile = true };
		fd_err_t e = { 0 };
		if (charges_settle(&s, &e) < 0)
			fd_warn("tenant %" PRId64 ": charge %" PRId64 " still pending: %s", tenant, q.ids[i], e.msg);
		else if (s.refused)
			fd_info("tenant %" PRId64 ": charge %" PRId64 " dropped (%s): nothing kept pending", tenant, q.ids[i],
			        s.refusal.msg);
		else if (!s.busy)
			fd_info("tenant %" PRId64 ": charge %" PRId64 " settled by reconciliation (entry %" PRId64 ")", tenant,
			        q.ids[i], s.entry_id);
	}
	fd_arena_free(&arena);
	return rc;
}
