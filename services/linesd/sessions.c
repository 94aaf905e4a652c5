/* sessions.c - live sessions: the heartbeat cache (cache.h) and its
 * flusher, SessionHeartbeat (with failover when a node goes unfit),
 * EndSession, KickSession and ListSessions.
 *
 * Heartbeats are answered from a cache of live sessions kept in this
 * process and written to the database in batches (heartbeat_flush_ms): one
 * UPDATE per tenant per flush. The cache is trusted only while this
 * replica's LISTEN connection is up (events.c): a kick, a replacement, a
 * line disabled or extended on any replica reaches every cache through it
 * (sessions_on_event); when the connection drops the cache is emptied and
 * heartbeats read the database until it is back. What a crash loses:
 * heartbeats of the last flush period (the sessions look that much older;
 * none is revived), and with synchronous_commit off for session writes,
 * PostgreSQL's last fraction of a second of session starts and ends. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cache.h"
#include "linesd.h"
#include "rules.h"
#include "store.h"
#include "fd/jobs.h"
#include "fd/log.h"
#include "fd/text.h"

/* ---- when sessions time out ----
 * linesd.session_timeout (janitor.c) must be due in a tenant before any of
 * its live sessions times out, or a session that never heartbeats would
 * never end. The job's own next time covers the sessions it saw; what
 * starts later is recorded here, never by AuthorizePlayback's statement:
 *
 * - at session start, through a per-process per-tenant memo: when this
 *   process recorded a due time no later than start + timeout and that time
 *   is still ahead (by DUE_MARGIN_S, for clocks and for a walk that may be
 *   starting), the walk has not yet run for it and will see this session
 *   (committed before the memo is asked): nothing is written. Otherwise one
 *   small transaction records start + timeout, about once per timeout per
 *   tenant and process;
 * - by the flusher, once per tenant per flush: every tenant with
 *   heartbeats (in the heartbeats' own transaction) or with sessions
 *   started since the last flush is due within a janitor period (so its
 *   active tenants are swept as often as every tenant was: a suspended
 *   reseller's sessions end within it), and the job, while sessions are
 *   live, keeps itself due. The flusher also covers what the memo may get
 *   wrong (a walk brought forward by another replica may have run before
 *   this session committed and moved the due time on): a session is
 *   covered within a flush period whatever the memo said; only a crash in
 *   that period, with the memo wrong, leaves it to the tenant's next
 *   activity. */
#define STARTS_SLOTS 1024
#define DUE_MARGIN_S 5

typedef struct start_slot {
	int64_t tenant;
	int64_t due_s;               /* the due time this process recorded for tenant (0: none) */
	int64_t pending_s;           /* the earliest start + timeout the flusher has not written (0: none) */
} start_slot_t;

struct linesd_sessions {
	pthread_t flusher;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop, started;
	pthread_mutex_t starts_mu;
	start_slot_t starts[STARTS_SLOTS];
};

typedef struct due_q {
	char tenant[24];
	int64_t due_s;
} due_q_t;

static int due_tx(fd_tx_t *tx, void *arg)
{
	due_q_t *q = arg;
	return fd_job_due(tx, JOB_SESSION_TIMEOUT, q->due_s, FD_TX_LAST);
}

static int record_due(linesd_t *l, int64_t tenant, int64_t due_s, fd_err_t *err)
{
	due_q_t q = { .due_s = due_s };
	snprintf(q.tenant, sizeof(q.tenant), "%" PRId64, tenant);
	return fd_tenant_run(l->db, tenant, due_tx, &q, err);
}

void sessions_started(linesd_t *l, int64_t tenant, int64_t start_s)
{
	struct linesd_sessions *c = l->sessions;
	int64_t due = start_s + l->cfg->session_timeout;
	start_slot_t *slot = &c->starts[(uint64_t)tenant % STARTS_SLOTS];
	pthread_mutex_lock(&c->starts_mu);
	bool mine = slot->tenant == tenant || !slot->pending_s;
	if (mine) {
		if (slot->tenant != tenant)
			*slot = (start_slot_t){ .tenant = tenant };
		if (!slot->pending_s || due < slot->pending_s)
			slot->pending_s = due;
	}
	bool covered = mine && slot->due_s && slot->due_s <= due && slot->due_s > fd_now_s() + DUE_MARGIN_S;
	pthread_mutex_unlock(&c->starts_mu);
	if (covered)
		return;
	/* Not known to be covered (or the slot holds another tenant's pending
	 * start, which the flusher writes: this one is written now). */
	fd_err_t err = { 0 };
	if (record_due(l, tenant, due, &err) < 0) {
		fd_debug("tenant %" PRId64 ": session timeout not scheduled now (%s); the flusher does", tenant, err.msg);
		return;
	}
	pthread_mutex_lock(&c->starts_mu);
	if (slot->tenant == tenant)
		slot->due_s = due;
	pthread_mutex_unlock(&c->starts_mu);
}

