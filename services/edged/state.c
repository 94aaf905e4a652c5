/* state.c - the playback state (state.h): a thread holding linesd's
 * WatchPlaybackEvents open (reconnecting with backoff), a thread sending the
 * batched session report (ReportSessions every FRONTDESK_EDGED_REPORT_MS),
 * and the maps the hooks read under one short lock. */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "idmap.h"
#include "playlist.h"
#include "state.h"
#include "upstream.h"
#include "fd/clock.h"
#include "fd/log.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define RECV_SLICE_MS 250            /* the watcher looks at the stop flag this often */
#define KEEP_MARGIN_MS (300 * 1000)  /* entries outlive the longest token by this (clock skew between replicas) */
#define REVOKED_TENANT 0             /* line id of a tenant-wide revocation */

struct edge_state {
	pthread_mutex_t mu;
	pthread_cond_t cv;           /* stop, and the first ready */
	idmap_t ended;               /* (tenant, session) -> SessionEndReason */
	idmap_t revoked;             /* (tenant, line or 0) -> at_ms = when edged heard of it */
	idmap_t queue;               /* (tenant, session): served since the last report */
	idmap_t verified;            /* (tenant, session): linesd said live at at_ms (while not ready) */
	idmap_t hints;               /* (tenant, session) -> the line's max connections */
	bool ready;                  /* the watch is live */
	bool ever_ready;
	int64_t live_ms;             /* wall ms the watch was last live (start-up: when edged started) */
	bool stop;
	pthread_t watcher, reporter;
	bool watcher_started, reporter_started;
	bool queue_full_warned;
};

static int64_t keep_ms(const edged_t *e)
{
	return e->cfg->token_ttl * 1000 + KEEP_MARGIN_MS;
}

static int64_t grace_ms(const edged_t *e)
{
	int64_t g = e->cfg->report_ms * 10;
	return g < 5000 ? 5000 : g > 60000 ? 60000 : g;
}

/* ---- what the hooks ask ---- */

const char *state_verdict_text(state_verdict_t v)
{
	switch (v) {
	case STATE_LIVE:
		return "live";
	case STATE_ENDED:
		return "session ended";
	case STATE_REVOKED:
		return "line revoked";
	case STATE_UNKNOWN:
		return "playback state unavailable";
	}
	return "denied";
}

/* Under s->mu. */
static void queue_locked(struct edge_state *s, int64_t tenant, int64_t session, int64_t now)
{
	if (s->queue.n >= STATE_QUEUE_MAX && !idmap_get(&s->queue, tenant, session)) {
		if (!s->queue_full_warned)
			fd_warn("session report: more than %zu sessions in one period; the others wait", STATE_QUEUE_MAX);
		s->queue_full_warned = true;
		return;
	}
	if (idmap_add(&s->queue, tenant, session, 0, now) < 0)
		fd_warn("session report: out of memory queueing a session");
}

/* Under s->mu: ended or revoked, from memory alone. */
static state_verdict_t memory_verdict(struct edge_state *s, int64_t tenant, int64_t line, int64_t session,
                                      int64_t issued_at_ms)
{
	if (idmap_get(&s->ended, tenant, session))
		return STATE_ENDED;
	const idmap_slot_t *r = idmap_get(&s->revoked, tenant, line);
	if (r && issued_at_ms < r->at_ms)
		return STATE_REVOKED;
	r = idmap_get(&s->revoked, tenant, REVOKED_TENANT);
	if (r && issued_at_ms < r->at_ms)
		return STATE_REVOKED;
	return STATE_LIVE;
}

/* ReportSessions of one session, now. 1 live, 0 ended (*reason), -1 linesd
 * could not say. */
static int ask_linesd(edged_t *e, int64_t tenant, int64_t session, int *reason)
{
	fd_arena_t a;
	fd_arena_init(&a, (size_t)1 << 20);
	Frontdesk__V1__SessionReport one = FRONTDESK__V1__SESSION_REPORT__INIT;
	one.tenant_id = tenant;
	one.session_id = session;
	Frontdesk__V1__SessionReport *list[1] = { &one };
	Frontdesk__V1__ReportSessionsRequest req = FRONTDESK__V1__REPORT_SESSIONS_REQUEST__INIT;
	req.sessions = list;
	req.n_sessions = 1;
	Frontdesk__V1__ReportSessionsResponse *resp = NULL;
	fd_err_t err = { 0 };
	int rc = upstream_call(e, UP_LINESD, "ReportSessions", &req.base, &frontdesk__v1__report_sessions_response__descriptor,
	                       &a, (ProtobufCMessage **)&resp, &err);
	int out = -1;
	if (rc == 0) {
		out = 1;
		for (size_t i = 0; i < resp->n_ended; i++)
			if (resp->ended[i]->session_id == session && resp->ended[i]->tenant_id == tenant) {
				*reason = (int)resp->ended[i]->end_reason;
				out = 0;
			}
	} else {
		fd_debug("session check: linesd did not answer (%s)", err.msg);
	}
	fd_arena_free(&a);
	return out;
}

