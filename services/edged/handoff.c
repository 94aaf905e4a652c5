/* handoff.c - /live/{user}/{pass}/{stream}.{ts|m3u8|rtmp} and the bare
 * /{user}/{pass}/{stream}[.ts|.m3u8] (ts when it has no extension): one
 * AuthorizePlayback (connection limit, locks, expiry, the node and its
 * backups from routerd), then a 302 to the routed node with a hand-off token
 * (token.h) as a path segment, so that the relative URLs of the node's HLS
 * playlist carry it too:
 *   m3u8  {node url}/{token}/{stream}/index.m3u8
 *   ts    {node url}/{token}/{stream}.ts
 *   rtmp  {node url}/{stream}?fdt={token}      (nginx-rtmp: the play's args)
 * The Location never holds the username or the password. /movie/, /series/
 * and /timeshift/ stay 404 (http.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "http.h"
#include "state.h"
#include "token.h"
#include "upstream.h"
#include "fd/clock.h"
#include "fd/log.h"

#define CRED_MAX 64              /* linesd's bound on usernames and passwords */
#define RETRY_NO_NODE "5"
#define RETRY_UNAVAILABLE "2"

typedef struct want {
	const char *user, *pass;     /* in the request's arena */
	int64_t stream;
	int format;                  /* edge_format_t */
} want_t;

/* A stream id: digits, no leading zero, at most 18 (a positive int64). */
static bool parse_stream(const char *s, size_t n, int64_t *out)
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

/* 0 with *w, or a reply was queued (-1). */
static int parse(edge_req_t *r, want_t *w)
{
	const char *p = r->path;
	bool live = strncmp(p, "/live/", 6) == 0;
	p += live ? 6 : 1;
	const char *s1 = strchr(p, '/');
	const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
	if (!s1 || !s2 || strchr(s2 + 1, '/'))
		return edge_reply_text(r, 404, "not found: /live/{username}/{password}/{stream}.ts or .m3u8"), -1;
	const char *last = s2 + 1;
	const char *dot = strchr(last, '.');
	size_t idlen = dot ? (size_t)(dot - last) : strlen(last);
	if (!parse_stream(last, idlen, &w->stream))
		return edge_reply_text(r, 400, "stream: a positive integer"), -1;
	if (!dot) {
		if (live)
			return edge_reply_text(r, 404, "unknown format: live streams end in .ts or .m3u8"), -1;
		w->format = EDGE_FORMAT_TS;
	} else if (strcmp(dot, ".ts") == 0) {
		w->format = EDGE_FORMAT_TS;
	} else if (strcmp(dot, ".m3u8") == 0) {
		w->format = EDGE_FORMAT_M3U8;
	} else if (live && strcmp(dot, ".rtmp") == 0) {
		w->format = EDGE_FORMAT_RTMP;
	} else {
		return edge_reply_text(r, 404, "unknown format: live streams end in .ts or .m3u8"), -1;
	}
	size_t ul = (size_t)(s1 - p), pl = (size_t)(s2 - s1 - 1);
	/* Out of linesd's bounds: the same answer as a wrong password. */
	if (ul == 0 || ul > CRED_MAX || pl == 0 || pl > CRED_MAX)
		return edge_reply_text(r, 403, "invalid credentials"), -1;
	char *pass = fd_arena_secret(r->arena, pl + 1);
	if (!(w->user = fd_arena_strndup(r->arena, p, ul)) || !pass)
		return edge_reply_text(r, 500, "out of memory"), -1;
	memcpy(pass, s1 + 1, pl);
	pass[pl] = '\0';
	w->pass = pass;
	return 0;
}

static unsigned denial_status(Frontdesk__V1__DenialReason d, const char **text)
{
	switch (d) {
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_BAD_CREDENTIALS:
		*text = "invalid credentials";
		return 403;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_EXPIRED:
		*text = "line expired";
		return 403;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_DISABLED:
		*text = "line disabled";
		return 403;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_BANNED:
		*text = "line banned";
		return 403;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_TENANT_SUSPENDED:
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_RESELLER_SUSPENDED:
		*text = "line suspended";
		return 403;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_IP_NOT_ALLOWED:
		*text = "address not allowed for this line";
		return 403;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_UA_NOT_ALLOWED:
		*text = "player not allowed for this line";
		return 403;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_STREAM_NOT_IN_PACKAGE:
		*text = "stream not available on this line";
		return 404;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_FORMAT_NOT_ALLOWED:
		*text = "format not allowed for this line";
		return 403;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_MAX_CONNECTIONS:
		*text = "too many connections";
		return 403;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_RATE_LIMITED:
		*text = "too many failed attempts: try again later";
		return 429;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_NO_NODE_AVAILABLE:
		*text = "no streaming node available: try again shortly";
		return 503;
	default:
		*text = "playback refused";
		return 403;
	}
}

/* "{base}" without its trailing slashes, in the arena. */
static const char *base_of(edge_req_t *r, const char *url)
{
	size_t n = strlen(url);
	while (n && url[n - 1] == '/')
		n--;
	return fd_arena_strndup(r->arena, url, n);
}

