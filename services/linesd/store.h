/* store.h - linesd's SQL and rows in one place (store.c): every statement,
 * the columns each returns named by an enum beside it, and the messages
 * made from rows. One file: the statements are many but short, and a
 * reader looking for a query finds it here whatever part runs it.
 *
 * Times are Unix seconds ("floor(extract(epoch ...))" columns). Session end
 * reasons and line event types are written as their proto numbers. */
#ifndef LINESD_STORE_H
#define LINESD_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <libpq-fe.h>
#include "fd/arena.h"
#include "fd/db.h"
#include "frontdesk/v1/lines.pb-c.h"

struct linesd;

static inline int64_t col_i64(PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}
static inline bool col_bool(PGresult *res, int row, int col)
{
	return PQgetvalue(res, row, col)[0] == 't';
}

/* ---- rows ---- */

/* A line's columns (LINE_COLUMNS in store.c): status is derived (EXPIRED at
 * the second), active_connections counts the sessions not yet ended,
 * last_seen from its sessions. Statements that read more put it after. */
enum {
	LINE_COL_ID, LINE_COL_RESELLER, LINE_COL_USERNAME, LINE_COL_PASSWORD_BOX, LINE_COL_PACKAGE,
	LINE_COL_STATUS, LINE_COL_EXPIRES, LINE_COL_MAX_CONNECTIONS, LINE_COL_BOUQUETS, LINE_COL_IPS,
	LINE_COL_USER_AGENTS, LINE_COL_FORMATS, LINE_COL_BANDWIDTH, LINE_COL_TRIAL, LINE_COL_NOTES,
	LINE_COL_CONNECTIONS, LINE_COL_CREATED, LINE_COL_UPDATED, LINE_COL_LAST_SEEN, LINE_COL_PATH,
	LINE_NCOLS
};
/* A Line from the row's columns starting at base (base + LINE_COL_*), in a;
 * its password opened (wiped with a). NULL when out of memory. */
Frontdesk__V1__Line *line_message(const struct linesd *l, fd_arena_t *a, int64_t tenant, PGresult *res, int row,
                                  int base);
/* The same without opening the password (the message's password is ""):
 * AuthorizePlayback answers with the player's own. */
Frontdesk__V1__Line *line_message_sealed(const struct linesd *l, fd_arena_t *a, int64_t tenant, PGresult *res, int row,
                                         int base);

/* A session's columns, with its line's username and owner. */
enum {
	SESSION_COL_ID, SESSION_COL_LINE, SESSION_COL_USERNAME, SESSION_COL_RESELLER, SESSION_COL_STREAM,
	SESSION_COL_NODE, SESSION_COL_CLIENT_IP, SESSION_COL_USER_AGENT, SESSION_COL_FORMAT, SESSION_COL_STARTED,
	SESSION_COL_LAST_SEEN, SESSION_COL_ENDED, SESSION_COL_END_REASON,
	SESSION_NCOLS
};
Frontdesk__V1__Session *session_message(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int base);

/* The catalog's rows (PKG_COLS, BQ_COLS, STREAM_COLS). */
enum {
	PKG_COL_ID, PKG_COL_NAME, PKG_COL_DAYS, PKG_COL_HOURS, PKG_COL_COST, PKG_COL_MAX_CONNECTIONS,
	PKG_COL_BOUQUETS, PKG_COL_TRIAL, PKG_COL_FORMATS, PKG_COL_BANDWIDTH, PKG_COL_DISABLED, PKG_COL_CREATED,
	PKG_COL_UPDATED
};
enum { BQ_COL_ID, BQ_COL_NAME, BQ_COL_STREAMS, BQ_COL_CREATED, BQ_COL_UPDATED };
enum {
	STREAM_COL_ID, STREAM_COL_NAME, STREAM_COL_KIND, STREAM_COL_CATEGORY, STREAM_COL_NUMBER, STREAM_COL_LOGO,
	STREAM_COL_EPG, STREAM_COL_DISABLED, STREAM_COL_CREATED, STREAM_COL_UPDATED
};
/* Each builds a message from the row's columns starting at base, in the
 * arena; NULL when out of memory. */
