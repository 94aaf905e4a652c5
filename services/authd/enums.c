/* enums.c - the two-way tables of authd's enums (enums.h). */
#include <stdbool.h>
#include <string.h>
#include "enums.h"
#include "fd/auth.h"

#define TS(x) FRONTDESK__V1__TENANT_STATUS__TENANT_STATUS_##x
#define RS(x) FRONTDESK__V1__RESELLER_STATUS__RESELLER_STATUS_##x
#define AO(x) FRONTDESK__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_##x
#define HS(x) FRONTDESK__V1__HOST_STATUS__HOST_STATUS_##x
#define RP(x) FRONTDESK__V1__RESELLER_PERMISSION__RESELLER_PERMISSION_##x

const enum_name_t TENANT_STATUS_NAMES[] = {
	{ TS(ACTIVE), "active" },
	{ TS(SUSPENDED), "suspended" },
	{ 0, NULL },
};

const enum_name_t ACCOUNT_STATUS_NAMES[] = {
	{ RS(ACTIVE), "active" },
	{ RS(SUSPENDED), "suspended" },
	{ 0, NULL },
};

const enum_name_t AUDIT_OUTCOME_NAMES[] = {
	{ AO(OK), "ok" },
	{ AO(FAILED), "failed" },
	{ AO(REFUSED), "refused" },
	{ AO(LIMITED), "limited" },
	{ 0, NULL },
};

const enum_name_t HOST_STATUS_NAMES[] = {
	{ HS(PENDING), "pending" },
	{ HS(APPROVED), "approved" },
	{ HS(REJECTED), "rejected" },
	{ 0, NULL },
};

const enum_name_t PERMISSION_NAMES[] = {
	{ RP(CREATE_SUBRESELLERS), "create_subresellers" },
	{ RP(CREATE_TRIALS), "create_trials" },
	{ 0, NULL },
};

/* PERMISSION_NAMES' third column, in the same order. */
static const unsigned PERMISSION_BITS[] = { FD_PERM_CREATE_SUBRESELLERS, FD_PERM_CREATE_TRIALS };

unsigned permission_bit(int value)
{
	for (size_t i = 0; PERMISSION_NAMES[i].name; i++)
		if (PERMISSION_NAMES[i].value == value)
			return PERMISSION_BITS[i];
	return 0;
}

int permissions_of_request(const char *field, const Frontdesk__V1__ResellerPermission *v, size_t n,
                           unsigned *out, fd_err_t *err)
{
	*out = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned bit = permission_bit((int)v[i]);
		if (!bit)
			return fd_err_set(err, FD_EINVAL, "%s[%zu]: unknown permission %d", field, i, v[i]);
		*out |= bit;
	}
	return 0;
}

const char *permissions_text(fd_arena_t *arena, unsigned bits, bool array)
{
	char *out = fd_arena_strdup(arena, "");
	for (size_t i = 0; PERMISSION_NAMES[i].name && out; i++)
		if (bits & PERMISSION_BITS[i])
			out = fd_arena_printf(arena, "%s%s%s", out, out[0] ? "," : "", PERMISSION_NAMES[i].name);
	return out && array ? fd_arena_printf(arena, "{%s}", out) : out;
}

Frontdesk__V1__ResellerPermission *permissions_list(fd_arena_t *arena, unsigned bits, size_t *n)
{
	size_t all = sizeof(PERMISSION_BITS) / sizeof(PERMISSION_BITS[0]);
	Frontdesk__V1__ResellerPermission *v = fd_arena_zalloc(arena, sizeof(*v) * all);
	*n = 0;
	for (size_t i = 0; i < all && v; i++)
		if (bits & PERMISSION_BITS[i])
			v[(*n)++] = (Frontdesk__V1__ResellerPermission)PERMISSION_NAMES[i].value;
	return v;
}
