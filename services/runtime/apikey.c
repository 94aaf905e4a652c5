/* apikey.c - API keys, fdk_<tenant>_<id>_<secret>: the tenant and id find
 * the key's row (frontdesk.api_key_refs, authd's view); the whole string,
 * hashed with the server's key, must match it in constant time. The row and
 * its account's status come together, then live in the API-key cache for
 * status_ttl_ms (or until the key expires). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "auth_internal.h"
#include "fd/clock.h"

static const fd_sql_t SQL_API_KEY = {
	"fd_auth_api_key",
	"SELECT t.status, t.slug, a.role, a.username, a.path, a.permissions, a.subtree_suspended,"
	"       k.account_id, k.secret_hash, k.scopes,"
	"       coalesce(floor(extract(epoch FROM k.expires_at))::bigint, 0), k.revoked_at IS NOT NULL"
	"  FROM frontdesk.api_key_refs k"
	"  JOIN frontdesk.account_refs a ON a.tenant_id = k.tenant_id AND a.id = k.account_id"
	"  JOIN frontdesk.tenants t ON t.id = k.tenant_id"
	" WHERE k.tenant_id = $1 AND k.id = $2",
	2,
};
static const fd_sql_t SQL_TOUCH_KEY = {
	"fd_auth_touch_key", "SELECT frontdesk.touch_api_key($1, $2)", 2,
};

struct key_q {
	fd_verifier_t *v;
	int64_t tenant, id;
	const unsigned char *hash;     /* the presented secret's keyed hash */
	fd_caller_t *out;
	account_status_t st;
	bool found, match, revoked;
};

fd_scopes_t fd_scopes_parse(const char *arr)
{
	/* {a,b,c}: names never need quoting; unknown names are skipped. */
	fd_scopes_t s = 0;
	const char *p = arr + (*arr == '{');
	while (*p && *p != '}') {
		size_t n = strcspn(p, ",}");
		fd_scope_t sc = fd_scope_parse(p, n);
		if (sc)
			s |= FD_SCOPE(sc);
		p += n + (p[n] == ',');
	}
	return s;
}

static int api_key_tx(fd_tx_t *tx, void *arg)
{
	struct key_q *q = arg;
	char t[24], id[24];
	snprintf(t, sizeof(t), "%" PRId64, q->tenant);
	snprintf(id, sizeof(id), "%" PRId64, q->id);
	const char *params[] = { t, id };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_API_KEY, params, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) != 1)
		return 0;
	q->found = true;
	/* bytea in text form: \x and 64 hex digits. */
	char want[2 + 64 + 1] = "\\x";
	sodium_bin2hex(want + 2, sizeof(want) - 2, q->hash, 32);
	const char *have = PQgetvalue(res, 0, 8);
	q->match = PQgetlength(res, 0, 8) == (int)strlen(want) &&
	           sodium_memcmp(have, want, strlen(want)) == 0;
	if (!q->match)
		return 0;
	auth_read_status(res, 0, 2, &q->st);
	fd_caller_t *c = q->out;
	memset(c, 0, sizeof(*c));
	c->kind = FD_CRED_API_KEY;
	c->tenant_id = q->tenant;
	c->api_key_id = q->id;
	c->account_id = strtoll(PQgetvalue(res, 0, 7), NULL, 10);
	c->scopes = fd_scopes_parse(PQgetvalue(res, 0, 9));
	c->expires_at = strtoll(PQgetvalue(res, 0, 10), NULL, 10);
	c->role = q->st.role;
	c->reseller_id = c->role == FD_ROLE_PLATFORM_ADMIN ? 0 : c->account_id;
	q->revoked = strcmp(PQgetvalue(res, 0, 11), "t") == 0;
	if (q->revoked)
		return 0;
	/* Last use, at most once a minute (the function decides). */
	return fd_tx_exec(tx, &SQL_TOUCH_KEY, params, FD_TX_LAST, NULL);
}

/* fdk_<tenant>_<id>_<secret>: the tenant and id find the row; the whole
 * string, hashed with the server's key, must match it. */
int auth_verify_api_key(fd_verifier_t *v, const char *tok, size_t n, int64_t deadline_ms,
                        fd_caller_t *out, fd_err_t *err)
{
	int64_t now = fd_now_ms();
	unsigned char hash[32];
	crypto_generichash(hash, 32, (const unsigned char *)tok, n, v->hash_key, 32);
	if (!auth_cache_get(&v->api_keys, hash, now, out)) {
		STAT(v, api_key_misses);
		int64_t tenant, id;
		char tmp[48];
		const char *p = tok + 4, *u1 = memchr(p, '_', n - 4);
		const char *u2 = u1 ? memchr(u1 + 1, '_', n - (size_t)(u1 + 1 - tok)) : NULL;
		if (!u1 || !u2 || u1 - p >= 20 || u2 - u1 - 1 >= 20 || n - (size_t)(u2 + 1 - tok) != 43)
			return auth_unauth(err, "malformed API key");
		memcpy(tmp, p, (size_t)(u1 - p));
		tmp[u1 - p] = '\0';
		if (auth_parse_id(tmp, &tenant) < 0)
			return auth_unauth(err, "malformed API key");
		memcpy(tmp, u1 + 1, (size_t)(u2 - u1 - 1));
		tmp[u2 - u1 - 1] = '\0';
		if (auth_parse_id(tmp, &id) < 0 || id <= 0)
			return auth_unauth(err, "malformed API key");
		struct key_q q = { .v = v, .tenant = tenant, .id = id, .hash = hash, .out = out };
		fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = deadline_ms };
		int rc = fd_db_run_opts(v->db, &o, api_key_tx, &q, err);
		if (rc < 0)
			return rc == -FD_EUNAVAIL || rc == -FD_EDEADLINE ? rc : auth_unauth(err, "API key cannot be checked");
		if (!q.found || !q.match)
			return auth_unauth(err, "invalid API key");
		if (q.revoked)
			return auth_unauth(err, "API key revoked");
		int rc2 = auth_apply_status(&q.st, out, err);
		if (rc2 < 0)
			return rc2;
		int64_t until = now + v->ttl_ms;
		if (out->expires_at && out->expires_at * 1000 < until)
			until = out->expires_at * 1000;
		auth_cache_put(&v->api_keys, hash, until, out);
	} else {
		STAT(v, api_key_hits);
	}
	if (out->expires_at && out->expires_at <= now / 1000)
		return auth_unauth(err, "API key expired");
	return 0;
}
