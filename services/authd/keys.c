/* keys.c - authd's ES256 signing keys: made on first start, sealed in the
 * database with FRONTDESK_KEY_ENCRYPTION_KEY so every replica signs with the
 * same key, rotated after FRONTDESK_SIGNING_KEY_ROTATE seconds (the old key
 * keeps verifying until its last token has expired); and the two methods that
 * hand out what they make: GetVerificationKeys, IssueServiceToken. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include "authd.h"
#include "fd/log.h"

struct signing_key {
	char kid[32];
	char *private_pem;        /* sodium_malloc'd: never swapped out, wiped when freed */
	size_t private_len;
	int64_t created_at;
};

static void key_free(signing_key_t *k)
{
	if (!k)
		return;
	if (k->private_pem)
		sodium_free(k->private_pem);
	free(k);
}

static const fd_sql_t SQL_SIGNING = {
	"authd_signing_key",
	"SELECT kid, private_sealed, floor(extract(epoch FROM created_at))::bigint"
	"  FROM frontdesk.signing_keys WHERE retire_at IS NULL",
	0,
};
static const fd_sql_t SQL_INSERT_KEY = {
	"authd_insert_key",
	"INSERT INTO frontdesk.signing_keys (kid, private_sealed, public_key_pem)"
	" VALUES ($1, decode($2, 'hex'), $3) ON CONFLICT DO NOTHING",
	3,
};
static const fd_sql_t SQL_RETIRE_KEY = {
	"authd_retire_key",
	"UPDATE frontdesk.signing_keys SET retire_at = now() + make_interval(secs => $2::int)"
	" WHERE kid = $1 AND retire_at IS NULL",
	2,
};
static const fd_sql_t SQL_DROP_OLD_KEYS = {
	"authd_drop_old_keys",
	"DELETE FROM frontdesk.signing_keys WHERE retire_at < now() - interval '1 day'",
	0,
};

/* ---- making and sealing a key ---- */

typedef struct new_key {
	char kid[32];
	char *sealed_hex;
	char *public_pem;
} new_key_t;

static int make_key(authd_t *a, new_key_t *nk, fd_err_t *err)
{
	int rc = -1;
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	BIO *priv = BIO_new(BIO_s_mem()), *pub = BIO_new(BIO_s_mem());
	char *pem = NULL;
	long plen;
	memset(nk, 0, sizeof(*nk));
	if (!pk || !priv || !pub || !PEM_write_bio_PrivateKey(priv, pk, NULL, NULL, 0, NULL, NULL) ||
	    !PEM_write_bio_PUBKEY(pub, pk))
		goto out;
	plen = BIO_get_mem_data(priv, &pem);
	size_t clen = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + (size_t)plen;
	unsigned char *sealed = malloc(clen);
	nk->sealed_hex = malloc(2 * clen + 1);
	char *pubpem;
	long publen = BIO_get_mem_data(pub, &pubpem);
	nk->public_pem = strndup(pubpem, (size_t)publen);
	if (!sealed || !nk->sealed_hex || !nk->public_pem) {
		free(sealed);
		goto out;
	}
	randombytes_buf(sealed, crypto_secretbox_NONCEBYTES);
	crypto_secretbox_easy(sealed + crypto_secretbox_NONCEBYTES, (const unsigned char *)pem,
	                      (unsigned long long)plen, sealed, a->kek);
	sodium_bin2hex(nk->sealed_hex, 2 * clen + 1, sealed, clen);
	free(sealed);
	unsigned char kidraw[12];
	randombytes_buf(kidraw, sizeof(kidraw));
	(void)fd_b64url_encode(kidraw, sizeof(kidraw), nk->kid, sizeof(nk->kid));
	rc = 0;
out:
	if (priv) {
		/* Wipe the plaintext private key from the BIO's memory. */
		char *p;
		long n = BIO_get_mem_data(priv, &p);
		if (n > 0)
			sodium_memzero(p, (size_t)n);
	}
	BIO_free(priv);
	BIO_free(pub);
	EVP_PKEY_free(pk);
	if (rc < 0) {
		free(nk->sealed_hex);
		free(nk->public_pem);
		fd_err_set(err, FD_EINTERNAL, "cannot generate a P-256 signing key");
	}
	return rc;
}

