/* events.c - line and session events: this replica's LISTEN connection
 * (NOTIFY frontdesk_lines, see frontdesk.line_event()), the WatchLineEvents
 * streams it feeds, and the frontdesk.line_watchers rows that tell every
 * replica whether a tenant is being watched.
 *
 * The LISTEN connection is fd/listen.h's: one thread with a libpq
 * connection of its own, reconnecting with a backoff; start-up never waits
 * for it.
 *
 * A notification carries ids only. For each one the thread tells the
 * observer it was started with (main.c's: the heartbeat cache, then the
 * edge's WatchPlaybackEvents streams), then, when a watcher of this replica
 * may want it, reads the line or session once in the tenant's transaction
 * and sends the event to every watcher whose filters match.
 *
 * Missed events are never silent: when the LISTEN connection is lost, or an
 * event cannot be read, the streams that could have wanted it are ended with
 * UNAVAILABLE so that their clients re-read and watch again.
 *
 * Locks, in the order they may be taken: rows_mu (this replica's writes to
 * line_watchers), then mu (watchers, per-tenant counts); cache_mu is never
 * held with another. fd_stream_send and fd_stream_finish are called under
 * mu: they take only the call's own lock and never run closed() themselves
 * (rpc_server.c delivers closed() from a worker, with the call's lock
 * released), and closed() takes mu without holding anything of the call's,
 * so no cycle exists. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sodium.h>
#include "linesd.h"
#include "store.h"
#include "fd/listen.h"
#include "fd/log.h"

#define REFRESH_MS 10000           /* line_watchers rows are renewed this often (store.h: WATCHER_TTL) */
#define WATCHED_TTL_MS 1000        /* events_watched answers are reused this long */
#define TX_BUDGET_MS 5000          /* deadline of the thread's own transactions */
#define MAX_TYPES 16
#define EVENT_ARENA_LIMIT ((size_t)4 << 20)
#define CACHE_SLOTS 1024           /* a power of two */
#define CACHE_PROBE 8

typedef Frontdesk__V1__LineEventType event_type_t;
#define EV(name) FRONTDESK__V1__LINE_EVENT_TYPE__LINE_EVENT_TYPE_##name

/* One WatchLineEvents stream. Listed (and its call referenced) from a
 * successful open() until its closed(). */
typedef struct watcher {
	struct watcher *next, *prev;
	fd_call_t *call;
	int64_t tenant;
	int64_t line_id;                  /* 0: any line */
	uint32_t types;                   /* bit (1 << type); 0: every type */
	bool dead;                        /* ended (a send failed, or events were missed):
	                                     no more sends; closed() unlists it */
	size_t prefix_len;
	char prefix[FD_PATH_MAX];         /* reseller_path prefix; "": the whole tenant */
} watcher_t;

/* Watchers of one tenant on this replica (the line_watchers row is ours
 * while n > 0). */
typedef struct tenant_count {
	int64_t tenant;
	int n;
} tenant_count_t;

/* events_watched's answer for a tenant. tenant 0: an empty slot. */
typedef struct cache_slot {
	int64_t tenant;
	int64_t checked_ms;               /* monotonic; 0: must be asked again */
	unsigned gen;                     /* bumped by every writer: a query's answer is
	                                     stored only if nobody wrote meanwhile */
	bool watched;
} cache_slot_t;

struct linesd_events {
	linesd_t *l;
	events_observer_t obs;            /* told of every event, and of losing them */
	char replica[33];                 /* this process's line_watchers.replica, random */
	fd_listener_t *listener;
	int64_t next_refresh;             /* monotonic ms: line_watchers renewal (listener thread) */
	atomic_bool listening;            /* written under mu (see watch_open) */
	int64_t last_id;                  /* the thread's last LineEvent id */

	pthread_mutex_t rows_mu;
	pthread_mutex_t mu;
	watcher_t *watchers;
	tenant_count_t *counts;
	size_t ncounts, capcounts;

