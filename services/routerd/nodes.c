/* nodes.c - the node methods: RegisterNode, GetNode, ListNodes, UpdateNode,
 * SetNodeState. Each write goes to the database with its audit row in the
 * tenant's transaction (only the replica that makes a change audits it),
 * then is read back into the table (sync.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "routerd.h"
#include "check.h"
#include "enums.h"
#include "keys.h"
#include "store.h"
#include "sync.h"
#include "view.h"
#include "fd/idem.h"
#include "fd/log.h"
#include "fd/request.h"
#include "fd/tenant.h"
#include "fd/text.h"

#define DEFAULT_WEIGHT 100
#define DEFAULT_HIGH 90
#define DEFAULT_LOW 75

/* Records r's action on node id in the audit trail of r's tenant, inside
 * the transaction that does it. detail: never a key or secret. */
static int audit_node(fd_tx_t *tx, const rreq_t *r, const char *action, int64_t id, const char *const *detail,
                      unsigned flags)
{
	const char *target = fd_arena_printf(r->t.arena, "node:%" PRId64, id);
	if (!target)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return fd_tctx_audit(tx, &r->t, action, target, detail, flags);
}

/* The node r's tenant may see, under the read lock (released by the caller),
 * read from the database when this replica has not heard of it yet; NULL
 * with NOT_FOUND otherwise. own: only the tenant's own nodes. */
static rnode_t *visible_node(const rreq_t *r, int64_t id, bool own)
{
	routerd_t *rd = r->rd;
	int64_t tenant = r->t.tenant;
	if (id <= 0) {
		pthread_rwlock_rdlock(&rd->tbl.lock);
		fd_call_fail(r->t.call, FD_EINVAL, "node_id: required");
		return NULL;
	}
	pthread_rwlock_rdlock(&rd->tbl.lock);
	rnode_t *n = table_get(&rd->tbl, id);
	if (!n || n->tenant != tenant) {
		pthread_rwlock_unlock(&rd->tbl.lock);
		fd_err_t e;
		if (!n && sync_reload_node(rd, tenant, id, &e) < 0)
			fd_debug("node %" PRId64 " not in tenant %" PRId64 ": %s", id, tenant, e.msg);
		pthread_rwlock_rdlock(&rd->tbl.lock);
		n = table_get(&rd->tbl, id);
	}
	bool ok = n && (n->tenant == tenant ||
	                (!own && n->tenant == FD_PLATFORM_TENANT && table_tenant(&rd->tbl, tenant)->shared_pool_allowed));
	if (!ok) {
		fd_call_fail(r->t.call, FD_ENOTFOUND, "node %" PRId64 " not found", id);
		return NULL;
	}
	return n;
}

/* Reads the node back into the table and answers it (read lock taken here). */
static int answer_node(const rreq_t *r, int64_t id, Frontdesk__V1__Node **out)
{
	routerd_t *rd = r->rd;
	int rc = sync_reload_node(rd, r->t.tenant, id, fd_call_err(r->t.call));
	if (rc < 0)
		return rc;
	pthread_rwlock_rdlock(&rd->tbl.lock);
	rnode_t *n = table_get(&rd->tbl, id);
	*out = n ? node_message(&rd->tbl, &rd->regions, r->t.arena, n, true, fd_now_ms()) : NULL;
	pthread_rwlock_unlock(&rd->tbl.lock);
	return *out ? 0 : OOM(r->t.call);
}

/* ---- RegisterNode ---- */

/* The idempotency key is claimed first (fd/idem.h): a concurrent request
 * under the same key waits on the claim until the first commits, then
 * answers the first result (it never runs the registration a second time,
 * which would fail: the name is taken by then). Should the first roll back,
 * the claim goes with it and the waiting one registers. */
struct register_q {
	const rreq_t *r;
	const node_settings_t *in;
	fd_idem_t idem;
	int64_t id;
	bool replay;
	char key[NODE_KEY_MAX];
};

static int register_tx(fd_tx_t *tx, void *arg)
{
	struct register_q *q = arg;
	const rreq_t *r = q->r;
	q->replay = false;
	fd_idem_replay_t first;
	int rc = fd_idem_claim(tx, &q->idem, &first);
	if (rc < 0)
		return rc;
	if (rc == 1) {
		q->id = first.result_id;
		q->replay = true;
		return 0;
	}
	if ((rc = store_next_node_id(tx, &q->id)) < 0)
		return rc;
	key_row_t k;
	key_new(r->rd->key_hash_key, r->t.tenant, q->id, q->key, k.hash, k.prefix);
	if ((rc = store_insert_node(tx, r->t.arena, r->t.tenant, q->id, q->in, &k, 0)) < 0)
		return rc;
	const char *detail[] = { "name", q->in->name, "region", q->in->region, NULL };
	if ((rc = audit_node(tx, r, "node.register", q->id, detail, 0)) < 0)
		return rc;
	return fd_idem_done(tx, &q->idem, q->id, NULL, FD_TX_LAST);
}