static signing_key_t *unseal(authd_t *a, const char *kid, PGresult *res, int row, fd_err_t *err)
{
	size_t n = 0;
	unsigned char *sealed = PQunescapeBytea((const unsigned char *)PQgetvalue(res, row, 1), &n);
	signing_key_t *k = calloc(1, sizeof(*k));
	if (!sealed || !k || n <= crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES)
		goto fail;
	size_t plen = n - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
	k->private_pem = sodium_malloc(plen + 1);
	if (!k->private_pem)
		goto fail;
	if (crypto_secretbox_open_easy((unsigned char *)k->private_pem, sealed + crypto_secretbox_NONCEBYTES,
	                               n - crypto_secretbox_NONCEBYTES, sealed, a->kek) != 0) {
		PQfreemem(sealed);
		key_free(k);
		fd_err_set(err, FD_EINTERNAL, "signing key %s cannot be unsealed: "
		           "FRONTDESK_KEY_ENCRYPTION_KEY differs from the one it was sealed with", kid);
		return NULL;
	}
	k->private_pem[plen] = '\0';
	k->private_len = plen;
	snprintf(k->kid, sizeof(k->kid), "%s", kid);
	k->created_at = strtoll(PQgetvalue(res, row, 2), NULL, 10);
	PQfreemem(sealed);
	return k;
fail:
	PQfreemem(sealed);
	key_free(k);
	fd_err_set(err, FD_EINTERNAL, "signing key %s is unreadable", kid);
	return NULL;
}

struct load_q {
	authd_t *a;
	signing_key_t *key;
	new_key_t *insert;           /* set: insert it first (and retire `retire`) */
	const char *retire;
	int64_t retire_after;
	bool lost_race;
};

