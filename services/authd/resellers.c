/* resellers.c - the reseller tree: CreateReseller, GetReseller,
 * ListResellers, UpdateReseller.
 *
 * "In the caller's subtree" is `path LIKE <fd_subtree_prefix> || '%'` in
 * every statement (paths are digits and dots, so nothing in them is a LIKE
 * wildcard); tenant admins and platform admins see the whole tenant (an
 * empty prefix). Anything outside answers NOT_FOUND, as if it did not
 * exist. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sodium.h>
#include "authd.h"
#include "fd/log.h"

#define OOM(call) fd_call_fail((call), FD_EEXHAUSTED, "out of memory for this request")

/* Account 0 of a request: the caller's own account; none when acting in
 * another tenant (a platform admin naming one). */
static int64_t own_or(const fd_tctx_t *t, int64_t id)
{
	return id ? id : t->tenant == t->c.tenant_id ? t->c.account_id : 0;
}

/* ---- CreateReseller ---- */

typedef struct create_q {
	const fd_tctx_t *t;
	store_new_reseller_t row;
	fd_idem_t key;
	Frontdesk__V1__CreateResellerResponse *reply;   /* fd_reply's */
	Frontdesk__V1__CreateResellerResponse *resp;    /* the reply, or a replay's first answer */
	int64_t parent_asked;        /* the request's parent_id, for the error */
	bool replayed;
} create_q_t;

static int create_tx(fd_tx_t *tx, void *arg)
{
	create_q_t *q = arg;
	fd_arena_t *arena = q->t->arena;
	fd_idem_replay_t first;
	int rc;
	q->replayed = false;
	q->resp = q->reply;
	if ((rc = fd_idem_claim(tx, &q->key, &first)) < 0)
		return rc;
	if (rc == 1) {
		q->replayed = true;
		q->resp = (void *)authd_idem_answer(tx, &q->key, &first, &frontdesk__v1__create_reseller_response__descriptor);
		return q->resp ? 0 : -FD_EINTERNAL;
	}
	if ((rc = store_next_id(tx, SEQ_ACCOUNTS, &q->row.id)) < 0 ||
	    (rc = store_insert_reseller(tx, arena, &q->row, &q->resp->reseller)) < 0)
		return rc;
	if (rc == 0)   /* rolled back: the key's claim goes with it */
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "parent %" PRId64 " not found", q->parent_asked);
	Frontdesk__V1__Reseller *r = q->resp->reseller;
	const char *perms = permissions_text(arena, q->row.permissions, false);
	const char *parent = id_str(arena, r->parent_id);
	if (!perms || !parent)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	const char *detail[] = { "username", r->username, "parent", parent, "permissions", perms, NULL };
	if ((rc = audit_ok(tx, q->t, "reseller.create", "account", r->id, detail)) < 0 || !q->key.key)
		return rc;
	ProtobufCBinaryData packed = authd_idem_pack(arena, &q->resp->base);
	if (!packed.data)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return fd_idem_done(tx, &q->key, r->id, &packed, 0);
}

