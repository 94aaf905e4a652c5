/* tenants.c - CreateTenant, GetTenant, ListTenants, SuspendTenant.
 *
 * CreateTenant makes the tenant, its admin account (the root of its reseller
 * tree), its audit event and its idempotency record in one transaction of
 * the new tenant: it takes the tenant's id first (a value a replay wastes),
 * and moves the transaction's tenant setting to the platform for the
 * idempotency record and back, so row-level security checks each insert.
 * A platform admin's actions on a tenant are events of that tenant, so its
 * admins see who created or suspended it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "authd.h"
#include "fd/log.h"

#define TENANT_COLS                                                                       \
	"id, slug, name, status, suspend_reason, floor(extract(epoch FROM created_at))::bigint,"     \
	" floor(extract(epoch FROM updated_at))::bigint, coalesce(floor(extract(epoch FROM suspended_at))::bigint, 0)"

static Frontdesk__V1__Tenant *tenant_message(fd_arena_t *arena, PGresult *res, int row)
{
	Frontdesk__V1__Tenant *t = fd_arena_zalloc(arena, sizeof(*t));
	if (!t)
		return NULL;
	frontdesk__v1__tenant__init(t);
	t->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
	t->slug = fd_arena_strdup(arena, PQgetvalue(res, row, 1));
	t->name = fd_arena_strdup(arena, PQgetvalue(res, row, 2));
	t->status = strcmp(PQgetvalue(res, row, 3), "active") == 0 ? FRONTDESK__V1__TENANT_STATUS__TENANT_STATUS_ACTIVE
	                                                           : FRONTDESK__V1__TENANT_STATUS__TENANT_STATUS_SUSPENDED;
	t->suspend_reason = fd_arena_strdup(arena, PQgetvalue(res, row, 4));
	t->created_at = ts_col(res, row, 5);
	t->updated_at = ts_col(res, row, 6);
	t->suspended_at = ts_col(res, row, 7);
	return t->slug && t->name && t->suspend_reason ? t : NULL;
}

/* ---- CreateTenant ---- */

static const fd_sql_t SQL_NEXT_TENANT = {
	"authd_next_tenant", "SELECT nextval('frontdesk.tenants_id_seq')", 0,
};
static const fd_sql_t SQL_INSERT_TENANT = {
	"authd_insert_tenant",
	"INSERT INTO frontdesk.tenants (id, slug, name) VALUES ($1, $2, $3) RETURNING " TENANT_COLS,
	3,
};
static const fd_sql_t SQL_SET_TENANT = {
	"authd_set_tenant", "SELECT set_config('frontdesk.tenant_id', $1, true)", 1,
};
static const fd_sql_t SQL_NEXT_ACCOUNT = {
	"authd_next_account", "SELECT nextval('frontdesk.accounts_id_seq')", 0,
};
static const fd_sql_t SQL_INSERT_ROOT = {
	"authd_insert_root",
	"INSERT INTO frontdesk.accounts AS a (tenant_id, id, path, role, username, display_name, password_hash,"
	"                                     permissions)"
	" VALUES ($1, $2::bigint, $2::bigint::text || '.', 'tenant_admin', $3, $4, $5, '{create_subresellers,create_trials}')"
	" RETURNING " RESELLER_COLS,
	5,
};

typedef struct create_tenant_q {
	authd_t *a;
	fd_arena_t *arena;
	const Frontdesk__V1__CreateTenantRequest *req;
	const fd_caller_t *c;
	const char *source;
	const char *tid;             /* the new tenant's id, taken beforehand */
	const char *pwhash;
	unsigned char req_hash[32];
	const char *method;          /* idempotency scope: the method and the caller's account */
	Frontdesk__V1__CreateTenantResponse *resp;
	bool replayed;
} create_tenant_q_t;

static int next_tenant_tx(fd_tx_t *tx, void *arg)
{
	create_tenant_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_NEXT_TENANT, NULL, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	if (!(q->tid = fd_arena_strdup(q->arena, PQgetvalue(res, 0, 0))))
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return 0;
}