static int load_tx(fd_tx_t *tx, void *arg)
{
	struct load_q *q = arg;
	PGresult *res;
	int rc;
	if (q->insert) {
		if (q->retire) {
			char secs[24];
			snprintf(secs, sizeof(secs), "%" PRId64, q->retire_after);
			const char *rp[] = { q->retire, secs };
			if ((rc = fd_tx_exec(tx, &SQL_RETIRE_KEY, rp, 0, &res)) < 0)
				return rc;
			if (strcmp(PQcmdTuples(res), "1") != 0) {
				q->lost_race = true;   /* another replica rotated it: use theirs */
				goto load;
			}
			if ((rc = fd_tx_exec(tx, &SQL_DROP_OLD_KEYS, NULL, 0, NULL)) < 0)
				return rc;
		}
		const char *ip[] = { q->insert->kid, q->insert->sealed_hex, q->insert->public_pem };
		if ((rc = fd_tx_exec(tx, &SQL_INSERT_KEY, ip, 0, NULL)) < 0)
			return rc;
	}
load:
	if ((rc = fd_tx_exec(tx, &SQL_SIGNING, NULL, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) == 1) {
		q->key = unseal(q->a, PQgetvalue(res, 0, 0), res, 0, fd_tx_err(tx));
		if (!q->key)
			return -(int)fd_tx_err(tx)->code;
	}
	return 0;
}

/* Reads the signing key; makes one when there is none, or a new one when it
 * is older than the rotation period. */
static int refresh_key(authd_t *a, bool rotate, fd_err_t *err)
{
	const char *old = NULL;
	char oldkid[32] = "";
	pthread_mutex_lock(&a->key_mu);
	if (rotate && a->signing) {
		snprintf(oldkid, sizeof(oldkid), "%s", a->signing->kid);
		old = oldkid;
	}
	pthread_mutex_unlock(&a->key_mu);

	new_key_t nk;
	struct load_q q = { .a = a };
	int rc = 0;
	if (!rotate) {
		rc = fd_db_run(a->db, FD_NO_TENANT, load_tx, &q, err);
		if (rc < 0)
			return rc;
	}
	if (rotate || !q.key) {
		if (make_key(a, &nk, err) < 0)
			return -FD_EINTERNAL;
		q = (struct load_q){ .a = a, .insert = &nk, .retire = old,
		                     .retire_after = a->cfg->access_ttl + a->cfg->common.clock_skew + 60 };
		rc = fd_db_run(a->db, FD_NO_TENANT, load_tx, &q, err);
		free(nk.sealed_hex);
		free(nk.public_pem);
		if (rc < 0)
			return rc;
		if (q.key && !q.lost_race && strcmp(q.key->kid, nk.kid) == 0)
			fd_info("signing key %s made%s%s", nk.kid, old ? "; retired " : "", old ? old : "");
	}
	if (!q.key)
		return fd_err_set(err, FD_EINTERNAL, "no signing key could be made");
	pthread_mutex_lock(&a->key_mu);
	key_free(a->signing);
	a->signing = q.key;
	pthread_mutex_unlock(&a->key_mu);
	return 0;
}

int keys_init(authd_t *a, fd_err_t *err)
{
	/* While the database is down authd still starts (NOT_SERVING); the key
	 * is then read on the first token it signs. */
	int rc = refresh_key(a, false, err);
	if (rc == -FD_EUNAVAIL || rc == -FD_EDEADLINE) {
		fd_warn("signing key not loaded yet: %s", err->msg);
		return 0;
	}
	return rc;
}

void keys_fini(authd_t *a)
{
	key_free(a->signing);
	a->signing = NULL;
	pthread_mutex_destroy(&a->key_mu);
}

char *keys_sign(authd_t *a, fd_arena_t *arena, const char *claims, int64_t now, int64_t exp,
                fd_err_t *err)
{
	pthread_mutex_lock(&a->key_mu);
	bool missing = !a->signing;
	bool old = a->signing && now - a->signing->created_at >= a->cfg->rotate_seconds;
	pthread_mutex_unlock(&a->key_mu);
	if (missing && refresh_key(a, false, err) < 0)
		return NULL;
	if (old && refresh_key(a, true, err) < 0)
		fd_warn("signing key rotation failed (%s); signing with the current key", err->msg);

	unsigned char jtiraw[16];
	char jti[32];
	randombytes_buf(jtiraw, sizeof(jtiraw));
	(void)fd_b64url_encode(jtiraw, sizeof(jtiraw), jti, sizeof(jti));
	char *json = fd_arena_printf(arena, "{%s,\"iss\":\"%s\",\"iat\":%" PRId64 ",\"nbf\":%" PRId64
	                             ",\"exp\":%" PRId64 ",\"jti\":\"%s\"}",
	                             claims, a->cfg->common.token_issuer, now, now, exp, jti);
	if (!json) {
		fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		return NULL;
	}
	jwt_t *jwt = NULL;
	char *tok = NULL, *out = NULL;
	pthread_mutex_lock(&a->key_mu);
	if (a->signing && jwt_new(&jwt) == 0 && jwt_add_grants_json(jwt, json) == 0 &&
	    jwt_add_header(jwt, "kid", a->signing->kid) == 0 &&
	    jwt_set_alg(jwt, JWT_ALG_ES256, (const unsigned char *)a->signing->private_pem,
	                (int)a->signing->private_len) == 0)
		tok = jwt_encode_str(jwt);
	pthread_mutex_unlock(&a->key_mu);
	jwt_free(jwt);   /* also wipes its copy of the key */
	if (tok) {
		out = fd_arena_strdup(arena, tok);
		free(tok);
	}
	if (!out)
		fd_err_set(err, FD_EINTERNAL, "token signing failed");
	return out;
}

/* ---- GetVerificationKeys ---- */

static const fd_sql_t SQL_PUBLIC_KEYS = {
	"authd_public_keys",
	"SELECT kid, public_key_pem, floor(extract(epoch FROM created_at))::bigint,"
	"       coalesce(floor(extract(epoch FROM retire_at))::bigint, 0)"
	"  FROM frontdesk.verification_keys"
	" WHERE retire_at IS NULL OR retire_at > now() ORDER BY created_at DESC LIMIT 16",
	0,
};

/* The JWK of a P-256 public key in PEM. */
static char *jwk_of(fd_arena_t *arena, const char *kid, const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	BIGNUM *x = NULL, *y = NULL;
	char *out = NULL;
	unsigned char xb[32], yb[32];
	char xs[48], ys[48];
	if (pk && EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &x) &&
	    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &y) &&
	    BN_bn2binpad(x, xb, 32) == 32 && BN_bn2binpad(y, yb, 32) == 32) {
		(void)fd_b64url_encode(xb, 32, xs, sizeof(xs));
		(void)fd_b64url_encode(yb, 32, ys, sizeof(ys));
		out = fd_arena_printf(arena, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\","
		                      "\"kid\":\"%s\",\"alg\":\"ES256\",\"use\":\"sig\"}", xs, ys, kid);
	}
	BN_free(x);
	BN_free(y);
	EVP_PKEY_free(pk);
	BIO_free(bio);
	return out;
}

struct pubkeys_q {
	fd_arena_t *arena;
	Frontdesk__V1__GetVerificationKeysResponse *resp;
};

