/* moves.c - MintCredits and TransferCredits: credits issued to a reseller
 * by an admin, and moved between resellers (down a reseller's own subtree,
 * or anywhere in the tenant by an admin).
 *
 * A move locks both balance rows, looks for its key again (a duplicate in
 * flight may have held those locks), moves the amount and writes its entry
 * and its audit row (credits.mint, credits.transfer), in one transaction: a
 * replay, which writes nothing, adds no audit row. */
#include <inttypes.h>
#include "billingd.h"
#include "enums.h"
#include "money.h"
#include "store.h"

typedef struct move_q {
	money_t *m;
	Frontdesk__V1__LedgerEntryKind kind;   /* MINT or TRANSFER */
	int64_t from, to, amount;
	const char *note;
	bool check_from, strict_to;  /* visibility rules */
	bool replayed, refused;
	int64_t balance;             /* of from, when refused */
} move_q_t;

static bool is_mint(const move_q_t *q)
{
	return q->kind == FRONTDESK__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_MINT;
}

/* The audit row of the move just written, as the transaction's last
 * statement (its COMMIT travels with it). from and amount as sent. */
static int audit_move(fd_tx_t *tx, move_q_t *q, const char *from, const char *amount)
{
	money_t *m = q->m;
	fd_arena_t *ar = m->t.arena;
	const char *entry = fd_arena_printf(ar, "%" PRId64, m->entry->id);
	const char *target = fd_arena_printf(ar, "reseller:%" PRId64, q->to);
	/* A mint comes from the issuance account: no "from". */
	const char *detail[] = { "amount", amount, "entry", entry, is_mint(q) ? NULL : "from", from, NULL };
	if (!entry || !target)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return fd_tctx_audit(tx, &m->t, is_mint(q) ? "credits.mint" : "credits.transfer", target, detail, FD_TX_LAST);
}

static int move_tx(fd_tx_t *tx, void *arg)
{
	move_q_t *q = arg;
	money_t *m = q->m;
	fd_arena_t *ar = m->t.arena;
	q->replayed = q->refused = false;
	m->entry = NULL;        /* an attempt run again starts afresh */
	int rc = money_replay(tx, m);
	if (rc != 0)
		return rc < 0 ? rc : (q->replayed = true, 0);
	if (q->check_from && (rc = account_visible(tx, &m->t, q->from, false)) < 0)
		return rc;
	if ((rc = account_visible(tx, &m->t, q->to, q->strict_to)) < 0)
		return rc;
	const char *from = fd_arena_printf(ar, "%" PRId64, q->from), *to = fd_arena_printf(ar, "%" PRId64, q->to);
	const char *amount = fd_arena_printf(ar, "%" PRId64, q->amount);
	if (!from || !to || !amount)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	if ((rc = store_lock_two(tx, &m->t, from, to, &q->balance)) < 0)
		return rc;
	/* A duplicate of this call (same key, same accounts) may have held these
	 * locks while we waited for them: it has committed by now, and under
	 * READ COMMITTED a statement begun after the wait sees its entry. Without
	 * this second look the duplicate would be executed again on the balance
	 * the first one left, and answer "not enough credits" or an overflow
	 * instead of the first result (common.proto). The look before the locks
	 * stays: a later replay answers without locking anything. */
	if ((rc = money_replay(tx, m)) != 0)
		return rc < 0 ? rc : (q->replayed = true, 0);
	const char *params[MOVE_NPARAMS] = {
		[MOVE_TENANT] = m->t.tenant_s,
		[MOVE_FROM] = from,
		[MOVE_TO] = to,
		[MOVE_AMOUNT] = amount,
		[MOVE_KIND] = enum_text(ENTRY_KIND_NAMES, q->kind),
		[MOVE_NOTE] = q->note,
		[MOVE_ACTOR_ACCOUNT] = m->actor_account,
		[MOVE_ACTOR_SERVICE] = m->actor_service,
		[MOVE_IDEM] = m->idem,
		[MOVE_HASH] = m->hash,
	};
	if ((rc = store_move(tx, &m->t, params, &m->entry)) < 0)
		return rc;
	if (!m->entry) {
		q->refused = true;     /* not enough credits: nothing was written */
		return 0;
	}
	return audit_move(tx, q, from, amount);
}

