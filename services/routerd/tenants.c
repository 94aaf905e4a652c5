/* tenants.c - tenants' routing settings: GetTenantRouting,
 * SetTenantBandwidth, SetSharedPoolAccess. Both settings are the
 * platform's (SCOPE_BANDWIDTH_WRITE) over what a tenant's viewers get:
 * each change is recorded in the tenant's audit trail. */
#include <inttypes.h>
#include <stdio.h>
#include "routerd.h"
#include "check.h"
#include "enums.h"
#include "store.h"
#include "sync.h"

#define MAX_MIN_BITRATE_KBPS 1000000

static Frontdesk__V1__TenantRouting *routing_message(const rreq_t *r)
{
	Frontdesk__V1__TenantRouting *m = fd_arena_zalloc(r->t.arena, sizeof(*m));
	if (!m)
		return NULL;
	frontdesk__v1__tenant_routing__init(m);
	rtable_t *tbl = &r->rd->tbl;
	pthread_rwlock_rdlock(&tbl->lock);
	const rtenant_t *t = table_tenant(tbl, r->t.tenant);
	m->tenant_id = r->t.tenant;
	m->max_egress_mbps = t->max_egress_mbps;
	m->policy = t->policy;
	m->min_bitrate_kbps = t->min_bitrate_kbps;
	m->shared_pool_allowed = t->shared_pool_allowed;
	m->egress_mbps = tenant_egress(tbl, r->t.tenant, fd_now_ms());
	pthread_rwlock_unlock(&tbl->lock);
	return m;
}

int rd_get_tenant_routing(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__GetTenantRoutingRequest *req = (const void *)msg;
	rreq_t r;
	int rc = rreq_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_NODES_READ, req->tenant_id);
	if (rc < 0)
		return rc;
	Frontdesk__V1__GetTenantRoutingResponse *out = fd_reply(call, resp);
	if (!out || !(out->routing = routing_message(&r)))
		return OOM(call);
	return 0;
}

struct routing_q {
	const rreq_t *r;
	routing_change_t c;
	const char *action;
	const char *const *detail;
};

static int routing_tx(fd_tx_t *tx, void *arg)
{
	struct routing_q *q = arg;
	int rc = store_set_routing(tx, q->r->t.tenant, &q->c, 0);
	if (rc < 0)
		return rc;
	const char *target = fd_arena_printf(q->r->t.arena, "tenant:%s", q->r->t.tenant_s);
	if (!target)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return fd_tctx_audit(tx, &q->r->t, q->action, target, q->detail, FD_TX_LAST);
}

/* Writes the change, reads it back, answers the tenant's settings. */
static int set_routing(const rreq_t *r, struct routing_q *q, Frontdesk__V1__TenantRouting **out)
{
	q->r = r;
	int rc = rreq_run(r, routing_tx, q);
	if (rc < 0 || (rc = sync_reload_tenant(r->rd, r->t.tenant, fd_call_err(r->t.call))) < 0)
		return rc;
	return (*out = routing_message(r)) ? 0 : OOM(r->t.call);
}

int rd_set_tenant_bandwidth(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__SetTenantBandwidthRequest *req = (const void *)msg;
	rreq_t r;
	int rc = rreq_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_BANDWIDTH_WRITE, req->tenant_id);
	if (rc < 0)
		return rc;
	if (req->max_egress_mbps < 0 || req->max_egress_mbps > MAX_CAPACITY)
		return fd_call_fail(call, FD_EINVAL, "max_egress_mbps: 0 (no cap) .. %d", MAX_CAPACITY);
	if (req->policy < 0 || req->policy > POLICY_LOWER_BITRATE)
		return fd_call_fail(call, FD_EINVAL, "policy: REFUSE or LOWER_BITRATE (UNSPECIFIED: unchanged)");
	if (req->min_bitrate_kbps < 0 || req->min_bitrate_kbps > MAX_MIN_BITRATE_KBPS)
		return fd_call_fail(call, FD_EINVAL, "min_bitrate_kbps: 0 (unchanged) .. %d", MAX_MIN_BITRATE_KBPS);
	const char *cap = fd_arena_printf(r.t.arena, "%" PRId64, req->max_egress_mbps);
	const char *min = req->min_bitrate_kbps ? fd_arena_printf(r.t.arena, "%" PRId64, req->min_bitrate_kbps)
	                                        : "unchanged";
	if (!cap || !min)
		return OOM(call);
	const char *detail[] = { "max_egress_mbps", cap,
		                     "policy", req->policy ? enum_name(BANDWIDTH_POLICY_NAMES, (int)req->policy) : "unchanged",
		                     "min_bitrate_kbps", min, NULL };
	struct routing_q q = {
		.c = { .max_egress_mbps = req->max_egress_mbps, .policy = (int)req->policy,
		       .min_bitrate_kbps = req->min_bitrate_kbps, .shared_pool_allowed = -1 },
		.action = "tenant.set_bandwidth", .detail = detail,
	};
	Frontdesk__V1__SetTenantBandwidthResponse *out = fd_reply(call, resp);
	if (!out)
		return OOM(call);
	return set_routing(&r, &q, &out->routing);
}

int rd_set_shared_pool_access(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__SetSharedPoolAccessRequest *req = (const void *)msg;
	rreq_t r;
	int rc = rreq_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_BANDWIDTH_WRITE, req->tenant_id);
	if (rc < 0)
		return rc;
	const char *detail[] = { "allowed", req->allowed ? "true" : "false", NULL };
	struct routing_q q = {
		.c = { .max_egress_mbps = -1, .shared_pool_allowed = req->allowed ? 1 : 0 },
		.action = "tenant.set_shared_pool_access", .detail = detail,
	};
	Frontdesk__V1__SetSharedPoolAccessResponse *out = fd_reply(call, resp);
	if (!out)
		return OOM(call);
	return set_routing(&r, &q, &out->routing);
}
