/* lines.c - lines: create (and trial), read, list, update, extend, status,
 * delete; the charges made for them and their settlement with billingd.
 *
 * Money and lines stay together through frontdesk.line_charges, an outbox
 * (migrations/0004_lines.sql):
 *   1. prepare: one transaction commits the pending charge row (and, for a
 *      create, the pending line, which holds its username);
 *   2. settle: a transaction locks the charge row, calls billingd's Charge
 *      with the key "lc-<charge id>", applies the change to the line, marks
 *      the row applied and commits.
 * A crash between Charge and the commit leaves the row pending; settling it
 * again (a retry of the same request, or the reconciliation pass) calls
 * Charge with the same key and request, which answers the first charge, so
 * the line is completed and nothing is charged twice. A refusal for good
 * (not enough credits, reseller or tenant gone) removes the pending rows:
 * nothing was charged. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "linesd.h"
#include "fd/audit.h"
#include "fd/log.h"
#include "fd/wire.h"
#include "frontdesk/v1/billing.pb-c.h"

const char LINE_COLS[] = LINE_COLUMNS;

#define ALL_STATUS(x) FRONTDESK__V1__LINE_STATUS__LINE_STATUS_##x

static Frontdesk__V1__LineStatus status_of(const char *s)
{
	return strcmp(s, "active") == 0     ? ALL_STATUS(ACTIVE)
	       : strcmp(s, "disabled") == 0 ? ALL_STATUS(DISABLED)
	       : strcmp(s, "banned") == 0   ? ALL_STATUS(BANNED)
	       : strcmp(s, "expired") == 0  ? ALL_STATUS(EXPIRED)
	                                    : ALL_STATUS(UNSPECIFIED);
}

Frontdesk__V1__Line *line_message(const linesd_t *l, fd_arena_t *a, int64_t tenant, PGresult *res, int row, int col)
{
	Frontdesk__V1__Line *m = fd_arena_zalloc(a, sizeof(*m));
	if (!m)
		return NULL;
	frontdesk__v1__line__init(m);
	m->id = col_i64(res, row, col + 0);
	m->tenant_id = tenant;
	m->reseller_id = col_i64(res, row, col + 1);
	m->username = fd_arena_strdup(a, PQgetvalue(res, row, col + 2));
	m->password = line_password_open(l, a, PQgetvalue(res, row, col + 3));
	m->package_id = col_i64(res, row, col + 4);
	m->status = status_of(PQgetvalue(res, row, col + 5));
	m->expires_at = col_i64(res, row, col + 6);
	m->max_connections = (int32_t)col_i64(res, row, col + 7);
	if (pg_parse_ints(a, PQgetvalue(res, row, col + 8), &m->bouquet_ids, &m->n_bouquet_ids) < 0 ||
	    pg_parse_texts(a, PQgetvalue(res, row, col + 9), &m->allowed_ips, &m->n_allowed_ips) < 0 ||
	    pg_parse_texts(a, PQgetvalue(res, row, col + 10), &m->allowed_user_agents, &m->n_allowed_user_agents) < 0 ||
	    pg_parse_formats(a, PQgetvalue(res, row, col + 11), &m->allowed_output_formats,
	                     &m->n_allowed_output_formats) < 0)
		return NULL;
	m->bandwidth_cap_kbps = col_i64(res, row, col + 12);
	m->trial = col_bool(res, row, col + 13);
	m->notes = fd_arena_strdup(a, PQgetvalue(res, row, col + 14));
	m->active_connections = (int32_t)col_i64(res, row, col + 15);
	m->created_at = col_i64(res, row, col + 16);
	m->updated_at = col_i64(res, row, col + 17);
	m->last_seen_at = col_i64(res, row, col + 18);
	if (!m->password) {
		fd_error("line %" PRId64 ": its password does not open with FRONTDESK_KEY_ENCRYPTION_KEY", m->id);
		m->password = "";
	}
	return m->username && m->notes ? m : NULL;
}

/* ---- input checks ---- */

static int check_line_username(fd_call_t *call, const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return fd_call_fail(call, FD_EINVAL, "username: 1 to 64 characters");
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-' || c == '@'))
			return fd_call_fail(call, FD_EINVAL, "username: only letters, digits and . _ - @ are allowed");
	}
	return 0;
}

/* Players put it in URLs: the characters URLs carry unescaped. */
static int check_line_password(fd_call_t *call, const char *field, const char *s)
{
	size_t n = strlen(s);
	if (n < 4 || n > 64)
		return fd_call_fail(call, FD_EINVAL, "%s: 4 to 64 characters", field);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-' || c == '~'))
			return fd_call_fail(call, FD_EINVAL, "%s: only letters, digits and . _ - ~ are allowed", field);
	}
	return 0;
}

/* "203.0.113.0/24", "2001:db8::/32" or a single address; host bits must be 0. */
static int check_cidr(fd_call_t *call, const char *field, size_t i, const char *s)
{
	char addr[64];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	unsigned char bin[16];
	int family = strchr(s, ':') ? AF_INET6 : AF_INET, bits = family == AF_INET6 ? 128 : 32, prefix = bits;
	if (n == 0 || n >= sizeof(addr))
		goto bad;
	memcpy(addr, s, n);
	addr[n] = '\0';
	if (inet_pton(family, addr, bin) != 1)
		goto bad;
	if (slash) {
		long p = 0;
		const char *d = slash + 1;
		if (!*d || strlen(d) > 3)
			goto bad;
		for (; *d; d++) {
			if (*d < '0' || *d > '9')
				goto bad;
			p = p * 10 + (*d - '0');
		}
		if (p > bits)
			goto bad;
		prefix = (int)p;
	}
	for (int b = prefix; b < bits; b++)
		if (bin[b / 8] & (0x80 >> (b % 8)))
			return fd_call_fail(call, FD_EINVAL, "%s[%zu]: %s has bits set past its /%d prefix", field, i, s, prefix);
	return 0;
bad:
	return fd_call_fail(call, FD_EINVAL, "%s[%zu]: not an IP address or CIDR (e.g. 203.0.113.0/24)", field, i);
}

