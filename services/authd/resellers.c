/* resellers.c - the reseller tree: CreateReseller, GetReseller,
 * ListResellers, UpdateReseller.
 *
 * "In the caller's subtree" is `path LIKE <caller's path> || '%'` (paths are
 * digits and dots, so nothing in them is a LIKE wildcard); tenant admins and
 * platform admins see the whole tenant (an empty prefix). Anything outside
 * answers NOT_FOUND, as if it did not exist. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "authd.h"
#include "fd/log.h"

static int perms_of_request(fd_call_t *call, const char *field, const Frontdesk__V1__ResellerPermission *v,
                            size_t n, unsigned *out)
{
	*out = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] == FRONTDESK__V1__RESELLER_PERMISSION__RESELLER_PERMISSION_CREATE_SUBRESELLERS)
			*out |= FD_PERM_CREATE_SUBRESELLERS;
		else if (v[i] == FRONTDESK__V1__RESELLER_PERMISSION__RESELLER_PERMISSION_CREATE_TRIALS)
			*out |= FD_PERM_CREATE_TRIALS;
		else
			return fd_call_fail(call, FD_EINVAL, "%s[%zu]: unknown permission %d", field, i, v[i]);
	}
	return 0;
}

/* Resellers live in tenants; platform admins are not a tree. */
static int reseller_tenant(fd_call_t *call, const fd_caller_t *c, int64_t requested, int64_t *tenant)
{
	int rc = fd_call_tenant(call, c, requested, tenant);
	if (rc < 0)
		return rc;
	if (*tenant == 0)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: name the tenant (the platform has no resellers)");
	return 0;
}

/* ---- CreateReseller ---- */

static const fd_sql_t SQL_NEXT_ACCOUNT_ID = {
	"authd_next_account_id", "SELECT nextval('frontdesk.accounts_id_seq')", 0,
};
static const fd_sql_t SQL_INSERT_RESELLER = {
	"authd_insert_reseller",
	"INSERT INTO frontdesk.accounts AS a (tenant_id, id, parent_id, path, role, username, display_name,"
	"                                     password_hash, permissions, notes)"
	" SELECT $1, $2::bigint, p.id, p.path || $2::bigint::text || '.', 'reseller', $4, $5, $6, $7::text[], $8"
	"   FROM frontdesk.accounts p"
	"  WHERE p.tenant_id = $1 AND p.path LIKE $9 || '%'"
	"    AND CASE WHEN $3::bigint IS NULL THEN p.parent_id IS NULL ELSE p.id = $3 END"
	" RETURNING " RESELLER_COLS,
	9,
};

typedef struct create_q {
	authd_t *a;
	fd_arena_t *arena;
	const Frontdesk__V1__CreateResellerRequest *req;
	const fd_caller_t *c;
	const char *source;
	int64_t tenant, parent;      /* parent 0: the tenant's root */
	const char *subtree, *pwhash, *perms;
	unsigned char req_hash[32];
	const char *method;          /* idempotency scope: the method and the caller's account */
	Frontdesk__V1__CreateResellerResponse *resp;
	bool parent_missing, replayed;
} create_q_t;

