/* lines.c - lines: create (and trial), read, list, update, extend, set their
 * status, delete. Their charges are charges.c's (the outbox). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "charges.h"
#include "check.h"
#include "enums.h"
#include "linesd.h"
#include "store.h"
#include "fd/audit.h"
#include "fd/idem.h"
#include "fd/jobs.h"
#include "fd/log.h"
#include "fd/text.h"

/* ---- CreateLine, CreateTrialLine ---- */

typedef struct create_q {
	fd_tctx_t *r;
	bool trial;
	int64_t reseller, package;
	fd_idem_t idem;              /* the request's key (fd/idem.h); the charge row keeps it too */
	const char *username, *password, *pw_hash, *pw_box;
	int32_t max_connections;
	const char *bouquets;        /* NULL: the package's */
	const char *ips, *uas, *notes;
	/* results */
	int64_t charge_id, line_id, cost;
	bool replay;
	int32_t trials_left;
} create_q_t;

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

/* The end of a prepare: the key records its charge, and the
 * reconciliation job is due for the charge in case this call does not
 * settle it (janitor.c): when the call's claim lapses, the first moment any
 * replica may take it (whatever its reconcile_after: the job then says when
 * the charge is old enough for it). */
static int settle_later(fd_tx_t *tx, const fd_idem_t *k, int64_t charge_id)
{
	int rc = fd_idem_done(tx, k, charge_id, NULL, 0);
	return rc < 0 ? rc : fd_job_due(tx, JOB_RECONCILE, fd_now_s() + CHARGE_CLAIM_S, FD_TX_LAST);
}

static int create_prepare_tx(fd_tx_t *tx, void *arg)
{
	create_q_t *q = arg;
	fd_tctx_t *r = q->r;
	fd_err_t *err = fd_tx_err(tx);
	q->replay = false;
	PGresult *res;
	/* The key first: a concurrent duplicate waits here for the first to
	 * commit, then answers its charge: it must not run the checks again
	 * (the username is taken by then, the trial limit or the credits used
	 * up). */
	fd_idem_replay_t first;
	int rc = fd_idem_claim(tx, &q->idem, &first);
	if (rc != 0) {
		q->charge_id = first.result_id;
		q->replay = rc == 1;
		return rc < 0 ? rc : 0;
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
	int64_t cost = col_i64(res, 0, PACKAGE_COL_COST), pkg_max = col_i64(res, 0, PACKAGE_COL_MAX_CONNECTIONS);
	bool trial = col_bool(res, 0, PACKAGE_COL_TRIAL);
	if (col_bool(res, 0, PACKAGE_COL_DISABLED))
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
		    pg_parse_ints(r->arena, PQgetvalue(res, 0, PACKAGE_COL_BOUQUETS), &allowed, &na) < 0)
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
		int64_t limit = col_i64(res, 0, TRIAL_COL_LIMIT), used = col_i64(res, 0, TRIAL_COL_USED),
	        next = col_i64(res, 0, TRIAL_COL_NEXT_IN);
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
		                   lines_i64(r, cost), q->idem.key, q->idem.hash, lines_i64(r, q->trials_left) };
	if (!line_s || !pc[7] || !pc[10] || actor_params(r, pc + 11) < 0)
		return TX_OOM(tx);
	if ((rc = fd_tx_exec(tx, &SQL_INSERT_CHARGE, pc, 0, &res)) < 0)
		return rc;
	q->charge_id = col_i64(res, 0, 0);
	return settle_later(tx, &q->idem, q->charge_id);
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
	/* The fingerprint is of the request as sent: a generated username or
	 * password does not make a replay look like another request. */
	if ((rc = fd_idem_make(r, "linesd", trial ? "CreateTrialLine" : "CreateLine", key, true, msg, &q->idem)) < 0)
		return rc;
	if (reseller_id < 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: must not be negative");
	q->reseller = reseller_id ? reseller_id : r->c.reseller_id;
	if (q->reseller <= 0 || (r->c.role == FD_ROLE_PLATFORM_ADMIN && !reseller_id))
		return fd_call_fail(call, FD_EINVAL, "reseller_id: name the reseller that owns the line");
	if (package_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "package_id: required");
	q->package = package_id;
	if (username[0] && (rc = check_line_username(fd_call_err(call), "username", username)) < 0)
		return rc;
	if (password[0] && (rc = check_line_password(fd_call_err(call), "password", password)) < 0)
		return rc;
	if ((rc = check_line_connections(fd_call_err(call), max_connections, true)) < 0)
		return rc;
	q->max_connections = max_connections;
	if ((rc = check_ids(fd_call_err(call), "bouquet_ids", bouquets, nbouquets, 1000)) < 0 ||
	    (rc = check_locks(fd_call_err(call), ips, nips, uas, nuas)) < 0 ||
	    (rc = fd_check_text("notes", notes, 0, 2000, fd_call_err(call))) < 0)
		return rc;
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
	return charges_settle_for_call(r, s);
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
	fd_idem_t idem;
	/* results */
	int64_t charge_id, reseller, amount;
	bool replay;
} extend_q_t;

