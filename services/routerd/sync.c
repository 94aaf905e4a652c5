/* sync.c - what keeps replicas agreeing, and what watchers see.
 *
 * Channel frontdesk_nodes (one NOTIFY per message):
 *   "node <tenant> <id>"      a node's settings changed (nodes.c, in the
 *                             writing transaction): every replica reads it
 *   "tenant <tenant>"         a tenant's routing settings changed
 *   "hb <replica> <records>"  heartbeats a replica received since its last
 *                             share: "tenant,id,at_ms,conn,egress,cpu,over
 *                             [,tenant:viewers...]" separated by spaces
 *   "closed <replica> <records>"  nodes whose heartbeat stream ended:
 *                             "tenant,id,at_ms" separated by spaces
 * A replica skips its own "hb" and "closed". Heartbeat records are applied
 * only when newer than what the replica has.
 *
 * Threads:
 *   the listener (fd/listen.h) applies notifications; on (re)connecting it
 *   reads every node again (notifications may have been missed);
 *   the sharer sends "hb" every share_ms (at once after a health change or a
 *   closed stream), and writes node_live every persist_ms;
 *   the monitor, every MONITOR_MS, compares each node's health with the last
 *   it announced and sends the events (UP, DOWN, OVERLOADED, RECOVERED) and
 *   the watchers' periodic snapshots. Route never waits for it.
 *
 * Locks: the table lock, then wmu (watchers); the sharer's qmu alone. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "routerd.h"
#include "fd/listen.h"
#include "fd/log.h"
#include "fd/pgarray.h"
#include "fd/tenant.h"

#define MONITOR_MS 20
#define PAYLOAD_MAX 7800           /* NOTIFY payloads must stay under 8000 bytes */
#define MAX_CLOSED 1024
#define DEFAULT_SNAPSHOT_S 5
#define MAX_SNAPSHOT_S 3600

typedef struct watcher {
	struct watcher *next, *prev;
	fd_call_t *call;
	scope_t scope;
	int region;                   /* -1: any */
	uint32_t types;               /* bit (1 << type); 0: all */
	int64_t every_ms;             /* snapshots; 0: none */
	int64_t next_ms;              /* monotonic */
	bool dead;
} watcher_t;

typedef struct closed_note {
	int64_t tenant, id, at;
} closed_note_t;

struct routerd_sync {
	routerd_t *rd;
	char replica[17];
	fd_listener_t *listener;
	_Atomic bool stop;

	pthread_t sharer, monitor;
	bool sharer_started, monitor_started;
	pthread_mutex_t qmu;
	pthread_cond_t qcv;
	bool urgent;
	closed_note_t closed[MAX_CLOSED];
	int nclosed;

	pthread_mutex_t wmu;
	watcher_t *watchers;
};

/* ---- events to watchers ---- */

/* Whether w may see n now (table lock held): the tenant's access to the
 * shared pool is read at each event, so a SetSharedPoolAccess applies to
 * open watches too. */
static bool sees(routerd_t *rd, const watcher_t *w, const rnode_t *n)
{
	if (!scope_has(&w->scope, n) || (w->region >= 0 && n->cfg->region != w->region))
		return false;
	return w->scope.all || n->tenant == w->scope.tenant || table_tenant(&rd->tbl, w->scope.tenant)->shared_pool_allowed;
}

static bool wants(routerd_t *rd, const watcher_t *w, const rnode_t *n, int type)
{
	return !w->dead && sees(rd, w, n) && (!w->types || (w->types & (1u << type)));
}

static void send_or_end(watcher_t *w, const ProtobufCMessage *m)
{
	if (fd_stream_send(w->call, m) < 0)
		w->dead = true;
}

