/* db.c - the PostgreSQL pool: lazy connections reopened when broken, pipelined
 * transactions that set the tenant, lazily prepared statements, retries of
 * serialization failures, deadlines, health, and the one SQL error mapping. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>
#include "fd/db.h"
#include "fd/log.h"
#include "fd/clock.h"

#define MAX_ATTEMPTS 5            /* runs of fn for serialization failures */
#define FAIL_FAST_MS 1000         /* after a failed connect, others fail at once this long */
#define DEADLINE_GRACE_MS 250     /* let the server's statement_timeout answer first */
#define CANCEL_GRACE_MS 1000      /* after PQcancel, wait this long for the results */
#define CLEANUP_TIMEOUT_MS 2000   /* ROLLBACK after a failed transaction */
#define MAX_ITEMS 10              /* BEGIN, set_config, plan mode, statement, COMMIT, each with a Parse */

/* One pooled connection; used by one thread at a time (the one that took it
 * from the free list), so its fields need no lock. */
typedef struct conn {
	PGconn *pg;                  /* NULL until first used */
	bool broken;                 /* reopen before the next use */
	const fd_sql_t **prepared;   /* statements prepared on this session */
	size_t nprepared, capprepared;
	struct conn *next_free;
} conn_t;

enum health { HEALTH_UNKNOWN = -1, HEALTH_DOWN = 0, HEALTH_UP = 1 };

struct fd_db {
	pthread_mutex_t mu;
	pthread_cond_t freed;        /* a connection went back on the free list */
	conn_t *conns;
	int nconns;
	conn_t *free_list;           /* under mu */

	const char *keys[12];        /* PQconnectStartParams arrays */
	const char *vals[12];
	char *conninfo, *user, *password, *appname;
	bool prepared;
	int connect_timeout_ms, acquire_timeout_ms, statement_timeout_ms;
	FILE *trace;

	atomic_int health;              /* enum health */
	_Atomic int64_t last_failure;   /* monotonic ms of the last failed connect; 0: none */
	struct {
		_Atomic uint64_t round_trips, transactions, retries, connects, connect_failures;
	} stats;
};

struct fd_tx {
	fd_db_t *db;
	conn_t *c;
	const fd_tx_opts_t *opts;
	fd_err_t *err;
	int64_t until;          /* monotonic ms; INT64_MAX: no deadline */
	char tenant[24];        /* set_config value; "" for FD_NO_TENANT */
	char timeout[24];       /* statement_timeout for this transaction; "" leaves it */
	bool begun;             /* BEGIN was sent */
	bool done;              /* COMMIT was sent with FD_TX_LAST */
	int failed;             /* -code of the first failure; 0 while none */
	bool retry;             /* the failure is worth running fn again for */
	bool lost;              /* the connection broke */
	bool lost_safe;         /* ... before anything could have been committed */
	PGresult **results;     /* handed to fn; cleared when the attempt ends */
	size_t nresults, capresults;
};

typedef struct item {
	const fd_sql_t *sql;
	const char *const *params;
	bool prepare;           /* Parse sql under its name, before it runs */
	PGresult *res;          /* its first result once read */
} item_t;

typedef struct batch {
	item_t items[MAX_ITEMS];
	int n;
	bool has_commit;
} batch_t;

/* The pool's own statements. BEGIN and COMMIT are named, so a pool that
 * prepares parses them once per connection like every other statement of a
 * transaction; a NULL name is never prepared: ROLLBACK must parse in a failed
 * transaction, and the ping runs on connections in any state. */
static const fd_sql_t SQL_BEGIN[3][2] = {
	{ { "_fd_begin_rc", "BEGIN ISOLATION LEVEL READ COMMITTED", 0 },
	  { "_fd_begin_rc_ro", "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY", 0 } },
	{ { "_fd_begin_rr", "BEGIN ISOLATION LEVEL REPEATABLE READ", 0 },
	  { "_fd_begin_rr_ro", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0 } },
	{ { "_fd_begin_ser", "BEGIN ISOLATION LEVEL SERIALIZABLE", 0 },
	  { "_fd_begin_ser_ro", "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY", 0 } },
};
static const fd_sql_t SQL_COMMIT = { "_fd_commit", "COMMIT", 0 };
static const fd_sql_t SQL_ROLLBACK = { NULL, "ROLLBACK", 0 };
static const fd_sql_t SQL_PING = { NULL, "SELECT 1", 0 };
static const fd_sql_t SQL_SET_TENANT = { "_fd_set_tenant",
	"SELECT set_config('frontdesk.tenant_id', $1, true)", 1 };