/* The flusher's: takes the pending starts, *out malloc'd (tenant, due). */
static size_t take_starts(struct linesd_sessions *c, due_q_t **out)
{
	size_t n = 0;
	*out = NULL;
	pthread_mutex_lock(&c->starts_mu);
	for (int i = 0; i < STARTS_SLOTS; i++)
		n += c->starts[i].pending_s != 0;
	if (n && (*out = malloc(n * sizeof(**out)))) {
		n = 0;
		for (int i = 0; i < STARTS_SLOTS; i++) {
			start_slot_t *s = &c->starts[i];
			if (!s->pending_s)
				continue;
			(*out)[n] = (due_q_t){ .due_s = s->pending_s };
			snprintf((*out)[n].tenant, sizeof((*out)[n].tenant), "%" PRId64, s->tenant);
			n++;
			s->pending_s = 0;
		}
	} else {
		n = 0;   /* out of memory: left pending, written at a later flush */
	}
	pthread_mutex_unlock(&c->starts_mu);
	return n;
}

/* ---- the cache, kept right ---- */

void sessions_remember(linesd_t *l, bool global, uint64_t gen, const cache_entry_t *e)
{
	if (events_listening(l))
		(void)cache_put(l->cache, global, gen, e);
}

void sessions_on_event(linesd_t *l, const events_notice_t *n)
{
	int64_t tenant = n->tenant, line_id = n->line_id, session_id = n->session_id;
	int type = n->type;
	/* A suspension (authd's, announced by 0017_edge_lines.sql's triggers):
	 * the job that ends the suspended lines' sessions runs now rather than
	 * at its next period (rules.c, told first, forgets the tenant's status,
	 * so that the edge's next authorization here is decided afresh). */
	if (type == NOTIFY_TENANT_SUSPENDED || type == NOTIFY_ACCOUNT_SUSPENDED) {
		janitor_soon(l, tenant);
		return;
	}
	if (type > FRONTDESK__V1__LINE_EVENT_TYPE__LINE_EVENT_TYPE_LINE_DELETED)
		return;   /* rules.c's (catalog, reactivations, settings, failures) */
	if (!l->cache)
		return;
	if (type == FRONTDESK__V1__LINE_EVENT_TYPE__LINE_EVENT_TYPE_SESSION_ENDED && session_id) {
		cache_drop(l->cache, session_id);
		return;
	}
	if (type == FRONTDESK__V1__LINE_EVENT_TYPE__LINE_EVENT_TYPE_SESSION_STARTED || !line_id)
		return;
	/* A line changed (extended, disabled, deleted, ...): its sessions are read again. */
	cache_drop_line(l->cache, line_id);
}

void sessions_forget_all(linesd_t *l)
{
	if (l->cache)
		cache_forget_all(l->cache);
}

/* ---- heartbeats written in batches ---- */

typedef struct beats_q {
	const char *params[3];
	int64_t due_s;               /* linesd.session_timeout is due by then */
} beats_q_t;

static int beats_tx(fd_tx_t *tx, void *arg)
{
	beats_q_t *q = arg;
	int rc = fd_tx_exec(tx, &SQL_ASYNC, NULL, 0, NULL);
	if (rc < 0 || (rc = fd_tx_exec(tx, &SQL_BEATS, q->params, 0, NULL)) < 0)
		return rc;
	return fd_job_due(tx, JOB_SESSION_TIMEOUT, q->due_s, FD_TX_LAST);
}

/* Heartbeats, one transaction per tenant, and the due times of sessions
 * started since the last flush: each tenant's timeout job is made due once. */
