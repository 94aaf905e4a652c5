/* beat.c - nodes' heartbeats: the load reports (unary Heartbeat and
 * StreamHeartbeats) and the node keys that authenticate them (keys.h).
 *
 * A node key is "fdn_<tenant>_<id>_<secret>": the node is found in the
 * table by id, its tenant must match, and the keyed BLAKE2b of the secret
 * is compared in constant time with the stored one. Nothing of it touches
 * the database: a heartbeat costs a table lookup, a hash and some atomics.
 * The replica shares what it received with the others (sync.h). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "routerd.h"
#include "index.h"
#include "keys.h"
#include "sync.h"
#include "fd/log.h"

#define MAX_LOAD 10000000.0
#define MAX_STREAM_VIEWERS 10000

/* ---- node keys ---- */

/* The node a bearer node key names, under the read lock (the caller
 * unlocks); NULL with UNAUTHENTICATED. A node this replica has not heard of
 * yet (registered on another one a moment ago) is read from the database. */
static rnode_t *node_of_key(fd_call_t *call, routerd_t *rd)
{
	const char *auth = fd_call_metadata(call, "authorization");
	const char *key = auth && strncmp(auth, "Bearer ", 7) == 0 ? auth + 7 : NULL;
	int64_t tenant, id;
	unsigned char h[32];
	if (key_parse(rd->key_hash_key, key, &tenant, &id, h)) {
		for (int attempt = 0; attempt < 2; attempt++) {
			pthread_rwlock_rdlock(&rd->tbl.lock);
			rnode_t *n = table_get(&rd->tbl, id);
			/* The hash is compared whatever the tenant, in constant time. */
			if (n && (sodium_memcmp(h, n->cfg->key_hash, sizeof(h)) == 0) & (n->tenant == tenant))
				return n;
			pthread_rwlock_unlock(&rd->tbl.lock);
			if (n || attempt)
				break;
			fd_err_t e;
			if (sync_reload_node(rd, tenant, id, &e) < 0)
				break;
		}
	}
	pthread_rwlock_rdlock(&rd->tbl.lock);
	fd_call_fail(call, FD_EUNAUTH, key ? "node key not recognised (rotated, or not a node key)"
	                                   : "a node key is required (authorization: Bearer fdn_...)");
	return NULL;
}

/* ---- load reports ---- */

/* measured_at is whole seconds: a report is too old once even the end of
 * its second is more than miss_after ago (it could not keep the node UP),
 * and too far ahead once its second starts more than the allowed clock
 * skew (FRONTDESK_CLOCK_SKEW) after now. */
static int check_measured_at(fd_call_t *call, const routerd_t *rd, int64_t at, int64_t now)
{
	if (at < 0 || at > INT64_MAX / 1000 - 1)
		return fd_call_fail(call, FD_EINVAL, "load.measured_at: 0 (unknown) or Unix seconds");
	if (at == 0)
		return 0;
	if ((at + 1) * 1000 < now - rd->tbl.miss_ms)
		return fd_call_fail(call, FD_EINVAL, "load.measured_at: %" PRId64 " s ago, older than the miss window "
		                    "(%" PRId64 " ms)", now / 1000 - at, rd->tbl.miss_ms);
	if (at * 1000 > now + rd->cfg->common.clock_skew * 1000)
		return fd_call_fail(call, FD_EINVAL, "load.measured_at: %" PRId64 " s ahead of routerd's clock "
		                    "(at most %" PRId64 " s allowed)", at - now / 1000, rd->cfg->common.clock_skew);
	return 0;
}