int authd_create_reseller(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__CreateResellerRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_err_t *err = fd_call_err(call);
	fd_tctx_t t;
	unsigned perms;
	int rc;
	if ((rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_RESELLERS_WRITE, req->tenant_id, "resellers")) < 0)
		return rc;
	char *const secrets[] = { req->password };
	if (pw_wipe_on_free(t.arena, secrets, 1) < 0)
		return OOM(call);
	if (t.c.role == FD_ROLE_RESELLER && !(t.c.permissions & FD_PERM_CREATE_SUBRESELLERS))
		return fd_call_fail(call, FD_EPERM, "this reseller may not create sub-resellers");
	if (req->parent_id < 0)
		return fd_call_fail(call, FD_EINVAL, "parent_id: must not be negative");
	create_q_t q = { .t = &t, .parent_asked = req->parent_id };
	if ((rc = check_username("username", req->username, err)) < 0 ||
	    (rc = check_password("password", req->password, err)) < 0 ||
	    (rc = fd_check_name("display_name", req->display_name, 0, 200, err)) < 0 ||
	    (rc = fd_check_text("notes", req->notes, 0, 2000, err)) < 0 ||
	    (rc = authd_idem_make(&t, "CreateReseller", req->idempotency_key, msg, &q.key)) < 0 ||
	    (rc = permissions_of_request("permissions", req->permissions, req->n_permissions, &perms, err)) < 0)
		return rc;
	if (perms & ~t.c.permissions)
		return fd_call_fail(call, FD_EPERM, "permissions: wider than your own");

	char hash[128];
	if ((rc = pw_hash(a, req->password, hash, err)) < 0)
		return rc;
	/* Parent 0: the caller's own account; for a platform admin, the tenant's root. */
	q.row = (store_new_reseller_t){
		.tenant = t.tenant, .prefix = fd_subtree_prefix(&t.c),
		.parent = req->parent_id ? req->parent_id : t.c.role == FD_ROLE_PLATFORM_ADMIN ? 0 : t.c.account_id,
		.username = req->username, .display_name = req->display_name, .password_hash = hash,
		.notes = req->notes, .permissions = perms,
	};
	if (!(q.reply = fd_reply(call, resp)))
		return -FD_EEXHAUSTED;
	rc = fd_tctx_run(&t, a->db, NULL, create_tx, &q);
	if (rc == -FD_EEXISTS)
		return fd_call_fail(call, FD_EEXISTS, "username: \"%s\" is taken in this tenant", req->username);
	if (rc < 0)
		return rc;
	if (q.replayed)
		*resp = &q.resp->base;
	else
		fd_info("reseller %" PRId64 " created under %" PRId64, q.resp->reseller->id, q.resp->reseller->parent_id);
	return 0;
}

/* ---- GetReseller, ListResellers ---- */

typedef struct list_q {
	const fd_tctx_t *t;
	int64_t id;                  /* GetReseller's */
	store_reseller_filter_t f;   /* ListResellers': its parent must itself be in the subtree */
	Frontdesk__V1__Reseller **out;
	size_t n;
	bool parent_missing;
} list_q_t;

static int get_tx(fd_tx_t *tx, void *arg)
{
	list_q_t *q = arg;
	if (!(q->out = fd_arena_zalloc(q->t->arena, sizeof(*q->out))))
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	int rc = store_reseller(tx, q->t->arena, q->t->tenant, q->id, fd_subtree_prefix(&q->t->c), &q->out[0]);
	q->n = rc > 0;
	return rc < 0 ? rc : 0;
}

static int list_tx(fd_tx_t *tx, void *arg)
{
	list_q_t *q = arg;
	Frontdesk__V1__Reseller *parent;
	int rc;
	q->n = 0;
	q->parent_missing = false;
	if (q->f.parent) {
		if ((rc = store_reseller(tx, q->t->arena, q->f.tenant, q->f.parent, q->f.prefix, &parent)) < 0)
			return rc;
		if ((q->parent_missing = rc == 0))
			return 0;
	}
	return store_list_resellers(tx, q->t->arena, &q->f, &q->out, &q->n);
}

int authd_get_reseller(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__GetResellerRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_tctx_t t;
	int rc;
	if ((rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_RESELLERS_READ, req->tenant_id, NULL)) < 0)
		return rc;
	if (req->reseller_id < 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: must not be negative");
	list_q_t q = { .t = &t, .id = own_or(&t, req->reseller_id) };
	if (!q.id)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: required when acting in another tenant");
	fd_tx_opts_t ro = { .read_only = true };
	if ((rc = fd_tctx_run(&t, a->db, &ro, get_tx, &q)) < 0)
		return rc;
	if (q.n == 0)
		return fd_call_fail(call, FD_ENOTFOUND, "reseller %" PRId64 " not found", q.id);
	Frontdesk__V1__GetResellerResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->reseller = q.out[0];
	return 0;
}

