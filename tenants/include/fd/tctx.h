/* tctx.h - the tenant context of a call: who is calling (verified), in which
 * tenant the request acts, and the questions every handler asks of that
 * pair. The one prelude of every service's handlers:
 *
 *     fd_tctx_t t;
 *     int rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_LINES_WRITE, req->tenant_id, "lines");
 *     if (rc < 0)
 *         return rc;
 *     ... fd_tctx_run(&t, db, fn, &q) ...
 *
 * The tenant comes from the verified credential only (DESIGN.md, Tenancy):
 * tenant_id 0 is the caller's own; tenant admins and resellers naming
 * another get NOT_FOUND; platform admins and service tokens name one. */
#ifndef FD_TCTX_H
#define FD_TCTX_H

#include <stdbool.h>
#include <stdint.h>
#include "fd/audit.h"
#include "fd/auth.h"
#include "fd/db.h"
#include "fd/rpc.h"

typedef struct fd_tctx {
	fd_call_t *call;
	fd_arena_t *arena;          /* the call's */
	fd_caller_t c;              /* the verified caller */
	int64_t tenant;             /* the tenant the request acts in */
	char tenant_s[24];          /* ... as text, for statement parameters */
} fd_tctx_t;

/* Verifies the caller, requires scope (0: none), resolves the tenant from
 * requested (fd_call_tenant's rules). no_platform: NULL, or what the
 * platform (tenant 0) does not have ("lines"): then a request acting in
 * tenant 0 is INVALID_ARGUMENT "tenant_id: name the tenant (the platform has
 * no lines)". Returns 0, or -code with the call's error set. */
int fd_tctx_begin(fd_tctx_t *t, fd_call_t *call, fd_scope_t scope, int64_t requested,
                  const char *no_platform) FD_MUSTCHECK;

/* A tenant admin, or a platform admin acting in the tenant: sees the whole
 * tenant. */
bool fd_tctx_admin(const fd_tctx_t *t);

/* Runs fn in a transaction of t's tenant, bounded by the call's deadline
 * (fd_tenant_run_opts; opts may be NULL; its tenant_id and deadline are
 * set from t). The call's error receives a failure. */
int fd_tctx_run(const fd_tctx_t *t, fd_db_t *db, const fd_tx_opts_t *opts, fd_tx_fn fn, void *arg) FD_MUSTCHECK;

/* Appends t's caller's action to the audit trail of the transaction's
 * tenant (fd/audit.h), with the call's client address as source. detail:
 * NULL or key, value, ..., NULL. flags as fd_tx_exec's. */
int fd_tctx_audit(fd_tx_t *tx, const fd_tctx_t *t, const char *action, const char *target,
                  const char *const *detail, unsigned flags) FD_MUSTCHECK;

/* ---- the reseller subtree ----
 * Paths are materialised in the tree ("1.5.9.": the ids from the root, each
 * followed by a dot), so "inside X's subtree" is "path starts with X's path". */

/* Whether an account at path, in tenant, is inside what c sees: anything in
 * the tenant for admins acting in it and for services; for a reseller, its
 * own subtree in its own tenant (strictly: below it, not itself). */
bool fd_subtree_contains(const fd_caller_t *c, int64_t tenant, const char *path, bool strictly);
/* The prefix of what c sees, for SQL `path LIKE $n || '%'` (escape-free:
 * paths are digits and dots): "" for admins and services, the reseller's own
 * path otherwise. Borrowed from c. */
const char *fd_subtree_prefix(const fd_caller_t *c);

#endif
