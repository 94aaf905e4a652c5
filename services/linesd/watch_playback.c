/* watch_playback.c - WatchPlaybackEvents: every tenant's playback events
 * for the HTTP edge, from this replica's LISTEN connection (events.c tells
 * main.c's observer of each notification, which hands it here).
 *
 * What each notification becomes (api/frontdesk/v1/lines.proto,
 * PlaybackEvent):
 *   session.ended            SESSION_ENDED with its reason (the payload's)
 *   line.status_changed      LINE_REVOKED when disabled or banned
 *   line.expired             LINE_REVOKED, EXPIRED
 *   line.deleted             LINE_REVOKED, UNSPECIFIED
 *   line.updated             LINE_REVOKED when its password changed
 *   NOTIFY_CATALOG_CHANGED   CATALOG_CHANGED with the version
 *   NOTIFY_TENANT_SUSPENDED  LINE_REVOKED with line_id 0: every line of the tenant
 *   NOTIFY_ACCOUNT_SUSPENDED LINE_REVOKED for each line of the account's
 *                            subtree that was allowed (read once); more than
 *                            SUBTREE_MAX of them end the streams instead
 *                            (UNAVAILABLE: the edge forgets and asks again)
 * The sessions a revocation ends come as their own SESSION_ENDED.
 *
 * A stream starts with ready = true once it is registered while the LISTEN
 * connection is up; from then on, losing the connection (or an event that
 * cannot be read or sent) ends every stream with UNAVAILABLE, so the edge
 * knows to distrust what it remembers. No line_watchers row is needed:
 * everything streamed here is announced whether anyone watches or not (the
 * heartbeat caches need it too); only session starts depend on watchers.
 *
 * Locks: mu (the streams) is taken after anything of events.c's and never
 * with a call's lock held; fd_stream_send and fd_stream_finish take only the
 * call's own lock, and closed() takes mu with no call lock held. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "linesd.h"
#include "store.h"
#include "fd/log.h"

#define SUBTREE_MAX 500           /* lines revoked one by one for one suspension */
#define TX_BUDGET_MS 5000

typedef Frontdesk__V1__PlaybackEvent event_t;
#define PE(name) FRONTDESK__V1__PLAYBACK_EVENT_TYPE__PLAYBACK_EVENT_TYPE_##name
#define LE(name) FRONTDESK__V1__LINE_EVENT_TYPE__LINE_EVENT_TYPE_##name
#define LS(name) FRONTDESK__V1__LINE_STATUS__LINE_STATUS_##name

/* One stream, listed (and its call referenced) from open() to closed(). */
typedef struct pwatcher {
	struct pwatcher *next, *prev;
	fd_call_t *call;
	bool dead;                        /* ended: no more sends; closed() unlists it */
} pwatcher_t;

struct linesd_playback {
	linesd_t *l;
	pthread_mutex_t mu;
	pwatcher_t *watchers;
	size_t live;                      /* watchers not dead */
};

/* ---- sending ---- */

/* Under mu. */
static void end_all_locked(struct linesd_playback *pb, const char *why)
{
	for (pwatcher_t *w = pb->watchers; w; w = w->next) {
		if (w->dead)
			continue;
		w->dead = true;
		pb->live--;
		fd_stream_finish(w->call, -FD_EUNAVAIL, why);
	}
}

/* Under mu: one message to every stream; a stream that cannot take it is
 * ended (no event goes missing silently). */
static void send_locked(struct linesd_playback *pb, const Frontdesk__V1__WatchPlaybackEventsResponse *m)
{
	for (pwatcher_t *w = pb->watchers; w; w = w->next) {
		if (w->dead)
			continue;
		int rc = fd_stream_send(w->call, &m->base);
		if (rc < 0) {
			w->dead = true;
			pb->live--;
			fd_stream_finish(w->call, rc, "playback events could not be sent; watch again");
		}
	}
}

static void send_events(struct linesd_playback *pb, event_t *evs, size_t n)
{
	pthread_mutex_lock(&pb->mu);
	for (size_t i = 0; i < n; i++) {
		Frontdesk__V1__WatchPlaybackEventsResponse m = FRONTDESK__V1__WATCH_PLAYBACK_EVENTS_RESPONSE__INIT;
		m.event = &evs[i];
		send_locked(pb, &m);
	}
	pthread_mutex_unlock(&pb->mu);
}

/* ---- what a notification becomes ---- */

static bool revoking_status(int status)
{
	/* 0: an older payload that does not say: revoked, to be safe. */
	return status == 0 || status == LS(DISABLED) || status == LS(BANNED);
}

/* The event of a notification (other than an account's suspension) into
 * *e; false when it is none of the edge's concern. */
