/* hosts.c - brand host names: RequestHost, ApproveHost, ListHosts,
 * DeleteHost, and ListBrandHosts for the HTTP edge.
 *
 * A host name is unique across the platform (frontdesk.brand_hosts, a
 * platform-level table keyed by the name), held by one tenant, and stored
 * as fd_hostname_normalize makes it. Tenant admins ask for their own
 * tenant's (PENDING), platform admins for any tenant's (APPROVED at once)
 * and approve or reject; resellers and services manage none. A name another
 * tenant holds answers the same ALREADY_EXISTS whatever its status, and
 * NOT_FOUND on delete, as a name nobody holds. The platform's own names
 * (FRONTDESK_PLATFORM_HOSTS) and every name below them are reserved.
 * Every change is an event of the host's tenant, written in the change's
 * transaction. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "authd.h"
#include "fd/hostname.h"
#include "fd/log.h"

#define HS(x) FRONTDESK__V1__HOST_STATUS__HOST_STATUS_##x
#define OOM(call) fd_call_fail((call), FD_EEXHAUSTED, "out of memory for this request")

int hosts_parse(authd_t *a, const char *list, fd_err_t *err)
{
	const char *p = list;
	char name[FD_HOSTNAME_SIZE];
	bool ip;
	int rc;
	a->nplatform_hosts = 0;
	while ((rc = fd_hostname_list_next(&p, "FRONTDESK_PLATFORM_HOSTS", name, sizeof(name), &ip, err)) == 1) {
		if (ip)      /* no host name is an IP literal: nothing to reserve */
			continue;
		if (a->nplatform_hosts == AUTHD_PLATFORM_HOSTS_MAX)
			return fd_err_set(err, FD_EINVAL, "FRONTDESK_PLATFORM_HOSTS: at most %d host names",
			                  AUTHD_PLATFORM_HOSTS_MAX);
		memcpy(a->platform_hosts[a->nplatform_hosts++], name, sizeof(name));
	}
	return rc;
}

/* The platform's own name that host is or is below; NULL when none. */
static const char *reserved_by(const authd_t *a, const char *host)
{
	for (int i = 0; i < a->nplatform_hosts; i++)
		if (fd_hostname_within(host, a->platform_hosts[i]))
			return a->platform_hosts[i];
	return NULL;
}

/* The prelude of the people's calls: the caller, the scope, the tenant;
 * then only tenant admins and platform admins go on. */
static int hosts_begin(fd_tctx_t *t, fd_call_t *call, Frontdesk__V1__Scope scope, int64_t tenant_id)
{
	int rc = fd_tctx_begin(t, call, scope, tenant_id, NULL);
	if (rc < 0)
		return rc;
	if (t->c.kind == FD_CRED_SERVICE_TOKEN || !fd_tctx_admin(t))
		return fd_call_fail(call, FD_EPERM, "host names are managed by tenant admins and platform admins");
	return 0;
}

/* A platform admin's context moved to the tenant that holds the host (the
 * events are that tenant's). */
static void act_in(fd_tctx_t *t, int64_t tenant)
{
	t->tenant = tenant;
	snprintf(t->tenant_s, sizeof(t->tenant_s), "%" PRId64, tenant);
}

static int normalize(fd_call_t *call, const char *in, char name[FD_HOSTNAME_SIZE])
{
	return fd_hostname_normalize("host_name", in, name, FD_HOSTNAME_SIZE, fd_call_err(call));
}

/* The audit row of a change of one host: its target is the row,
 * "host:<id>" (a name may be longer than a target; a name deleted and asked
 * for again is another row), and its detail the name, the status, what it
 * was and the reason. */
static int audit_host(fd_tx_t *tx, const fd_tctx_t *t, const char *action, const Frontdesk__V1__Host *h,
                      int64_t id, const char *was, const char *reason)
{
	const char *status = enum_text(HOST_STATUS_NAMES, h->status);
	const char *detail[9] = { "host_name", h->host_name, "status", status ? status : "" };
	size_t n = 4;
	if (was) {
		detail[n++] = "was";
		detail[n++] = was;
	}
	if (reason && reason[0]) {
		detail[n++] = "reason";
		detail[n++] = reason;
	}
	detail[n] = NULL;
	return audit_ok(tx, t, action, "host", id, detail);
}

/* Looks the host up outside any tenant: its holder decides the tenant of
 * the transaction that changes it. */