ProtobufCMessage *package_message(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int base);
ProtobufCMessage *bouquet_message(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int base);
ProtobufCMessage *stream_message(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int base);

/* ---- the columns of the statements below that return more than one ---- */

/* The catalog's lists: the row's position (what pages follow), then the row. */
enum { LIST_COL_POS, LIST_COL_ROW };
/* SQL_PKG_LOCK */
enum { PKG_LOCK_COL_DAYS, PKG_LOCK_COL_HOURS };
/* SQL_SETTINGS_GET, SQL_SETTINGS_UPSERT */
enum { SETTINGS_COL_POLICY, SETTINGS_COL_TRIALS_PER_DAY, SETTINGS_COL_UPDATED };
/* SQL_PACKAGE */
enum { PACKAGE_COL_COST, PACKAGE_COL_MAX_CONNECTIONS, PACKAGE_COL_BOUQUETS, PACKAGE_COL_TRIAL, PACKAGE_COL_DISABLED };
/* SQL_TRIAL_COUNT */
enum { TRIAL_COL_LIMIT = 1, TRIAL_COL_USED, TRIAL_COL_NEXT_IN };
/* SQL_LINE_VISIBLE */
enum { VISIBLE_COL_RESELLER, VISIBLE_COL_PACKAGE, VISIBLE_COL_STATE };
/* SQL_LOCK_LINE: the line's owner, its stored state and derived status, and
 * its package's limits (NULL when the package is gone). */
enum { LOCK_COL_RESELLER, LOCK_COL_STATE, LOCK_COL_STATUS, LOCK_COL_PKG_MAX_CONNECTIONS, LOCK_COL_PKG_BOUQUETS };
/* SQL_STATUS_HISTORY */
enum { SH_STATUS, SH_PREVIOUS, SH_REASON, SH_ACTOR_ACCOUNT, SH_ACTOR, SH_AT };
/* SQL_APPLY_CREATE, SQL_APPLY_EXTEND: the line's new expiry. */
enum { APPLY_COL_EXPIRES };
/* SQL_LINE_CHARGES */
enum { LCHARGE_COL_ID, LCHARGE_COL_ENTRY, LCHARGE_COL_REFUNDABLE, LCHARGE_COL_REFUNDED };
/* How long a settler's claim on a pending charge keeps others away from it
 * (seconds; store.c's CLAIM_SECONDS): the longest Charge call (5 s) and a
 * margin. */
#define CHARGE_CLAIM_S 6
/* A charge row as settling reads it (CHARGE_COLUMNS). */
enum {
	CH_LINE, CH_RESELLER, CH_KIND, CH_PACKAGE, CH_PERIODS, CH_AMOUNT, CH_STATE, CH_ENTRY, CH_BALANCE,
	CH_TRIALS_LEFT, CH_ACTOR_KIND, CH_ACTOR_ROLE, CH_ACTOR_TENANT, CH_ACTOR_ACCOUNT, CH_ACTOR_KEY,
	CH_ACTOR_SERVICE, CH_ACTOR_PATH, CH_ACTOR_SOURCE, CH_TRIAL,
};
/* SQL_AUTHORIZE: the decision, then the line from AUTH_COL_LINE (NULL
 * columns when no line was found). */
enum {
	AUTH_COL_OUTCOME, AUTH_COL_RETRY_AFTER, AUTH_COL_SESSION, AUTH_COL_REUSED, AUTH_COL_REPLACED,
	AUTH_COL_LINE_ID, AUTH_COL_LINE, AUTH_COL_REV = AUTH_COL_LINE + LINE_NCOLS
};
/* SQL_OPEN_SESSION */
enum { OPEN_COL_OUTCOME, OPEN_COL_SESSION, OPEN_COL_REUSED, OPEN_COL_REPLACED, OPEN_COL_LIVE };
#define OPEN_STALE (-1)
/* SQL_LINE_CHANNELS: the decision, the line's lists and the catalog
 * version (every row), then the channel (NULL when none). */
