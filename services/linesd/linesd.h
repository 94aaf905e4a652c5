/* linesd.h - linesd's settings, state, the pieces its files share, and its
 * handlers.
 *
 *   common.c    the request prelude (caller, scope, tenant), idempotency,
 *               reseller visibility, Postgres array text, line passwords
 *   catalog.c   packages, bouquets, streams, the tenant's lines settings
 *   lines.c     lines, their charges (the outbox settled with billingd) and
 *               the reconciliation pass
 *   playback.c  AuthorizePlayback, heartbeats (cached, written in batches),
 *               sessions, the expiry and timeout sweep
 *   events.c    the LISTEN connection, WatchLineEvents
 *   routing.c   routerd's client: Route, and node state through WatchNodes
 *
 * Tables: migrations/0004_lines.sql. */
#ifndef LINESD_H
#define LINESD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include "fd/auth.h"
#include "fd/clock.h"
#include "fd/db.h"
#include "fd/pgarray.h"
#include "fd/request.h"
#include "fd/rpc_client.h"
#include "fd/service.h"
#include "fd/tctx.h"
#include "fd/token_source.h"
#include "frontdesk/v1/lines.pb-c.h"
#include "frontdesk/v1/routing.pb-c.h"

typedef struct linesd_config {
	fd_service_config_t common;
	char *key_encryption_key;      /* FRONTDESK_KEY_ENCRYPTION_KEY: line passwords' box key is derived */
	char *service_secret;          /* linesd's secret for IssueServiceToken */
	char *authd_target;            /* host:port of authd */
	char *billingd_target;         /* host:port of billingd */
	char *routerd_target;          /* host:port of routerd; "": no routing */
	int64_t session_timeout;       /* s without heartbeat before a session ends */
	int64_t heartbeat_interval;    /* s: next_heartbeat_seconds */
	int64_t heartbeat_flush_ms;    /* heartbeats are written in batches this often */
	int64_t sweep_ms;              /* expiry / timeout sweep and reconciliation period */
	int64_t reconcile_after;       /* s: a pending charge older than this is settled by the pass */
	int64_t fail_window;           /* s: failed-authorization window */
	int64_t fail_max_user;         /* failures per (username, client ip) per window */
	int64_t fail_max_ip;           /* failures per client ip per window */
	char *fault;                   /* tests only: "kill_after_charge" */
} linesd_config_t;

struct linesd_events;
struct linesd_sessions;
struct linesd_routing;

typedef struct linesd {
	const linesd_config_t *cfg;
	fd_db_t *db;
	fd_verifier_t *verifier;
	unsigned char pw_hash_key[32];      /* keyed BLAKE2b of line passwords (lookup) */
	unsigned char pw_box_key[32];       /* crypto_secretbox of line passwords */
	fd_channel_t *authd, *billingd;
	fd_token_source_t *billing_token;   /* service token, audience billingd */
	struct linesd_events *events;       /* events.c */
	struct linesd_sessions *sessions;   /* playback.c */
	struct linesd_routing *routing;     /* routing.c; NULL: not configured */
	pthread_t jobs;                     /* sweep + reconciliation */
	pthread_mutex_t jobs_mu;
	pthread_cond_t jobs_cv;
	bool jobs_started, stopping;
} linesd_t;

static inline linesd_t *linesd_of(fd_call_t *call)
{
	return fd_service_state(fd_call_service(call));
}

#define OOM(call) fd_call_fail((call), FD_EEXHAUSTED, "out of memory for this request")
#define TX_OOM(tx) fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory")

/* ---- common.c ---- */

/* Handlers start with fd_tctx_begin (fd/tctx.h: the verified caller, its
 * scope, the tenant; no_platform "lines"); these run in its tenant. */
int lines_run(const fd_tctx_t *t, fd_tx_fn fn, void *arg) FD_MUSTCHECK;
int lines_run_ro(const fd_tctx_t *t, fd_tx_fn fn, void *arg) FD_MUSTCHECK;   /* read only */

/* "%lld" into t's arena (NULL on OOM). */
const char *lines_i64(const fd_tctx_t *t, int64_t v);

/* An idempotency key as "<method>/<actor>/<key>" in *out: key must be 1..128
 * printable ASCII characters (required: an empty key is refused when
 * required, else *out = NULL). Actor: acct:<id> or svc:<name>. */
