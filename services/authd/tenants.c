/* tenants.c - CreateTenant, GetTenant, ListTenants, SuspendTenant.
 *
 * CreateTenant makes the tenant, its admin account (the root of its reseller
 * tree) and its audit event in one transaction of the new tenant: it takes
 * the tenant's id first (a value a replay wastes). Its idempotency key is the
 * platform's (tenant 0), claimed first in that same transaction
 * (store_platform_idem_claim), so a duplicate in flight waits for the first
 * and answers its result. A platform admin's actions on a tenant are events
 * of that tenant, so its admins see who created or suspended it. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "authd.h"
#include "fd/log.h"

/* A platform admin's context moved to the tenant it acts on (the tenant
 * fd_tctx_begin resolved is its own, the platform). */
static void act_in(fd_tctx_t *t, int64_t tenant)
{
	t->tenant = tenant;
	snprintf(t->tenant_s, sizeof(t->tenant_s), "%" PRId64, tenant);
}

/* ---- CreateTenant ---- */

typedef struct create_tenant_q {
	const fd_tctx_t *t;
	const Frontdesk__V1__CreateTenantRequest *req;
	int64_t tenant;              /* the new tenant's id, taken beforehand */
	const char *pwhash;
	fd_idem_t key;
	Frontdesk__V1__CreateTenantResponse *reply;   /* fd_reply's */
	Frontdesk__V1__CreateTenantResponse *resp;    /* the reply, or a replay's first answer */
	bool replayed;
} create_tenant_q_t;

static int next_tenant_tx(fd_tx_t *tx, void *arg)
{
	create_tenant_q_t *q = arg;
	return store_next_id(tx, SEQ_TENANTS, &q->tenant);
}

/* Runs in a transaction of the new tenant (q->tenant). */
static int create_tenant_tx(fd_tx_t *tx, void *arg)
{
	create_tenant_q_t *q = arg;
	fd_arena_t *arena = q->t->arena;
	const Frontdesk__V1__CreateTenantRequest *req = q->req;
	fd_idem_replay_t first;
	int64_t admin;
	int rc;
	q->replayed = false;
	q->resp = q->reply;
	if (q->key.key) {
		if ((rc = store_platform_idem_claim(tx, &q->key, &first)) < 0)
			return rc;
		if (rc == 1) {
			q->replayed = true;
			q->resp = (void *)authd_idem_answer(tx, &q->key, &first,
			                                    &frontdesk__v1__create_tenant_response__descriptor);
			return q->resp ? 0 : -FD_EINTERNAL;
		}
		if ((rc = store_set_tenant(tx, q->tenant)) < 0)
			return rc;
	}
	if ((rc = store_insert_tenant(tx, arena, q->tenant, req->slug, req->name, &q->resp->tenant)) < 0 ||
	    (rc = store_next_id(tx, SEQ_ACCOUNTS, &admin)) < 0 ||
	    (rc = store_insert_root(tx, arena, q->tenant, admin, req->admin_username, req->admin_display_name,
	                            q->pwhash, &q->resp->admin)) < 0)
		return rc;
	const char *aid = id_str(arena, admin);
	if (!aid)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	const char *detail[] = { "slug", req->slug, "name", req->name,
		                     "admin_account", aid, "admin_username", req->admin_username, NULL };
	if ((rc = audit_ok(tx, q->t, "tenant.create", "tenant", q->tenant, detail)) < 0)
		return rc;
	if (!q->key.key)
		return 0;
	ProtobufCBinaryData packed = authd_idem_pack(arena, &q->resp->base);
	if (!packed.data)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return store_platform_idem_done(tx, &q->key, q->tenant, &packed);
}

