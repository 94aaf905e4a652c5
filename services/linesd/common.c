/* common.c - what linesd's handlers share: the request prelude, idempotency
 * records, reseller visibility, Postgres array text and line passwords. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "linesd.h"
#include "fd/audit.h"
#include "fd/wire.h"

/* ---- the prelude ---- */

int lines_run(const fd_tctx_t *t, fd_tx_fn fn, void *arg)
{
	return fd_tctx_run(t, linesd_of(t->call)->db, NULL, fn, arg);
}

int lines_run_ro(const fd_tctx_t *t, fd_tx_fn fn, void *arg)
{
	static const fd_tx_opts_t ro = { .read_only = true };
	return fd_tctx_run(t, linesd_of(t->call)->db, &ro, fn, arg);
}

const char *lines_i64(const fd_tctx_t *t, int64_t v)
{
	return fd_arena_printf(t->arena, "%" PRId64, v);
}

int lines_idem(const fd_tctx_t *r, const char *method, const char *key, bool required, const char **out)
{
	*out = NULL;
	int rc = fd_check_idem_key(key, fd_call_err(r->call));
	if (rc < 0)
		return rc;
	if (!key[0])
		return required ? fd_call_fail(r->call, FD_EINVAL, "idempotency_key: required for this call") : 0;
	*out = r->c.kind == FD_CRED_SERVICE_TOKEN
	       ? fd_arena_printf(r->arena, "%s/svc:%s/%s", method, r->c.service, key)
	       : fd_arena_printf(r->arena, "%s/acct:%" PRId64 "/%s", method, r->c.account_id, key);
	return *out ? 0 : OOM(r->call);
}

/* ---- idempotency of the catalog's creates ---- */

static const fd_sql_t SQL_IDEM_FIND = {
	"linesd_idem_find",
	"SELECT encode(request_hash, 'hex'), result_id FROM frontdesk.lines_idempotency"
	" WHERE tenant_id = $1 AND idem_key = $2",
	2,
};
static const fd_sql_t SQL_IDEM_STORE = {
	"linesd_idem_store",
	"INSERT INTO frontdesk.lines_idempotency (tenant_id, idem_key, request_hash, result_id)"
	" VALUES ($1, $2, decode($3, 'hex'), $4)",
	4,
};

int lidem_find(fd_tx_t *tx, const fd_tctx_t *r, const char *idem, const char *hash, int64_t *id)
{
	const char *params[] = { r->tenant_s, idem };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_IDEM_FIND, params, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 0)
		return 0;
	if (strcmp(PQgetvalue(res, 0, 0), hash) != 0)
		return fd_err_set(fd_tx_err(tx), FD_EPRECOND, "idempotency_key: already used with a different request");
	*id = col_i64(res, 0, 1);
	return 1;
}

int lidem_store(fd_tx_t *tx, const fd_tctx_t *r, const char *idem, const char *hash, int64_t id)
{
	const char *params[] = { r->tenant_s, idem, hash, lines_i64(r, id) };
	if (!params[3])
		return TX_OOM(tx);
	return fd_tx_exec(tx, &SQL_IDEM_STORE, params, 0, NULL);
}

/* ---- the reseller tree ---- */

static const fd_sql_t SQL_RESELLER = {
	"linesd_reseller",
	"SELECT path, coalesce(subtree_suspended, false) FROM frontdesk.account_refs"
	" WHERE tenant_id = $1 AND id = $2 AND role IN ('reseller', 'tenant_admin')",
	2,
};

int lines_reseller(fd_tx_t *tx, const fd_tctx_t *r, int64_t id, const char **path, bool *suspended)
{
	const char *params[] = { r->tenant_s, lines_i64(r, id) };
	if (!params[1])
		return TX_OOM(tx);
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_RESELLER, params, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) != 1 || !fd_subtree_contains(&r->c, r->tenant, PQgetvalue(res, 0, 0), false))
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "reseller %" PRId64 " not found", id);
	if (!(*path = fd_arena_strdup(r->arena, PQgetvalue(res, 0, 0))))
		return TX_OOM(tx);
	if (suspended)
		*suspended = col_bool(res, 0, 1);
	return 0;
}

