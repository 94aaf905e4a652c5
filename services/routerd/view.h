/* view.h - what callers see of the table: which nodes (a scope) and the
 * node as the API shows it. Messages are built in the given arena, pointing
 * into the table where they can: use them while the table lock is held
 * (copy, or send, before unlocking). */
#ifndef ROUTERD_VIEW_H
#define ROUTERD_VIEW_H

#include <stdbool.h>
#include <stdint.h>
#include "fd/arena.h"
#include "fd/auth.h"
#include "fd/rpc.h"
#include "regions.h"
#include "table.h"

/* Which nodes a caller may see: its tenant's, the shared pool's when
 * allowed and asked for, or all. */
typedef struct scope {
	int64_t tenant;
	bool shared;                  /* also tenant 0's nodes */
	bool all;
} scope_t;

bool scope_has(const scope_t *s, const rnode_t *n);
/* The scope of a ListNodes / WatchNodes request: all (platform admins and
 * services only), or the tenant the caller names (fd_call_tenant's rules)
 * with the shared pool when asked and allowed (reads t under its lock).
 * 0 or -code with the call's error set. */
int scope_of(fd_call_t *call, rtable_t *t, const fd_caller_t *c, int64_t tenant_id, bool include_shared, bool all,
             scope_t *out) FD_MUSTCHECK;

/* The node as the API shows it (under the table lock); key_prefix only for
 * its owner. NULL when out of memory. */
Frontdesk__V1__Node *node_message(const rtable_t *t, const regions_t *regions, fd_arena_t *a, const rnode_t *n,
                                  bool owner, int64_t now);
/* The node's load as last reported (NULL before the first report, or out
 * of memory). */
Frontdesk__V1__NodeLoad *load_message(fd_arena_t *a, const rnode_t *n);

#endif