static int check_locks(fd_call_t *call, char *const *ips, size_t nips, char *const *uas, size_t nuas)
{
	if (nips > 100)
		return fd_call_fail(call, FD_EINVAL, "allowed_ips: at most 100 entries");
	for (size_t i = 0; i < nips; i++) {
		int rc = check_cidr(call, "allowed_ips", i, ips[i]);
		if (rc < 0)
			return rc;
	}
	if (nuas > 100)
		return fd_call_fail(call, FD_EINVAL, "allowed_user_agents: at most 100 entries");
	for (size_t i = 0; i < nuas; i++) {
		int rc = fd_check_text("allowed_user_agents", uas[i], 1, 512, fd_call_err(call));
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- settling a charge ---- */

/* How long a settler's claim on a pending row keeps the reconciliation pass
 * away from it: the longest Charge call (5 s) and a margin. A claim that
 * lapses only lets a second settler ask billingd again, which is harmless. */
#define CLAIM_SECONDS "6"

/* The columns of a charge row as settling reads them; CH_* name them. */
#define CHARGE_COLUMNS                                                                                \
	"line_id, reseller_id, kind, package_id, periods, amount, state, coalesce(charge_entry_id, 0),"   \
	" coalesce(balance_after, 0), trials_left, actor_kind, actor_role, actor_tenant_id, actor_account_id," \
	" actor_key_id, actor_service, actor_path, actor_source, trial"
enum {
	CH_LINE, CH_RESELLER, CH_KIND, CH_PACKAGE, CH_PERIODS, CH_AMOUNT, CH_STATE, CH_ENTRY, CH_BALANCE,
	CH_TRIALS_LEFT, CH_ACTOR_KIND, CH_ACTOR_ROLE, CH_ACTOR_TENANT, CH_ACTOR_ACCOUNT, CH_ACTOR_KEY,
	CH_ACTOR_SERVICE, CH_ACTOR_PATH, CH_ACTOR_SOURCE, CH_TRIAL,
};

typedef struct settle {
	linesd_t *l;
	fd_arena_t *arena;
	int64_t tenant;
	const char *tenant_s, *charge_s;
	int64_t charge_id;
	int64_t deadline_ms;
	bool reconcile;              /* the reconciliation pass: leave rows a settler holds or has claimed */
	bool claimed;                /* the row is claimed and the fields below are read (a fresh prepare) */
	/* the row */
	int64_t line_id, reseller, package, amount;
	int32_t periods;
	bool extend;
	/* steps */
	bool drop;                   /* finish: billingd refused for good, drop the pending rows */
	bool give_back;              /* finish found nothing to apply a charge made to: refund it */
	bool vanished;               /* finish found the line deleted and nothing charged: drop the row */
	/* results */
	bool busy;                   /* reconcile: another settler holds or has claimed it */
	bool gone;                   /* no such charge (refused earlier: nothing was charged) */
	bool refused;                /* refused for good: pending rows removed, refusal says why */
	fd_err_t refusal;
	int64_t entry_id, balance_after;
	int32_t trials_left;
	Frontdesk__V1__Line *line;
} settle_t;

/* The caller's claim: the request itself (or its retry) settles its row
 * whatever claim it has. The reconciliation pass's: only a row unclaimed or
 * whose claim lapsed, skipping a row another settler has locked. */
static const fd_sql_t SQL_CHARGE_CLAIM = {
	"linesd_charge_claim",
	"UPDATE frontdesk.line_charges SET claimed_until = now() + make_interval(secs => " CLAIM_SECONDS ")"
	" WHERE tenant_id = $1 AND id = $2 AND state = 'pending' RETURNING " CHARGE_COLUMNS,
	2,
};
static const fd_sql_t SQL_CHARGE_CLAIM_LAPSED = {
	"linesd_charge_claim_lapsed",
	"UPDATE frontdesk.line_charges c SET claimed_until = now() + make_interval(secs => " CLAIM_SECONDS ")"
	"  FROM (SELECT id FROM frontdesk.line_charges WHERE tenant_id = $1 AND id = $2 AND state = 'pending'"
	"          AND (claimed_until IS NULL OR claimed_until < now()) FOR UPDATE SKIP LOCKED) x"
	" WHERE c.tenant_id = $1 AND c.id = x.id RETURNING " CHARGE_COLUMNS,
	2,
};
static const fd_sql_t SQL_CHARGE_READ = {
	"linesd_charge_read",
	"SELECT " CHARGE_COLUMNS " FROM frontdesk.line_charges WHERE tenant_id = $1 AND id = $2",
	2,
};
static const fd_sql_t SQL_CHARGE_LOCK = {
	"linesd_charge_lock",
	"SELECT " CHARGE_COLUMNS " FROM frontdesk.line_charges WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
	2,
};
static const fd_sql_t SQL_CHARGE_DROP = {
	"linesd_charge_drop",
	"WITH c AS (DELETE FROM frontdesk.line_charges WHERE tenant_id = $1 AND id = $2 AND state = 'pending'"
	"           RETURNING line_id, kind)"
	" DELETE FROM frontdesk.lines l USING c"
	"  WHERE l.tenant_id = $1 AND l.id = c.line_id AND c.kind = 'create' AND l.state = 'pending'",
	2,
};
static const fd_sql_t SQL_APPLY_CREATE = {
	"linesd_apply_create",
	"UPDATE frontdesk.lines l SET state = 'active', updated_at = now(),"
	"  expires_at = date_trunc('second', now())"
	"             + make_interval(days => p.duration_days * $3, hours => p.duration_hours * $3)"
	"  FROM frontdesk.packages p"
	" WHERE l.tenant_id = $1 AND l.id = $2 AND l.state = 'pending' AND p.tenant_id = $1 AND p.id = $4",
	4,
};
/* A different package also brings its connections, bouquets, formats and cap. */
static const fd_sql_t SQL_APPLY_EXTEND = {
	"linesd_apply_extend",
	"UPDATE frontdesk.lines l SET updated_at = now(), expiry_announced = NULL, package_id = p.id, trial = p.trial,"
	"  expires_at = greatest(l.expires_at, date_trunc('second', now()))"
	"             + make_interval(days => p.duration_days * $3, hours => p.duration_hours * $3),"
	"  max_connections = CASE WHEN p.id <> l.package_id THEN p.max_connections ELSE l.max_connections END,"
	"  bouquet_ids = CASE WHEN p.id <> l.package_id THEN p.bouquet_ids ELSE l.bouquet_ids END,"
	"  output_formats = CASE WHEN p.id <> l.package_id THEN p.output_formats ELSE l.output_formats END,"
	"  bandwidth_cap_kbps = CASE WHEN p.id <> l.package_id THEN p.bandwidth_cap_kbps ELSE l.bandwidth_cap_kbps END"
	"  FROM frontdesk.packages p"
	" WHERE l.tenant_id = $1 AND l.id = $2 AND l.state <> 'pending' AND p.tenant_id = $1 AND p.id = $4",
	4,
};
static const fd_sql_t SQL_CHARGE_APPLIED = {
	"linesd_charge_applied",
	"UPDATE frontdesk.line_charges SET state = 'applied', charge_entry_id = nullif($3::bigint, 0),"
	" balance_after = $4, claimed_until = NULL, updated_at = now() WHERE tenant_id = $1 AND id = $2",
	4,
};
static const fd_sql_t SQL_EVENT = {
	"linesd_event", "SELECT frontdesk.line_event($1, $2, $3, $4, $5, $6)", 6,
};
static const fd_sql_t SQL_LINE_BY_ID = {
	"linesd_line_by_id",
	"SELECT " LINE_COLUMNS " FROM frontdesk.lines l WHERE l.tenant_id = $1 AND l.id = $2 AND l.state <> 'pending'",
	2,
};

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
static int call_refund(linesd_t *l, fd_arena_t *arena, int64_t tenant, int64_t charge_id, int64_t entry,
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
	s->extend = strcmp(PQgetvalue(res, 0, CH_KIND), "extend") == 0;
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
	if (strcmp(PQgetvalue(res, 0, CH_STATE), "applied") == 0)
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
	if ((rc = fd_tx_exec(tx, &SQL_CHARGE_APPLIED, pc, 0, NULL)) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_EVENT, pe, 0, NULL)) < 0 || (rc = audit_charge(tx, s, res, line_s)) < 0)
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
static int settle(settle_t *s, fd_err_t *err)
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
		if ((rc = call_refund(s->l, s->arena, s->tenant, s->charge_id, s->entry_id, s->amount,
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

/* ---- CreateLine, CreateTrialLine ---- */

typedef struct create_q {
	fd_tctx_t *r;
	bool trial;
	int64_t reseller, package;
	const char *username, *password, *idem, *hash, *pw_hash, *pw_box;
	int32_t max_connections;
	const char *bouquets;        /* NULL: the package's */
	const char *ips, *uas, *notes;
	/* results */
	int64_t charge_id, line_id, cost;
	bool replay;
	int32_t trials_left;
} create_q_t;

static const fd_sql_t SQL_CHARGE_BY_IDEM = {
	"linesd_charge_by_idem",
	"SELECT id, encode(request_hash, 'hex') FROM frontdesk.line_charges WHERE tenant_id = $1 AND idem_key = $2",
	2,
};
static const fd_sql_t SQL_PACKAGE = {
	"linesd_package",
	"SELECT credit_cost, max_connections, bouquet_ids, trial, disabled FROM frontdesk.packages"
	" WHERE tenant_id = $1 AND id = $2",
	2,
};
static const fd_sql_t SQL_BOUQUETS_EXIST = {
	"linesd_bouquets_exist",
	"SELECT count(*) FROM frontdesk.bouquets WHERE tenant_id = $1 AND id = ANY ($2::bigint[])", 2,
};
static const fd_sql_t SQL_USERNAME_TAKEN = {
	"linesd_username_taken",
	"SELECT 1 FROM frontdesk.lines WHERE tenant_id = $1 AND username = $2", 2,
};
/* The lock first, in a statement of its own: a statement's snapshot is
 * taken before its lock is granted, so the count must come after. */
static const fd_sql_t SQL_TRIAL_LOCK = {
	"linesd_trial_lock",
	"SELECT pg_advisory_xact_lock(hashtextextended('linesd.trials/' || $1::bigint || '/' || $2::bigint, 0))",
	2,
};
static const fd_sql_t SQL_TRIAL_COUNT = {
	"linesd_trial_count",
	"SELECT 0,"
	" coalesce((SELECT trials_per_day FROM frontdesk.lines_settings WHERE tenant_id = $1), 10),"
	" (SELECT count(*) FROM frontdesk.line_charges WHERE tenant_id = $1 AND reseller_id = $2 AND trial"
	"    AND created_at > now() - interval '24 hours'),"
	" coalesce((SELECT " EPOCH("min(created_at) + interval '24 hours' - now()") " FROM frontdesk.line_charges"
	"    WHERE tenant_id = $1 AND reseller_id = $2 AND trial AND created_at > now() - interval '24 hours'), 0)",
	2,
};
static const fd_sql_t SQL_INSERT_PENDING_LINE = {
	"linesd_insert_pending_line",
	"INSERT INTO frontdesk.lines (tenant_id, reseller_id, reseller_path, username, password_hash, password_box,"
	"   package_id, state, expires_at, max_connections, bouquet_ids, allowed_ips, allowed_user_agents,"
	"   output_formats, bandwidth_cap_kbps, trial, notes)"
	" SELECT $1, $2, $3, $4, decode($5, 'hex'), decode($6, 'hex'), p.id, 'pending', now(),"
	"        coalesce(nullif($8::integer, 0), p.max_connections), coalesce($9::bigint[], p.bouquet_ids),"
	"        $10::cidr[], $11::text[], p.output_formats, p.bandwidth_cap_kbps, p.trial, $12"
	"   FROM frontdesk.packages p WHERE p.tenant_id = $1 AND p.id = $7"
	" RETURNING id",
	12,
};
/* Committed claimed: the call that made it settles it next. $11.. the
 * caller, for the audit row of whoever applies it (CHARGE_COLUMNS). */
static const fd_sql_t SQL_INSERT_CHARGE = {
	"linesd_insert_charge",
	"INSERT INTO frontdesk.line_charges (tenant_id, line_id, reseller_id, kind, trial, package_id, periods,"
	"   amount, idem_key, request_hash, trials_left, actor_kind, actor_role, actor_tenant_id, actor_account_id,"
	"   actor_key_id, actor_service, actor_path, actor_source, claimed_until)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, decode($10, 'hex'), $11, $12, $13, $14, $15, $16, $17, $18,"
	"         $19, now() + make_interval(secs => " CLAIM_SECONDS ")) RETURNING id",
	19,
};

/* The caller's columns of SQL_INSERT_CHARGE ($12..$19) into p[0..7]. */
static int actor_params(fd_tctx_t *r, const char **p)
{
	const fd_caller_t *c = &r->c;
	p[0] = lines_i64(r, c->kind);
	p[1] = lines_i64(r, c->role);
	p[2] = lines_i64(r, c->tenant_id);
	p[3] = lines_i64(r, c->account_id);
	p[4] = lines_i64(r, c->api_key_id);
	p[5] = c->service;
	p[6] = c->path;
	p[7] = fd_audit_source(r->arena, fd_call_peer(r->call));
	for (int i = 0; i < 8; i++)
		if (!p[i])
			return -FD_EEXHAUSTED;
	return 0;
}

static int create_prepare_tx(fd_tx_t *tx, void *arg)
{
	create_q_t *q = arg;
	fd_tctx_t *r = q->r;
	fd_err_t *err = fd_tx_err(tx);
	q->replay = false;
	const char *pk[] = { r->tenant_s, q->idem };
	PGresult *res;
	/* A concurrent duplicate waits here for the first to commit, then finds
	 * its charge: it must not run the checks again (the username is taken
	 * by then, the trial limit or the credits used up). */
	int rc = lidem_lock(tx, r, q->idem);
	if (rc < 0 || (rc = fd_tx_exec(tx, &SQL_CHARGE_BY_IDEM, pk, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) == 1) {
		if (strcmp(PQgetvalue(res, 0, 1), q->hash) != 0)
			return fd_err_set(err, FD_EPRECOND, "idempotency_key: already used with a different request");
		q->charge_id = col_i64(res, 0, 0);
		q->replay = true;
		return 0;
	}
	const char *path;
	bool suspended;
	if ((rc = lines_reseller(tx, r, q->reseller, &path, &suspended)) < 0)
		return rc;
	if (suspended)
		return fd_err_set(err, FD_EPRECOND, "reseller %" PRId64 " is suspended (or one above it is)", q->reseller);
	const char *pp[] = { r->tenant_s, lines_i64(r, q->package) };
	if (!pp[1])
		return TX_OOM(tx);
	if ((rc = fd_tx_exec(tx, &SQL_PACKAGE, pp, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) == 0)
		return fd_err_set(err, FD_ENOTFOUND, "package %" PRId64 " not found", q->package);
	int64_t cost = col_i64(res, 0, 0), pkg_max = col_i64(res, 0, 1);
	bool trial = col_bool(res, 0, 3);
	if (col_bool(res, 0, 4))
		return fd_err_set(err, FD_EPRECOND, "package %" PRId64 " is disabled", q->package);
	if (trial != q->trial)
		return fd_err_set(err, FD_EINVAL, q->trial ? "package_id: %" PRId64 " is not a trial package"
		                                           : "package_id: %" PRId64 " is a trial package (CreateTrialLine)",
		                  q->package);
	if (q->max_connections > pkg_max && !fd_tctx_admin(r))
		return fd_err_set(err, FD_EINVAL, "max_connections: at most the package's %" PRId64, pkg_max);
	if (q->bouquets) {
		int64_t *want, *allowed;
		size_t nw, na;
		if (pg_parse_ints(r->arena, q->bouquets, &want, &nw) < 0 ||
		    pg_parse_ints(r->arena, PQgetvalue(res, 0, 2), &allowed, &na) < 0)
			return TX_OOM(tx);
		if (!fd_tctx_admin(r))
			for (size_t i = 0; i < nw; i++) {
				bool in = false;
				for (size_t j = 0; j < na && !in; j++)
					in = allowed[j] == want[i];
				if (!in)
					return fd_err_set(err, FD_EINVAL, "bouquet_ids: %" PRId64 " is not in the package", want[i]);
			}
		const char *pb[] = { r->tenant_s, q->bouquets };
		if ((rc = fd_tx_exec(tx, &SQL_BOUQUETS_EXIST, pb, 0, &res)) < 0)
			return rc;
		if ((size_t)col_i64(res, 0, 0) != nw)
			return fd_err_set(err, FD_ENOTFOUND, "bouquet_ids: a bouquet was not found");
	}
	if (q->trial) {
		const char *pt[] = { r->tenant_s, lines_i64(r, q->reseller) };
		if (!pt[1])
			return TX_OOM(tx);
		if ((rc = fd_tx_exec(tx, &SQL_TRIAL_LOCK, pt, 0, NULL)) < 0 ||
		    (rc = fd_tx_exec(tx, &SQL_TRIAL_COUNT, pt, 0, &res)) < 0)
			return rc;
		int64_t limit = col_i64(res, 0, 1), used = col_i64(res, 0, 2), next = col_i64(res, 0, 3);
		if (used >= limit)
			return fd_err_set(err, FD_EEXHAUSTED, "trial lines: reseller %" PRId64 " made its %" PRId64
			                  " of the last 24 hours; the next is possible in %" PRId64 " s",
			                  q->reseller, limit, next > 0 ? next : 1);
		q->trials_left = (int32_t)(limit - used - 1);
	}
	const char *pu[] = { r->tenant_s, q->username };
	if ((rc = fd_tx_exec(tx, &SQL_USERNAME_TAKEN, pu, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) > 0)
		return fd_err_set(err, FD_EEXISTS, "username: %s is taken in this tenant", q->username);
	const char *pl[] = { r->tenant_s, lines_i64(r, q->reseller), path, q->username, q->pw_hash, q->pw_box, pp[1],
		                 lines_i64(r, q->max_connections), q->bouquets, q->ips, q->uas, q->notes };
	if (!pl[1] || !pl[7])
		return TX_OOM(tx);
	if ((rc = fd_tx_exec(tx, &SQL_INSERT_PENDING_LINE, pl, 0, &res)) < 0)
		return rc;
	q->line_id = col_i64(res, 0, 0);
	q->cost = cost;
	const char *line_s = fd_arena_strdup(r->arena, PQgetvalue(res, 0, 0));
	const char *pc[19] = { r->tenant_s, line_s, pl[1], "create", q->trial ? "true" : "false", pp[1], "1",
		                   lines_i64(r, cost), q->idem, q->hash, lines_i64(r, q->trials_left) };
	if (!line_s || !pc[7] || !pc[10] || actor_params(r, pc + 11) < 0)
		return TX_OOM(tx);
	if ((rc = fd_tx_exec(tx, &SQL_INSERT_CHARGE, pc, FD_TX_LAST, &res)) < 0)
		return rc;
	q->charge_id = col_i64(res, 0, 0);
	return 0;
}

/* Settles the call's charge; 0 with s filled, or -code (the call's error
 * set). s: charge_id, and when the call's prepare has just committed the row
 * (claimed) its fields. */
static int settle_for_call(fd_tctx_t *r, settle_t *s)
{
	s->l = linesd_of(r->call);
	s->arena = r->arena;
	s->tenant = r->tenant;
	s->deadline_ms = fd_call_deadline_ms(r->call);
	int rc = settle(s, fd_call_err(r->call));
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

static int create_common(fd_call_t *call, const ProtobufCMessage *msg, bool trial, int64_t tenant_id,
                         int64_t reseller_id, const char *username, const char *password, int64_t package_id,
                         int32_t max_connections, const int64_t *bouquets, size_t nbouquets, char **ips,
                         size_t nips, char **uas, size_t nuas, const char *notes, const char *key,
                         create_q_t *q, settle_t *s)
{
	fd_tctx_t *r = q->r;
	int rc = fd_tctx_begin(r, call, trial ? FRONTDESK__V1__SCOPE__SCOPE_LINES_TRIAL : FRONTDESK__V1__SCOPE__SCOPE_LINES_WRITE,
	                       tenant_id, "lines");
	if (rc < 0)
		return rc;
	if (trial && !fd_tctx_admin(r) && !(r->c.permissions & FD_PERM_CREATE_TRIALS))
		return fd_call_fail(call, FD_EPERM, "creating trial lines needs the CREATE_TRIALS permission");
	if ((rc = lines_idem(r, trial ? "CreateTrialLine" : "CreateLine", key, true, &q->idem)) < 0)
		return rc;
	if (reseller_id < 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: must not be negative");
	q->reseller = reseller_id ? reseller_id : r->c.reseller_id;
	if (q->reseller <= 0 || (r->c.role == FD_ROLE_PLATFORM_ADMIN && !reseller_id))
		return fd_call_fail(call, FD_EINVAL, "reseller_id: name the reseller that owns the line");
	if (package_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "package_id: required");
	q->package = package_id;
	if (username[0] && (rc = check_line_username(call, username)) < 0)
		return rc;
	if (password[0] && (rc = check_line_password(call, "password", password)) < 0)
		return rc;
	if (max_connections < 0 || max_connections > 1000)
		return fd_call_fail(call, FD_EINVAL, "max_connections: 0 (the package's) to 1000");
	q->max_connections = max_connections;
	if ((rc = check_ids(call, "bouquet_ids", bouquets, nbouquets, 1000)) < 0 ||
	    (rc = check_locks(call, ips, nips, uas, nuas)) < 0 ||
	    (rc = fd_check_text("notes", notes, 0, 2000, fd_call_err(call))) < 0)
		return rc;
	/* The fingerprint is of the request as sent: a generated username or
	 * password does not make a replay look like another request. */
	if (!(q->hash = fd_request_hash(r->arena, msg)))
		return OOM(call);
	char gen_user[12], gen_pw[13];
	if (!username[0]) {
		gen_user[0] = 'u';
		random_text(gen_user + 1, 10);
		for (char *c = gen_user + 1; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		username = gen_user;
	}
	if (!password[0]) {
		random_text(gen_pw, 12);
		password = gen_pw;
	}
	char pwh[65];
	line_password_hash(linesd_of(r->call), r->tenant, password, pwh);
	q->trial = trial;
	q->username = fd_arena_strdup(r->arena, username);
	q->pw_hash = fd_arena_strdup(r->arena, pwh);
	q->pw_box = line_password_seal(r, password);
	q->bouquets = nbouquets ? pg_int_array(r->arena, bouquets, nbouquets) : NULL;
	q->ips = pg_text_array(r->arena, ips, nips);
	q->uas = pg_text_array(r->arena, uas, nuas);
	q->notes = notes;
	if (!q->username || !q->pw_hash || !q->pw_box || (nbouquets && !q->bouquets) || !q->ips || !q->uas)
		return OOM(call);
	if ((rc = lines_run(r, create_prepare_tx, q)) < 0)
		return rc;
	*s = (settle_t){ .charge_id = q->charge_id };
	if (!q->replay)
		*s = (settle_t){ .charge_id = q->charge_id, .claimed = true, .line_id = q->line_id,
			             .reseller = q->reseller, .package = q->package, .amount = q->cost, .periods = 1,
			             .trials_left = q->trials_left };
	return settle_for_call(r, s);
}

int linesd_create_line(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__CreateLineRequest *req = (const void *)msg;
	fd_tctx_t r;
	create_q_t q = { .r = &r };
	settle_t s;
	int rc = create_common(call, msg, false, req->tenant_id, req->reseller_id, req->username, req->password,
	                       req->package_id, req->max_connections, req->bouquet_ids, req->n_bouquet_ids,
	                       req->allowed_ips, req->n_allowed_ips, req->allowed_user_agents,
	                       req->n_allowed_user_agents, req->notes, req->idempotency_key, &q, &s);
	if (rc < 0)
		return rc;
	Frontdesk__V1__CreateLineResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->line = s.line;
	m->charge_entry_id = s.entry_id;
	m->credits_charged = s.entry_id ? s.amount : 0;
	m->balance_after = s.balance_after;
	return 0;
}

int linesd_create_trial_line(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__CreateTrialLineRequest *req = (const void *)msg;
	fd_tctx_t r;
	create_q_t q = { .r = &r };
	settle_t s;
	int rc = create_common(call, msg, true, req->tenant_id, req->reseller_id, req->username, req->password,
	                       req->package_id, 0, NULL, 0, req->allowed_ips, req->n_allowed_ips,
	                       req->allowed_user_agents, req->n_allowed_user_agents, req->notes,
	                       req->idempotency_key, &q, &s);
	if (rc < 0)
		return rc;
	Frontdesk__V1__CreateTrialLineResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->line = s.line;
	m->trials_left = s.trials_left;
	m->charge_entry_id = s.entry_id;
	m->credits_charged = s.entry_id ? s.amount : 0;
	m->balance_after = s.balance_after;
	return 0;
}

/* ---- ExtendLine ---- */

typedef struct extend_q {
	fd_tctx_t *r;
	int64_t line, package;
	int32_t periods;
	const char *idem, *hash;
	/* results */
	int64_t charge_id, reseller, amount;
	bool replay;
} extend_q_t;

static const fd_sql_t SQL_LINE_VISIBLE = {
	"linesd_line_visible",
	"SELECT l.reseller_id, l.package_id, l.state FROM frontdesk.lines l"
	" WHERE l.tenant_id = $1 AND l.id = $2 AND l.state <> 'pending' AND l.reseller_path LIKE $3::text || '%'",
	3,
};

static int extend_prepare_tx(fd_tx_t *tx, void *arg)
{
	extend_q_t *q = arg;
	fd_tctx_t *r = q->r;
	fd_err_t *err = fd_tx_err(tx);
	const char *pk[] = { r->tenant_s, q->idem };
	PGresult *res;
	q->replay = false;
	int rc = lidem_lock(tx, r, q->idem);     /* see create_prepare_tx */
	if (rc < 0 || (rc = fd_tx_exec(tx, &SQL_CHARGE_BY_IDEM, pk, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) == 1) {
		if (strcmp(PQgetvalue(res, 0, 1), q->hash) != 0)
			return fd_err_set(err, FD_EPRECOND, "idempotency_key: already used with a different request");
		q->charge_id = col_i64(res, 0, 0);
		q->replay = true;
		return 0;
	}
	const char *pv[] = { r->tenant_s, lines_i64(r, q->line), fd_subtree_prefix(&r->c) };
	if (!pv[1] || !pv[2])
		return TX_OOM(tx);
	if ((rc = fd_tx_exec(tx, &SQL_LINE_VISIBLE, pv, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) == 0)
		return fd_err_set(err, FD_ENOTFOUND, "line %" PRId64 " not found", q->line);
	int64_t reseller = col_i64(res, 0, 0);
	if (!q->package)
		q->package = col_i64(res, 0, 1);
	const char *pp[] = { r->tenant_s, lines_i64(r, q->package) };
	if (!pp[1])
		return TX_OOM(tx);
	if ((rc = fd_tx_exec(tx, &SQL_PACKAGE, pp, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) == 0)
		return fd_err_set(err, FD_ENOTFOUND, "package %" PRId64 " not found", q->package);
	if (col_bool(res, 0, 4))
		return fd_err_set(err, FD_EPRECOND, "package %" PRId64 " is disabled", q->package);
	if (col_bool(res, 0, 3))
		return fd_err_set(err, FD_EINVAL, "package_id: %" PRId64 " is a trial package; extend with a paid one",
		                  q->package);
	int64_t cost = col_i64(res, 0, 0);
	if (cost > INT64_MAX / q->periods)
		return fd_err_set(err, FD_EINVAL, "periods: the price overflows");
	q->reseller = reseller;
	q->amount = cost * q->periods;
	const char *pc[19] = { r->tenant_s, pv[1], lines_i64(r, reseller), "extend", "false", pp[1],
		                   lines_i64(r, q->periods), lines_i64(r, q->amount), q->idem, q->hash, "0" };
	if (!pc[2] || !pc[6] || !pc[7] || actor_params(r, pc + 11) < 0)
		return TX_OOM(tx);
	if ((rc = fd_tx_exec(tx, &SQL_INSERT_CHARGE, pc, FD_TX_LAST, &res)) < 0)
		return rc;
	q->charge_id = col_i64(res, 0, 0);
	return 0;
}

int linesd_extend_line(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ExtendLineRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_LINES_WRITE, req->tenant_id, "lines");
	if (rc < 0)
		return rc;
	extend_q_t q = { .r = &r, .line = req->line_id, .package = req->package_id,
		             .periods = req->periods ? req->periods : 1 };
	if (req->line_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "line_id: required");
	if (req->package_id < 0)
		return fd_call_fail(call, FD_EINVAL, "package_id: must not be negative");
	if (req->periods < 0 || req->periods > 120)
		return fd_call_fail(call, FD_EINVAL, "periods: 0 (one) to 120");
	if ((rc = lines_idem(&r, "ExtendLine", req->idempotency_key, true, &q.idem)) < 0)
		return rc;
	if (!(q.hash = fd_request_hash(r.arena, msg)))
		return OOM(call);
	if ((rc = lines_run(&r, extend_prepare_tx, &q)) < 0)
		return rc;
	settle_t s = { .charge_id = q.charge_id };
	if (!q.replay)
		s = (settle_t){ .charge_id = q.charge_id, .claimed = true, .line_id = q.line, .reseller = q.reseller,
			            .package = q.package, .amount = q.amount, .periods = q.periods, .extend = true };
	if ((rc = settle_for_call(&r, &s)) < 0)
		return rc;
	Frontdesk__V1__ExtendLineResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->line = s.line;
	m->charge_entry_id = s.entry_id;
	m->credits_charged = s.entry_id ? s.amount : 0;
	m->balance_after = s.balance_after;
	return 0;
}

/* ---- the reconciliation pass ---- */

static const fd_sql_t SQL_TENANTS = {
	"linesd_tenants", "SELECT id FROM frontdesk.tenants WHERE id > 0 ORDER BY id", 0,
};
static const fd_sql_t SQL_PENDING = {
	"linesd_pending",
	"SELECT id FROM frontdesk.line_charges WHERE tenant_id = $1 AND state = 'pending'"
	" AND created_at < now() - make_interval(secs => $2) AND (claimed_until IS NULL OR claimed_until < now())"
	" ORDER BY created_at LIMIT 100",
	2,
};

typedef struct id_list {
	fd_arena_t *arena;
	const char *p[2];
	int64_t *ids;
	int n;
} id_list_t;

static int ids_tx(fd_tx_t *tx, void *arg, const fd_sql_t *sql, const char *const *params)
{
	id_list_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, sql, params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	q->n = PQntuples(res);
	if (!(q->ids = fd_arena_alloc(q->arena, ((size_t)q->n + 1) * sizeof(int64_t))))
		return TX_OOM(tx);
	for (int i = 0; i < q->n; i++)
		q->ids[i] = col_i64(res, i, 0);
	return 0;
}

static int tenants_tx(fd_tx_t *tx, void *arg)
{
	return ids_tx(tx, arg, &SQL_TENANTS, NULL);
}

static int pending_tx(fd_tx_t *tx, void *arg)
{
	id_list_t *q = arg;
	return ids_tx(tx, arg, &SQL_PENDING, q->p);
}

int linesd_tenant_ids(linesd_t *l, fd_arena_t *arena, int64_t **ids, int *n)
{
	id_list_t q = { .arena = arena };
	fd_err_t err = { 0 };
	int rc = fd_db_run(l->db, FD_NO_TENANT, tenants_tx, &q, &err);
	*ids = q.ids;
	*n = rc < 0 ? 0 : q.n;
	return rc;
}

void lines_reconcile(linesd_t *l)
{
	fd_arena_t arena;
	fd_arena_init(&arena, 0);
	int64_t *tenants;
	int nt;
	if (linesd_tenant_ids(l, &arena, &tenants, &nt) < 0)
		goto out;
	for (int t = 0; t < nt && !l->stopping; t++) {
		id_list_t q = { .arena = &arena,
			            .p = { fd_arena_printf(&arena, "%" PRId64, tenants[t]),
			                   fd_arena_printf(&arena, "%" PRId64, l->cfg->reconcile_after) } };
		fd_err_t err = { 0 };
		if (!q.p[0] || !q.p[1] || fd_db_run(l->db, tenants[t], pending_tx, &q, &err) < 0)
			continue;
		for (int i = 0; i < q.n; i++) {
			settle_t s = { .l = l, .arena = &arena, .tenant = tenants[t], .charge_id = q.ids[i],
				           .reconcile = true, .deadline_ms = 0 };
			int rc = settle(&s, &err);
			if (rc < 0)
				fd_warn("tenant %" PRId64 ": charge %" PRId64 " still pending: %s", tenants[t], q.ids[i], err.msg);
			else if (s.refused)
				fd_info("tenant %" PRId64 ": charge %" PRId64 " dropped (%s): nothing kept pending",
				        tenants[t], q.ids[i], s.refusal.msg);
			else if (!s.busy)
				fd_info("tenant %" PRId64 ": charge %" PRId64 " settled by reconciliation (entry %" PRId64 ")",
				        tenants[t], q.ids[i], s.entry_id);
		}
	}
out:
	fd_arena_free(&arena);
}

/* ---- GetLine, ListLines ---- */

typedef struct read_q {
	fd_tctx_t *r;
	const char *params[12];
	int limit;
	Frontdesk__V1__Line **out;
	size_t n;
	/* GetLine: the line's status history */
	Frontdesk__V1__LineStatusChange **history;
	size_t n_history;
} read_q_t;

/* Newest first, at most 50 (GetLineResponse.status_history). */
static const fd_sql_t SQL_STATUS_HISTORY = {
	"linesd_status_history",
	"SELECT status, previous_status, reason, actor_account_id, actor, " EPOCH("changed_at")
	"  FROM frontdesk.line_status_history WHERE tenant_id = $1 AND line_id = $2 ORDER BY id DESC LIMIT 50",
	2,
};
enum { SH_STATUS, SH_PREVIOUS, SH_REASON, SH_ACTOR_ACCOUNT, SH_ACTOR, SH_AT };

static const fd_sql_t SQL_GET_LINE = {
	"linesd_get_line",
	"SELECT " LINE_COLUMNS " FROM frontdesk.lines l"
	" WHERE l.tenant_id = $1 AND (l.id = $2 OR ($2 = 0 AND l.username = $3)) AND l.state <> 'pending'"
	"   AND l.reseller_path LIKE $4::text || '%'",
	4,
};
/* Filters: NULL = any. $5 status ('active', 'expired', 'disabled', 'banned'),
 * $6 subtree prefix pattern, $7 direct owner, $8 username contains, $9/$10
 * expires_at range, $11 package, $12 trial only. */
static const fd_sql_t SQL_LIST_LINES = {
	"linesd_list_lines",
	"SELECT " LINE_COLUMNS " FROM frontdesk.lines l"
	" WHERE l.tenant_id = $1 AND l.id > $2 AND l.state <> 'pending' AND l.reseller_path LIKE $4::text || '%'"
	"   AND ($5::text IS NULL OR CASE WHEN l.state IN ('banned', 'disabled') THEN l.state"
	"        WHEN l.expires_at <= now() THEN 'expired' ELSE l.state END = $5)"
	"   AND ($6::text IS NULL OR l.reseller_path LIKE $6)"
	"   AND ($7::bigint IS NULL OR l.reseller_id = $7)"
	"   AND ($8::text IS NULL OR strpos(lower(l.username), lower($8)) > 0)"
	"   AND ($9::bigint IS NULL OR l.expires_at >= to_timestamp($9))"
	"   AND ($10::bigint IS NULL OR l.expires_at < to_timestamp($10))"
	"   AND ($11::bigint IS NULL OR l.package_id = $11)"
	"   AND (NOT $12::boolean OR l.trial)"
	" ORDER BY l.id LIMIT $3",
	12,
};

static int read_lines_tx(fd_tx_t *tx, void *arg, const fd_sql_t *sql)
{
	read_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, sql, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	q->n = (size_t)PQntuples(res);
	if (!(q->out = fd_arena_alloc(q->r->arena, (q->n + 1) * sizeof(*q->out))))
		return TX_OOM(tx);
	for (size_t i = 0; i < q->n; i++)
		if (!(q->out[i] = line_message(linesd_of(q->r->call), q->r->arena, q->r->tenant, res, (int)i, 0)))
			return TX_OOM(tx);
	return 0;
}

static int get_line_tx(fd_tx_t *tx, void *arg)
{
	read_q_t *q = arg;
	fd_arena_t *a = q->r->arena;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_GET_LINE, q->params, 0, &res);
	if (rc < 0)
		return rc;
	q->n = (size_t)PQntuples(res);
	if (q->n == 0)
		return 0;
	if (!(q->out = fd_arena_alloc(a, sizeof(*q->out))) ||
	    !(q->out[0] = line_message(linesd_of(q->r->call), a, q->r->tenant, res, 0, 0)))
		return TX_OOM(tx);
	const char *ph[] = { q->r->tenant_s, lines_i64(q->r, q->out[0]->id) };
	if (!ph[1])
		return TX_OOM(tx);
	if ((rc = fd_tx_exec(tx, &SQL_STATUS_HISTORY, ph, FD_TX_LAST, &res)) < 0)
		return rc;
	q->n_history = (size_t)PQntuples(res);
	if (!(q->history = fd_arena_alloc(a, (q->n_history + 1) * sizeof(*q->history))))
		return TX_OOM(tx);
	for (size_t i = 0; i < q->n_history; i++) {
		Frontdesk__V1__LineStatusChange *h = fd_arena_zalloc(a, sizeof(*h));
		if (!h)
			return TX_OOM(tx);
		frontdesk__v1__line_status_change__init(h);
		h->status = status_of(PQgetvalue(res, (int)i, SH_STATUS));
		h->previous_status = status_of(PQgetvalue(res, (int)i, SH_PREVIOUS));
		h->reason = fd_arena_strdup(a, PQgetvalue(res, (int)i, SH_REASON));
		h->actor_account_id = col_i64(res, (int)i, SH_ACTOR_ACCOUNT);
		h->actor = fd_arena_strdup(a, PQgetvalue(res, (int)i, SH_ACTOR));
		h->changed_at = col_i64(res, (int)i, SH_AT);
		if (!h->reason || !h->actor)
			return TX_OOM(tx);
		q->history[i] = h;
	}
	return 0;
}

static int list_lines_tx(fd_tx_t *tx, void *arg)
{
	return read_lines_tx(tx, arg, &SQL_LIST_LINES);
}

int linesd_get_line(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__GetLineRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_LINES_READ, req->tenant_id, "lines");
	if (rc < 0)
		return rc;
	if (req->line_id < 0 || (req->line_id == 0 && !req->username[0]))
		return fd_call_fail(call, FD_EINVAL, "line_id: required (or a username)");
	if (strlen(req->username) > 64)
		return fd_call_fail(call, FD_EINVAL, "username: at most 64 characters");
	read_q_t q = { .r = &r, .params = { r.tenant_s, lines_i64(&r, req->line_id), req->username, fd_subtree_prefix(&r.c) } };
	if (!q.params[1] || !q.params[3])
		return OOM(call);
	if ((rc = lines_run_ro(&r, get_line_tx, &q)) < 0)
		return rc;
	if (q.n == 0)
		return req->line_id ? fd_call_fail(call, FD_ENOTFOUND, "line %" PRId64 " not found", req->line_id)
		                    : fd_call_fail(call, FD_ENOTFOUND, "line %s not found", req->username);
	Frontdesk__V1__GetLineResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->line = q.out[0];
	m->status_history = q.history;
	m->n_status_history = q.n_history;
	return 0;
}

static int subtree_tx(fd_tx_t *tx, void *arg)
{
	read_q_t *q = arg;
	const char *path;
	int64_t id = strtoll(q->params[6] ? q->params[6] : q->params[5], NULL, 10);
	int rc = lines_reseller(tx, q->r, id, &path, NULL);
	if (rc < 0)
		return rc;
	if (!q->params[6] && !(q->params[5] = fd_arena_printf(q->r->arena, "%s%%", path)))
		return TX_OOM(tx);
	return list_lines_tx(tx, arg);
}

int linesd_list_lines(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListLinesRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_LINES_READ, req->tenant_id, "lines");
	if (rc < 0)
		return rc;
	int limit;
	int64_t after;
	if ((rc = fd_check_page(req->page_size, req->page_token, &limit, &after, fd_call_err(call))) < 0)
		return rc;
	const char *status = NULL;
	switch (req->status) {
	case ALL_STATUS(UNSPECIFIED): break;
	case ALL_STATUS(ACTIVE): status = "active"; break;
	case ALL_STATUS(DISABLED): status = "disabled"; break;
	case ALL_STATUS(BANNED): status = "banned"; break;
	case ALL_STATUS(EXPIRED): status = "expired"; break;
	default: return fd_call_fail(call, FD_EINVAL, "status: not a LineStatus");
	}
	if (req->reseller_id < 0 || req->package_id < 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id, package_id: must not be negative");
	if (req->direct_only && !req->reseller_id)
		return fd_call_fail(call, FD_EINVAL, "direct_only: needs reseller_id");
	if (strlen(req->username_query) > 64)
		return fd_call_fail(call, FD_EINVAL, "username_query: at most 64 characters");
	const Frontdesk__V1__TimeRange *tr = req->expires_within;
	if (tr && (tr->start_at < 0 || tr->end_at < 0 || (tr->end_at && tr->start_at > tr->end_at)))
		return fd_call_fail(call, FD_EINVAL, "expires_within: start_at <= end_at, both >= 0");
	read_q_t q = { .r = &r, .limit = limit,
		           .params = { r.tenant_s, lines_i64(&r, after), lines_i64(&r, limit + 1), fd_subtree_prefix(&r.c), status,
		                       NULL, NULL, req->username_query[0] ? req->username_query : NULL,
		                       tr && tr->start_at ? lines_i64(&r, tr->start_at) : NULL,
		                       tr && tr->end_at ? lines_i64(&r, tr->end_at) : NULL,
		                       req->package_id ? lines_i64(&r, req->package_id) : NULL,
		                       req->trial_only ? "true" : "false" } };
	if (req->reseller_id) {
		const char *id = lines_i64(&r, req->reseller_id);
		if (req->direct_only)
			q.params[6] = id;
		else
			q.params[5] = id;   /* replaced by its subtree pattern in subtree_tx */
	}
	if (!q.params[1] || !q.params[2] || !q.params[3])
		return OOM(call);
	if ((rc = lines_run_ro(&r, req->reseller_id ? subtree_tx : list_lines_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__ListLinesResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->lines = q.out;
	m->n_lines = q.n > (size_t)limit ? (size_t)limit : q.n;
	if (q.n > (size_t)limit && !(m->next_page_token = fd_page_token(r.arena, q.out[limit - 1]->id)))
		return OOM(call);
	return 0;
}

/* ---- UpdateLine, SetLineStatus, DeleteLine ---- */

typedef struct change_q {
	fd_tctx_t *r;
	int64_t line;
	const char *line_s;
	/* UpdateLine: NULL = unchanged */
	const char *max_conn, *ips, *uas, *bouquets, *notes, *cap, *pw_hash, *pw_box;
	int64_t *bouquet_v;
	size_t n_bouquets;
	/* SetLineStatus */
	const char *state, *reason;
	/* results */
	Frontdesk__V1__Line *out;
	int64_t refund_entry, refunded;
} change_q_t;

static const fd_sql_t SQL_LOCK_LINE = {
	"linesd_lock_line",
	"SELECT l.reseller_id, l.state, CASE WHEN l.state IN ('banned', 'disabled') THEN l.state"
	"       WHEN l.expires_at <= now() THEN 'expired' ELSE l.state END, p.max_connections, p.bouquet_ids"
	"  FROM frontdesk.lines l LEFT JOIN frontdesk.packages p ON p.tenant_id = l.tenant_id AND p.id = l.package_id"
	" WHERE l.tenant_id = $1 AND l.id = $2 AND l.state <> 'pending' AND l.reseller_path LIKE $3::text || '%'"
	"   FOR NO KEY UPDATE OF l",
	3,
};
static const fd_sql_t SQL_UPDATE_LINE = {
	"linesd_update_line",
	"UPDATE frontdesk.lines SET updated_at = now(),"
	"  max_connections = coalesce($3::integer, max_connections),"
	"  allowed_ips = coalesce($4::cidr[], allowed_ips),"
	"  allowed_user_agents = coalesce($5::text[], allowed_user_agents),"
	"  bouquet_ids = coalesce($6::bigint[], bouquet_ids),"
	"  notes = coalesce($7, notes),"
	"  bandwidth_cap_kbps = coalesce($8::bigint, bandwidth_cap_kbps),"
	"  password_hash = coalesce(decode($9, 'hex'), password_hash),"
	"  password_box = coalesce(decode($10, 'hex'), password_box)"
	" WHERE tenant_id = $1 AND id = $2",
	10,
};
static const fd_sql_t SQL_SET_STATE = {
	"linesd_set_state",
	"UPDATE frontdesk.lines SET state = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2",
	3,
};
/* Every SetLineStatus is kept with its reason (migrations/0008_lines.sql). */
static const fd_sql_t SQL_STATUS_HISTORY_ADD = {
	"linesd_status_history_add",
	"INSERT INTO frontdesk.line_status_history (tenant_id, line_id, status, previous_status, reason, actor,"
	"   actor_account_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
	7,
};
static const fd_sql_t SQL_STATUS_HISTORY_DROP = {
	"linesd_status_history_drop",
	"DELETE FROM frontdesk.line_status_history WHERE tenant_id = $1 AND line_id = $2",
	2,
};
/* Ends the line's live sessions (LINE_REVOKED = 6), announcing each. */
static const fd_sql_t SQL_END_LINE_SESSIONS = {
	"linesd_end_line_sessions",
	"WITH e AS (UPDATE frontdesk.sessions SET ended_at = now(), end_reason = 6"
	"            WHERE tenant_id = $1 AND line_id = $2 AND ended_at IS NULL RETURNING id)"
	" SELECT frontdesk.line_event($1, 6, $2, $3, e.id, 0) FROM e",
	3,
};
static const fd_sql_t SQL_DELETE_LINE = {
	"linesd_delete_line", "DELETE FROM frontdesk.lines WHERE tenant_id = $1 AND id = $2", 2,
};

static const char *status_name(Frontdesk__V1__LineStatus s)
{
	return s == ALL_STATUS(ACTIVE) ? "active" : s == ALL_STATUS(DISABLED) ? "disabled"
	       : s == ALL_STATUS(BANNED) ? "banned" : "expired";
}

/* The audit row of an action on line line_s (fd_tctx_audit), not the
 * transaction's last statement. */
static int audit_line(fd_tx_t *tx, const fd_tctx_t *r, const char *action, const char *line_s,
                      const char *const *detail)
{
	const char *target = fd_arena_printf(r->arena, "line:%s", line_s);
	if (!target)
		return TX_OOM(tx);
	return fd_tctx_audit(tx, r, action, target, detail, 0);
}

/* Locks the line (visible to the caller) and returns its lock row in *res. */
static int lock_line(fd_tx_t *tx, change_q_t *q, PGresult **res)
{
	const char *p[] = { q->r->tenant_s, q->line_s, fd_subtree_prefix(&q->r->c) };
	if (!p[2])
		return TX_OOM(tx);
	int rc = fd_tx_exec(tx, &SQL_LOCK_LINE, p, 0, res);
	if (rc < 0)
		return rc;
	if (PQntuples(*res) == 0)
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "line %" PRId64 " not found", q->line);
	return 0;
}

static int event(fd_tx_t *tx, change_q_t *q, int type, const char *reseller, int previous)
{
	const char *p[] = { q->r->tenant_s, lines_i64(q->r, type), q->line_s, reseller, "0", lines_i64(q->r, previous) };
	if (!p[1] || !p[5])
		return TX_OOM(tx);
	return fd_tx_exec(tx, &SQL_EVENT, p, 0, NULL);
}

static int end_sessions(fd_tx_t *tx, change_q_t *q, const char *reseller)
{
	const char *p[] = { q->r->tenant_s, q->line_s, reseller };
	return fd_tx_exec(tx, &SQL_END_LINE_SESSIONS, p, 0, NULL);
}

static int read_back(fd_tx_t *tx, change_q_t *q)
{
	const char *p[] = { q->r->tenant_s, q->line_s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_LINE_BY_ID, p, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) != 1 || !(q->out = line_message(linesd_of(q->r->call), q->r->arena, q->r->tenant, res, 0, 0)))
		return TX_OOM(tx);
	return 0;
}

static int update_line_tx(fd_tx_t *tx, void *arg)
{
	change_q_t *q = arg;
	fd_tctx_t *r = q->r;
	PGresult *res;
	int rc = lock_line(tx, q, &res);
	if (rc < 0)
		return rc;
	const char *reseller = fd_arena_strdup(r->arena, PQgetvalue(res, 0, 0));
	if (!reseller)
		return TX_OOM(tx);
	if (q->max_conn && !fd_tctx_admin(r) && !PQgetisnull(res, 0, 3) &&
	    strtoll(q->max_conn, NULL, 10) > col_i64(res, 0, 3))
		return fd_err_set(fd_tx_err(tx), FD_EINVAL, "max_connections: at most the package's %s",
		                  PQgetvalue(res, 0, 3));
	if (q->bouquets) {
		int64_t *allowed;
		size_t na;
		if (pg_parse_ints(r->arena, PQgetisnull(res, 0, 4) ? "{}" : PQgetvalue(res, 0, 4), &allowed, &na) < 0)
			return TX_OOM(tx);
		for (size_t i = 0; i < q->n_bouquets && !fd_tctx_admin(r); i++) {
			bool in = false;
			for (size_t j = 0; j < na && !in; j++)
				in = allowed[j] == q->bouquet_v[i];
			if (!in)
				return fd_err_set(fd_tx_err(tx), FD_EINVAL, "bouquet_ids: %" PRId64 " is not in the line's package",
				                  q->bouquet_v[i]);
		}
		const char *pb[] = { r->tenant_s, q->bouquets };
		if ((rc = fd_tx_exec(tx, &SQL_BOUQUETS_EXIST, pb, 0, &res)) < 0)
			return rc;
		if ((size_t)col_i64(res, 0, 0) != q->n_bouquets)
			return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "bouquet_ids: a bouquet was not found");
	}
	const char *p[] = { r->tenant_s, q->line_s, q->max_conn, q->ips, q->uas, q->bouquets, q->notes, q->cap,
		                q->pw_hash, q->pw_box };
	/* What changed, by name only (never the password itself). */
	const char *fields = fd_arena_printf(r->arena, "%s%s%s%s%s%s%s", q->max_conn ? ",max_connections" : "",
	                                     q->ips ? ",allowed_ips" : "", q->uas ? ",allowed_user_agents" : "",
	                                     q->bouquets ? ",bouquet_ids" : "", q->notes ? ",notes" : "",
	                                     q->cap ? ",bandwidth_cap_kbps" : "", q->pw_hash ? ",password" : "");
	if (!fields)
		return TX_OOM(tx);
	const char *detail[] = { "fields", fields[0] ? fields + 1 : "", NULL };
	if ((rc = fd_tx_exec(tx, &SQL_UPDATE_LINE, p, 0, NULL)) < 0 ||
	    (rc = audit_line(tx, r, "line.update", q->line_s, detail)) < 0 ||
	    (rc = event(tx, q, FRONTDESK__V1__LINE_EVENT_TYPE__LINE_EVENT_TYPE_LINE_UPDATED, reseller, 0)) < 0)
		return rc;
	return read_back(tx, q);
}

int linesd_update_line(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__UpdateLineRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_LINES_WRITE, req->tenant_id, "lines");
	if (rc < 0)
		return rc;
	if (req->line_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "line_id: required");
	change_q_t q = { .r = &r, .line = req->line_id, .line_s = lines_i64(&r, req->line_id) };
	if (req->max_connections) {
		if (req->max_connections->value < 1 || req->max_connections->value > 1000)
			return fd_call_fail(call, FD_EINVAL, "max_connections: 1 to 1000");
		q.max_conn = lines_i64(&r, req->max_connections->value);
	}
	const Frontdesk__V1__StringList *ips = req->allowed_ips, *uas = req->allowed_user_agents;
	if ((rc = check_locks(call, ips ? ips->values : NULL, ips ? ips->n_values : 0, uas ? uas->values : NULL,
	                      uas ? uas->n_values : 0)) < 0)
		return rc;
	if (ips && !(q.ips = pg_text_array(r.arena, ips->values, ips->n_values)))
		return OOM(call);
	if (uas && !(q.uas = pg_text_array(r.arena, uas->values, uas->n_values)))
		return OOM(call);
	if (req->bouquet_ids) {
		if ((rc = check_ids(call, "bouquet_ids", req->bouquet_ids->values, req->bouquet_ids->n_values, 1000)) < 0)
			return rc;
		q.bouquet_v = req->bouquet_ids->values;
		q.n_bouquets = req->bouquet_ids->n_values;
		if (!(q.bouquets = pg_int_array(r.arena, q.bouquet_v, q.n_bouquets)))
			return OOM(call);
	}
	if (req->notes) {
		if ((rc = fd_check_text("notes", req->notes->value, 0, 2000, fd_call_err(call))) < 0)
			return rc;
		q.notes = req->notes->value;
	}
	if (req->bandwidth_cap_kbps) {
		if (req->bandwidth_cap_kbps->value < 0)
			return fd_call_fail(call, FD_EINVAL, "bandwidth_cap_kbps: must not be negative");
		q.cap = lines_i64(&r, req->bandwidth_cap_kbps->value);
	}
	if (req->new_password[0] && req->generate_password)
		return fd_call_fail(call, FD_EINVAL, "new_password: not with generate_password");
	if (req->new_password[0] || req->generate_password) {
		char gen[13], hash[65];
		const char *pw = req->new_password;
		if (pw[0] && (rc = check_line_password(call, "new_password", pw)) < 0)
			return rc;
		if (!pw[0]) {
			random_text(gen, 12);
			pw = gen;
		}
		line_password_hash(linesd_of(r.call), r.tenant, pw, hash);
		q.pw_hash = fd_arena_strdup(r.arena, hash);
		q.pw_box = line_password_seal(&r, pw);
		if (!q.pw_hash || !q.pw_box)
			return OOM(call);
	}
	if (!q.line_s || (req->max_connections && !q.max_conn) || (req->bandwidth_cap_kbps && !q.cap))
		return OOM(call);
	if ((rc = lines_run(&r, update_line_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__UpdateLineResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->line = q.out;
	return 0;
}

static int set_status_tx(fd_tx_t *tx, void *arg)
{
	change_q_t *q = arg;
	fd_tctx_t *r = q->r;
	PGresult *res;
	int rc = lock_line(tx, q, &res);
	if (rc < 0)
		return rc;
	const char *reseller = fd_arena_strdup(r->arena, PQgetvalue(res, 0, 0));
	const char *before = fd_arena_strdup(r->arena, PQgetvalue(res, 0, 1));
	Frontdesk__V1__LineStatus previous = status_of(PQgetvalue(res, 0, 2));
	if (!reseller || !before)
		return TX_OOM(tx);
	if (strcmp(before, "banned") == 0 && strcmp(q->state, "banned") != 0 && !fd_tctx_admin(r))
		return fd_err_set(fd_tx_err(tx), FD_EPERM, "only the tenant's admins lift a ban");
	const char *previous_s = PQgetvalue(res, 0, 2);
	const char *p[] = { r->tenant_s, q->line_s, q->state };
	const char *ph[] = { r->tenant_s, q->line_s, q->state, previous_s, q->reason,
		                 fd_audit_actor_label(r->arena, &r->c),
		                 lines_i64(r, r->c.kind == FD_CRED_SERVICE_TOKEN ? 0 : r->c.account_id) };
	const char *detail[] = { "status", q->state, "previous_status", previous_s, "reason", q->reason, NULL };
	if (!ph[5] || !ph[6])
		return TX_OOM(tx);
	if ((rc = fd_tx_exec(tx, &SQL_SET_STATE, p, 0, NULL)) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_STATUS_HISTORY_ADD, ph, 0, NULL)) < 0 ||
	    (rc = audit_line(tx, r, "line.set_status", q->line_s, detail)) < 0)
		return rc;
	if (strcmp(q->state, "active") != 0 && (rc = end_sessions(tx, q, reseller)) < 0)
		return rc;
	if (strcmp(before, q->state) != 0 &&
	    (rc = event(tx, q, FRONTDESK__V1__LINE_EVENT_TYPE__LINE_EVENT_TYPE_LINE_STATUS_CHANGED, reseller,
	                (int)previous)) < 0)
		return rc;
	return read_back(tx, q);
}

int linesd_set_line_status(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__SetLineStatusRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_LINES_WRITE, req->tenant_id, "lines");
	if (rc < 0)
		return rc;
	if (req->line_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "line_id: required");
	if (req->status != ALL_STATUS(ACTIVE) && req->status != ALL_STATUS(DISABLED) && req->status != ALL_STATUS(BANNED))
		return fd_call_fail(call, FD_EINVAL, "status: ACTIVE, DISABLED or BANNED (EXPIRED follows from expires_at)");
	if ((rc = fd_check_text("reason", req->reason, 0, 500, fd_call_err(call))) < 0)
		return rc;
	change_q_t q = { .r = &r, .line = req->line_id, .line_s = lines_i64(&r, req->line_id),
		             .state = status_name(req->status), .reason = req->reason };
	if (!q.line_s)
		return OOM(call);
	if ((rc = lines_run(&r, set_status_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__SetLineStatusResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->line = q.out;
	return 0;
}

/* DeleteLine with a refund, in steps, with no transaction open while
 * billingd is asked:
 *   1. plan (delete_plan_tx): the line's applied charges, newest first, and
 *      what to refund of each; nothing is written;
 *   2. Refund each under the key "lr-<charge id>" (a charge is refunded at
 *      most once, billingd's rule), no transaction open;
 *   3. delete (delete_line_tx): under the line's lock, if the line is still
 *      there and no charge of the plan was refunded meanwhile, record the
 *      refunds, end the sessions and delete the line.
 * Killed after a refund, the line stays: the same request again makes the
 * same plan and asks for the same refunds, which billingd answers from its
 * records. Two refunding deletes at once ask for the same refunds (one is
 * made) and one of them deletes; the other finds the line gone (NOT_FOUND),
 * or, a duplicate under the same key, answers what the first did. */
static const fd_sql_t SQL_LINE_CHARGES = {
	"linesd_line_charges",
	"SELECT id, charge_entry_id, amount - refunded, refunded FROM frontdesk.line_charges"
	" WHERE tenant_id = $1 AND line_id = $2 AND state = 'applied' AND charge_entry_id IS NOT NULL"
	"   AND amount > refunded ORDER BY id DESC",
	2,
};
/* Only when nothing was refunded of it since the plan ($4: what was then). */
static const fd_sql_t SQL_CHARGE_REFUNDED = {
	"linesd_charge_refunded",
	"UPDATE frontdesk.line_charges SET refunded = refunded + $3, updated_at = now()"
	" WHERE tenant_id = $1 AND id = $2 AND refunded = $4",
	4,
};

typedef struct refund_step {
	int64_t charge, entry, amount, before;   /* before: refunded at the plan */
	int64_t refund_entry;
} refund_step_t;

typedef struct delete_q {
	change_q_t c;
	int64_t refund;
	const char *idem, *hash;     /* NULL: no idempotency key */
	refund_step_t *plan;
	int nplan;
	bool replay;
} delete_q_t;

/* A replay of the key: the first answer. 1 found, 0 none, -code. */
static int delete_replay(fd_tx_t *tx, delete_q_t *d)
{
	int64_t first;
	int rc = d->idem ? lidem_find(tx, d->c.r, d->idem, d->hash, &first) : 0;
	if (rc == 1) {
		d->replay = true;
		d->c.refund_entry = first;
		d->c.refunded = d->refund;
	}
	return rc;
}

static int delete_plan_tx(fd_tx_t *tx, void *arg)
{
	delete_q_t *d = arg;
	change_q_t *q = &d->c;
	fd_tctx_t *r = q->r;
	d->replay = false;
	d->nplan = 0;
	int rc = delete_replay(tx, d);
	if (rc != 0)
		return rc < 0 ? rc : 0;
	const char *pv[] = { r->tenant_s, q->line_s, fd_subtree_prefix(&r->c) };
	PGresult *res;
	if (!pv[2])
		return TX_OOM(tx);
	if ((rc = fd_tx_exec(tx, &SQL_LINE_VISIBLE, pv, 0, &res)) < 0)
		return rc;
	/* A refusal may come from a concurrent duplicate that has just
	 * deleted the line (each statement sees what was committed before it):
	 * its record is then visible, and answers. */
	if (PQntuples(res) == 0)
		return delete_replay(tx, d) == 1 ? 0
		       : fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "line %" PRId64 " not found", q->line);
	const char *p[] = { r->tenant_s, q->line_s };
	if ((rc = fd_tx_exec(tx, &SQL_LINE_CHARGES, p, 0, &res)) < 0)
		return rc;
	int n = PQntuples(res);
	int64_t refundable = 0;
	for (int i = 0; i < n; i++)
		refundable += col_i64(res, i, 2);
	if (d->refund > refundable)
		return delete_replay(tx, d) == 1 ? 0
		       : fd_err_set(fd_tx_err(tx), FD_EPRECOND, "refund_credits: %" PRId64 " is more than the %" PRId64
		                    " charged for the line and not yet refunded", d->refund, refundable);
	if (!(d->plan = fd_arena_zalloc(r->arena, (size_t)(n + 1) * sizeof(*d->plan))))
		return TX_OOM(tx);
	int64_t left = d->refund;
	for (int i = 0; i < n && left > 0; i++) {
		refund_step_t *st = &d->plan[d->nplan++];
		st->charge = col_i64(res, i, 0);
		st->entry = col_i64(res, i, 1);
		st->amount = col_i64(res, i, 2) < left ? col_i64(res, i, 2) : left;
		st->before = col_i64(res, i, 3);
		left -= st->amount;
	}
	return 0;
}

static int delete_line_tx(fd_tx_t *tx, void *arg)
{
	delete_q_t *d = arg;
	change_q_t *q = &d->c;
	fd_tctx_t *r = q->r;
	PGresult *res;
	q->refund_entry = q->refunded = 0;
	d->replay = false;
	int rc = delete_replay(tx, d);
	if (rc != 0)
		return rc < 0 ? rc : 0;
	if ((rc = lock_line(tx, q, &res)) < 0) {
		/* A concurrent duplicate deleted it while we waited for its lock:
		 * its record is visible to this new statement. */
		if (rc == -FD_ENOTFOUND && delete_replay(tx, d) == 1)
			return 0;
		return rc;
	}
	const char *reseller = fd_arena_strdup(r->arena, PQgetvalue(res, 0, 0));
	if (!reseller)
		return TX_OOM(tx);
	for (int i = 0; i < d->nplan; i++) {
		refund_step_t *st = &d->plan[i];
		const char *pr[] = { r->tenant_s, lines_i64(r, st->charge), lines_i64(r, st->amount), lines_i64(r, st->before) };
		if (!pr[1] || !pr[2] || !pr[3])
			return TX_OOM(tx);
		if ((rc = fd_tx_exec(tx, &SQL_CHARGE_REFUNDED, pr, 0, &res)) < 0)
			return rc;
		if (strcmp(PQcmdTuples(res), "1") != 0)
			return fd_err_set(fd_tx_err(tx), FD_EABORTED, "line %" PRId64 ": its charges changed while being "
			                  "refunded; the line was not deleted: retry", q->line);
		q->refund_entry = st->refund_entry;
		q->refunded += st->amount;
	}
	const char *p[] = { r->tenant_s, q->line_s };
	const char *detail[] = { "reseller_id", reseller, "credits_refunded", lines_i64(r, q->refunded),
		                     "refund_entry_id", lines_i64(r, q->refund_entry), NULL };
	if (!detail[3] || !detail[5])
		return TX_OOM(tx);
	if ((rc = end_sessions(tx, q, reseller)) < 0 || (rc = fd_tx_exec(tx, &SQL_DELETE_LINE, p, 0, NULL)) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_STATUS_HISTORY_DROP, p, 0, NULL)) < 0 ||
	    (d->idem && (rc = lidem_store(tx, r, d->idem, d->hash, q->refund_entry)) < 0) ||
	    (rc = audit_line(tx, r, "line.delete", q->line_s, detail)) < 0)
		return rc;
	const char *pe[] = { r->tenant_s, "8", q->line_s, reseller, "0", "0" };
	return fd_tx_exec(tx, &SQL_EVENT, pe, FD_TX_LAST, NULL);
}

int linesd_delete_line(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__DeleteLineRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_LINES_WRITE, req->tenant_id, "lines");
	if (rc < 0)
		return rc;
	if (req->line_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "line_id: required");
	if (req->refund_credits < 0)
		return fd_call_fail(call, FD_EINVAL, "refund_credits: must not be negative");
	if (req->refund_credits > 0 && !fd_tctx_admin(&r))
		return fd_call_fail(call, FD_EPERM, "refund_credits: only the tenant's admins refund");
	const char *idem;
	if ((rc = lines_idem(&r, "DeleteLine", req->idempotency_key, req->refund_credits > 0, &idem)) < 0)
		return rc;
	delete_q_t d = { .c = { .r = &r, .line = req->line_id, .line_s = lines_i64(&r, req->line_id) },
		             .refund = req->refund_credits, .idem = idem, .hash = idem ? fd_request_hash(r.arena, msg) : NULL };
	if (!d.c.line_s || (idem && !d.hash))
		return OOM(call);
	if (d.refund > 0) {
		if ((rc = lines_run_ro(&r, delete_plan_tx, &d)) < 0)
			return rc;
		for (int i = 0; i < d.nplan && !d.replay; i++) {
			refund_step_t *st = &d.plan[i];
			fd_err_t e = { 0 };
			if ((rc = call_refund(linesd_of(r.call), r.arena, r.tenant, st->charge, st->entry, st->amount, "DeleteLine",
			                      &st->refund_entry, &e)) < 0)
				return fd_call_fail(call, rc == -FD_EPRECOND ? FD_EPRECOND : FD_EUNAVAIL,
				                    "refund of charge entry %" PRId64 ": %s; the line was not deleted", st->entry,
				                    e.msg);
		}
	}
	if (!d.replay && (rc = lines_run(&r, delete_line_tx, &d)) < 0)
		return rc;
	Frontdesk__V1__DeleteLineResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->refund_entry_id = d.c.refund_entry;
	m->credits_refunded = d.c.refunded;
	return 0;
}