static int check_load(fd_call_t *call, const routerd_t *rd, const Frontdesk__V1__NodeLoad *l, int64_t now)
{
	if (!l)
		return fd_call_fail(call, FD_EINVAL, "load: required");
	if (l->active_connections < 0 || l->active_connections > MAX_LOAD)
		return fd_call_fail(call, FD_EINVAL, "load.active_connections: 0..%.0f", MAX_LOAD);
	if (!isfinite(l->egress_mbps) || l->egress_mbps < 0 || l->egress_mbps > MAX_LOAD)
		return fd_call_fail(call, FD_EINVAL, "load.egress_mbps: a finite number, 0..%.0f", MAX_LOAD);
	if (!isfinite(l->cpu_percent) || l->cpu_percent < 0 || l->cpu_percent > 100)
		return fd_call_fail(call, FD_EINVAL, "load.cpu_percent: a finite number, 0..100");
	int rc = check_measured_at(call, rd, l->measured_at, now);
	if (rc < 0)
		return rc;
	if (l->n_stream_viewers > MAX_STREAM_VIEWERS)
		return fd_call_fail(call, FD_EINVAL, "load.stream_viewers: at most %d entries", MAX_STREAM_VIEWERS);
	for (size_t i = 0; i < l->n_stream_viewers; i++) {
		const Frontdesk__V1__StreamViewers *v = l->stream_viewers[i];
		if (v->tenant_id < 0 || v->stream_id <= 0 || v->viewers < 0 || v->viewers > MAX_LOAD)
			return fd_call_fail(call, FD_EINVAL, "load.stream_viewers[%zu]: tenant_id >= 0, stream_id > 0, "
			                    "viewers 0..%.0f", i, MAX_LOAD);
	}
	return 0;
}

/* Per-tenant viewers of a report (shared-pool nodes), into n->shares
 * (n->mu held): the tenants with the most viewers when there are more than
 * MAX_SHARES. */
static void take_shares(rnode_t *n, const Frontdesk__V1__NodeLoad *l)
{
	n->nshares = 0;
	n->viewers_total = 0;
	for (size_t i = 0; i < l->n_stream_viewers; i++) {
		const Frontdesk__V1__StreamViewers *v = l->stream_viewers[i];
		n->viewers_total += v->viewers;
		int k = 0;
		while (k < n->nshares && n->shares[k].tenant != v->tenant_id)
			k++;
		if (k < n->nshares) {
			n->shares[k].viewers += v->viewers;
		} else if (n->nshares < MAX_SHARES) {
			n->shares[n->nshares++] = (rshare_t){ v->tenant_id, v->viewers };
		} else {
			int least = 0;
			for (int j = 1; j < n->nshares; j++)
				if (n->shares[j].viewers < n->shares[least].viewers)
					least = j;
			if (v->viewers > n->shares[least].viewers)
				n->shares[least] = (rshare_t){ v->tenant_id, v->viewers };
		}
	}
}

/* Applies a checked report (read lock held) and fills the directive. */
static void apply_report(routerd_t *rd, rnode_t *n, const Frontdesk__V1__NodeLoad *l, int64_t now,
                         Frontdesk__V1__NodeDirective *d)
{
	const rcfg_t *c = n->cfg;
	pthread_mutex_lock(&n->mu);
	health_t before = node_health(&rd->tbl, n, now);
	atomic_store(&n->conn, l->active_connections);
	atomic_store(&n->egress, l->egress_mbps);
	atomic_store(&n->cpu, l->cpu_percent);
	atomic_store(&n->pend_conn, 0);
	atomic_store(&n->pend_kbps, 0);
	double f = node_fill(n, false) * 100.0;
	bool over = atomic_load(&n->overloaded);
	if (!over && f > c->high_water)
		over = true;
	else if (over && f < c->low_water)
		over = false;
	atomic_store(&n->overloaded, over);
	take_shares(n, l);
	atomic_store(&n->hb_ms, now);
	pthread_mutex_unlock(&n->mu);
	index_touch(n);
	atomic_store(&n->share_dirty, true);
	atomic_store(&n->persist_dirty, true);
	health_t after = node_health(&rd->tbl, n, now);
	if (after != before)
		sync_urgent(rd);
	frontdesk__v1__node_directive__init(d);
	d->state = c->state;
	d->health = after;
	d->drain = c->state != STATE_ACTIVE || after == HEALTH_OVERLOADED;
	d->heartbeat_interval_ms = (int32_t)rd->cfg->heartbeat_ms;
	d->server_time_at = now / 1000;
}

/* Checks one report of the node n (read lock held) and applies it. */
static int report(fd_call_t *call, routerd_t *rd, rnode_t *n, int64_t node_id, const Frontdesk__V1__NodeLoad *l,
                  Frontdesk__V1__NodeDirective *d)
{
	if (node_id != 0 && node_id != n->id)
		return fd_call_fail(call, FD_EPERM, "node_id: this key is node %" PRId64 "'s", n->id);
	int64_t now = fd_now_ms();
	int rc = check_load(call, rd, l, now);
	if (rc < 0)
		return rc;
	apply_report(rd, n, l, now, d);
	return 0;
}

