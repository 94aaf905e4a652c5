/* tenant.h - the tenancy layer: tenant-scoped transactions.
 *
 * The one place services get a transaction on tenant data. It sets
 * frontdesk.tenant_id for the transaction (set_config(..., true), sent in the
 * same round trip as the first statement), so row-level security shows and
 * accepts only that tenant's rows; a query on a tenant table outside it fails
 * (SQLSTATE FD000), never returns another tenant's rows. Queries still name
 * tenant_id explicitly (DESIGN.md: RLS is the second wall, not the only one).
 * Platform-level tables alone (tenants, ...) may also be reached with
 * fd_db_run(db, FD_NO_TENANT, ...). */
#ifndef FD_TENANT_H
#define FD_TENANT_H

#include <stdint.h>
#include "fd/db.h"

/* The platform itself: platform admins and the shared node pool. */
#define FD_PLATFORM_TENANT ((int64_t)0)

/* Runs fn in a transaction of tenant_id (>= 0; -FD_EINVAL otherwise, fn not
 * run), with fd_db_run's commit, retry and error rules (fd/db.h). The tenant
 * must come from the verified caller, never from the request alone. */
int fd_tenant_run(fd_db_t *db, int64_t tenant_id, fd_tx_fn fn, void *arg,
                  fd_err_t *err) FD_MUSTCHECK;
/* The same with a deadline, isolation level or read-only; opts->tenant_id
 * must be >= 0. */
int fd_tenant_run_opts(fd_db_t *db, const fd_tx_opts_t *opts, fd_tx_fn fn, void *arg,
                       fd_err_t *err) FD_MUSTCHECK;

#endif
