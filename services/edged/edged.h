/* edged.h - the HTTP edge: what players and streaming servers talk to. Its
 * settings and state, and what its parts share. The parts, one concern a
 * file:
 *
 *   main.c      settings, start (channels, service tokens, threads, the
 *               HTTP daemon), SIGTERM drain, --node-secret
 *   http.c      libmicrohttpd glue: one edge_req_t per request, the route
 *               table, the worker pool for routes that call a service, the client's address behind trusted proxies, the
 *               brand from the host, replies, the redacted access log
 *   brands.c    host names -> tenants (authd's ListBrandHosts, refreshed)
 *   upstream.c  the gRPC calls edged makes (linesd, authd) with its
 *               service tokens
 *   player.c    player_api.php (the Xtream-compatible player API)
 *   playlist.c  get.php (M3U playlists) and xmltv.php, the playlist cache
 *   handoff.c   /live/, /movie/, /series/ and the bare /{u}/{p}/{id}: 302
 *               to the routed node with a signed token
 *   token.c     the hand-off token and the per-node secrets (token.h; pure)
 *   hooks.c     the streaming servers' hooks: nginx auth_request,
 *               nginx-rtmp, Flussonic
 *   state.c     sessions and lines as linesd last announced them
 *               (WatchPlaybackEvents), and the batched session report
 *
 * edged holds no data of its own and opens no database: everything comes
 * from linesd and authd over gRPC, with bounded caches. */
#ifndef EDGED_H
#define EDGED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "fd/config.h"
#include "fd/rpc_client.h"
#include "fd/status.h"
#include "fd/token_source.h"

typedef struct edged_config {
	char *listen;                  /* host:port of the HTTP listener */
	int64_t threads;               /* workers: requests that call a service, at once */
	int64_t io_threads;            /* HTTP I/O threads (epoll each); the hooks run there */
	int64_t max_connections;       /* open HTTP connections at most */
	int64_t connection_timeout;    /* s: an idle or slow connection is closed */
	char *service_secret;          /* edged's entry in authd's FRONTDESK_SERVICE_SECRETS */
	char *authd_target;
	char *linesd_target;
	char *tls_ca;                  /* roots trusted when calling the services */
	char *signing_keys;            /* "kid:64hex,..." the first signs (token.h) */
	char *platform_hosts;          /* the platform's own host names, comma separated */
	char *trusted_proxies;         /* CIDRs whose X-Forwarded-For/-Proto are believed */
	int64_t token_ttl;             /* s: a hand-off token's life */
	int64_t hosts_refresh_ms;      /* brand host names are re-read this often */
	int64_t report_ms;             /* the batched session report's period */
	int64_t playlist_cache_mb;     /* bound of the playlist cache */
	int64_t rpc_timeout_ms;        /* deadline of each call to a service */
	char *timezone;                /* server_info.timezone */
	char *log_level;
	int64_t shutdown_grace_ms;
	int64_t test_clock_offset_ms;
} edged_config_t;

struct edge_brands;
struct edge_keys;
struct edge_state;
struct edge_playlists;
struct edge_proxies;
struct edge_workers;

typedef struct edged {
	const edged_config_t *cfg;
	fd_channel_t *authd, *linesd;
	fd_token_source_t *linesd_token;    /* audience linesd */
	fd_token_source_t *authd_token;     /* audience authd */
	struct edge_keys *keys;             /* token.c */
	struct edge_brands *brands;         /* brands.c */
	struct edge_state *state;           /* state.c */
	struct edge_playlists *playlists;   /* playlist.c */
	struct edge_proxies *proxies;       /* http.c: trusted proxy CIDRs */
	struct edge_workers *workers;       /* http.c: the worker pool */
	struct MHD_Daemon *daemon;
	atomic_bool linesd_up;              /* the last call to linesd reached it */
	atomic_bool stopping;
	atomic_int inflight;                /* requests begun and not completed */
} edged_t;

#endif
