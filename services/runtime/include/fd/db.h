/* db.h - the PostgreSQL layer: a pool of libpq connections, transactions that
 * set the tenant for row-level security, statements declared once per service,
 * and SQL errors mapped to fd codes in one place.
 *
 * A service declares its statements statically (in its store.c) and runs
 * each unit of work as a function given to fd_db_run:
 *
 *   static const fd_sql_t SQL_GET_LINE = { "linesd_get_line",
 *       "SELECT username, status FROM frontdesk.lines WHERE tenant_id = $1 AND id = $2", 2 };
 *
 *   static int get_line(fd_tx_t *tx, void *arg)
 *   {
 *       struct get_line *g = arg;
 *       const char *params[] = { g->tenant, g->id };
 *       PGresult *res;
 *       int rc = fd_tx_exec(tx, &SQL_GET_LINE, params, FD_TX_LAST, &res);
 *       if (rc < 0)
 *           return rc;
 *       if (PQntuples(res) == 0)
 *           return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "line %s not found", g->id);
 *       ... copy what is needed out of res (into the call's arena) ...
 *       return 0;
 *   }
 *
 *   rc = fd_tenant_run(db, tenant_id, get_line, &g, fd_call_err(call));  (tenants/)
 *
 * Round trips: BEGIN and the tenant setting are not sent on their own; they
 * travel in one libpq pipeline with the transaction's first statement, and
 * FD_TX_LAST sends the COMMIT with the last one, so a one-statement
 * transaction costs one round trip (DESIGN.md, Tenancy, has the figures).
 *
 * Threads: an fd_db_t is shared by every thread; an fd_tx_t belongs to the
 * thread running its fn and lives only during fn.
 *
 * Outages: connections are opened lazily and reopened when found broken;
 * while PostgreSQL is unreachable calls fail at once with FD_EUNAVAIL, and
 * fd_db_ping (run every second by the service's health thread) reconnects and
 * reports whether the database is reachable. */
#ifndef FD_DB_H
#define FD_DB_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <libpq-fe.h>
#include "fd/status.h"

typedef struct fd_db fd_db_t;
typedef struct fd_tx fd_tx_t;

/* A statement, declared statically by the service that owns it. name names
 * the server-side prepared statement: unique in the process, and never
 * starting with "_fd_" (the pool's own statements). text uses $1..$n;
 * nparams is n. A NULL name is never prepared (sent as an unnamed statement
 * even by a pool that prepares). The pool keeps pointers to it (it knows a
 * statement prepared on a connection by its address): it must outlive the
 * pool, as a static does.
 *
 * Every statement needs a tenant unless it says otherwise: one run in a
 * transaction without a tenant (FD_NO_TENANT) is refused before it is sent,
 * naming it, unless its flags have FD_SQL_PLATFORM (it reaches only
 * platform-level tables: tenants, signing keys, failed-login counters, the
 * job table...). PostgreSQL's row-level security is the second wall: a
 * tenant table queried without the tenant setting raises (FD000). */
typedef struct fd_sql {
	const char *name;
	const char *text;
	int nparams;
	unsigned flags;         /* FD_SQL_* */
} fd_sql_t;

#define FD_SQL_PLATFORM 0x1u   /* may run without a tenant: platform-level tables only */

typedef struct fd_db_opts {
	/* libpq conninfo ("host=/run/pg dbname=frontdesk") or URI
	 * ("postgresql://db/frontdesk"). user, password and application_name,
	 * when set (non-NULL, non-empty), override what it says. Borrowed:
	 * fd_db_open copies what it keeps. */
	const char *conninfo;
	const char *user;
	const char *password;              /* never logged; wiped on close */
	const char *application_name;      /* shown in pg_stat_activity */
	int pool_size;                     /* 1..1000 connections */
	bool prepared;                     /* named prepared statements; false: unnamed
	                                      parameterised ones (pgbouncer 1.18,
	                                      transaction mode) */
	int connect_timeout_ms;            /* per connection attempt; 0: 3000 */
	int acquire_timeout_ms;            /* wait for a free connection; 0: 5000 */
	int statement_timeout_ms;          /* per statement, set in each transaction;
	                                      0: the server's (or role's) setting */
	FILE *trace;                       /* debugging only: libpq's protocol trace of
	                                      every connection (holds parameter values,
	                                      so never in production); NULL: off */
} fd_db_opts_t;