state_verdict_t state_check(edged_t *e, int64_t tenant, int64_t line, int64_t session, int64_t issued_at_ms)
{
	struct edge_state *s = e->state;
	int64_t now = fd_now_ms();
	pthread_mutex_lock(&s->mu);
	state_verdict_t v = memory_verdict(s, tenant, line, session, issued_at_ms);
	if (v != STATE_LIVE || s->ready) {
		if (v == STATE_LIVE)
			queue_locked(s, tenant, session, now);
		pthread_mutex_unlock(&s->mu);
		return v;
	}
	/* Not live: the memory may lack events. linesd's answer of the last
	 * report period stands in for it. */
	const idmap_slot_t *ok = idmap_get(&s->verified, tenant, session);
	if (ok && now - ok->at_ms < e->cfg->report_ms) {
		pthread_mutex_unlock(&s->mu);
		return STATE_LIVE;
	}
	int64_t live_ms = s->live_ms;
	pthread_mutex_unlock(&s->mu);

	int reason = 0;
	int asked = ask_linesd(e, tenant, session, &reason);
	pthread_mutex_lock(&s->mu);
	if (asked == 1) {
		if (idmap_set(&s->verified, tenant, session, 0, fd_now_ms()) < 0)
			fd_warn("session check: out of memory");
		v = STATE_LIVE;
	} else if (asked == 0) {
		if (idmap_set(&s->ended, tenant, session, reason, fd_now_ms()) < 0)
			fd_warn("session check: out of memory");
		v = STATE_ENDED;
	} else if (now - live_ms < grace_ms(e)) {
		/* linesd cannot be asked: served for the grace, and reported when
		 * linesd is back. */
		queue_locked(s, tenant, session, now);
		v = STATE_LIVE;
	} else {
		v = STATE_UNKNOWN;
	}
	pthread_mutex_unlock(&s->mu);
	return v;
}

void state_mark_ended(edged_t *e, int64_t tenant, int64_t session, int reason)
{
	struct edge_state *s = e->state;
	pthread_mutex_lock(&s->mu);
	if (idmap_set(&s->ended, tenant, session, reason, fd_now_ms()) < 0)
		fd_warn("playback state: out of memory");
	idmap_del(&s->queue, tenant, session);
	pthread_mutex_unlock(&s->mu);
}

void state_note_session(edged_t *e, int64_t tenant, int64_t session, int32_t max_connections)
{
	struct edge_state *s = e->state;
	pthread_mutex_lock(&s->mu);
	if (idmap_set(&s->hints, tenant, session, max_connections, fd_now_ms()) < 0)
		fd_warn("playback state: out of memory");
	pthread_mutex_unlock(&s->mu);
}

int32_t state_session_max(edged_t *e, int64_t tenant, int64_t session)
{
	struct edge_state *s = e->state;
	pthread_mutex_lock(&s->mu);
	const idmap_slot_t *h = idmap_get(&s->hints, tenant, session);
	int32_t v = h ? h->val : 0;
	pthread_mutex_unlock(&s->mu);
	return v;
}

bool state_ready(edged_t *e)
{
	struct edge_state *s = e->state;
	pthread_mutex_lock(&s->mu);
	bool r = s->ready;
	pthread_mutex_unlock(&s->mu);
	return r;
}

/* ---- the watch ---- */

static void apply(edged_t *e, const Frontdesk__V1__PlaybackEvent *ev)
{
	struct edge_state *s = e->state;
	int64_t now = fd_now_ms();
	switch (ev->type) {
	case FRONTDESK__V1__PLAYBACK_EVENT_TYPE__PLAYBACK_EVENT_TYPE_SESSION_ENDED:
		if (ev->session_id <= 0)
			return;
		pthread_mutex_lock(&s->mu);
		if (idmap_set(&s->ended, ev->tenant_id, ev->session_id, (int32_t)ev->end_reason, now) < 0)
			fd_warn("playback state: out of memory");
		idmap_del(&s->queue, ev->tenant_id, ev->session_id);
		pthread_mutex_unlock(&s->mu);
		return;
	case FRONTDESK__V1__PLAYBACK_EVENT_TYPE__PLAYBACK_EVENT_TYPE_LINE_REVOKED:
		/* line_id 0: every line of the tenant (a suspension). */
		pthread_mutex_lock(&s->mu);
		if (idmap_set(&s->revoked, ev->tenant_id, ev->line_id > 0 ? ev->line_id : REVOKED_TENANT,
		              (int32_t)ev->line_status, now) < 0)
			fd_warn("playback state: out of memory");
		pthread_mutex_unlock(&s->mu);
		return;
	case FRONTDESK__V1__PLAYBACK_EVENT_TYPE__PLAYBACK_EVENT_TYPE_CATALOG_CHANGED:
		playlists_catalog_changed(e, ev->tenant_id, ev->catalog_version);
		return;
	default:
		return;
	}
}