/* Under the table lock (either mode). */
static void emit_locked(routerd_t *rd, const rnode_t *n, int type, const char *reason)
{
	struct routerd_sync *s = rd->sync;
	if (!s)
		return;
	pthread_mutex_lock(&s->wmu);
	bool any = false;
	for (watcher_t *w = s->watchers; w && !any; w = w->next)
		any = wants(rd, w, n, type);
	if (any) {
		fd_arena_t arena, *a = &arena;
		fd_arena_init(a, 1 << 20);
		Frontdesk__V1__NodeEvent ev;
		Frontdesk__V1__WatchNodesResponse m;
		frontdesk__v1__node_event__init(&ev);
		frontdesk__v1__watch_nodes_response__init(&m);
		ev.type = type;
		ev.occurred_at = fd_now_ms() / 1000;
		ev.reason = (char *)reason;
		m.payload_case = FRONTDESK__V1__WATCH_NODES_RESPONSE__PAYLOAD_EVENT;
		m.event = &ev;
		for (watcher_t *w = s->watchers; w; w = w->next) {
			if (!wants(rd, w, n, type))
				continue;
			bool owner = w->scope.all || n->tenant == w->scope.tenant;
			if (!(ev.node = node_message(rd, a, n, owner, fd_now_ms())))
				break;
			send_or_end(w, &m.base);
		}
		fd_arena_free(a);
	}
	pthread_mutex_unlock(&s->wmu);
}

void sync_emit(routerd_t *rd, const rnode_t *n, int type, const char *reason)
{
	emit_locked(rd, n, type, reason);
}

/* A snapshot of what w may see (table lock and wmu held). */
static void snapshot(routerd_t *rd, watcher_t *w, int64_t now)
{
	fd_arena_t arena, *a = &arena;
	fd_arena_init(a, (size_t)64 << 20);
	Frontdesk__V1__NodeSnapshot snap;
	Frontdesk__V1__WatchNodesResponse m;
	frontdesk__v1__node_snapshot__init(&snap);
	frontdesk__v1__watch_nodes_response__init(&m);
	snap.taken_at = now / 1000;
	snap.nodes = fd_arena_alloc(a, sizeof(*snap.nodes) * (rd->tbl.n + 1));
	for (size_t i = 0; snap.nodes && i < rd->tbl.n; i++) {
		rnode_t *n = rd->tbl.nodes[i];
		if (!sees(rd, w, n))
			continue;
		Frontdesk__V1__NodeStatus *st = fd_arena_zalloc(a, sizeof(*st));
		if (!st)
			break;
		frontdesk__v1__node_status__init(st);
		st->node_id = n->id;
		st->state = n->cfg->state;
		st->health = node_health(rd, n, now);
		st->load = load_message(a, n);
		st->last_heartbeat_at = atomic_load(&n->hb_ms) / 1000;
		snap.nodes[snap.n_nodes++] = st;
	}
	m.payload_case = FRONTDESK__V1__WATCH_NODES_RESPONSE__PAYLOAD_SNAPSHOT;
	m.snapshot = &snap;
	if (snap.nodes)
		send_or_end(w, &m.base);
	else
		w->dead = true;
	fd_arena_free(a);
}

/* ---- WatchNodes ---- */

static int watch_open(fd_call_t *call, const ProtobufCMessage *msg)
{
	const Frontdesk__V1__WatchNodesRequest *req = (const void *)msg;
	routerd_t *rd = routerd_of(call);
	struct routerd_sync *s = rd->sync;
	fd_caller_t c;
	watcher_t *w = calloc(1, sizeof(*w));
	if (!w)
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory");
	int rc = fd_call_caller(call, &c);
	if (rc < 0 || (rc = fd_caller_need(&c, FRONTDESK__V1__SCOPE__SCOPE_NODES_READ, fd_call_err(call))) < 0 ||
	    (rc = scope_of(call, &c, req->tenant_id, req->include_shared_pool, req->all_tenants, &w->scope)) < 0)
		goto fail;
	w->region = -1;
	if (req->region[0] && (w->region = region_find(rd, req->region)) < 0) {
		rc = region_unknown(call, rd, "region", req->region);
		goto fail;
	}
	if (req->n_types > 16) {
		rc = fd_call_fail(call, FD_EINVAL, "types: at most 16");
		goto fail;
	}
	for (size_t i = 0; i < req->n_types; i++) {
		if (req->types[i] < EVT(REGISTERED) || req->types[i] > EVT(UPDATED)) {
			rc = fd_call_fail(call, FD_EINVAL, "types[%zu]: a NodeEventType", i);
			goto fail;
		}
		w->types |= 1u << req->types[i];
	}
	if (req->snapshot_interval_seconds > MAX_SNAPSHOT_S) {
		rc = fd_call_fail(call, FD_EINVAL, "snapshot_interval_seconds: at most %d", MAX_SNAPSHOT_S);
		goto fail;
	}
	w->every_ms = req->snapshot_interval_seconds < 0 ? 0
	              : 1000 * (int64_t)(req->snapshot_interval_seconds ? req->snapshot_interval_seconds : DEFAULT_SNAPSHOT_S);
	w->next_ms = fd_mono_ms() + w->every_ms;
	w->call = call;
	fd_call_ref(call);
	fd_call_set_user(call, w);
	pthread_rwlock_rdlock(&rd->tbl.lock);
	pthread_mutex_lock(&s->wmu);
	snapshot(rd, w, fd_now_ms());
	w->next = s->watchers;
	if (s->watchers)
		s->watchers->prev = w;
	s->watchers = w;
	pthread_mutex_unlock(&s->wmu);
	pthread_rwlock_unlock(&rd->tbl.lock);
	return 0;
fail:
	free(w);
	return rc;
}