	pthread_mutex_t cache_mu;
	cache_slot_t cache[CACHE_SLOTS];
};

/* The deadline of the thread's own transactions (a gRPC-style deadline:
 * the system's wall clock). */
static int64_t deadline_ms(void)
{
	return fd_real_ms() + TX_BUDGET_MS;
}

/* ---- statements ---- */

/* ---- this replica's line_watchers rows ---- */

struct row_op {
	const fd_sql_t *sql;
	char tenant[24];
	const char *replica;
};

static int row_op_tx(fd_tx_t *tx, void *arg)
{
	struct row_op *o = arg;
	const char *params[] = { o->tenant, o->replica };
	return fd_tx_exec(tx, o->sql, params, FD_TX_LAST, NULL);
}

/* Under rows_mu. */
static int row_write(struct linesd_events *ev, const fd_sql_t *sql, int64_t tenant, fd_err_t *err)
{
	struct row_op o = { .sql = sql, .replica = ev->replica };
	snprintf(o.tenant, sizeof(o.tenant), "%" PRId64, tenant);
	fd_tx_opts_t opts = { .tenant_id = tenant, .deadline_ms = deadline_ms() };
	return fd_db_run_opts(ev->l->db, &opts, row_op_tx, &o, err);
}

/* Renews the rows of every tenant watched here (the listener thread). */
static void rows_refresh(struct linesd_events *ev)
{
	pthread_mutex_lock(&ev->rows_mu);
	pthread_mutex_lock(&ev->mu);
	size_t n = ev->ncounts;
	int64_t *tenants = n ? malloc(n * sizeof(*tenants)) : NULL;
	for (size_t i = 0; tenants && i < n; i++)
		tenants[i] = ev->counts[i].tenant;
	pthread_mutex_unlock(&ev->mu);
	if (n && !tenants)
		fd_warn("line watchers: out of memory renewing their rows");
	for (size_t i = 0; tenants && i < n; i++) {
		fd_err_t err = { 0 };
		if (row_write(ev, &SQL_WATCHER_UPSERT, tenants[i], &err) < 0)
			fd_warn("line watchers of tenant %" PRId64 ": cannot renew their row: %s", tenants[i], err.msg);
	}
	pthread_mutex_unlock(&ev->rows_mu);
	free(tenants);
}

/* Under mu. The count's slot, or NULL. */
static tenant_count_t *count_of(struct linesd_events *ev, int64_t tenant)
{
	for (size_t i = 0; i < ev->ncounts; i++)
		if (ev->counts[i].tenant == tenant)
			return &ev->counts[i];
	return NULL;
}

/* Whether tenant has watchers here; takes mu. */
static bool has_watchers(struct linesd_events *ev, int64_t tenant)
{
	pthread_mutex_lock(&ev->mu);
	bool any = count_of(ev, tenant) != NULL;
	pthread_mutex_unlock(&ev->mu);
	return any;
}

/* Under mu. -FD_EEXHAUSTED when out of memory. */
static int count_add(struct linesd_events *ev, int64_t tenant)
{
	tenant_count_t *c = count_of(ev, tenant);
	if (c) {
		c->n++;
		return 0;
	}
	if (ev->ncounts == ev->capcounts) {
		size_t cap = ev->capcounts ? ev->capcounts * 2 : 16;
		tenant_count_t *v = realloc(ev->counts, cap * sizeof(*v));
		if (!v)
			return -FD_EEXHAUSTED;
		ev->counts = v;
		ev->capcounts = cap;
	}
	ev->counts[ev->ncounts++] = (tenant_count_t){ tenant, 1 };
	return 0;
}

/* Under mu. The watchers of tenant left. */
static int count_sub(struct linesd_events *ev, int64_t tenant)
{
	tenant_count_t *c = count_of(ev, tenant);
	if (!c)
		return 0;
	int left = --c->n;
	if (left == 0)
		*c = ev->counts[--ev->ncounts];
	return left;
}