/* Makes the pool; connects nothing yet (connections open on first use, so a
 * service starts while PostgreSQL is still down and reports NOT_SERVING).
 * Fails only on bad options (-FD_EINVAL naming the option) or out of memory.
 * Free with fd_db_close. */
fd_db_t *fd_db_open(const fd_db_opts_t *opts, fd_err_t *err) FD_MUSTCHECK;
/* Closes every connection and frees the pool. No transaction may be running.
 * NULL is ignored. */
void fd_db_close(fd_db_t *db);

/* True when the last attempt to reach the database (a connection, a
 * statement, a ping) succeeded. Cheap; any thread. */
bool fd_db_healthy(fd_db_t *db);
/* Checks the database now: takes an idle connection (reconnecting it if
 * needed) and runs an empty statement, bounded by connect_timeout_ms. Run it
 * about every second from one background thread: it is what brings the
 * health flag back after an outage. Returns fd_db_healthy(). When every
 * connection is busy, the flag is left as the running calls set it. */
bool fd_db_ping(fd_db_t *db);

/* Counters since fd_db_open (for metrics and tests). */
typedef struct fd_db_stats {
	uint64_t round_trips;     /* pipelines sent and waited for */
	uint64_t transactions;    /* fd_db_run calls that committed (or had nothing to commit) */
	uint64_t retries;         /* transactions run again after 40001/40P01 or a lost connection */
	uint64_t connects;        /* connections opened (first time or again) */
	uint64_t connect_failures;
} fd_db_stats_t;
void fd_db_stats(fd_db_t *db, fd_db_stats_t *out);

/* ---- transactions ---- */

/* "No tenant": the transaction does not set frontdesk.tenant_id, so it can
 * reach platform-level tables only (tenants, ...); a tenant table queried in
 * it raises an error, never an empty result. Services get tenant
 * transactions from fd_tenant_run (tenants/fd/tenant.h). */
#define FD_NO_TENANT ((int64_t)-1)

typedef enum fd_isolation {
	FD_TX_READ_COMMITTED = 0,   /* PostgreSQL's default */
	FD_TX_REPEATABLE_READ,
	FD_TX_SERIALIZABLE,
} fd_isolation_t;

typedef struct fd_tx_opts {
	int64_t tenant_id;          /* >= 0: set for RLS; FD_NO_TENANT: platform-level only */
	/* Absolute deadline in CLOCK_REALTIME milliseconds, as
	 * fd_call_deadline_ms() gives it; 0 or INT64_MAX: none. Past it, nothing
	 * more is sent, a running statement is cancelled, and the call fails with
	 * FD_EDEADLINE. It also caps each statement's statement_timeout. */
	int64_t deadline_ms;
	fd_isolation_t isolation;
	bool read_only;
	/* Plan this transaction's statements once per connection (plan_cache_mode
	 * = force_generic_plan). For hot statements over partitioned tables: the
	 * plan cache keeps choosing custom plans for them (a plan pruned to one
	 * partition looks cheaper than the generic one over all), so they are
	 * planned again on every call. Run-time pruning still reaches one partition. */
	bool generic_plans;
} fd_tx_opts_t;

/* The unit of work. It may run more than once (see fd_db_run), so it must
 * have no effects outside the transaction; it returns 0 to commit or -code
 * (with fd_tx_err(tx) filled) to roll back. */
typedef int (*fd_tx_fn)(fd_tx_t *tx, void *arg);

