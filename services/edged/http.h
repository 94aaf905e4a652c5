/* http.h - one HTTP request as edged's handlers see it, and their replies.
 *
 * http.c owns the libmicrohttpd daemon. For each request it finds the
 * route, the client's address (believing X-Forwarded-For and
 * X-Forwarded-Proto only from trusted proxies), the host the player used and
 * the brand (tenant) it names, then calls the route's handler once, with the
 * whole request (a POST form body already read). A handler answers with
 * exactly one edge_reply_* call and returns its result. */
#ifndef EDGE_HTTP_H
#define EDGE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "fd/arena.h"
#include "edged.h"

#define EDGE_HOST_MAX 256      /* a normalised host name and room for its NUL */
#define EDGE_IP_MAX 46         /* INET6_ADDRSTRLEN */
#define EDGE_ARG_MAX 4096      /* a query or form value at most */

typedef struct edge_req {
	edged_t *e;
	fd_arena_t *arena;              /* freed when the request ends */
	const char *method;             /* "GET", "HEAD", "POST" */
	const char *path;               /* decoded, without the /t/{slug} prefix */
	char client_ip[EDGE_IP_MAX];    /* the player's (or node's) address */
	char peer_ip[EDGE_IP_MAX];      /* the TCP peer's */
	bool https;                     /* the scheme the player used */
	char host[EDGE_HOST_MAX];       /* normalised, no port */
	const char *host_header;        /* as sent (with its port); "" when none */
	/* The brand: the tenant the host (or the /t/{slug}/ prefix on a platform
	 * host) names; 0 when none (platform host without prefix, hooks). */
	int64_t tenant_id;
	const char *tenant_slug;        /* arena */
	const char *prefix;             /* "/t/{slug}" or "": URLs edged writes start with it */
	const char *user_agent;         /* "" when none */
	struct edge_conn *conn;         /* http.c's */
} edge_req_t;

/* A query argument (GET) or form field (POST, urlencoded), NULL when
 * absent. A value sent twice, longer than EDGE_ARG_MAX, with a NUL or not
 * UTF-8 makes the request bad: http.c answers 400 naming the argument
 * before the handler runs, so a handler never sees one. */
const char *edge_arg(edge_req_t *r, const char *name);
/* A request header, NULL when absent. */
const char *edge_header(edge_req_t *r, const char *name);

/* "http://host:port" or "https://host" as the player reached this edge
 * (the Host it sent and the scheme), plus the brand's prefix: the start of
 * every URL edged writes. In the request's arena. */
const char *edge_base_url(edge_req_t *r);
/* The player's host and port separately, as server_info needs them: port
 * "80"/"443" when the Host had none. In the request's arena. */
void edge_host_port(edge_req_t *r, const char **host, const char **port);

/* A header to send with the reply (copied); before the edge_reply_* call. */
void edge_reply_header(edge_req_t *r, const char *name, const char *value);
/* Replies. Each returns 0, or -1 when the reply could not be queued (the
 * connection is then closed). */
int edge_reply_text(edge_req_t *r, unsigned status, const char *text);
/* Steals j (json_decref'd). Content-Type application/json. */
int edge_reply_json(edge_req_t *r, unsigned status, json_t *j);
/* body is malloc'd and handed over (freed with free()). */
int edge_reply_owned(edge_req_t *r, unsigned status, const char *content_type, char *body, size_t len);
/* body is copied. */
int edge_reply_copy(edge_req_t *r, unsigned status, const char *content_type, const char *body, size_t len);
/* 302 Found to location. */
int edge_reply_redirect(edge_req_t *r, const char *location);
/* 204 or another status without a body. */
int edge_reply_empty(edge_req_t *r, unsigned status);

/* The handlers (one file each, see edged.h). */
int player_api(edge_req_t *r);   /* player.c: /player_api.php */
int playlist_get(edge_req_t *r); /* playlist.c: /get.php */
int playlist_xmltv(edge_req_t *r); /* playlist.c: /xmltv.php */
int handoff_live(edge_req_t *r); /* handoff.c: /live/, /movie/, /series/, /{u}/{p}/{id} */
int hooks_handle(edge_req_t *r); /* hooks.c: /hook/... */

/* http.c: start and stop the daemon. */
int http_start(edged_t *e, fd_err_t *err) FD_MUSTCHECK;
/* Stops accepting, lets requests in flight finish (up to grace_ms), stops. */
void http_stop(edged_t *e, int64_t grace_ms);

#endif