static void flush_beats(linesd_t *l)
{
	due_q_t *starts;
	size_t nstarts = take_starts(l->sessions, &starts);
	cache_beat_t *all;
	size_t total = cache_take_beats(l->cache, &all);
	/* While a tenant has sessions heartbeating or starting, its timeout
	 * job runs every janitor period (as the sweep of every tenant did):
	 * a suspended reseller's sessions end within it. */
	int64_t due = fd_now_s() + janitor_period_s(l);
	for (size_t k = 0; k < nstarts; k++) {
		int64_t tenant = strtoll(starts[k].tenant, NULL, 10);
		bool beats = false;     /* written with the tenant's heartbeats instead */
		for (size_t b = 0; b < total && !beats; b++)
			beats = all[b].tenant == tenant;
		fd_err_t err = { 0 };
		starts[k].due_s = due;
		if (!beats && fd_tenant_run(l->db, tenant, due_tx, &starts[k], &err) < 0)
			fd_warn("tenant %" PRId64 ": session timeout not scheduled: %s", tenant, err.msg);
	}
	free(starts);
	if (!total)
		return;
	/* One statement per tenant, the latest beat of each session. */
	char *ids = malloc(total * 21 + 3), *ats = malloc(total * 21 + 3), tenant_s[24];
	for (size_t i = 0; ids && ats && i < total;) {
		size_t j = i;
		char *pi = ids, *pa = ats;
		*pi++ = '{';
		*pa++ = '{';
		for (; j < total && all[j].tenant == all[i].tenant; j++) {
			if (j + 1 < total && all[j + 1].tenant == all[j].tenant && all[j + 1].id == all[j].id)
				continue;
			pi += sprintf(pi, "%s%" PRId64, pi[-1] == '{' ? "" : ",", all[j].id);
			pa += sprintf(pa, "%s%" PRId64, pa[-1] == '{' ? "" : ",", all[j].at);
		}
		strcpy(pi, "}");
		strcpy(pa, "}");
		snprintf(tenant_s, sizeof(tenant_s), "%" PRId64, all[i].tenant);
		beats_q_t q = { { tenant_s, ids, ats }, due };
		fd_err_t err = { 0 };
		if (fd_tenant_run(l->db, all[i].tenant, beats_tx, &q, &err) < 0)
			fd_warn("tenant %" PRId64 ": %zu heartbeats not written: %s", all[i].tenant, j - i, err.msg);
		i = j;
	}
	free(ids);
	free(ats);
	free(all);
}