enum {
	CHAN_COL_OUTCOME, CHAN_COL_RETRY_AFTER, CHAN_COL_BOUQUETS, CHAN_COL_FORMATS, CHAN_COL_VERSION,
	CHAN_COL_STREAM, CHAN_COL_NAME, CHAN_COL_NUMBER, CHAN_COL_LOGO, CHAN_COL_EPG, CHAN_COL_CATEGORY_ID,
	CHAN_COL_CATEGORY, CHAN_COL_CATEGORY_FIRST, CHAN_COL_ADDED
};
/* SQL_REPORT_SESSIONS */
enum {
	REPORT_COL_ID, REPORT_COL_LINE, REPORT_COL_NODE, REPORT_COL_EXPIRES, REPORT_COL_VERDICT, REPORT_COL_ANNOUNCED
};
/* SQL_SESSION_STATE */
enum {
	STATE_COL_LINE, STATE_COL_NODE, STATE_COL_ENDED, STATE_COL_END_REASON, STATE_COL_LAST_SEEN,
	STATE_COL_EXPIRES, STATE_COL_LINE_STATE
};
/* SQL_SESSION_ROUTE */
enum { ROUTE_COL_STREAM, ROUTE_COL_CLIENT_IP, ROUTE_COL_FORMAT };
/* SQL_CLOSE_SESSION: sessions visible to the caller, announced, ended. */
enum { CLOSE_COL_VISIBLE, CLOSE_COL_ANNOUNCED, CLOSE_COL_ENDED };
/* SQL_RESELLER */
enum { RESELLER_COL_PATH, RESELLER_COL_SUSPENDED };

/* ---- statements ---- */

/* Session writes commit asynchronously (see sessions.c). */
extern const fd_sql_t SQL_ASYNC;
extern const fd_sql_t SQL_BEATS;

/* ---- the catalog (catalog.c) ---- */
extern const fd_sql_t SQL_MISSING_BOUQUETS;
extern const fd_sql_t SQL_MISSING_STREAMS;
extern const fd_sql_t SQL_PKG_GET;
extern const fd_sql_t SQL_PKG_INSERT;
extern const fd_sql_t SQL_PKG_LOCK;
extern const fd_sql_t SQL_PKG_UPDATE;
extern const fd_sql_t SQL_BQ_GET;
extern const fd_sql_t SQL_BQ_INSERT;
extern const fd_sql_t SQL_BQ_LOCK;
extern const fd_sql_t SQL_BQ_UPDATE;
extern const fd_sql_t SQL_STREAM_GET;
extern const fd_sql_t SQL_STREAM_LOCK;
extern const fd_sql_t SQL_STREAM_INSERT;
extern const fd_sql_t SQL_STREAM_APPEND;
extern const fd_sql_t SQL_STREAM_UPDATE;
extern const fd_sql_t SQL_LIST_PACKAGES;
extern const fd_sql_t SQL_LIST_BOUQUETS;
extern const fd_sql_t SQL_LIST_STREAMS;
extern const fd_sql_t SQL_LIST_BOUQUET_STREAMS;
extern const fd_sql_t SQL_LIST_LINE_STREAMS;
extern const fd_sql_t SQL_CAT_LINE_VISIBLE;
extern const fd_sql_t SQL_SETTINGS_GET;
extern const fd_sql_t SQL_SETTINGS_UPSERT;

