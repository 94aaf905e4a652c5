/* ledger.c - billingd's methods over the double-entry ledger
 * (migrations/0003_billing.sql).
 *
 * Every money-moving call is one transaction that writes one ledger entry;
 * the entry carries the call's idempotency key (scoped to method and caller)
 * under a unique index, so it is its own idempotency record: a replay finds
 * it, a concurrent duplicate loses on the index or, refused after waiting
 * for the first one's locks, looks for the key again, and is answered from
 * it (never executed a second time on the balance the first one left).
 *
 * Mint and transfer write their audit row (fd/audit.h) in the entry's
 * transaction, so a replay, which writes nothing, adds none. Charge and
 * Refund have none: linesd audits the line actions that cause them, and
 * Charge stays one statement.
 *
 * Charge, the hot path, is one statement sent with BEGIN, the tenant setting
 * and COMMIT in one round trip: a conditional UPDATE of the reseller's
 * balance (no overdraft under any interleaving) feeding the INSERT of the
 * entry. The consumption account has no balance row to lock. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "billingd.h"
#include "fd/audit.h"
#include "fd/log.h"
#include "fd/request.h"
#include "fd/wire.h"

#define ACCOUNT_ISSUANCE 0
#define ACCOUNT_CONSUMPTION (-1)

/* ---- shared pieces ---- */

#define ENTRY_COLS(REFUNDED)                                                                            \
	"e.id, floor(extract(epoch FROM e.created_at))::bigint, e.kind, e.from_account, e.to_account, e.amount,"   \
	" e.from_balance_after, e.to_balance_after, coalesce(e.charge_reason, ''), coalesce(e.line_id, 0),"  \
	" coalesce(e.refund_of, 0), e.note, coalesce(e.actor_account, 0), coalesce(e.actor_service, ''),"    \
	" encode(e.request_hash, 'hex'), " REFUNDED
#define REFUNDED_SUBQUERY                                                                               \
	"coalesce((SELECT r.amount FROM frontdesk.ledger_entries r"                                         \
	"          WHERE r.tenant_id = e.tenant_id AND r.refund_of = e.id), 0)"

static Frontdesk__V1__AccountRef *account_ref(fd_arena_t *arena, int64_t id)
{
	Frontdesk__V1__AccountRef *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return NULL;
	frontdesk__v1__account_ref__init(r);
	r->kind = id > 0 ? FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_RESELLER
	          : id == ACCOUNT_ISSUANCE ? FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_ISSUANCE
	                                   : FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_CONSUMPTION;
	r->reseller_id = id > 0 ? id : 0;
	return r;
}

static Frontdesk__V1__LedgerEntry *entry_message(fd_arena_t *arena, int64_t tenant, PGresult *res, int row)
{
	Frontdesk__V1__LedgerEntry *e = fd_arena_zalloc(arena, sizeof(*e));
	if (!e)
		return NULL;
	frontdesk__v1__ledger_entry__init(e);
	e->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
	e->tenant_id = tenant;
	e->created_at = strtoll(PQgetvalue(res, row, 1), NULL, 10);
	const char *kind = PQgetvalue(res, row, 2);
	e->kind = strcmp(kind, "mint") == 0       ? FRONTDESK__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_MINT
	          : strcmp(kind, "transfer") == 0 ? FRONTDESK__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_TRANSFER
	          : strcmp(kind, "charge") == 0   ? FRONTDESK__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_CHARGE
	                                          : FRONTDESK__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_REFUND;
	e->from_account = account_ref(arena, strtoll(PQgetvalue(res, row, 3), NULL, 10));
	e->to_account = account_ref(arena, strtoll(PQgetvalue(res, row, 4), NULL, 10));
	e->amount = strtoll(PQgetvalue(res, row, 5), NULL, 10);
	e->from_balance_after = strtoll(PQgetvalue(res, row, 6), NULL, 10);
	e->to_balance_after = strtoll(PQgetvalue(res, row, 7), NULL, 10);
	const char *reason = PQgetvalue(res, row, 8);
	e->charge_reason = strcmp(reason, "line_created") == 0    ? FRONTDESK__V1__CHARGE_REASON__CHARGE_REASON_LINE_CREATED
	                   : strcmp(reason, "line_extended") == 0 ? FRONTDESK__V1__CHARGE_REASON__CHARGE_REASON_LINE_EXTENDED
	                                                          : FRONTDESK__V1__CHARGE_REASON__CHARGE_REASON_UNSPECIFIED;
	e->line_id = strtoll(PQgetvalue(res, row, 9), NULL, 10);
	e->refunded_entry_id = strtoll(PQgetvalue(res, row, 10), NULL, 10);
	e->note = fd_arena_strdup(arena, PQgetvalue(res, row, 11));
	e->actor_account_id = strtoll(PQgetvalue(res, row, 12), NULL, 10);
	e->actor_service = fd_arena_strdup(arena, PQgetvalue(res, row, 13));
	e->refunded_amount = strtoll(PQgetvalue(res, row, 15), NULL, 10);
	return e->from_account && e->to_account && e->note && e->actor_service ? e : NULL;
}

