/* authorize.c - AuthorizePlayback: one statement (frontdesk.authorize_playback)
 * decides, under the connection limit and exact across replicas, and the
 * answer is read from its outcome's number (enums.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "enums.h"
#include "linesd.h"
#include "store.h"
#include "cache.h"
#include "fd/text.h"

/* ---- suspended accounts, per tenant ---- */

/* The paths of a tenant's suspended accounts, as the text of a text[] of
 * LIKE prefixes ("{1.5.%}"), read at most SUSPENDED_TTL_MS ago (DESIGN.md:
 * reference data is cached at most 5 s). A handful of rows per tenant,
 * where reading the reseller tree's status for every authorization cost a
 * view with a subquery per call. */
#define SUSPENDED_SLOTS 256
#define SUSPENDED_TTL_MS 1000

typedef struct suspended_slot {
	int64_t tenant;
	int64_t read_ms;
	char *paths;                 /* malloc'd */
} suspended_slot_t;

struct linesd_suspended {
	pthread_mutex_t mu;
	suspended_slot_t slots[SUSPENDED_SLOTS];
};

int authorize_init(linesd_t *l, fd_err_t *err)
{
	struct linesd_suspended *s = calloc(1, sizeof(*s));
	if (!s)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	pthread_mutex_init(&s->mu, NULL);
	l->suspended = s;
	return 0;
}

void authorize_fini(linesd_t *l)
{
	struct linesd_suspended *s = l->suspended;
	if (!s)
		return;
	for (int i = 0; i < SUSPENDED_SLOTS; i++)
		free(s->slots[i].paths);
	pthread_mutex_destroy(&s->mu);
	free(s);
	l->suspended = NULL;
}

void authorize_forget_suspended(linesd_t *l, int64_t tenant)
{
	struct linesd_suspended *c = l->suspended;
	if (!c)
		return;
	suspended_slot_t *slot = &c->slots[(uint64_t)tenant % SUSPENDED_SLOTS];
	pthread_mutex_lock(&c->mu);
	if (slot->tenant == tenant)
		slot->read_ms = INT64_MIN / 2;   /* read again at the next use */
	pthread_mutex_unlock(&c->mu);
}

/* ---- AuthorizePlayback ---- */

typedef struct suspended_q {
	const char *params[1];
	char *paths;
} suspended_q_t;

static int suspended_tx(fd_tx_t *tx, void *arg)
{
	suspended_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_SUSPENDED, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	free(q->paths);
	if (!(q->paths = strdup(PQgetvalue(res, 0, 0))))
		return TX_OOM(tx);
	return 0;
}

const char *authorize_suspended_paths(const fd_tctx_t *t, linesd_t *l)
{
	fd_arena_t *a = t->arena;
	int64_t tenant = t->tenant;
	struct linesd_suspended *c = l->suspended;
	suspended_slot_t *slot = &c->slots[(uint64_t)tenant % SUSPENDED_SLOTS];
	int64_t now = fd_mono_ms();
	const char *out = NULL;
	pthread_mutex_lock(&c->mu);
	if (slot->paths && slot->tenant == tenant && now - slot->read_ms < SUSPENDED_TTL_MS)
		out = fd_arena_strdup(a, slot->paths);
	pthread_mutex_unlock(&c->mu);
	if (out)
		return out;
	suspended_q_t q = { { t->tenant_s }, NULL };
	static const fd_tx_opts_t ro = { .read_only = true };
	if (fd_tctx_run(t, l->db, &ro, suspended_tx, &q) < 0) {
		free(q.paths);
		return NULL;
	}
	out = fd_arena_strdup(a, q.paths);
	pthread_mutex_lock(&c->mu);
	free(slot->paths);
	slot->tenant = tenant;
	slot->read_ms = now;
	slot->paths = q.paths;
	pthread_mutex_unlock(&c->mu);
	if (!out)
		fd_call_fail(t->call, FD_EEXHAUSTED, "out of memory");
	return out;
}

typedef struct auth_q {
	linesd_t *l;
	fd_arena_t *arena;
	int64_t tenant;
	const char *params[16];
	int outcome;                 /* playback_outcome_t */
	int32_t retry_after;
	int64_t session, replaced, line_id;
	bool reused;
	Frontdesk__V1__Line *line;
} auth_q_t;