/* ---- events_watched's cache ---- */

/* Under cache_mu: tenant's slot, or the slot to put it in (an empty one, or
 * the least recently checked of its probe range, emptied). */
static cache_slot_t *cache_slot(struct linesd_events *ev, int64_t tenant)
{
	size_t h = (size_t)(((uint64_t)tenant * 0x9E3779B97F4A7C15u) >> 32);
	cache_slot_t *victim = NULL;
	for (size_t i = 0; i < CACHE_PROBE; i++) {
		cache_slot_t *s = &ev->cache[(h + i) & (CACHE_SLOTS - 1)];
		if (s->tenant == tenant)
			return s;
		if (!victim || (victim->tenant != 0 && (s->tenant == 0 || s->checked_ms < victim->checked_ms)))
			victim = s;
	}
	*victim = (cache_slot_t){ .tenant = tenant };
	return victim;
}

static void watched_put(struct linesd_events *ev, int64_t tenant, bool watched, int64_t checked_ms)
{
	pthread_mutex_lock(&ev->cache_mu);
	cache_slot_t *s = cache_slot(ev, tenant);
	s->watched = watched;
	s->checked_ms = checked_ms;
	s->gen++;
	pthread_mutex_unlock(&ev->cache_mu);
}

struct watched_q {
	char tenant[24];
	bool watched;
};

static int watched_tx(fd_tx_t *tx, void *arg)
{
	struct watched_q *q = arg;
	const char *params[] = { q->tenant };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_WATCHED, params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	q->watched = PQntuples(res) == 1 && col_bool(res, 0, 0);
	return 0;
}

bool events_watched(linesd_t *l, int64_t tenant)
{
	struct linesd_events *ev = l->events;
	if (!ev)
		return true;   /* unknown: announcing costs a NOTIFY, a missed event more */
	int64_t now = fd_mono_ms();
	pthread_mutex_lock(&ev->cache_mu);
	cache_slot_t *s = cache_slot(ev, tenant);
	if (s->checked_ms && now - s->checked_ms < WATCHED_TTL_MS) {
		bool watched = s->watched;
		pthread_mutex_unlock(&ev->cache_mu);
		return watched;
	}
	/* A known answer gone stale is renewed by this thread alone: the others
	 * keep using it meanwhile. */
	if (s->checked_ms)
		s->checked_ms = now;
	unsigned gen = ++s->gen;
	pthread_mutex_unlock(&ev->cache_mu);

	struct watched_q q = { .watched = false };
	snprintf(q.tenant, sizeof(q.tenant), "%" PRId64, tenant);
	fd_err_t err = { 0 };
	fd_tx_opts_t opts = { .tenant_id = tenant, .deadline_ms = deadline_ms(), .read_only = true };
	if (fd_db_run_opts(l->db, &opts, watched_tx, &q, &err) < 0) {
		fd_debug("line watchers of tenant %" PRId64 ": %s; assuming watched", tenant, err.msg);
		q.watched = true;
	}
	/* Asked after the query: a watcher registered meanwhile counts. */
	if (has_watchers(ev, tenant))
		q.watched = true;

	pthread_mutex_lock(&ev->cache_mu);
	s = cache_slot(ev, tenant);
	if (s->gen == gen) {   /* not written since (a watcher registered, a newer answer) */
		s->watched = q.watched;
		s->checked_ms = fd_mono_ms();
	}
	pthread_mutex_unlock(&ev->cache_mu);
	return q.watched;
}

/* ---- WatchLineEvents ---- */

struct watch_check {
	fd_tctx_t *r;
	int64_t reseller_id, line_id;
	watcher_t *w;
};