static int create_tx(fd_tx_t *tx, void *arg)
{
	create_q_t *q = arg;
	const char *key = q->req->idempotency_key;
	PGresult *res;
	int rc;
	q->parent_missing = q->replayed = false;
	if (key[0]) {
		ProtobufCMessage *prev;
		rc = idem_lookup(tx, q->arena, q->tenant, q->method, key, q->req_hash,
		                 &frontdesk__v1__create_reseller_response__descriptor, &prev);
		if (rc < 0)
			return rc;
		if (prev) {
			q->resp = (void *)prev;
			q->replayed = true;
			return 0;
		}
	}
	if ((rc = fd_tx_exec(tx, &SQL_NEXT_ACCOUNT_ID, NULL, 0, &res)) < 0)
		return rc;
	const char *id = fd_arena_strdup(q->arena, PQgetvalue(res, 0, 0));
	const char *params[] = { id_str(q->arena, q->tenant), id, q->parent ? id_str(q->arena, q->parent) : NULL,
		                     q->req->username, q->req->display_name, q->pwhash, q->perms, q->req->notes,
		                     q->subtree };
	if ((rc = fd_tx_exec(tx, &SQL_INSERT_RESELLER, params, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) == 0) {
		q->parent_missing = true;
		return 0;
	}
	Frontdesk__V1__Reseller *r = q->resp->reseller = reseller_message(q->arena, q->tenant, res, 0);
	if (!r)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	/* "{create_subresellers,create_trials}" without its braces */
	const char *perms = fd_arena_strndup(q->arena, q->perms + 1, strlen(q->perms) - 2);
	const char *parent = id_str(q->arena, r->parent_id);
	if (!perms || !parent)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	const char *detail[] = { "username", r->username, "parent", parent, "permissions", perms, NULL };
	if ((rc = audit_row(tx, q->arena, q->c, NULL, q->source, "reseller.create", "account", r->id, FD_AUDIT_OK,
	                    detail)) < 0)
		return rc;
	return key[0] ? idem_store(tx, q->tenant, q->method, key, q->req_hash, &q->resp->base) : 0;
}

int authd_create_reseller(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__CreateResellerRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_err_t *err = fd_call_err(call);
	fd_caller_t c;
	int64_t tenant;
	unsigned perms;
	int rc;
	if ((rc = authd_caller(call, FRONTDESK__V1__SCOPE__SCOPE_RESELLERS_WRITE, &c)) < 0 ||
	    (rc = reseller_tenant(call, &c, req->tenant_id, &tenant)) < 0)
		return rc;
	if (c.role == FD_ROLE_RESELLER && !(c.permissions & FD_PERM_CREATE_SUBRESELLERS))
		return fd_call_fail(call, FD_EPERM, "this reseller may not create sub-resellers");
	if (req->parent_id < 0)
		return fd_call_fail(call, FD_EINVAL, "parent_id: must not be negative");
	if ((rc = check_username("username", req->username, err)) < 0 ||
	    (rc = check_password("password", req->password, err)) < 0 ||
	    (rc = fd_check_name("display_name", req->display_name, 0, 200, err)) < 0 ||
	    (rc = fd_check_text("notes", req->notes, 0, 2000, err)) < 0 ||
	    (rc = fd_check_idem_key(req->idempotency_key, err)) < 0 ||
	    (rc = perms_of_request(call, "permissions", req->permissions, req->n_permissions, &perms)) < 0)
		return rc;
	if (perms & ~c.permissions)
		return fd_call_fail(call, FD_EPERM, "permissions: wider than your own");

	create_q_t q = { .a = a, .arena = arena, .req = req, .c = &c, .tenant = tenant, .subtree = caller_subtree(&c),
		             .perms = permissions_array(arena, perms), .source = fd_audit_source(arena, fd_call_peer(call)) };
	if (!q.perms || !q.source || request_hash(a, arena, msg, q.req_hash) < 0)
		return OOM(call);
	/* Parent 0: the caller's own account; for a platform admin, the tenant's root. */
	q.parent = req->parent_id ? req->parent_id : c.role == FD_ROLE_PLATFORM_ADMIN ? 0 : c.account_id;
	char hash[128];
	if ((rc = pw_hash(a, req->password, hash, err)) < 0)
		return rc;
	q.pwhash = hash;
	if (!(q.method = fd_arena_printf(arena, "CreateReseller/%" PRId64, c.account_id)) ||
	    !(q.resp = fd_arena_zalloc(arena, sizeof(*q.resp))))
		return OOM(call);
	frontdesk__v1__create_reseller_response__init(q.resp);
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_call_deadline_ms(call) };
	rc = fd_db_run_opts(a->db, &o, create_tx, &q, err);
	if (rc == -FD_EEXISTS && req->idempotency_key[0])
		rc = fd_db_run_opts(a->db, &o, create_tx, &q, err);   /* the same key won meanwhile */
	if (rc == -FD_EEXISTS)
		return fd_call_fail(call, FD_EEXISTS, "username: \"%s\" is taken in this tenant", req->username);
	if (rc < 0)
		return rc;
	if (q.parent_missing)
		return fd_call_fail(call, FD_ENOTFOUND, "parent %" PRId64 " not found", req->parent_id);
	if (!q.replayed)
		fd_info("reseller %" PRId64 " created under %" PRId64, q.resp->reseller->id, q.resp->reseller->parent_id);
	*resp = &q.resp->base;
	return 0;
}