static const fd_sql_t SQL_SET_TIMEOUT = { "_fd_set_timeout",
	"SELECT set_config('statement_timeout', $1, true)", 1 };
static const fd_sql_t SQL_GENERIC_PLANS = { "_fd_generic_plans",
	"SELECT set_config('plan_cache_mode', 'force_generic_plan', true)", 0 };
static const fd_sql_t SQL_SET_BOTH = { "_fd_set_tenant_timeout",
	"SELECT set_config('frontdesk.tenant_id', $1, true), set_config('statement_timeout', $2, true)", 2 };

/* ---- time ---- */

/* An absolute CLOCK_REALTIME deadline as a monotonic one. */
static int64_t deadline_to_mono(int64_t deadline_ms)
{
	if (deadline_ms <= 0 || deadline_ms == INT64_MAX)
		return INT64_MAX;
	return fd_mono_ms() + (deadline_ms - fd_real_ms());
}

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { ms / 1000, ms % 1000 * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* xorshift64* per thread: jitter needs no cryptographic randomness. */
static uint64_t jitter_rand(void)
{
	static _Thread_local uint64_t s;
	if (s == 0)
		s = (uint64_t)fd_real_ms() ^ (uint64_t)(uintptr_t)&s ^ 0x9e3779b97f4a7c15ULL;
	s ^= s >> 12;
	s ^= s << 25;
	s ^= s >> 27;
	return s * 0x2545f4914f6cdd1dULL;
}

/* ---- health ---- */

static void set_health(fd_db_t *db, bool up, const char *why)
{
	int was = atomic_exchange(&db->health, up ? HEALTH_UP : HEALTH_DOWN);
	if (up && was != HEALTH_UP) {
		fd_info("database reachable");
	} else if (!up && was != HEALTH_DOWN) {
		/* libpq's messages span lines and tabs: make them one short line. */
		char msg[200];
		size_t n = 0;
		for (const char *p = why ? why : "connection lost"; *p && n < sizeof(msg) - 1; p++) {
			char ch = (*p == '\n' || *p == '\t') ? ' ' : *p;
			if (ch != ' ' || (n > 0 && msg[n - 1] != ' '))
				msg[n++] = ch;
		}
		while (n > 0 && msg[n - 1] == ' ')
			n--;
		msg[n] = '\0';
		fd_warn("database unreachable: %s", msg);
	}
}

bool fd_db_healthy(fd_db_t *db)
{
	return atomic_load(&db->health) == HEALTH_UP;
}

void fd_db_stats(fd_db_t *db, fd_db_stats_t *out)
{
	out->round_trips = atomic_load(&db->stats.round_trips);
	out->transactions = atomic_load(&db->stats.transactions);
	out->retries = atomic_load(&db->stats.retries);
	out->connects = atomic_load(&db->stats.connects);
	out->connect_failures = atomic_load(&db->stats.connect_failures);
}

/* ---- errors ---- */

static bool state_is(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

int fd_db_error(const PGresult *res, const char *stmt, fd_err_t *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *cons = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
	const char *col = res ? PQresultErrorField(res, PG_DIAG_COLUMN_NAME) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (!stmt)
		stmt = "(statement)";
	if (!primary)
		primary = "(no message)";
	if (!state)  /* made by libpq: the connection, not the statement */
		return fd_err_set(err, FD_EUNAVAIL, "database unavailable");

	if (strcmp(state, "23505") == 0)
		return fd_err_set(err, FD_EEXISTS, "already exists (%s)", cons ? cons : "unique key");
	if (strcmp(state, "23514") == 0 || strcmp(state, "23P01") == 0)
		return fd_err_set(err, FD_EPRECOND, "not allowed by constraint %s", cons ? cons : "(unnamed)");
	if (strcmp(state, "23503") == 0)
		return fd_err_set(err, FD_ENOTFOUND, "what it refers to does not exist (%s)",
		                  cons ? cons : "foreign key");
	if (strcmp(state, "23502") == 0)
		return fd_err_set(err, FD_EINVAL, "a required value is missing (%s)", col ? col : "column");
	if (state_is(state, "22"))  /* data exception: the message may quote a value; not logged */
		return fd_err_set(err, FD_EINVAL, "invalid value (SQLSTATE %s)", state);
	if (strcmp(state, "42501") == 0) {
		fd_warn("statement %s refused: SQLSTATE %s: %s", stmt, state, primary);
		return fd_err_set(err, FD_EPERM, "permission denied");
	}
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0)
		return fd_err_set(err, FD_EABORTED, "conflict with a concurrent transaction; retry");
	if (strcmp(state, "57014") == 0)
		return fd_err_set(err, FD_EDEADLINE, "deadline exceeded: the statement was cancelled");
	if (state_is(state, "08") || state_is(state, "53") || strcmp(state, "57P01") == 0 ||
	    strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0)
		return fd_err_set(err, FD_EUNAVAIL, "database unavailable");
	if (strcmp(state, "FD000") == 0) {
		fd_error("statement %s ran without a tenant: %s (use fd_tenant_run)", stmt, primary);
		return fd_err_set(err, FD_EINTERNAL, "internal error: no tenant set for a tenant query");
	}
	fd_error("statement %s failed: SQLSTATE %s: %s", stmt, state, primary);
	return fd_err_set(err, FD_EINTERNAL, "internal database error (SQLSTATE %s)", state);
}

/* ---- connections ---- */

static void notice_rx(void *arg, const PGresult *res)
{
	const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	fd_debug("database notice: %s", m ? m : "");
}

static bool is_prepared(const conn_t *c, const fd_sql_t *sql)
{
	for (size_t i = 0; i < c->nprepared; i++)
		if (c->prepared[i] == sql)
			return true;
	return false;
}

static void add_prepared(conn_t *c, const fd_sql_t *sql)
{
	if (is_prepared(c, sql))
		return;
	if (c->nprepared == c->capprepared) {
		size_t cap = c->capprepared ? c->capprepared * 2 : 32;
		const fd_sql_t **p = realloc(c->prepared, cap * sizeof(*p));
		if (!p)
			return;  /* it will be prepared again, and 42P05 puts it back */
		c->prepared = p;
		c->capprepared = cap;
	}
	c->prepared[c->nprepared++] = sql;
}

static void conn_close(conn_t *c)
{
	if (c->pg)
		PQfinish(c->pg);
	c->pg = NULL;
	c->broken = false;
	c->nprepared = 0;
}

static int connect_failed(fd_db_t *db, conn_t *c, const char *why, fd_err_t *err)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", why);
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	conn_close(c);
	atomic_store(&db->last_failure, fd_mono_ms());
	atomic_fetch_add(&db->stats.connect_failures, 1);
	set_health(db, false, msg);
	return fd_err_set(err, FD_EUNAVAIL, "database unavailable");
}

