/* janitor.c - periodic maintenance, on one clock (sweep_ms): linesd's three
 * per-tenant jobs, each visiting only the tenants with something due
 * (fd/jobs.h), each tenant's work in its own transactions.
 *
 *   linesd.session_timeout  sessions past their timeout, of expired lines or
 *                           of suspended resellers end; old sessions and
 *                           failure counters go
 *   linesd.expiry           lines past their expiry are announced (also
 *                           those without sessions), their sessions end
 *   linesd.reconcile        charges left pending are settled (charges.c)
 *
 * Each job says when it is due next; the work's own transactions record it
 * too (fd_job_due): a line's expiry when a charge is applied (charges.c), a
 * pending charge when it is prepared (lines.c), live sessions from the
 * heartbeat flusher and at session start (sessions.c). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include "charges.h"
#include "linesd.h"
#include "fd/tenant.h"
#include "store.h"
#include "fd/jobs.h"
#include "fd/log.h"

typedef struct job_q {
	linesd_t *l;
	char tenant[24], timeout[24], sweep_s[24], reconcile_after[24];
	int64_t next;
} job_q_t;

int64_t janitor_period_s(const linesd_t *l)
{
	return l->cfg->sweep_ms < 1000 ? 1 : (l->cfg->sweep_ms + 999) / 1000;
}

static void job_params(job_q_t *q, linesd_t *l, int64_t tenant)
{
	q->l = l;
	q->next = 0;
	snprintf(q->tenant, sizeof(q->tenant), "%" PRId64, tenant);
	snprintf(q->timeout, sizeof(q->timeout), "%" PRId64, l->cfg->session_timeout);
	snprintf(q->sweep_s, sizeof(q->sweep_s), "%" PRId64, janitor_period_s(l));
	snprintf(q->reconcile_after, sizeof(q->reconcile_after), "%" PRId64, l->cfg->reconcile_after);
}

/* The due time a statement answered (one bigint, 0: none). */
static int64_t due_of(PGresult *res)
{
	return PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) ? col_i64(res, 0, 0) : 0;
}

/* ---- linesd.session_timeout ---- */

static int sessions_tx(fd_tx_t *tx, void *arg)
{
	job_q_t *q = arg;
	const char *p[] = { q->tenant, q->timeout, q->sweep_s };
	PGresult *res;
	int rc;
	if ((rc = fd_tx_exec(tx, &SQL_SWEEP_TIMEOUTS, p, 0, NULL)) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_SWEEP_EXPIRED, p, 0, NULL)) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_SWEEP_SUSPENDED, p, 0, NULL)) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_SWEEP_OLD, p, 0, NULL)) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_SESSIONS_NEXT, p, FD_TX_LAST, &res)) < 0)
		return rc;
	q->next = due_of(res);
	return 0;
}

static int session_timeout_job(fd_db_t *db, int64_t tenant, void *arg, int64_t *next_due_s, fd_err_t *err)
{
	job_q_t q;
	job_params(&q, arg, tenant);
	int rc = fd_tenant_run(db, tenant, sessions_tx, &q, err);
	*next_due_s = q.next;
	return rc;
}

/* ---- linesd.expiry ---- */

static int expiry_tx(fd_tx_t *tx, void *arg)
{
	job_q_t *q = arg;
	const char *p[] = { q->tenant };
	PGresult *res;
	int rc;
	if ((rc = fd_tx_exec(tx, &SQL_SWEEP_EXPIRED, p, 0, NULL)) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_EXPIRY_NEXT, p, FD_TX_LAST, &res)) < 0)
		return rc;
	q->next = due_of(res);
	return 0;
}

static int expiry_job(fd_db_t *db, int64_t tenant, void *arg, int64_t *next_due_s, fd_err_t *err)
{
	job_q_t q;
	job_params(&q, arg, tenant);
	int rc = fd_tenant_run(db, tenant, expiry_tx, &q, err);
	*next_due_s = q.next;
	return rc;
}

/* ---- linesd.reconcile ---- */