static void set_ready(edged_t *e, bool ready)
{
	struct edge_state *s = e->state;
	pthread_mutex_lock(&s->mu);
	bool was = s->ready;
	s->ready = ready;
	s->live_ms = fd_now_ms();
	if (ready) {
		s->ever_ready = true;
		idmap_clear(&s->verified);
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (was == ready)
		return;
	if (ready) {
		fd_info("playback events: watching linesd (hooks answer from memory)");
		playlists_events_ready(e);
	} else {
		fd_warn("playback events: the watch broke; hooks ask linesd until it is back");
		playlists_forget_all(e);
	}
}

static bool stopping(struct edge_state *s)
{
	pthread_mutex_lock(&s->mu);
	bool stop = s->stop;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

/* Sleeps ms unless stopped first; returns whether to stop. */
static bool nap(struct edge_state *s, int64_t ms)
{
	pthread_mutex_lock(&s->mu);
	struct timespec ts = fd_real_after(ms);
	while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0)
		;
	bool stop = s->stop;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

/* One watch: from open to break. Returns whether it ever became ready. */
static bool watch_once(edged_t *e)
{
	struct edge_state *s = e->state;
	fd_err_t err = { 0 };
	Frontdesk__V1__WatchPlaybackEventsRequest req = FRONTDESK__V1__WATCH_PLAYBACK_EVENTS_REQUEST__INIT;
	fd_client_stream_t *st = upstream_stream(e, UP_LINESD, "WatchPlaybackEvents", &req.base, &err);
	if (!st) {
		fd_debug("playback events: cannot open the watch (%s)", err.msg);
		return false;
	}
	bool was_ready = false;
	while (!stopping(s)) {
		fd_arena_t a;
		fd_arena_init(&a, (size_t)1 << 20);
		Frontdesk__V1__WatchPlaybackEventsResponse *m = NULL;
		int rc = fd_client_stream_recv(st, &frontdesk__v1__watch_playback_events_response__descriptor, &a,
		                               (ProtobufCMessage **)&m, RECV_SLICE_MS, &err);
		if (rc == -FD_EDEADLINE) {
			fd_arena_free(&a);
			continue;
		}
		if (rc <= 0) {
			fd_arena_free(&a);
			if (rc < 0)
				fd_debug("playback events: the watch ended (%s)", err.msg);
			break;
		}
		if (m->ready && !was_ready) {
			was_ready = true;
			set_ready(e, true);
		}
		if (m->event)
			apply(e, m->event);
		fd_arena_free(&a);
	}
	fd_client_stream_free(st);
	return was_ready;
}

static void *watcher(void *arg)
{
	edged_t *e = arg;
	struct edge_state *s = e->state;
	int64_t backoff = BACKOFF_FIRST_MS;
	while (!stopping(s)) {
		bool was_ready = watch_once(e);
		if (stopping(s))
			break;
		if (was_ready) {
			set_ready(e, false);
			backoff = BACKOFF_FIRST_MS;
		}
		if (nap(s, backoff))
			break;
		if (!was_ready)
			backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
	return NULL;
}

/* ---- the batched report ---- */

typedef struct sess {
	int64_t tenant, session;
} sess_t;

/* Sends v[0..n) in one ReportSessions; marks the ended ones. Returns 0, or
 * -1 when linesd did not answer (the caller queues them again). */
static int report_chunk(edged_t *e, const sess_t *v, size_t n)
{
	struct edge_state *s = e->state;
	fd_arena_t a;
	fd_arena_init(&a, (size_t)64 << 20);
	int out = -1;
	Frontdesk__V1__SessionReport *items = fd_arena_alloc(&a, n * sizeof(*items));
	Frontdesk__V1__SessionReport **list = fd_arena_alloc(&a, n * sizeof(*list));
	if (!items || !list) {
		fd_warn("session report: out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		Frontdesk__V1__SessionReport init = FRONTDESK__V1__SESSION_REPORT__INIT;
		items[i] = init;
		items[i].tenant_id = v[i].tenant;
		items[i].session_id = v[i].session;
		list[i] = &items[i];
	}
	Frontdesk__V1__ReportSessionsRequest req = FRONTDESK__V1__REPORT_SESSIONS_REQUEST__INIT;
	req.sessions = list;
	req.n_sessions = n;
	Frontdesk__V1__ReportSessionsResponse *resp = NULL;
	fd_err_t err = { 0 };
	if (upstream_call(e, UP_LINESD, "ReportSessions", &req.base, &frontdesk__v1__report_sessions_response__descriptor,
	                  &a, (ProtobufCMessage **)&resp, &err) < 0) {
		fd_warn("session report: %zu sessions not reported (%s); trying again next period", n, err.msg);
		goto out;
	}
	int64_t now = fd_now_ms();
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < resp->n_ended; i++) {
		const Frontdesk__V1__EndedSession *x = resp->ended[i];
		if (x->session_id > 0 && idmap_set(&s->ended, x->tenant_id, x->session_id, (int32_t)x->end_reason, now) < 0)
			fd_warn("session report: out of memory");
	}
	pthread_mutex_unlock(&s->mu);
	out = 0;
out:
	fd_arena_free(&a);
	return out;
}

static void report(edged_t *e)
{
	struct edge_state *s = e->state;
	pthread_mutex_lock(&s->mu);
	int64_t now = fd_now_ms();
	idmap_expire(&s->ended, now - keep_ms(e));
	idmap_expire(&s->revoked, now - keep_ms(e));
	idmap_expire(&s->hints, now - keep_ms(e));
	idmap_expire(&s->verified, now - e->cfg->report_ms);
	size_t n = s->queue.n;
	sess_t *v = n ? malloc(n * sizeof(*v)) : NULL;
	size_t k = 0;
	if (v) {
		for (size_t i = 0; i < s->queue.cap; i++)
			if (s->queue.slots[i].used)
				v[k++] = (sess_t){ s->queue.slots[i].tenant, s->queue.slots[i].id };
		idmap_clear(&s->queue);
		s->queue_full_warned = false;
	} else if (n) {
		fd_warn("session report: out of memory; trying again next period");
	}
	pthread_mutex_unlock(&s->mu);
	for (size_t off = 0; off < k; off += STATE_REPORT_CHUNK) {
		size_t c = k - off < STATE_REPORT_CHUNK ? k - off : STATE_REPORT_CHUNK;
		if (report_chunk(e, v + off, c) < 0) {
			/* Not reported: again next period (unless ended meanwhile). */
			pthread_mutex_lock(&s->mu);
			for (size_t i = off; i < k; i++)
				if (!idmap_get(&s->ended, v[i].tenant, v[i].session))
					queue_locked(s, v[i].tenant, v[i].session, now);
			pthread_mutex_unlock(&s->mu);
			break;
		}
	}
	free(v);
}

static void *reporter(void *arg)
{
	edged_t *e = arg;
	struct edge_state *s = e->state;
	while (!nap(s, e->cfg->report_ms))
		report(e);
	return NULL;
}

/* ---- life ---- */

int state_start(edged_t *e, fd_err_t *err)
{
	struct edge_state *s = calloc(1, sizeof(*s));
	if (!s)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	idmap_init(&s->ended, STATE_ENDED_MAX);
	idmap_init(&s->revoked, STATE_REVOKED_MAX);
	idmap_init(&s->queue, STATE_QUEUE_MAX);
	idmap_init(&s->verified, STATE_QUEUE_MAX);
	idmap_init(&s->hints, STATE_ENDED_MAX);
	s->live_ms = fd_now_ms();
	e->state = s;
	if (pthread_create(&s->watcher, NULL, watcher, e) != 0)
		return fd_err_set(err, FD_EUNAVAIL, "cannot start the playback events' thread");
	s->watcher_started = true;
	if (pthread_create(&s->reporter, NULL, reporter, e) != 0)
		return fd_err_set(err, FD_EUNAVAIL, "cannot start the session report's thread");
	s->reporter_started = true;
	/* Hooks served before the first ready ask linesd; a little wait spares
	 * a fresh edge those calls. */
	pthread_mutex_lock(&s->mu);
	struct timespec ts = fd_real_after(1000);
	while (!s->ready && pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0)
		;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

void state_stop(edged_t *e)
{
	struct edge_state *s = e->state;
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (s->watcher_started)
		pthread_join(s->watcher, NULL);
	if (s->reporter_started)
		pthread_join(s->reporter, NULL);
	idmap_free(&s->ended);
	idmap_free(&s->revoked);
	idmap_free(&s->queue);
	idmap_free(&s->verified);
	idmap_free(&s->hints);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
	e->state = NULL;
}
