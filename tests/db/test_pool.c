/* test_pool.c - the pool and its transactions, prepared and unprepared:
 * results, errors mapped to codes, commit and rollback, the one-round-trip
 * path (BEGIN, tenant, statement and COMMIT in one pipeline), retries of
 * serialization failures and deadlocks, deadlines, statement_timeout and an
 * exhausted pool. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dbtest.h"
#include "fd/tenant.h"
#include "test.h"

static const fd_sql_t SQL_PUT = { "t_put",
	"INSERT INTO frontdesk.kv (tenant_id, k, v) VALUES ($1, $2, $3)", 3 };
static const fd_sql_t SQL_GET = { "t_get",
	"SELECT v FROM frontdesk.kv WHERE tenant_id = $1 AND k = $2", 2 };
static const fd_sql_t SQL_COUNT = { "t_count",
	"SELECT count(*) FROM frontdesk.kv WHERE tenant_id = $1", 1 };
static const fd_sql_t SQL_SET = { "t_set",
	"UPDATE frontdesk.kv SET v = $3 WHERE tenant_id = $1 AND k = $2", 3 };
static const fd_sql_t SQL_FAIL_FIRST = { "t_fail_first",
	"SELECT frontdesk.fail_first($1::int, $2)", 2 };
static const fd_sql_t SQL_SLEEP = { "t_sleep", "SELECT pg_sleep($1::float8)", 1, FD_SQL_PLATFORM };
static const fd_sql_t SQL_MISSING = { "t_missing", "SELECT * FROM frontdesk.no_such_table", 0 };
static const fd_sql_t SQL_PREPARED = { "t_prepared",
	"SELECT count(*) FROM pg_prepared_statements", 0, FD_SQL_PLATFORM };
static const fd_sql_t SQL_ONE = { NULL, "SELECT 1", 0, FD_SQL_PLATFORM };
static const fd_sql_t SQL_PID = { "t_pid", "SELECT pg_backend_pid()", 0, FD_SQL_PLATFORM };

static dbtest_t t;
static const char *T1 = "1";

static int setup(void)
{
	PGconn *a = t.admin;
	if (dbtest_migrate(&t) < 0 ||
	    dbtest_exec(a, "INSERT INTO frontdesk.tenants (id, slug, name) VALUES (1, 'one', 'One')") < 0 ||
	    dbtest_exec(a, "SET ROLE frontdesk_owner") < 0 ||
	    dbtest_exec(a, "CREATE TABLE frontdesk.kv (tenant_id bigint NOT NULL, k text NOT NULL, "
	                   "v text NOT NULL CONSTRAINT kv_v_short CHECK (length(v) <= 10), "
	                   "PRIMARY KEY (tenant_id, k))") < 0 ||
	    dbtest_exec(a, "CALL frontdesk.enable_tenant_rls('frontdesk.kv')") < 0 ||
	    dbtest_exec(a, "GRANT SELECT, INSERT, UPDATE ON frontdesk.kv TO frontdesk_linesd") < 0 ||
	    /* Raises SQLSTATE code on the first n calls of the test (a sequence
	     * counts them, outside any transaction). */
	    dbtest_exec(a, "CREATE SEQUENCE frontdesk.fail_seq") < 0 ||
	    dbtest_exec(a, "GRANT USAGE ON SEQUENCE frontdesk.fail_seq TO frontdesk_linesd") < 0 ||
	    dbtest_exec(a, "CREATE FUNCTION frontdesk.fail_first(n int, code text) RETURNS int "
	                   "LANGUAGE plpgsql AS $$ BEGIN "
	                   "IF nextval('frontdesk.fail_seq') <= n THEN "
	                   "  RAISE EXCEPTION 'injected failure' USING ERRCODE = code; END IF; "
	                   "RETURN 1; END $$") < 0 ||
	    dbtest_exec(a, "RESET ROLE") < 0)
		return -1;
	return 0;
}