static int pubkeys_tx(fd_tx_t *tx, void *arg)
{
	struct pubkeys_q *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_PUBLIC_KEYS, NULL, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	int n = PQntuples(res);
	q->resp->keys = fd_arena_zalloc(q->arena, sizeof(*q->resp->keys) * (size_t)(n ? n : 1));
	if (!q->resp->keys)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	for (int i = 0; i < n; i++) {
		Frontdesk__V1__VerificationKey *k = fd_arena_zalloc(q->arena, sizeof(*k));
		if (!k)
			return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
		frontdesk__v1__verification_key__init(k);
		k->kid = fd_arena_strdup(q->arena, PQgetvalue(res, i, 0));
		k->algorithm = "ES256";
		k->public_key_pem = fd_arena_strdup(q->arena, PQgetvalue(res, i, 1));
		k->jwk = jwk_of(q->arena, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
		k->created_at = ts_col(res, i, 2);
		k->retire_at = ts_col(res, i, 3);
		k->signing = k->retire_at == 0;
		if (!k->kid || !k->public_key_pem || !k->jwk)
			return fd_err_set(fd_tx_err(tx), FD_EINTERNAL, "verification key %s unreadable",
			                  PQgetvalue(res, i, 0));
		q->resp->keys[q->resp->n_keys++] = k;
	}
	return 0;
}

int authd_get_verification_keys(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	Frontdesk__V1__GetVerificationKeysResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__get_verification_keys_response__init(r);
	struct pubkeys_q q = { arena, r };
	fd_tx_opts_t o = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	int rc = fd_db_run_opts(a->db, &o, pubkeys_tx, &q, fd_call_err(call));
	if (rc < 0)
		return rc;
	r->issuer = a->cfg->common.token_issuer;
	r->cache_seconds = 60;
	*resp = &r->base;
	return 0;
}

/* ---- IssueServiceToken ---- */

static bool known_audience(const char *aud)
{
	static const char *const services[] = { "authd", "billingd", "linesd", "routerd" };
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++)
		if (strcmp(aud, services[i]) == 0)
			return true;
	return false;
}

int authd_issue_service_token(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__IssueServiceTokenRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	if (!req->service_name[0] || strlen(req->service_name) >= 32)
		return fd_call_fail(call, FD_EINVAL, "service_name: 1 to 31 characters");
	if (strlen(req->secret) > 1024)
		return fd_call_fail(call, FD_EINVAL, "secret: at most 1024 bytes");
	if (!known_audience(req->audience))
		return fd_call_fail(call, FD_EINVAL, "audience: one of authd, billingd, linesd, routerd");
	if (req->n_scopes > 64)
		return fd_call_fail(call, FD_EINVAL, "scopes: at most 64");
	/* Every configured secret is compared, so timing says nothing of names. */
	unsigned char h[32];
	secret_hash(a, req->secret, strlen(req->secret), h);
	const struct service_secret *svc = NULL;
	for (int i = 0; i < a->nservices; i++) {
		bool name = strcmp(a->services[i].name, req->service_name) == 0;
		bool secret = sodium_memcmp(a->services[i].hash, h, 32) == 0;
		if (name && secret && req->secret[0])
			svc = &a->services[i];
	}
	if (!svc)
		return fd_call_fail(call, FD_EUNAUTH, "unknown service or wrong secret");
	fd_scopes_t want = 0;
	for (size_t i = 0; i < req->n_scopes; i++) {
		if (!fd_scope_name((fd_scope_t)req->scopes[i]))
			return fd_call_fail(call, FD_EINVAL, "scopes[%zu]: unknown scope %d", i, req->scopes[i]);
		want |= FD_SCOPE(req->scopes[i]);
	}
	if (!want)
		want = svc->scopes;
	if (want & ~svc->scopes)
		return fd_call_fail(call, FD_EPERM, "service %s may not have the scopes it asked for", svc->name);

	Frontdesk__V1__IssueServiceTokenResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__issue_service_token_response__init(r);
	char *scopes = scopes_text(arena, want, "\"");
	r->scopes = scopes_list(arena, want, &r->n_scopes);
	if (!scopes || !r->scopes)
		return OOM(call);
	int64_t now = time(NULL), ttl = a->cfg->access_ttl < 900 ? a->cfg->access_ttl : 900;
	char *claims = fd_arena_printf(arena, "\"sub\":\"service:%s\",\"aud\":\"%s\",\"tenant\":0,"
	                               "\"reseller\":0,\"role\":\"service\",\"scopes\":[%s]",
	                               svc->name, req->audience, scopes);
	if (!claims)
		return OOM(call);
	r->token = keys_sign(a, arena, claims, now, now + ttl, fd_call_err(call));
	if (!r->token)
		return -(int)fd_call_err(call)->code;
	r->expires_at = now + ttl;
	r->audience = fd_arena_strdup(arena, req->audience);
	if (!r->audience)
		return OOM(call);
	fd_info("service token issued to %s for %s", svc->name, req->audience);
	*resp = &r->base;
	return 0;
}