static void *flusher_main(void *arg)
{
	linesd_t *l = arg;
	struct linesd_sessions *c = l->sessions;
	pthread_mutex_lock(&c->mu);
	while (!c->stop) {
		struct timespec until = fd_real_after(l->cfg->heartbeat_flush_ms);
		while (!c->stop && pthread_cond_timedwait(&c->cv, &c->mu, &until) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&c->mu);
		flush_beats(l);
		/* Forget, one shard per flush, sessions nobody heartbeats any more. */
		cache_forget_stale(l->cache, fd_now_s() - l->cfg->session_timeout - 10);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	flush_beats(l);      /* what is left, at a clean stop */
	return NULL;
}

int sessions_init(linesd_t *l, fd_err_t *err)
{
	struct linesd_sessions *c = calloc(1, sizeof(*c));
	if (!c || !(l->cache = cache_new())) {
		free(c);
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->starts_mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	l->sessions = c;
	if (pthread_create(&c->flusher, NULL, flusher_main, l) != 0)
		return fd_err_set(err, FD_EINTERNAL, "cannot start the heartbeat flusher");
	c->started = true;
	return 0;
}

void sessions_fini(linesd_t *l)
{
	struct linesd_sessions *c = l->sessions;
	if (c) {
		if (c->started) {
			pthread_mutex_lock(&c->mu);
			c->stop = true;
			pthread_cond_broadcast(&c->cv);
			pthread_mutex_unlock(&c->mu);
			pthread_join(c->flusher, NULL);
		}
		pthread_mutex_destroy(&c->mu);
		pthread_mutex_destroy(&c->starts_mu);
		pthread_cond_destroy(&c->cv);
		free(c);
		l->sessions = NULL;
	}
	cache_free(l->cache);
	l->cache = NULL;
}

/* ---- SessionHeartbeat ---- */

typedef struct beat_q {
	const char *params[3];
	bool found, ended;
	int64_t line, node, last_seen, expires_at, reason;
	char state[16];
} beat_q_t;

static int session_state_tx(fd_tx_t *tx, void *arg)
{
	beat_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_SESSION_STATE, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	if (!(q->found = PQntuples(res) == 1))
		return 0;
	q->line = col_i64(res, 0, STATE_COL_LINE);
	q->node = col_i64(res, 0, STATE_COL_NODE);
	q->ended = col_bool(res, 0, STATE_COL_ENDED);
	q->reason = col_i64(res, 0, STATE_COL_END_REASON);
	q->last_seen = col_i64(res, 0, STATE_COL_LAST_SEEN);
	q->expires_at = col_i64(res, 0, STATE_COL_EXPIRES);
	snprintf(q->state, sizeof(q->state), "%s", PQgetvalue(res, 0, STATE_COL_LINE_STATE));
	return 0;
}

static int end_session_tx(fd_tx_t *tx, void *arg)
{
	beat_q_t *q = arg;
	int rc = fd_tx_exec(tx, &SQL_ASYNC, NULL, 0, NULL);
	if (rc < 0)
		return rc;
	return fd_tx_exec(tx, &SQL_END_SESSION, q->params, FD_TX_LAST, NULL);
}

/* ---- failover ---- */

typedef struct move_q {
	fd_arena_t *arena;
	const char *params[4];
	bool found;
	int64_t stream, format;
	char *ip;
} move_q_t;

static int session_route_tx(fd_tx_t *tx, void *arg)
{
	move_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_SESSION_ROUTE, q->params, FD_TX_LAST, &res);
	if (rc < 0 || !(q->found = PQntuples(res) == 1))
		return rc;
	q->stream = col_i64(res, 0, ROUTE_COL_STREAM);
	q->format = col_i64(res, 0, ROUTE_COL_FORMAT);
	return (q->ip = fd_arena_strdup(q->arena, PQgetvalue(res, 0, ROUTE_COL_CLIENT_IP))) ? 0 : TX_OOM(tx);
}

static int session_move_tx(fd_tx_t *tx, void *arg)
{
	move_q_t *q = arg;
	return fd_tx_exec(tx, &SQL_SESSION_MOVE, q->params, FD_TX_LAST, NULL);
}

/* The session's node is down, overloaded, draining or disabled (or its
 * state is not known): ask Route again with it as the current node (kept if
 * it is in fact fit), move the session when Route names another, and tell
 * the player. Failing that, the session keeps its node: a heartbeat is
 * never refused for want of routing. */
static void failover(linesd_t *l, fd_call_t *call, int64_t tenant, int64_t session, int64_t line, int64_t node,
                     Frontdesk__V1__SessionHeartbeatResponse *m)
{
	fd_arena_t *a = fd_call_arena(call);
	move_q_t q = { .arena = a, .params = { fd_arena_printf(a, "%" PRId64, tenant),
		                                   fd_arena_printf(a, "%" PRId64, session),
		                                   fd_arena_printf(a, "%" PRId64, node), NULL } };
	fd_err_t err;
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	if (!q.params[0] || !q.params[1] || !q.params[2] || fd_db_run_opts(l->db, &o, session_route_tx, &q, &err) < 0 ||
	    !q.found)
		return;
	Frontdesk__V1__RouteRequest rr = FRONTDESK__V1__ROUTE_REQUEST__INIT;
	rr.tenant_id = tenant;
	rr.line_id = line;
	rr.session_id = session;
	rr.stream_id = q.stream;
	rr.client_ip = q.ip;
	rr.output_format = (Frontdesk__V1__OutputFormat)q.format;
	rr.current_node_id = node;
	Frontdesk__V1__RouteResponse *route;
	if (routing_route(l, &rr, a, &route, &err) < 0 || !route->node) {
		fd_debug("session %" PRId64 " stays on node %" PRId64 ": %s", session, node, err.msg);
		return;
	}
	int64_t to = route->node->node_id;
	if (to != node) {
		o.read_only = false;
		if (!(q.params[3] = fd_arena_printf(a, "%" PRId64, to)) || fd_db_run_opts(l->db, &o, session_move_tx, &q, &err) < 0)
			return;
		cache_set_node(l->cache, session, to);
		m->node_changed = true;
		fd_info("session %" PRId64 " of tenant %" PRId64 " moved from node %" PRId64 " to node %" PRId64, session,
		        tenant, node, to);
	}
	m->node = route->node;
	m->backups = route->backups;
	m->n_backups = route->n_backups;
}

int linesd_session_heartbeat(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__SessionHeartbeatRequest *req = (const void *)msg;
	linesd_t *l = linesd_of(call);
	fd_arena_t *a = fd_call_arena(call);
	fd_tctx_t t;
	bool active;
	int rc = lines_edge_begin(&t, call, req->tenant_id, &active);
	if (rc < 0)
		return rc;
	if (req->session_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "session_id: required");
	Frontdesk__V1__SessionHeartbeatResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->next_heartbeat_seconds = (int32_t)l->cfg->heartbeat_interval;
	int64_t now = fd_now_s(), timeout = l->cfg->session_timeout;

	/* The cache: a live session of this tenant, its line unchanged since cached. */
	cache_entry_t e = { 0 };
	bool hit = active && events_listening(l) && cache_touch(l->cache, req->session_id, req->tenant_id, now, timeout, &e);
	int64_t node = e.node, expires_at = e.expires_at, line = e.line;
	if (!hit) {
		uint64_t gen = cache_gen(l->cache, req->session_id);
		beat_q_t q = { .params = { t.tenant_s,
			                       fd_arena_printf(a, "%" PRId64, req->session_id), NULL } };
		if (!q.params[0] || !q.params[1])
			return OOM(call);
		fd_tx_opts_t o = { .read_only = true };
		if ((rc = fd_tctx_run(&t, l->db, &o, session_state_tx, &q)) < 0)
			return rc;
		if (!q.found)
			return fd_call_fail(call, FD_ENOTFOUND, "session %" PRId64 " not found", req->session_id);
		m->expires_at = q.expires_at;
		int64_t end = 0;
		if (q.ended)
			end = q.reason;
		else if (now - q.last_seen > timeout)
			end = FRONTDESK__V1__SESSION_END_REASON__SESSION_END_REASON_TIMED_OUT;
		else if (strcmp(q.state, "active") != 0 || !active)
			end = FRONTDESK__V1__SESSION_END_REASON__SESSION_END_REASON_LINE_REVOKED;
		else if (now >= q.expires_at)
			end = FRONTDESK__V1__SESSION_END_REASON__SESSION_END_REASON_LINE_EXPIRED;
		if (end) {
			if (!q.ended) {
				q.params[2] = fd_arena_printf(a, "%" PRId64, end);
				o.read_only = false;
				if (!q.params[2])
					return OOM(call);
				if ((rc = fd_tctx_run(&t, l->db, &o, end_session_tx, &q)) < 0)
					return rc;
			}
			m->active = false;
			m->end_reason = (Frontdesk__V1__SessionEndReason)end;
			return 0;
		}
		node = q.node;
		line = q.line;
		expires_at = q.expires_at;
		e = (cache_entry_t){ .id = req->session_id, .tenant = req->tenant_id, .line = q.line, .node = q.node,
			                 .expires_at = q.expires_at, .last_seen = now };
		sessions_remember(l, false, gen, &e);
	}
	cache_note_beat(l->cache, req->tenant_id, req->session_id, now);
	m->active = true;
	m->expires_at = expires_at;
	m->node = routing_node_message(a, node);
	if (node && routing_node_unfit(l, node))
		failover(l, call, req->tenant_id, req->session_id, line, node, m);
	return 0;
}

/* ---- EndSession, KickSession, ListSessions ---- */

typedef struct sess_q {
	fd_tctx_t *r;                   /* portals; NULL for the edge */
	const char *reason;          /* KickSession's (audited); NULL: EndSession */
	fd_arena_t *arena;
	int64_t tenant;
	const char *params[9];
	int limit;
	Frontdesk__V1__Session **out;
	size_t n;
} sess_q_t;

/* KickSession's audit row (session.kick), the transaction's last statement. */
static int audit_kick(fd_tx_t *tx, sess_q_t *q, const Frontdesk__V1__Session *s)
{
	const char *line = lines_i64(q->r, s->line_id);
	const char *target = fd_arena_printf(q->arena, "session:%" PRId64, s->id);
	const char *detail[] = { "line", line, q->reason[0] ? "reason" : NULL, q->reason, NULL };
	if (!line || !target)
		return TX_OOM(tx);
	return fd_tctx_audit(tx, q->r, "session.kick", target, detail, FD_TX_LAST);
}

static int close_session_tx(fd_tx_t *tx, void *arg)
{
	sess_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_ASYNC, NULL, 0, NULL);
	if (rc < 0 || (rc = fd_tx_exec(tx, &SQL_CLOSE_SESSION, q->params, 0, &res)) < 0)
		return rc;
	if (col_i64(res, 0, CLOSE_COL_VISIBLE) == 0)
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "session %s not found", q->params[1]);
	/* Only a kick that ended a live session is audited: kicking an ended
	 * one again changes nothing (and answers the same). */
	bool audited = q->reason && col_i64(res, 0, CLOSE_COL_ENDED) > 0;
	if ((rc = fd_tx_exec(tx, &SQL_SESSION, q->params, audited ? 0 : FD_TX_LAST, &res)) < 0)
		return rc;
	q->n = 1;
	if (!(q->out = fd_arena_alloc(q->arena, sizeof(*q->out))) ||
	    !(q->out[0] = session_message(q->arena, q->tenant, res, 0, 0)))
		return TX_OOM(tx);
	return audited ? audit_kick(tx, q, q->out[0]) : 0;
}