static fd_db_t *open_pool(bool prepared, int size, int statement_timeout_ms, FILE *trace)
{
	fd_err_t err = { 0 };
	fd_db_opts_t o = { .conninfo = dbtest_url(&t, "frontdesk_linesd"), .pool_size = size,
	                   .prepared = prepared, .application_name = "test_pool",
	                   .acquire_timeout_ms = 300, .statement_timeout_ms = statement_timeout_ms,
	                   .trace = trace };
	fd_db_t *db = fd_db_open(&o, &err);
	CHECK(db != NULL, "open: %s", err.msg);
	return db;
}

static int run(fd_db_t *db, dbtest_q_t *q, fd_err_t *err)
{
	memset(err, 0, sizeof(*err));
	return fd_tenant_run(db, 1, dbtest_q_fn, q, err);
}

/* ---- two statements and an explicit commit; rollback on failure ---- */

struct two {
	const char *k1, *k2;
	int fail_with;       /* fn's own failure after both inserts */
	bool ignore_error;   /* return 0 whatever the statements said */
	char count[16];
};

static int two_inserts(fd_tx_t *tx, void *arg)
{
	struct two *w = arg;
	const char *p1[] = { T1, w->k1, "x" }, *p2[] = { T1, w->k2, "y" }, *pc[] = { T1 };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_PUT, p1, 0, &res);
	if (rc == 0)
		rc = fd_tx_exec(tx, &SQL_PUT, p2, 0, &res);
	if (rc == 0)
		rc = fd_tx_exec(tx, &SQL_COUNT, pc, 0, &res);
	if (rc == 0)
		snprintf(w->count, sizeof(w->count), "%s", PQgetvalue(res, 0, 0));
	if (w->ignore_error)
		return 0;
	if (rc == 0 && w->fail_with)
		return fd_err_set(fd_tx_err(tx), (fd_code_t)w->fail_with, "fn changed its mind");
	return rc;
}

static int after_last(fd_tx_t *tx, void *arg)
{
	const char *p[] = { T1 };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_COUNT, p, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	*(int *)arg = fd_tx_exec(tx, &SQL_COUNT, p, 0, &res);
	return 0;
}