/* What a money-moving call shares: who, where, which key. */
typedef struct money {
	fd_call_t *call;
	fd_arena_t *arena;
	fd_caller_t c;
	int64_t tenant;
	const char *tenant_s;
	const char *idem;            /* "<Method>/<actor>/<key>" */
	const char *hash;
	const char *actor_account;   /* one of these is NULL */
	const char *actor_service;
	Frontdesk__V1__LedgerEntry *entry;
} money_t;

static int money_begin(money_t *m, fd_call_t *call, const char *method, fd_scope_t scope,
                       int64_t tenant_id, const char *key, const ProtobufCMessage *req)
{
	memset(m, 0, sizeof(*m));
	m->call = call;
	m->arena = fd_call_arena(call);
	int rc = fd_call_caller(call, &m->c);
	if (rc < 0 || (rc = fd_caller_need(&m->c, scope, fd_call_err(call))) < 0)
		return rc;
	if (!key[0])
		return fd_call_fail(call, FD_EINVAL, "idempotency_key: required for a call that moves credits");
	if ((rc = fd_check_idem_key(key, fd_call_err(call))) < 0)
		return rc;
	if ((rc = fd_call_tenant(call, &m->c, tenant_id, &m->tenant)) < 0)
		return rc;
	if (m->tenant == 0)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: name the tenant (the platform has no credits)");
	m->tenant_s = fd_arena_printf(m->arena, "%" PRId64, m->tenant);
	if (m->c.kind == FD_CRED_SERVICE_TOKEN) {
		m->actor_service = m->c.service;
		m->idem = fd_arena_printf(m->arena, "%s/svc:%s/%s", method, m->c.service, key);
	} else {
		m->actor_account = fd_arena_printf(m->arena, "%" PRId64, m->c.account_id);
		m->idem = fd_arena_printf(m->arena, "%s/acct:%" PRId64 "/%s", method, m->c.account_id, key);
	}
	m->hash = fd_request_hash(m->arena, req);
	if (!m->tenant_s || !m->idem || !m->hash || (!m->actor_service && !m->actor_account))
		return OOM(call);
	return 0;
}

static const fd_sql_t SQL_BY_IDEM = {
	"billingd_by_idem",
	"SELECT " ENTRY_COLS(REFUNDED_SUBQUERY) " FROM frontdesk.ledger_entries e"
	" WHERE e.tenant_id = $1 AND e.idem_key = $2",
	2,
};

/* Within a transaction: the entry already made under this key, if any. 1:
 * m->entry is the first answer; 0: none; -code: the key was used for another
 * request (FAILED_PRECONDITION) or the database failed. */
static int find_replay(fd_tx_t *tx, money_t *m)
{
	const char *params[] = { m->tenant_s, m->idem };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_BY_IDEM, params, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 0)
		return 0;
	if (strcmp(PQgetvalue(res, 0, 14), m->hash) != 0)
		return fd_err_set(fd_tx_err(tx), FD_EPRECOND,
		                  "idempotency_key: already used with a different request");
	if (!(m->entry = entry_message(m->arena, m->tenant, res, 0)))
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return 1;
}

static int check_amount(fd_call_t *call, int64_t amount, int64_t max)
{
	if (amount <= 0)
		return fd_call_fail(call, FD_EINVAL, "amount: must be more than 0");
	if (amount > max)
		return fd_call_fail(call, FD_EINVAL, "amount: at most %" PRId64 " per call", max);
	return 0;
}

static int check_note(fd_call_t *call, const char *note)
{
	return fd_check_text("note", note, 0, 500, fd_call_err(call));
}

/* ---- accounts in the tree ---- */

static const fd_sql_t SQL_ACCOUNT = {
	"billingd_account", "SELECT path FROM frontdesk.account_refs WHERE tenant_id = $1 AND id = $2", 2,
};

/* Is account id of the tenant visible to the caller (in its subtree; any
 * account for admins)? strictly: below the caller, not the caller itself.
 * 0 or -FD_ENOTFOUND (as if it did not exist). */
static int visible(fd_tx_t *tx, money_t *m, int64_t id, bool strictly)
{
	if (id <= 0)
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "reseller %" PRId64 " not found", id);
	const char *params[] = { m->tenant_s, fd_arena_printf(m->arena, "%" PRId64, id) };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_ACCOUNT, params, 0, &res);
	if (rc < 0)
		return rc;
	bool ok = PQntuples(res) == 1;
	if (ok && m->c.role == FD_ROLE_RESELLER) {
		const char *path = PQgetvalue(res, 0, 0);
		size_t n = strlen(m->c.path);
		ok = m->c.tenant_id == m->tenant && strncmp(path, m->c.path, n) == 0 && (!strictly || path[n] != '\0');
	}
	return ok ? 0 : fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "reseller %" PRId64 " not found", id);
}