int rd_register_node(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__RegisterNodeRequest *req = (const void *)msg;
	rreq_t r;
	int rc = rreq_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_NODES_WRITE, req->tenant_id);
	if (rc < 0)
		return rc;
	node_settings_t in = {
		.name = req->name, .urls = req->urls, .nurls = req->n_urls, .region = req->region,
		.country = req->country, .failure_domain = req->failure_domain,
		.max_connections = req->max_connections, .max_egress_mbps = req->max_egress_mbps,
		.weight = req->weight ? req->weight : DEFAULT_WEIGHT, .tags = req->tags, .ntags = req->n_tags,
		.high = req->high_water_percent ? req->high_water_percent : DEFAULT_HIGH,
		.low = req->low_water_percent ? req->low_water_percent : DEFAULT_LOW,
	};
	if (req->weight < 0)
		return fd_call_fail(call, FD_EINVAL, "weight: 0 (the default, %d) .. %d", DEFAULT_WEIGHT, MAX_WEIGHT);
	struct register_q q = { .r = &r, .in = &in };
	if ((rc = check_node(call, &r.rd->regions, &in)) < 0 ||
	    (rc = fd_idem_make(&r.t, "routerd", "RegisterNode", req->idempotency_key, true, msg, &q.idem)) < 0)
		return rc;
	if ((rc = rreq_run(&r, register_tx, &q)) < 0) {
		sodium_memzero(q.key, sizeof(q.key));
		return rc;
	}
	Frontdesk__V1__RegisterNodeResponse *out = fd_reply(call, resp);
	if (out)
		out->node_key = q.replay ? "" : fd_arena_strdup(r.t.arena, q.key);
	sodium_memzero(q.key, sizeof(q.key));
	if (!out || !out->node_key)
		return OOM(call);
	if ((rc = answer_node(&r, q.id, &out->node)) < 0)
		return rc;
	if (!q.replay)
		fd_info("node %" PRId64 " (%s) registered in tenant %" PRId64, q.id, in.name, r.t.tenant);
	return 0;
}

/* ---- GetNode ---- */

int rd_get_node(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__GetNodeRequest *req = (const void *)msg;
	rreq_t r;
	int rc = rreq_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_NODES_READ, req->tenant_id);
	if (rc < 0)
		return rc;
	Frontdesk__V1__GetNodeResponse *out = fd_reply(call, resp);
	if (!out)
		return OOM(call);
	rnode_t *n = visible_node(&r, req->node_id, false);
	if (n && !(out->node = node_message(&r.rd->tbl, &r.rd->regions, r.t.arena, n, n->tenant == r.t.tenant,
	                                    fd_now_ms())))
		rc = OOM(call);
	pthread_rwlock_unlock(&r.rd->tbl.lock);
	if (!n)
		return -(int)fd_call_err(call)->code;
	return rc;
}

/* ---- ListNodes ---- */