/* The filters against the caller's subtree; sets the watcher's prefix. */
static int watch_check_tx(fd_tx_t *tx, void *arg)
{
	struct watch_check *wc = arg;
	fd_tctx_t *r = wc->r;
	const char *visible = fd_subtree_prefix(&r->c);
	const char *prefix = visible;
	int rc;
	if (wc->reseller_id && (rc = lines_reseller(tx, r, wc->reseller_id, &prefix, NULL)) < 0)
		return rc;
	if (wc->line_id) {
		const char *params[] = { r->tenant_s, lines_i64(r, wc->line_id) };
		if (!params[1])
			return TX_OOM(tx);
		PGresult *res;
		if ((rc = fd_tx_exec(tx, &SQL_WATCH_LINE, params, 0, &res)) < 0)
			return rc;
		if (PQntuples(res) != 1 || strncmp(PQgetvalue(res, 0, 0), visible, strlen(visible)) != 0)
			return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "line %" PRId64 " not found", wc->line_id);
	}
	size_t n = strlen(prefix);
	if (n >= sizeof(wc->w->prefix))
		return fd_err_set(fd_tx_err(tx), FD_EINTERNAL, "reseller path too long");
	memcpy(wc->w->prefix, prefix, n + 1);
	wc->w->prefix_len = n;
	return 0;
}

static int watch_start(fd_call_t *call, const ProtobufCMessage *req_)
{
	const Frontdesk__V1__WatchLineEventsRequest *req = (const void *)req_;
	fd_tctx_t r;
	int rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_LINES_READ, req->tenant_id, "lines");
	if (rc < 0)
		return rc;
	struct linesd_events *ev = linesd_of(r.call)->events;
	if (!ev)
		return fd_call_fail(call, FD_EUNAVAIL, "line events are not available; try again");
	if (req->n_types > MAX_TYPES)
		return fd_call_fail(call, FD_EINVAL, "types: at most %d", MAX_TYPES);
	uint32_t types = 0;
	for (size_t i = 0; i < req->n_types; i++) {
		if (req->types[i] < EV(LINE_CREATED) || req->types[i] > EV(LINE_DELETED))
			return fd_call_fail(call, FD_EINVAL, "types: %d is not a LineEventType", (int)req->types[i]);
		types |= 1u << req->types[i];
	}
	if (req->reseller_id < 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: ids are positive");
	if (req->line_id < 0)
		return fd_call_fail(call, FD_EINVAL, "line_id: ids are positive");

	watcher_t *w = calloc(1, sizeof(*w));
	if (!w)
		return OOM(call);
	w->call = call;
	w->tenant = r.tenant;
	w->line_id = req->line_id;
	w->types = types;
	struct watch_check wc = { .r = &r, .reseller_id = req->reseller_id, .line_id = req->line_id, .w = w };
	if ((rc = lines_run_ro(&r, watch_check_tx, &wc)) < 0)
		goto fail;

	/* The row first, so that no replica skips announcing a session to a
	 * registered watcher for long; then the watcher, unless events cannot
	 * be heard now (they would be missed without the stream ending). */
	pthread_mutex_lock(&ev->rows_mu);
	rc = row_write(ev, &SQL_WATCHER_UPSERT, r.tenant, fd_call_err(call));
	if (rc == 0) {
		pthread_mutex_lock(&ev->mu);
		if (!atomic_load(&ev->listening))
			rc = fd_call_fail(call, FD_EUNAVAIL, "line events are not available now; try again");
		else if (count_add(ev, r.tenant) < 0)
			rc = OOM(call);
		if (rc == 0) {
			fd_call_ref(call);
			w->next = ev->watchers;
			if (ev->watchers)
				ev->watchers->prev = w;
			ev->watchers = w;
			fd_call_set_user(call, w);
		}
		pthread_mutex_unlock(&ev->mu);
	}
	if (rc < 0 && !has_watchers(ev, r.tenant)) {
		fd_err_t err = { 0 };   /* the row just written serves no one */
		if (row_write(ev, &SQL_WATCHER_DELETE, r.tenant, &err) < 0)
			fd_debug("line watchers of tenant %" PRId64 ": %s", r.tenant, err.msg);
	}
	pthread_mutex_unlock(&ev->rows_mu);
	if (rc < 0)
		goto fail;
	watched_put(ev, r.tenant, true, fd_mono_ms());
	fd_debug("watching line events (reseller %" PRId64 ", line %" PRId64 ", types 0x%x)",
	         req->reseller_id, req->line_id, types);
	return 0;
fail:
	free(w);
	return rc;
}