static void basics(bool prepared)
{
	const char *mode = prepared ? "prepared" : "unprepared";
	fd_db_t *db = open_pool(prepared, 2, 0, NULL);
	if (!db)
		return;
	fd_err_t err;
	char key[16];
	snprintf(key, sizeof(key), "a-%s", mode);

	dbtest_q_t q = { .sql = &SQL_PUT, .params = { T1, key, "1" } };
	int rc = run(db, &q, &err);
	CHECK(rc == 0 && strcmp(q.affected, "1") == 0, "%s: insert: rc %d (%s)", mode, rc, err.msg);
	q = (dbtest_q_t){ .sql = &SQL_GET, .params = { T1, key } };
	rc = run(db, &q, &err);
	CHECK(rc == 0 && strcmp(q.value, "1") == 0, "%s: read back: rc %d, \"%s\"", mode, rc, q.value);
	rc = run(db, &q, &err);  /* again: the statement is already prepared on this connection */
	CHECK(rc == 0 && strcmp(q.value, "1") == 0, "%s: read again: rc %d (%s)", mode, rc, err.msg);

	/* Errors, mapped in one place. */
	q = (dbtest_q_t){ .sql = &SQL_PUT, .params = { T1, key, "2" } };
	rc = run(db, &q, &err);
	CHECK(rc == -FD_EEXISTS && err.code == FD_EEXISTS && strstr(err.msg, "kv_pkey"),
	      "%s: duplicate key: rc %d (%s)", mode, rc, err.msg);
	q = (dbtest_q_t){ .sql = &SQL_PUT, .params = { T1, "long", "0123456789ABC" } };
	rc = run(db, &q, &err);
	CHECK(rc == -FD_EPRECOND && strstr(err.msg, "kv_v_short"), "%s: check: rc %d (%s)", mode, rc,
	      err.msg);
	q = (dbtest_q_t){ .sql = &SQL_PUT, .params = { "secret-abc", "k", "v" } };
	rc = run(db, &q, &err);
	CHECK(rc == -FD_EINVAL && !strstr(err.msg, "secret-abc"),
	      "%s: bad value: rc %d, no value in the message (%s)", mode, rc, err.msg);
	q = (dbtest_q_t){ .sql = &SQL_PUT, .params = { T1, NULL, "v" } };
	rc = run(db, &q, &err);
	CHECK(rc == -FD_EINVAL, "%s: NULL into NOT NULL: rc %d (%s)", mode, rc, err.msg);
	q = (dbtest_q_t){ .sql = &SQL_MISSING };
	rc = run(db, &q, &err);
	CHECK(rc == -FD_EINTERNAL && strstr(err.msg, "42P01"), "%s: unexpected error: rc %d (%s)", mode, rc,
	      err.msg);

	/* Several statements, committed by fd_db_run. */
	struct two w = { .k1 = "b1", .k2 = "b2" };
	char k1[16], k2[16];
	snprintf(k1, sizeof(k1), "b1-%s", mode);
	snprintf(k2, sizeof(k2), "b2-%s", mode);
	w.k1 = k1;
	w.k2 = k2;
	rc = fd_tenant_run(db, 1, two_inserts, &w, &err);
	CHECK(rc == 0, "%s: two inserts: rc %d (%s)", mode, rc, err.msg);
	char sql[200];
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM frontdesk.kv WHERE k IN ('%s', '%s')", k1, k2);
	CHECK(dbtest_is(t.admin, sql, "2"), "%s: both committed", mode);

	/* fn fails after its statements: nothing stays. */
	snprintf(k1, sizeof(k1), "c1-%s", mode);
	snprintf(k2, sizeof(k2), "c2-%s", mode);
	w = (struct two){ .k1 = k1, .k2 = k2, .fail_with = FD_ENOTFOUND };
	rc = fd_tenant_run(db, 1, two_inserts, &w, &err);
	CHECK(rc == -FD_ENOTFOUND && strcmp(err.msg, "fn changed its mind") == 0, "%s: fn's error: rc %d", mode,
	      rc);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM frontdesk.kv WHERE k IN ('%s', '%s')", k1, k2);
	CHECK(dbtest_is(t.admin, sql, "0"), "%s: rolled back", mode);

	/* fn ignores a failed statement: still a failure, nothing committed. */
	snprintf(k1, sizeof(k1), "d1-%s", mode);
	w = (struct two){ .k1 = k1, .k2 = key, .ignore_error = true };
	rc = fd_tenant_run(db, 1, two_inserts, &w, &err);
	CHECK(rc == -FD_EEXISTS, "%s: ignored failure still reported: rc %d", mode, rc);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM frontdesk.kv WHERE k = '%s'", k1);
	CHECK(dbtest_is(t.admin, sql, "0"), "%s: nothing of it committed", mode);

	/* Nothing may follow FD_TX_LAST. */
	int second = 0;
	rc = fd_tenant_run(db, 1, after_last, &second, &err);
	CHECK(rc == -FD_EINTERNAL && second == -FD_EINTERNAL, "%s: statement after FD_TX_LAST: %d/%d", mode,
	      rc, second);

	/* The pool is still healthy after all those failures. */
	q = (dbtest_q_t){ .sql = &SQL_GET, .params = { T1, key } };
	rc = run(db, &q, &err);
	CHECK(rc == 0 && strcmp(q.value, "1") == 0, "%s: still works: rc %d (%s)", mode, rc, err.msg);
	CHECK(fd_db_healthy(db) && fd_db_ping(db), "%s: healthy", mode);

	/* The setting decides: named statements on the server, or none. */
	q = (dbtest_q_t){ .sql = &SQL_PREPARED };
	rc = fd_db_run(db, FD_NO_TENANT, dbtest_q_fn, &q, &err);
	CHECK(rc == 0 && (prepared ? atoi(q.value) > 0 : strcmp(q.value, "0") == 0),
	      "%s: %s statements prepared on the server", mode, q.value);

	/* Platform level, no tenant; a statement without a name is never prepared. */
	q = (dbtest_q_t){ .sql = &SQL_ONE };
	rc = fd_db_run(db, FD_NO_TENANT, dbtest_q_fn, &q, &err);
	CHECK(rc == 0 && strcmp(q.value, "1") == 0, "%s: no-tenant statement: rc %d", mode, rc);
	fd_db_close(db);
}