static void watch_closed(fd_call_t *call, bool cancelled)
{
	(void)cancelled;
	struct routerd_sync *s = routerd_of(call)->sync;
	watcher_t *w = fd_call_user(call);
	if (!w)
		return;
	pthread_mutex_lock(&s->wmu);
	if (w->prev)
		w->prev->next = w->next;
	else if (s->watchers == w)
		s->watchers = w->next;
	if (w->next)
		w->next->prev = w->prev;
	pthread_mutex_unlock(&s->wmu);
	fd_call_set_user(call, NULL);
	fd_call_unref(call);
	free(w);
}

const fd_stream_ops_t rd_watch_nodes = {
	.open = watch_open,
	.closed = watch_closed,
};

/* ---- the monitor ---- */

static bool stopping(struct routerd_sync *s)
{
	return atomic_load(&s->stop);
}

static void monitor_pass(struct routerd_sync *s)
{
	routerd_t *rd = s->rd;
	int64_t now = fd_now_ms(), mono = fd_mono_ms();
	pthread_rwlock_rdlock(&rd->tbl.lock);
	for (size_t i = 0; i < rd->tbl.n; i++) {
		rnode_t *n = rd->tbl.nodes[i];
		int64_t hb = atomic_load(&n->hb_ms);
		health_t h = node_health(rd, n, now);
		if ((int)h == n->emitted)
			continue;
		int prev = n->emitted;
		n->emitted = h;
		char reason[96] = "";
		int type;
		if (h == HEALTH_DOWN) {
			type = EVT(DOWN);
			if (hb && atomic_load(&n->closed_ms) >= hb)
				snprintf(reason, sizeof(reason), "heartbeat stream ended");
			else if (hb)
				snprintf(reason, sizeof(reason), "no heartbeat for %.1f s", (double)(now - hb) / 1000.0);
			else
				snprintf(reason, sizeof(reason), "no heartbeat yet");
		} else if (h == HEALTH_OVERLOADED) {
			type = EVT(OVERLOADED);
			snprintf(reason, sizeof(reason), "above its high-water mark (%d%%)", n->cfg->high_water);
		} else {
			type = prev == HEALTH_OVERLOADED ? EVT(RECOVERED) : EVT(UP);
			if (type == EVT(RECOVERED))
				snprintf(reason, sizeof(reason), "below its low-water mark (%d%%)", n->cfg->low_water);
		}
		emit_locked(rd, n, type, reason);
	}
	pthread_mutex_lock(&s->wmu);
	for (watcher_t *w = s->watchers; w; w = w->next)
		if (!w->dead && w->every_ms && mono >= w->next_ms) {
			snapshot(rd, w, now);
			w->next_ms = mono + w->every_ms;
		}
	pthread_mutex_unlock(&s->wmu);
	pthread_rwlock_unlock(&rd->tbl.lock);
}