/* A refused watch is ended here rather than by returning the error:
 * rpc_server.c's stream_begin marks the callback over before it finishes a
 * stream whose open() failed and then touches the call again, by which time
 * another worker may have delivered closed() and freed it (ASan:
 * heap-use-after-free in stream_begin). Finished inside open(), the call
 * outlives stream_begin. The status is the same. */
static int watch_open(fd_call_t *call, const ProtobufCMessage *req)
{
	int rc = watch_start(call, req);
	if (rc < 0)
		fd_stream_finish(call, rc, NULL);
	return 0;
}

static void watch_closed(fd_call_t *call, bool cancelled)
{
	watcher_t *w = fd_call_user(call);
	if (!w)
		return;   /* open() failed */
	struct linesd_events *ev = linesd_of(call)->events;
	fd_call_set_user(call, NULL);
	pthread_mutex_lock(&ev->rows_mu);
	pthread_mutex_lock(&ev->mu);
	if (w->prev)
		w->prev->next = w->next;
	else
		ev->watchers = w->next;
	if (w->next)
		w->next->prev = w->prev;
	int left = count_sub(ev, w->tenant);
	pthread_mutex_unlock(&ev->mu);
	if (left == 0) {
		fd_err_t err = { 0 };
		if (row_write(ev, &SQL_WATCHER_DELETE, w->tenant, &err) < 0)
			fd_warn("line watchers of tenant %" PRId64 ": cannot remove their row (it expires): %s",
			        w->tenant, err.msg);
		watched_put(ev, w->tenant, false, 0);   /* ask again: other replicas may watch */
	}
	pthread_mutex_unlock(&ev->rows_mu);
	fd_debug("line events watch ended (%s)", cancelled ? "cancelled by the client" : "finished");
	free(w);
	fd_call_unref(call);
}

const fd_stream_ops_t linesd_watch_line_events = { .open = watch_open, .closed = watch_closed };

/* ---- delivery ---- */

static bool wants(const watcher_t *w, int64_t tenant, int type, int64_t line_id)
{
	return !w->dead && w->tenant == tenant && (!w->types || (w->types & (1u << type))) &&
	       (!w->line_id || w->line_id == line_id);
}

/* Ends watchers' streams with UNAVAILABLE: every one (tenant 0), or those of
 * tenant that may want an event of type on line_id. Under mu. */
static void end_streams_locked(struct linesd_events *ev, int64_t tenant, int type, int64_t line_id,
                               const char *why)
{
	for (watcher_t *w = ev->watchers; w; w = w->next) {
		if (w->dead || (tenant && !wants(w, tenant, type, line_id)))
			continue;
		w->dead = true;
		fd_stream_finish(w->call, -FD_EUNAVAIL, why);
	}
}

/* One notification, and what is read for it. */
typedef struct event {
	int64_t tenant, line_id, reseller_id, session_id;
	int type, previous;
	const linesd_t *l;
	fd_arena_t *arena;
	Frontdesk__V1__Line *line;
	Frontdesk__V1__Session *session;
	const char *path;                 /* the owner's reseller_path; NULL: unknown */
} event_t;

static bool is_session_event(int type)
{
	return type == EV(SESSION_STARTED) || type == EV(SESSION_ENDED);
}

