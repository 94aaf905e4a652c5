/* context.c - the tenant context of a call (fd/tctx.h). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "fd/service.h"
#include "fd/tctx.h"
#include "fd/tenant.h"

int fd_tctx_begin(fd_tctx_t *t, fd_call_t *call, fd_scope_t scope, int64_t requested, const char *no_platform)
{
	memset(t, 0, sizeof(*t));
	t->call = call;
	t->arena = fd_call_arena(call);
	int rc = fd_call_caller(call, &t->c);
	if (rc < 0 || (scope && (rc = fd_caller_need(&t->c, scope, fd_call_err(call))) < 0) ||
	    (rc = fd_call_tenant(call, &t->c, requested, &t->tenant)) < 0)
		return rc;
	if (no_platform && t->tenant == FD_PLATFORM_TENANT)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: name the tenant (the platform has no %s)", no_platform);
	snprintf(t->tenant_s, sizeof(t->tenant_s), "%" PRId64, t->tenant);
	return 0;
}

bool fd_tctx_admin(const fd_tctx_t *t)
{
	return t->c.role == FD_ROLE_TENANT_ADMIN || t->c.role == FD_ROLE_PLATFORM_ADMIN;
}

int fd_tctx_run(const fd_tctx_t *t, fd_db_t *db, const fd_tx_opts_t *opts, fd_tx_fn fn, void *arg)
{
	fd_tx_opts_t o = opts ? *opts : (fd_tx_opts_t){ 0 };
	o.tenant_id = t->tenant;
	o.deadline_ms = fd_call_deadline_ms(t->call);
	return fd_tenant_run_opts(db, &o, fn, arg, fd_call_err(t->call));
}

int fd_tctx_audit(fd_tx_t *tx, const fd_tctx_t *t, const char *action, const char *target,
                  const char *const *detail, unsigned flags)
{
	fd_audit_t ev = { .actor = &t->c, .action = action, .target = target, .detail = detail,
		              .source = fd_audit_source(t->arena, fd_call_peer(t->call)) };
	if (!ev.source)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return fd_audit_add(tx, t->arena, &ev, flags);
}

bool fd_subtree_contains(const fd_caller_t *c, int64_t tenant, const char *path, bool strictly)
{
	if (c->role != FD_ROLE_RESELLER)
		return c->role == FD_ROLE_PLATFORM_ADMIN || c->role == FD_ROLE_SERVICE || c->tenant_id == tenant;
	size_t n = strlen(c->path);
	return c->tenant_id == tenant && n > 0 && strncmp(path, c->path, n) == 0 && (!strictly || path[n] != '\0');
}

const char *fd_subtree_prefix(const fd_caller_t *c)
{
	return c->role == FD_ROLE_RESELLER ? c->path : "";
}