/* Runs a move; a concurrent duplicate of the key is answered from the winner. */
static int run_move(fd_call_t *call, move_q_t *q)
{
	billingd_t *b = billingd_of(call);
	int rc = fd_tctx_run(&q->m->t, b->db, NULL, move_tx, q);
	if (rc == -FD_EEXISTS)
		rc = fd_tctx_run(&q->m->t, b->db, NULL, move_tx, q);
	if (rc < 0)
		return rc == -FD_EINVAL ? fd_call_fail(call, FD_EINVAL, "amount: would overflow a balance") : rc;
	if (q->refused)
		return fd_call_fail(call, FD_EPRECOND, "not enough credits: reseller %" PRId64 " has balance %" PRId64
		                    ", needs %" PRId64, q->from, q->balance, q->amount);
	return 0;
}

int billingd_mint(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__MintCreditsRequest *req = (const void *)msg;
	billingd_t *b = billingd_of(call);
	fd_err_t *err = fd_call_err(call);
	money_t m;
	int rc = money_begin(&m, call, "MintCredits", FRONTDESK__V1__SCOPE__SCOPE_CREDITS_MINT, req->tenant_id,
	                     req->idempotency_key, msg);
	if (rc < 0)
		return rc;
	if (!fd_tctx_admin(&m.t))
		return fd_call_fail(call, FD_EPERM, "only tenant and platform admins mint credits");
	if ((rc = check_amount(req->amount, b->cfg->max_per_call, err)) < 0 || (rc = check_note(req->note, err)) < 0)
		return rc;
	if (req->reseller_id < 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: must not be negative");
	int64_t to = req->reseller_id ? req->reseller_id : m.t.tenant == m.t.c.tenant_id ? m.t.c.account_id : 0;
	if (!to)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: required when acting in another tenant");
	move_q_t q = { .m = &m, .kind = FRONTDESK__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_MINT,
		           .from = ACCOUNT_ISSUANCE, .to = to, .amount = req->amount, .note = req->note };
	if ((rc = run_move(call, &q)) < 0)
		return rc;
	Frontdesk__V1__MintCreditsResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->entry = m.entry;
	return 0;
}

int billingd_transfer(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__TransferCreditsRequest *req = (const void *)msg;
	billingd_t *b = billingd_of(call);
	fd_err_t *err = fd_call_err(call);
	money_t m;
	int rc = money_begin(&m, call, "TransferCredits", FRONTDESK__V1__SCOPE__SCOPE_CREDITS_TRANSFER, req->tenant_id,
	                     req->idempotency_key, msg);
	if (rc < 0)
		return rc;
	const fd_caller_t *c = &m.t.c;
	bool admin = fd_tctx_admin(&m.t);
	if (c->kind == FD_CRED_SERVICE_TOKEN)
		return fd_call_fail(call, FD_EPERM, "transfers are made by people's accounts");
	if ((rc = check_amount(req->amount, b->cfg->max_per_call, err)) < 0 || (rc = check_note(req->note, err)) < 0)
		return rc;
	if (req->from_reseller_id < 0 || req->to_reseller_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "to_reseller_id: required (and from_reseller_id not negative)");
	bool own = m.t.tenant == c->tenant_id;
	int64_t from = req->from_reseller_id ? req->from_reseller_id : own ? c->account_id : 0;
	if (!from)
		return fd_call_fail(call, FD_EINVAL, "from_reseller_id: required when acting in another tenant");
	if (!admin && from != c->account_id)
		return fd_call_fail(call, FD_EPERM, "resellers transfer from their own balance only");
	if (from == req->to_reseller_id)
		return fd_call_fail(call, FD_EINVAL, "to_reseller_id: the same account as the payer");
	/* Resellers send down their own subtree only; admins anywhere in the tenant. */
	move_q_t q = { .m = &m, .kind = FRONTDESK__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_TRANSFER, .from = from,
		           .to = req->to_reseller_id, .amount = req->amount, .note = req->note, .check_from = admin,
		           .strict_to = !admin };
	if ((rc = run_move(call, &q)) < 0)
		return rc;
	Frontdesk__V1__TransferCreditsResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->entry = m.entry;
	return 0;
}