int linesd_end_session(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__EndSessionRequest *req = (const void *)msg;
	linesd_t *l = linesd_of(call);
	fd_arena_t *a = fd_call_arena(call);
	fd_tctx_t t;
	bool active;
	int rc = lines_edge_begin(&t, call, req->tenant_id, &active);
	if (rc < 0)
		return rc;
	if (req->session_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "session_id: required");
	/* Always announced: another replica's cache may hold it (and would keep
	 * answering its heartbeats). */
	sess_q_t q = { .arena = a, .tenant = req->tenant_id,
		           .params = { t.tenant_s,
		                       fd_arena_printf(a, "%" PRId64, req->session_id), "1", "", "true" } };
	if (!q.params[0] || !q.params[1])
		return OOM(call);
	fd_tx_opts_t o = { 0 };
	if ((rc = fd_tctx_run(&t, l->db, &o, close_session_tx, &q)) < 0)
		return rc;
	cache_drop(l->cache, req->session_id);
	Frontdesk__V1__EndSessionResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->session = q.out[0];
	return 0;
}

int linesd_kick_session(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__KickSessionRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_SESSIONS_WRITE, req->tenant_id, "lines");
	if (rc < 0)
		return rc;
	if (req->session_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "session_id: required");
	if ((rc = fd_check_text("reason", req->reason, 0, 500, fd_call_err(call))) < 0)
		return rc;
	/* Always announced: every replica's heartbeat cache must hear of it. */
	sess_q_t q = { .r = &r, .reason = req->reason, .arena = r.arena, .tenant = r.tenant,
		           .params = { r.tenant_s, lines_i64(&r, req->session_id), "3", fd_subtree_prefix(&r.c), "true" } };
	if (!q.params[1] || !q.params[3])
		return OOM(call);
	if ((rc = lines_run(&r, close_session_tx, &q)) < 0)
		return rc;
	cache_drop(linesd_of(r.call)->cache, req->session_id);
	Frontdesk__V1__KickSessionResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->session = q.out[0];
	return 0;
}