static void *monitor_main(void *arg)
{
	struct routerd_sync *s = arg;
	while (!stopping(s)) {
		monitor_pass(s);
		struct timespec ts = { 0, MONITOR_MS * 1000000L };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* ---- sharing heartbeats ---- */

static const fd_sql_t SQL_NOTIFY = { "routerd_notify", "SELECT pg_notify('frontdesk_nodes', $1)", 1 };

struct notify_q {
	char **payloads;
	size_t n;
};

static int notify_tx(fd_tx_t *tx, void *arg)
{
	struct notify_q *q = arg;
	for (size_t i = 0; i < q->n; i++) {
		const char *p[] = { q->payloads[i] };
		int rc = fd_tx_exec(tx, &SQL_NOTIFY, p, i + 1 == q->n ? FD_TX_LAST : 0, NULL);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void notify_all(struct routerd_sync *s, char **payloads, size_t n)
{
	if (n == 0)
		return;
	struct notify_q q = { payloads, n };
	fd_err_t err;
	fd_tx_opts_t o = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_real_ms() + 2000 };
	if (fd_db_run_opts(s->rd->db, &o, notify_tx, &q, &err) < 0)
		fd_warn("routerd: cannot share heartbeats with the other replicas: %s", err.msg);
}

/* Appends to a growing list of payloads; starts a new one when full. */
typedef struct payloads {
	char **v;
	size_t n, cap;
	size_t len;                   /* of v[n-1] */
	const char *head;
} payloads_t;

static bool pl_add(payloads_t *p, const char *rec)
{
	size_t rl = strlen(rec);
	if (!p->n || p->len + 1 + rl > PAYLOAD_MAX) {
		if (p->n == p->cap) {
			size_t cap = p->cap ? p->cap * 2 : 8;
			char **v = realloc(p->v, cap * sizeof(*v));
			if (!v)
				return false;
			p->v = v;
			p->cap = cap;
		}
		if (!(p->v[p->n] = malloc(PAYLOAD_MAX + 64)))
			return false;
		p->len = (size_t)snprintf(p->v[p->n], PAYLOAD_MAX + 64, "%s", p->head);
		p->n++;
	}
	char *cur = p->v[p->n - 1];
	cur[p->len++] = ' ';
	memcpy(cur + p->len, rec, rl + 1);
	p->len += rl;
	return true;
}

static void pl_free(payloads_t *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i]);
	free(p->v);
}

static void share(struct routerd_sync *s)
{
	routerd_t *rd = s->rd;
	char head[40];
	snprintf(head, sizeof(head), "hb %s", s->replica);
	payloads_t p = { .head = head };
	char rec[96 + MAX_SHARES * 32];
	pthread_rwlock_rdlock(&rd->tbl.lock);
	for (size_t i = 0; i < rd->tbl.n; i++) {
		rnode_t *n = rd->tbl.nodes[i];
		if (!atomic_exchange(&n->share_dirty, false))
			continue;
		pthread_mutex_lock(&n->mu);
		int len = snprintf(rec, sizeof(rec), "%" PRId64 ",%" PRId64 ",%" PRId64 ",%d,%.3f,%.1f,%d", n->tenant, n->id,
		                   atomic_load(&n->hb_ms), atomic_load(&n->conn), atomic_load(&n->egress),
		                   atomic_load(&n->cpu), atomic_load(&n->overloaded) ? 1 : 0);
		for (int k = 0; k < n->nshares && len < (int)sizeof(rec) - 32; k++)
			len += snprintf(rec + len, sizeof(rec) - (size_t)len, ",%" PRId64 ":%d", n->shares[k].tenant,
			                n->shares[k].viewers);
		pthread_mutex_unlock(&n->mu);
		if (!pl_add(&p, rec))
			break;
	}
	pthread_rwlock_unlock(&rd->tbl.lock);
	/* Closed streams. */
	pthread_mutex_lock(&s->qmu);
	closed_note_t notes[MAX_CLOSED];
	int nn = s->nclosed;
	memcpy(notes, s->closed, sizeof(*notes) * (size_t)nn);
	s->nclosed = 0;
	pthread_mutex_unlock(&s->qmu);
	/* Closed streams first, in payloads of their own: the others mark the
	 * nodes DOWN without waiting for anything else. */
	char chead[40];
	snprintf(chead, sizeof(chead), "closed %s", s->replica);
	payloads_t c = { .head = chead };
	for (int i = 0; i < nn; i++) {
		snprintf(rec, sizeof(rec), "%" PRId64 ",%" PRId64 ",%" PRId64, notes[i].tenant, notes[i].id, notes[i].at);
		if (!pl_add(&c, rec))
			break;
	}
	notify_all(s, c.v, c.n);
	pl_free(&c);
	notify_all(s, p.v, p.n);
	pl_free(&p);
}

/* ---- persisting heartbeats ---- */

static const fd_sql_t SQL_PERSIST = {
	"routerd_persist",
	"INSERT INTO frontdesk.node_live AS l (tenant_id, node_id, heartbeat_at, connections, egress_mbps,"
	"  cpu_percent, overloaded, stream_closed_at)"
	" SELECT $1, u.id, to_timestamp(u.hb / 1000.0), u.conn, u.egress, u.cpu, u.over,"
	"  CASE WHEN u.closed > 0 THEN to_timestamp(u.closed / 1000.0) END"
	" FROM unnest($2::bigint[], $3::bigint[], $4::int[], $5::float8[], $6::float8[], $7::boolean[], $8::bigint[])"
	"  AS u(id, hb, conn, egress, cpu, over, closed)"
	" WHERE u.hb > 0"
	" ON CONFLICT (tenant_id, node_id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at,"
	"  connections = EXCLUDED.connections, egress_mbps = EXCLUDED.egress_mbps,"
	"  cpu_percent = EXCLUDED.cpu_percent, overloaded = EXCLUDED.overloaded,"
	"  stream_closed_at = EXCLUDED.stream_closed_at"
	" WHERE l.heartbeat_at <= EXCLUDED.heartbeat_at",
	8,
};

struct persist_q {
	const char *params[8];
};

static int persist_tx(fd_tx_t *tx, void *arg)
{
	struct persist_q *q = arg;
	return fd_tx_exec(tx, &SQL_PERSIST, q->params, FD_TX_LAST, NULL);
}

/* Writes the dirty nodes of each tenant, one transaction per tenant. */
static void persist(struct routerd_sync *s)
{
	routerd_t *rd = s->rd;
	fd_arena_t arena, *a = &arena;
	size_t i = 0;
	for (;;) {
		fd_arena_init(a, (size_t)256 << 20);
		pthread_rwlock_rdlock(&rd->tbl.lock);
		/* The next tenant with dirty nodes, from position i. */
		while (i < rd->tbl.n && !atomic_load(&rd->tbl.nodes[i]->persist_dirty))
			i++;
		if (i >= rd->tbl.n) {
			pthread_rwlock_unlock(&rd->tbl.lock);
			fd_arena_free(a);
			break;
		}
		int64_t tenant = rd->tbl.nodes[i]->tenant;
		size_t lo, hi;
		table_range(&rd->tbl, tenant, &lo, &hi);
		size_t cap = hi - i;
		int64_t *id = fd_arena_alloc(a, sizeof(int64_t) * cap), *hb = fd_arena_alloc(a, sizeof(int64_t) * cap),
		        *conn = fd_arena_alloc(a, sizeof(int64_t) * cap), *closed = fd_arena_alloc(a, sizeof(int64_t) * cap);
		char **egress = fd_arena_alloc(a, sizeof(char *) * cap), **cpu = fd_arena_alloc(a, sizeof(char *) * cap),
		     **over = fd_arena_alloc(a, sizeof(char *) * cap);
		size_t k = 0;
		for (size_t j = i; id && hb && conn && closed && egress && cpu && over && j < hi; j++) {
			rnode_t *n = rd->tbl.nodes[j];
			if (!atomic_exchange(&n->persist_dirty, false))
				continue;
			id[k] = n->id;
			hb[k] = atomic_load(&n->hb_ms);
			conn[k] = atomic_load(&n->conn);
			closed[k] = atomic_load(&n->closed_ms);
			egress[k] = fd_arena_printf(a, "%.3f", atomic_load(&n->egress));
			cpu[k] = fd_arena_printf(a, "%.1f", atomic_load(&n->cpu));
			over[k] = atomic_load(&n->overloaded) ? "t" : "f";
			k++;
		}
		i = hi;
		pthread_rwlock_unlock(&rd->tbl.lock);
		struct persist_q q = { { fd_arena_printf(a, "%" PRId64, tenant), pg_int_array(a, id, k), pg_int_array(a, hb, k),
		                         pg_int_array(a, conn, k), pg_text_array(a, egress, k), pg_text_array(a, cpu, k),
		                         pg_text_array(a, over, k), pg_int_array(a, closed, k) } };
		bool ok = k > 0;
		for (int p = 0; ok && p < 8; p++)
			ok = q.params[p] != NULL;
		fd_err_t err;
		fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_real_ms() + 5000 };
		if (ok && fd_tenant_run_opts(rd->db, &o, persist_tx, &q, &err) < 0)
			fd_warn("routerd: cannot write the last heartbeats of tenant %" PRId64 ": %s", tenant, err.msg);
		fd_arena_free(a);
	}
}

