/* authorize.c - AuthorizePlayback. A line whose rules linesd holds (rules.h)
 * and that they allow costs PostgreSQL one small statement
 * (frontdesk.open_session: the connection limit, exact across replicas);
 * anything else is decided by frontdesk.authorize_playback, as before. The
 * answer is read from the outcome's number (enums.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "check.h"
#include "enums.h"
#include "linesd.h"
#include "store.h"
#include "cache.h"
#include "rules.h"
#include "fd/text.h"

/* The suspended accounts' paths of t's tenant (rules.c's tenant rules:
 * the one source of tenant and reseller status at the edge). */
const char *authorize_suspended_paths(const fd_tctx_t *t, linesd_t *l)
{
	rules_tenant_t rt;
	if (rules_tenant(t, l, NULL, NULL, &rt) < 0)
		return NULL;
	return rt.paths;
}

/* ---- AuthorizePlayback ---- */

typedef struct auth_q {
	linesd_t *l;
	fd_arena_t *arena;
	int64_t tenant;
	const char *params[16];
	int outcome;                 /* playback_outcome_t; OPEN_STALE */
	int32_t retry_after;
	int64_t session, replaced, line_id, rev, live;
	bool reused;
	const char *path;            /* the line's reseller path (arena) */
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
	if (!PQgetisnull(res, 0, AUTH_COL_LINE)) {
		q->rev = col_i64(res, 0, AUTH_COL_REV);
		if (!(q->line = line_message_sealed(q->l, q->arena, q->tenant, res, 0, AUTH_COL_LINE)) ||
		    !(q->path = fd_arena_strdup(q->arena, PQgetvalue(res, 0, AUTH_COL_LINE + LINE_COL_PATH))))
			return TX_OOM(tx);
	}
	return 0;
}

static int open_tx(fd_tx_t *tx, void *arg)
{
	auth_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_OPEN_SESSION, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) != 1)
		return fd_err_set(fd_tx_err(tx), FD_EINTERNAL, "open_session answered no row");
	q->outcome = (int)col_i64(res, 0, OPEN_COL_OUTCOME);
	q->session = col_i64(res, 0, OPEN_COL_SESSION);
	q->reused = col_bool(res, 0, OPEN_COL_REUSED);
	q->replaced = col_i64(res, 0, OPEN_COL_REPLACED);
	q->live = col_i64(res, 0, OPEN_COL_LIVE);
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

/* The fast path: the line's rules from memory allow it, PostgreSQL opens
 * the session (rules.h). 1: decided (q filled), 0: ask authorize_playback,
 * or -code. */
static int open_from_memory(fd_tctx_t *t, linesd_t *l, const Frontdesk__V1__AuthorizePlaybackRequest *req,
                            const unsigned char pw_bin[32], const rules_addr_t *addr, const rules_tenant_t *rt,
                            int64_t stream, int64_t node, bool announce, auth_q_t *q)
{
	fd_arena_t *a = t->arena;
	rules_hit_t hit;
	if (!stream || !rt->cached || rt->blocked || !rt->active ||
	    !rules_line(l, a, req->tenant_id, req->username, pw_bin, addr, req->user_agent, (int)req->output_format,
	                fd_now_s(), rt->paths, &hit))
		return 0;
	Frontdesk__V1__Line *line = (Frontdesk__V1__Line *)protobuf_c_message_unpack(
		&frontdesk__v1__line__descriptor, &a->pb, hit.message_len, hit.message);
	if (!line)
		return OOM(t->call);
	const char *params[16] = {
		t->tenant_s, lines_i64(t, hit.line_id), lines_i64(t, hit.rev), lines_i64(t, hit.reseller_id),
		lines_i64(t, hit.max_connections), hit.bouquets, "true", lines_i64(t, stream), req->client_ip,
		req->user_agent, lines_i64(t, (int64_t)req->output_format), lines_i64(t, node), req->client_session_key,
		lines_i64(t, l->cfg->session_timeout), rt->end_oldest ? "true" : "false", announce ? "true" : "false",
	};
	memcpy(q->params, params, sizeof(params));
	for (int i = 0; i < 16; i++)
		if (!q->params[i])
			return OOM(t->call);
	fd_tx_opts_t o = { .generic_plans = true };
	int rc = fd_tctx_run(t, l->db, &o, open_tx, q);
	if (rc < 0)
		return rc;
	if (q->outcome == OPEN_STALE) {
		rules_line_drop(l, req->tenant_id, req->username);
		return 0;
	}
	if (q->outcome == PLAYBACK_STREAM_NOT_IN_PACKAGE || q->outcome == PLAYBACK_MAX_CONNECTIONS) {
		/* Denials are answered by authorize_playback, with the line as it
		 * shows it (its live count). Nothing was written. */
		return 0;
	}
	q->line = line;
	q->line_id = hit.line_id;
	q->rev = hit.rev;
	q->line->active_connections = (int32_t)q->live;
	q->line->last_seen_at = fd_now_s();
	return 1;
}