static const char *col_dup(fd_arena_t *a, PGresult *res, int col, bool *oom)
{
	if (col >= PQnfields(res) || PQgetisnull(res, 0, col))
		return NULL;
	const char *s = fd_arena_strdup(a, PQgetvalue(res, 0, col));
	*oom = !s;
	return s;
}

static int event_read_tx(fd_tx_t *tx, void *arg)
{
	event_t *e = arg;
	e->line = NULL;
	e->session = NULL;
	e->path = NULL;
	const char *tenant = fd_arena_printf(e->arena, "%" PRId64, e->tenant);
	const char *line = fd_arena_printf(e->arena, "%" PRId64, e->line_id);
	const char *session = fd_arena_printf(e->arena, "%" PRId64, e->session_id);
	const char *reseller = fd_arena_printf(e->arena, "%" PRId64, e->reseller_id);
	if (!tenant || !line || !session || !reseller)
		return TX_OOM(tx);
	PGresult *res;
	bool oom = false;
	int rc;
	if (is_session_event(e->type)) {
		const char *params[] = { tenant, session };
		if ((rc = fd_tx_exec(tx, &SQL_EVENT_SESSION, params, 0, &res)) < 0)
			return rc;
		if (PQntuples(res) == 1) {
			if (!(e->session = session_message(e->arena, e->tenant, res, 0, 0)))
				return TX_OOM(tx);
			e->path = col_dup(e->arena, res, SESSION_NCOLS, &oom);
		}
	} else if (e->type != EV(LINE_DELETED)) {
		const char *params[] = { tenant, line };
		if ((rc = fd_tx_exec(tx, &SQL_EVENT_LINE, params, 0, &res)) < 0)
			return rc;
		/* No row: deleted (or not settled) since; the event goes without it. */
		if (PQntuples(res) == 1) {
			if (!(e->line = line_message(e->l, e->arena, e->tenant, res, 0, 0)))
				return TX_OOM(tx);
			e->path = col_dup(e->arena, res, LINE_NCOLS, &oom);
		}
	}
	if (oom)
		return TX_OOM(tx);
	if (!e->path && e->reseller_id > 0) {
		/* The row is gone (line.deleted): the owner's path from its account;
		 * paths never change. */
		const char *params[] = { tenant, reseller };
		if ((rc = fd_tx_exec(tx, &SQL_ACCOUNT_PATH, params, 0, &res)) < 0)
			return rc;
		if (PQntuples(res) == 1 && !(e->path = col_dup(e->arena, res, 0, &oom)) && oom)
			return TX_OOM(tx);
	}
	return 0;
}

/* The thread's event ids. The payload has no id of its own, and every
 * replica hears each notification, in commit order, at its own time: an id
 * that all replicas agree on would need one in the payload. So an id is
 * the time the notification was read (fd_now_ms, as microseconds: a
 * thousand ids to a millisecond), made strictly
 * increasing within the process: increasing on every stream (events arrive
 * in commit order, so within a tenant too), and, across a reconnection to
 * another replica, increasing as far as the clocks agree. */
static int64_t next_event_id(struct linesd_events *ev)
{
	int64_t now = fd_now_ms() * 1000;
	ev->last_id = now > ev->last_id ? now : ev->last_id + 1;
	return ev->last_id;
}