/* Opens c, without blocking past until (or connect_timeout_ms). */
static int conn_open(fd_db_t *db, conn_t *c, int64_t until, fd_err_t *err)
{
	conn_close(c);
	until = min64(until, fd_mono_ms() + db->connect_timeout_ms);
	c->pg = PQconnectStartParams(db->keys, db->vals, 1);
	if (!c->pg)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	if (PQstatus(c->pg) == CONNECTION_BAD)
		return connect_failed(db, c, PQerrorMessage(c->pg), err);
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED)
			return connect_failed(db, c, PQerrorMessage(c->pg), err);
		int64_t left = until - fd_mono_ms();
		if (left <= 0)
			return connect_failed(db, c, "connection attempt timed out", err);
		struct pollfd p = { PQsocket(c->pg), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0 };
		int n = poll(&p, 1, (int)min64(left, INT_MAX));
		if (n < 0 && errno != EINTR)
			return connect_failed(db, c, "poll failed", err);
		if (n > 0)
			st = PQconnectPoll(c->pg);
	}
	if (PQsetnonblocking(c->pg, 1) != 0 || !PQenterPipelineMode(c->pg))
		return connect_failed(db, c, PQerrorMessage(c->pg), err);
	PQsetNoticeReceiver(c->pg, notice_rx, NULL);
	if (db->trace) {
		PQtrace(c->pg, db->trace);
		PQsetTraceFlags(c->pg, PQTRACE_SUPPRESS_TIMESTAMPS);
	}
	atomic_fetch_add(&db->stats.connects, 1);
	set_health(db, true, NULL);
	return 0;
}

/* Makes c usable: an idle connection whose server went away (a restart sends
 * it a FATAL and closes it) is noticed here, without a round trip, and
 * reopened. While the database is known to be down, fails at once. */
