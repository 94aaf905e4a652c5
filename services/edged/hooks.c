/* hooks.c - the streaming servers' hooks, answered from memory (no database,
 * no call to linesd while its event stream is live):
 *
 *   GET  /hook/nginx/{node}/{secret}                 nginx auth_request
 *   POST /hook/rtmp/{node}/{secret}/play|update|done nginx-rtmp on_play,
 *                                                    on_update, on_play_done
 *   GET  /hook/flussonic/{node}/{secret}?...         Flussonic auth backend
 *
 * Every hook request is a node's: {node} and {secret} (edged --node-secret)
 * are checked first (edge_node_secret_ok, constant time), and a hand-off
 * token is accepted only from the node it names. Then, for every request a
 * node asks about: the token's MAC, its node, its expiry, the client's
 * address as the node saw it, the stream and the format against what is
 * asked, and the session's state (state.h: not ended, line not revoked
 * since the token was issued). An allowed check queues the session for the
 * batched report (ReportSessions), which is what keeps it alive at linesd:
 * a session lives as long as its node keeps asking, and ends
 * (FRONTDESK_SESSION_TIMEOUT) when it stops. A denial is 403 with a short
 * reason in X-Frontdesk-Denied (and the body); nothing secret in either.
 *
 * nginx (docker/nginx/hls-node.conf) asks for every playlist and segment:
 * X-Original-URI is /{token}/{stream}/{file}.m3u8 or .../{file}.ts for an
 * m3u8 token, /{token}/{stream}.ts for a ts token; X-Real-IP the player's
 * address. 204 allows. A kick is seen on the next request (within a
 * segment's length). The shipped HLS node serves no long .ts downloads: a
 * long download behind auth_request is checked once, when it starts, so
 * nothing could stop it or keep its session alive; nginx nodes therefore
 * register only M3U8 (and RTMP) URLs, and routerd routes .ts players only to
 * nodes that re-check (Flussonic's update_session, or none: 503).
 *
 * nginx-rtmp (docker/nginx/rtmp-node.conf) posts form fields call, addr,
 * clientid, app, name and the play's query arguments (fdt = the token):
 * play and update answer 200 or 403 (a non-2xx update ends the play; the
 * node re-asks every notify_update_timeout, 30 s, so a kick takes effect
 * within 30 s); update_publish (the local publisher) is 200; done ends the
 * session at once (EndSession with the token's tenant; edged's service token
 * has playback_authorize, which EndSession needs) and always answers 200.
 *
 * Flussonic: the simplest correct flow is the hand-off's own token. The
 * player reaches Flussonic with the token edged issued (Flussonic passes it
 * as token=), Flussonic asks on new_session and again every X-AuthDuration
 * (update_session); both are checked like nginx's requests (name = the
 * stream id, proto hls/mpegts/rtmp = the token's format, ip = the player's
 * address), with no AuthorizePlayback: the session was opened (and the
 * connection limit applied) by the hand-off, so Flussonic's session_id is
 * not needed as a client session key. A token that is not edged's is
 * refused: credentials never reach a node. Allowed: 200 with
 * X-AuthDuration (30 s, or less when the token expires sooner: a kick takes
 * effect within it), X-UserId (the line id), X-Max-Sessions (the line's
 * connection limit, when this replica made the token: see
 * state_note_session) and X-Unique: true. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "http.h"
#include "state.h"
#include "token.h"
#include "upstream.h"
#include "fd/clock.h"
#include "fd/log.h"

#define DENIED_HEADER "X-Frontdesk-Denied"
#define FLUSSONIC_AUTH_DURATION 30

typedef struct hook {
	edge_req_t *r;
	const char *kind;            /* "nginx", "rtmp", "flussonic" (arena) */
	int64_t node;
	const char *action;          /* the segment after the secret, "" when none (arena) */
} hook_t;

static int deny(edge_req_t *r, const char *why)
{
	edge_reply_header(r, DENIED_HEADER, why);
	return edge_reply_text(r, 403, why);
}

