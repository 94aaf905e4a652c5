/* store.c - billingd's SQL and the readers of its rows (store.h), over the
 * double-entry ledger of migrations/0003_billing.sql. Every statement names
 * tenant_id: row-level security is the second wall, not the only one. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "enums.h"
#include "money.h"
#include "store.h"

#define OUT_OF_MEMORY(tx) fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory")

static int64_t col_int(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* ---- ledger entries ---- */

/* The columns of an entry, as every statement that returns entries gives
 * them: ENTRY_COLS lists them in this order, and so does the type
 * frontdesk.billing_entry (migrations/0019_generic_plans.sql) that the
 * functions of the hot statements return. */
enum entry_col {
	COL_ID,
	COL_CREATED_AT,              /* Unix seconds */
	COL_KIND,                    /* ENTRY_KIND_NAMES */
	COL_FROM, COL_TO,            /* account ids (money.h) */
	COL_AMOUNT,
	COL_FROM_AFTER, COL_TO_AFTER,   /* the balances the entry left */
	COL_REASON,                  /* CHARGE_REASON_NAMES; '' for none */
	COL_LINE,                    /* 0 for none */
	COL_REFUND_OF,               /* 0 for none */
	COL_NOTE,
	COL_ACTOR_ACCOUNT,           /* 0 for none */
	COL_ACTOR_SERVICE,           /* '' for none */
	COL_REQUEST_HASH,            /* hex */
	COL_REFUNDED,                /* the amount refunded since (REFUNDED) */
};
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
	r->kind = account_kind(id);
	r->reseller_id = id > 0 ? id : 0;
	return r;
}

/* Row row of res (ENTRY_COLS) as a message in the arena; NULL when out of
 * memory. */
static entry_t *entry_message(fd_arena_t *arena, int64_t tenant, const PGresult *res, int row)
{
	entry_t *e = fd_arena_zalloc(arena, sizeof(*e));
	if (!e)
		return NULL;
	frontdesk__v1__ledger_entry__init(e);
	e->id = col_int(res, row, COL_ID);
	e->tenant_id = tenant;
	e->created_at = col_int(res, row, COL_CREATED_AT);
	e->kind = enum_value(ENTRY_KIND_NAMES, PQgetvalue(res, row, COL_KIND),
	                     FRONTDESK__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_UNSPECIFIED);
	e->from_account = account_ref(arena, col_int(res, row, COL_FROM));
	e->to_account = account_ref(arena, col_int(res, row, COL_TO));
	e->amount = col_int(res, row, COL_AMOUNT);
	e->from_balance_after = col_int(res, row, COL_FROM_AFTER);
	e->to_balance_after = col_int(res, row, COL_TO_AFTER);
	e->charge_reason = enum_value(CHARGE_REASON_NAMES, PQgetvalue(res, row, COL_REASON),
	                              FRONTDESK__V1__CHARGE_REASON__CHARGE_REASON_UNSPECIFIED);
	e->line_id = col_int(res, row, COL_LINE);
	e->refunded_entry_id = col_int(res, row, COL_REFUND_OF);
	e->note = fd_arena_strdup(arena, PQgetvalue(res, row, COL_NOTE));
	e->actor_account_id = col_int(res, row, COL_ACTOR_ACCOUNT);
	e->actor_service = fd_arena_strdup(arena, PQgetvalue(res, row, COL_ACTOR_SERVICE));
	e->refunded_amount = col_int(res, row, COL_REFUNDED);
	return e->from_account && e->to_account && e->note && e->actor_service ? e : NULL;
}

/* The entry of a statement that wrote at most one (RETURNING ENTRY_COLS):
 * *entry NULL if it wrote none. */
static int written_entry(fd_tx_t *tx, const fd_tctx_t *t, const PGresult *res, entry_t **entry)
{
	*entry = NULL;
	if (PQntuples(res) == 1 && !(*entry = entry_message(t->arena, t->tenant, res, 0)))
		return OUT_OF_MEMORY(tx);
	return 0;
}