/* ---- GetReseller, ListResellers ---- */

static const fd_sql_t SQL_GET_RESELLER = {
	"authd_get_reseller",
	"SELECT " RESELLER_COLS " FROM frontdesk.accounts a"
	" WHERE a.tenant_id = $1 AND a.id = $2 AND a.path LIKE $3 || '%'",
	3,
};
static const fd_sql_t SQL_LIST_RESELLERS = {
	"authd_list_resellers",
	"SELECT " RESELLER_COLS " FROM frontdesk.accounts a"
	" WHERE a.tenant_id = $1 AND a.path LIKE $2 || '%' AND a.id > $3"
	"   AND ($4::bigint = 0 OR a.parent_id = $4) AND ($5 = '' OR a.status = $5)"
	"   AND ($6 = '' OR strpos(lower(a.username || ' ' || a.display_name), lower($6)) > 0)"
	" ORDER BY a.id LIMIT $7",
	7,
};

typedef struct list_q {
	fd_arena_t *arena;
	int64_t tenant;
	const char *subtree;
	int64_t parent;               /* must itself be in the subtree */
	const fd_sql_t *sql;
	const char *params[9];
	Frontdesk__V1__Reseller **out;
	size_t n;
	bool parent_missing;
} list_q_t;

static int rows_tx(fd_tx_t *tx, void *arg)
{
	list_q_t *q = arg;
	PGresult *res;
	int rc;
	q->n = 0;
	q->parent_missing = false;
	if (q->parent) {
		const char *pp[] = { id_str(q->arena, q->tenant), id_str(q->arena, q->parent), q->subtree };
		if ((rc = fd_tx_exec(tx, &SQL_GET_RESELLER, pp, 0, &res)) < 0)
			return rc;
		if (PQntuples(res) == 0) {
			q->parent_missing = true;
			return 0;
		}
	}
	if ((rc = fd_tx_exec(tx, q->sql, q->params, 0, &res)) < 0)
		return rc;
	int n = PQntuples(res);
	q->out = fd_arena_zalloc(q->arena, sizeof(*q->out) * (size_t)(n ? n : 1));
	if (!q->out)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	for (int i = 0; i < n; i++)
		if (!(q->out[q->n++] = reseller_message(q->arena, q->tenant, res, i)))
			return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return 0;
}

