/* test_jobs.c - the per-tenant job walk (tenants/fd/jobs.h) as linesd's
 * role sees it: only tenants with work due are visited, each once even with
 * two walkers at once; work scheduled while a walk runs is not lost; a
 * failed tenant is retried later, a dead walker's claim runs out; one
 * service cannot see or write another's jobs. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "dbtest.h"
#include "fd/jobs.h"
#include "fd/tenant.h"
#include "test.h"

#define JOB "linesd.test_walk"
#define NTENANTS 40

static dbtest_t T;
static int64_t first_tenant;

/* What a walk saw: per tenant, how many visits. */
typedef struct seen {
	pthread_mutex_t mu;
	int visits[NTENANTS + 1];
	int64_t next_due;            /* what fn answers */
	int fail_tenant;             /* index that fails (0: none) */
	bool schedule_during;        /* fn schedules more work for its tenant meanwhile */
	fd_db_t *db;
} seen_t;

static int idx(int64_t tenant) { return (int)(tenant - first_tenant) + 1; }

typedef struct due_q {
	const char *job;
	int64_t due;
} due_q_t;

static int due_tx(fd_tx_t *tx, void *arg)
{
	due_q_t *q = arg;
	return fd_job_due(tx, q->job, q->due, FD_TX_LAST);
}

static int schedule(fd_db_t *db, int64_t tenant, const char *job, int64_t due, fd_err_t *err)
{
	due_q_t q = { job, due };
	return fd_tenant_run(db, tenant, due_tx, &q, err);
}

static int visit(fd_db_t *db, int64_t tenant, void *arg, int64_t *next, fd_err_t *err)
{
	(void)db;
	seen_t *s = arg;
	int i = idx(tenant);
	pthread_mutex_lock(&s->mu);
	s->visits[i]++;
	pthread_mutex_unlock(&s->mu);
	if (i == s->fail_tenant)
		return fd_err_set(err, FD_EUNAVAIL, "test: tenant %d fails", i);
	if (s->schedule_during) {
		fd_err_t e;
		if (schedule(s->db, tenant, JOB, (int64_t)time(NULL) + 3600, &e) < 0)
			return fd_err_set(err, e.code, "%s", e.msg);
	}
	*next = s->next_due;
	return 0;
}

static char *row(int64_t tenant, const char *what)
{
	char sql[256];
	snprintf(sql, sizeof(sql), "SELECT %s FROM frontdesk.tenant_jobs WHERE job = '%s' AND tenant = %" PRId64,
	         what, JOB, tenant);
	return dbtest_value(T.admin, sql);
}

static int total(const seen_t *s)
{
	int n = 0;
	for (int i = 1; i <= NTENANTS; i++)
		n += s->visits[i];
	return n;
}

typedef struct walker {
	fd_db_t *db;
	seen_t *s;
	int visited;
} walker_t;

static void *walk(void *arg)
{
	walker_t *w = arg;
	fd_jobs_opts_t o = { .job = JOB, .max_tenants = 3 };
	fd_err_t err;
	for (int rc; (rc = fd_jobs_run(w->db, &o, visit, w->s, &err)) > 0;)
		w->visited += rc;
	return NULL;
}