static int conn_ready(fd_db_t *db, conn_t *c, int64_t until, bool fail_fast, fd_err_t *err)
{
	if (c->pg && !c->broken && PQstatus(c->pg) == CONNECTION_OK) {
		/* A terminated backend leaves its FATAL message, then EOF: the
		 * first read takes the message, a later one finds the EOF. */
		struct pollfd p = { PQsocket(c->pg), POLLIN, 0 };
		for (int i = 0; i < 8 && !c->broken && poll(&p, 1, 0) > 0; i++)
			if (!PQconsumeInput(c->pg))
				c->broken = true;
		if (!c->broken && PQstatus(c->pg) == CONNECTION_OK)
			return 0;
	}
	if (fail_fast && !fd_db_healthy(db) &&
	    fd_mono_ms() - atomic_load(&db->last_failure) < FAIL_FAST_MS)
		return fd_err_set(err, FD_EUNAVAIL, "database unavailable");
	if (fd_mono_ms() >= until)
		return fd_err_set(err, FD_EDEADLINE, "deadline exceeded before the database was reached");
	return conn_open(db, c, until, err);
}

static int acquire(fd_db_t *db, int64_t until, conn_t **out, fd_err_t *err)
{
	int64_t wait_until = min64(until, fd_mono_ms() + db->acquire_timeout_ms);
	struct timespec ts = { wait_until / 1000, wait_until % 1000 * 1000000L };
	pthread_mutex_lock(&db->mu);
	while (!db->free_list) {
		int rc = pthread_cond_timedwait(&db->freed, &db->mu, &ts);
		if (rc == ETIMEDOUT && !db->free_list) {
			pthread_mutex_unlock(&db->mu);
			if (fd_mono_ms() >= until)
				return fd_err_set(err, FD_EDEADLINE, "deadline exceeded waiting for a database connection");
			return fd_err_set(err, FD_EUNAVAIL, "no database connection free within %d ms (pool of %d)",
			                  db->acquire_timeout_ms, db->nconns);
		}
	}
	*out = db->free_list;
	db->free_list = (*out)->next_free;
	pthread_mutex_unlock(&db->mu);
	return 0;
}

static void release(fd_db_t *db, conn_t *c)
{
	pthread_mutex_lock(&db->mu);
	c->next_free = db->free_list;
	db->free_list = c;
	pthread_cond_signal(&db->freed);
	pthread_mutex_unlock(&db->mu);
}

/* ---- pipelines ---- */

static bool named(const fd_db_t *db, const fd_sql_t *sql)
{
	return db->prepared && sql->name;
}

static void batch_add(fd_db_t *db, conn_t *c, batch_t *b, const fd_sql_t *sql,
                      const char *const *params)
{
	if (named(db, sql) && !is_prepared(c, sql)) {
		bool queued = false;
		for (int i = 0; i < b->n; i++)
			queued |= b->items[i].prepare && b->items[i].sql == sql;
		if (!queued)
			b->items[b->n++] = (item_t){ .sql = sql, .prepare = true };
	}
	b->items[b->n++] = (item_t){ .sql = sql, .params = params };
}

static void batch_clear(batch_t *b)
{
	for (int i = 0; i < b->n; i++) {
		PQclear(b->items[i].res);
		b->items[i].res = NULL;
	}
}

static int send_item(const fd_db_t *db, PGconn *pg, const item_t *it)
{
	const fd_sql_t *s = it->sql;
	if (it->prepare)
		return PQsendPrepare(pg, s->name, s->text, s->nparams, NULL);
	if (named(db, s))
		return PQsendQueryPrepared(pg, s->name, s->nparams, it->params, NULL, NULL, 0);
	return PQsendQueryParams(pg, s->text, s->nparams, NULL, it->params, NULL, NULL, 0);
}

/* Flush what is queued and read until a result can be taken without
 * blocking. 0: ready; -1: the connection broke; -2: until passed. */
static int pump(PGconn *pg, int64_t until)
{
	for (;;) {
		int f = PQflush(pg);
		if (f < 0)
			return -1;
		if (f == 0 && !PQisBusy(pg))
			return 0;
		int64_t left = until - fd_mono_ms();
		if (left <= 0)
			return -2;
		struct pollfd p = { PQsocket(pg), (short)(POLLIN | (f ? POLLOUT : 0)), 0 };
		if (p.fd < 0)
			return -1;
		int n = poll(&p, 1, (int)min64(left, INT_MAX));
		if (n < 0 && errno != EINTR)
			return -1;
		if (n > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(pg))
			return -1;
	}
}

static void cancel_running(PGconn *pg)
{
	char buf[256];
	PGcancel *k = PQgetCancel(pg);
	if (k) {
		PQcancel(k, buf, sizeof(buf));
		PQfreeCancel(k);
	}
}

/* Sends the batch and a sync in one go and reads every result back, so the
 * whole batch is one round trip. 0: each item holds its result (which may be
 * an error); -1: the connection broke; -2: until passed and even a cancel did
 * not bring the results back. The connection is unusable after -1 or -2. */