/* Runs fn in one transaction on a pooled connection, then commits (unless fn
 * already did with FD_TX_LAST) and returns fn's result.
 *   - Serialization failure (40001), deadlock (40P01) or a statement the
 *     connection forgot: rolled back and fn run again, up to 5 times in all,
 *     with a growing, jittered pause; then -FD_EABORTED.
 *   - A connection found broken before COMMIT was sent: reopened and fn run
 *     again once (nothing had been committed). Broken while COMMIT was in
 *     flight: -FD_EUNAVAIL, the outcome is unknown.
 *   - PostgreSQL unreachable: -FD_EUNAVAIL at once. No connection free within
 *     acquire_timeout_ms: -FD_EUNAVAIL.
 *   - fn failed: rolled back, fn's result returned. fn returning 0 after one
 *     of its statements failed still fails with that statement's error
 *     (nothing was committed).
 * err receives the failure (of fn or of the database); on success its
 * content is unspecified (a retried attempt may have written to it).
 * fn may call fd_db_run again (another connection), which can exhaust the pool. */
int fd_db_run(fd_db_t *db, int64_t tenant_id, fd_tx_fn fn, void *arg,
              fd_err_t *err) FD_MUSTCHECK;
/* The same with every option. */
int fd_db_run_opts(fd_db_t *db, const fd_tx_opts_t *opts, fd_tx_fn fn, void *arg,
                   fd_err_t *err) FD_MUSTCHECK;

/* fd_tx_exec flags. */
#define FD_TX_LAST 0x1u   /* the transaction's last statement: COMMIT goes in the
                             same round trip; nothing may follow it */

/* Runs one statement inside fn. params holds sql->nparams text values (a NULL
 * entry is SQL NULL; params may be NULL when there are none). The first call
 * also sends BEGIN and the tenant setting in the same pipeline; with
 * FD_TX_LAST the COMMIT is sent too, and 0 then means committed.
 * out (may be NULL) receives the result (PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK): owned by the transaction, valid until fn returns, then
 * cleared; copy what you keep. On failure *out is NULL, the return is -code
 * and fd_tx_err(tx) says why; the transaction is then aborted: later
 * statements fail at once, and fn should return the code. */
int fd_tx_exec(fd_tx_t *tx, const fd_sql_t *sql, const char *const *params, unsigned flags,
               PGresult **out) FD_MUSTCHECK;
/* The fd_err_t given to fd_db_run: fn records its own failures there. */
fd_err_t *fd_tx_err(fd_tx_t *tx);
/* The tenant the transaction was opened for (FD_NO_TENANT for none). */
int64_t fd_tx_tenant(const fd_tx_t *tx);

/* Maps a failed result to an fd code, in the one place that does it, records
 * a message for the caller in err and returns -code. stmt (may be NULL) names
 * the statement in the log. Logged: SQLSTATE, statement name and the
 * server's primary message when the error is unexpected; never parameters,
 * DETAIL or the query text.
 *   23505 unique                      -> FD_EEXISTS (message names the constraint)
 *   23514 check, 23P01 exclusion      -> FD_EPRECOND (names the constraint)
 *   23502 not null, 22xxx data        -> FD_EINVAL
 *   23503 foreign key                 -> FD_ENOTFOUND: what the row refers to does
 *                                        not exist, or is another tenant's (which
 *                                        must look the same). A service that deletes
 *                                        rows still referenced checks that first.
 *   42501 privilege or RLS WITH CHECK -> FD_EPERM (logged: a bug or a missing grant)
 *   40001, 40P01, 55P03               -> FD_EABORTED (fd_db_run retries the first two)
 *   57014 cancelled / statement_timeout -> FD_EDEADLINE
 *   08xxx, 53xxx, 57P01-57P03, no result -> FD_EUNAVAIL
 *   FD000 no tenant set               -> FD_EINTERNAL (logged: a query outside fd_tenant_run)
 *   anything else                     -> FD_EINTERNAL (logged), "internal database error" */
int fd_db_error(const PGresult *res, const char *stmt, fd_err_t *err);

#endif
