/* check.c - authd's input checks, secrets, idempotency and small conversions.
 * The runtime has already refused non-UTF-8 strings and NUL bytes. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "authd.h"

int check_username(const char *field, const char *s, fd_err_t *err)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return fd_err_set(err, FD_EINVAL, "%s: 1 to 64 characters", field);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '@' || c == '-'))
			return fd_err_set(err, FD_EINVAL, "%s: only letters, digits and . _ @ - are allowed", field);
	}
	return 0;
}

int check_password(const char *field, const char *s, fd_err_t *err)
{
	size_t n = strlen(s);
	if (n < 8)
		return fd_err_set(err, FD_EINVAL, "%s: at least 8 characters", field);
	if (n > 1024)
		return fd_err_set(err, FD_EINVAL, "%s: at most 1024 bytes", field);
	return 0;
}

int check_slug(const char *field, const char *s, fd_err_t *err)
{
	size_t n = strlen(s);
	if (n < 2 || n > 63)
		return fd_err_set(err, FD_EINVAL, "%s: 2 to 63 characters of a-z, 0-9 and -", field);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0 && i + 1 < n);
		if (!ok)
			return fd_err_set(err, FD_EINVAL, "%s: only a-z, 0-9 and - (not first or last)", field);
	}
	return 0;
}

void secret_hash(const authd_t *a, const char *s, size_t n, unsigned char out[32])
{
	crypto_generichash(out, 32, (const unsigned char *)s, n, a->hash_key, 32);
}

void new_secret(char out[44])
{
	unsigned char raw[32];
	randombytes_buf(raw, sizeof(raw));
	(void)fd_b64url_encode(raw, sizeof(raw), out, 44);
	sodium_memzero(raw, sizeof(raw));
}

int64_t ts_col(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

const char *id_str(fd_arena_t *arena, int64_t v)
{
	return fd_arena_printf(arena, "%" PRId64, v);
}

char *scopes_text(fd_arena_t *arena, fd_scopes_t scopes, const char *quote)
{
	char *out = fd_arena_strdup(arena, "");
	for (int s = 1; s <= FD_SCOPE_MAX && out; s++)
		if (scopes & FD_SCOPE(s))
			out = fd_arena_printf(arena, "%s%s%s%s%s", out, out[0] ? "," : "", quote,
			                      fd_scope_name((fd_scope_t)s), quote);
	return out;
}

Frontdesk__V1__Scope *scopes_list(fd_arena_t *arena, fd_scopes_t scopes, size_t *n)
{
	Frontdesk__V1__Scope *v = fd_arena_zalloc(arena, sizeof(*v) * (FD_SCOPE_MAX + 1));
	*n = 0;
	for (int s = 1; s <= FD_SCOPE_MAX && v; s++)
		if (scopes & FD_SCOPE(s))
			v[(*n)++] = (Frontdesk__V1__Scope)s;
	return v;
}

const char *permissions_array(fd_arena_t *arena, unsigned perms)
{
	return fd_arena_printf(arena, "{%s%s%s}",
	                       perms & FD_PERM_CREATE_SUBRESELLERS ? "create_subresellers" : "",
	                       (perms & FD_PERM_CREATE_SUBRESELLERS) && (perms & FD_PERM_CREATE_TRIALS) ? "," : "",
	                       perms & FD_PERM_CREATE_TRIALS ? "create_trials" : "");
}

Frontdesk__V1__Reseller *reseller_message(fd_arena_t *arena, int64_t tenant, PGresult *res, int row)
{
	Frontdesk__V1__Reseller *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return NULL;
	frontdesk__v1__reseller__init(r);
	r->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
	r->tenant_id = tenant;
	r->parent_id = strtoll(PQgetvalue(res, row, 1), NULL, 10);
	r->username = fd_arena_strdup(arena, PQgetvalue(res, row, 2));
	r->display_name = fd_arena_strdup(arena, PQgetvalue(res, row, 3));
	const char *role = PQgetvalue(res, row, 4);
	r->role = (Frontdesk__V1__Role)fd_role_parse(role, strlen(role));
	bool own = strcmp(PQgetvalue(res, row, 5), "suspended") == 0;
	bool eff = strcmp(PQgetvalue(res, row, 12), "t") == 0;
	r->status = own ? FRONTDESK__V1__RESELLER_STATUS__RESELLER_STATUS_SUSPENDED
	                : FRONTDESK__V1__RESELLER_STATUS__RESELLER_STATUS_ACTIVE;
	r->effective_status = eff ? FRONTDESK__V1__RESELLER_STATUS__RESELLER_STATUS_SUSPENDED
	                          : FRONTDESK__V1__RESELLER_STATUS__RESELLER_STATUS_ACTIVE;
	unsigned perms = fd_permissions_parse(PQgetvalue(res, row, 6));
	r->permissions = fd_arena_zalloc(arena, 2 * sizeof(*r->permissions));
	if (!r->username || !r->display_name || !r->permissions)
		return NULL;
	if (perms & FD_PERM_CREATE_SUBRESELLERS)
		r->permissions[r->n_permissions++] = FRONTDESK__V1__RESELLER_PERMISSION__RESELLER_PERMISSION_CREATE_SUBRESELLERS;
	if (perms & FD_PERM_CREATE_TRIALS)
		r->permissions[r->n_permissions++] = FRONTDESK__V1__RESELLER_PERMISSION__RESELLER_PERMISSION_CREATE_TRIALS;
	int depth = -1;
	for (const char *p = PQgetvalue(res, row, 7); *p; p++)
		depth += *p == '.';
	r->depth = depth;
	r->notes = fd_arena_strdup(arena, PQgetvalue(res, row, 8));
	r->created_at = ts_col(res, row, 9);
	r->updated_at = ts_col(res, row, 10);
	r->last_login_at = ts_col(res, row, 11);
	return r->notes ? r : NULL;
}

/* ---- idempotency ---- */

