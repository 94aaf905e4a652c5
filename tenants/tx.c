/* tx.c - tenant-scoped transactions: fd_db_run with the tenant set for
 * row-level security, refusing anything that is not a tenant. */
#include "fd/tenant.h"

int fd_tenant_run_opts(fd_db_t *db, const fd_tx_opts_t *opts, fd_tx_fn fn, void *arg,
                       fd_err_t *err)
{
	if (opts->tenant_id < 0)
		return fd_err_set(err, FD_EINVAL, "tenant_id: %lld is not a tenant (0 or more)",
		                  (long long)opts->tenant_id);
	return fd_db_run_opts(db, opts, fn, arg, err);
}

int fd_tenant_run(fd_db_t *db, int64_t tenant_id, fd_tx_fn fn, void *arg, fd_err_t *err)
{
	fd_tx_opts_t o = { .tenant_id = tenant_id };
	return fd_tenant_run_opts(db, &o, fn, arg, err);
}