int authd_list_resellers(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListResellersRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_err_t *err = fd_call_err(call);
	fd_tctx_t t;
	int limit, rc;
	int64_t after;
	if ((rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_RESELLERS_READ, req->tenant_id, NULL)) < 0 ||
	    (rc = fd_check_page(req->page_size, req->page_token, &limit, &after, err)) < 0 ||
	    (rc = fd_check_text("query", req->query, 0, 100, err)) < 0)
		return rc;
	if (req->parent_id < 0)
		return fd_call_fail(call, FD_EINVAL, "parent_id: must not be negative");
	if (req->status && !enum_text(ACCOUNT_STATUS_NAMES, req->status))
		return fd_call_fail(call, FD_EINVAL, "status: unknown value %d", req->status);
	list_q_t q = { .t = &t,
		           .f = { .tenant = t.tenant, .prefix = fd_subtree_prefix(&t.c), .after = after,
		                  .parent = req->parent_id, .status = req->status, .query = req->query,
		                  .limit = limit + 1 } };
	fd_tx_opts_t ro = { .read_only = true };
	if ((rc = fd_tctx_run(&t, a->db, &ro, list_tx, &q)) < 0)
		return rc;
	if (q.parent_missing)
		return fd_call_fail(call, FD_ENOTFOUND, "parent %" PRId64 " not found", req->parent_id);
	Frontdesk__V1__ListResellersResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->resellers = q.out;
	r->n_resellers = q.n > (size_t)limit ? (size_t)limit : q.n;
	if (q.n > (size_t)limit && !(r->next_page_token = fd_page_token(t.arena, q.out[limit - 1]->id)))
		return OOM(call);
	return 0;
}

/* ---- UpdateReseller ---- */

typedef struct update_q {
	const fd_tctx_t *t;
	store_reseller_update_t u;
	bool password, self;
	const char *fields;          /* the other fields changed, "display_name,notes" ("": none) */
	char old_hash[160];          /* self password change: the hash read first */
	Frontdesk__V1__Reseller *out;
} update_q_t;

static int update_tx(fd_tx_t *tx, void *arg)
{
	update_q_t *q = arg;
	int rc = store_update_reseller(tx, q->t->arena, &q->u, &q->out);
	if (rc <= 0)
		return rc;
	if (q->password && (rc = store_revoke_account(tx, q->u.tenant, q->u.id, false, 0, NULL)) < 0)
		return rc;
	/* One event per kind of change, none holding the password. */
	if (q->u.status) {
		bool suspend = q->u.status == FRONTDESK__V1__RESELLER_STATUS__RESELLER_STATUS_SUSPENDED;
		if ((rc = audit_ok(tx, q->t, suspend ? "reseller.suspend" : "reseller.reactivate", "account", q->u.id,
		                   NULL)) < 0)
			return rc;
	}
	if (q->password && (rc = audit_ok(tx, q->t, q->self ? "account.password_change" : "account.password_reset",
	                                  "account", q->u.id, NULL)) < 0)
		return rc;
	if (q->fields[0]) {
		const char *detail[] = { "fields", q->fields, NULL };
		if ((rc = audit_ok(tx, q->t, "reseller.update", "account", q->u.id, detail)) < 0)
			return rc;
	}
	return 0;
}

static int password_hash_tx(fd_tx_t *tx, void *arg)
{
	update_q_t *q = arg;
	int rc = store_password_hash(tx, q->u.tenant, q->u.id, FD_TX_LAST, q->old_hash);
	if (rc == 0)
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "reseller %" PRId64 " not found", q->u.id);
	return rc < 0 ? rc : 0;
}

/* A wrong current password: the attempt is an event of its own. */
static int password_refused_tx(fd_tx_t *tx, void *arg)
{
	update_q_t *q = arg;
	const char *source = fd_audit_source(q->t->arena, fd_call_peer(q->t->call));
	if (!source)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return audit_row(tx, q->t->arena, &q->t->c, NULL, source, "account.password_change", "account", q->u.id,
	                 FD_AUDIT_FAILED, NULL);
}