static const fd_sql_t SQL_IDEM_GET = {
	"authd_idem_get",
	"SELECT request_hash, response FROM frontdesk.auth_idempotency"
	" WHERE tenant_id = $1 AND method = $2 AND key = $3",
	3,
};
static const fd_sql_t SQL_IDEM_PUT = {
	"authd_idem_put",
	"INSERT INTO frontdesk.auth_idempotency (tenant_id, method, key, request_hash, response)"
	" VALUES ($1, $2, $3, decode($4, 'hex'), decode($5, 'hex'))",
	5,
};

int request_hash(const authd_t *a, fd_arena_t *arena, const ProtobufCMessage *req, unsigned char out[32])
{
	size_t n = protobuf_c_message_get_packed_size(req);
	unsigned char *buf = fd_arena_alloc(arena, n ? n : 1);
	if (!buf)
		return -FD_EEXHAUSTED;
	protobuf_c_message_pack(req, buf);
	crypto_generichash(out, 32, buf, n, a->hash_key, 32);
	sodium_memzero(buf, n);
	return 0;
}

int idem_lookup(fd_tx_t *tx, fd_arena_t *arena, int64_t tenant, const char *method, const char *key,
                const unsigned char req_hash[32], const ProtobufCMessageDescriptor *desc,
                ProtobufCMessage **replay)
{
	*replay = NULL;
	const char *params[] = { id_str(arena, tenant), method, key };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_IDEM_GET, params, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 0)
		return 0;
	size_t hn = 0, rn = 0;
	unsigned char *h = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 0), &hn);
	unsigned char *r = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 1), &rn);
	if (!h || !r || hn != 32 || sodium_memcmp(h, req_hash, 32) != 0) {
		PQfreemem(h);
		PQfreemem(r);
		return fd_err_set(fd_tx_err(tx), FD_EPRECOND,
		                  "idempotency_key: already used with a different request");
	}
	*replay = protobuf_c_message_unpack(desc, &arena->pb, rn, r);
	PQfreemem(h);
	PQfreemem(r);
	if (!*replay)
		return fd_err_set(fd_tx_err(tx), FD_EINTERNAL, "stored answer for this idempotency_key is unreadable");
	return 0;
}

int idem_store(fd_tx_t *tx, int64_t tenant, const char *method, const char *key,
               const unsigned char req_hash[32], const ProtobufCMessage *resp)
{
	size_t n = protobuf_c_message_get_packed_size(resp);
	unsigned char *buf = malloc(n ? n : 1);
	char *hex = malloc(2 * n + 1);
	char hh[65], ts[24];
	if (!buf || !hex) {
		free(buf);
		free(hex);
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	}
	protobuf_c_message_pack(resp, buf);
	sodium_bin2hex(hex, 2 * n + 1, buf, n);
	sodium_bin2hex(hh, sizeof(hh), req_hash, 32);
	snprintf(ts, sizeof(ts), "%" PRId64, tenant);
	const char *params[] = { ts, method, key, hh, hex };
	int rc = fd_tx_exec(tx, &SQL_IDEM_PUT, params, 0, NULL);
	free(buf);
	free(hex);
	return rc;
}

int authd_caller(fd_call_t *call, fd_scope_t s, fd_caller_t *c)
{
	int rc = fd_call_caller(call, c);
	if (rc < 0)
		return rc;
	return s ? fd_caller_need(c, s, fd_call_err(call)) : 0;
}
