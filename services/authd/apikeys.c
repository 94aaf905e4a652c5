/* apikeys.c - CreateApiKey, ListApiKeys, RevokeApiKey.
 *
 * A key is fdk_<tenant>_<id>_<secret>: the tenant and id find its row before
 * any tenant is known, the secret is 256 random bits, and only a keyed
 * BLAKE2b hash of the whole string is kept (fd/auth.h verifies it). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>
#include "authd.h"
#include "fd/log.h"

#define KEY_COLS                                                                               \
	"k.id, k.account_id, k.name, k.prefix, k.scopes, k.created_by,"                            \
	" floor(extract(epoch FROM k.created_at))::bigint, coalesce(floor(extract(epoch FROM k.expires_at))::bigint, 0)," \
	" coalesce(floor(extract(epoch FROM k.last_used_at))::bigint, 0),"                                \
	" coalesce(floor(extract(epoch FROM k.revoked_at))::bigint, 0)"

static Frontdesk__V1__ApiKey *key_message(fd_arena_t *arena, int64_t tenant, PGresult *res, int row)
{
	Frontdesk__V1__ApiKey *k = fd_arena_zalloc(arena, sizeof(*k));
	if (!k)
		return NULL;
	frontdesk__v1__api_key__init(k);
	k->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
	k->tenant_id = tenant;
	k->reseller_id = strtoll(PQgetvalue(res, row, 1), NULL, 10);
	k->name = fd_arena_strdup(arena, PQgetvalue(res, row, 2));
	k->prefix = fd_arena_strdup(arena, PQgetvalue(res, row, 3));
	k->scopes = scopes_list(arena, fd_scopes_parse(PQgetvalue(res, row, 4)), &k->n_scopes);
	if (!k->name || !k->prefix || !k->scopes)
		return NULL;
	k->created_by = strtoll(PQgetvalue(res, row, 5), NULL, 10);
	k->created_at = ts_col(res, row, 6);
	k->expires_at = ts_col(res, row, 7);
	k->last_used_at = ts_col(res, row, 8);
	k->revoked_at = ts_col(res, row, 9);
	return k;
}

/* ---- CreateApiKey ---- */

static const fd_sql_t SQL_KEY_ACCOUNT = {
	"authd_key_account",
	"SELECT a.role FROM frontdesk.accounts a WHERE a.tenant_id = $1 AND a.id = $2 AND a.path LIKE $3 || '%'",
	3,
};
static const fd_sql_t SQL_NEXT_KEY = {
	"authd_next_key", "SELECT nextval('frontdesk.api_keys_id_seq')", 0,
};
static const fd_sql_t SQL_INSERT_KEY = {
	"authd_insert_api_key",
	"INSERT INTO frontdesk.api_keys AS k (tenant_id, id, account_id, name, prefix, secret_hash, scopes,"
	"                                     created_by, expires_at)"
	" VALUES ($1, $2, $3, $4, $5, decode($6, 'hex'), $7::text[], $8, to_timestamp(nullif($9::bigint, 0)))"
	" RETURNING " KEY_COLS,
	9,
};

typedef struct create_q {
	authd_t *a;
	fd_arena_t *arena;
	const Frontdesk__V1__CreateApiKeyRequest *req;
	const fd_caller_t *c;
	const char *source;
	int64_t tenant, account;
	fd_scopes_t want;            /* 0: the account's */
	unsigned char req_hash[32];
	const char *method;          /* idempotency scope: the method and the caller's account */
	Frontdesk__V1__CreateApiKeyResponse *resp;
	bool account_missing, too_wide, replayed;
} create_q_t;