static int pipeline(fd_db_t *db, conn_t *c, batch_t *b, int64_t until)
{
	PGconn *pg = c->pg;
	for (int i = 0; i < b->n; i++)
		if (!send_item(db, pg, &b->items[i]))
			return -1;
	if (!PQpipelineSync(pg))
		return -1;
	atomic_fetch_add(&db->stats.round_trips, 1);

	int64_t wait_until = until == INT64_MAX ? INT64_MAX : until + DEADLINE_GRACE_MS;
	bool cancelled = false;
	int i = 0;
	for (;;) {
		int w = pump(pg, wait_until);
		if (w == -2) {
			if (cancelled)
				return -2;
			cancel_running(pg);
			cancelled = true;
			wait_until = fd_mono_ms() + CANCEL_GRACE_MS;
			continue;
		}
		if (w < 0)
			return -1;
		PGresult *r = PQgetResult(pg);
		if (i == b->n) {  /* all items read: the sync comes next */
			bool sync = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
			PQclear(r);
			return sync ? 0 : -1;
		}
		if (!r) {  /* the end of item i's results */
			if (!b->items[i].res || PQstatus(pg) == CONNECTION_BAD)
				return -1;
			i++;
			continue;
		}
		if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			return -1;  /* out of step */
		}
		if (!b->items[i].res)
			b->items[i].res = r;
		else
			PQclear(r);
		if (PQstatus(pg) == CONNECTION_BAD)
			return -1;
	}
}

/* After a lost connection: could the batch have committed? Only if it held a
 * COMMIT and the server did not say it was terminating before BEGIN ran. */
static bool nothing_committed(const batch_t *b)
{
	if (!b->has_commit)
		return true;
	const PGresult *r = b->items[0].res;
	const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	return st && state_is(st, "57P0");
}

/* ---- transactions ---- */

static int tx_fail(fd_tx_t *tx, int rc)
{
	if (!tx->failed)
		tx->failed = rc;
	return tx->failed;
}

static int tx_fail_result(fd_tx_t *tx, const item_t *it)
{
	const char *st = PQresultErrorField(it->res, PG_DIAG_SQLSTATE);
	const fd_sql_t *s = it->sql;
	int rc = fd_db_error(it->res, s->name ? s->name : s->text, tx->err);
	if (st && (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0))
		tx->retry = true;
	if (st && strcmp(st, "26000") == 0 && named(tx->db, s)) {
		/* The session forgot its statements (DISCARD ALL, a pooler in
		 * transaction mode): start again on a fresh one. */
		tx->c->broken = true;
		tx->retry = true;
	}
	if (st && strcmp(st, "42P05") == 0 && it->prepare) {
		add_prepared(tx->c, s);  /* it was prepared after all */
		tx->retry = true;
	}
	return tx_fail(tx, rc);
}

/* Runs a batch for the transaction and checks its results. On success the
 * result of item `keep` (-1: none) is handed to the transaction. */
static int tx_batch(fd_tx_t *tx, batch_t *b, int keep, PGresult **out)
{
	fd_db_t *db = tx->db;
	conn_t *c = tx->c;
	int rc = pipeline(db, c, b, tx->until);
	if (rc < 0) {
		c->broken = true;
		tx->lost = true;
		tx->lost_safe = nothing_committed(b);
		batch_clear(b);
		if (rc == -2)
			return tx_fail(tx, fd_err_set(tx->err, FD_EDEADLINE,
			                              "deadline exceeded: the database did not answer in time"));
		set_health(db, false, PQerrorMessage(c->pg));
		return tx_fail(tx, fd_err_set(tx->err, FD_EUNAVAIL, "database unavailable: connection lost"));
	}
	set_health(db, true, NULL);
	for (int i = 0; i < b->n; i++) {
		item_t *it = &b->items[i];
		ExecStatusType st = PQresultStatus(it->res);
		bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
		if (it->prepare && ok)
			add_prepared(c, it->sql);
		if (ok || st == PGRES_PIPELINE_ABORTED || rc < 0)
			continue;
		if (st == PGRES_FATAL_ERROR)
			rc = tx_fail_result(tx, it);
		else
			rc = tx_fail(tx, fd_err_set(tx->err, FD_EINTERNAL, "unexpected result %s",
			                            PQresStatus(st)));
	}
	if (rc == 0 && keep >= 0 && out) {
		if (tx->nresults == tx->capresults) {
			size_t cap = tx->capresults ? tx->capresults * 2 : 8;
			PGresult **p = realloc(tx->results, cap * sizeof(*p));
			if (!p) {
				batch_clear(b);
				return tx_fail(tx, fd_err_set(tx->err, FD_EEXHAUSTED, "out of memory"));
			}
			tx->results = p;
			tx->capresults = cap;
		}
		tx->results[tx->nresults++] = b->items[keep].res;
		*out = b->items[keep].res;
		b->items[keep].res = NULL;
	}
	batch_clear(b);
	return rc;
}

