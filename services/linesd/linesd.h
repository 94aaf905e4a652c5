/* linesd.h - linesd's settings and state, and what its parts share. The
 * parts, one concern a file:
 *
 *   main.c       settings, the method table, start and stop
 *   context.c    running in the call's tenant (fd/tctx.h), the edge's
 *                prelude, reseller visibility
 *   passwords.c  line passwords: lookup hash, sealed box, opened (wiped)
 *   check.c      input checks (check.h; pure)
 *   enums.c      the database's words for enums, playback outcomes (enums.h; pure)
 *   store.c      every statement, the column lists and the rows' messages (store.h)
 *   catalog.c    packages, bouquets, streams, the tenant's lines settings
 *   lines.c      lines: create, trial, read, list, update, extend, status, delete
 *   charges.c    the charges' outbox: claim, settle with billingd, apply, reconcile
 *   authorize.c  AuthorizePlayback
 *   rules.c      tenants' and lines' rules kept in memory for it (rules.h)
 *   channels.c   GetLineChannels (the edge's playlists)
 *   cache.c      the heartbeat cache (cache.h; pure memory)
 *   sessions.c   heartbeats and their flusher, failover, End/Kick/ListSessions,
 *                ReportSessions (the edge's batched heartbeats)
 *   janitor.c    periodic jobs on one clock: timeouts, expiry, reconciliation
 *   events.c     the LISTEN connection and WatchLineEvents
 *   watch_playback.c  WatchPlaybackEvents: every tenant's, for the edge
 *   routing.c    routerd's client: Route, node state through WatchNodes
 *
 * Dependencies go one way: events.c tells an observer (sessions.c's and
 * watch_playback.c's, wired in main.c) of every event and knows nothing of
 * sessions or of the edge.
 * Tables: migrations/0004_lines.sql and later. */
#ifndef LINESD_H
#define LINESD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include "cache.h"
#include "fd/auth.h"
#include "fd/clock.h"
#include "fd/db.h"
#include "fd/pgarray.h"
#include "fd/request.h"
#include "fd/rpc_client.h"
#include "fd/service.h"
#include "fd/tctx.h"
#include "fd/tenant.h"
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
	int64_t sweep_ms;              /* the janitor's period (its jobs' retries too) */
	int64_t reconcile_after;       /* s: a pending charge older than this is settled by the janitor */
	int64_t fail_window;           /* s: failed-authorization window */
	int64_t fail_max_user;         /* failures per (username, client ip) per window */
	int64_t fail_max_ip;           /* failures per client ip per window */
	int64_t line_cache;            /* lines whose rules are kept in memory (0: none) */
	char *fault;                   /* tests only: "kill_after_charge" */
} linesd_config_t;

/* One notification on frontdesk_lines, as its payload says it (events.c). */
typedef struct events_notice {
	int64_t tenant, line_id, reseller_id, session_id;
	int type;                   /* a LineEventType or NOTIFY_* */
	int last;                   /* the payload's last field (see NOTIFY_STATUS_SHIFT) */
	const char *key;            /* NOTIFY_FAILURE_COUNTED: the failure key; else NULL */
} events_notice_t;

struct linesd_events;
struct linesd_sessions;
struct linesd_rules;
struct linesd_routing;
struct linesd_playback;

typedef struct linesd {
	const linesd_config_t *cfg;
	fd_db_t *db;
	fd_verifier_t *verifier;
	unsigned char pw_hash_key[32];      /* keyed BLAKE2b of line passwords (lookup) */
	unsigned char pw_box_key[32];       /* crypto_secretbox of line passwords */
	fd_channel_t *authd, *billingd;
	fd_token_source_t *billing_token;   /* service token, audience billingd */
	struct linesd_events *events;       /* events.c */
	struct linesd_playback *playback;   /* watch_playback.c: the edge's streams */
	struct linesd_sessions *sessions;   /* sessions.c: the flusher */
	cache_t *cache;                     /* sessions.c: the heartbeat cache */
	struct linesd_rules *rules;         /* rules.c: tenants' and lines' rules in memory */
	struct linesd_routing *routing;     /* routing.c; NULL: not configured */
	pthread_t jobs;                     /* janitor.c */
	pthread_mutex_t jobs_mu;
	pthread_cond_t jobs_cv;
	bool jobs_init, jobs_started, stopping;
	bool jobs_wake;                     /* janitor.c: walk now (under jobs_mu) */
} linesd_t;