/* Runs in a transaction of the new tenant (q->tid). */
static int create_tenant_tx(fd_tx_t *tx, void *arg)
{
	create_tenant_q_t *q = arg;
	const char *key = q->req->idempotency_key;
	const char *zero[] = { "0" }, *tenant[] = { q->tid };
	int rc;
	PGresult *res;
	q->replayed = false;
	if (key[0]) {
		/* Keys of CreateTenant are the platform's. */
		ProtobufCMessage *prev;
		if ((rc = fd_tx_exec(tx, &SQL_SET_TENANT, zero, 0, NULL)) < 0)
			return rc;
		rc = idem_lookup(tx, q->arena, 0, q->method, key, q->req_hash,
		                 &frontdesk__v1__create_tenant_response__descriptor, &prev);
		if (rc < 0)
			return rc;
		if (prev) {
			q->resp = (void *)prev;
			q->replayed = true;
			return 0;
		}
		if ((rc = fd_tx_exec(tx, &SQL_SET_TENANT, tenant, 0, NULL)) < 0)
			return rc;
	}
	const char *tp[] = { q->tid, q->req->slug, q->req->name };
	if ((rc = fd_tx_exec(tx, &SQL_INSERT_TENANT, tp, 0, &res)) < 0)
		return rc;
	q->resp->tenant = tenant_message(q->arena, res, 0);
	if ((rc = fd_tx_exec(tx, &SQL_NEXT_ACCOUNT, NULL, 0, &res)) < 0)
		return rc;
	const char *aid = fd_arena_strdup(q->arena, PQgetvalue(res, 0, 0));
	const char *ap[] = { q->tid, aid, q->req->admin_username, q->req->admin_display_name, q->pwhash };
	if ((rc = fd_tx_exec(tx, &SQL_INSERT_ROOT, ap, 0, &res)) < 0)
		return rc;
	q->resp->admin = reseller_message(q->arena, strtoll(q->tid, NULL, 10), res, 0);
	if (!q->resp->tenant || !q->resp->admin)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	const char *detail[] = { "slug", q->req->slug, "name", q->req->name,
		                     "admin_account", aid, "admin_username", q->req->admin_username, NULL };
	if ((rc = audit_row(tx, q->arena, q->c, NULL, q->source, "tenant.create", "tenant",
	                    q->resp->tenant->id, FD_AUDIT_OK, detail)) < 0)
		return rc;
	if (key[0]) {
		if ((rc = fd_tx_exec(tx, &SQL_SET_TENANT, zero, 0, NULL)) < 0)
			return rc;
		return idem_store(tx, 0, q->method, key, q->req_hash, &q->resp->base);
	}
	return 0;
}

int authd_create_tenant(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__CreateTenantRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_err_t *err = fd_call_err(call);
	fd_caller_t c;
	int rc;
	if ((rc = authd_caller(call, FRONTDESK__V1__SCOPE__SCOPE_TENANTS_WRITE, &c)) < 0)
		return rc;
	if (c.role != FD_ROLE_PLATFORM_ADMIN)
		return fd_call_fail(call, FD_EPERM, "only platform admins create tenants");
	if ((rc = check_slug("slug", req->slug, err)) < 0 || (rc = fd_check_name("name", req->name, 1, 200, err)) < 0 ||
	    (rc = check_username("admin_username", req->admin_username, err)) < 0 ||
	    (rc = check_password("admin_password", req->admin_password, err)) < 0 ||
	    (rc = fd_check_name("admin_display_name", req->admin_display_name, 0, 200, err)) < 0 ||
	    (rc = fd_check_idem_key(req->idempotency_key, err)) < 0)
		return rc;
	if (strcmp(req->slug, "platform") == 0)
		return fd_call_fail(call, FD_EEXISTS, "slug: \"platform\" is taken");

	create_tenant_q_t q = { .a = a, .arena = arena, .req = req, .c = &c,
		                    .source = fd_audit_source(arena, fd_call_peer(call)) };
	if (!q.source || request_hash(a, arena, msg, q.req_hash) < 0 ||
	    !(q.method = fd_arena_printf(arena, "CreateTenant/%" PRId64, c.account_id)))
		return OOM(call);
	char hash[128];
	if ((rc = pw_hash(a, req->admin_password, hash, err)) < 0)
		return rc;
	q.pwhash = hash;
	fd_tx_opts_t no = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_call_deadline_ms(call) };
	if ((rc = fd_db_run_opts(a->db, &no, next_tenant_tx, &q, err)) < 0)
		return rc;
	fd_tx_opts_t o = { .tenant_id = strtoll(q.tid, NULL, 10), .deadline_ms = fd_call_deadline_ms(call) };
	/* A concurrent call with the same key that won makes this one's insert
	 * fail on the slug once it commits: the second run finds its answer. */
	for (int run = 0; run < 2; run++) {
		if (!(q.resp = fd_arena_zalloc(arena, sizeof(*q.resp))))
			return OOM(call);
		frontdesk__v1__create_tenant_response__init(q.resp);
		rc = fd_db_run_opts(a->db, &o, create_tenant_tx, &q, err);
		if (rc != -FD_EEXISTS || !req->idempotency_key[0])
			break;
	}
	if (rc < 0)
		return rc == -FD_EEXISTS ? fd_call_fail(call, FD_EEXISTS, "slug: \"%s\" is taken", req->slug) : rc;
	if (!q.replayed)
		fd_info("tenant %" PRId64 " (%s) created", q.resp->tenant->id, q.resp->tenant->slug);
	*resp = &q.resp->base;
	return 0;
}