/* A session the same client reopens, answered from memory (rules.h): no
 * statement and no Route, as a heartbeat is answered. Only the very request
 * that opened or last reused the session here (address, user agent, stream,
 * format, client session key, no node named), while the line's rules allow
 * it, nothing was announced for the line or its tenant since, the session
 * is live in the heartbeat cache (an end anywhere is announced) and its
 * node is fit: then the answer is the one given then. 1: answered, 0: not
 * from memory, or -code. */
static int reopen_from_memory(fd_tctx_t *t, linesd_t *l, const Frontdesk__V1__AuthorizePlaybackRequest *req,
                              const unsigned char pw_bin[32], const rules_addr_t *addr, const rules_tenant_t *rt,
                              ProtobufCMessage **resp)
{
	if (!req->stream_id || req->node_id || !rt->cached || rt->blocked || !rt->active || !l->cache)
		return 0;
	fd_arena_t *a = t->arena;
	rules_reopen_t k = { .addr = addr, .ua = req->user_agent, .client_key = req->client_session_key,
		                 .stream = req->stream_id, .format = (int)req->output_format };
	rules_hit_t hit;
	rules_reopened_t got;
	int64_t now = fd_now_s();
	cache_entry_t e;
	if (!rules_reopen(l, a, req->tenant_id, req->username, pw_bin, &k, now, rt->paths, &hit, &got) ||
	    !events_listening(l) ||
	    !cache_touch(l->cache, got.session, req->tenant_id, now, l->cfg->session_timeout, &e) ||
	    e.line != hit.line_id)
		return 0;
	Frontdesk__V1__AuthorizePlaybackResponse *was = (void *)protobuf_c_message_unpack(
		&frontdesk__v1__authorize_playback_response__descriptor, &a->pb, got.answer_len, got.answer);
	Frontdesk__V1__Line *line = (Frontdesk__V1__Line *)protobuf_c_message_unpack(
		&frontdesk__v1__line__descriptor, &a->pb, hit.message_len, hit.message);
	if (!was || !line)
		return OOM(t->call);
	int64_t node = was->node ? was->node->node_id : 0;
	if (node != e.node || (node && routing_node_unfit(l, node)))
		return 0;   /* moved or failing: Route is asked */
	cache_note_beat(l->cache, req->tenant_id, got.session, now);
	Frontdesk__V1__AuthorizePlaybackResponse *m = fd_reply(t->call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	line->active_connections = (int32_t)got.live;   /* as counted when the slot was kept */
	line->last_seen_at = now;
	line->password = req->password;                 /* the player's own; never opened */
	m->line = line;
	m->allowed = true;
	m->session_id = got.session;
	m->session_reused = true;
	m->bandwidth_cap_kbps = was->bandwidth_cap_kbps;
	m->recheck_after_seconds = was->recheck_after_seconds;
	m->node = was->node;
	m->backups = was->backups;
	m->n_backups = was->n_backups;
	m->note = was->note;
	return 1;
}

/* Keeps the answer m (allowed, a session of a stream) for the same
 * client's next reopen: packed without its line. */
static void keep_for_reopen(linesd_t *l, const Frontdesk__V1__AuthorizePlaybackRequest *req,
                            const rules_addr_t *addr, Frontdesk__V1__AuthorizePlaybackResponse *m, int64_t rev,
                            int64_t live, rules_gen_t gen, fd_arena_t *a)
{
	Frontdesk__V1__Line *line = m->line;
	int64_t replaced = m->replaced_session_id;
	m->line = NULL;
	m->replaced_session_id = 0;
	size_t n = protobuf_c_message_get_packed_size(&m->base);
	unsigned char *buf = fd_arena_alloc(a, n ? n : 1);
	if (buf) {
		protobuf_c_message_pack(&m->base, buf);
		rules_reopen_t k = { .addr = addr, .ua = req->user_agent, .client_key = req->client_session_key,
			                 .stream = req->stream_id, .format = (int)req->output_format,
			                 .session = m->session_id, .live = live, .answer = buf, .answer_len = n };
		rules_reopen_put(l, req->tenant_id, req->username, rev, gen, &k);
	}
	m->line = line;
	m->replaced_session_id = replaced;
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
	rules_addr_t addr;
	rules_addr_parse(req->client_ip, &addr);
	rules_tenant_t rt;
	if ((rc = rules_tenant(&t, l, req->username, &addr, &rt)) < 0)
		return rc;
	active = rt.active;
	char pwh[65];
	unsigned char pw_bin[32];
	line_password_hash(l, req->tenant_id, req->password, pwh);
	sodium_hex2bin(pw_bin, sizeof(pw_bin), pwh, 64, NULL, NULL, NULL);
	rules_gen_t gen = rules_gen(l, req->tenant_id, req->username);
	uint64_t suspensions = rules_suspensions(l, req->tenant_id);
	if ((rc = reopen_from_memory(&t, l, req, pw_bin, &addr, &rt, resp)) != 0) {
		sodium_memzero(pw_bin, sizeof(pw_bin));
		return rc < 0 ? rc : 0;
	}
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
		if ((route_rc = routing_route(l, &rr, a, &route, &rerr)) == -FD_EINVAL) {
			sodium_memzero(pw_bin, sizeof(pw_bin));
			return fd_call_fail(call, FD_EINVAL, "%s", rerr.msg);   /* client_country, client_region */
		}
		if (route_rc == 0 && !route->node)
			route_rc = fd_err_set(&rerr, FD_EINTERNAL, "routerd answered without a node");
		if (route_rc < 0)
			stream = 0;   /* check the line only */
		else
			node = route->node->node_id;
	}
	bool announce = stream && events_watched(l, req->tenant_id);
	auth_q_t q = { .l = l, .arena = a, .tenant = req->tenant_id };
	/* The session's id (and so its shard) is known only after: every drop counts. */
	uint64_t drops = cache_drops(l->cache);
	int fast = open_from_memory(&t, l, req, pw_bin, &addr, &rt, stream, node, announce, &q);
	if (fast < 0)
		return fast;
	if (!fast) {
		const char *params[16] = {
			t.tenant_s, req->username, pwh,
			lines_i64(&t, stream), req->client_ip, req->user_agent,
			lines_i64(&t, (int64_t)req->output_format), lines_i64(&t, node),
			req->client_session_key, active ? "true" : "false",
			lines_i64(&t, l->cfg->session_timeout), lines_i64(&t, l->cfg->fail_window),
			lines_i64(&t, l->cfg->fail_max_user), lines_i64(&t, l->cfg->fail_max_ip),
			announce ? "true" : "false", rt.paths,
		};
		memcpy(q.params, params, sizeof(params));
		for (int i = 0; i < 16; i++)
			if (!q.params[i])
				return OOM(call);
		fd_tx_opts_t o = { .generic_plans = true };
		/* stale: the line changed between its read and its lock (a change
		 * holding the lock ended its sessions): asked again. */
		for (int tries = 1;; tries++) {
			if ((rc = fd_tctx_run(&t, l->db, &o, authorize_tx, &q)) < 0)
				return rc;
			if (q.outcome != OPEN_STALE)
				break;
			if (tries == 3)
				return fd_call_fail(call, FD_EABORTED, "the line changed during each of 3 tries; try again");
		}
		/* An allowed line's rules are kept: the next authorization of it
		 * is decided from memory. */
		if (playback_answer(q.outcome).allowed && q.line)
			rules_line_put(l, req->tenant_id, q.line, q.rev, q.path, pw_bin);
	}
	sodium_memzero(pw_bin, sizeof(pw_bin));
	playback_answer_t answer = playback_answer(q.outcome);
	if (route_rc < 0 && answer.allowed)
		return no_node(call, resp, route_rc, rerr.msg);

	Frontdesk__V1__AuthorizePlaybackResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->line = q.line;
	if (m->line)
		m->line->password = req->password;   /* the player's own; never opened */
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
			if (!req->node_id)
				keep_for_reopen(l, req, &addr, m, q.rev, q.live ? q.live : q.line->active_connections, gen, a);
			/* A suspension heard meanwhile: its sweep may have run before
			 * this session committed, so it runs again (rules.h). */
			if (rules_suspensions(l, req->tenant_id) != suspensions)
				janitor_soon(l, req->tenant_id);
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