int rd_heartbeat(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__HeartbeatRequest *req = (const void *)msg;
	routerd_t *rd = routerd_of(call);
	fd_arena_t *a = fd_call_arena(call);
	Frontdesk__V1__HeartbeatResponse *out = fd_reply(call, resp);
	Frontdesk__V1__NodeDirective *d = fd_arena_zalloc(a, sizeof(*d));
	if (!out || !d)
		return OOM(call);
	rnode_t *n = node_of_key(call, rd);
	int rc = n ? report(call, rd, n, req->node_id, req->load, d) : -(int)fd_call_err(call)->code;
	pthread_rwlock_unlock(&rd->tbl.lock);
	if (rc < 0)
		return rc;
	fd_call_set_log_tenant(call, n->tenant);
	out->directive = d;
	return 0;
}

/* ---- StreamHeartbeats ---- */

/* The stream's node, as its key named it at open. */
typedef struct beat_stream {
	int64_t tenant, id;
	bool reported;
} beat_stream_t;

static int hs_open(fd_call_t *call, const ProtobufCMessage *req)
{
	(void)req;
	routerd_t *rd = routerd_of(call);
	rnode_t *n = node_of_key(call, rd);
	beat_stream_t *s = n ? calloc(1, sizeof(*s)) : NULL;
	if (s) {
		s->tenant = n->tenant;
		s->id = n->id;
		atomic_fetch_add(&n->streams, 1);
	}
	pthread_rwlock_unlock(&rd->tbl.lock);
	if (!n)
		return -(int)fd_call_err(call)->code;
	if (!s)
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory");
	fd_call_set_log_tenant(call, s->tenant);
	fd_call_set_user(call, s);
	return 0;
}

static int hs_message(fd_call_t *call, const ProtobufCMessage *msg)
{
	const Frontdesk__V1__StreamHeartbeatsRequest *req = (const void *)msg;
	routerd_t *rd = routerd_of(call);
	beat_stream_t *s = fd_call_user(call);
	Frontdesk__V1__NodeDirective d;
	pthread_rwlock_rdlock(&rd->tbl.lock);
	rnode_t *n = table_get(&rd->tbl, s->id);
	int rc = n ? report(call, rd, n, req->node_id, req->load, &d) : fd_call_fail(call, FD_ENOTFOUND, "node gone");
	pthread_rwlock_unlock(&rd->tbl.lock);
	if (rc < 0)
		return rc;
	s->reported = true;
	Frontdesk__V1__StreamHeartbeatsResponse out;
	frontdesk__v1__stream_heartbeats_response__init(&out);
	out.sequence = req->sequence;
	out.directive = &d;
	return fd_stream_send(call, &out.base);
}

/* However the stream ended (broken, cancelled, closed by either side), the
 * node is DOWN from now until it reports again, unless another stream of
 * it is open here. */
static void hs_closed(fd_call_t *call, bool cancelled)
{
	(void)cancelled;
	routerd_t *rd = routerd_of(call);
	beat_stream_t *s = fd_call_user(call);
	if (!s)
		return;
	fd_call_set_user(call, NULL);
	int64_t now = fd_now_ms();
	bool announce = false;
	pthread_rwlock_rdlock(&rd->tbl.lock);
	rnode_t *n = table_get(&rd->tbl, s->id);
	if (n && atomic_fetch_sub(&n->streams, 1) == 1 && s->reported) {
		atomic_store(&n->closed_ms, now);
		atomic_store(&n->persist_dirty, true);
		index_touch(n);
		announce = true;
	}
	pthread_rwlock_unlock(&rd->tbl.lock);
	if (announce) {
		fd_info("node %" PRId64 ": heartbeat stream %s", s->id, cancelled ? "broken" : "closed");
		sync_stream_closed(rd, s->tenant, s->id, now);
	}
	free(s);
}

const fd_stream_ops_t rd_stream_heartbeats = {
	.open = hs_open,
	.message = hs_message,
	.closed = hs_closed,
};
