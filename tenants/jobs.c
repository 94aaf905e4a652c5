/* jobs.c - the per-tenant job walk (fd/jobs.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fd/jobs.h"
#include "fd/log.h"
#include "fd/tenant.h"

/* Bumps gen in every case (the row lock is what orders it before a claim). */
static const fd_sql_t SQL_DUE = {
	"fd_job_due",
	"INSERT INTO frontdesk.tenant_jobs AS j (job, tenant, due_at, gen) VALUES ($1, $2, to_timestamp($3), 1)"
	" ON CONFLICT (job, tenant) DO UPDATE"
	"   SET due_at = least(j.due_at, excluded.due_at), gen = j.gen + 1",
	3,
};

/* Oldest due first; rows another walker holds (or a scheduler is writing)
 * are skipped, not waited for. */
static const fd_sql_t SQL_CLAIM = {
	"fd_jobs_claim",
	"UPDATE frontdesk.tenant_jobs j SET claimed_until = now() + make_interval(secs => $2::int)"
	"  FROM (SELECT job, tenant FROM frontdesk.tenant_jobs"
	"         WHERE job = $1 AND due_at <= now() AND (claimed_until IS NULL OR claimed_until <= now())"
	"         ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) d"
	" WHERE j.job = d.job AND j.tenant = d.tenant"
	" RETURNING j.tenant, j.gen",
	3,
	FD_SQL_PLATFORM,
};

/* Work scheduled since the claim (gen moved) keeps the row due as it is
 * (least() with a past due: visited again next time); otherwise the job's
 * own answer stands (NULL: nothing due). */
static const fd_sql_t SQL_DONE = {
	"fd_jobs_done",
	"UPDATE frontdesk.tenant_jobs SET claimed_until = NULL,"
	"   due_at = CASE WHEN gen = $3 THEN to_timestamp($4) ELSE least(due_at, to_timestamp($4)) END"
	" WHERE job = $1 AND tenant = $2",
	4,
	FD_SQL_PLATFORM,
};

static const fd_sql_t SQL_RETRY = {
	"fd_jobs_retry",
	"UPDATE frontdesk.tenant_jobs SET claimed_until = now() + make_interval(secs => $3::int)"
	" WHERE job = $1 AND tenant = $2",
	3,
	FD_SQL_PLATFORM,
};

int fd_job_due(fd_tx_t *tx, const char *job, int64_t due_s, unsigned flags)
{
	int64_t tenant = fd_tx_tenant(tx);
	if (tenant < 0)
		return fd_err_set(fd_tx_err(tx), FD_EINTERNAL, "%s: scheduled outside a tenant transaction", job);
	char t[24], d[24];
	snprintf(t, sizeof(t), "%" PRId64, tenant);
	snprintf(d, sizeof(d), "%" PRId64, due_s);
	const char *params[] = { job, t, d };
	return fd_tx_exec(tx, &SQL_DUE, params, flags, NULL);
}

typedef struct claim {
	const fd_jobs_opts_t *o;
	char lease[16], limit[16];
	int64_t *tenants, *gens;
	int n;
} claim_t;

static int claim_tx(fd_tx_t *tx, void *arg)
{
	claim_t *c = arg;
	const char *params[] = { c->o->job, c->lease, c->limit };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_CLAIM, params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	c->n = 0;
	for (int i = 0; i < PQntuples(res); i++) {
		c->tenants[c->n] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		c->gens[c->n++] = strtoll(PQgetvalue(res, i, 1), NULL, 10);
	}
	return 0;
}

typedef struct finish {
	const char *params[4];
	const fd_sql_t *sql;
} finish_t;

static int finish_tx(fd_tx_t *tx, void *arg)
{
	finish_t *f = arg;
	return fd_tx_exec(tx, f->sql, f->params, FD_TX_LAST, NULL);
}

int fd_jobs_run(fd_db_t *db, const fd_jobs_opts_t *o, fd_job_fn fn, void *arg, fd_err_t *err)
{
	int max = o->max_tenants > 0 ? o->max_tenants : 100;
	claim_t c = { .o = o };
	snprintf(c.lease, sizeof(c.lease), "%d", o->lease_s > 0 ? o->lease_s : 60);
	snprintf(c.limit, sizeof(c.limit), "%d", max);
	c.tenants = calloc((size_t)max, sizeof(*c.tenants));
	c.gens = calloc((size_t)max, sizeof(*c.gens));
	if (!c.tenants || !c.gens) {
		free(c.tenants);
		free(c.gens);
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	}
	int rc = fd_db_run(db, FD_NO_TENANT, claim_tx, &c, err);
	for (int i = 0; rc == 0 && i < c.n; i++) {
		int64_t next = 0;
		fd_err_t e = { 0 };
		int frc = fn(db, c.tenants[i], arg, &next, &e);
		char t[24], g[24], v[24];
		snprintf(t, sizeof(t), "%" PRId64, c.tenants[i]);
		snprintf(g, sizeof(g), "%" PRId64, c.gens[i]);
		finish_t f = { .sql = &SQL_DONE, .params = { o->job, t, g, NULL } };
		if (frc < 0) {
			fd_warn("%s: tenant %" PRId64 ": %s (tried again in %d s)", o->job, c.tenants[i], e.msg,
			        o->retry_s > 0 ? o->retry_s : 10);
			snprintf(v, sizeof(v), "%d", o->retry_s > 0 ? o->retry_s : 10);
			f.sql = &SQL_RETRY;
			f.params[2] = v;
		} else if (next > 0) {
			snprintf(v, sizeof(v), "%" PRId64, next);
			f.params[3] = v;
		}
		fd_err_t fe;
		if (fd_db_run(db, FD_NO_TENANT, finish_tx, &f, &fe) < 0)
			fd_warn("%s: tenant %" PRId64 ": its next due time was not recorded (%s); it is due again"
			        " when its claim ends", o->job, c.tenants[i], fe.msg);
	}
	free(c.tenants);
	free(c.gens);
	return rc < 0 ? rc : c.n;
}