/* ---- lines (lines.c) ---- */
extern const fd_sql_t SQL_PACKAGE;
extern const fd_sql_t SQL_BOUQUETS_EXIST;
extern const fd_sql_t SQL_USERNAME_TAKEN;
extern const fd_sql_t SQL_TRIAL_LOCK;
extern const fd_sql_t SQL_TRIAL_COUNT;
extern const fd_sql_t SQL_INSERT_PENDING_LINE;
extern const fd_sql_t SQL_INSERT_CHARGE;
extern const fd_sql_t SQL_LINE_VISIBLE;
extern const fd_sql_t SQL_STATUS_HISTORY;
extern const fd_sql_t SQL_GET_LINE;
extern const fd_sql_t SQL_LIST_LINES;
extern const fd_sql_t SQL_LOCK_LINE;
extern const fd_sql_t SQL_UPDATE_LINE;
extern const fd_sql_t SQL_SET_STATE;
extern const fd_sql_t SQL_STATUS_HISTORY_ADD;
extern const fd_sql_t SQL_STATUS_HISTORY_DROP;
extern const fd_sql_t SQL_END_LINE_SESSIONS;
extern const fd_sql_t SQL_DELETE_LINE;
extern const fd_sql_t SQL_LINE_CHARGES;
extern const fd_sql_t SQL_CHARGE_REFUNDED;

/* ---- charges (charges.c) ---- */
extern const fd_sql_t SQL_CHARGE_CLAIM;
extern const fd_sql_t SQL_CHARGE_CLAIM_LAPSED;
extern const fd_sql_t SQL_CHARGE_READ;
extern const fd_sql_t SQL_CHARGE_LOCK;
extern const fd_sql_t SQL_CHARGE_DROP;
extern const fd_sql_t SQL_APPLY_CREATE;
extern const fd_sql_t SQL_APPLY_EXTEND;
extern const fd_sql_t SQL_CHARGE_APPLIED;
extern const fd_sql_t SQL_EVENT;
extern const fd_sql_t SQL_LINE_BY_ID;
extern const fd_sql_t SQL_PENDING;

/* ---- AuthorizePlayback (authorize.c) ---- */
extern const fd_sql_t SQL_AUTHORIZE;
extern const fd_sql_t SQL_OPEN_SESSION;
extern const fd_sql_t SQL_TENANT_RULES;
/* The preload's columns: the line (LINE_COL_*), then these. */
enum { PRELOAD_COL_REV = LINE_NCOLS, PRELOAD_COL_PW_HASH };
extern const fd_sql_t SQL_PRELOAD_TENANTS, SQL_PRELOAD_LINES;

/* ---- GetLineChannels (channels.c) ---- */
extern const fd_sql_t SQL_LINE_CHANNELS;

/* ---- sessions (sessions.c) ---- */
extern const fd_sql_t SQL_SESSION_STATE;
extern const fd_sql_t SQL_END_SESSION;
extern const fd_sql_t SQL_SESSION_ROUTE;
extern const fd_sql_t SQL_SESSION_MOVE;
extern const fd_sql_t SQL_CLOSE_SESSION;
extern const fd_sql_t SQL_SESSION;
extern const fd_sql_t SQL_LIST_SESSIONS;
extern const fd_sql_t SQL_REPORT_SESSIONS;

/* ---- the janitor's jobs (janitor.c) ---- */
extern const fd_sql_t SQL_SWEEP_TIMEOUTS;
extern const fd_sql_t SQL_SWEEP_EXPIRED;
extern const fd_sql_t SQL_SWEEP_SUSPENDED;
extern const fd_sql_t SQL_SWEEP_OLD;

/* ---- events (events.c) ---- */
extern const fd_sql_t SQL_WATCHER_UPSERT;
extern const fd_sql_t SQL_WATCHER_DELETE;
extern const fd_sql_t SQL_WATCHED;
extern const fd_sql_t SQL_WATCH_LINE;
extern const fd_sql_t SQL_EVENT_LINE;
extern const fd_sql_t SQL_EVENT_SESSION;
extern const fd_sql_t SQL_ACCOUNT_PATH;
extern const fd_sql_t SQL_SUBTREE_LINES;

/* ---- the request context (context.c) ---- */
extern const fd_sql_t SQL_RESELLER;


/* ---- when the janitor's jobs are next due (janitor.c): one bigint, Unix
 * seconds, NULL when nothing is due ---- */
extern const fd_sql_t SQL_SESSIONS_NEXT;
extern const fd_sql_t SQL_EXPIRY_NEXT;
extern const fd_sql_t SQL_RECONCILE_NEXT;

#endif