static inline linesd_t *linesd_of(fd_call_t *call)
{
	return fd_service_state(fd_call_service(call));
}

#define OOM(call) fd_call_fail((call), FD_EEXHAUSTED, "out of memory for this request")
#define TX_OOM(tx) fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory")

/* ---- context.c ---- */

/* Handlers start with fd_tctx_begin (fd/tctx.h: the verified caller, its
 * scope, the tenant; no_platform "lines"); these run in its tenant. */
int lines_run(const fd_tctx_t *t, fd_tx_fn fn, void *arg) FD_MUSTCHECK;
int lines_run_ro(const fd_tctx_t *t, fd_tx_fn fn, void *arg) FD_MUSTCHECK;   /* read only */
/* "%lld" into t's arena (NULL on OOM). */
const char *lines_i64(const fd_tctx_t *t, int64_t v);
/* The edge's prelude (SCOPE_PLAYBACK_AUTHORIZE, a named tenant): t as
 * fd_tctx_begin fills it, *active false for a suspended tenant (an answer,
 * not an error). 0 or -code with the call's error set. */
int lines_edge_begin(fd_tctx_t *t, fd_call_t *call, int64_t tenant_id, bool *active) FD_MUSTCHECK;
/* The same for the edge's own methods (GetLineChannels): scope, and the
 * caller must be a service token (a person's token or an API key holding
 * the scope is refused: PERMISSION_DENIED). */
int lines_edge_service_begin(fd_tctx_t *t, fd_call_t *call, fd_scope_t scope, int64_t tenant_id,
                             bool *active) FD_MUSTCHECK;
/* The caller of a cross-tenant edge method (ReportSessions,
 * WatchPlaybackEvents) into *c: a service token holding scope, or -code
 * with the call's error set (PERMISSION_DENIED for anyone else). */
int lines_service_caller(fd_call_t *call, fd_caller_t *c, fd_scope_t scope) FD_MUSTCHECK;
/* Points t (a context of the edge's verified caller) at tenant_id: the
 * tenant a cross-tenant method acts in for one part of its request. */
void lines_tctx_tenant(fd_tctx_t *t, int64_t tenant_id);

/* A reseller account of the tenant the caller may act on: its own account
 * or one below it (any of the tenant's accounts for admins). Within a tx: 0
 * with *path (arena) and *suspended filled, or -FD_ENOTFOUND naming id. */
int lines_reseller(fd_tx_t *tx, const fd_tctx_t *r, int64_t id, const char **path, bool *suspended) FD_MUSTCHECK;
/* ---- passwords.c ---- */

void line_password_hash(const linesd_t *l, int64_t tenant, const char *password, char hex[65]);
/* crypto_secretbox(nonce || box) as hex into t's arena. */
const char *line_password_seal(const fd_tctx_t *t, const char *password);
/* The password back from the hex of password_box (NULL if it does not
 * open), in a's memory wiped when a is freed (fd_arena_secret). */
char *line_password_open(const linesd_t *l, fd_arena_t *a, const char *box_hex);
/* n random characters from an unambiguous alphabet. */
void random_text(char *out, size_t n);

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

/* ---- authorize.c ---- */

int linesd_authorize_playback(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);

/* ---- channels.c ---- */

