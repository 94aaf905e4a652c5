/* enums.h - authd's enums as its tables store them (migrations/0002_auth.sql,
 * 0006_audit.sql, 0018_hosts.sql): one two-way table per enum, read both ways by enum_text
 * and enum_value, instead of strcmp chains. */
#ifndef AUTHD_ENUMS_H
#define AUTHD_ENUMS_H

#include <stddef.h>
#include "fd/arena.h"
#include "fd/status.h"
#include "frontdesk/v1/auth.pb-c.h"

#include "fd/enums.h"

typedef fd_enum_name_t enum_name_t;   /* { value, name }, ending with { 0, NULL } */

/* TenantStatus <-> tenants.status: "active", "suspended". */
extern const enum_name_t TENANT_STATUS_NAMES[];
/* ResellerStatus <-> accounts.status: "active", "suspended". */
extern const enum_name_t ACCOUNT_STATUS_NAMES[];
/* AuditOutcome <-> audit_events.outcome: "ok", "failed", "refused", "limited". */
extern const enum_name_t AUDIT_OUTCOME_NAMES[];
/* HostStatus <-> brand_hosts.status: "pending", "approved", "rejected". */
extern const enum_name_t HOST_STATUS_NAMES[];
/* ResellerPermission <-> accounts.permissions' elements: "create_subresellers",
 * "create_trials". Each is also an FD_PERM_* bit (permission_bit). */
extern const enum_name_t PERMISSION_NAMES[];

/* The word of value in t (static), NULL when t does not list it; the value
 * of a word, otherwise when t does not list it (fd/enums.h). */
static inline const char *enum_text(const enum_name_t *t, int value)
{
	return fd_enum_name(t, value);
}
static inline int enum_value(const enum_name_t *t, const char *text, int otherwise)
{
	return fd_enum_value(t, text, otherwise);
}

/* ---- reseller permissions: the contract's values, FD_PERM_* bits, text ---- */

/* The FD_PERM_* bit of a ResellerPermission; 0 when it is not one. */
unsigned permission_bit(int value);
/* The permissions a request lists, as bits: 0, or -FD_EINVAL naming
 * field[i] for a value that is no permission. */
int permissions_of_request(const char *field, const Frontdesk__V1__ResellerPermission *v, size_t n,
                           unsigned *out, fd_err_t *err) FD_MUSTCHECK;
/* The permissions in bits as their names joined by sep ("," for an audit
 * detail), in PERMISSION_NAMES' order; when array, as a text[] literal
 * ("{create_subresellers,create_trials}"). In the arena; NULL when out of
 * memory. */
const char *permissions_text(fd_arena_t *arena, unsigned bits, bool array);
/* The permissions in bits as the contract's list (in the arena, *n set);
 * NULL when out of memory. */
Frontdesk__V1__ResellerPermission *permissions_list(fd_arena_t *arena, unsigned bits, size_t *n);

#endif
