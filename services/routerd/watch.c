/* watch.c - WatchNodes, node events and the health monitor (watch.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "watch.h"
#include "view.h"
#include "fd/log.h"

#define MONITOR_MS 20
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

struct routerd_watch {
	routerd_t *rd;
	_Atomic bool stop;
	pthread_t monitor;
	bool monitor_started;
	pthread_mutex_t wmu;          /* the list */
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

void watch_emit(routerd_t *rd, const rnode_t *n, int type, const char *reason)
{
	struct routerd_watch *s = rd->watch;
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
			if (!(ev.node = node_message(&rd->tbl, &rd->regions, a, n, owner, fd_now_ms())))
				break;
			send_or_end(w, &m.base);
		}
		fd_arena_free(a);
	}
	pthread_mutex_unlock(&s->wmu);
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
		st->health = node_health(&rd->tbl, n, now);
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
	struct routerd_watch *s = rd->watch;
	fd_caller_t c;
	watcher_t *w = calloc(1, sizeof(*w));
	if (!w)
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory");
	int rc = fd_call_caller(call, &c);
	if (rc < 0 || (rc = fd_caller_need(&c, FRONTDESK__V1__SCOPE__SCOPE_NODES_READ, fd_call_err(call))) < 0 ||
	    (rc = scope_of(call, &rd->tbl, &c, req->tenant_id, req->include_shared_pool, req->all_tenants, &w->scope)) < 0)
		goto fail;
	w->region = -1;
	if (req->region[0] && (w->region = region_find(&rd->regions, req->region)) < 0) {
		rc = region_unknown(call, &rd->regions, "region", req->region);
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
	struct routerd_watch *s = routerd_of(call)->watch;
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

static void monitor_pass(struct routerd_watch *s)
{
	routerd_t *rd = s->rd;
	int64_t now = fd_now_ms(), mono = fd_mono_ms();
	pthread_rwlock_rdlock(&rd->tbl.lock);
	for (size_t i = 0; i < rd->tbl.n; i++) {
		rnode_t *n = rd->tbl.nodes[i];
		int64_t hb = atomic_load(&n->hb_ms);
		health_t h = node_health(&rd->tbl, n, now);
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
		watch_emit(rd, n, type, reason);
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
	struct routerd_watch *s = arg;
	while (!atomic_load(&s->stop)) {
		monitor_pass(s);
		struct timespec ts = { 0, MONITOR_MS * 1000000L };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* ---- life ---- */

int watch_init(routerd_t *rd, fd_err_t *err)
{
	struct routerd_watch *s = calloc(1, sizeof(*s));
	if (!s)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	s->rd = rd;
	atomic_init(&s->stop, false);
	pthread_mutex_init(&s->wmu, NULL);
	rd->watch = s;   /* watch_fini frees it from here on */
	if (pthread_create(&s->monitor, NULL, monitor_main, s) != 0)
		return fd_err_set(err, FD_EINTERNAL, "cannot start the node monitor thread");
	s->monitor_started = true;
	return 0;
}

void watch_fini(routerd_t *rd)
{
	struct routerd_watch *s = rd ? rd->watch : NULL;
	if (!s)
		return;
	atomic_store(&s->stop, true);
	if (s->monitor_started)
		pthread_join(s->monitor, NULL);
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
	pthread_mutex_destroy(&s->wmu);
	rd->watch = NULL;
	free(s);
}