int authd_get_reseller(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__GetResellerRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_caller_t c;
	int64_t tenant;
	int rc;
	if ((rc = authd_caller(call, FRONTDESK__V1__SCOPE__SCOPE_RESELLERS_READ, &c)) < 0 ||
	    (rc = fd_call_tenant(call, &c, req->tenant_id, &tenant)) < 0)
		return rc;
	if (req->reseller_id < 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: must not be negative");
	int64_t id = req->reseller_id ? req->reseller_id : tenant == c.tenant_id ? c.account_id : 0;
	if (!id)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: required when acting in another tenant");
	list_q_t q = { .arena = arena, .tenant = tenant, .sql = &SQL_GET_RESELLER,
		           .params = { id_str(arena, tenant), id_str(arena, id), caller_subtree(&c) } };
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	if ((rc = fd_db_run_opts(a->db, &o, rows_tx, &q, fd_call_err(call))) < 0)
		return rc;
	if (q.n == 0)
		return fd_call_fail(call, FD_ENOTFOUND, "reseller %" PRId64 " not found", id);
	Frontdesk__V1__GetResellerResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__get_reseller_response__init(r);
	r->reseller = q.out[0];
	*resp = &r->base;
	return 0;
}

static const char *reseller_status_text(Frontdesk__V1__ResellerStatus s)
{
	return s == FRONTDESK__V1__RESELLER_STATUS__RESELLER_STATUS_ACTIVE      ? "active"
	       : s == FRONTDESK__V1__RESELLER_STATUS__RESELLER_STATUS_SUSPENDED ? "suspended"
	                                                                        : "";
}

int authd_list_resellers(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListResellersRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_err_t *err = fd_call_err(call);
	fd_caller_t c;
	int64_t tenant, after;
	int limit, rc;
	if ((rc = authd_caller(call, FRONTDESK__V1__SCOPE__SCOPE_RESELLERS_READ, &c)) < 0 ||
	    (rc = fd_call_tenant(call, &c, req->tenant_id, &tenant)) < 0 ||
	    (rc = fd_check_page(req->page_size, req->page_token, &limit, &after, err)) < 0 ||
	    (rc = fd_check_text("query", req->query, 0, 100, err)) < 0)
		return rc;
	if (req->parent_id < 0)
		return fd_call_fail(call, FD_EINVAL, "parent_id: must not be negative");
	if (req->status > FRONTDESK__V1__RESELLER_STATUS__RESELLER_STATUS_SUSPENDED)
		return fd_call_fail(call, FD_EINVAL, "status: unknown value %d", req->status);
	const char *sub = caller_subtree(&c);
	list_q_t q = { .arena = arena, .tenant = tenant, .subtree = sub, .parent = req->parent_id,
		           .sql = &SQL_LIST_RESELLERS,
		           .params = { id_str(arena, tenant), sub, id_str(arena, after), id_str(arena, req->parent_id),
		                       reseller_status_text(req->status), req->query, id_str(arena, limit + 1) } };
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	if ((rc = fd_db_run_opts(a->db, &o, rows_tx, &q, err)) < 0)
		return rc;
	if (q.parent_missing)
		return fd_call_fail(call, FD_ENOTFOUND, "parent %" PRId64 " not found", req->parent_id);
	Frontdesk__V1__ListResellersResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__list_resellers_response__init(r);
	r->resellers = q.out;
	r->n_resellers = q.n > (size_t)limit ? (size_t)limit : q.n;
	if (q.n > (size_t)limit && !(r->next_page_token = fd_page_token(arena, q.out[limit - 1]->id)))
		return OOM(call);
	*resp = &r->base;
	return 0;
}

/* ---- UpdateReseller ---- */

/* $9: the password hash the row must still have (a change of one's own
 * password checked against it); NULL: any. */
static const fd_sql_t SQL_UPDATE_RESELLER = {
	"authd_update_reseller",
	"UPDATE frontdesk.accounts AS a SET"
	"   display_name = coalesce($3, a.display_name), permissions = coalesce($4::text[], a.permissions),"
	"   password_hash = coalesce($5, a.password_hash), status = coalesce($6, a.status),"
	"   notes = coalesce($7, a.notes), updated_at = now()"
	" WHERE a.tenant_id = $1 AND a.id = $2 AND a.path LIKE $8 || '%'"
	"   AND ($9::text IS NULL OR a.password_hash = $9)"
	" RETURNING " RESELLER_COLS,
	9,
};
static const fd_sql_t SQL_REVOKE_ON_RESET = {
	"authd_revoke_on_reset",
	"UPDATE frontdesk.refresh_tokens SET revoked_at = now()"
	" WHERE tenant_id = $1 AND account_id = $2 AND revoked_at IS NULL",
	2,
};
static const fd_sql_t SQL_PASSWORD_HASH = {
	"authd_password_hash",
	"SELECT password_hash FROM frontdesk.accounts WHERE tenant_id = $1 AND id = $2",
	2,
};

typedef struct update_q {
	fd_arena_t *arena;
	int64_t tenant, id;
	const fd_caller_t *c;
	const char *source;
	const char *params[9];
	bool password, self;
	const char *fields;          /* the other fields changed, "display_name,notes" ("": none) */
	char old_hash[160];          /* self password change: the hash read first */
	Frontdesk__V1__Reseller *out;
} update_q_t;

static int update_tx(fd_tx_t *tx, void *arg)
{
	update_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_UPDATE_RESELLER, q->params, 0, &res);
	if (rc < 0)
		return rc;
	q->out = NULL;
	if (PQntuples(res) == 0)
		return 0;
	if (!(q->out = reseller_message(q->arena, q->tenant, res, 0)))
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	if (q->password && (rc = fd_tx_exec(tx, &SQL_REVOKE_ON_RESET, q->params, 0, NULL)) < 0)
		return rc;
	/* One event per kind of change, none holding the password. */
	if (q->params[5]) {
		bool suspend = strcmp(q->params[5], "suspended") == 0;
		if ((rc = audit_row(tx, q->arena, q->c, NULL, q->source, suspend ? "reseller.suspend" : "reseller.reactivate",
		                    "account", q->id, FD_AUDIT_OK, NULL)) < 0)
			return rc;
	}
	if (q->password &&
	    (rc = audit_row(tx, q->arena, q->c, NULL, q->source,
	                    q->self ? "account.password_change" : "account.password_reset", "account", q->id,
	                    FD_AUDIT_OK, NULL)) < 0)
		return rc;
	if (q->fields[0]) {
		const char *detail[] = { "fields", q->fields, NULL };
		if ((rc = audit_row(tx, q->arena, q->c, NULL, q->source, "reseller.update", "account", q->id, FD_AUDIT_OK,
		                    detail)) < 0)
			return rc;
	}
	return 0;
}