static void *sharer_main(void *arg)
{
	struct routerd_sync *s = arg;
	const routerd_config_t *cfg = s->rd->cfg;
	int64_t next_share = fd_mono_ms() + cfg->share_ms, next_persist = fd_mono_ms() + cfg->persist_ms;
	pthread_mutex_lock(&s->qmu);
	while (!stopping(s)) {
		int64_t now = fd_mono_ms();
		if (!s->urgent && now < next_share) {
			int64_t wait = next_share - now;
			struct timespec until = fd_real_after(wait);
			pthread_cond_timedwait(&s->qcv, &s->qmu, &until);
			continue;
		}
		s->urgent = false;
		pthread_mutex_unlock(&s->qmu);
		share(s);
		next_share = fd_mono_ms() + cfg->share_ms;
		if (fd_mono_ms() >= next_persist) {
			persist(s);
			next_persist = fd_mono_ms() + cfg->persist_ms;
		}
		pthread_mutex_lock(&s->qmu);
	}
	pthread_mutex_unlock(&s->qmu);
	return NULL;
}

void sync_urgent(routerd_t *rd)
{
	struct routerd_sync *s = rd->sync;
	if (!s)
		return;
	pthread_mutex_lock(&s->qmu);
	s->urgent = true;
	pthread_cond_signal(&s->qcv);
	pthread_mutex_unlock(&s->qmu);
}