/* ---- GetTenant, ListTenants ---- */

static const fd_sql_t SQL_GET_TENANT = {
	"authd_get_tenant", "SELECT " TENANT_COLS " FROM frontdesk.tenants WHERE id = $1", 1,
};
static const fd_sql_t SQL_LIST_TENANTS = {
	"authd_list_tenants",
	"SELECT " TENANT_COLS " FROM frontdesk.tenants"
	" WHERE id > $1 AND ($2 = '' OR status = $2)"
	"   AND ($3 = '' OR strpos(lower(slug || ' ' || name), lower($3)) > 0)"
	" ORDER BY id LIMIT $4",
	4,
};

typedef struct tenant_q {
	fd_arena_t *arena;
	const char *params[4];
	const fd_sql_t *sql;
	PGresult *res;
	Frontdesk__V1__Tenant **out;
	size_t n;
} tenant_q_t;

static int tenants_tx(fd_tx_t *tx, void *arg)
{
	tenant_q_t *q = arg;
	int rc = fd_tx_exec(tx, q->sql, q->params, FD_TX_LAST, &q->res);
	if (rc < 0)
		return rc;
	int n = PQntuples(q->res);
	q->out = fd_arena_zalloc(q->arena, sizeof(*q->out) * (size_t)(n ? n : 1));
	if (!q->out)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	for (int i = 0; i < n; i++)
		if (!(q->out[q->n++] = tenant_message(q->arena, q->res, i)))
			return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return 0;
}

int authd_get_tenant(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__GetTenantRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_caller_t c;
	int64_t tenant;
	int rc;
	if ((rc = authd_caller(call, FRONTDESK__V1__SCOPE__SCOPE_TENANTS_READ, &c)) < 0 ||
	    (rc = fd_call_tenant(call, &c, req->tenant_id, &tenant)) < 0)
		return rc;
	tenant_q_t q = { .arena = arena, .sql = &SQL_GET_TENANT, .params = { id_str(arena, tenant) } };
	fd_tx_opts_t o = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	if ((rc = fd_db_run_opts(a->db, &o, tenants_tx, &q, fd_call_err(call))) < 0)
		return rc;
	if (q.n == 0)
		return fd_call_fail(call, FD_ENOTFOUND, "tenant %" PRId64 " not found", tenant);
	Frontdesk__V1__GetTenantResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__get_tenant_response__init(r);
	r->tenant = q.out[0];
	*resp = &r->base;
	return 0;
}

static const char *tenant_status_text(Frontdesk__V1__TenantStatus s)
{
	return s == FRONTDESK__V1__TENANT_STATUS__TENANT_STATUS_ACTIVE      ? "active"
	       : s == FRONTDESK__V1__TENANT_STATUS__TENANT_STATUS_SUSPENDED ? "suspended"
	                                                                    : "";
}