/* ---- round trips, seen on the wire ---- */

static int count_lines(const char *text, const char *a, const char *b)
{
	int n = 0;
	for (const char *l = text; l && *l;) {
		const char *e = strchr(l, '\n');
		size_t len = e ? (size_t)(e - l) : strlen(l);
		char line[4096];
		snprintf(line, sizeof(line), "%.*s", (int)(len < sizeof(line) ? len : sizeof(line) - 1), l);
		if (strstr(line, a) && strstr(line, b))
			n++;
		l = e ? e + 1 : NULL;
	}
	return n;
}

/* The trace written since offset, as a string (malloc'd). */
static char *trace_since(FILE *f, long offset)
{
	fflush(f);
	long end = ftell(f);
	char *s = calloc(1, (size_t)(end - offset) + 1);
	if (!s)
		return NULL;
	fseek(f, offset, SEEK_SET);
	size_t n = fread(s, 1, (size_t)(end - offset), f);
	s[n] = '\0';
	fseek(f, end, SEEK_SET);
	return s;
}

static void round_trips(bool prepared)
{
	const char *mode = prepared ? "prepared" : "unprepared";
	FILE *trace = tmpfile();
	fd_db_t *db = open_pool(prepared, 1, 0, trace);
	if (!db || !trace)
		return;
	fd_err_t err;
	fd_db_stats_t s0, s1;
	dbtest_q_t q = { .sql = &SQL_GET, .params = { T1, "rt" } };
	int rc = run(db, &q, &err);  /* connects, and prepares in prepared mode */
	CHECK(rc == 0, "%s: warm-up: rc %d (%s)", mode, rc, err.msg);

	dbtest_q_t put = { .sql = &SQL_PUT, .params = { T1, prepared ? "rt-p" : "rt-u", "42" } };
	long off = ftell(trace);
	fd_db_stats(db, &s0);
	rc = run(db, &put, &err);
	fd_db_stats(db, &s1);
	char *wire = trace_since(trace, off);
	if (getenv("DBTEST_VERBOSE"))
		fprintf(stderr, "%s: the wire of a one-statement transaction:\n%s", mode, wire ? wire : "");
	CHECK(rc == 0 && strcmp(put.affected, "1") == 0, "%s: one-statement write: rc %d (%s)", mode, rc,
	      err.msg);
	CHECK(s1.round_trips - s0.round_trips == 1, "%s: %llu round trips for a one-statement transaction",
	      mode, (unsigned long long)(s1.round_trips - s0.round_trips));
	/* On the wire: a single Sync, so a single round trip, carrying BEGIN, the
	 * tenant, the statement and COMMIT. */
	CHECK(wire && count_lines(wire, "F\t", "\tSync") == 1, "%s: one Sync on the wire:\n%s", mode,
	      wire ? wire : "");
	CHECK(wire && count_lines(wire, "B\t", "ReadyForQuery") == 1, "%s: one ReadyForQuery", mode);
	CHECK(wire && strstr(wire, "BEGIN") && strstr(wire, "COMMIT") &&
	      (strstr(wire, "_fd_set_tenant") || strstr(wire, "frontdesk.tenant_id")) &&
	      (prepared ? strstr(wire, "t_put") != NULL : strstr(wire, "INSERT INTO frontdesk.kv") != NULL),
	      "%s: BEGIN, tenant, statement and COMMIT in that pipeline:\n%s", mode, wire ? wire : "");
	free(wire);
	CHECK(dbtest_is(t.admin, prepared ? "SELECT v FROM frontdesk.kv WHERE k = 'rt-p'"
	                                  : "SELECT v FROM frontdesk.kv WHERE k = 'rt-u'", "42"),
	      "%s: committed", mode);

	/* A read gives its rows back from the same single round trip. */
	q = (dbtest_q_t){ .sql = &SQL_GET, .params = { T1, prepared ? "rt-p" : "rt-u" } };
	fd_db_stats(db, &s0);
	rc = run(db, &q, &err);
	fd_db_stats(db, &s1);
	CHECK(rc == 0 && strcmp(q.value, "42") == 0 && s1.round_trips - s0.round_trips == 1,
	      "%s: one-round-trip read: rc %d, \"%s\", %llu trips", mode, rc, q.value,
	      (unsigned long long)(s1.round_trips - s0.round_trips));

	/* Without FD_TX_LAST the COMMIT costs its own trip: 2. */
	q.not_last = true;
	fd_db_stats(db, &s0);
	rc = run(db, &q, &err);
	fd_db_stats(db, &s1);
	CHECK(rc == 0 && s1.round_trips - s0.round_trips == 2, "%s: statement then COMMIT: %llu trips",
	      mode, (unsigned long long)(s1.round_trips - s0.round_trips));
	fd_db_close(db);
	fclose(trace);
}