void sync_stream_closed(routerd_t *rd, int64_t tenant, int64_t id, int64_t at_ms)
{
	struct routerd_sync *s = rd->sync;
	if (!s)
		return;
	pthread_mutex_lock(&s->qmu);
	if (s->nclosed < MAX_CLOSED)
		s->closed[s->nclosed++] = (closed_note_t){ tenant, id, at_ms };
	s->urgent = true;
	pthread_cond_signal(&s->qcv);
	pthread_mutex_unlock(&s->qmu);
}

/* ---- notifications ---- */

/* One "tenant,id,at,conn,egress,cpu,over[,t:v...]" record of another replica. */
static void apply_record(routerd_t *rd, char *rec)
{
	int64_t tenant, id, at;
	int conn, over, used = 0;
	double egress, cpu;
	if (sscanf(rec, "%" SCNd64 ",%" SCNd64 ",%" SCNd64 ",%d,%lf,%lf,%d%n", &tenant, &id, &at, &conn, &egress, &cpu,
	           &over, &used) != 7)
		return;
	pthread_rwlock_rdlock(&rd->tbl.lock);
	rnode_t *n = table_get(&rd->tbl, id);
	if (n && n->tenant == tenant) {
		pthread_mutex_lock(&n->mu);
		if (at > atomic_load(&n->hb_ms)) {
			atomic_store(&n->conn, conn);
			atomic_store(&n->egress, egress);
			atomic_store(&n->cpu, cpu);
			atomic_store(&n->overloaded, over != 0);
			atomic_store(&n->pend_conn, 0);
			atomic_store(&n->pend_kbps, 0);
			n->nshares = 0;
			n->viewers_total = 0;
			for (char *p = rec + used; *p == ',' && n->nshares < MAX_SHARES;) {
				int64_t t;
				int v, u = 0;
				if (sscanf(p, ",%" SCNd64 ":%d%n", &t, &v, &u) != 2 || u == 0)
					break;
				n->shares[n->nshares++] = (rshare_t){ t, v };
				n->viewers_total += v;
				p += u;
			}
			atomic_store(&n->hb_ms, at);
		}
		pthread_mutex_unlock(&n->mu);
	}
	pthread_rwlock_unlock(&rd->tbl.lock);
}