int linesd_get_line_channels(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
/* The paths of the suspended accounts of t's tenant, as the text of a
 * text[] of LIKE prefixes ("{1.5.%}"), from rules.c's tenant rules; in t's
 * arena. NULL with the call's error set when the database cannot say. */
const char *authorize_suspended_paths(const fd_tctx_t *t, linesd_t *l);

/* ---- sessions.c ---- */

int linesd_session_heartbeat(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_end_session(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_list_sessions(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_kick_session(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int linesd_report_sessions(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);

int sessions_init(linesd_t *l, fd_err_t *err) FD_MUSTCHECK;
void sessions_fini(linesd_t *l);
/* Caches what the database just said of a live session (cache_put's
 * rules), only while this replica hears the events that keep the cache
 * right (events_listening). */
void sessions_remember(linesd_t *l, bool global, uint64_t gen, const cache_entry_t *e);
/* A session started in tenant at start_s (AuthorizePlayback, after its
 * statement): makes sure linesd.session_timeout is due by start + timeout
 * (see sessions.c: usually nothing to write). */
void sessions_started(linesd_t *l, int64_t tenant, int64_t start_s);
/* events.c's observer (arg: the linesd_t): an event keeps the cache right
 * across replicas (line_id events drop that line's sessions; SESSION_ENDED
 * drops that session); a lost LISTEN connection forgets everything. */
void sessions_on_event(linesd_t *l, const events_notice_t *n);
void sessions_forget_all(linesd_t *l);

/* ---- janitor.c ---- */

/* linesd's per-tenant jobs (fd/jobs.h): the transactions that make their
 * work record when it is due (fd_job_due). */
#define JOB_SESSION_TIMEOUT "linesd.session_timeout"
#define JOB_EXPIRY "linesd.expiry"
#define JOB_RECONCILE "linesd.reconcile"

/* Starts the periodic jobs' thread; janitor_stop ends it (and may be
 * called whatever start did). */
int janitor_start(linesd_t *l, fd_err_t *err) FD_MUSTCHECK;
/* The janitor's period in whole seconds, at least 1 (due times are whole
 * seconds). */
int64_t janitor_period_s(const linesd_t *l);
/* linesd.session_timeout is due now in tenant, and the walk starts at once
 * (a suspension: its sessions end now rather than within a period). On
 * the caller's thread: one small transaction. */
void janitor_soon(linesd_t *l, int64_t tenant);
void janitor_stop(linesd_t *l);

/* ---- events.c ---- */

/* Who hears every notification (before the watchers), and that they may
 * have been missed. Called on the LISTEN thread. */
typedef struct events_observer {
	void (*on_event)(void *arg, const events_notice_t *n);
	void (*on_lost)(void *arg);
	void *arg;
} events_observer_t;

/* Notifications on frontdesk_lines (payload "<tenant> <type> <line>
 * <reseller> <session> <last>", 0004_lines.sql) beyond the LineEventType
 * numbers, and what the last field says (0017_edge_lines.sql). */
#define NOTIFY_CATALOG_CHANGED 101     /* session field: the tenant's catalog version now */
#define NOTIFY_TENANT_SUSPENDED 102
#define NOTIFY_ACCOUNT_SUSPENDED 103   /* reseller field: the account; its subtree's lines */
/* 0020_line_rules.sql: a line changed or deleted; made active again; the
 * tenant's lines settings;
 * a failure counter written (session field: its window's start in epoch
 * seconds, last: the count, then " <key>"). */
#define NOTIFY_LINE_REV 104             /* session field: the new rev (-1: deleted); then " <username>" */
#define NOTIFY_TENANT_REACTIVATED 105
#define NOTIFY_ACCOUNT_REACTIVATED 106
#define NOTIFY_LINES_SETTINGS 107
#define NOTIFY_FAILURE_COUNTED 108
/* session.ended: the end reason. line.status_changed: the new status <<
 * NOTIFY_STATUS_SHIFT | the previous. line.updated: the line's status <<
 * NOTIFY_STATUS_SHIFT | NOTIFY_UPDATED_PASSWORD when its password changed.
 * Statuses as LineStatus numbers (0: not said, an older payload). */
#define NOTIFY_STATUS_SHIFT 8
#define NOTIFY_LOW_MASK 0xff
#define NOTIFY_UPDATED_PASSWORD 1

extern const fd_stream_ops_t linesd_watch_line_events;
/* WatchPlaybackEvents: every tenant's, for the HTTP edge. */
extern const fd_stream_ops_t linesd_watch_playback_events;
int events_init(linesd_t *l, const events_observer_t *obs, fd_err_t *err) FD_MUSTCHECK;
void events_fini(linesd_t *l);
/* True while this replica's LISTEN connection is up (the heartbeat cache may
 * be trusted only then). */
bool events_listening(linesd_t *l);
/* Whether any replica has a watcher for tenant (cached about a second):
 * session starts are announced only then. */
bool events_watched(linesd_t *l, int64_t tenant);

/* ---- watch_playback.c ---- */

/* WatchPlaybackEvents' state; playback_fini after events_fini (no more
 * notifications) and may be called whatever init did. */
int playback_init(linesd_t *l, fd_err_t *err) FD_MUSTCHECK;
void playback_fini(linesd_t *l);
/* The observer's parts (LISTEN thread): a notification, and that some may
 * have been missed (every stream ends with UNAVAILABLE). */
void playback_on_event(linesd_t *l, const events_notice_t *n);
void playback_on_lost(linesd_t *l);

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
/* A RoutedNode naming node, in arena (NULL for node 0, or out of memory). */
Frontdesk__V1__RoutedNode *routing_node_message(fd_arena_t *a, int64_t node);

#endif
