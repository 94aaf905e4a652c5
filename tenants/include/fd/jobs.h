/* jobs.h - work that runs for every tenant, visiting only the tenants with
 * something due (DESIGN.md, Tenancy).
 *
 * frontdesk.tenant_jobs (migrations/0012_tenant_jobs.sql) holds, per job
 * and tenant, when work is next due. A service records it in the transaction
 * that creates the work (fd_job_due: a line that will expire, a charge left
 * pending); its periodic walk (fd_jobs_run) claims the tenants whose time
 * has come, runs the job for each in transactions of that tenant only, and
 * records what the job says is due next. An idle tenant costs nothing: it
 * has no row due, and the walk's one statement does not see it.
 *
 * Exactness: fd_job_due bumps the row's generation under its row lock, so a
 * claim waits for a transaction that is scheduling work to commit, and work
 * scheduled while a walk runs is never overwritten by that walk's "next"
 * (the tenant is visited again at once instead). A walker that dies leaves
 * its tenants claimed for lease_s; then they are due again. Replicas share
 * the walk: a tenant is claimed by one walker at a time (SKIP LOCKED).
 *
 * Jobs are named "<service>.<job>" ("linesd.expiry"); a service's database
 * role reaches only its own. */
#ifndef FD_JOBS_H
#define FD_JOBS_H

#include <stdint.h>
#include "fd/db.h"

/* Inside a tenant transaction: job has work due for the transaction's
 * tenant at due_s (Unix seconds; an earlier due time already recorded
 * stays). flags as fd_tx_exec's. 0 or -code. */
int fd_job_due(fd_tx_t *tx, const char *job, int64_t due_s, unsigned flags) FD_MUSTCHECK;

/* One tenant's work. It opens its own transactions (fd_tenant_run) and sets
 * *next_due_s to when it is due again (0: nothing due). Returning -code
 * leaves the tenant due; it is tried again after retry_s. */
typedef int (*fd_job_fn)(fd_db_t *db, int64_t tenant, void *arg, int64_t *next_due_s, fd_err_t *err);

typedef struct fd_jobs_opts {
	const char *job;         /* "linesd.expiry" */
	int lease_s;             /* a claim lasts this long (0: 60) */
	int retry_s;             /* after a failed run (0: 10) */
	int max_tenants;         /* claimed per call (0: 100); the rest wait for the next call */
} fd_jobs_opts_t;

/* Claims the tenants whose job is due now and runs fn for each. Returns how
 * many were visited (>= 0), or -code when the claim itself failed. A
 * tenant's failure is logged and counted, not returned. */
int fd_jobs_run(fd_db_t *db, const fd_jobs_opts_t *opts, fd_job_fn fn, void *arg, fd_err_t *err) FD_MUSTCHECK;

#endif