/* ---- retries ---- */

static void retries(bool prepared)
{
	const char *mode = prepared ? "prepared" : "unprepared";
	fd_db_t *db = open_pool(prepared, 2, 0, NULL);
	if (!db)
		return;
	fd_err_t err;
	const char *codes[] = { "40001", "40P01" };
	for (int i = 0; i < 2; i++) {
		dbtest_exec(t.admin, "ALTER SEQUENCE frontdesk.fail_seq RESTART");
		fd_db_stats_t s0, s1;
		fd_db_stats(db, &s0);
		dbtest_q_t q = { .sql = &SQL_FAIL_FIRST, .params = { "1", codes[i] } };
		int rc = run(db, &q, &err);
		fd_db_stats(db, &s1);
		CHECK(rc == 0 && q.calls == 2 && s1.retries - s0.retries == 1,
		      "%s: %s once is retried: rc %d, %d calls (%s)", mode, codes[i], rc, q.calls, err.msg);
	}
	dbtest_exec(t.admin, "ALTER SEQUENCE frontdesk.fail_seq RESTART");
	dbtest_q_t q = { .sql = &SQL_FAIL_FIRST, .params = { "1000", "40001" } };
	int rc = run(db, &q, &err);
	CHECK(rc == -FD_EABORTED && err.code == FD_EABORTED && q.calls == 5,
	      "%s: always 40001: rc %d after %d calls (%s)", mode, rc, q.calls, err.msg);
	/* Other errors are not retried. */
	dbtest_exec(t.admin, "ALTER SEQUENCE frontdesk.fail_seq RESTART");
	q = (dbtest_q_t){ .sql = &SQL_FAIL_FIRST, .params = { "1", "23505" } };
	rc = run(db, &q, &err);
	CHECK(rc == -FD_EEXISTS && q.calls == 1, "%s: 23505 is not retried: rc %d, %d calls", mode, rc,
	      q.calls);
	fd_db_close(db);
}

/* Two REPEATABLE READ transactions read the same counter, then both write
 * it: the second writer gets a real 40001 and runs again, reading the first
 * one's value. */
struct racer {
	fd_db_t *db;
	pthread_barrier_t *barrier;
	int calls;
	int rc;
	fd_err_t err;
};