static int list_sessions_tx(fd_tx_t *tx, void *arg)
{
	sess_q_t *q = arg;
	int rc;
	if (q->params[5]) {     /* a reseller id: its subtree, if the caller may see it */
		const char *path;
		if ((rc = lines_reseller(tx, q->r, strtoll(q->params[5], NULL, 10), &path, NULL)) < 0)
			return rc;
		if (!(q->params[5] = fd_arena_printf(q->arena, "%s%%", path)))
			return TX_OOM(tx);
	}
	PGresult *res;
	if ((rc = fd_tx_exec(tx, &SQL_LIST_SESSIONS, q->params, FD_TX_LAST, &res)) < 0)
		return rc;
	q->n = (size_t)PQntuples(res);
	if (!(q->out = fd_arena_alloc(q->arena, (q->n + 1) * sizeof(*q->out))))
		return TX_OOM(tx);
	for (size_t i = 0; i < q->n; i++)
		if (!(q->out[i] = session_message(q->arena, q->tenant, res, (int)i, 0)))
			return TX_OOM(tx);
	return 0;
}

int linesd_list_sessions(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListSessionsRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_SESSIONS_READ, req->tenant_id, "lines");
	if (rc < 0)
		return rc;
	int limit;
	int64_t after;
	if ((rc = fd_check_page(req->page_size, req->page_token, &limit, &after, fd_call_err(call))) < 0)
		return rc;
	if (req->line_id < 0 || req->reseller_id < 0 || req->stream_id < 0 || req->node_id < 0)
		return fd_call_fail(call, FD_EINVAL, "line_id, reseller_id, stream_id, node_id: must not be negative");
	sess_q_t q = { .r = &r, .arena = r.arena, .tenant = r.tenant, .limit = limit,
		           .params = { r.tenant_s, lines_i64(&r, after), lines_i64(&r, limit + 1), fd_subtree_prefix(&r.c),
		                       req->line_id ? lines_i64(&r, req->line_id) : NULL,
		                       req->reseller_id ? lines_i64(&r, req->reseller_id) : NULL,
		                       req->stream_id ? lines_i64(&r, req->stream_id) : NULL,
		                       req->node_id ? lines_i64(&r, req->node_id) : NULL,
		                       lines_i64(&r, linesd_of(r.call)->cfg->session_timeout) } };
	if (!q.params[1] || !q.params[2] || !q.params[3] || !q.params[8])
		return OOM(call);
	if ((rc = lines_run_ro(&r, list_sessions_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__ListSessionsResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->sessions = q.out;
	m->n_sessions = q.n > (size_t)limit ? (size_t)limit : q.n;
	if (q.n > (size_t)limit && !(m->next_page_token = fd_page_token(r.arena, q.out[limit - 1]->id)))
		return OOM(call);
	return 0;
}


/* ---- ReportSessions ---- */

#define REPORT_MAX 10000

/* One reported session, and what the answer says of it. */
typedef struct report_item {
	int64_t tenant, id;
	uint64_t gen;                /* the cache's generation before the database was asked */
	bool asked;                  /* a miss: the database was asked */
	bool found;                  /* ... and knew it */
	bool live;
	int64_t reason;              /* not live: why (0 unknown) */
	int64_t line, node, expires_at;
} report_item_t;

static int report_cmp(const void *a_, const void *b_)
{
	const report_item_t *a = a_, *b = b_;
	if (a->tenant != b->tenant)
		return a->tenant < b->tenant ? -1 : 1;
	return a->id < b->id ? -1 : a->id > b->id;
}

typedef struct report_q {
	const char *params[5];
	report_item_t *items;        /* the tenant's, sorted by id */
	size_t n;
} report_q_t;

static int report_tx(fd_tx_t *tx, void *arg)
{
	report_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_REPORT_SESSIONS, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < q->n; i++)
		q->items[i].found = false;   /* a retried attempt starts afresh */
	for (int r = 0; r < PQntuples(res); r++) {
		report_item_t key = { .tenant = q->items[0].tenant, .id = col_i64(res, r, REPORT_COL_ID) };
		report_item_t *it = bsearch(&key, q->items, q->n, sizeof(*q->items), report_cmp);
		if (!it)
			continue;
		it->found = true;
		it->reason = col_i64(res, r, REPORT_COL_VERDICT);
		it->live = it->reason == 0;
		it->line = col_i64(res, r, REPORT_COL_LINE);
		it->node = col_i64(res, r, REPORT_COL_NODE);
		it->expires_at = col_i64(res, r, REPORT_COL_EXPIRES);
	}
	return 0;
}

/* The misses of one tenant's items [0, n): one statement reads them all,
 * ends those that are no longer allowed and says which are live. */
static int report_tenant(linesd_t *l, fd_tctx_t *t, bool active, report_item_t *items, size_t n)
{
	fd_arena_t *a = t->arena;
	size_t misses = 0;
	for (size_t i = 0; i < n; i++)
		misses += items[i].asked;
	if (!misses)
		return 0;
	/* The ids of the misses, in order (the items stay sorted: bsearch). */
	char *ids = fd_arena_alloc(a, misses * 21 + 3), *p = ids;
	if (!ids)
		return OOM(t->call);
	*p++ = '{';
	for (size_t i = 0; i < n; i++)
		if (items[i].asked)
			p += sprintf(p, "%s%" PRId64, p[-1] == '{' ? "" : ",", items[i].id);
	strcpy(p, "}");
	const char *paths = authorize_suspended_paths(t, l);
	if (!paths)
		return -(int)fd_call_err(t->call)->code;
	report_q_t q = { .params = { t->tenant_s, ids, lines_i64(t, l->cfg->session_timeout), active ? "true" : "false",
		                         paths },
		             .items = items, .n = n };
	if (!q.params[2])
		return OOM(t->call);
	return fd_tctx_run(t, l->db, NULL, report_tx, &q);
}

int linesd_report_sessions(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ReportSessionsRequest *req = (const void *)msg;
	linesd_t *l = linesd_of(call);
	fd_arena_t *a = fd_call_arena(call);
	fd_tctx_t t = { .call = call, .arena = a };
	int rc = lines_service_caller(call, &t.c, FRONTDESK__V1__SCOPE__SCOPE_SESSIONS_REPORT);
	if (rc < 0)
		return rc;
	if (req->n_sessions > REPORT_MAX)
		return fd_call_fail(call, FD_EINVAL, "sessions: at most %d per call (%zu given)", REPORT_MAX,
		                    req->n_sessions);
	size_t n = req->n_sessions;
	report_item_t *items = fd_arena_zalloc(a, (n ? n : 1) * sizeof(*items));
	if (!items)
		return OOM(call);
	for (size_t i = 0; i < n; i++) {
		const Frontdesk__V1__SessionReport *s = req->sessions[i];
		if (s->tenant_id <= 0 || s->session_id <= 0)
			return fd_call_fail(call, FD_EINVAL, "sessions[%zu]: tenant_id and session_id must be positive", i);
		items[i] = (report_item_t){ .tenant = s->tenant_id, .id = s->session_id };
	}
	qsort(items, n, sizeof(*items), report_cmp);
	size_t k = 0;   /* the same session reported twice counts once */
	for (size_t i = 0; i < n; i++)
		if (!k || report_cmp(&items[k - 1], &items[i]) != 0)
			items[k++] = items[i];
	n = k;

	Frontdesk__V1__ReportSessionsResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	int64_t timeout = l->cfg->session_timeout;
	m->next_report_seconds = (int32_t)(timeout / 3 > 1 ? timeout / 3 : 1);
	int64_t now = fd_now_s();
	bool listening = events_listening(l);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && items[j].tenant == items[i].tenant)
			j++;
		int64_t tenant = items[i].tenant;
		lines_tctx_tenant(&t, tenant);
		rules_tenant_t rt;
		rc = rules_tenant(&t, l, NULL, NULL, &rt);
		if (rc == -FD_ENOTFOUND) {
			*fd_call_err(call) = (fd_err_t){ 0 };
			i = j;     /* no such tenant: its sessions are unknown (ended, no reason) */
			continue;
		}
		if (rc < 0)
			return rc;
		bool active = rt.active;
		/* The cache first (a live session of this tenant, its line
		 * unchanged since cached), as SessionHeartbeat answers. */
		for (size_t x = i; x < j; x++) {
			report_item_t *it = &items[x];
			cache_entry_t e;
			if (active && listening && cache_touch(l->cache, it->id, tenant, now, timeout, &e)) {
				it->live = true;
				cache_note_beat(l->cache, tenant, it->id, now);
			} else {
				it->asked = true;
				it->gen = cache_gen(l->cache, it->id);
			}
		}
		if ((rc = report_tenant(l, &t, active, items + i, j - i)) < 0)
			return rc;
		for (size_t x = i; x < j; x++) {
			report_item_t *it = &items[x];
			if (!it->asked || !it->live)
				continue;
			cache_note_beat(l->cache, tenant, it->id, now);
			cache_entry_t e = { .id = it->id, .tenant = tenant, .line = it->line, .node = it->node,
				                .expires_at = it->expires_at, .last_seen = now };
			sessions_remember(l, false, it->gen, &e);
		}
		i = j;
	}

	size_t nended = 0;
	for (size_t i = 0; i < n; i++)
		nended += !items[i].live;
	if (!nended)
		return 0;
	Frontdesk__V1__EndedSession *ended = fd_arena_zalloc(a, nended * sizeof(*ended));
	Frontdesk__V1__EndedSession **endedp = fd_arena_alloc(a, nended * sizeof(*endedp));
	if (!ended || !endedp)
		return OOM(call);
	for (size_t i = 0, e = 0; i < n; i++) {
		report_item_t *it = &items[i];
		if (it->live)
			continue;
		frontdesk__v1__ended_session__init(&ended[e]);
		ended[e].tenant_id = it->tenant;
		ended[e].session_id = it->id;
		ended[e].end_reason = it->found && it->reason >= 0 &&
		                              it->reason <= FRONTDESK__V1__SESSION_END_REASON__SESSION_END_REASON_LINE_REVOKED
		                          ? (Frontdesk__V1__SessionEndReason)it->reason
		                          : FRONTDESK__V1__SESSION_END_REASON__SESSION_END_REASON_UNSPECIFIED;
		endedp[e] = &ended[e];
		e++;
	}
	m->ended = endedp;
	m->n_ended = nended;
	/* The ones ended here leave this replica's cache through their
	 * announced end; the others were never in it. */
	return 0;
}