static int create_tx(fd_tx_t *tx, void *arg)
{
	create_q_t *q = arg;
	const char *key = q->req->idempotency_key;
	PGresult *res;
	int rc;
	q->account_missing = q->too_wide = q->replayed = false;
	if (key[0]) {
		ProtobufCMessage *prev;
		rc = idem_lookup(tx, q->arena, q->tenant, q->method, key, q->req_hash,
		                 &frontdesk__v1__create_api_key_response__descriptor, &prev);
		if (rc < 0)
			return rc;
		if (prev) {
			q->resp = (void *)prev;
			q->replayed = true;
			return 0;
		}
	}
	const char *tenant = id_str(q->arena, q->tenant), *account = id_str(q->arena, q->account);
	const char *ap[] = { tenant, account, caller_subtree(q->c) };
	if ((rc = fd_tx_exec(tx, &SQL_KEY_ACCOUNT, ap, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) == 0) {
		q->account_missing = true;
		return 0;
	}
	const char *rn = PQgetvalue(res, 0, 0);
	fd_scopes_t allowed = role_scopes(fd_role_parse(rn, strlen(rn))) & q->c->scopes;
	fd_scopes_t scopes = q->want ? q->want : allowed;
	if (scopes & ~allowed) {
		q->too_wide = true;
		return 0;
	}
	if ((rc = fd_tx_exec(tx, &SQL_NEXT_KEY, NULL, 0, &res)) < 0)
		return rc;
	const char *id = fd_arena_strdup(q->arena, PQgetvalue(res, 0, 0));
	char secret[44], hh[65];
	new_secret(secret);
	char *prefix = fd_arena_printf(q->arena, "fdk_%s_%s_", tenant, id);
	char *whole = fd_arena_printf(q->arena, "fdk_%s_%s_%s", tenant, id, secret);
	sodium_memzero(secret, sizeof(secret));
	char *names = scopes_text(q->arena, scopes, "");
	char *arr = names ? fd_arena_printf(q->arena, "{%s}", names) : NULL;
	if (!id || !prefix || !whole || !arr)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	unsigned char h[32];
	secret_hash(q->a, whole, strlen(whole), h);
	sodium_bin2hex(hh, sizeof(hh), h, 32);
	const char *kp[] = { tenant, id, account, q->req->name, prefix, hh, arr, id_str(q->arena, q->c->account_id),
		                 id_str(q->arena, q->req->expires_at) };
	if ((rc = fd_tx_exec(tx, &SQL_INSERT_KEY, kp, 0, &res)) < 0)
		return rc;
	if (!(q->resp->api_key = key_message(q->arena, q->tenant, res, 0)))
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	/* The key's metadata only: never the secret, nor its hash. */
	const char *detail[] = { "name", q->req->name, "account", account, "scopes", names, NULL };
	if ((rc = audit_row(tx, q->arena, q->c, NULL, q->source, "api_key.create", "api_key", q->resp->api_key->id,
	                    FD_AUDIT_OK, detail)) < 0)
		return rc;
	if (key[0]) {
		/* A replay answers with the metadata only: the secret is not kept. */
		q->resp->secret = "";
		if ((rc = idem_store(tx, q->tenant, q->method, key, q->req_hash, &q->resp->base)) < 0)
			return rc;
	}
	q->resp->secret = whole;
	return 0;
}

int authd_create_api_key(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__CreateApiKeyRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_err_t *err = fd_call_err(call);
	fd_caller_t c;
	int64_t tenant;
	int rc;
	if ((rc = authd_caller(call, FRONTDESK__V1__SCOPE__SCOPE_API_KEYS_WRITE, &c)) < 0 ||
	    (rc = fd_call_tenant(call, &c, req->tenant_id, &tenant)) < 0)
		return rc;
	if (c.kind != FD_CRED_ACCESS_TOKEN && c.kind != FD_CRED_API_KEY)
		return fd_call_fail(call, FD_EPERM, "API keys are made for people's accounts");
	if ((rc = fd_check_name("name", req->name, 1, 100, err)) < 0 || (rc = fd_check_idem_key(req->idempotency_key, err)) < 0)
		return rc;
	if (req->reseller_id < 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: must not be negative");
	if (req->expires_at < 0 || (req->expires_at && req->expires_at <= time(NULL)))
		return fd_call_fail(call, FD_EINVAL, "expires_at: must be in the future (or 0 for never)");
	if (req->n_scopes > 64)
		return fd_call_fail(call, FD_EINVAL, "scopes: at most 64");
	create_q_t q = { .a = a, .arena = arena, .req = req, .c = &c, .tenant = tenant,
		             .source = fd_audit_source(arena, fd_call_peer(call)) };
	for (size_t i = 0; i < req->n_scopes; i++) {
		if (!fd_scope_name((fd_scope_t)req->scopes[i]))
			return fd_call_fail(call, FD_EINVAL, "scopes[%zu]: unknown scope %d", i, req->scopes[i]);
		q.want |= FD_SCOPE(req->scopes[i]);
	}
	if (q.want & ~c.scopes)
		return fd_call_fail(call, FD_EPERM, "scopes: wider than your own");
	q.account = req->reseller_id ? req->reseller_id : tenant == c.tenant_id ? c.account_id : 0;
	if (!q.account)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: required when acting in another tenant");
	if (!q.source || request_hash(a, arena, msg, q.req_hash) < 0 ||
	    !(q.method = fd_arena_printf(arena, "CreateApiKey/%" PRId64, c.account_id)))
		return OOM(call);
	if (!(q.resp = fd_arena_zalloc(arena, sizeof(*q.resp))))
		return OOM(call);
	frontdesk__v1__create_api_key_response__init(q.resp);
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_call_deadline_ms(call) };
	rc = fd_db_run_opts(a->db, &o, create_tx, &q, err);
	if (rc == -FD_EEXISTS && req->idempotency_key[0])
		rc = fd_db_run_opts(a->db, &o, create_tx, &q, err);
	if (rc < 0)
		return rc;
	if (q.account_missing)
		return fd_call_fail(call, FD_ENOTFOUND, "reseller %" PRId64 " not found", q.account);
	if (q.too_wide)
		return fd_call_fail(call, FD_EPERM, "scopes: wider than the account the key acts as");
	if (!q.replayed)
		fd_info("API key %" PRId64 " created for account %" PRId64, q.resp->api_key->id, q.account);
	*resp = &q.resp->base;
	return 0;
}

/* ---- ListApiKeys, RevokeApiKey ---- */

static const fd_sql_t SQL_LIST_KEYS = {
	"authd_list_api_keys",
	"SELECT " KEY_COLS " FROM frontdesk.api_keys k"
	"  JOIN frontdesk.accounts a ON a.tenant_id = k.tenant_id AND a.id = k.account_id"
	" WHERE k.tenant_id = $1 AND a.path LIKE $2 || '%' AND k.id > $3"
	"   AND ($4::bigint = 0 OR k.account_id = $4)"
	"   AND ($5 OR (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())))"
	" ORDER BY k.id LIMIT $6",
	6,
};
/* The last column says whether this call revoked it (the subquery sees the
 * row as it was before the UPDATE). */
static const fd_sql_t SQL_REVOKE_KEY = {
	"authd_revoke_api_key",
	"UPDATE frontdesk.api_keys k SET revoked_at = coalesce(k.revoked_at, now())"
	"  FROM frontdesk.accounts a"
	" WHERE k.tenant_id = $1 AND k.id = $2 AND a.tenant_id = k.tenant_id AND a.id = k.account_id"
	"   AND a.path LIKE $3 || '%'"
	" RETURNING " KEY_COLS ", (SELECT o.revoked_at IS NULL FROM frontdesk.api_keys o"
	"                           WHERE o.tenant_id = k.tenant_id AND o.id = k.id)",
	3,
};
#define REVOKED_NOW 10           /* the column after KEY_COLS */

typedef struct keys_q {
	fd_arena_t *arena;
	int64_t tenant;
	const fd_sql_t *sql;
	const char *params[6];
	int64_t account;             /* ListApiKeys filter: must be in the subtree */
	const char *subtree;
	const fd_caller_t *c;        /* RevokeApiKey: the actor of its event */
	const char *source;
	Frontdesk__V1__ApiKey **out;
	size_t n;
	bool account_missing;
} keys_q_t;

static int keys_tx(fd_tx_t *tx, void *arg)
{
	keys_q_t *q = arg;
	PGresult *res;
	int rc;
	q->n = 0;
	if (q->account) {
		const char *ap[] = { q->params[0], id_str(q->arena, q->account), q->subtree };
		if ((rc = fd_tx_exec(tx, &SQL_KEY_ACCOUNT, ap, 0, &res)) < 0)
			return rc;
		if ((q->account_missing = PQntuples(res) == 0))
			return 0;
	}
	if ((rc = fd_tx_exec(tx, q->sql, q->params, 0, &res)) < 0)
		return rc;
	int n = PQntuples(res);
	q->out = fd_arena_zalloc(q->arena, sizeof(*q->out) * (size_t)(n ? n : 1));
	if (!q->out)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	for (int i = 0; i < n; i++)
		if (!(q->out[q->n++] = key_message(q->arena, q->tenant, res, i)))
			return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	/* A revocation is recorded once: revoking a revoked key again changes nothing. */
	if (q->sql == &SQL_REVOKE_KEY && n == 1 && strcmp(PQgetvalue(res, 0, REVOKED_NOW), "t") == 0) {
		const char *detail[] = { "name", q->out[0]->name, "account", id_str(q->arena, q->out[0]->reseller_id),
			                     NULL };
		return audit_row(tx, q->arena, q->c, NULL, q->source, "api_key.revoke", "api_key", q->out[0]->id,
		                 FD_AUDIT_OK, detail);
	}
	return 0;
}

int authd_list_api_keys(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListApiKeysRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_err_t *err = fd_call_err(call);
	fd_caller_t c;
	int64_t tenant, after;
	int limit, rc;
	if ((rc = authd_caller(call, FRONTDESK__V1__SCOPE__SCOPE_API_KEYS_READ, &c)) < 0 ||
	    (rc = fd_call_tenant(call, &c, req->tenant_id, &tenant)) < 0 ||
	    (rc = fd_check_page(req->page_size, req->page_token, &limit, &after, err)) < 0)
		return rc;
	if (req->reseller_id < 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: must not be negative");
	keys_q_t q = { .arena = arena, .tenant = tenant, .sql = &SQL_LIST_KEYS, .account = req->reseller_id,
		           .subtree = caller_subtree(&c),
		           .params = { id_str(arena, tenant), caller_subtree(&c), id_str(arena, after),
		                       id_str(arena, req->reseller_id), req->include_revoked ? "true" : "false",
		                       id_str(arena, limit + 1) } };
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	if ((rc = fd_db_run_opts(a->db, &o, keys_tx, &q, err)) < 0)
		return rc;
	if (q.account_missing)
		return fd_call_fail(call, FD_ENOTFOUND, "reseller %" PRId64 " not found", req->reseller_id);
	Frontdesk__V1__ListApiKeysResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__list_api_keys_response__init(r);
	r->api_keys = q.out;
	r->n_api_keys = q.n > (size_t)limit ? (size_t)limit : q.n;
	if (q.n > (size_t)limit && !(r->next_page_token = fd_page_token(arena, q.out[limit - 1]->id)))
		return OOM(call);
	*resp = &r->base;
	return 0;
}

int authd_revoke_api_key(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__RevokeApiKeyRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_err_t *err = fd_call_err(call);
	fd_caller_t c;
	int64_t tenant;
	int rc;
	if ((rc = authd_caller(call, FRONTDESK__V1__SCOPE__SCOPE_API_KEYS_WRITE, &c)) < 0 ||
	    (rc = fd_call_tenant(call, &c, req->tenant_id, &tenant)) < 0)
		return rc;
	if (req->api_key_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "api_key_id: required");
	keys_q_t q = { .arena = arena, .tenant = tenant, .sql = &SQL_REVOKE_KEY, .c = &c,
		           .source = fd_audit_source(arena, fd_call_peer(call)),
		           .params = { id_str(arena, tenant), id_str(arena, req->api_key_id), caller_subtree(&c) } };
	if (!q.source)
		return OOM(call);
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_call_deadline_ms(call) };
	if ((rc = fd_db_run_opts(a->db, &o, keys_tx, &q, err)) < 0)
		return rc;
	if (q.n == 0)
		return fd_call_fail(call, FD_ENOTFOUND, "API key %" PRId64 " not found", req->api_key_id);
	fd_info("API key %" PRId64 " revoked", req->api_key_id);
	Frontdesk__V1__RevokeApiKeyResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__revoke_api_key_response__init(r);
	r->api_key = q.out[0];
	*resp = &r->base;
	return 0;
}