static bool event_of(const events_notice_t *n, event_t *e)
{
	frontdesk__v1__playback_event__init(e);
	e->tenant_id = n->tenant;
	e->line_id = n->line_id;
	e->occurred_at = fd_now_s();
	int low = n->last & NOTIFY_LOW_MASK, status = (n->last >> NOTIFY_STATUS_SHIFT) & NOTIFY_LOW_MASK;
	switch (n->type) {
	case LE(SESSION_ENDED):
		if (n->session_id <= 0)
			return false;
		e->type = PE(SESSION_ENDED);
		e->session_id = n->session_id;
		e->end_reason = low <= FRONTDESK__V1__SESSION_END_REASON__SESSION_END_REASON_LINE_REVOKED
		                    ? (Frontdesk__V1__SessionEndReason)low
		                    : FRONTDESK__V1__SESSION_END_REASON__SESSION_END_REASON_UNSPECIFIED;
		return true;
	case LE(LINE_STATUS_CHANGED):
		if (!revoking_status(status))
			return false;
		e->type = PE(LINE_REVOKED);
		e->line_status = (Frontdesk__V1__LineStatus)status;
		return true;
	case LE(LINE_EXPIRED):
		e->type = PE(LINE_REVOKED);
		e->line_status = LS(EXPIRED);
		return true;
	case LE(LINE_DELETED):
		e->type = PE(LINE_REVOKED);
		e->line_status = LS(UNSPECIFIED);
		return true;
	case LE(LINE_UPDATED):
		if (!(low & NOTIFY_UPDATED_PASSWORD))
			return false;
		e->type = PE(LINE_REVOKED);
		e->line_status = status ? (Frontdesk__V1__LineStatus)status : LS(ACTIVE);
		return true;
	case NOTIFY_CATALOG_CHANGED:
		e->type = PE(CATALOG_CHANGED);
		e->line_id = 0;
		e->catalog_version = n->session_id;
		return true;
	case NOTIFY_TENANT_SUSPENDED:
		e->type = PE(LINE_REVOKED);
		e->line_id = 0;                   /* every line of the tenant */
		e->line_status = LS(UNSPECIFIED);
		return true;
	default:
		return false;
	}
}

typedef struct subtree_q {
	fd_arena_t *arena;
	const char *params[3];
	int64_t *ids;
	size_t n;
} subtree_q_t;

static int subtree_tx(fd_tx_t *tx, void *arg)
{
	subtree_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_SUBTREE_LINES, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	q->n = (size_t)PQntuples(res);
	if (q->n && !(q->ids = fd_arena_alloc(q->arena, q->n * sizeof(*q->ids))))
		return TX_OOM(tx);
	for (size_t i = 0; i < q->n; i++)
		q->ids[i] = col_i64(res, (int)i, 0);
	return 0;
}

/* An account of n->tenant suspended: LINE_REVOKED for each line of its
 * subtree that was allowed until now. */
static void account_suspended(struct linesd_playback *pb, const events_notice_t *n)
{
	fd_arena_t arena;
	fd_arena_init(&arena, (size_t)1 << 20);
	char tenant[24], account[24], limit[24];
	snprintf(tenant, sizeof(tenant), "%" PRId64, n->tenant);
	snprintf(account, sizeof(account), "%" PRId64, n->reseller_id);
	snprintf(limit, sizeof(limit), "%d", SUBTREE_MAX + 1);
	subtree_q_t q = { .arena = &arena, .params = { tenant, account, limit } };
	fd_err_t err = { 0 };
	fd_tx_opts_t o = { .tenant_id = n->tenant, .deadline_ms = fd_real_ms() + TX_BUDGET_MS, .read_only = true };
	const char *why = NULL;
	event_t *evs = NULL;
	if (fd_db_run_opts(pb->l->db, &o, subtree_tx, &q, &err) < 0) {
		fd_warn("playback events: the lines of suspended account %" PRId64 " in tenant %" PRId64
		        " could not be read: %s", n->reseller_id, n->tenant, err.msg);
		why = "a suspension's lines could not be read; watch again";
	} else if (q.n > SUBTREE_MAX) {
		why = "a suspension revoked more lines than a stream carries; watch again";
	} else if (q.n && !(evs = fd_arena_zalloc(&arena, q.n * sizeof(*evs)))) {
		why = "out of memory; watch again";
	}
	if (why) {
		pthread_mutex_lock(&pb->mu);
		end_all_locked(pb, why);
		pthread_mutex_unlock(&pb->mu);
	} else {
		for (size_t i = 0; i < q.n; i++) {
			frontdesk__v1__playback_event__init(&evs[i]);
			evs[i].type = PE(LINE_REVOKED);
			evs[i].tenant_id = n->tenant;
			evs[i].line_id = q.ids[i];
			evs[i].line_status = LS(ACTIVE);
			evs[i].occurred_at = fd_now_s();
		}
		send_events(pb, evs, q.n);
	}
	fd_arena_free(&arena);
}