static int password_hash_tx(fd_tx_t *tx, void *arg)
{
	update_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_PASSWORD_HASH, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) != 1)
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "reseller %" PRId64 " not found", q->id);
	snprintf(q->old_hash, sizeof(q->old_hash), "%s", PQgetvalue(res, 0, 0));
	return 0;
}

/* A wrong current password: the attempt is an event of its own. */
static int password_refused_tx(fd_tx_t *tx, void *arg)
{
	update_q_t *q = arg;
	return audit_row(tx, q->arena, q->c, NULL, q->source, "account.password_change", "account", q->id,
	                 FD_AUDIT_FAILED, NULL);
}

int authd_update_reseller(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__UpdateResellerRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_err_t *err = fd_call_err(call);
	fd_caller_t c;
	int64_t tenant;
	int rc;
	if ((rc = authd_caller(call, FRONTDESK__V1__SCOPE__SCOPE_RESELLERS_WRITE, &c)) < 0 ||
	    (rc = fd_call_tenant(call, &c, req->tenant_id, &tenant)) < 0)
		return rc;
	if (req->reseller_id < 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: must not be negative");
	/* 0: the caller's own account, as in GetReseller. */
	int64_t id = req->reseller_id ? req->reseller_id : tenant == c.tenant_id ? c.account_id : 0;
	if (!id)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: required when acting in another tenant");
	bool self = tenant == c.tenant_id && id == c.account_id;
	/* The platform has no resellers: there a platform admin changes only its own account. */
	if (tenant == 0 && !self)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: name the tenant (the platform has no resellers)");
	if ((rc = fd_check_name("display_name", req->display_name, 0, 200, err)) < 0 ||
	    (req->new_password[0] && (rc = check_password("new_password", req->new_password, err)) < 0) ||
	    (req->notes && (rc = fd_check_text("notes", req->notes->value, 0, 2000, err)) < 0))
		return rc;
	if (strlen(req->current_password) > 1024)
		return fd_call_fail(call, FD_EINVAL, "current_password: at most 1024 bytes");
	if (req->status > FRONTDESK__V1__RESELLER_STATUS__RESELLER_STATUS_SUSPENDED)
		return fd_call_fail(call, FD_EINVAL, "status: unknown value %d", req->status);
	unsigned perms = 0;
	if (req->permissions) {
		if ((rc = perms_of_request(call, "permissions.values", req->permissions->values,
		                           req->permissions->n_values, &perms)) < 0)
			return rc;
		if (self)
			return fd_call_fail(call, FD_EPERM, "permissions: you cannot change your own");
		if (perms & ~c.permissions)
			return fd_call_fail(call, FD_EPERM, "permissions: wider than your own");
	}
	if (req->status && self)
		return fd_call_fail(call, FD_EPERM, "status: you cannot change your own");
	bool own_password = self && req->new_password[0];
	if (req->current_password[0] && !own_password)
		return fd_call_fail(call, FD_EINVAL, "current_password: only when changing your own password");
	/* A stolen access token or an API key must not take the account over. */
	if (own_password && c.kind != FD_CRED_ACCESS_TOKEN)
		return fd_call_fail(call, FD_EPERM, "new_password: your own password is changed with an access "
		                    "token from Login and the current password, not with an API key");
	if (own_password && !req->current_password[0])
		return fd_call_fail(call, FD_EINVAL, "current_password: required to change your own password");

	update_q_t q = { .arena = arena, .tenant = tenant, .id = id, .c = &c, .self = self,
		             .password = req->new_password[0] != '\0',
		             .source = fd_audit_source(arena, fd_call_peer(call)) };
	q.fields = fd_arena_printf(arena, "%s%s%s%s%s", req->display_name[0] ? "display_name" : "",
	                           req->display_name[0] && (req->permissions || req->notes) ? "," : "",
	                           req->permissions ? "permissions" : "", req->permissions && req->notes ? "," : "",
	                           req->notes ? "notes" : "");
	q.params[0] = id_str(arena, tenant);
	q.params[1] = id_str(arena, id);
	if (!q.source || !q.fields || !q.params[0] || !q.params[1])
		return OOM(call);
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_call_deadline_ms(call) };
	if (own_password) {
		fd_tx_opts_t ro = o;
		ro.read_only = true;
		if ((rc = fd_db_run_opts(a->db, &ro, password_hash_tx, &q, err)) < 0)
			return rc;
		rc = pw_verify(a, q.old_hash, req->current_password, err);
		if (rc == -FD_EEXHAUSTED)
			return rc;
		if (rc < 0) {
			if ((rc = fd_db_run_opts(a->db, &o, password_refused_tx, &q, err)) < 0)
				return rc;
			return fd_call_fail(call, FD_EPERM, "current_password: does not match; nothing was changed");
		}
	}
	char hash[128];
	if (q.password && (rc = pw_hash(a, req->new_password, hash, err)) < 0)
		return rc;
	q.params[2] = req->display_name[0] ? req->display_name : NULL;
	q.params[3] = req->permissions ? permissions_array(arena, perms) : NULL;
	q.params[4] = q.password ? hash : NULL;
	q.params[5] = req->status ? reseller_status_text(req->status) : NULL;
	q.params[6] = req->notes ? req->notes->value : NULL;
	q.params[7] = caller_subtree(&c);
	q.params[8] = own_password ? q.old_hash : NULL;
	rc = fd_db_run_opts(a->db, &o, update_tx, &q, err);
	sodium_memzero(hash, sizeof(hash));
	if (rc < 0)
		return rc;
	if (!q.out && own_password)
		return fd_call_fail(call, FD_EABORTED, "new_password: the password changed meanwhile; nothing was changed");
	if (!q.out)
		return fd_call_fail(call, FD_ENOTFOUND, "reseller %" PRId64 " not found", id);
	if (req->status)
		fd_info("reseller %" PRId64 " %s", id, reseller_status_text(req->status));
	Frontdesk__V1__UpdateResellerResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__update_reseller_response__init(r);
	r->reseller = q.out;
	*resp = &r->base;
	return 0;
}