int main(void)
{
	int rc = dbtest_init(&T, "jobs");
	if (rc != 0)
		return rc == DBTEST_SKIP ? DBTEST_SKIP : 1;
	if (dbtest_migrate(&T) < 0 ||
	    dbtest_exec(T.admin, "INSERT INTO frontdesk.tenants (slug, name)"
	                         " SELECT 'jt' || i, 'T' || i FROM generate_series(1, 40) i") < 0) {
		CHECK(false, "setup");
		dbtest_done(&T);
		return test_summary();
	}
	char *ft = dbtest_value(T.admin, "SELECT min(id) FROM frontdesk.tenants WHERE slug LIKE 'jt%'");
	first_tenant = ft ? atoll(ft) : 1;
	free(ft);
	fd_err_t err = { 0 };
	fd_db_opts_t o = { .conninfo = dbtest_url(&T, "frontdesk_linesd"), .pool_size = 4, .prepared = true,
	                   .application_name = "test_jobs" };
	fd_db_t *db = fd_db_open(&o, &err), *db2 = fd_db_open(&o, &err);
	CHECK(db && db2, "open: %s", err.msg);
	if (!db || !db2)
		goto out;
	int64_t now = (int64_t)time(NULL);
	seen_t s = { .mu = PTHREAD_MUTEX_INITIALIZER, .db = db };

	/* Idle tenants cost nothing: only the due one is visited. */
	int64_t a = first_tenant, b = first_tenant + 1, c = first_tenant + 2;
	CHECK(schedule(db, a, JOB, now - 10, &err) == 0, "schedule a: %s", err.msg);
	CHECK(schedule(db, b, JOB, now + 3600, &err) == 0, "schedule b: %s", err.msg);
	fd_jobs_opts_t jo = { .job = JOB };
	rc = fd_jobs_run(db, &jo, visit, &s, &err);
	CHECK(rc == 1 && s.visits[idx(a)] == 1 && total(&s) == 1, "one tenant due, one visited: rc %d (%s)", rc,
	      err.msg);
	char *v = row(a, "coalesce(due_at::text, 'none')");
	CHECK(v && strcmp(v, "none") == 0, "a has nothing due after its visit: %s", v ? v : "?");
	free(v);
	rc = fd_jobs_run(db, &jo, visit, &s, &err);
	CHECK(rc == 0 && total(&s) == 1, "nothing due: nobody visited (rc %d)", rc);

	/* An earlier due time wins; a later one does not push it back. */
	CHECK(schedule(db, b, JOB, now + 7200, &err) == 0 && schedule(db, b, JOB, now + 60, &err) == 0, "b again");
	v = row(b, "extract(epoch FROM due_at)::bigint");
	char want[32];
	snprintf(want, sizeof(want), "%" PRId64, now + 60);
	CHECK(v && strcmp(v, want) == 0, "b due at the earliest time: %s want %s", v ? v : "?", want);
	free(v);

	/* fn's answer becomes the next due time. */
	CHECK(schedule(db, c, JOB, now - 1, &err) == 0, "schedule c");
	s.next_due = now + 300;
	rc = fd_jobs_run(db, &jo, visit, &s, &err);
	v = row(c, "extract(epoch FROM due_at)::bigint");
	snprintf(want, sizeof(want), "%" PRId64, now + 300);
	CHECK(rc == 1 && v && strcmp(v, want) == 0, "c's next due is fn's answer: rc %d, %s", rc, v ? v : "?");
	free(v);

	/* Work scheduled while the walk ran is not overwritten: still due, visited again. */
	s.next_due = 0;
	s.schedule_during = true;
	CHECK(schedule(db, a, JOB, now - 5, &err) == 0, "schedule a again");
	rc = fd_jobs_run(db, &jo, visit, &s, &err);
	s.schedule_during = false;
	v = row(a, "due_at <= now()");
	CHECK(rc == 1 && v && strcmp(v, "t") == 0, "work scheduled during the visit keeps a due: rc %d, %s", rc,
	      v ? v : "?");
	free(v);
	int before = s.visits[idx(a)];
	rc = fd_jobs_run(db, &jo, visit, &s, &err);
	CHECK(rc == 1 && s.visits[idx(a)] == before + 1, "and a is visited again at once (rc %d)", rc);

	/* A failing tenant is retried later, not at once; the others are not held up. */
	s.fail_tenant = idx(c);
	dbtest_exec(T.admin, "UPDATE frontdesk.tenant_jobs SET due_at = now() - interval '1 s' WHERE job = '" JOB "'");
	rc = fd_jobs_run(db, &jo, visit, &s, &err);
	CHECK(rc == 3, "a, b, c visited (c fails): rc %d", rc);
	v = row(c, "due_at <= now() AND claimed_until > now() + interval '5 s'");
	CHECK(v && strcmp(v, "t") == 0, "c stays due and waits retry_s: %s", v ? v : "?");
	free(v);
	rc = fd_jobs_run(db, &jo, visit, &s, &err);
	CHECK(rc == 0, "c is not retried at once: rc %d", rc);
	s.fail_tenant = 0;

	/* A walker that died: its claim runs out, then the tenant is due again. */
	dbtest_exec(T.admin, "UPDATE frontdesk.tenant_jobs SET claimed_until = now() - interval '1 s'"
	                     " WHERE job = '" JOB "'");
	rc = fd_jobs_run(db, &jo, visit, &s, &err);
	CHECK(rc == 1, "c visited once its claim ran out: rc %d", rc);

	/* Two walkers at once over 40 due tenants: each visited exactly once. */
	memset(s.visits, 0, sizeof(s.visits));
	for (int i = 0; i < NTENANTS; i++)
		CHECK(schedule(db, first_tenant + i, JOB, now - 1 - i, &err) == 0, "schedule %d", i);
	walker_t w1 = { db, &s, 0 }, w2 = { db2, &s, 0 };
	pthread_t t1, t2;
	pthread_create(&t1, NULL, walk, &w1);
	pthread_create(&t2, NULL, walk, &w2);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	int once = 0;
	for (int i = 1; i <= NTENANTS; i++)
		once += s.visits[i] == 1;
	CHECK(once == NTENANTS && w1.visited + w2.visited == NTENANTS,
	      "40 tenants, each visited once by two walkers: %d once, %d + %d visits", once, w1.visited, w2.visited);

	/* Outside a tenant transaction, scheduling is refused. */
	due_q_t q = { JOB, now };
	rc = fd_db_run(db, FD_NO_TENANT, due_tx, &q, &err);
	CHECK(rc == -FD_EINTERNAL, "fd_job_due without a tenant: rc %d (%s)", rc, err.msg);

	/* Another service's role neither sees nor writes linesd's jobs. */
	fd_db_opts_t ro = { .conninfo = dbtest_url(&T, "frontdesk_routerd"), .pool_size = 1, .prepared = true };
	fd_db_t *rdb = fd_db_open(&ro, &err);
	CHECK(rdb != NULL, "open as routerd: %s", err.msg);
	if (rdb) {
		fd_jobs_opts_t rj = { .job = JOB };
		dbtest_exec(T.admin, "UPDATE frontdesk.tenant_jobs SET due_at = now() - interval '1 s', claimed_until = NULL"
		                     " WHERE job = '" JOB "'");
		int before_all = total(&s);
		rc = fd_jobs_run(rdb, &rj, visit, &s, &err);
		CHECK(rc == 0 && total(&s) == before_all, "routerd's walk of a linesd job sees nothing: rc %d", rc);
		rc = schedule(rdb, a, JOB, now, &err);
		CHECK(rc == -FD_EPERM, "routerd cannot schedule a linesd job: rc %d (%s)", rc, err.msg);
		rc = schedule(rdb, a, "routerd.test_walk", now, &err);
		CHECK(rc == 0, "routerd schedules its own: rc %d (%s)", rc, err.msg);
		fd_db_close(rdb);
	}
	/* Job names are checked. */
	rc = schedule(db, a, "linesd.Bad Name", now, &err);
	CHECK(rc < 0, "a bad job name is refused: rc %d", rc);
out:
	fd_db_close(db);
	fd_db_close(db2);
	dbtest_done(&T);
	return test_summary();
}