int authd_create_tenant(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__CreateTenantRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_err_t *err = fd_call_err(call);
	fd_tctx_t t;
	int rc;
	if ((rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_TENANTS_WRITE, 0, NULL)) < 0)
		return rc;
	if (t.c.role != FD_ROLE_PLATFORM_ADMIN)
		return fd_call_fail(call, FD_EPERM, "only platform admins create tenants");
	char *const secrets[] = { req->admin_password };
	if (pw_wipe_on_free(t.arena, secrets, 1) < 0)
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory for this request");
	if ((rc = check_slug("slug", req->slug, err)) < 0 || (rc = fd_check_name("name", req->name, 1, 200, err)) < 0 ||
	    (rc = check_username("admin_username", req->admin_username, err)) < 0 ||
	    (rc = check_password("admin_password", req->admin_password, err)) < 0 ||
	    (rc = fd_check_name("admin_display_name", req->admin_display_name, 0, 200, err)) < 0)
		return rc;
	create_tenant_q_t q = { .t = &t, .req = req };
	if ((rc = authd_idem_make(&t, "CreateTenant", req->idempotency_key, msg, &q.key)) < 0)
		return rc;
	if (strcmp(req->slug, "platform") == 0)
		return fd_call_fail(call, FD_EEXISTS, "slug: \"platform\" is taken");

	char hash[128];
	if ((rc = pw_hash(a, req->admin_password, hash, err)) < 0)
		return rc;
	q.pwhash = hash;
	fd_tx_opts_t no = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_call_deadline_ms(call) };
	if ((rc = fd_db_run_opts(a->db, &no, next_tenant_tx, &q, err)) < 0)
		return rc;
	if (!(q.reply = fd_reply(call, resp)))
		return -FD_EEXHAUSTED;
	act_in(&t, q.tenant);   /* the new tenant's transaction */
	rc = fd_tctx_run(&t, a->db, NULL, create_tenant_tx, &q);
	if (rc < 0)
		return rc == -FD_EEXISTS ? fd_call_fail(call, FD_EEXISTS, "slug: \"%s\" is taken", req->slug) : rc;
	if (q.replayed)
		*resp = &q.resp->base;
	else
		fd_info("tenant %" PRId64 " (%s) created", q.resp->tenant->id, q.resp->tenant->slug);
	return 0;
}

/* ---- GetTenant, ListTenants ---- */

typedef struct tenant_q {
	const fd_tctx_t *t;
	int64_t id;                  /* GetTenant, SuspendTenant */
	const Frontdesk__V1__ListTenantsRequest *list;
	int64_t after;
	int limit;
	const Frontdesk__V1__SuspendTenantRequest *suspend;
	Frontdesk__V1__Tenant **out;
	size_t n;
} tenant_q_t;

static int get_tenant_tx(fd_tx_t *tx, void *arg)
{
	tenant_q_t *q = arg;
	if (!(q->out = fd_arena_zalloc(q->t->arena, sizeof(*q->out))))
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	int rc = store_tenant(tx, q->t->arena, q->id, FD_TX_LAST, &q->out[0]);
	q->n = rc > 0;
	return rc < 0 ? rc : 0;
}

int authd_get_tenant(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__GetTenantRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_tctx_t t;
	int rc;
	if ((rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_TENANTS_READ, req->tenant_id, NULL)) < 0)
		return rc;
	tenant_q_t q = { .t = &t, .id = t.tenant };
	/* The tenants table is the platform's. */
	fd_tx_opts_t o = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	if ((rc = fd_db_run_opts(a->db, &o, get_tenant_tx, &q, fd_call_err(call))) < 0)
		return rc;
	if (q.n == 0)
		return fd_call_fail(call, FD_ENOTFOUND, "tenant %" PRId64 " not found", t.tenant);
	Frontdesk__V1__GetTenantResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->tenant = q.out[0];
	return 0;
}

static int list_tenants_tx(fd_tx_t *tx, void *arg)
{
	tenant_q_t *q = arg;
	return store_list_tenants(tx, q->t->arena, q->after, q->list->status, q->list->query, q->limit + 1, &q->out,
	                          &q->n);
}