int fd_tx_exec(fd_tx_t *tx, const fd_sql_t *sql, const char *const *params, unsigned flags,
               PGresult **out)
{
	if (out)
		*out = NULL;
	if (tx->failed)
		return tx->failed;  /* the transaction is aborted; err still says why */
	if (tx->done)
		return tx_fail(tx, fd_err_set(tx->err, FD_EINTERNAL,
		                              "statement %s after the transaction's last (FD_TX_LAST)",
		                              sql->name ? sql->name : "(unnamed)"));
	if (sql->nparams > 0 && !params)
		return tx_fail(tx, fd_err_set(tx->err, FD_EINTERNAL, "statement %s: parameters missing",
		                              sql->name ? sql->name : "(unnamed)"));
	if (!tx->tenant[0] && !(sql->flags & FD_SQL_PLATFORM)) {
		fd_error("statement %s run without a tenant: refused (tenant data goes through fd_tenant_run;"
		         " platform-level statements say FD_SQL_PLATFORM)", sql->name ? sql->name : "(unnamed)");
		return tx_fail(tx, fd_err_set(tx->err, FD_EINTERNAL, "internal error: statement %s needs a tenant",
		                              sql->name ? sql->name : "(unnamed)"));
	}
	if (fd_mono_ms() >= tx->until)
		return tx_fail(tx, fd_err_set(tx->err, FD_EDEADLINE, "deadline exceeded"));

	fd_db_t *db = tx->db;
	batch_t b = { .n = 0 };
	const char *set_params[2] = { tx->tenant, tx->timeout };
	if (!tx->begun) {
		const fd_tx_opts_t *o = tx->opts;
		batch_add(db, tx->c, &b, &SQL_BEGIN[o->isolation][o->read_only ? 1 : 0], NULL);
		if (tx->tenant[0] && tx->timeout[0])
			batch_add(db, tx->c, &b, &SQL_SET_BOTH, set_params);
		else if (tx->tenant[0])
			batch_add(db, tx->c, &b, &SQL_SET_TENANT, set_params);
		else if (tx->timeout[0])
			batch_add(db, tx->c, &b, &SQL_SET_TIMEOUT, set_params + 1);
		if (o->generic_plans)
			batch_add(db, tx->c, &b, &SQL_GENERIC_PLANS, NULL);
		tx->begun = true;
	}
	batch_add(db, tx->c, &b, sql, params);
	int keep = b.n - 1;
	if (flags & FD_TX_LAST) {
		batch_add(db, tx->c, &b, &SQL_COMMIT, NULL);
		b.has_commit = true;
		tx->done = true;
	}
	return tx_batch(tx, &b, keep, out);
}

fd_err_t *fd_tx_err(fd_tx_t *tx)
{
	return tx->err;
}

int64_t fd_tx_tenant(const fd_tx_t *tx)
{
	return tx->opts->tenant_id;
}

static int tx_commit(fd_tx_t *tx)
{
	batch_t b = { .n = 0, .has_commit = true };
	batch_add(tx->db, tx->c, &b, &SQL_COMMIT, NULL);
	tx->done = true;
	return tx_batch(tx, &b, -1, NULL);
}

/* Ends an attempt: frees fn's results and leaves the connection idle (rolled
 * back) or marked for reopening. */
static void tx_end(fd_tx_t *tx)
{
	for (size_t i = 0; i < tx->nresults; i++)
		PQclear(tx->results[i]);
	tx->nresults = 0;
	conn_t *c = tx->c;
	if (c->broken || !c->pg)
		return;
	if (PQstatus(c->pg) != CONNECTION_OK) {
		c->broken = true;
		return;
	}
	PGTransactionStatusType ts = PQtransactionStatus(c->pg);
	if (ts == PQTRANS_IDLE)
		return;
	if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR) {
		c->broken = true;
		return;
	}
	batch_t b = { .n = 0 };
	batch_add(tx->db, c, &b, &SQL_ROLLBACK, NULL);
	if (pipeline(tx->db, c, &b, fd_mono_ms() + CLEANUP_TIMEOUT_MS) < 0 ||
	    PQresultStatus(b.items[0].res) != PGRES_COMMAND_OK ||
	    PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		c->broken = true;
	batch_clear(&b);
}