static void on_notify(void *arg, const char *payload)
{
	struct routerd_sync *s = arg;
	routerd_t *rd = s->rd;
	fd_err_t err;
	int64_t tenant, id, at;
	char replica[17];
	int used = 0;
	if (sscanf(payload, "node %" SCNd64 " %" SCNd64, &tenant, &id) == 2) {
		if (nodes_reload(rd, tenant, id, &err) < 0)
			fd_warn("routerd: cannot read node %" PRId64 " after its change: %s", id, err.msg);
	} else if (sscanf(payload, "tenant %" SCNd64, &tenant) == 1) {
		if (tenant_reload(rd, tenant, &err) < 0)
			fd_warn("routerd: cannot read tenant %" PRId64 "'s routing settings: %s", tenant, err.msg);
	} else if (sscanf(payload, "closed %16s%n", replica, &used) == 1 && used > 0) {
		if (strcmp(replica, s->replica) == 0)
			return;
		char *copy = strdup(payload + used);
		for (char *save = NULL, *rec = copy ? strtok_r(copy, " ", &save) : NULL; rec; rec = strtok_r(NULL, " ", &save)) {
			if (sscanf(rec, "%" SCNd64 ",%" SCNd64 ",%" SCNd64, &tenant, &id, &at) != 3)
				continue;
			pthread_rwlock_rdlock(&rd->tbl.lock);
			rnode_t *n = table_get(&rd->tbl, id);
			if (n && n->tenant == tenant && at > atomic_load(&n->closed_ms))
				atomic_store(&n->closed_ms, at);
			pthread_rwlock_unlock(&rd->tbl.lock);
		}
		free(copy);
	} else if (sscanf(payload, "hb %16s%n", replica, &used) == 1 && used > 0) {
		if (strcmp(replica, s->replica) == 0)
			return;
		char *copy = strdup(payload + used);
		for (char *save = NULL, *rec = copy ? strtok_r(copy, " ", &save) : NULL; rec; rec = strtok_r(NULL, " ", &save))
			apply_record(rd, rec);
		free(copy);
	}
}

static void on_up(void *arg)
{
	struct routerd_sync *s = arg;
	fd_err_t err;
	if (nodes_load_all(s->rd, &err) < 0)
		fd_warn("routerd: cannot read the nodes again after reconnecting: %s", err.msg);
}

/* ---- life ---- */

int sync_init(routerd_t *rd, fd_err_t *err)
{
	struct routerd_sync *s = calloc(1, sizeof(*s));
	if (!s)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	s->rd = rd;
	unsigned char rnd[8];
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(s->replica, sizeof(s->replica), rnd, sizeof(rnd));
	atomic_init(&s->stop, false);
	pthread_mutex_init(&s->qmu, NULL);
	pthread_cond_init(&s->qcv, NULL);
	pthread_mutex_init(&s->wmu, NULL);
	rd->sync = s;   /* sync_fini frees it from here on */
	const fd_service_config_t *cfg = &rd->cfg->common;
	fd_listen_opts_t lo = {
		.channel = "frontdesk_nodes", .application_name = "routerd-listen",
		.database_url = cfg->database_url, .db_user = cfg->db_user, .db_password = cfg->db_password,
		.up = on_up, .notify = on_notify, .arg = s,
	};
	if (!(s->listener = fd_listener_start(&lo, err)))
		return -FD_EINTERNAL;
	if (pthread_create(&s->sharer, NULL, sharer_main, s) != 0)
		return fd_err_set(err, FD_EINTERNAL, "cannot start the heartbeat sharing thread");
	s->sharer_started = true;
	if (pthread_create(&s->monitor, NULL, monitor_main, s) != 0)
		return fd_err_set(err, FD_EINTERNAL, "cannot start the node monitor thread");
	s->monitor_started = true;
	return 0;
}

/* After the server stopped: every stream's closed() has run. */
void sync_fini(routerd_t *rd)
{
	struct routerd_sync *s = rd ? rd->sync : NULL;
	if (!s)
		return;
	pthread_mutex_lock(&s->qmu);
	atomic_store(&s->stop, true);
	pthread_cond_broadcast(&s->qcv);
	pthread_mutex_unlock(&s->qmu);
	if (s->sharer_started)
		pthread_join(s->sharer, NULL);
	if (s->monitor_started)
		pthread_join(s->monitor, NULL);
	fd_listener_stop(s->listener);
	pthread_mutex_lock(&s->wmu);
	while (s->watchers) {
		watcher_t *w = s->watchers;
		s->watchers = w->next;
		fd_stream_finish(w->call, -FD_EUNAVAIL, "routerd is stopping");
		fd_call_set_user(w->call, NULL);
		fd_call_unref(w->call);
		free(w);
	}
	pthread_mutex_unlock(&s->wmu);
	pthread_mutex_destroy(&s->qmu);
	pthread_cond_destroy(&s->qcv);
	pthread_mutex_destroy(&s->wmu);
	rd->sync = NULL;
	free(s);
}