int lines_idem(const fd_tctx_t *r, const char *method, const char *key, bool required, const char **out) FD_MUSTCHECK;
/* A request's fingerprint: fd_request_hash(r->arena, msg) (fd/request.h). */

/* frontdesk.lines_idempotency, for the catalog's creates. Within a tx:
 * 1 and *id = the row made earlier under idem, 0 none, -FD_EPRECOND when the
 * key was used with another request. */
int lidem_find(fd_tx_t *tx, const fd_tctx_t *r, const char *idem, const char *hash, int64_t *id) FD_MUSTCHECK;
int lidem_store(fd_tx_t *tx, const fd_tctx_t *r, const char *idem, const char *hash, int64_t id) FD_MUSTCHECK;
/* Within a tx, before the key is looked up: waits for a concurrent call
 * under the same key (a transaction-level advisory lock), so a duplicate
 * finds what the first one committed instead of executing again. */
int lidem_lock(fd_tx_t *tx, const fd_tctx_t *r, const char *idem) FD_MUSTCHECK;

/* A reseller account of the tenant the caller may act on: its own account
 * or one below it (any of the tenant's accounts for admins). Within a tx: 0
 * with *path (arena) and *suspended filled, or -FD_ENOTFOUND naming id. */
int lines_reseller(fd_tx_t *tx, const fd_tctx_t *r, int64_t id, const char **path, bool *suspended) FD_MUSTCHECK;
/* Input checks: -FD_EINVAL naming field, through the call's error. */
int check_ids(fd_call_t *call, const char *field, const int64_t *v, size_t n, size_t max) FD_MUSTCHECK;
int check_formats(fd_call_t *call, const char *field, const Frontdesk__V1__OutputFormat *v, size_t n) FD_MUSTCHECK;
/* Paging: fd_check_page and fd_page_token (fd/request.h). */

/* Line passwords. */
void line_password_hash(const linesd_t *l, int64_t tenant, const char *password, char hex[65]);
/* crypto_secretbox(nonce || box) as hex into the arena. */
const char *line_password_seal(const fd_tctx_t *r, const char *password);
/* The password back from the hex of password_box (NULL if it does not
 * open), in a's memory wiped when a is freed (fd_arena_secret). */
char *line_password_open(const linesd_t *l, fd_arena_t *a, const char *box_hex);
/* n random characters from an unambiguous alphabet. */
void random_text(char *out, size_t n);

/* Times: Unix seconds from "floor(extract(epoch ...))" columns. */
static inline int64_t col_i64(PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}
static inline bool col_bool(PGresult *res, int row, int col)
{
	return PQgetvalue(res, row, col)[0] == 't';
}
#define EPOCH(col) "floor(extract(epoch FROM " col "))::bigint"

/* ---- catalog.c ---- */