static bool scheme_ok(const char *url, int format)
{
	if (format == EDGE_FORMAT_RTMP)
		return strncmp(url, "rtmp://", 7) == 0 || strncmp(url, "rtmps://", 8) == 0;
	return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
}

static int redirect(edge_req_t *r, const want_t *w, const Frontdesk__V1__AuthorizePlaybackResponse *a)
{
	edged_t *e = r->e;
	const Frontdesk__V1__RoutedNode *node = a->node;
	if (!node || node->node_id <= 0 || !node->url || !scheme_ok(node->url, w->format)) {
		fd_warn("hand-off: session %" PRId64 " allowed without a usable node (%s)", a->session_id,
		        a->note && a->note[0] ? a->note : "no node url for the format");
		edge_reply_header(r, "Retry-After", RETRY_NO_NODE);
		return edge_reply_text(r, 503, "no streaming node available: try again shortly");
	}
	int64_t now_ms = fd_now_ms();
	edge_token_t tok = {
		.format = (uint8_t)w->format,
		.tenant_id = r->tenant_id,
		.line_id = a->line ? a->line->id : 0,
		.session_id = a->session_id,
		.stream_id = w->stream,
		.node_id = node->node_id,
		.issued_at_ms = now_ms,
		.expires_at = now_ms / 1000 + e->cfg->token_ttl,
	};
	if (a->line && a->line->expires_at > 0 && a->line->expires_at < tok.expires_at)
		tok.expires_at = a->line->expires_at;
	char text[EDGE_TOKEN_MAX];
	if (tok.line_id <= 0 || tok.session_id <= 0 || edge_token_set_ip(&tok, r->client_ip) < 0 ||
	    edge_token_make(e->keys, &tok, text, sizeof(text)) < 0) {
		fd_error("hand-off: cannot make a token (line %" PRId64 ", session %" PRId64 ")", tok.line_id,
		         tok.session_id);
		return edge_reply_text(r, 500, "internal error");
	}
	if (a->line)
		state_note_session(e, r->tenant_id, a->session_id, a->line->max_connections);
	const char *base = base_of(r, node->url);
	const char *loc = NULL;
	if (base && w->format == EDGE_FORMAT_M3U8)
		loc = fd_arena_printf(r->arena, "%s/%s/%" PRId64 "/index.m3u8", base, text, w->stream);
	else if (base && w->format == EDGE_FORMAT_TS)
		loc = fd_arena_printf(r->arena, "%s/%s/%" PRId64 ".ts", base, text, w->stream);
	else if (base)
		loc = fd_arena_printf(r->arena, "%s/%" PRId64 "?fdt=%s", base, w->stream, text);
	if (!loc)
		return edge_reply_text(r, 500, "out of memory");
	return edge_reply_redirect(r, loc);
}

int handoff_live(edge_req_t *r)
{
	want_t w;
	if (parse(r, &w) < 0)
		return 0;
	Frontdesk__V1__AuthorizePlaybackRequest req = FRONTDESK__V1__AUTHORIZE_PLAYBACK_REQUEST__INIT;
	req.tenant_id = r->tenant_id;
	req.username = (char *)w.user;
	req.password = (char *)w.pass;
	req.stream_id = w.stream;
	req.client_ip = r->client_ip;
	req.user_agent = (char *)r->user_agent;
	req.output_format = (Frontdesk__V1__OutputFormat)w.format;
	Frontdesk__V1__AuthorizePlaybackResponse *a = NULL;
	fd_err_t err = { 0 };
	int rc = upstream_call(r->e, UP_LINESD, "AuthorizePlayback", &req.base,
	                       &frontdesk__v1__authorize_playback_response__descriptor, r->arena,
	                       (ProtobufCMessage **)&a, &err);
	if (rc == -FD_EINVAL) {
		/* The request's own text (a user agent with control characters). */
		return edge_reply_text(r, 400, "request not accepted (user agent or address)");
	}
	if (rc < 0) {
		fd_warn("hand-off: linesd did not authorize (%s: %s)", fd_code_name((fd_code_t)-rc), err.msg);
		edge_reply_header(r, "Retry-After", RETRY_UNAVAILABLE);
		return edge_reply_text(r, 503, "service unavailable: try again shortly");
	}
	if (a->line && a->line->password) {
		/* linesd echoes the player's own password: wiped, never kept further. */
		sodium_memzero(a->line->password, strlen(a->line->password));
		a->line->password = NULL;
	}
	if (!a->allowed) {
		const char *text;
		unsigned status = denial_status(a->denial_reason, &text);
		if (status == 429) {
			char ra[16];
			snprintf(ra, sizeof(ra), "%d", a->retry_after_seconds > 0 ? a->retry_after_seconds : 1);
			edge_reply_header(r, "Retry-After", ra);
		} else if (status == 503) {
			edge_reply_header(r, "Retry-After", RETRY_NO_NODE);
		}
		return edge_reply_text(r, status, text);
	}
	return redirect(r, &w, a);
}