/* ---- input checks ---- */

int check_ids(fd_call_t *call, const char *field, const int64_t *v, size_t n, size_t max)
{
	if (n > max)
		return fd_call_fail(call, FD_EINVAL, "%s: at most %zu entries", field, max);
	for (size_t i = 0; i < n; i++) {
		if (v[i] <= 0)
			return fd_call_fail(call, FD_EINVAL, "%s: ids are positive", field);
		for (size_t j = 0; j < i; j++)
			if (v[j] == v[i])
				return fd_call_fail(call, FD_EINVAL, "%s: %" PRId64 " is listed twice", field, v[i]);
	}
	return 0;
}

int check_formats(fd_call_t *call, const char *field, const Frontdesk__V1__OutputFormat *v, size_t n)
{
	if (n > 3)
		return fd_call_fail(call, FD_EINVAL, "%s: at most 3 formats", field);
	for (size_t i = 0; i < n; i++) {
		if (v[i] < FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_TS || v[i] > FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_RTMP)
			return fd_call_fail(call, FD_EINVAL, "%s: TS, M3U8 or RTMP", field);
		for (size_t j = 0; j < i; j++)
			if (v[j] == v[i])
				return fd_call_fail(call, FD_EINVAL, "%s: a format is listed twice", field);
	}
	return 0;
}

/* ---- line passwords ---- */

void line_password_hash(const linesd_t *l, int64_t tenant, const char *password, char hex[65])
{
	unsigned char h[32];
	crypto_generichash_state st;
	crypto_generichash_init(&st, l->pw_hash_key, sizeof(l->pw_hash_key), sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)&tenant, sizeof(tenant));
	crypto_generichash_update(&st, (const unsigned char *)password, strlen(password));
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(hex, 65, h, sizeof(h));
	sodium_memzero(h, sizeof(h));
}

const char *line_password_seal(const fd_tctx_t *r, const char *password)
{
	size_t n = strlen(password), blen = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + n;
	unsigned char *b = fd_arena_alloc(r->arena, blen);
	char *hex = fd_arena_alloc(r->arena, 2 * blen + 1);
	if (!b || !hex)
		return NULL;
	randombytes_buf(b, crypto_secretbox_NONCEBYTES);
	crypto_secretbox_easy(b + crypto_secretbox_NONCEBYTES, (const unsigned char *)password, n, b,
	                      linesd_of(r->call)->pw_box_key);
	sodium_bin2hex(hex, 2 * blen + 1, b, blen);
	return hex;
}

char *line_password_open(const linesd_t *l, fd_arena_t *a, const char *box_hex)
{
	/* bytea in hex output: "\x...." */
	if (box_hex[0] == '\\' && box_hex[1] == 'x')
		box_hex += 2;
	size_t hl = strlen(box_hex), blen = hl / 2;
	if (blen < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES)
		return NULL;
	unsigned char *b = fd_arena_alloc(a, blen);
	if (!b || sodium_hex2bin(b, blen, box_hex, hl, NULL, NULL, NULL) != 0)
		return NULL;
	size_t n = blen - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
	/* The opened password is wiped when the call's arena is freed. */
	char *pw = fd_arena_secret(a, n + 1);
	if (!pw || crypto_secretbox_open_easy((unsigned char *)pw, b + crypto_secretbox_NONCEBYTES,
	                                      blen - crypto_secretbox_NONCEBYTES, b, l->pw_box_key) != 0)
		return NULL;
	pw[n] = '\0';
	return pw;
}

void random_text(char *out, size_t n)
{
	static const char alphabet[] = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
	for (size_t i = 0; i < n; i++)
		out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
	out[n] = '\0';
}

/* ---- the key lock ---- */

static const fd_sql_t SQL_IDEM_LOCK = {
	"linesd_idem_lock",
	"SELECT pg_advisory_xact_lock(hashtextextended('linesd.idem/' || $1::text || '/' || $2::text, 0))",
	2,
};

int lidem_lock(fd_tx_t *tx, const fd_tctx_t *r, const char *idem)
{
	const char *params[] = { r->tenant_s, idem };
	return fd_tx_exec(tx, &SQL_IDEM_LOCK, params, 0, NULL);
}