/* The hot statements over ledger_entries (a hash-partitioned table) are
 * plpgsql functions of migrations/0019_generic_plans.sql, which return the
 * entry as ENTRY_COLS gives it (frontdesk.billing_entry): their plans are
 * generic and kept by the function for the life of the session, also behind
 * a pooler that cannot keep prepared statements (FRONTDESK_DB_PREPARED=false).
 * As plain statements, a custom plan was made again on every call of the
 * ones that read ledger_entries by tenant. */
static const fd_sql_t SQL_BY_IDEM = {
	"billingd_by_idem", "SELECT * FROM frontdesk.billing_entry_by_idem($1, $2)", 2,
};

int store_entry_by_idem(fd_tx_t *tx, const fd_tctx_t *t, const char *idem, entry_t **entry, const char **hash)
{
	const char *params[] = { t->tenant_s, idem };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_BY_IDEM, params, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 0)
		return 0;
	*hash = PQgetvalue(res, 0, COL_REQUEST_HASH);
	if (!(*entry = entry_message(t->arena, t->tenant, res, 0)))
		return OUT_OF_MEMORY(tx);
	return 1;
}

/* Charge, the hot path (frontdesk.billing_charge): a conditional UPDATE of
 * the reseller's balance (no overdraft under any interleaving) feeding the
 * INSERT of the entry, one statement. The consumption account has no
 * balance row to lock. bench/billing_setup.py reads this statement from
 * here: keep its shape. */
static const fd_sql_t SQL_CHARGE = {
	"billingd_charge",
	"SELECT * FROM frontdesk.billing_charge($1, $2, $3, $4, $5, $6, $7, $8, $9)",
	9,
};

int store_charge(fd_tx_t *tx, const fd_tctx_t *t, const char *const params[CHARGE_NPARAMS], unsigned flags,
                 entry_t **entry)
{
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_CHARGE, params, flags, &res);
	return rc < 0 ? rc : written_entry(tx, t, res, entry);
}

/* Refund (frontdesk.billing_refund): the charge read, the balance credited
 * and the entry written in one statement. */
static const fd_sql_t SQL_REFUND = {
	"billingd_refund", "SELECT * FROM frontdesk.billing_refund($1, $2, $3, $4, $5, $6, $7)", 7,
};

int store_refund(fd_tx_t *tx, const fd_tctx_t *t, const char *const params[REFUND_NPARAMS], unsigned flags,
                 entry_t **entry)
{
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_REFUND, params, flags, &res);
	return rc < 0 ? rc : written_entry(tx, t, res, entry);
}

enum charge_entry_col { CHARGED_AMOUNT, CHARGED_REFUNDED };
static const fd_sql_t SQL_CHARGE_ENTRY = {
	"billingd_charge_entry",
	"SELECT amount, EXISTS (SELECT 1 FROM frontdesk.ledger_entries r WHERE r.tenant_id = $1 AND r.refund_of = $2)"
	"  FROM frontdesk.ledger_entries WHERE tenant_id = $1 AND id = $2 AND kind = 'charge'",
	2,
};

int store_charge_entry(fd_tx_t *tx, const fd_tctx_t *t, const char *charge, int64_t *amount, bool *refunded)
{
	const char *params[] = { t->tenant_s, charge };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_CHARGE_ENTRY, params, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) != 1)
		return 0;
	*amount = col_int(res, 0, CHARGED_AMOUNT);
	*refunded = strcmp(PQgetvalue(res, 0, CHARGED_REFUNDED), "t") == 0;
	return 1;
}

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

int store_move(fd_tx_t *tx, const fd_tctx_t *t, const char *const params[MOVE_NPARAMS], entry_t **entry)
{
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_MOVE, params, 0, &res);
	return rc < 0 ? rc : written_entry(tx, t, res, entry);
}

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

int store_list(fd_tx_t *tx, const fd_tctx_t *t, const char *const params[LIST_NPARAMS], entry_t ***out, size_t *n)
{
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_LIST, params, 0, &res);
	if (rc < 0)
		return rc;
	int rows = PQntuples(res);
	*n = 0;
	if (!(*out = fd_arena_zalloc(t->arena, sizeof(**out) * (size_t)(rows ? rows : 1))))
		return OUT_OF_MEMORY(tx);
	for (int i = 0; i < rows; i++)
		if (!((*out)[(*n)++] = entry_message(t->arena, t->tenant, res, i)))
			return OUT_OF_MEMORY(tx);
	return 0;
}