static void deliver(struct linesd_events *ev, const event_t *e, int64_t id)
{
	Frontdesk__V1__LineEvent msg = FRONTDESK__V1__LINE_EVENT__INIT;
	msg.id = id;
	msg.tenant_id = e->tenant;
	msg.type = (event_type_t)e->type;
	msg.occurred_at = id / 1000000;
	msg.line_id = e->line_id;
	msg.reseller_id = e->reseller_id;
	if (!msg.reseller_id && e->line)
		msg.reseller_id = e->line->reseller_id;
	msg.line = e->line;
	msg.session = e->session;
	if (e->type == EV(LINE_STATUS_CHANGED))
		msg.previous_status = (Frontdesk__V1__LineStatus)e->previous;
	Frontdesk__V1__WatchLineEventsResponse resp = FRONTDESK__V1__WATCH_LINE_EVENTS_RESPONSE__INIT;
	resp.event = &msg;

	pthread_mutex_lock(&ev->mu);
	for (watcher_t *w = ev->watchers; w; w = w->next) {
		if (!wants(w, e->tenant, e->type, e->line_id) || strncmp(e->path, w->prefix, w->prefix_len) != 0)
			continue;
		int rc = fd_stream_send(w->call, &resp.base);
		if (rc < 0) {
			/* Ended, or the client reads too slowly (the runtime ended it),
			 * or out of memory: end it in any case, no event goes missing
			 * silently. */
			w->dead = true;
			fd_stream_finish(w->call, rc, "line events could not be sent; watch again");
		}
	}
	pthread_mutex_unlock(&ev->mu);
}

static void on_notify(struct linesd_events *ev, const char *payload)
{
	linesd_t *l = ev->l;
	event_t e = { .l = l };
	int end = 0;
	if (sscanf(payload, "%" SCNd64 " %d %" SCNd64 " %" SCNd64 " %" SCNd64 " %d%n", &e.tenant, &e.type,
	           &e.line_id, &e.reseller_id, &e.session_id, &e.previous, &end) != 6 ||
	    (payload[end] != '\0' &&
	     !((e.type == NOTIFY_FAILURE_COUNTED || e.type == NOTIFY_LINE_REV) && payload[end] == ' ')) || e.tenant <= 0) {
		fd_warn("line events: ignoring a malformed notification");
		return;
	}
	if (ev->obs.on_event) {
		events_notice_t n = { .tenant = e.tenant, .type = e.type, .line_id = e.line_id,
			                  .reseller_id = e.reseller_id, .session_id = e.session_id, .last = e.previous,
			                  .key = payload[end] == ' ' ? payload + end + 1 : NULL };
		ev->obs.on_event(ev->obs.arg, &n);
	}
	if (e.type < EV(LINE_CREATED) || e.type > EV(LINE_DELETED))
		return;
	/* The last field's low byte is the previous status (line.status_changed). */
	e.previous &= NOTIFY_LOW_MASK;
	int64_t id = next_event_id(ev);

	bool wanted = false;
	pthread_mutex_lock(&ev->mu);
	for (watcher_t *w = ev->watchers; w && !wanted; w = w->next)
		wanted = wants(w, e.tenant, e.type, e.line_id);
	pthread_mutex_unlock(&ev->mu);
	if (!wanted)
		return;

	fd_arena_t arena;
	fd_arena_init(&arena, EVENT_ARENA_LIMIT);
	e.arena = &arena;
	fd_err_t err = { 0 };
	fd_tx_opts_t opts = { .tenant_id = e.tenant, .deadline_ms = deadline_ms(), .read_only = true };
	if (fd_db_run_opts(l->db, &opts, event_read_tx, &e, &err) < 0) {
		fd_warn("line events: event %d of line %" PRId64 " in tenant %" PRId64 " could not be read: %s",
		        e.type, e.line_id, e.tenant, err.msg);
		pthread_mutex_lock(&ev->mu);
		end_streams_locked(ev, e.tenant, e.type, e.line_id, "an event could not be read; watch again");
		pthread_mutex_unlock(&ev->mu);
	} else if (!e.path) {
		fd_debug("line events: event %d of line %" PRId64 " in tenant %" PRId64 ": owner unknown, not sent",
		         e.type, e.line_id, e.tenant);
	} else {
		deliver(ev, &e, id);
	}
	fd_arena_free(&arena);
}

/* ---- the LISTEN connection (fd/listen.h) ---- */