int linesd_create_package(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_list_packages(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_update_package(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_create_bouquet(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_list_bouquets(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_update_bouquet(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_create_stream(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_list_streams(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_update_stream(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_get_settings(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_update_settings(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);

/* ---- lines.c ---- */

int linesd_create_line(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_get_line(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_list_lines(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_update_line(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_extend_line(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_set_line_status(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_delete_line(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_create_trial_line(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);

/* The columns of a line, as line_message reads them: select them FROM
 * frontdesk.lines l (and concatenate: "SELECT " LINE_COLUMNS " FROM ...").
 * status is derived (EXPIRED at the second); active_connections counts the
 * sessions not yet ended; last_seen from its sessions. */
#define LINE_COLUMNS                                                                                  \
	LINE_COLUMNS_WITH("(SELECT count(*) FROM frontdesk.sessions s WHERE s.tenant_id = l.tenant_id"           \
	                  " AND s.line_id = l.id AND s.ended_at IS NULL)",                                       \
	                  "coalesce((SELECT " EPOCH("max(s.last_seen_at)") " FROM frontdesk.sessions s"          \
	                  " WHERE s.tenant_id = l.tenant_id AND s.line_id = l.id), 0)")
/* The same with the connection count and last seen given as expressions. */
#define LINE_COLUMNS_WITH(CONNECTIONS, LAST_SEEN)                                                     \
	"l.id, l.reseller_id, l.username, encode(l.password_box, 'hex'), l.package_id,"                    \
	" CASE WHEN l.state IN ('banned', 'disabled') THEN l.state WHEN l.expires_at <= now() THEN 'expired'" \
	" ELSE l.state END, " EPOCH("l.expires_at") ", l.max_connections, l.bouquet_ids, l.allowed_ips,"     \
	" l.allowed_user_agents, l.output_formats, l.bandwidth_cap_kbps, l.trial, l.notes, " CONNECTIONS ","  \
	" " EPOCH("l.created_at") ", " EPOCH("l.updated_at") ", " LAST_SEEN ", l.reseller_path"
#define LINE_NCOLS 20
extern const char LINE_COLS[];   /* LINE_COLUMNS, for code that builds statements at run time */
/* A Line from a row of LINE_COLS starting at column col (password opened). */
Frontdesk__V1__Line *line_message(const linesd_t *l, fd_arena_t *a, int64_t tenant, PGresult *res, int row, int col);
/* The ids of every tenant but the platform, for the jobs that walk them all
 * (one transaction per tenant): *ids in arena. */
int linesd_tenant_ids(linesd_t *l, fd_arena_t *arena, int64_t **ids, int *n) FD_MUSTCHECK;
/* Settles pending charges older than reconcile_after in every tenant (jobs thread). */
void lines_reconcile(linesd_t *l);

/* ---- playback.c ---- */

int linesd_authorize_playback(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_session_heartbeat(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_end_session(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_list_sessions(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_kick_session(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);

int sessions_init(linesd_t *l, fd_err_t *err) FD_MUSTCHECK;
void sessions_fini(linesd_t *l);
/* The columns of a session and its message: "SELECT " SESSION_COLUMNS
 * " FROM " SESSION_FROM " WHERE s.tenant_id = $1 AND ...". */
#define SESSION_COLUMNS                                                                               \
	"s.id, s.line_id, coalesce(l.username, ''), coalesce(l.reseller_id, 0), s.stream_id, s.node_id,"   \
	" host(s.client_ip), s.user_agent, s.output_format, " EPOCH("s.started_at") ", "                    \
	EPOCH("s.last_seen_at") ", coalesce(" EPOCH("s.ended_at") ", 0), s.end_reason"
#define SESSION_NCOLS 13
#define SESSION_FROM                                                                                  \
	"frontdesk.sessions s LEFT JOIN frontdesk.lines l ON l.tenant_id = s.tenant_id AND l.id = s.line_id"
extern const char SESSION_COLS[];   /* SESSION_COLUMNS */
Frontdesk__V1__Session *session_message(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int col);
/* Ends live sessions past the timeout or of expired lines, announces
 * line.expired, in every tenant (jobs thread). */
void sessions_sweep(linesd_t *l);
/* An event seen on the LISTEN connection (events.c calls it for every one,
 * before its watchers): keeps the heartbeat cache right across replicas.
 * line_id events drop that line's cached sessions; session_id events of
 * type SESSION_ENDED drop that session. */
void sessions_on_event(linesd_t *l, int64_t tenant, int type, int64_t line_id, int64_t session_id);
/* The LISTEN connection was lost (events may have been missed): forget the
 * whole cache. */
void sessions_forget_all(linesd_t *l);

/* ---- events.c ---- */

extern const fd_stream_ops_t linesd_watch_line_events;
int events_init(linesd_t *l, fd_err_t *err) FD_MUSTCHECK;
void events_fini(linesd_t *l);
/* True while this replica's LISTEN connection is up (the heartbeat cache may
 * be trusted only then). */
bool events_listening(linesd_t *l);
/* Whether any replica has a watcher for tenant (cached about a second):
 * session starts are announced only then. */
bool events_watched(linesd_t *l, int64_t tenant);

/* ---- routing.c ---- */

int routing_init(linesd_t *l, fd_err_t *err) FD_MUSTCHECK;
void routing_fini(linesd_t *l);
/* Whether routerd is configured. */
bool routing_enabled(linesd_t *l);
/* Whether a session on node should be routed again: the node is down,
 * overloaded, draining or disabled, or its state is not known now. */
bool routing_node_unfit(linesd_t *l, int64_t node);
/* routerd's Route; *out in arena. -code with err (routerd's message). */
int routing_route(linesd_t *l, const Frontdesk__V1__RouteRequest *req, fd_arena_t *arena,
                  Frontdesk__V1__RouteResponse **out, fd_err_t *err) FD_MUSTCHECK;

#endif