/* Digits, no leading zero, at most 18: a positive int64. */
static bool parse_id(const char *s, size_t n, int64_t *out)
{
	if (n == 0 || n > 18 || s[0] == '0')
		return false;
	int64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* /hook/{kind}/{node}/{secret}[/{action}]: 0 with *h, or a reply was queued. */
static int authenticate(edge_req_t *r, hook_t *h)
{
	const char *p = r->path + strlen("/hook/");
	const char *s1 = strchr(p, '/');
	const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
	if (!s1 || !s2)
		return edge_reply_text(r, 404, "not found: /hook/{nginx|rtmp|flussonic}/{node}/{secret}"), -1;
	const char *secret = s2 + 1;
	const char *s3 = strchr(secret, '/');
	size_t slen = s3 ? (size_t)(s3 - secret) : strlen(secret);
	h->r = r;
	h->action = s3 ? s3 + 1 : "";
	if (strchr(h->action, '/'))
		return edge_reply_text(r, 404, "not found"), -1;
	if (!(h->kind = fd_arena_strndup(r->arena, p, (size_t)(s1 - p))))
		return edge_reply_text(r, 500, "out of memory"), -1;
	if (!parse_id(s1 + 1, (size_t)(s2 - s1 - 1), &h->node) ||
	    !edge_node_secret_ok(r->e->keys, h->node, secret, slen))
		return deny(r, "bad node credentials"), -1;
	return 0;
}

/* The checks every served request passes; NULL, or why not. *tok is the
 * opened token (zeroed when it could not be). */
static const char *check(hook_t *h, const char *text, size_t len, const char *ip, int64_t stream, int format,
                         edge_token_t *tok)
{
	edged_t *e = h->r->e;
	if (edge_token_open(e->keys, text, len, tok) != EDGE_TOKEN_OK)
		return "invalid token";
	if (!edge_token_for_node(tok, h->node))
		return "token for another node";
	if (edge_token_expired(tok, fd_now_s()))
		return "token expired";
	if (!ip || !edge_token_ip_matches(tok, ip))
		return "address mismatch";
	if (tok->stream_id != stream)
		return "stream mismatch";
	if (tok->format != format)
		return "format mismatch";
	state_verdict_t v = state_check(e, tok->tenant_id, tok->line_id, tok->session_id, tok->issued_at_ms);
	return v == STATE_LIVE ? NULL : state_verdict_text(v);
}

/* ---- nginx auth_request ---- */

static bool file_name(const char *s, size_t n, const char *ext)
{
	size_t el = strlen(ext);
	if (n <= el || memcmp(s + n - el, ext, el) != 0)
		return false;
	for (size_t i = 0; i < n - el; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static int hook_nginx(hook_t *h)
{
	edge_req_t *r = h->r;
	if (h->action[0])
		return edge_reply_text(r, 404, "not found");
	const char *uri = edge_header(r, "X-Original-URI");
	const char *ip = edge_header(r, "X-Real-IP");
	if (!uri || !ip)
		return edge_reply_text(r, 400, "X-Original-URI and X-Real-IP are required (see hls-node.conf)");
	/* The player's URI at the node, its query aside. */
	size_t n = strcspn(uri, "?#");
	if (n < 2 || uri[0] != '/')
		return deny(r, "not a stream URL");
	const char *tk = uri + 1;
	const char *end = uri + n;
	const char *s1 = memchr(tk, '/', (size_t)(end - tk));
	if (!s1)
		return deny(r, "not a stream URL");
	const char *rest = s1 + 1;
	const char *s2 = memchr(rest, '/', (size_t)(end - rest));
	int64_t stream;
	int format;
	if (s2) {
		/* /{token}/{stream}/{file}: an m3u8 token's playlist or segment. */
		const char *file = s2 + 1;
		size_t fl = (size_t)(end - file);
		if (memchr(file, '/', fl) || !parse_id(rest, (size_t)(s2 - rest), &stream) ||
		    !(file_name(file, fl, ".m3u8") || file_name(file, fl, ".ts")))
			return deny(r, "not a stream URL");
		format = EDGE_FORMAT_M3U8;
	} else {
		/* /{token}/{stream}.ts: a ts token's stream. */
		size_t rl = (size_t)(end - rest);
		if (rl <= 3 || memcmp(end - 3, ".ts", 3) != 0 || !parse_id(rest, rl - 3, &stream))
			return deny(r, "not a stream URL");
		format = EDGE_FORMAT_TS;
	}
	edge_token_t tok;
	const char *why = check(h, tk, (size_t)(s1 - tk), ip, stream, format, &tok);
	if (why)
		return deny(r, why);
	return edge_reply_empty(r, 204);
}

/* ---- nginx-rtmp ---- */

static void end_session(edged_t *e, int64_t tenant, int64_t session)
{
	fd_arena_t a;
	fd_arena_init(&a, (size_t)1 << 20);
	Frontdesk__V1__EndSessionRequest req = FRONTDESK__V1__END_SESSION_REQUEST__INIT;
	req.tenant_id = tenant;
	req.session_id = session;
	Frontdesk__V1__EndSessionResponse *resp = NULL;
	fd_err_t err = { 0 };
	if (upstream_call(e, UP_LINESD, "EndSession", &req.base, &frontdesk__v1__end_session_response__descriptor, &a,
	                  (ProtobufCMessage **)&resp, &err) < 0)
		fd_info("rtmp done: session %" PRId64 " not ended at linesd (%s); it times out", session, err.msg);
	fd_arena_free(&a);
}

static int hook_rtmp(hook_t *h)
{
	edge_req_t *r = h->r;
	const char *call = edge_arg(r, "call");
	const char *fdt = edge_arg(r, "fdt");
	const char *name = edge_arg(r, "name");
	bool play = strcmp(h->action, "play") == 0, update = strcmp(h->action, "update") == 0,
	     done = strcmp(h->action, "done") == 0;
	if (!play && !update && !done)
		return edge_reply_text(r, 404, "not found: /hook/rtmp/{node}/{secret}/play, update or done");
	/* on_update fires for the node's own publisher too (publishing is
	 * allowed from the node itself only, rtmp-node.conf). */
	if (update && call && strcmp(call, "update_publish") == 0)
		return edge_reply_text(r, 200, "ok");
	if (!fdt)
		return deny(r, "token required (fdt)");
	if (done) {
		edge_token_t tok;
		if (edge_token_open(r->e->keys, fdt, strlen(fdt), &tok) != EDGE_TOKEN_OK ||
		    !edge_token_for_node(&tok, h->node))
			return deny(r, "invalid token");
		state_mark_ended(r->e, tok.tenant_id, tok.session_id,
		                 FRONTDESK__V1__SESSION_END_REASON__SESSION_END_REASON_CLOSED);
		end_session(r->e, tok.tenant_id, tok.session_id);
		return edge_reply_text(r, 200, "ok");
	}
	int64_t stream;
	if (!name || !parse_id(name, strlen(name), &stream))
		return deny(r, "stream mismatch");
	edge_token_t tok;
	const char *why = check(h, fdt, strlen(fdt), edge_arg(r, "addr"), stream, EDGE_FORMAT_RTMP, &tok);
	if (why)
		return deny(r, why);
	return edge_reply_text(r, 200, "ok");
}

/* ---- Flussonic ---- */

static int proto_format(const char *proto)
{
	if (!proto)
		return 0;
	if (strcmp(proto, "hls") == 0)
		return EDGE_FORMAT_M3U8;
	if (strcmp(proto, "mpegts") == 0)
		return EDGE_FORMAT_TS;
	if (strcmp(proto, "rtmp") == 0)
		return EDGE_FORMAT_RTMP;
	return 0;
}

static int hook_flussonic(hook_t *h)
{
	edge_req_t *r = h->r;
	if (h->action[0])
		return edge_reply_text(r, 404, "not found");
	const char *type = edge_arg(r, "request_type");
	if (type && strcmp(type, "new_session") != 0 && strcmp(type, "update_session") != 0)
		return edge_reply_text(r, 400, "request_type: new_session or update_session");
	const char *token = edge_arg(r, "token");
	const char *name = edge_arg(r, "name");
	if (!token || !token[0])
		return deny(r, "token required (play through the edge's /live/ URL)");
	int64_t stream;
	if (!name || !parse_id(name, strlen(name), &stream))
		return deny(r, "stream mismatch");
	int format = proto_format(edge_arg(r, "proto"));
	if (!format)
		return deny(r, "format mismatch");
	edge_token_t tok;
	const char *why = check(h, token, strlen(token), edge_arg(r, "ip"), stream, format, &tok);
	if (why)
		return deny(r, why);
	int64_t left = tok.expires_at - fd_now_s();
	int64_t dur = left < FLUSSONIC_AUTH_DURATION ? left : FLUSSONIC_AUTH_DURATION;
	char v[32];
	snprintf(v, sizeof(v), "%" PRId64, dur > 0 ? dur : 1);
	edge_reply_header(r, "X-AuthDuration", v);
	snprintf(v, sizeof(v), "%" PRId64, tok.line_id);
	edge_reply_header(r, "X-UserId", v);
	int32_t max = state_session_max(r->e, tok.tenant_id, tok.session_id);
	if (max > 0) {
		snprintf(v, sizeof(v), "%d", max);
		edge_reply_header(r, "X-Max-Sessions", v);
	}
	edge_reply_header(r, "X-Unique", "true");
	return edge_reply_text(r, 200, "ok");
}

int hooks_handle(edge_req_t *r)
{
	hook_t h;
	if (authenticate(r, &h) < 0)
		return 0;
	if (strcmp(h.kind, "nginx") == 0)
		return hook_nginx(&h);
	if (strcmp(h.kind, "rtmp") == 0)
		return hook_rtmp(&h);
	if (strcmp(h.kind, "flussonic") == 0)
		return hook_flussonic(&h);
	return edge_reply_text(r, 404, "not found: /hook/{nginx|rtmp|flussonic}/{node}/{secret}");
}