static void listen_up(void *arg)
{
	struct linesd_events *ev = arg;
	pthread_mutex_lock(&ev->mu);
	atomic_store(&ev->listening, true);
	pthread_mutex_unlock(&ev->mu);
	/* What was cached while not listening may be stale. */
	if (ev->obs.on_lost)
		ev->obs.on_lost(ev->obs.arg);
}

static void listen_lost(void *arg, const char *why)
{
	(void)why;   /* logged by the listener */
	struct linesd_events *ev = arg;
	pthread_mutex_lock(&ev->mu);
	atomic_store(&ev->listening, false);
	end_streams_locked(ev, 0, 0, 0, "line events were interrupted (database connection lost); watch again");
	pthread_mutex_unlock(&ev->mu);
	/* Events may be missed until LISTEN is back: what is kept from them can
	 * no longer be trusted. */
	if (ev->obs.on_lost)
		ev->obs.on_lost(ev->obs.arg);
}

static void listen_notify(void *arg, const char *payload)
{
	on_notify(arg, payload);
}

static void listen_tick(void *arg)
{
	struct linesd_events *ev = arg;
	if (fd_mono_ms() >= ev->next_refresh) {
		rows_refresh(ev);
		ev->next_refresh = fd_mono_ms() + REFRESH_MS;
	}
}

/* ---- life ---- */

int events_init(linesd_t *l, const events_observer_t *obs, fd_err_t *err)
{
	if (sodium_init() < 0)
		return fd_err_set(err, FD_EINTERNAL, "libsodium failed to initialise");
	struct linesd_events *ev = calloc(1, sizeof(*ev));
	if (!ev)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	ev->l = l;
	if (obs)
		ev->obs = *obs;
	unsigned char rnd[16];
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(ev->replica, sizeof(ev->replica), rnd, sizeof(rnd));
	atomic_init(&ev->listening, false);
	ev->next_refresh = fd_mono_ms() + REFRESH_MS;
	pthread_mutex_init(&ev->rows_mu, NULL);
	pthread_mutex_init(&ev->mu, NULL);
	pthread_mutex_init(&ev->cache_mu, NULL);
	l->events = ev;   /* events_fini frees it from here on */
	const fd_service_config_t *cfg = &l->cfg->common;
	fd_listen_opts_t lo = {
		.channel = "frontdesk_lines", .application_name = "linesd-listen",
		.database_url = cfg->database_url, .db_user = cfg->db_user, .db_password = cfg->db_password,
		.up = listen_up, .lost = listen_lost, .notify = listen_notify, .tick = listen_tick, .arg = ev,
	};
	if (!(ev->listener = fd_listener_start(&lo, err)))
		return -FD_EINTERNAL;
	return 0;
}

/* Runs after the server has stopped (service.c frees the server before the
 * service's fini): every stream has been ended and its closed() has run, so
 * no watcher is left. Any left anyway are ended and released here. */
void events_fini(linesd_t *l)
{
	struct linesd_events *ev = l ? l->events : NULL;
	if (!ev)
		return;
	pthread_mutex_lock(&ev->mu);
	for (watcher_t *w = ev->watchers; w; w = w->next) {
		w->dead = true;
		fd_stream_finish(w->call, -FD_EUNAVAIL, "linesd is stopping");
	}
	pthread_mutex_unlock(&ev->mu);
	fd_listener_stop(ev->listener);
	while (ev->watchers) {
		watcher_t *w = ev->watchers;
		ev->watchers = w->next;
		fd_call_set_user(w->call, NULL);
		fd_call_unref(w->call);
		free(w);
	}
	free(ev->counts);
	pthread_mutex_destroy(&ev->rows_mu);
	pthread_mutex_destroy(&ev->mu);
	pthread_mutex_destroy(&ev->cache_mu);
	l->events = NULL;
	free(ev);
}

bool events_listening(linesd_t *l)
{
	return l->events && atomic_load(&l->events->listening);
}