static int reconcile_next_tx(fd_tx_t *tx, void *arg)
{
	job_q_t *q = arg;
	const char *p[] = { q->tenant, q->reconcile_after };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_RECONCILE_NEXT, p, FD_TX_LAST, &res);
	if (rc == 0)
		q->next = due_of(res);
	return rc;
}

static int reconcile_job(fd_db_t *db, int64_t tenant, void *arg, int64_t *next_due_s, fd_err_t *err)
{
	job_q_t q;
	job_params(&q, arg, tenant);
	int rc = charges_reconcile(q.l, tenant, err);
	if (rc == 0)
		rc = fd_tenant_run(db, tenant, reconcile_next_tx, &q, err);
	*next_due_s = q.next;
	return rc;
}

/* ---- the thread ---- */

static const struct {
	const char *job;
	fd_job_fn fn;
} jobs[] = {
	{ JOB_SESSION_TIMEOUT, session_timeout_job },
	{ JOB_EXPIRY, expiry_job },
	{ JOB_RECONCILE, reconcile_job },
};

static void walk(linesd_t *l)
{
	for (size_t i = 0; i < sizeof(jobs) / sizeof(jobs[0]) && !l->stopping; i++) {
		fd_jobs_opts_t o = { .job = jobs[i].job, .retry_s = (int)janitor_period_s(l) };
		fd_err_t err = { 0 };
		if (fd_jobs_run(l->db, &o, jobs[i].fn, l, &err) < 0)
			fd_warn("%s: the due tenants could not be claimed: %s", jobs[i].job, err.msg);
	}
}

static void *janitor_main(void *arg)
{
	linesd_t *l = arg;
	pthread_mutex_lock(&l->jobs_mu);
	while (!l->stopping) {
		pthread_mutex_unlock(&l->jobs_mu);
		walk(l);
		pthread_mutex_lock(&l->jobs_mu);
		struct timespec until = fd_real_after(l->cfg->sweep_ms);
		while (!l->stopping && !l->jobs_wake &&
		       pthread_cond_timedwait(&l->jobs_cv, &l->jobs_mu, &until) != ETIMEDOUT)
			;
		l->jobs_wake = false;
	}
	pthread_mutex_unlock(&l->jobs_mu);
	return NULL;
}

typedef struct soon_q {
	int64_t due_s;
} soon_q_t;

static int soon_tx(fd_tx_t *tx, void *arg)
{
	soon_q_t *q = arg;
	return fd_job_due(tx, JOB_SESSION_TIMEOUT, q->due_s, FD_TX_LAST);
}

void janitor_soon(linesd_t *l, int64_t tenant)
{
	soon_q_t q = { .due_s = fd_now_s() };
	fd_err_t err = { 0 };
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_real_ms() + 5000 };
	if (fd_tenant_run_opts(l->db, &o, soon_tx, &q, &err) < 0) {
		fd_warn("tenant %" PRId64 ": its sessions' sweep is not brought forward (%s); it runs in its period",
		        tenant, err.msg);
		return;
	}
	if (!l->jobs_init)
		return;
	pthread_mutex_lock(&l->jobs_mu);
	l->jobs_wake = true;
	pthread_cond_broadcast(&l->jobs_cv);
	pthread_mutex_unlock(&l->jobs_mu);
}

int janitor_start(linesd_t *l, fd_err_t *err)
{
	pthread_mutex_init(&l->jobs_mu, NULL);
	pthread_cond_init(&l->jobs_cv, NULL);
	l->jobs_init = true;
	if (pthread_create(&l->jobs, NULL, janitor_main, l) != 0)
		return fd_err_set(err, FD_EINTERNAL, "cannot start the janitor thread");
	l->jobs_started = true;
	return 0;
}

void janitor_stop(linesd_t *l)
{
	if (l->jobs_started) {
		pthread_mutex_lock(&l->jobs_mu);
		l->stopping = true;
		pthread_cond_broadcast(&l->jobs_cv);
		pthread_mutex_unlock(&l->jobs_mu);
		pthread_join(l->jobs, NULL);
		l->jobs_started = false;
	}
	if (l->jobs_init) {
		pthread_mutex_destroy(&l->jobs_mu);
		pthread_cond_destroy(&l->jobs_cv);
		l->jobs_init = false;
	}
}
