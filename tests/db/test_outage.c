/* test_outage.c - PostgreSQL stopped under an open pool: calls fail fast
 * with UNAVAILABLE and the pool reports unhealthy; started again, calls
 * succeed within 5 s and it is healthy, with no new pool. Runs its own
 * throwaway cluster (pg_ctl), since the shared fixture must not be stopped. */
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "dbtest.h"
#include "test.h"

static char dir[] = "/tmp/fdoutageXXXXXX";
static char datadir[64], logfile[80], pgopts[160];
static const char *bindir;
static const char *PORT = "5499";   /* unix socket only, in our own folder */

/* Runs a PostgreSQL program (as the postgres user when we are root). */
static int pgrun(const char *prog, const char *const *args)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", bindir, prog);
	const char *argv[24];
	int n = 0;
	if (geteuid() == 0) {
		argv[n++] = "runuser";
		argv[n++] = "-u";
		argv[n++] = "postgres";
		argv[n++] = "--";
	}
	argv[n++] = path;
	for (int i = 0; args[i] && n < 23; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		if (!freopen("/dev/null", "w", stdout))
			_exit(127);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int pg_start(void)
{
	const char *a[] = { "-D", datadir, "-o", pgopts, "-l", logfile, "-w", "-s", "start", NULL };
	return pgrun("pg_ctl", a);
}

static int pg_stop(void)
{
	const char *a[] = { "-D", datadir, "-m", "fast", "-w", "-s", "stop", NULL };
	return pgrun("pg_ctl", a);
}

static int select_one(fd_db_t *db, fd_err_t *err)
{
	static const fd_sql_t one = { "t_one", "SELECT 1", 0, FD_SQL_PLATFORM };
	dbtest_q_t q = { .sql = &one };
	int rc = fd_db_run(db, FD_NO_TENANT, dbtest_q_fn, &q, err);
	return rc == 0 && strcmp(q.value, "1") != 0 ? -FD_EINTERNAL : rc;
}

/* Both connections of the pool at once: the inner run takes the second. */
static int both(fd_tx_t *tx, void *arg)
{
	fd_err_t err;
	int rc = select_one(arg, &err);
	if (rc < 0)
		return fd_err_set(fd_tx_err(tx), err.code, "inner: %s", err.msg);
	static const fd_sql_t one = { "t_one_outer", "SELECT 1", 0, FD_SQL_PLATFORM };
	PGresult *res;
	return fd_tx_exec(tx, &one, NULL, FD_TX_LAST, &res);
}

static void outage(void)
{
	char ci[200];
	snprintf(ci, sizeof(ci), "host=%s port=%s dbname=postgres user=postgres", dir, PORT);
	fd_err_t err;
	fd_db_opts_t o = { .conninfo = ci, .pool_size = 2, .prepared = true,
	                   .application_name = "test_outage", .connect_timeout_ms = 2000 };
	fd_db_t *db = fd_db_open(&o, &err);
	CHECK(db != NULL, "open: %s", err.msg);
	if (!db)
		return;
	CHECK(!fd_db_healthy(db), "not healthy before any attempt");
	int rc = fd_db_run(db, FD_NO_TENANT, both, db, &err);
	CHECK(rc == 0, "both connections work: rc %d (%s)", rc, err.msg);
	CHECK(fd_db_healthy(db) && fd_db_ping(db), "healthy while up");

	/* Down: calls fail fast, health says so. */
	CHECK(pg_stop() == 0, "pg_ctl stop");
	long long t0 = dbtest_now_ms();
	rc = select_one(db, &err);
	long long took = dbtest_now_ms() - t0;
	CHECK(rc == -FD_EUNAVAIL && took < 2000, "call during the outage: rc %d after %lld ms (%s)", rc, took,
	      err.msg);
	CHECK(!fd_db_healthy(db), "unhealthy after a failed call");
	for (int i = 0; i < 5; i++) {
		t0 = dbtest_now_ms();
		rc = select_one(db, &err);
		took = dbtest_now_ms() - t0;
		CHECK(rc == -FD_EUNAVAIL && took < 2000, "call %d during the outage: rc %d after %lld ms", i, rc,
		      took);
	}
	CHECK(!fd_db_ping(db) && !fd_db_healthy(db), "ping during the outage");

	/* Up again: calls alone bring it back (no ping in between), within 5 s. */
	CHECK(pg_start() == 0, "pg_ctl start");
	t0 = dbtest_now_ms();
	rc = -1;
	while (rc != 0 && dbtest_now_ms() - t0 < 5000) {
		rc = select_one(db, &err);
		if (rc != 0)
			usleep(100000);
	}
	took = dbtest_now_ms() - t0;
	CHECK(rc == 0 && took < 5000, "calls succeed again: rc %d after %lld ms (%s)", rc, took, err.msg);
	CHECK(fd_db_healthy(db), "healthy after a call succeeded");
	rc = fd_db_run(db, FD_NO_TENANT, both, db, &err);
	CHECK(rc == 0, "both connections reopened: rc %d (%s)", rc, err.msg);

	/* A restart between two calls: the stale connections are noticed before
	 * use, so the very first call after it succeeds. */
	CHECK(pg_stop() == 0 && pg_start() == 0, "pg_ctl restart");
	rc = fd_db_run(db, FD_NO_TENANT, both, db, &err);
	CHECK(rc == 0, "first calls after a restart: rc %d (%s)", rc, err.msg);

	/* The health thread's view: ping alone follows the outage both ways. */
	CHECK(pg_stop() == 0, "pg_ctl stop (2)");
	t0 = dbtest_now_ms();
	bool up = true;
	while (up && dbtest_now_ms() - t0 < 3000) {
		up = fd_db_ping(db);
		if (up)
			usleep(100000);
	}
	CHECK(!up && !fd_db_healthy(db), "ping saw the outage after %lld ms", dbtest_now_ms() - t0);
	CHECK(pg_start() == 0, "pg_ctl start (2)");
	t0 = dbtest_now_ms();
	while (!up && dbtest_now_ms() - t0 < 5000) {
		usleep(200000);
		up = fd_db_ping(db);   /* the service runs this every second */
	}
	took = dbtest_now_ms() - t0;
	CHECK(up && fd_db_healthy(db) && took < 5000, "ping healthy again after %lld ms", took);
	rc = select_one(db, &err);
	CHECK(rc == 0, "and calls work: rc %d (%s)", rc, err.msg);
	fd_db_close(db);
}

int main(void)
{
	bindir = getenv("FD_PG_BINDIR");
	if (!bindir || !*bindir)
		bindir = "/usr/lib/postgresql/15/bin";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	chmod(dir, 0755);
	if (geteuid() == 0) {
		struct passwd *pw = getpwnam("postgres");
		if (!pw || chown(dir, pw->pw_uid, pw->pw_gid) < 0) {
			fprintf(stderr, "test_outage: cannot give %s to the postgres user\n", dir);
			return 1;
		}
	}
	snprintf(datadir, sizeof(datadir), "%s/data", dir);
	snprintf(logfile, sizeof(logfile), "%s/log", dir);
	snprintf(pgopts, sizeof(pgopts), "-p %s -k %s -c listen_addresses='' -c fsync=off", PORT, dir);
	const char *init[] = { "-D", datadir, "-A", "trust", "-U", "postgres", "-N", NULL };
	int rc = pgrun("initdb", init);
	CHECK(rc == 0, "initdb in %s (bindir %s): exit %d", datadir, bindir, rc);
	if (rc == 0) {
		rc = pg_start();
		CHECK(rc == 0, "pg_ctl start: exit %d (see %s)", rc, logfile);
	}
	if (rc == 0)
		outage();
	pg_stop();
	const char *rm[] = { "rm", "-rf", dir, NULL };
	pid_t pid = fork();
	if (pid == 0) {
		execvp("rm", (char *const *)rm);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return test_summary();
}