static int increment(fd_tx_t *tx, void *arg)
{
	struct racer *r = arg;
	const char *pg[] = { T1, "ctr" };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_GET, pg, 0, &res);
	if (rc < 0)
		return rc;
	char next[16];
	snprintf(next, sizeof(next), "%d", atoi(PQgetvalue(res, 0, 0)) + 1);
	if (r->calls++ == 0)
		pthread_barrier_wait(r->barrier);  /* both have read before either writes */
	const char *ps[] = { T1, "ctr", next };
	return fd_tx_exec(tx, &SQL_SET, ps, FD_TX_LAST, &res);
}

static void *racer_main(void *arg)
{
	struct racer *r = arg;
	fd_tx_opts_t o = { .tenant_id = 1, .isolation = FD_TX_REPEATABLE_READ };
	r->rc = fd_tenant_run_opts(r->db, &o, increment, r, &r->err);
	return NULL;
}

static void serialization_race(bool prepared)
{
	const char *mode = prepared ? "prepared" : "unprepared";
	fd_db_t *db = open_pool(prepared, 2, 0, NULL);
	if (!db)
		return;
	dbtest_exec(t.admin, "DELETE FROM frontdesk.kv WHERE k = 'ctr'");
	dbtest_exec(t.admin, "INSERT INTO frontdesk.kv VALUES (1, 'ctr', '0')");
	pthread_barrier_t b;
	pthread_barrier_init(&b, NULL, 2);
	struct racer r[2] = { { .db = db, .barrier = &b }, { .db = db, .barrier = &b } };
	pthread_t th[2];
	fd_db_stats_t s0, s1;
	fd_db_stats(db, &s0);
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, racer_main, &r[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	fd_db_stats(db, &s1);
	pthread_barrier_destroy(&b);
	CHECK(r[0].rc == 0 && r[1].rc == 0, "%s: both increments committed: %s / %s", mode, r[0].err.msg,
	      r[1].err.msg);
	CHECK(r[0].calls + r[1].calls == 3 && s1.retries - s0.retries == 1,
	      "%s: one ran again after 40001: %d + %d calls", mode, r[0].calls, r[1].calls);
	CHECK(dbtest_is(t.admin, "SELECT v FROM frontdesk.kv WHERE k = 'ctr'", "2"), "%s: no lost update",
	      mode);
	fd_db_close(db);
}

/* ---- a connection lost inside a transaction ---- */

struct killer {
	bool commit_with_it;   /* the statement after the kill carries COMMIT */
	int calls;
	char key[32];
};

/* First run: the backend is terminated between two statements; nothing was
 * committed, so fd_db_run reconnects and runs fn again. */
static int killed_midway(fd_tx_t *tx, void *arg)
{
	struct killer *k = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_PID, NULL, 0, &res);
	if (rc < 0)
		return rc;
	if (k->calls++ == 0) {
		char sql[100];
		snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%s)", PQgetvalue(res, 0, 0));
		dbtest_exec(t.admin, sql);
		usleep(200000);
	}
	const char *p[] = { T1, k->key, "k" };
	return fd_tx_exec(tx, &SQL_PUT, p, k->commit_with_it ? FD_TX_LAST : 0, &res);
}

static void lost_connection(bool prepared)
{
	const char *mode = prepared ? "prepared" : "unprepared";
	fd_db_t *db = open_pool(prepared, 1, 0, NULL);
	if (!db)
		return;
	for (int last = 0; last < 2; last++) {
		struct killer k = { .commit_with_it = last };
		snprintf(k.key, sizeof(k.key), "killed-%s-%d", mode, last);
		fd_err_t err;
		int rc = fd_tenant_run(db, 1, killed_midway, &k, &err);
		CHECK(rc == 0 && k.calls == 2, "%s%s: lost connection, run again: rc %d, %d calls (%s)", mode,
		      last ? " (COMMIT in the lost batch)" : "", rc, k.calls, err.msg);
		char sql[200];
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM frontdesk.kv WHERE k = '%s'", k.key);
		CHECK(dbtest_is(t.admin, sql, "1"), "%s: written once", mode);
	}
	fd_db_close(db);
}