static int authorize_tx(fd_tx_t *tx, void *arg)
{
	auth_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_AUTHORIZE, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) != 1)
		return fd_err_set(fd_tx_err(tx), FD_EINTERNAL, "authorize_playback answered no row");
	q->outcome = (int)col_i64(res, 0, AUTH_COL_OUTCOME);
	q->retry_after = (int32_t)col_i64(res, 0, AUTH_COL_RETRY_AFTER);
	q->session = col_i64(res, 0, AUTH_COL_SESSION);
	q->reused = col_bool(res, 0, AUTH_COL_REUSED);
	q->replaced = col_i64(res, 0, AUTH_COL_REPLACED);
	q->line_id = col_i64(res, 0, AUTH_COL_LINE_ID);
	q->line = NULL;
	if (!PQgetisnull(res, 0, AUTH_COL_LINE) &&
	    !(q->line = line_message(q->l, q->arena, q->tenant, res, 0, AUTH_COL_LINE)))
		return TX_OOM(tx);
	return 0;
}

/* The lower of two caps, 0 meaning none. */
static int64_t lower_cap(int64_t a, int64_t b)
{
	return !a ? b : !b ? a : a < b ? a : b;
}

/* Denied before anything is read: no node can take the viewer (routerd's
 * RESOURCE_EXHAUSTED: all down, full or excluded, or the tenant's bandwidth
 * cap), or routerd could not be asked. Nothing is written. */
static int no_node(fd_call_t *call, ProtobufCMessage **resp, int rc, const char *why)
{
	Frontdesk__V1__AuthorizePlaybackResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->allowed = false;
	m->denial_reason = FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_NO_NODE_AVAILABLE;
	m->message = rc == -FD_EEXHAUSTED ? fd_arena_strdup(fd_call_arena(call), why)
	                                  : fd_arena_printf(fd_call_arena(call), "routing is unavailable: %s", why);
	if (!m->message)
		return OOM(call);
	return 0;
}