void playback_on_event(linesd_t *l, const events_notice_t *n)
{
	struct linesd_playback *pb = l->playback;
	if (!pb)
		return;
	pthread_mutex_lock(&pb->mu);
	bool any = pb->live > 0;
	pthread_mutex_unlock(&pb->mu);
	if (!any)
		return;
	if (n->type == NOTIFY_ACCOUNT_SUSPENDED) {
		account_suspended(pb, n);
		return;
	}
	event_t e;
	if (event_of(n, &e))
		send_events(pb, &e, 1);
}

void playback_on_lost(linesd_t *l)
{
	struct linesd_playback *pb = l->playback;
	if (!pb)
		return;
	pthread_mutex_lock(&pb->mu);
	end_all_locked(pb, "playback events were interrupted (database connection lost); watch again");
	pthread_mutex_unlock(&pb->mu);
}

/* ---- the stream ---- */

static int watch_start(fd_call_t *call)
{
	linesd_t *l = linesd_of(call);
	struct linesd_playback *pb = l->playback;
	fd_caller_t c;
	int rc = lines_service_caller(call, &c, FRONTDESK__V1__SCOPE__SCOPE_PLAYBACK_EVENTS);
	if (rc < 0)
		return rc;
	if (!pb)
		return fd_call_fail(call, FD_EUNAVAIL, "playback events are not available; try again");
	pwatcher_t *w = calloc(1, sizeof(*w));
	if (!w)
		return OOM(call);
	w->call = call;
	Frontdesk__V1__WatchPlaybackEventsResponse ready = FRONTDESK__V1__WATCH_PLAYBACK_EVENTS_RESPONSE__INIT;
	ready.ready = true;
	/* Registered and told ready under mu, while listening: an event heard
	 * after this is sent after ready; a connection lost after the check
	 * ends this stream too (playback_on_lost waits for mu). */
	pthread_mutex_lock(&pb->mu);
	if (!events_listening(l)) {
		rc = fd_call_fail(call, FD_EUNAVAIL, "playback events are not available now; try again");
	} else if ((rc = fd_stream_send(call, &ready.base)) == 0) {
		fd_call_ref(call);
		w->next = pb->watchers;
		if (pb->watchers)
			pb->watchers->prev = w;
		pb->watchers = w;
		pb->live++;
		fd_call_set_user(call, w);
	}
	pthread_mutex_unlock(&pb->mu);
	if (rc < 0) {
		free(w);
		return rc;
	}
	fd_debug("watching playback events");
	return 0;
}

/* A refused watch is finished inside open() (see events.c's watch_open). */
static int watch_open(fd_call_t *call, const ProtobufCMessage *req)
{
	(void)req;
	int rc = watch_start(call);
	if (rc < 0)
		fd_stream_finish(call, rc, NULL);
	return 0;
}

static void watch_closed(fd_call_t *call, bool cancelled)
{
	pwatcher_t *w = fd_call_user(call);
	if (!w)
		return;   /* open() failed */
	struct linesd_playback *pb = linesd_of(call)->playback;
	fd_call_set_user(call, NULL);
	pthread_mutex_lock(&pb->mu);
	if (w->prev)
		w->prev->next = w->next;
	else
		pb->watchers = w->next;
	if (w->next)
		w->next->prev = w->prev;
	if (!w->dead)
		pb->live--;
	pthread_mutex_unlock(&pb->mu);
	fd_debug("playback events watch ended (%s)", cancelled ? "cancelled by the client" : "finished");
	free(w);
	fd_call_unref(call);
}

const fd_stream_ops_t linesd_watch_playback_events = { .open = watch_open, .closed = watch_closed };

/* ---- life ---- */

int playback_init(linesd_t *l, fd_err_t *err)
{
	struct linesd_playback *pb = calloc(1, sizeof(*pb));
	if (!pb)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	pb->l = l;
	pthread_mutex_init(&pb->mu, NULL);
	l->playback = pb;
	return 0;
}

/* After the server stopped and the LISTEN thread with it (events_fini):
 * every stream's closed() has run; any left are ended and released. */
void playback_fini(linesd_t *l)
{
	struct linesd_playback *pb = l->playback;
	if (!pb)
		return;
	pthread_mutex_lock(&pb->mu);
	end_all_locked(pb, "linesd is stopping");
	pthread_mutex_unlock(&pb->mu);
	while (pb->watchers) {
		pwatcher_t *w = pb->watchers;
		pb->watchers = w->next;
		fd_call_set_user(w->call, NULL);
		fd_call_unref(w->call);
		free(w);
	}
	pthread_mutex_destroy(&pb->mu);
	l->playback = NULL;
	free(pb);
}
