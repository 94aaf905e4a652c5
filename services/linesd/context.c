/* context.c - what linesd's handlers share: running in the call's tenant
 * (fd/tctx.h), the edge's prelude, reseller visibility. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "linesd.h"
#include "rules.h"
#include "store.h"

/* ---- the prelude ---- */

int lines_run(const fd_tctx_t *t, fd_tx_fn fn, void *arg)
{
	return fd_tctx_run(t, linesd_of(t->call)->db, NULL, fn, arg);
}

int lines_run_ro(const fd_tctx_t *t, fd_tx_fn fn, void *arg)
{
	static const fd_tx_opts_t ro = { .read_only = true };
	return fd_tctx_run(t, linesd_of(t->call)->db, &ro, fn, arg);
}

const char *lines_i64(const fd_tctx_t *t, int64_t v)
{
	return fd_arena_printf(t->arena, "%" PRId64, v);
}

int lines_service_caller(fd_call_t *call, fd_caller_t *c, fd_scope_t scope)
{
	int rc = fd_call_caller(call, c);
	if (rc < 0 || (rc = fd_caller_need(c, scope, fd_call_err(call))) < 0)
		return rc;
	if (c->kind != FD_CRED_SERVICE_TOKEN || c->role != FD_ROLE_SERVICE)
		return fd_call_fail(call, FD_EPERM, "%s: for the HTTP edge's service token only", fd_scope_name(scope));
	return 0;
}

/* The edge's tenant context: fd_tctx_begin's (the verified caller, its
 * scope, the tenant it names), except that a suspended tenant is an answer
 * (TENANT_SUSPENDED, *active false), not the error fd_call_tenant makes of
 * it for a service. The edge always names the tenant (of the host name).
 * service_only: the caller must be a service token. */
static int edge_begin(fd_tctx_t *t, fd_call_t *call, fd_scope_t scope, bool service_only, int64_t tenant_id,
                      bool *active)
{
	memset(t, 0, sizeof(*t));
	t->call = call;
	t->arena = fd_call_arena(call);
	int rc = service_only ? lines_service_caller(call, &t->c, scope) : fd_call_caller(call, &t->c);
	if (rc < 0 || (!service_only && (rc = fd_caller_need(&t->c, scope, fd_call_err(call))) < 0))
		return rc;
	if (tenant_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: required (the tenant of the host name the player used)");
	lines_tctx_tenant(t, tenant_id);
	rules_tenant_t rt;
	if ((rc = rules_tenant(t, linesd_of(call), NULL, NULL, &rt)) < 0)
		return rc;
	*active = rt.active;
	fd_call_set_log_tenant(call, tenant_id);
	return 0;
}

int lines_edge_begin(fd_tctx_t *t, fd_call_t *call, int64_t tenant_id, bool *active)
{
	return edge_begin(t, call, FRONTDESK__V1__SCOPE__SCOPE_PLAYBACK_AUTHORIZE, false, tenant_id, active);
}

int lines_edge_service_begin(fd_tctx_t *t, fd_call_t *call, fd_scope_t scope, int64_t tenant_id, bool *active)
{
	return edge_begin(t, call, scope, true, tenant_id, active);
}

void lines_tctx_tenant(fd_tctx_t *t, int64_t tenant_id)
{
	t->tenant = tenant_id;
	snprintf(t->tenant_s, sizeof(t->tenant_s), "%" PRId64, tenant_id);
}

int lines_reseller(fd_tx_t *tx, const fd_tctx_t *r, int64_t id, const char **path, bool *suspended)
{
	const char *params[] = { r->tenant_s, lines_i64(r, id) };
	if (!params[1])
		return TX_OOM(tx);
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_RESELLER, params, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) != 1 || !fd_subtree_contains(&r->c, r->tenant, PQgetvalue(res, 0, RESELLER_COL_PATH), false))
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "reseller %" PRId64 " not found", id);
	if (!(*path = fd_arena_strdup(r->arena, PQgetvalue(res, 0, RESELLER_COL_PATH))))
		return TX_OOM(tx);
	if (suspended)
		*suspended = col_bool(res, 0, RESELLER_COL_SUSPENDED);
	return 0;
}