typedef struct find_q {
	fd_arena_t *arena;
	const char *name;
	Frontdesk__V1__Host *host;
} find_q_t;

static int find_tx(fd_tx_t *tx, void *arg)
{
	find_q_t *q = arg;
	int rc = store_host(tx, q->arena, q->name, FD_TX_LAST, &q->host);
	return rc < 0 ? rc : 0;
}

static int find_host(fd_call_t *call, authd_t *a, fd_arena_t *arena, const char *name, Frontdesk__V1__Host **out)
{
	find_q_t q = { .arena = arena, .name = name };
	fd_tx_opts_t o = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	int rc = fd_db_run_opts(a->db, &o, find_tx, &q, fd_call_err(call));
	*out = q.host;
	return rc;
}

/* ---- RequestHost ---- */

typedef struct request_q {
	const fd_tctx_t *t;
	const char *name;
	bool approve;                /* a platform admin's: APPROVED at once */
	Frontdesk__V1__Host *host;   /* the answer */
	int64_t holder;              /* another tenant holds it: that one */
	bool rejected;               /* the tenant's own, rejected */
} request_q_t;

static int request_tx(fd_tx_t *tx, void *arg)
{
	request_q_t *q = arg;
	fd_arena_t *arena = q->t->arena;
	Frontdesk__V1__Host *h;
	int64_t id;
	q->host = NULL;
	q->holder = 0;
	q->rejected = false;
	int rc = store_insert_host(tx, arena, q->name, q->t->tenant, q->approve ? HS(APPROVED) : HS(PENDING), &h, &id);
	if (rc < 0)
		return rc;
	if (rc == 1) {
		q->host = h;
		return audit_host(tx, q->t, "host.request", h, id, NULL, NULL);
	}
	/* Held already: the insert waited for whoever held it to commit. */
	if ((rc = store_lock_host(tx, arena, q->name, q->t->tenant, &h, &id)) < 0)
		return rc;
	if (rc == 0) {
		q->holder = -1;      /* another tenant's, or deleted meanwhile: taken either way */
		return 0;
	}
	if (q->approve && h->status != HS(APPROVED)) {
		const char *was = enum_text(HOST_STATUS_NAMES, h->status);
		if ((rc = store_set_host_status(tx, arena, q->name, q->t->tenant, HS(APPROVED), "", &q->host, NULL)) < 0)
			return rc;
		return rc == 0 ? fd_err_set(fd_tx_err(tx), FD_EABORTED, "host_name: changed meanwhile; try again")
		               : audit_host(tx, q->t, "host.approve", q->host, id, was, NULL);
	}
	if (h->status == HS(REJECTED)) {
		q->rejected = true;
		return 0;
	}
	q->host = h;                 /* asked again: the same answer, nothing changed */
	return 0;
}

int authd_request_host(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__RequestHostRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_tctx_t t;
	char name[FD_HOSTNAME_SIZE];
	int rc;
	if ((rc = hosts_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_HOSTS_WRITE, req->tenant_id)) < 0)
		return rc;
	if (t.tenant == FD_PLATFORM_TENANT)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: name the tenant (the platform's own host names are "
		                    "FRONTDESK_PLATFORM_HOSTS, not brand host names)");
	if ((rc = normalize(call, req->host_name, name)) < 0)
		return rc;
	if (!strchr(name, '.'))
		return fd_call_fail(call, FD_EINVAL, "host_name: \"%s\" is a single label; a brand's host name has a "
		                    "dot (tv.example.com)", name);
	const char *own = reserved_by(a, name);
	if (own)
		return fd_call_fail(call, FD_EINVAL, "host_name: \"%s\" is reserved: %s is the platform's own host "
		                    "name, and so is every name below it (FRONTDESK_PLATFORM_HOSTS)", name, own);
	request_q_t q = { .t = &t, .name = name, .approve = t.c.role == FD_ROLE_PLATFORM_ADMIN };
	if ((rc = fd_tctx_run(&t, a->db, NULL, request_tx, &q)) < 0)
		return rc;
	/* The same answer whoever holds it and in whatever state: a tenant
	 * learns nothing of another's names. */
	if (q.holder)
		return fd_call_fail(call, FD_EEXISTS, "host_name: \"%s\" is taken", name);
	if (q.rejected)
		return fd_call_fail(call, FD_EEXISTS, "host_name: \"%s\" was asked for by this tenant and rejected "
		                    "(ListHosts shows the reason); DeleteHost it before asking again", name);
	Frontdesk__V1__RequestHostResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->host = q.host;
	fd_info("host %s for tenant %" PRId64 ": %s", name, t.tenant, enum_text(HOST_STATUS_NAMES, q.host->status));
	return 0;
}