int authd_list_tenants(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListTenantsRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_err_t *err = fd_call_err(call);
	fd_tctx_t t;
	int rc;
	if ((rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_TENANTS_READ, 0, NULL)) < 0)
		return rc;
	if (t.c.role != FD_ROLE_PLATFORM_ADMIN)
		return fd_call_fail(call, FD_EPERM, "only platform admins list tenants");
	tenant_q_t q = { .t = &t, .list = req };
	if ((rc = fd_check_page(req->page_size, req->page_token, &q.limit, &q.after, err)) < 0 ||
	    (rc = fd_check_text("query", req->query, 0, 100, err)) < 0)
		return rc;
	if (req->status && !enum_text(TENANT_STATUS_NAMES, req->status))
		return fd_call_fail(call, FD_EINVAL, "status: unknown value %d", req->status);
	fd_tx_opts_t o = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	if ((rc = fd_db_run_opts(a->db, &o, list_tenants_tx, &q, err)) < 0)
		return rc;
	Frontdesk__V1__ListTenantsResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->tenants = q.out;
	r->n_tenants = q.n > (size_t)q.limit ? (size_t)q.limit : q.n;
	if (q.n > (size_t)q.limit && !(r->next_page_token = fd_page_token(t.arena, q.out[q.limit - 1]->id)))
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory for this request");
	return 0;
}

/* ---- SuspendTenant ---- */

/* In the tenant's own transaction: the tenants row is platform-level, the
 * event is the tenant's. */
static int suspend_tx(fd_tx_t *tx, void *arg)
{
	tenant_q_t *q = arg;
	const Frontdesk__V1__SuspendTenantRequest *req = q->suspend;
	if (!(q->out = fd_arena_zalloc(q->t->arena, sizeof(*q->out))))
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	Frontdesk__V1__TenantStatus status = req->reactivate ? FRONTDESK__V1__TENANT_STATUS__TENANT_STATUS_ACTIVE
	                                                     : FRONTDESK__V1__TENANT_STATUS__TENANT_STATUS_SUSPENDED;
	int rc = store_set_tenant_status(tx, q->t->arena, q->id, status, req->reason, &q->out[0]);
	if ((q->n = rc > 0) == 0)
		return rc;
	const char *detail[] = { "reason", req->reason, NULL };
	return audit_ok(tx, q->t, req->reactivate ? "tenant.reactivate" : "tenant.suspend", "tenant", q->id,
	                req->reactivate ? NULL : detail);
}

int authd_suspend_tenant(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__SuspendTenantRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_err_t *err = fd_call_err(call);
	fd_tctx_t t;
	int rc;
	if ((rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_TENANTS_WRITE, 0, NULL)) < 0)
		return rc;
	if (t.c.role != FD_ROLE_PLATFORM_ADMIN)
		return fd_call_fail(call, FD_EPERM, "only platform admins suspend tenants");
	if (req->tenant_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: a tenant's id (the platform, 0, cannot be suspended)");
	if ((rc = fd_check_text("reason", req->reason, 0, 500, err)) < 0)
		return rc;
	/* It acts in the tenant it names, whatever that tenant's status (the
	 * status cache fd_tctx_begin would ask is not: a suspended tenant is
	 * reactivated here; an unknown one is NOT_FOUND below). */
	act_in(&t, req->tenant_id);
	tenant_q_t q = { .t = &t, .id = req->tenant_id, .suspend = req };
	if ((rc = fd_tctx_run(&t, a->db, NULL, suspend_tx, &q)) < 0)
		return rc;
	if (q.n == 0)
		return fd_call_fail(call, FD_ENOTFOUND, "tenant %" PRId64 " not found", req->tenant_id);
	fd_info("tenant %" PRId64 " %s", req->tenant_id, req->reactivate ? "reactivated" : "suspended");
	Frontdesk__V1__SuspendTenantResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->tenant = q.out[0];
	return 0;
}