int authd_update_reseller(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__UpdateResellerRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_err_t *err = fd_call_err(call);
	fd_tctx_t t;
	int rc;
	if ((rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_RESELLERS_WRITE, req->tenant_id, NULL)) < 0)
		return rc;
	char *const secrets[] = { req->new_password, req->current_password };
	if (pw_wipe_on_free(t.arena, secrets, 2) < 0)
		return OOM(call);
	if (req->reseller_id < 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: must not be negative");
	int64_t id = own_or(&t, req->reseller_id);
	if (!id)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: required when acting in another tenant");
	bool self = t.tenant == t.c.tenant_id && id == t.c.account_id;
	/* The platform has no resellers: there a platform admin changes only its own account. */
	if (t.tenant == FD_PLATFORM_TENANT && !self)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: name the tenant (the platform has no resellers)");
	if ((rc = fd_check_name("display_name", req->display_name, 0, 200, err)) < 0 ||
	    (req->new_password[0] && (rc = check_password("new_password", req->new_password, err)) < 0) ||
	    (req->notes && (rc = fd_check_text("notes", req->notes->value, 0, 2000, err)) < 0) ||
	    (rc = check_password_given("current_password", req->current_password, false, err)) < 0)
		return rc;
	if (req->status && !enum_text(ACCOUNT_STATUS_NAMES, req->status))
		return fd_call_fail(call, FD_EINVAL, "status: unknown value %d", req->status);
	unsigned perms = 0;
	if (req->permissions) {
		if ((rc = permissions_of_request("permissions.values", req->permissions->values, req->permissions->n_values,
		                                 &perms, err)) < 0)
			return rc;
		if (self)
			return fd_call_fail(call, FD_EPERM, "permissions: you cannot change your own");
		if (perms & ~t.c.permissions)
			return fd_call_fail(call, FD_EPERM, "permissions: wider than your own");
	}
	if (req->status && self)
		return fd_call_fail(call, FD_EPERM, "status: you cannot change your own");
	bool own_password = self && req->new_password[0];
	if (req->current_password[0] && !own_password)
		return fd_call_fail(call, FD_EINVAL, "current_password: only when changing your own password");
	/* A stolen access token or an API key must not take the account over. */
	if (own_password && t.c.kind != FD_CRED_ACCESS_TOKEN)
		return fd_call_fail(call, FD_EPERM, "new_password: your own password is changed with an access "
		                    "token from Login and the current password, not with an API key");
	if (own_password && !req->current_password[0])
		return fd_call_fail(call, FD_EINVAL, "current_password: required to change your own password");

	update_q_t q = { .t = &t, .self = self, .password = req->new_password[0] != '\0',
		             .u = { .tenant = t.tenant, .id = id } };
	q.fields = fd_arena_printf(t.arena, "%s%s%s%s%s", req->display_name[0] ? "display_name" : "",
	                           req->display_name[0] && (req->permissions || req->notes) ? "," : "",
	                           req->permissions ? "permissions" : "", req->permissions && req->notes ? "," : "",
	                           req->notes ? "notes" : "");
	if (!q.fields)
		return OOM(call);
	if (own_password) {
		fd_tx_opts_t ro = { .read_only = true };
		if ((rc = fd_tctx_run(&t, a->db, &ro, password_hash_tx, &q)) < 0)
			return rc;
		rc = pw_verify(a, q.old_hash, req->current_password, err);
		if (rc == -FD_EEXHAUSTED)
			return rc;
		if (rc < 0) {
			if ((rc = fd_tctx_run(&t, a->db, NULL, password_refused_tx, &q)) < 0)
				return rc;
			return fd_call_fail(call, FD_EPERM, "current_password: does not match; nothing was changed");
		}
	}
	char hash[128];
	if (q.password && (rc = pw_hash(a, req->new_password, hash, err)) < 0)
		return rc;
	q.u.display_name = req->display_name[0] ? req->display_name : NULL;
	q.u.permissions = req->permissions ? permissions_text(t.arena, perms, true) : NULL;
	q.u.password_hash = q.password ? hash : NULL;
	q.u.status = req->status;
	q.u.notes = req->notes ? req->notes->value : NULL;
	q.u.prefix = fd_subtree_prefix(&t.c);
	q.u.old_password_hash = own_password ? q.old_hash : NULL;
	if (req->permissions && !q.u.permissions)
		return OOM(call);
	rc = fd_tctx_run(&t, a->db, NULL, update_tx, &q);
	sodium_memzero(hash, sizeof(hash));
	if (rc < 0)
		return rc;
	if (!q.out && own_password)
		return fd_call_fail(call, FD_EABORTED, "new_password: the password changed meanwhile; nothing was changed");
	if (!q.out)
		return fd_call_fail(call, FD_ENOTFOUND, "reseller %" PRId64 " not found", id);
	if (req->status)
		fd_info("reseller %" PRId64 " %s", id, enum_text(ACCOUNT_STATUS_NAMES, req->status));
	Frontdesk__V1__UpdateResellerResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->reseller = q.out;
	return 0;
}