/* ---- ApproveHost ---- */

typedef struct approve_q {
	const fd_tctx_t *t;
	const char *name;
	const Frontdesk__V1__ApproveHostRequest *req;
	Frontdesk__V1__Host *host;   /* NULL: no longer held by that tenant */
} approve_q_t;

static int approve_tx(fd_tx_t *tx, void *arg)
{
	approve_q_t *q = arg;
	fd_arena_t *arena = q->t->arena;
	Frontdesk__V1__Host *h;
	int64_t id;
	int rc = store_lock_host(tx, arena, q->name, q->t->tenant, &h, &id);
	q->host = NULL;
	if (rc <= 0)
		return rc;
	Frontdesk__V1__HostStatus status = q->req->approve ? HS(APPROVED) : HS(REJECTED);
	/* The reason is the rejection's; an approval's goes to the audit trail only. */
	const char *reason = q->req->approve ? "" : q->req->reason;
	if (h->status == status && strcmp(h->reason, reason) == 0) {
		q->host = h;             /* already so: nothing changes, nothing recorded */
		return 0;
	}
	const char *was = enum_text(HOST_STATUS_NAMES, h->status);
	if ((rc = store_set_host_status(tx, arena, q->name, q->t->tenant, status, reason, &q->host, NULL)) <= 0)
		return rc;
	return audit_host(tx, q->t, q->req->approve ? "host.approve" : "host.reject", q->host, id, was,
	                  q->req->reason);
}

int authd_approve_host(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ApproveHostRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_tctx_t t;
	char name[FD_HOSTNAME_SIZE];
	int rc;
	if ((rc = hosts_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_HOSTS_WRITE, 0)) < 0)
		return rc;
	if (t.c.role != FD_ROLE_PLATFORM_ADMIN)
		return fd_call_fail(call, FD_EPERM, "only platform admins approve or reject host names");
	if ((rc = normalize(call, req->host_name, name)) < 0 ||
	    (rc = fd_check_text("reason", req->reason, req->approve ? 0 : 1, 500, fd_call_err(call))) < 0)
		return rc;
	Frontdesk__V1__Host *found;
	if ((rc = find_host(call, a, t.arena, name, &found)) < 0)
		return rc;
	approve_q_t q = { .t = &t, .name = name, .req = req };
	if (found) {
		act_in(&t, found->tenant_id);
		if ((rc = fd_tctx_run(&t, a->db, NULL, approve_tx, &q)) < 0)
			return rc;
	}
	if (!q.host)
		return fd_call_fail(call, FD_ENOTFOUND, "host_name: \"%s\" not found", name);
	Frontdesk__V1__ApproveHostResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->host = q.host;
	fd_info("host %s of tenant %" PRId64 " %s", name, t.tenant, req->approve ? "approved" : "rejected");
	return 0;
}

/* ---- ListHosts ---- */

typedef struct list_q {
	fd_arena_t *arena;
	store_host_filter_t f;
	Frontdesk__V1__Host **out;
	int64_t *ids;
	size_t n;
} list_q_t;

static int list_tx(fd_tx_t *tx, void *arg)
{
	list_q_t *q = arg;
	return store_list_hosts(tx, q->arena, &q->f, &q->out, &q->ids, &q->n);
}