/* ---- deadlines and limits ---- */

static int nested(fd_tx_t *tx, void *arg)
{
	fd_db_t *db = arg;
	dbtest_q_t q = { .sql = &SQL_ONE };
	fd_err_t err;
	int rc = fd_db_run(db, FD_NO_TENANT, dbtest_q_fn, &q, &err);
	return rc == -FD_EUNAVAIL ? 0 : fd_err_set(fd_tx_err(tx), FD_EINTERNAL, "inner run: %d", rc);
}

static void deadlines(void)
{
	fd_db_t *db = open_pool(true, 1, 0, NULL);
	if (!db)
		return;
	fd_err_t err;
	/* A statement still running at the deadline is cancelled. */
	dbtest_q_t q = { .sql = &SQL_SLEEP, .params = { "5" } };
	fd_tx_opts_t o = { .tenant_id = 1, .deadline_ms = dbtest_wall_ms() + 300 };
	long long t0 = dbtest_now_ms();
	int rc = fd_tenant_run_opts(db, &o, dbtest_q_fn, &q, &err);
	long long took = dbtest_now_ms() - t0;
	CHECK(rc == -FD_EDEADLINE && took < 1500, "deadline: rc %d after %lld ms (%s)", rc, took, err.msg);
	q = (dbtest_q_t){ .sql = &SQL_ONE };
	rc = fd_db_run(db, FD_NO_TENANT, dbtest_q_fn, &q, &err);
	CHECK(rc == 0, "the connection is usable after a cancelled statement: rc %d (%s)", rc, err.msg);

	/* Already past: fn never runs. */
	q = (dbtest_q_t){ .sql = &SQL_ONE };
	o.deadline_ms = dbtest_wall_ms() - 1;
	rc = fd_tenant_run_opts(db, &o, dbtest_q_fn, &q, &err);
	CHECK(rc == -FD_EDEADLINE && q.calls == 0, "past deadline: rc %d, %d calls", rc, q.calls);

	/* Pool of one, taken: a second run waits acquire_timeout_ms, then UNAVAILABLE. */
	t0 = dbtest_now_ms();
	rc = fd_db_run(db, FD_NO_TENANT, nested, db, &err);
	took = dbtest_now_ms() - t0;
	CHECK(rc == 0 && took >= 250 && took < 2000, "exhausted pool: rc %d (%s) after %lld ms", rc, err.msg,
	      took);
	fd_db_close(db);

	/* statement_timeout from the pool's options. */
	db = open_pool(false, 1, 200, NULL);
	if (!db)
		return;
	q = (dbtest_q_t){ .sql = &SQL_SLEEP, .params = { "3" } };
	t0 = dbtest_now_ms();
	rc = run(db, &q, &err);
	took = dbtest_now_ms() - t0;
	CHECK(rc == -FD_EDEADLINE && took < 1500, "statement_timeout: rc %d after %lld ms", rc, took);
	fd_db_close(db);

	/* Bad options are refused with their name. */
	fd_db_opts_t bad = { .conninfo = "host=x port", .pool_size = 1 };
	CHECK(fd_db_open(&bad, &err) == NULL && strstr(err.msg, "database_url"), "bad conninfo: %s", err.msg);
	bad = (fd_db_opts_t){ .conninfo = "", .pool_size = 0 };
	CHECK(fd_db_open(&bad, &err) == NULL && strstr(err.msg, "db_pool"), "bad pool size: %s", err.msg);
}

int main(void)
{
	int rc = dbtest_init(&t, "pool");
	if (rc != 0)
		return rc == DBTEST_SKIP ? DBTEST_SKIP : 1;
	rc = setup();
	CHECK(rc == 0, "setup");
	if (rc == 0) {
		for (int p = 1; p >= 0; p--) {
			basics(p);
			round_trips(p);
			retries(p);
			serialization_race(p);
			lost_connection(p);
		}
		deadlines();
	}
	dbtest_done(&t);
	return test_summary();
}