static void backoff(int attempt, int64_t until)
{
	int64_t base = min64((int64_t)5 << attempt, 200);
	int64_t pause = base + (int64_t)(jitter_rand() % (uint64_t)base);
	int64_t left = until - fd_mono_ms();
	sleep_ms(min64(pause, left > 0 ? left : 0));
}

int fd_db_run_opts(fd_db_t *db, const fd_tx_opts_t *opts, fd_tx_fn fn, void *arg, fd_err_t *err)
{
	if (opts->tenant_id < FD_NO_TENANT)
		return fd_err_set(err, FD_EINVAL, "tenant_id: %lld is not a tenant",
		                  (long long)opts->tenant_id);
	if ((unsigned)opts->isolation > FD_TX_SERIALIZABLE)
		return fd_err_set(err, FD_EINVAL, "isolation: unknown level %d", (int)opts->isolation);
	int64_t until = deadline_to_mono(opts->deadline_ms);
	if (fd_mono_ms() >= until)
		return fd_err_set(err, FD_EDEADLINE, "deadline exceeded before the transaction started");

	conn_t *c = NULL;
	int rc = acquire(db, until, &c, err);
	if (rc < 0)
		return rc;
	fd_tx_t tx = { .db = db, .c = c, .opts = opts, .err = err, .until = until };
	if (opts->tenant_id >= 0)
		snprintf(tx.tenant, sizeof(tx.tenant), "%lld", (long long)opts->tenant_id);
	bool reconnected = false;
	for (int attempt = 1;; attempt++) {
		rc = conn_ready(db, c, until, true, err);
		if (rc < 0)
			break;
		int64_t st = db->statement_timeout_ms;
		if (until != INT64_MAX) {
			int64_t left = until - fd_mono_ms();
			if (left < 1)
				left = 1;
			if (st == 0 || left < st)
				st = left;
		}
		tx.timeout[0] = '\0';
		if (st > 0)
			snprintf(tx.timeout, sizeof(tx.timeout), "%lld", (long long)st);
		tx.begun = tx.done = tx.retry = tx.lost = tx.lost_safe = false;
		tx.failed = 0;

		rc = fn(&tx, arg);
		if (rc == 0 && !tx.failed && tx.begun && !tx.done)
			rc = tx_commit(&tx);
		tx_end(&tx);

		if (tx.retry && attempt < MAX_ATTEMPTS && fd_mono_ms() < until) {
			atomic_fetch_add(&db->stats.retries, 1);
			fd_debug("transaction conflict (attempt %d): running it again", attempt);
			backoff(attempt, until);
			continue;
		}
		if (tx.retry && fd_mono_ms() >= until) {
			rc = fd_err_set(err, FD_EDEADLINE, "deadline exceeded while retrying a conflict");
			break;
		}
		if (tx.retry) {
			rc = fd_err_set(err, FD_EABORTED,
			                "conflict with concurrent transactions persisted after %d attempts; retry",
			                attempt);
			break;
		}
		if (tx.lost && tx.lost_safe && !reconnected && tx.failed == -FD_EUNAVAIL) {
			/* Nothing was committed: run it again on a fresh connection. */
			reconnected = true;
			atomic_fetch_add(&db->stats.retries, 1);
			continue;
		}
		if (rc == 0)
			rc = tx.failed;  /* fn went on after a failed statement: nothing was committed */
		if (rc == 0)
			atomic_fetch_add(&db->stats.transactions, 1);
		break;
	}
	free(tx.results);
	release(db, c);
	return rc;
}

int fd_db_run(fd_db_t *db, int64_t tenant_id, fd_tx_fn fn, void *arg, fd_err_t *err)
{
	fd_tx_opts_t o = { .tenant_id = tenant_id };
	return fd_db_run_opts(db, &o, fn, arg, err);
}

/* ---- ping ---- */

static bool ping_once(fd_db_t *db, conn_t *c)
{
	fd_err_t err;
	int64_t until = fd_mono_ms() + db->connect_timeout_ms;
	if (conn_ready(db, c, until, false, &err) < 0)
		return false;
	batch_t b = { .n = 0 };
	batch_add(db, c, &b, &SQL_PING, NULL);
	bool ok = pipeline(db, c, &b, until) == 0 && PQresultStatus(b.items[0].res) == PGRES_TUPLES_OK;
	batch_clear(&b);
	if (!ok) {
		c->broken = true;
		set_health(db, false, PQerrorMessage(c->pg));
	} else {
		set_health(db, true, NULL);
	}
	return ok;
}