int authd_list_hosts(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListHostsRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_err_t *err = fd_call_err(call);
	fd_tctx_t t;
	int rc;
	if ((rc = hosts_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_HOSTS_READ, req->all_tenants ? 0 : req->tenant_id)) < 0)
		return rc;
	list_q_t q = { .arena = t.arena, .f = { .tenant = t.tenant, .status = req->status } };
	if (req->all_tenants) {
		if (t.c.role != FD_ROLE_PLATFORM_ADMIN)
			return fd_call_fail(call, FD_EPERM, "all_tenants: only platform admins list every tenant's host names");
		if (req->tenant_id)
			return fd_call_fail(call, FD_EINVAL, "all_tenants: leave tenant_id 0 with it");
		q.f.tenant = -1;
	} else if (t.tenant == FD_PLATFORM_TENANT) {
		return fd_call_fail(call, FD_EINVAL, "tenant_id: name the tenant, or set all_tenants (the platform "
		                    "has no brand host names)");
	}
	if (req->status && !enum_text(HOST_STATUS_NAMES, req->status))
		return fd_call_fail(call, FD_EINVAL, "status: unknown value %d", req->status);
	if ((rc = fd_check_page(req->page_size, req->page_token, &q.f.limit, &q.f.after, err)) < 0)
		return rc;
	int limit = q.f.limit;
	q.f.limit = limit + 1;
	/* The table is the platform's: no tenant transaction needed to read it. */
	fd_tx_opts_t o = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	if ((rc = fd_db_run_opts(a->db, &o, list_tx, &q, err)) < 0)
		return rc;
	Frontdesk__V1__ListHostsResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->hosts = q.out;
	r->n_hosts = q.n > (size_t)limit ? (size_t)limit : q.n;
	if (q.n > (size_t)limit && !(r->next_page_token = fd_page_token(t.arena, q.ids[limit - 1])))
		return OOM(call);
	return 0;
}

/* ---- DeleteHost ---- */

typedef struct delete_q {
	const fd_tctx_t *t;
	const char *name;
	Frontdesk__V1__Host *host;   /* as it was; NULL: the tenant does not hold it */
} delete_q_t;

static int delete_tx(fd_tx_t *tx, void *arg)
{
	delete_q_t *q = arg;
	int64_t id;
	int rc = store_delete_host(tx, q->t->arena, q->name, q->t->tenant, &q->host, &id);
	if (rc <= 0)
		return rc;
	return audit_host(tx, q->t, "host.delete", q->host, id, NULL, NULL);
}

int authd_delete_host(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__DeleteHostRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_tctx_t t;
	char name[FD_HOSTNAME_SIZE];
	int rc;
	if ((rc = hosts_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_HOSTS_WRITE, req->tenant_id)) < 0 ||
	    (rc = normalize(call, req->host_name, name)) < 0)
		return rc;
	delete_q_t q = { .t = &t, .name = name };
	bool held = true;
	if (t.tenant == FD_PLATFORM_TENANT) {
		/* A platform admin naming no tenant deletes the name whoever holds it. */
		Frontdesk__V1__Host *found;
		if ((rc = find_host(call, a, t.arena, name, &found)) < 0)
			return rc;
		if ((held = found != NULL))
			act_in(&t, found->tenant_id);
	}
	if (held && (rc = fd_tctx_run(&t, a->db, NULL, delete_tx, &q)) < 0)
		return rc;
	if (!q.host)
		return fd_call_fail(call, FD_ENOTFOUND, "host_name: \"%s\" not found", name);
	if (!fd_reply(call, resp))
		return -FD_EEXHAUSTED;
	fd_info("host %s of tenant %" PRId64 " deleted", name, t.tenant);
	return 0;
}

/* ---- ListBrandHosts ---- */

typedef struct brands_q {
	fd_arena_t *arena;
	Frontdesk__V1__ListBrandHostsResponse *r;
} brands_q_t;

static int brands_tx(fd_tx_t *tx, void *arg)
{
	brands_q_t *q = arg;
	return store_brand_hosts(tx, q->arena, &q->r->hosts, &q->r->n_hosts, &q->r->tenants, &q->r->n_tenants);
}

int authd_list_brand_hosts(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	(void)msg;
	authd_t *a = authd_of(call);
	fd_tctx_t t;
	int rc;
	if ((rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_HOSTS_RESOLVE, 0, NULL)) < 0)
		return rc;
	/* An API key made before the scope was the edge's alone could carry it. */
	if (t.c.kind != FD_CRED_SERVICE_TOKEN || t.c.role != FD_ROLE_SERVICE)
		return fd_call_fail(call, FD_EPERM, "ListBrandHosts is for the HTTP edge's service token");
	brands_q_t q = { .arena = t.arena, .r = fd_reply(call, resp) };
	if (!q.r)
		return -FD_EEXHAUSTED;
	/* One snapshot for both lists. */
	fd_tx_opts_t o = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_call_deadline_ms(call), .read_only = true,
		               .isolation = FD_TX_REPEATABLE_READ };
	return fd_db_run_opts(a->db, &o, brands_tx, &q, fd_call_err(call));
}