static int extend_prepare_tx(fd_tx_t *tx, void *arg)
{
	extend_q_t *q = arg;
	fd_tctx_t *r = q->r;
	fd_err_t *err = fd_tx_err(tx);
	PGresult *res;
	q->replay = false;
	fd_idem_replay_t first;
	int rc = fd_idem_claim(tx, &q->idem, &first);     /* first: see create_prepare_tx */
	if (rc != 0) {
		q->charge_id = first.result_id;
		q->replay = rc == 1;
		return rc < 0 ? rc : 0;
	}
	const char *pv[] = { r->tenant_s, lines_i64(r, q->line), fd_subtree_prefix(&r->c) };
	if (!pv[1] || !pv[2])
		return TX_OOM(tx);
	if ((rc = fd_tx_exec(tx, &SQL_LINE_VISIBLE, pv, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) == 0)
		return fd_err_set(err, FD_ENOTFOUND, "line %" PRId64 " not found", q->line);
	int64_t reseller = col_i64(res, 0, VISIBLE_COL_RESELLER);
	if (!q->package)
		q->package = col_i64(res, 0, VISIBLE_COL_PACKAGE);
	const char *pp[] = { r->tenant_s, lines_i64(r, q->package) };
	if (!pp[1])
		return TX_OOM(tx);
	if ((rc = fd_tx_exec(tx, &SQL_PACKAGE, pp, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) == 0)
		return fd_err_set(err, FD_ENOTFOUND, "package %" PRId64 " not found", q->package);
	if (col_bool(res, 0, PACKAGE_COL_DISABLED))
		return fd_err_set(err, FD_EPRECOND, "package %" PRId64 " is disabled", q->package);
	if (col_bool(res, 0, PACKAGE_COL_TRIAL))
		return fd_err_set(err, FD_EINVAL, "package_id: %" PRId64 " is a trial package; extend with a paid one",
		                  q->package);
	int64_t cost = col_i64(res, 0, PACKAGE_COL_COST);
	if (cost > INT64_MAX / q->periods)
		return fd_err_set(err, FD_EINVAL, "periods: the price overflows");
	q->reseller = reseller;
	q->amount = cost * q->periods;
	const char *pc[19] = { r->tenant_s, pv[1], lines_i64(r, reseller), "extend", "false", pp[1],
		                   lines_i64(r, q->periods), lines_i64(r, q->amount), q->idem.key, q->idem.hash, "0" };
	if (!pc[2] || !pc[6] || !pc[7] || actor_params(r, pc + 11) < 0)
		return TX_OOM(tx);
	if ((rc = fd_tx_exec(tx, &SQL_INSERT_CHARGE, pc, 0, &res)) < 0)
		return rc;
	q->charge_id = col_i64(res, 0, 0);
	return settle_later(tx, &q->idem, q->charge_id);
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
	if ((rc = check_periods(fd_call_err(call), req->periods)) < 0)
		return rc;
	if ((rc = fd_idem_make(&r, "linesd", "ExtendLine", req->idempotency_key, true, msg, &q.idem)) < 0)
		return rc;
	if ((rc = lines_run(&r, extend_prepare_tx, &q)) < 0)
		return rc;
	settle_t s = { .charge_id = q.charge_id };
	if (!q.replay)
		s = (settle_t){ .charge_id = q.charge_id, .claimed = true, .line_id = q.line, .reseller = q.reseller,
			            .package = q.package, .amount = q.amount, .periods = q.periods, .extend = true };
	if ((rc = charges_settle_for_call(&r, &s)) < 0)
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
		h->status = (Frontdesk__V1__LineStatus)enum_value(&LINE_STATUS, PQgetvalue(res, (int)i, SH_STATUS));
		h->previous_status = (Frontdesk__V1__LineStatus)enum_value(&LINE_STATUS, PQgetvalue(res, (int)i, SH_PREVIOUS));
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
	if (req->status && !(status = enum_name(&LINE_STATUS, req->status)))
		return fd_call_fail(call, FD_EINVAL, "status: not a LineStatus");
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
	const char *reseller = fd_arena_strdup(r->arena, PQgetvalue(res, 0, LOCK_COL_RESELLER));
	int status = enum_value(&LINE_STATUS, PQgetvalue(res, 0, LOCK_COL_STATUS));
	if (!reseller)
		return TX_OOM(tx);
	if (q->max_conn && !fd_tctx_admin(r) && !PQgetisnull(res, 0, LOCK_COL_PKG_MAX_CONNECTIONS) &&
	    strtoll(q->max_conn, NULL, 10) > col_i64(res, 0, LOCK_COL_PKG_MAX_CONNECTIONS))
		return fd_err_set(fd_tx_err(tx), FD_EINVAL, "max_connections: at most the package's %s",
		                  PQgetvalue(res, 0, LOCK_COL_PKG_MAX_CONNECTIONS));
	if (q->bouquets) {
		int64_t *allowed;
		size_t na;
		if (pg_parse_ints(r->arena, PQgetisnull(res, 0, LOCK_COL_PKG_BOUQUETS) ? "{}" : PQgetvalue(res, 0, LOCK_COL_PKG_BOUQUETS), &allowed, &na) < 0)
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
	/* A new password voids what the old one authorized: the line's live
	 * sessions end (LINE_REVOKED), and the event says so (the edge's
	 * LINE_REVOKED; NOTIFY_UPDATED_PASSWORD). */
	int changed = q->pw_hash ? NOTIFY_UPDATED_PASSWORD : 0;
	if ((rc = fd_tx_exec(tx, &SQL_UPDATE_LINE, p, 0, NULL)) < 0 ||
	    (rc = audit_line(tx, r, "line.update", q->line_s, detail)) < 0 ||
	    (q->pw_hash && (rc = end_sessions(tx, q, reseller)) < 0) ||
	    (rc = event(tx, q, FRONTDESK__V1__LINE_EVENT_TYPE__LINE_EVENT_TYPE_LINE_UPDATED, reseller,
	                status << NOTIFY_STATUS_SHIFT | changed)) < 0)
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
		if ((rc = check_line_connections(fd_call_err(call), req->max_connections->value, false)) < 0)
			return rc;
		q.max_conn = lines_i64(&r, req->max_connections->value);
	}
	const Frontdesk__V1__StringList *ips = req->allowed_ips, *uas = req->allowed_user_agents;
	if ((rc = check_locks(fd_call_err(call), ips ? ips->values : NULL, ips ? ips->n_values : 0, uas ? uas->values : NULL,
	                      uas ? uas->n_values : 0)) < 0)
		return rc;
	if (ips && !(q.ips = pg_text_array(r.arena, ips->values, ips->n_values)))
		return OOM(call);
	if (uas && !(q.uas = pg_text_array(r.arena, uas->values, uas->n_values)))
		return OOM(call);
	if (req->bouquet_ids) {
		if ((rc = check_ids(fd_call_err(call), "bouquet_ids", req->bouquet_ids->values, req->bouquet_ids->n_values, 1000)) < 0)
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
		if (pw[0] && (rc = check_line_password(fd_call_err(call), "new_password", pw)) < 0)
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
	/* Its sessions ended with the old password: this replica's cache lets
	 * them go at once (the others hear the announced ends). */
	if (q.pw_hash)
		cache_drop_line(linesd_of(call)->cache, req->line_id);
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
	const char *reseller = fd_arena_strdup(r->arena, PQgetvalue(res, 0, LOCK_COL_RESELLER));
	const char *before = fd_arena_strdup(r->arena, PQgetvalue(res, 0, LOCK_COL_STATE));
	Frontdesk__V1__LineStatus previous = (Frontdesk__V1__LineStatus)enum_value(&LINE_STATUS, PQgetvalue(res, 0, LOCK_COL_STATUS));
	if (!reseller || !before)
		return TX_OOM(tx);
	if (strcmp(before, "banned") == 0 && strcmp(q->state, "banned") != 0 && !fd_tctx_admin(r))
		return fd_err_set(fd_tx_err(tx), FD_EPERM, "only the tenant's admins lift a ban");
	const char *previous_s = PQgetvalue(res, 0, LOCK_COL_STATUS);
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
	/* The event says the new status too (NOTIFY_STATUS_SHIFT): the edge
	 * hears of a revocation without reading the line. */
	int now = enum_value(&LINE_STATUS, q->state);
	if (strcmp(before, q->state) != 0 &&
	    (rc = event(tx, q, FRONTDESK__V1__LINE_EVENT_TYPE__LINE_EVENT_TYPE_LINE_STATUS_CHANGED, reseller,
	                now << NOTIFY_STATUS_SHIFT | (int)previous)) < 0)
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
	if (req->status != FRONTDESK__V1__LINE_STATUS__LINE_STATUS_ACTIVE &&
	    req->status != FRONTDESK__V1__LINE_STATUS__LINE_STATUS_DISABLED &&
	    req->status != FRONTDESK__V1__LINE_STATUS__LINE_STATUS_BANNED)
		return fd_call_fail(call, FD_EINVAL, "status: ACTIVE, DISABLED or BANNED (EXPIRED follows from expires_at)");
	if ((rc = fd_check_text("reason", req->reason, 0, 500, fd_call_err(call))) < 0)
		return rc;
	change_q_t q = { .r = &r, .line = req->line_id, .line_s = lines_i64(&r, req->line_id),
		             .state = enum_name(&LINE_STATUS, req->status), .reason = req->reason };
	if (!q.line_s)
		return OOM(call);
	if ((rc = lines_run(&r, set_status_tx, &q)) < 0)
		return rc;
	if (req->status != FRONTDESK__V1__LINE_STATUS__LINE_STATUS_ACTIVE)
		cache_drop_line(linesd_of(call)->cache, req->line_id);   /* its sessions ended */
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
 *   3. delete (delete_line_tx): the key claimed first (a duplicate waits
 *      for the first and answers it), then under the line's lock, if the
 *      line is still there and no charge of the plan was refunded
 *      meanwhile, record the refunds, end the sessions and delete the line.
 * Killed after a refund, the line stays: the same request again makes the
 * same plan and asks for the same refunds, which billingd answers from its
 * records. Two refunding deletes at once ask for the same refunds (one is
 * made) and one of them deletes; the other finds the line gone (NOT_FOUND),
 * or, a duplicate under the same key, answers what the first did. */
typedef struct refund_step {
	int64_t charge, entry, amount, before;   /* before: refunded at the plan */
	int64_t refund_entry;
} refund_step_t;

typedef struct delete_q {
	change_q_t c;
	int64_t refund;
	fd_idem_t idem;              /* the request's key (.key NULL: none) */
	refund_step_t *plan;
	int nplan;
	bool replay;
	/* The plan's refusal, when a key may yet make the call a replay (the
	 * line of a delete that ran is gone): answered unless the key replays. */
	int plan_rc;
	fd_err_t plan_err;
} delete_q_t;

static int delete_plan_tx(fd_tx_t *tx, void *arg)
{
	delete_q_t *d = arg;
	change_q_t *q = &d->c;
	fd_tctx_t *r = q->r;
	d->nplan = 0;
	const char *pv[] = { r->tenant_s, q->line_s, fd_subtree_prefix(&r->c) };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_LINE_VISIBLE, pv, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 0)
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "line %" PRId64 " not found", q->line);
	const char *p[] = { r->tenant_s, q->line_s };
	if ((rc = fd_tx_exec(tx, &SQL_LINE_CHARGES, p, 0, &res)) < 0)
		return rc;
	int n = PQntuples(res);
	int64_t refundable = 0;
	for (int i = 0; i < n; i++)
		refundable += col_i64(res, i, LCHARGE_COL_REFUNDABLE);
	if (d->refund > refundable)
		return fd_err_set(fd_tx_err(tx), FD_EPRECOND, "refund_credits: %" PRId64 " is more than the %" PRId64
		                    " charged for the line and not yet refunded", d->refund, refundable);
	if (!(d->plan = fd_arena_zalloc(r->arena, (size_t)(n + 1) * sizeof(*d->plan))))
		return TX_OOM(tx);
	int64_t left = d->refund;
	for (int i = 0; i < n && left > 0; i++) {
		refund_step_t *st = &d->plan[d->nplan++];
		st->charge = col_i64(res, i, LCHARGE_COL_ID);
		st->entry = col_i64(res, i, LCHARGE_COL_ENTRY);
		st->amount = col_i64(res, i, LCHARGE_COL_REFUNDABLE) < left ? col_i64(res, i, LCHARGE_COL_REFUNDABLE) : left;
		st->before = col_i64(res, i, LCHARGE_COL_REFUNDED);
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
	/* The key first: a duplicate waits for the first and answers it. */
	fd_idem_replay_t first;
	int rc = fd_idem_claim(tx, &d->idem, &first);
	if (rc < 0)
		return rc;
	if (rc == 1) {
		d->replay = true;
		q->refund_entry = first.result_id;
		q->refunded = d->refund;
		return 0;
	}
	if (d->plan_rc < 0) {
		*fd_tx_err(tx) = d->plan_err;
		return d->plan_rc;
	}
	if ((rc = lock_line(tx, q, &res)) < 0)
		return rc;
	const char *reseller = fd_arena_strdup(r->arena, PQgetvalue(res, 0, LOCK_COL_RESELLER));
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
	    (rc = fd_idem_done(tx, &d->idem, q->refund_entry, NULL, 0)) < 0 ||
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
	delete_q_t d = { .c = { .r = &r, .line = req->line_id, .line_s = lines_i64(&r, req->line_id) },
		             .refund = req->refund_credits };
	if ((rc = fd_idem_make(&r, "linesd", "DeleteLine", req->idempotency_key, req->refund_credits > 0, msg,
	                       &d.idem)) < 0)
		return rc;
	if (!d.c.line_s)
		return OOM(call);
	if (d.refund > 0 && (rc = lines_run_ro(&r, delete_plan_tx, &d)) < 0) {
		/* A duplicate of a delete that ran finds the line gone (or its
		 * charges refunded): only the key's claim, in delete_line_tx, tells
		 * it from a request refused for good. */
		if (!d.idem.key || (rc != -FD_ENOTFOUND && rc != -FD_EPRECOND))
			return rc;
		d.plan_rc = rc;
		d.plan_err = *fd_call_err(call);
		*fd_call_err(call) = (fd_err_t){ 0 };
		d.nplan = 0;
	}
	if (d.refund > 0) {
		for (int i = 0; i < d.nplan; i++) {
			refund_step_t *st = &d.plan[i];
			fd_err_t e = { 0 };
			if ((rc = charges_refund(linesd_of(r.call), r.arena, r.tenant, st->charge, st->entry, st->amount, "DeleteLine",
			                      &st->refund_entry, &e)) < 0)
				return fd_call_fail(call, rc == -FD_EPRECOND ? FD_EPRECOND : FD_EUNAVAIL,
				                    "refund of charge entry %" PRId64 ": %s; the line was not deleted", st->entry,
				                    e.msg);
		}
	}
	if ((rc = lines_run(&r, delete_line_tx, &d)) < 0)
		return rc;
	cache_drop_line(linesd_of(call)->cache, req->line_id);   /* its sessions ended */
	Frontdesk__V1__DeleteLineResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->refund_entry_id = d.c.refund_entry;
	m->credits_refunded = d.c.refunded;
	return 0;
}