int authd_list_tenants(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListTenantsRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_err_t *err = fd_call_err(call);
	fd_caller_t c;
	int limit;
	int64_t after;
	int rc;
	if ((rc = authd_caller(call, FRONTDESK__V1__SCOPE__SCOPE_TENANTS_READ, &c)) < 0)
		return rc;
	if (c.role != FD_ROLE_PLATFORM_ADMIN)
		return fd_call_fail(call, FD_EPERM, "only platform admins list tenants");
	if ((rc = fd_check_page(req->page_size, req->page_token, &limit, &after, err)) < 0 ||
	    (rc = fd_check_text("query", req->query, 0, 100, err)) < 0)
		return rc;
	if (req->status > FRONTDESK__V1__TENANT_STATUS__TENANT_STATUS_SUSPENDED)
		return fd_call_fail(call, FD_EINVAL, "status: unknown value %d", req->status);
	tenant_q_t q = { .arena = arena, .sql = &SQL_LIST_TENANTS,
		             .params = { id_str(arena, after), tenant_status_text(req->status), req->query,
		                         id_str(arena, limit + 1) } };
	fd_tx_opts_t o = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	if ((rc = fd_db_run_opts(a->db, &o, tenants_tx, &q, err)) < 0)
		return rc;
	Frontdesk__V1__ListTenantsResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__list_tenants_response__init(r);
	r->tenants = q.out;
	r->n_tenants = q.n > (size_t)limit ? (size_t)limit : q.n;
	if (q.n > (size_t)limit && !(r->next_page_token = fd_page_token(arena, q.out[limit - 1]->id)))
		return OOM(call);
	*resp = &r->base;
	return 0;
}

/* ---- SuspendTenant ---- */

static const fd_sql_t SQL_SUSPEND_TENANT = {
	"authd_suspend_tenant",
	"UPDATE frontdesk.tenants SET status = $2, updated_at = now(),"
	"       suspend_reason = CASE WHEN $2 = 'suspended' THEN $3 ELSE '' END,"
	"       suspended_at = CASE WHEN $2 = 'suspended' THEN coalesce(suspended_at, now()) END"
	" WHERE id = $1 RETURNING " TENANT_COLS,
	3,
};

typedef struct suspend_q {
	tenant_q_t t;
	const fd_caller_t *c;
	const char *source;
	bool reactivate;
} suspend_q_t;

/* In the tenant's own transaction: the tenants row is platform-level, the
 * event is the tenant's. */
static int suspend_tx(fd_tx_t *tx, void *arg)
{
	suspend_q_t *q = arg;
	q->t.n = 0;
	int rc = fd_tx_exec(tx, q->t.sql, q->t.params, 0, &q->t.res);
	if (rc < 0)
		return rc;
	if (PQntuples(q->t.res) == 0)
		return 0;
	if (!(q->t.out = fd_arena_zalloc(q->t.arena, sizeof(*q->t.out))) ||
	    !(q->t.out[0] = tenant_message(q->t.arena, q->t.res, 0)))
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	q->t.n = 1;
	const char *detail[] = { "reason", q->t.params[2], NULL };
	return audit_row(tx, q->t.arena, q->c, NULL, q->source, q->reactivate ? "tenant.reactivate" : "tenant.suspend",
	                 "tenant", q->t.out[0]->id, FD_AUDIT_OK, q->reactivate ? NULL : detail);
}

int authd_suspend_tenant(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__SuspendTenantRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_err_t *err = fd_call_err(call);
	fd_caller_t c;
	int rc;
	if ((rc = authd_caller(call, FRONTDESK__V1__SCOPE__SCOPE_TENANTS_WRITE, &c)) < 0)
		return rc;
	if (c.role != FD_ROLE_PLATFORM_ADMIN)
		return fd_call_fail(call, FD_EPERM, "only platform admins suspend tenants");
	if (req->tenant_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: a tenant's id (the platform, 0, cannot be suspended)");
	if ((rc = fd_check_text("reason", req->reason, 0, 500, err)) < 0)
		return rc;
	suspend_q_t q = { .t = { .arena = arena, .sql = &SQL_SUSPEND_TENANT,
		                     .params = { id_str(arena, req->tenant_id), req->reactivate ? "active" : "suspended",
		                                 req->reason } },
		              .c = &c, .source = fd_audit_source(arena, fd_call_peer(call)),
		              .reactivate = req->reactivate };
	if (!q.t.params[0] || !q.source)
		return OOM(call);
	fd_tx_opts_t o = { .tenant_id = req->tenant_id, .deadline_ms = fd_call_deadline_ms(call) };
	if ((rc = fd_db_run_opts(a->db, &o, suspend_tx, &q, err)) < 0)
		return rc;
	if (q.t.n == 0)
		return fd_call_fail(call, FD_ENOTFOUND, "tenant %" PRId64 " not found", req->tenant_id);
	fd_info("tenant %" PRId64 " %s", req->tenant_id, req->reactivate ? "reactivated" : "suspended");
	Frontdesk__V1__SuspendTenantResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__suspend_tenant_response__init(r);
	r->tenant = q.t.out[0];
	*resp = &r->base;
	return 0;
}
