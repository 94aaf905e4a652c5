/* test_tenancy.c - the subtree rule (tenants/fd/tctx.h), from a table: who
 * sees an account at which path in which tenant. */
#include <inttypes.h>
#include <string.h>
#include "fd/tctx.h"
#include "test.h"

typedef struct {
	fd_role_t role;
	int64_t caller_tenant;
	const char *caller_path;
	int64_t tenant;            /* where the account is */
	const char *path;          /* the account's path */
	bool strictly;
	bool want;
} subtree_case_t;

#define R FD_ROLE_RESELLER
#define TA FD_ROLE_TENANT_ADMIN
#define PA FD_ROLE_PLATFORM_ADMIN
#define SV FD_ROLE_SERVICE

static const subtree_case_t cases[] = {
	{ R, 3, "1.5.", 3, "1.5.", false, true },        /* itself */
	{ R, 3, "1.5.", 3, "1.5.", true, false },        /* itself, strictly below: no */
	{ R, 3, "1.5.", 3, "1.5.9.", true, true },       /* a child */
	{ R, 3, "1.5.", 3, "1.5.9.12.", false, true },   /* a grandchild */
	{ R, 3, "1.5.", 3, "1.", false, false },         /* its parent */
	{ R, 3, "1.5.", 3, "1.6.", false, false },       /* a sibling */
	{ R, 3, "1.5.", 3, "1.55.", false, false },      /* a prefix of digits is not a prefix of ids */
	{ R, 3, "1.5.", 4, "1.5.9.", false, false },     /* the same path in another tenant */
	{ R, 3, "", 3, "1.", false, false },             /* no path: sees nothing */
	{ TA, 3, "1.", 3, "1.5.9.", false, true },       /* a tenant admin: its whole tenant */
	{ TA, 3, "1.", 4, "1.", false, false },          /* ... and no other */
	{ PA, 0, "", 7, "1.2.", false, true },           /* a platform admin acting in a tenant */
	{ SV, 0, "", 7, "1.2.", false, true },           /* a service token */
};

int main(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const subtree_case_t *k = &cases[i];
		fd_caller_t c;
		memset(&c, 0, sizeof(c));
		c.role = k->role;
		c.tenant_id = k->caller_tenant;
		strcpy(c.path, k->caller_path);
		bool got = fd_subtree_contains(&c, k->tenant, k->path, k->strictly);
		CHECK(got == k->want, "case %zu: role %d path %s sees %" PRId64 ":%s%s: %d", i, k->role, k->caller_path,
		      k->tenant, k->path, k->strictly ? " strictly" : "", got);
		const char *prefix = fd_subtree_prefix(&c);
		CHECK(strcmp(prefix, k->role == R ? k->caller_path : "") == 0, "case %zu: prefix '%s'", i, prefix);
	}
	return test_summary();
}
