/* auth_status.c - the status of tenants and accounts as the verifier sees
 * it: read through authd's views, cached for at most status_ttl_ms. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "auth_internal.h"
#include "fd/clock.h"

static const fd_sql_t SQL_STATUS = {
	"fd_auth_status",
	"SELECT t.status, t.slug, a.role, a.username, a.path, a.permissions, a.subtree_suspended"
	"  FROM frontdesk.tenants t"
	"  LEFT JOIN frontdesk.account_refs a ON a.tenant_id = t.id AND a.id = $2"
	" WHERE t.id = $1",
	2,
};

unsigned fd_permissions_parse(const char *arr)
{
	unsigned p = 0;
	if (strstr(arr, "create_subresellers"))
		p |= FD_PERM_CREATE_SUBRESELLERS;
	if (strstr(arr, "create_trials"))
		p |= FD_PERM_CREATE_TRIALS;
	return p;
}

void auth_read_status(PGresult *res, int row, int col, account_status_t *st)
{
	memset(st, 0, sizeof(*st));
	st->tenant_active = strcmp(PQgetvalue(res, row, 0), "active") == 0;
	snprintf(st->tenant_slug, sizeof(st->tenant_slug), "%s", PQgetvalue(res, row, 1));
	if (PQgetisnull(res, row, col))
		return;
	st->found = true;
	const char *role = PQgetvalue(res, row, col);
	st->role = fd_role_parse(role, strlen(role));
	snprintf(st->username, sizeof(st->username), "%s", PQgetvalue(res, row, col + 1));
	snprintf(st->path, sizeof(st->path), "%s", PQgetvalue(res, row, col + 2));
	st->permissions = fd_permissions_parse(PQgetvalue(res, row, col + 3));
	st->suspended = strcmp(PQgetvalue(res, row, col + 4), "t") == 0;
}

struct status_q {
	int64_t tenant, account;
	account_status_t st;
	bool tenant_found;
};

static int status_tx(fd_tx_t *tx, void *arg)
{
	struct status_q *q = arg;
	char t[24], a[24];
	snprintf(t, sizeof(t), "%" PRId64, q->tenant);
	snprintf(a, sizeof(a), "%" PRId64, q->account);
	const char *params[] = { t, a };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_STATUS, params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	q->tenant_found = PQntuples(res) == 1;
	if (q->tenant_found)
		auth_read_status(res, 0, 2, &q->st);
	return 0;
}

static void status_key(int64_t tenant, int64_t account, unsigned char key[32])
{
	memset(key, 0, 32);
	uint64_t mix = (uint64_t)tenant * 0x9e3779b97f4a7c15ULL ^ (uint64_t)account;
	memcpy(key, &mix, 8);
	memcpy(key + 8, &tenant, 8);
	memcpy(key + 16, &account, 8);
}

int auth_account_status(fd_verifier_t *v, int64_t tenant, int64_t account, int64_t deadline_ms,
                          account_status_t *st, fd_err_t *err)
{
	unsigned char key[32];
	status_key(tenant, account, key);
	int64_t now = fd_now_ms();
	if (auth_cache_get(&v->statuses, key, now, st)) {
		STAT(v, status_hits);
		return 0;
	}
	STAT(v, status_misses);
	struct status_q q = { .tenant = tenant, .account = account };
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = deadline_ms, .read_only = true };
	int rc = fd_db_run_opts(v->db, &o, status_tx, &q, err);
	if (rc < 0)
		return rc;
	if (!q.tenant_found)
		memset(&q.st, 0, sizeof(q.st));   /* no tenant: refused like a suspended one */
	q.st.tenant_found = q.tenant_found;
	*st = q.st;
	auth_cache_put(&v->statuses, key, now + v->ttl_ms, st);
	return 0;
}

int auth_apply_status(const account_status_t *st, fd_caller_t *c, fd_err_t *err)
{
	if (!st->tenant_active)
		return auth_unauth(err, "tenant suspended or unknown");
	if (!st->found || st->role != c->role)
		return auth_unauth(err, "account unknown");
	if (st->suspended)
		return auth_unauth(err, "account suspended");
	c->permissions = st->role == FD_ROLE_RESELLER ? st->permissions
	                                              : FD_PERM_CREATE_SUBRESELLERS | FD_PERM_CREATE_TRIALS;
	snprintf(c->path, sizeof(c->path), "%s", st->path);
	snprintf(c->tenant_slug, sizeof(c->tenant_slug), "%s", st->tenant_slug);
	snprintf(c->username, sizeof(c->username), "%s", st->username);
	return 0;
}

int fd_verifier_tenant(fd_verifier_t *v, int64_t tenant, int64_t deadline_ms, bool *active, fd_err_t *err)
{
	account_status_t st;
	int rc = auth_account_status(v, tenant, 0, deadline_ms, &st, err);
	if (rc < 0)
		return rc;
	if (!st.tenant_found)
		return fd_err_set(err, FD_ENOTFOUND, "tenant %" PRId64 " not found", tenant);
	*active = st.tenant_active;
	return 0;
}