/* ---- accounts and balances ---- */

static const fd_sql_t SQL_ACCOUNT = {
	"billingd_account", "SELECT path FROM frontdesk.account_refs WHERE tenant_id = $1 AND id = $2", 2,
};

int store_account_path(fd_tx_t *tx, const fd_tctx_t *t, int64_t id, const char **path)
{
	const char *params[] = { t->tenant_s, fd_arena_printf(t->arena, "%" PRId64, id) };
	if (!params[1])
		return OUT_OF_MEMORY(tx);
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_ACCOUNT, params, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) != 1)
		return 0;
	if (!(*path = fd_arena_strdup(t->arena, PQgetvalue(res, 0, 0))))
		return OUT_OF_MEMORY(tx);
	return 1;
}

/* Both balance statements' columns. */
enum balance_col { BALANCE_BALANCE, BALANCE_UPDATED_AT };
static const fd_sql_t SQL_BALANCE = {
	"billingd_balance",
	"SELECT balance, floor(extract(epoch FROM updated_at))::bigint FROM frontdesk.credit_balances"
	" WHERE tenant_id = $1 AND account_id = $2",
	2,
};
static const fd_sql_t SQL_DERIVED_CONSUMPTION = {
	"billingd_consumption",
	"SELECT -coalesce(sum(balance), 0), coalesce(floor(extract(epoch FROM max(updated_at)))::bigint, 0)"
	"  FROM frontdesk.credit_balances WHERE tenant_id = $1",
	1,
};

int store_balance(fd_tx_t *tx, const fd_tctx_t *t, int64_t id, int64_t *balance, int64_t *updated_at)
{
	const char *params[] = { t->tenant_s, NULL };
	const fd_sql_t *sql = &SQL_DERIVED_CONSUMPTION;
	if (id != ACCOUNT_CONSUMPTION) {
		sql = &SQL_BALANCE;
		if (!(params[1] = fd_arena_printf(t->arena, "%" PRId64, id)))
			return OUT_OF_MEMORY(tx);
	}
	PGresult *res;
	int rc = fd_tx_exec(tx, sql, params, 0, &res);
	if (rc < 0)
		return rc;
	*balance = *updated_at = 0;
	if (PQntuples(res) == 1) {
		*balance = col_int(res, 0, BALANCE_BALANCE);
		*updated_at = col_int(res, 0, BALANCE_UPDATED_AT);
	}
	return 0;
}

static const fd_sql_t SQL_OPEN_ACCOUNT = {
	"billingd_open_account",
	"INSERT INTO frontdesk.credit_balances (tenant_id, account_id) VALUES ($1, $2), ($1, $3)"
	" ON CONFLICT DO NOTHING",
	3,
};
/* Both rows locked in account order, so two movements never deadlock. */
enum lock_col { LOCKED_ACCOUNT, LOCKED_BALANCE };
static const fd_sql_t SQL_LOCK_TWO = {
	"billingd_lock_two",
	"SELECT account_id, balance FROM frontdesk.credit_balances"
	" WHERE tenant_id = $1 AND account_id IN ($2, $3) ORDER BY account_id FOR NO KEY UPDATE",
	3,
};

int store_lock_two(fd_tx_t *tx, const fd_tctx_t *t, const char *from, const char *to, int64_t *from_balance)
{
	const char *params[] = { t->tenant_s, from, to };
	PGresult *res;
	int rc;
	if ((rc = fd_tx_exec(tx, &SQL_OPEN_ACCOUNT, params, 0, NULL)) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_LOCK_TWO, params, 0, &res)) < 0)
		return rc;
	*from_balance = 0;
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, LOCKED_ACCOUNT), from) == 0)
			*from_balance = col_int(res, i, LOCKED_BALANCE);
	return 0;
}