int linesd_authorize_playback(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__AuthorizePlaybackRequest *req = (const void *)msg;
	linesd_t *l = linesd_of(call);
	fd_arena_t *a = fd_call_arena(call);
	fd_tctx_t t;
	bool active;
	int rc = lines_edge_begin(&t, call, req->tenant_id, &active);
	if (rc < 0)
		return rc;
	fd_err_t *err = fd_call_err(call);
	size_t un = strlen(req->username);
	if (un == 0 || un > 64)
		return fd_call_fail(call, FD_EINVAL, "username: 1 to 64 characters");
	if (strlen(req->password) > 64)
		return fd_call_fail(call, FD_EINVAL, "password: at most 64 characters");
	if ((rc = check_ip(err, "client_ip", req->client_ip)) < 0 ||
	    (rc = fd_check_text("user_agent", req->user_agent, 0, CHECK_USER_AGENT_MAX, err)) < 0 ||
	    (rc = fd_check_text("client_session_key", req->client_session_key, 0, 128, err)) < 0)
		return rc;
	if (req->stream_id < 0 || req->node_id < 0)
		return fd_call_fail(call, FD_EINVAL, "stream_id, node_id: must not be negative");
	if (req->output_format < 0 || req->output_format > FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_RTMP)
		return fd_call_fail(call, FD_EINVAL, "output_format: not an OutputFormat");
	/* The node first: Route answers from memory, and the session is
	 * written with its node in the same statement. When no node can take
	 * the viewer, the line is still checked (without a session): a denial
	 * of the line itself (credentials, expiry, ...) is the answer, and only
	 * an allowed line is told NO_NODE_AVAILABLE. A suspended tenant is
	 * denied by the checks, Route is not asked. */
	Frontdesk__V1__RouteResponse *route = NULL;
	int64_t node = req->node_id, stream = req->stream_id;
	int route_rc = 0;
	fd_err_t rerr;
	if (!node && stream && active && routing_enabled(l)) {
		Frontdesk__V1__RouteRequest rr = FRONTDESK__V1__ROUTE_REQUEST__INIT;
		rr.tenant_id = req->tenant_id;
		rr.stream_id = req->stream_id;
		rr.client_ip = req->client_ip;
		rr.client_country = req->client_country;
		rr.client_region = req->client_region;
		rr.output_format = req->output_format;
		if ((route_rc = routing_route(l, &rr, a, &route, &rerr)) == -FD_EINVAL)
			return fd_call_fail(call, FD_EINVAL, "%s", rerr.msg);   /* client_country, client_region */
		if (route_rc == 0 && !route->node)
			route_rc = fd_err_set(&rerr, FD_EINTERNAL, "routerd answered without a node");
		if (route_rc < 0)
			stream = 0;   /* check the line only */
		else
			node = route->node->node_id;
	}
	char pwh[65];
	line_password_hash(l, req->tenant_id, req->password, pwh);
	auth_q_t q = { .l = l, .arena = a, .tenant = req->tenant_id };
	const char *paths = authorize_suspended_paths(&t, l);
	if (!paths)
		return -(int)err->code;
	const char *params[16] = {
		t.tenant_s, req->username, pwh,
		fd_arena_printf(a, "%" PRId64, stream), req->client_ip, req->user_agent,
		fd_arena_printf(a, "%d", (int)req->output_format), fd_arena_printf(a, "%" PRId64, node),
		req->client_session_key, active ? "true" : "false",
		fd_arena_printf(a, "%" PRId64, l->cfg->session_timeout), fd_arena_printf(a, "%" PRId64, l->cfg->fail_window),
		fd_arena_printf(a, "%" PRId64, l->cfg->fail_max_user), fd_arena_printf(a, "%" PRId64, l->cfg->fail_max_ip),
		stream && events_watched(l, req->tenant_id) ? "true" : "false", paths,
	};
	memcpy(q.params, params, sizeof(params));
	for (int i = 0; i < 16; i++)
		if (!q.params[i])
			return OOM(call);
	/* The session's id (and so its shard) is known only after: every drop counts. */
	uint64_t drops = cache_drops(l->cache);
	fd_tx_opts_t o = { .generic_plans = true };
	if ((rc = fd_tctx_run(&t, l->db, &o, authorize_tx, &q)) < 0)
		return rc;
	playback_answer_t answer = playback_answer(q.outcome);
	if (route_rc < 0 && answer.allowed)
		return no_node(call, resp, route_rc, rerr.msg);

	Frontdesk__V1__AuthorizePlaybackResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->line = q.line;
	if (m->line)
		m->line->password = req->password;   /* the player's own; not opened again */
	if (answer.allowed) {
		m->allowed = true;
		m->session_id = q.session;
		m->session_reused = q.reused;
		m->replaced_session_id = q.replaced;
		m->bandwidth_cap_kbps = lower_cap(q.line ? q.line->bandwidth_cap_kbps : 0, route ? route->bitrate_cap_kbps : 0);
		m->recheck_after_seconds = (int32_t)l->cfg->heartbeat_interval;
		if (route) {
			m->node = route->node;
			m->backups = route->backups;
			m->n_backups = route->n_backups;
		} else if (req->node_id) {
			m->node = routing_node_message(a, req->node_id);
		} else if (req->stream_id) {
			m->note = "routing is not configured (FRONTDESK_ROUTERD_TARGET): no node is named";
		}
		if (q.session && q.line) {
			cache_entry_t e = { .id = q.session, .tenant = req->tenant_id, .line = q.line_id, .node = node,
				                .expires_at = q.line->expires_at, .last_seen = fd_now_s() };
			sessions_remember(l, true, drops, &e);
			sessions_started(l, req->tenant_id, e.last_seen);
		}
		/* The one it names; any other it ended (a line over a lowered
		 * limit) leaves this cache through its announced end. */
		if (q.replaced)
			cache_drop(l->cache, q.replaced);
	} else {
		m->allowed = false;
		m->denial_reason = answer.reason;
		m->message = (char *)answer.message;
		if (q.outcome == PLAYBACK_BAD_CREDENTIALS)
			m->line = NULL;
		m->retry_after_seconds = q.retry_after;
	}
	return 0;
}