static int by_id(const void *a, const void *b)
{
	const rnode_t *x = *(rnode_t *const *)a, *y = *(rnode_t *const *)b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static bool has_tag(const rcfg_t *c, const char *tag)
{
	for (int i = 0; i < c->ntags; i++)
		if (strcmp(c->tags[i], tag) == 0)
			return true;
	return false;
}

int rd_list_nodes(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListNodesRequest *req = (const void *)msg;
	routerd_t *rd = routerd_of(call);
	fd_arena_t *a = fd_call_arena(call);
	fd_caller_t c;
	scope_t s;
	int limit;
	int64_t after;
	/* Not fd_tctx_begin: all_tenants asks for no tenant at all. */
	int rc = fd_call_caller(call, &c);
	if (rc < 0 || (rc = fd_caller_need(&c, FRONTDESK__V1__SCOPE__SCOPE_NODES_READ, fd_call_err(call))) < 0 ||
	    (rc = scope_of(call, &rd->tbl, &c, req->tenant_id, req->include_shared_pool, req->all_tenants, &s)) < 0 ||
	    (rc = fd_check_page(req->page_size, req->page_token, &limit, &after, fd_call_err(call))) < 0 ||
	    (rc = check_region(call, &rd->regions, "region", req->region, false)) < 0)
		return rc;
	if (req->state < 0 || req->state > STATE_DISABLED)
		return fd_call_fail(call, FD_EINVAL, "state: a NodeState");
	if (req->health < 0 || req->health > HEALTH_OVERLOADED)
		return fd_call_fail(call, FD_EINVAL, "health: a NodeHealth");
	if (strlen(req->tag) > MAX_TAG)
		return fd_call_fail(call, FD_EINVAL, "tag: at most %d characters", MAX_TAG);
	int region = req->region[0] ? region_find(&rd->regions, req->region) : -1;
	Frontdesk__V1__ListNodesResponse *out = fd_reply(call, resp);
	if (!out)
		return OOM(call);
	int64_t now = fd_now_ms();
	pthread_rwlock_rdlock(&rd->tbl.lock);
	rnode_t **hits = fd_arena_alloc(a, sizeof(*hits) * (rd->tbl.n + 1));
	size_t nh = 0;
	for (size_t i = 0; hits && i < rd->tbl.n; i++) {
		rnode_t *n = rd->tbl.nodes[i];
		if (n->id <= after || !scope_has(&s, n) || (region >= 0 && n->cfg->region != region) ||
		    (req->state && n->cfg->state != (int)req->state) ||
		    (req->health && node_health(&rd->tbl, n, now) != req->health) ||
		    (req->tag[0] && !has_tag(n->cfg, req->tag)))
			continue;
		hits[nh++] = n;
	}
	bool oom = !hits;
	if (hits) {
		qsort(hits, nh, sizeof(*hits), by_id);
		size_t take = nh < (size_t)limit ? nh : (size_t)limit;
		out->nodes = fd_arena_alloc(a, sizeof(*out->nodes) * (take + 1));
		for (size_t i = 0; out->nodes && i < take; i++) {
			bool owner = s.all || hits[i]->tenant == s.tenant;
			if (!(out->nodes[i] = node_message(&rd->tbl, &rd->regions, a, hits[i], owner, now)))
				break;
			out->n_nodes++;
		}
		oom = out->n_nodes < take;
		if (!oom && nh > take && !(out->next_page_token = fd_page_token(a, hits[take - 1]->id)))
			oom = true;
	}
	pthread_rwlock_unlock(&rd->tbl.lock);
	return oom ? OOM(call) : 0;
}

/* ---- UpdateNode ---- */

struct update_q {
	const rreq_t *r;
	int64_t id, version;
	const node_settings_t *in;
	bool rotate;
	char key[NODE_KEY_MAX];
};

static int update_tx(fd_tx_t *tx, void *arg)
{
	struct update_q *q = arg;
	const rreq_t *r = q->r;
	key_row_t k;
	if (q->rotate)
		key_new(r->rd->key_hash_key, r->t.tenant, q->id, q->key, k.hash, k.prefix);
	int rc = store_update_node(tx, r->t.arena, r->t.tenant, q->id, q->version, q->in, q->rotate ? &k : NULL, 0);
	if (rc < 0)
		return rc;
	/* A new key is its own action; an update changes where viewers are
	 * sent (URLs, capacity, region), so it is recorded too. */
	const char *detail[] = { "name", q->in->name, NULL };
	return audit_node(tx, r, q->rotate ? "node.rotate_key" : "node.update", q->id, detail, FD_TX_LAST);
}

/* The node's settings now (read lock held), merged with the request's
 * changes, copied into the arena; false when out of memory. */
static bool merge_settings(const rreq_t *r, const rcfg_t *c, const Frontdesk__V1__UpdateNodeRequest *req,
                           node_settings_t *in)
{
	fd_arena_t *a = r->t.arena;
	in->name = req->name[0] ? req->name : fd_arena_strdup(a, c->name);
	if (req->urls) {
		in->urls = req->urls->values;
		in->nurls = req->urls->n_values;
	} else {
		in->urls = fd_arena_alloc(a, sizeof(*in->urls) * 3);
		for (int i = 0; in->urls && i < c->nurls; i++) {
			Frontdesk__V1__NodeUrl *u = fd_arena_zalloc(a, sizeof(*u));
			if (!u)
				break;
			frontdesk__v1__node_url__init(u);
			u->format = c->formats[i];
			u->base_url = fd_arena_strdup(a, c->urls[i]);
			in->urls[in->nurls++] = u;
		}
	}
	in->region = req->region ? req->region->value : fd_arena_strdup(a, region_name(&r->rd->regions, c->region));
	in->country = req->country ? req->country->value : fd_arena_strdup(a, c->country);
	in->failure_domain = req->failure_domain ? req->failure_domain->value : fd_arena_strdup(a, c->failure_domain);
	in->max_connections = req->max_connections ? req->max_connections->value : c->max_connections;
	in->max_egress_mbps = req->max_egress_mbps ? req->max_egress_mbps->value : c->max_egress_mbps;
	in->weight = req->weight ? req->weight->value : c->weight;
	if (req->tags) {
		in->tags = req->tags->values;
		in->ntags = req->tags->n_values;
	} else {
		in->tags = fd_arena_alloc(a, sizeof(char *) * ((size_t)c->ntags + 1));
		for (int i = 0; in->tags && i < c->ntags; i++)
			in->tags[in->ntags++] = fd_arena_strdup(a, c->tags[i]);
	}
	in->high = req->high_water_percent ? req->high_water_percent->value : c->high_water;
	in->low = req->low_water_percent ? req->low_water_percent->value : c->low_water;
	/* An empty list arrives as NULL: only our own copies can be out of memory. */
	bool urls_ok = req->urls || (in->urls && in->nurls == (size_t)c->nurls);
	for (size_t i = 0; !req->urls && urls_ok && i < in->nurls; i++)
		urls_ok = in->urls[i]->base_url != NULL;
	bool tags_ok = req->tags || (in->tags && in->ntags == (size_t)c->ntags);
	for (size_t i = 0; !req->tags && tags_ok && i < in->ntags; i++)
		tags_ok = in->tags[i] != NULL;
	return in->name && in->region && in->country && in->failure_domain && urls_ok && tags_ok;
}

int rd_update_node(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__UpdateNodeRequest *req = (const void *)msg;
	rreq_t r;
	int rc = rreq_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_NODES_WRITE, req->tenant_id);
	if (rc < 0)
		return rc;
	rnode_t *n = visible_node(&r, req->node_id, true);
	node_settings_t in = { 0 };
	int64_t version = n ? n->cfg->version : 0;
	bool ok = n && merge_settings(&r, n->cfg, req, &in);
	pthread_rwlock_unlock(&r.rd->tbl.lock);
	if (!n)
		return -(int)fd_call_err(call)->code;
	if (!ok)
		return OOM(call);
	if ((rc = check_node(call, &r.rd->regions, &in)) < 0)
		return rc;
	struct update_q q = { .r = &r, .id = req->node_id, .version = version, .in = &in, .rotate = req->rotate_key };
	rc = rreq_run(&r, update_tx, &q);
	Frontdesk__V1__UpdateNodeResponse *out = rc == 0 ? fd_reply(call, resp) : NULL;
	if (out)
		out->node_key = req->rotate_key ? fd_arena_strdup(r.t.arena, q.key) : "";
	sodium_memzero(q.key, sizeof(q.key));
	if (rc < 0)
		return rc;
	if (!out || !out->node_key)
		return OOM(call);
	return answer_node(&r, req->node_id, &out->node);
}