static bool is_admin(const fd_caller_t *c)
{
	return c->role == FD_ROLE_TENANT_ADMIN || c->role == FD_ROLE_PLATFORM_ADMIN;
}

/* ---- Charge ---- */

static const fd_sql_t SQL_CHARGE = {
	"billingd_charge",
	"WITH debit AS ("
	"  UPDATE frontdesk.credit_balances SET balance = balance - $3, updated_at = now()"
	"   WHERE tenant_id = $1 AND account_id = $2 AND balance >= $3"
	"  RETURNING balance)"
	" INSERT INTO frontdesk.ledger_entries AS e (tenant_id, kind, from_account, to_account, amount,"
	"   from_balance_after, to_balance_after, charge_reason, line_id, note, actor_service, idem_key, request_hash)"
	" SELECT $1, 'charge', $2, -1, $3, debit.balance, 0, $4, $5, $6, $7, $8, decode($9, 'hex') FROM debit"
	" RETURNING " ENTRY_COLS("0"),
	9,
};
static const fd_sql_t SQL_BALANCE = {
	"billingd_balance",
	"SELECT balance, floor(extract(epoch FROM updated_at))::bigint FROM frontdesk.credit_balances"
	" WHERE tenant_id = $1 AND account_id = $2",
	2,
};

typedef struct charge_q {
	money_t *m;
	int64_t reseller;
	const char *params[9];
	bool replayed;
	int64_t balance;             /* when refused */
} charge_q_t;

static int charge_tx(fd_tx_t *tx, void *arg)
{
	charge_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_CHARGE, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 1 && !(q->m->entry = entry_message(q->m->arena, q->m->tenant, res, 0)))
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return 0;
}

/* Nothing was charged: a replay of a charge made earlier, or not enough credits. */
static int charge_refused_tx(fd_tx_t *tx, void *arg)
{
	charge_q_t *q = arg;
	int rc = find_replay(tx, q->m);
	if (rc != 0)
		return rc < 0 ? rc : (q->replayed = true, 0);
	if ((rc = visible(tx, q->m, q->reseller, false)) < 0)
		return rc;   /* not this tenant's: NOT_FOUND, not "not enough credits" */
	const char *params[] = { q->params[0], q->params[1] };
	PGresult *res;
	if ((rc = fd_tx_exec(tx, &SQL_BALANCE, params, 0, &res)) < 0)
		return rc;
	q->balance = PQntuples(res) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	return 0;
}