bool fd_db_ping(fd_db_t *db)
{
	pthread_mutex_lock(&db->mu);
	conn_t *c = db->free_list;
	if (c)
		db->free_list = c->next_free;
	pthread_mutex_unlock(&db->mu);
	if (!c)
		return fd_db_healthy(db);  /* every connection is busy: the calls tell */
	/* A connection the server dropped fails once; PostgreSQL may be back, so
	 * try again on a fresh one before saying it is down. */
	bool was_open = c->pg && !c->broken;
	if (!ping_once(db, c) && was_open)
		ping_once(db, c);
	release(db, c);
	return fd_db_healthy(db);
}

/* ---- the pool ---- */

static char *dup_opt(const char *s, bool *oom)
{
	if (!s || !*s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

fd_db_t *fd_db_open(const fd_db_opts_t *opts, fd_err_t *err)
{
	if (opts->pool_size < 1 || opts->pool_size > 1000) {
		fd_err_set(err, FD_EINVAL, "db_pool: %d is outside 1..1000", opts->pool_size);
		return NULL;
	}
	if (opts->connect_timeout_ms < 0 || opts->acquire_timeout_ms < 0 ||
	    opts->statement_timeout_ms < 0) {
		fd_err_set(err, FD_EINVAL, "database timeouts must not be negative");
		return NULL;
	}
	if (opts->conninfo && *opts->conninfo) {
		char *msg = NULL;
		PQconninfoOption *o = PQconninfoParse(opts->conninfo, &msg);
		PQfreemem(msg);  /* it may quote the string, password included */
		if (!o) {
			fd_err_set(err, FD_EINVAL, "database_url: not a valid libpq conninfo or URI");
			return NULL;
		}
		PQconninfoFree(o);
	}

	fd_db_t *db = calloc(1, sizeof(*db));
	if (!db)
		goto oom;
	db->conns = calloc((size_t)opts->pool_size, sizeof(conn_t));
	if (!db->conns)
		goto oom;
	bool nomem = false;
	db->conninfo = dup_opt(opts->conninfo, &nomem);
	db->user = dup_opt(opts->user, &nomem);
	db->password = dup_opt(opts->password, &nomem);
	db->appname = dup_opt(opts->application_name, &nomem);
	if (nomem)
		goto oom;
	db->nconns = opts->pool_size;
	db->prepared = opts->prepared;
	db->connect_timeout_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms : 3000;
	db->acquire_timeout_ms = opts->acquire_timeout_ms ? opts->acquire_timeout_ms : 5000;
	db->statement_timeout_ms = opts->statement_timeout_ms;
	db->trace = opts->trace;
	atomic_init(&db->health, HEALTH_UNKNOWN);

	/* Keywords before dbname are defaults the conninfo may override; those
	 * after it override the conninfo (the service's own role and name). */
	int k = 0;
	db->keys[k] = "keepalives", db->vals[k++] = "1";
	db->keys[k] = "keepalives_idle", db->vals[k++] = "30";
	db->keys[k] = "keepalives_interval", db->vals[k++] = "10";
	db->keys[k] = "keepalives_count", db->vals[k++] = "3";
	db->keys[k] = "tcp_user_timeout", db->vals[k++] = "30000";
	db->keys[k] = "dbname", db->vals[k++] = db->conninfo;
	db->keys[k] = "user", db->vals[k++] = db->user;
	db->keys[k] = "password", db->vals[k++] = db->password;
	db->keys[k] = "application_name", db->vals[k++] = db->appname;
	db->keys[k] = "client_encoding", db->vals[k++] = "UTF8";
	db->keys[k] = NULL, db->vals[k] = NULL;

	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&db->freed, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&db->mu, NULL);
	for (int i = db->nconns - 1; i >= 0; i--) {
		db->conns[i].next_free = db->free_list;
		db->free_list = &db->conns[i];
	}
	return db;

oom:
	fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	if (db) {
		free(db->conns);
		free(db->conninfo);
		free(db->user);
		if (db->password)
			sodium_memzero(db->password, strlen(db->password));
		free(db->password);
		free(db->appname);
		free(db);
	}
	return NULL;
}

void fd_db_close(fd_db_t *db)
{
	if (!db)
		return;
	for (int i = 0; i < db->nconns; i++) {
		conn_close(&db->conns[i]);
		free(db->conns[i].prepared);
	}
	free(db->conns);
	free(db->conninfo);
	free(db->user);
	if (db->password)
		sodium_memzero(db->password, strlen(db->password));
	free(db->password);
	free(db->appname);
	pthread_mutex_destroy(&db->mu);
	pthread_cond_destroy(&db->freed);
	free(db);
}