/* ---- SetNodeState ---- */

struct state_q {
	const rreq_t *r;
	int64_t id;
	int state;
	const char *reason;
};

static int state_tx(fd_tx_t *tx, void *arg)
{
	struct state_q *q = arg;
	int rc = store_set_state(tx, q->r->t.tenant, q->id, q->state, q->reason, 0);
	if (rc < 0)
		return rc;
	const char *detail[] = { "state", enum_name(NODE_STATE_NAMES, q->state), "reason", q->reason, NULL };
	return audit_node(tx, q->r, "node.set_state", q->id, detail, FD_TX_LAST);
}

int rd_set_node_state(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__SetNodeStateRequest *req = (const void *)msg;
	rreq_t r;
	int rc = rreq_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_NODES_WRITE, req->tenant_id);
	if (rc < 0)
		return rc;
	if (req->state < STATE_ACTIVE || req->state > STATE_DISABLED)
		return fd_call_fail(call, FD_EINVAL, "state: ACTIVE, DRAINING or DISABLED");
	if ((rc = fd_check_text("reason", req->reason, 0, MAX_REASON, fd_call_err(call))) < 0)
		return rc;
	if (req->node_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "node_id: required");
	struct state_q q = { &r, req->node_id, (int)req->state, req->reason };
	if ((rc = rreq_run(&r, state_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__SetNodeStateResponse *out = fd_reply(call, resp);
	if (!out)
		return OOM(call);
	if ((rc = answer_node(&r, req->node_id, &out->node)) < 0)
		return rc;
	fd_info("node %" PRId64 " of tenant %" PRId64 " set to %s", req->node_id, r.t.tenant,
	        enum_name(NODE_STATE_NAMES, (int)req->state));
	return 0;
}