int billingd_charge(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ChargeRequest *req = (const void *)msg;
	billingd_t *b = billingd_of(call);
	money_t m;
	int rc = money_begin(&m, call, "Charge", FRONTDESK__V1__SCOPE__SCOPE_CREDITS_CHARGE, req->tenant_id,
	                     req->idempotency_key, msg);
	if (rc < 0)
		return rc;
	if (m.c.kind != FD_CRED_SERVICE_TOKEN)
		return fd_call_fail(call, FD_EPERM, "Charge is for services (linesd's service token) only");
	if (req->tenant_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: required");
	if (req->reseller_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: required");
	if ((rc = check_amount(call, req->amount, b->cfg->max_per_call)) < 0 || (rc = check_note(call, req->note)) < 0)
		return rc;
	if (req->line_id < 0)
		return fd_call_fail(call, FD_EINVAL, "line_id: must not be negative");
	const char *reason = req->reason == FRONTDESK__V1__CHARGE_REASON__CHARGE_REASON_LINE_CREATED    ? "line_created"
	                     : req->reason == FRONTDESK__V1__CHARGE_REASON__CHARGE_REASON_LINE_EXTENDED ? "line_extended"
	                                                                                                 : NULL;
	if (!reason)
		return fd_call_fail(call, FD_EINVAL, "reason: LINE_CREATED or LINE_EXTENDED");
	charge_q_t q = { .m = &m, .reseller = req->reseller_id,
		             .params = { m.tenant_s, fd_arena_printf(m.arena, "%" PRId64, req->reseller_id),
		                         fd_arena_printf(m.arena, "%" PRId64, req->amount), reason,
		                         req->line_id ? fd_arena_printf(m.arena, "%" PRId64, req->line_id) : NULL,
		                         req->note, m.actor_service, m.idem, m.hash } };
	if (!q.params[1] || !q.params[2])
		return OOM(call);
	fd_tx_opts_t o = { .tenant_id = m.tenant, .deadline_ms = fd_call_deadline_ms(call) };
	rc = fd_db_run_opts(b->db, &o, charge_tx, &q, fd_call_err(call));
	if (rc < 0 && rc != -FD_EEXISTS)
		return rc;
	if (!m.entry) {
		/* Refused, or lost to a concurrent call with the same key. */
		if ((rc = fd_db_run_opts(b->db, &o, charge_refused_tx, &q, fd_call_err(call))) < 0)
			return rc;
		if (!q.replayed)
			return fd_call_fail(call, FD_EPRECOND, "not enough credits: reseller %" PRId64 " has balance %" PRId64
			                    ", needs %" PRId64, req->reseller_id, q.balance, req->amount);
	}
	Frontdesk__V1__ChargeResponse *r = fd_arena_zalloc(m.arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__charge_response__init(r);
	r->entry = m.entry;
	*resp = &r->base;
	return 0;
}

/* ---- Refund ---- */

static const fd_sql_t SQL_REFUND = {
	"billingd_refund",
	"WITH c AS ("
	"  SELECT from_account, amount, line_id FROM frontdesk.ledger_entries"
	"   WHERE tenant_id = $1 AND id = $2 AND kind = 'charge'),"
	" credit AS ("
	"  UPDATE frontdesk.credit_balances b"
	"     SET balance = b.balance + CASE WHEN $3::bigint = 0 THEN c.amount ELSE $3::bigint END, updated_at = now()"
	"    FROM c WHERE b.tenant_id = $1 AND b.account_id = c.from_account AND $3::bigint <= c.amount"
	"  RETURNING b.balance, c.from_account, c.line_id,"
	"            CASE WHEN $3::bigint = 0 THEN c.amount ELSE $3::bigint END AS n)"
	" INSERT INTO frontdesk.ledger_entries AS e (tenant_id, kind, from_account, to_account, amount,"
	"   from_balance_after, to_balance_after, line_id, refund_of, note, actor_service, idem_key, request_hash)"
	" SELECT $1, 'refund', -1, credit.from_account, credit.n, 0, credit.balance, credit.line_id, $2, $4, $5,"
	"        $6, decode($7, 'hex') FROM credit"
	" RETURNING " ENTRY_COLS("0"),
	7,
};
static const fd_sql_t SQL_CHARGE_ENTRY = {
	"billingd_charge_entry",
	"SELECT amount, EXISTS (SELECT 1 FROM frontdesk.ledger_entries r WHERE r.tenant_id = $1 AND r.refund_of = $2)"
	"  FROM frontdesk.ledger_entries WHERE tenant_id = $1 AND id = $2 AND kind = 'charge'",
	2,
};

typedef struct refund_q {
	money_t *m;
	int64_t charge;
	const char *params[7];
	bool replayed, found, refunded;
	int64_t charged;
} refund_q_t;

static int refund_tx(fd_tx_t *tx, void *arg)
{
	refund_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_REFUND, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 1 && !(q->m->entry = entry_message(q->m->arena, q->m->tenant, res, 0)))
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return 0;
}

static int refund_refused_tx(fd_tx_t *tx, void *arg)
{
	refund_q_t *q = arg;
	int rc = find_replay(tx, q->m);
	if (rc != 0)
		return rc < 0 ? rc : (q->replayed = true, 0);
	const char *params[] = { q->params[0], q->params[1] };
	PGresult *res;
	if ((rc = fd_tx_exec(tx, &SQL_CHARGE_ENTRY, params, 0, &res)) < 0)
		return rc;
	if ((q->found = PQntuples(res) == 1)) {
		q->charged = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		q->refunded = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	}
	return 0;
}

int billingd_refund(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__RefundRequest *req = (const void *)msg;
	billingd_t *b = billingd_of(call);
	money_t m;
	int rc = money_begin(&m, call, "Refund", FRONTDESK__V1__SCOPE__SCOPE_CREDITS_REFUND, req->tenant_id,
	                     req->idempotency_key, msg);
	if (rc < 0)
		return rc;
	if (m.c.kind != FD_CRED_SERVICE_TOKEN)
		return fd_call_fail(call, FD_EPERM, "Refund is for services (linesd's service token) only");
	if (req->tenant_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: required");
	if (req->charge_entry_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "charge_entry_id: required");
	if (req->amount < 0 || req->amount > b->cfg->max_per_call)
		return fd_call_fail(call, FD_EINVAL, "amount: 0 (the whole charge) to %" PRId64, b->cfg->max_per_call);
	if ((rc = check_note(call, req->note)) < 0)
		return rc;
	refund_q_t q = { .m = &m, .charge = req->charge_entry_id,
		             .params = { m.tenant_s, fd_arena_printf(m.arena, "%" PRId64, req->charge_entry_id),
		                         fd_arena_printf(m.arena, "%" PRId64, req->amount), req->note, m.actor_service,
		                         m.idem, m.hash } };
	if (!q.params[1] || !q.params[2])
		return OOM(call);
	fd_tx_opts_t o = { .tenant_id = m.tenant, .deadline_ms = fd_call_deadline_ms(call) };
	rc = fd_db_run_opts(b->db, &o, refund_tx, &q, fd_call_err(call));
	if (rc < 0 && rc != -FD_EEXISTS)
		return rc;
	if (!m.entry) {
		if ((rc = fd_db_run_opts(b->db, &o, refund_refused_tx, &q, fd_call_err(call))) < 0)
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
	Frontdesk__V1__RefundResponse *r = fd_arena_zalloc(m.arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__refund_response__init(r);
	r->entry = m.entry;
	*resp = &r->base;
	return 0;
}

/* ---- Mint, Transfer ---- */

static const fd_sql_t SQL_OPEN_ACCOUNT = {
	"billingd_open_account",
	"INSERT INTO frontdesk.credit_balances (tenant_id, account_id) VALUES ($1, $2), ($1, $3)"
	" ON CONFLICT DO NOTHING",
	3,
};
/* Both rows locked in account order, so two movements never deadlock. */
static const fd_sql_t SQL_LOCK_TWO = {
	"billingd_lock_two",
	"SELECT account_id, balance FROM frontdesk.credit_balances"
	" WHERE tenant_id = $1 AND account_id IN ($2, $3) ORDER BY account_id FOR NO KEY UPDATE",
	3,
};
static const fd_sql_t SQL_MOVE = {
	"billingd_move",
	"WITH src AS ("
	"  UPDATE frontdesk.credit_balances SET balance = balance - $4, updated_at = now()"
	"   WHERE tenant_id = $1 AND account_id = $2 AND (account_id = 0 OR balance >= $4)"
	"  RETURNING balance),"
	" dst AS ("
	"  UPDATE frontdesk.credit_balances SET balance = balance + $4, updated_at = now()"
	"   WHERE tenant_id = $1 AND account_id = $3 AND EXISTS (SELECT 1 FROM src)"
	"  RETURNING balance)"
	" INSERT INTO frontdesk.ledger_entries AS e (tenant_id, kind, from_account, to_account, amount,"
	"   from_balance_after, to_balance_after, note, actor_account, actor_service, idem_key, request_hash)"
	" SELECT $1, $5, $2, $3, $4, src.balance, dst.balance, $6, $7, $8, $9, decode($10, 'hex') FROM src, dst"
	" RETURNING " ENTRY_COLS("0"),
	10,
};

typedef struct move_q {
	money_t *m;
	const char *kind;            /* "mint" or "transfer" */
	int64_t from, to, amount;
	const char *note;
	bool check_from, strict_to;  /* visibility rules */
	bool replayed, refused;
	int64_t balance;             /* of from, when refused */
} move_q_t;

/* The audit row of the move just written, as the transaction's last
 * statement (its COMMIT travels with it). from and amount as sent. */
static int audit_move(fd_tx_t *tx, move_q_t *q, const char *from, const char *amount)
{
	money_t *m = q->m;
	fd_arena_t *ar = m->arena;
	bool mint = strcmp(q->kind, "mint") == 0;
	const char *entry = fd_arena_printf(ar, "%" PRId64, m->entry->id);
	/* A mint comes from the issuance account: no "from". */
	const char *detail[] = { "amount", amount, "entry", entry, mint ? NULL : "from", from, NULL };
	fd_audit_t ev = {
		.actor = &m->c,
		.action = mint ? "credits.mint" : "credits.transfer",
		.target = fd_arena_printf(ar, "reseller:%" PRId64, q->to),
		.source = fd_audit_source(ar, fd_call_peer(m->call)),
		.outcome = FD_AUDIT_OK,
		.detail = detail,
	};
	if (!entry || !ev.target || !ev.source)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return fd_audit_add(tx, ar, &ev, FD_TX_LAST);
}

static int move_tx(fd_tx_t *tx, void *arg)
{
	move_q_t *q = arg;
	money_t *m = q->m;
	fd_arena_t *ar = m->arena;
	q->replayed = q->refused = false;
	m->entry = NULL;        /* an attempt run again starts afresh */
	int rc = find_replay(tx, m);
	if (rc != 0)
		return rc < 0 ? rc : (q->replayed = true, 0);
	if (q->check_from && (rc = visible(tx, m, q->from, false)) < 0)
		return rc;
	if ((rc = visible(tx, m, q->to, q->strict_to)) < 0)
		return rc;
	const char *from = fd_arena_printf(ar, "%" PRId64, q->from), *to = fd_arena_printf(ar, "%" PRId64, q->to);
	const char *amount = fd_arena_printf(ar, "%" PRId64, q->amount);
	if (!from || !to || !amount)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	const char *p3[] = { m->tenant_s, from, to };
	PGresult *res;
	if ((rc = fd_tx_exec(tx, &SQL_OPEN_ACCOUNT, p3, 0, NULL)) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_LOCK_TWO, p3, 0, &res)) < 0)
		return rc;
	/* A duplicate of this call (same key, same accounts) may have held these
	 * locks while we waited for them: it has committed by now, and under
	 * READ COMMITTED a statement begun after the wait sees its entry. Without
	 * this second look the duplicate would be executed again on the balance
	 * the first one left, and answer "not enough credits" or an overflow
	 * instead of the first result (common.proto). The look before the locks
	 * stays: a later replay answers without locking anything. */
	if ((rc = find_replay(tx, m)) != 0)
		return rc < 0 ? rc : (q->replayed = true, 0);
	q->balance = 0;
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, 0), from) == 0)
			q->balance = strtoll(PQgetvalue(res, i, 1), NULL, 10);
	const char *params[] = { m->tenant_s, from, to, amount, q->kind, q->note, m->actor_account,
		                     m->actor_service, m->idem, m->hash };
	if ((rc = fd_tx_exec(tx, &SQL_MOVE, params, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) == 0) {
		q->refused = true;     /* not enough credits: nothing was written */
		return 0;
	}
	if (!(m->entry = entry_message(ar, m->tenant, res, 0)))
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return audit_move(tx, q, from, amount);
}

/* Runs a move; a concurrent duplicate of the key is answered from the winner. */
static int run_move(fd_call_t *call, move_q_t *q)
{
	billingd_t *b = billingd_of(call);
	fd_tx_opts_t o = { .tenant_id = q->m->tenant, .deadline_ms = fd_call_deadline_ms(call) };
	int rc = fd_db_run_opts(b->db, &o, move_tx, q, fd_call_err(call));
	if (rc == -FD_EEXISTS)
		rc = fd_db_run_opts(b->db, &o, move_tx, q, fd_call_err(call));
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
	money_t m;
	int rc = money_begin(&m, call, "MintCredits", FRONTDESK__V1__SCOPE__SCOPE_CREDITS_MINT, req->tenant_id,
	                     req->idempotency_key, msg);
	if (rc < 0)
		return rc;
	if (!is_admin(&m.c))
		return fd_call_fail(call, FD_EPERM, "only tenant and platform admins mint credits");
	if ((rc = check_amount(call, req->amount, b->cfg->max_per_call)) < 0 || (rc = check_note(call, req->note)) < 0)
		return rc;
	if (req->reseller_id < 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: must not be negative");
	int64_t to = req->reseller_id ? req->reseller_id : m.tenant == m.c.tenant_id ? m.c.account_id : 0;
	if (!to)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: required when acting in another tenant");
	move_q_t q = { .m = &m, .kind = "mint", .from = ACCOUNT_ISSUANCE, .to = to, .amount = req->amount,
		           .note = req->note };
	if ((rc = run_move(call, &q)) < 0)
		return rc;
	Frontdesk__V1__MintCreditsResponse *r = fd_arena_zalloc(m.arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__mint_credits_response__init(r);
	r->entry = m.entry;
	*resp = &r->base;
	return 0;
}

int billingd_transfer(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__TransferCreditsRequest *req = (const void *)msg;
	billingd_t *b = billingd_of(call);
	money_t m;
	int rc = money_begin(&m, call, "TransferCredits", FRONTDESK__V1__SCOPE__SCOPE_CREDITS_TRANSFER, req->tenant_id,
	                     req->idempotency_key, msg);
	if (rc < 0)
		return rc;
	if (m.c.kind == FD_CRED_SERVICE_TOKEN)
		return fd_call_fail(call, FD_EPERM, "transfers are made by people's accounts");
	if ((rc = check_amount(call, req->amount, b->cfg->max_per_call)) < 0 || (rc = check_note(call, req->note)) < 0)
		return rc;
	if (req->from_reseller_id < 0 || req->to_reseller_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "to_reseller_id: required (and from_reseller_id not negative)");
	bool own = m.tenant == m.c.tenant_id;
	int64_t from = req->from_reseller_id ? req->from_reseller_id : own ? m.c.account_id : 0;
	if (!from)
		return fd_call_fail(call, FD_EINVAL, "from_reseller_id: required when acting in another tenant");
	if (!is_admin(&m.c) && from != m.c.account_id)
		return fd_call_fail(call, FD_EPERM, "resellers transfer from their own balance only");
	if (from == req->to_reseller_id)
		return fd_call_fail(call, FD_EINVAL, "to_reseller_id: the same account as the payer");
	/* Resellers send down their own subtree only; admins anywhere in the tenant. */
	move_q_t q = { .m = &m, .kind = "transfer", .from = from, .to = req->to_reseller_id, .amount = req->amount,
		           .note = req->note, .check_from = is_admin(&m.c), .strict_to = !is_admin(&m.c) };
	if ((rc = run_move(call, &q)) < 0)
		return rc;
	Frontdesk__V1__TransferCreditsResponse *r = fd_arena_zalloc(m.arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__transfer_credits_response__init(r);
	r->entry = m.entry;
	*resp = &r->base;
	return 0;
}

/* ---- GetBalance ---- */

static const fd_sql_t SQL_DERIVED_CONSUMPTION = {
	"billingd_consumption",
	"SELECT -coalesce(sum(balance), 0), coalesce(floor(extract(epoch FROM max(updated_at)))::bigint, 0)"
	"  FROM frontdesk.credit_balances WHERE tenant_id = $1",
	1,
};

typedef struct balance_q {
	money_t *m;
	int64_t account;             /* -1: consumption */
	int64_t balance, updated_at;
} balance_q_t;

static int balance_tx(fd_tx_t *tx, void *arg)
{
	balance_q_t *q = arg;
	PGresult *res;
	int rc;
	if (q->account > 0 && (rc = visible(tx, q->m, q->account, false)) < 0)
		return rc;
	if (q->account == ACCOUNT_CONSUMPTION) {
		const char *params[] = { q->m->tenant_s };
		rc = fd_tx_exec(tx, &SQL_DERIVED_CONSUMPTION, params, 0, &res);
	} else {
		const char *params[] = { q->m->tenant_s, fd_arena_printf(q->m->arena, "%" PRId64, q->account) };
		rc = fd_tx_exec(tx, &SQL_BALANCE, params, 0, &res);
	}
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 1) {
		q->balance = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		q->updated_at = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	}
	return 0;
}

int billingd_get_balance(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__GetBalanceRequest *req = (const void *)msg;
	billingd_t *b = billingd_of(call);
	money_t m = { .call = call, .arena = fd_call_arena(call) };
	int rc;
	if ((rc = fd_call_caller(call, &m.c)) < 0 ||
	    (rc = fd_caller_need(&m.c, FRONTDESK__V1__SCOPE__SCOPE_CREDITS_READ, fd_call_err(call))) < 0 ||
	    (rc = fd_call_tenant(call, &m.c, req->tenant_id, &m.tenant)) < 0)
		return rc;
	if (m.tenant == 0)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: name the tenant (the platform has no credits)");
	if (req->reseller_id < 0 || req->kind > FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_CONSUMPTION)
		return fd_call_fail(call, FD_EINVAL, "kind or reseller_id: out of range");
	balance_q_t q = { .m = &m };
	if (req->kind == FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_ISSUANCE ||
	    req->kind == FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_CONSUMPTION) {
		if (!is_admin(&m.c))
			return fd_call_fail(call, FD_EPERM, "only tenant and platform admins read the tenant's own accounts");
		q.account = req->kind == FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_ISSUANCE ? ACCOUNT_ISSUANCE
		                                                                          : ACCOUNT_CONSUMPTION;
	} else {
		q.account = req->reseller_id ? req->reseller_id : m.tenant == m.c.tenant_id ? m.c.account_id : 0;
		if (q.account <= 0)
			return fd_call_fail(call, FD_EINVAL, "reseller_id: required when acting in another tenant");
	}
	m.tenant_s = fd_arena_printf(m.arena, "%" PRId64, m.tenant);
	if (!m.tenant_s)
		return OOM(call);
	fd_tx_opts_t o = { .tenant_id = m.tenant, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	if ((rc = fd_db_run_opts(b->db, &o, balance_tx, &q, fd_call_err(call))) < 0)
		return rc;
	Frontdesk__V1__GetBalanceResponse *r = fd_arena_zalloc(m.arena, sizeof(*r));
	Frontdesk__V1__Account *acc = fd_arena_zalloc(m.arena, sizeof(*acc));
	if (!r || !acc)
		return OOM(call);
	frontdesk__v1__get_balance_response__init(r);
	frontdesk__v1__account__init(acc);
	acc->tenant_id = m.tenant;
	acc->kind = q.account > 0 ? FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_RESELLER
	            : q.account == ACCOUNT_ISSUANCE ? FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_ISSUANCE
	                                            : FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_CONSUMPTION;
	acc->reseller_id = q.account > 0 ? q.account : 0;
	acc->balance = q.balance;
	acc->updated_at = q.updated_at;
	r->account = acc;
	*resp = &r->base;
	return 0;
}

/* ---- ListLedger ---- */

static const fd_sql_t SQL_LIST = {
	"billingd_list_ledger",
	"SELECT " ENTRY_COLS(REFUNDED_SUBQUERY) " FROM frontdesk.ledger_entries e"
	" WHERE e.tenant_id = $1 AND ($2::bigint = 0 OR e.id < $2)"
	"   AND ($3::bigint = 0 OR e.from_account = $3 OR e.to_account = $3)"
	"   AND ($4 = '' OR e.from_account IN (SELECT id FROM frontdesk.account_refs WHERE tenant_id = $1 AND path LIKE $4 || '%')"
	"               OR e.to_account IN (SELECT id FROM frontdesk.account_refs WHERE tenant_id = $1 AND path LIKE $4 || '%'))"
	"   AND ($5::text[] IS NULL OR e.kind = ANY ($5::text[]))"
	"   AND ($6::bigint = 0 OR e.created_at >= to_timestamp($6))"
	"   AND ($7::bigint = 0 OR e.created_at < to_timestamp($7))"
	"   AND ($8::bigint = 0 OR e.line_id = $8)"
	" ORDER BY e.id DESC LIMIT $9",
	9,
};

typedef struct list_q {
	money_t *m;
	int64_t reseller;
	const char *params[9];
	Frontdesk__V1__LedgerEntry **out;
	size_t n;
} list_q_t;

static int list_tx(fd_tx_t *tx, void *arg)
{
	list_q_t *q = arg;
	PGresult *res;
	int rc;
	if (q->reseller && (rc = visible(tx, q->m, q->reseller, false)) < 0)
		return rc;
	if ((rc = fd_tx_exec(tx, &SQL_LIST, q->params, 0, &res)) < 0)
		return rc;
	int n = PQntuples(res);
	q->out = fd_arena_zalloc(q->m->arena, sizeof(*q->out) * (size_t)(n ? n : 1));
	if (!q->out)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	for (int i = 0; i < n; i++)
		if (!(q->out[q->n++] = entry_message(q->m->arena, q->m->tenant, res, i)))
			return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return 0;
}

int billingd_list_ledger(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListLedgerRequest *req = (const void *)msg;
	billingd_t *b = billingd_of(call);
	money_t m = { .call = call, .arena = fd_call_arena(call) };
	fd_arena_t *ar = m.arena;
	int rc;
	if ((rc = fd_call_caller(call, &m.c)) < 0 ||
	    (rc = fd_caller_need(&m.c, FRONTDESK__V1__SCOPE__SCOPE_CREDITS_READ, fd_call_err(call))) < 0 ||
	    (rc = fd_call_tenant(call, &m.c, req->tenant_id, &m.tenant)) < 0)
		return rc;
	if (m.tenant == 0)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: name the tenant (the platform has no credits)");
	if (req->page_size < 0 || req->reseller_id < 0 || req->line_id < 0)
		return fd_call_fail(call, FD_EINVAL, "page_size, reseller_id, line_id: must not be negative");
	int limit = req->page_size == 0 ? 50 : req->page_size > 1000 ? 1000 : req->page_size;
	int64_t before = 0;
	if (req->page_token[0]) {
		char *end;
		before = req->page_token[0] == 'b' ? strtoll(req->page_token + 1, &end, 10) : 0;
		if (before <= 0 || *end)
			return fd_call_fail(call, FD_EINVAL, "page_token: not a token this server gave");
	}
	if (req->n_kinds > 4)
		return fd_call_fail(call, FD_EINVAL, "kinds: at most 4");
	char *kinds = NULL;
	for (size_t i = 0; i < req->n_kinds; i++) {
		static const char *const names[] = { NULL, "mint", "transfer", "charge", "refund" };
		if (req->kinds[i] < 1 || req->kinds[i] > 4)
			return fd_call_fail(call, FD_EINVAL, "kinds[%zu]: unknown kind %d", i, req->kinds[i]);
		kinds = fd_arena_printf(ar, "%s%s%s", kinds ? kinds : "{", kinds ? "," : "", names[req->kinds[i]]);
		if (!kinds)
			return OOM(call);
	}
	if (kinds && !(kinds = fd_arena_printf(ar, "%s}", kinds)))
		return OOM(call);
	int64_t from = req->created_within ? req->created_within->start_at : 0;
	int64_t to = req->created_within ? req->created_within->end_at : 0;
	if (from < 0 || to < 0)
		return fd_call_fail(call, FD_EINVAL, "created_within: times must not be negative");
	m.tenant_s = fd_arena_printf(ar, "%" PRId64, m.tenant);
	list_q_t q = { .m = &m, .reseller = req->reseller_id,
		           .params = { m.tenant_s, fd_arena_printf(ar, "%" PRId64, before),
		                       fd_arena_printf(ar, "%" PRId64, req->reseller_id),
		                       m.c.role == FD_ROLE_RESELLER ? m.c.path : "", kinds,
		                       fd_arena_printf(ar, "%" PRId64, from), fd_arena_printf(ar, "%" PRId64, to),
		                       fd_arena_printf(ar, "%" PRId64, req->line_id), fd_arena_printf(ar, "%d", limit + 1) } };
	for (int i = 0; i < 9; i++)
		if (i != 4 && !q.params[i])
			return OOM(call);
	fd_tx_opts_t o = { .tenant_id = m.tenant, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	if ((rc = fd_db_run_opts(b->db, &o, list_tx, &q, fd_call_err(call))) < 0)
		return rc;
	Frontdesk__V1__ListLedgerResponse *r = fd_arena_zalloc(ar, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__list_ledger_response__init(r);
	r->entries = q.out;
	r->n_entries = q.n > (size_t)limit ? (size_t)limit : q.n;
	if (q.n > (size_t)limit && !(r->next_page_token = fd_arena_printf(ar, "b%" PRId64, q.out[limit - 1]->id)))
		return OOM(call);
	*resp = &r->base;
	return 0;
}
