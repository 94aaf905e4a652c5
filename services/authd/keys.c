/* keys.c - authd's ES256 signing keys: made on first start, sealed in the
 * database with FRONTDESK_KEY_ENCRYPTION_KEY so every replica signs with the
 * same key, rotated after FRONTDESK_SIGNING_KEY_ROTATE seconds (the old key
 * keeps verifying until its last token has expired); and GetVerificationKeys,
 * which hands out their public halves. */
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

static signing_key_t *unseal(authd_t *a, const char *kid, const unsigned char *sealed, size_t n,
                             int64_t created_at, fd_err_t *err)
{
	signing_key_t *k = calloc(1, sizeof(*k));
	if (!k || n <= crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES)
		goto fail;
	size_t plen = n - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
	k->private_pem = sodium_malloc(plen + 1);
	if (!k->private_pem)
		goto fail;
	if (crypto_secretbox_open_easy((unsigned char *)k->private_pem, sealed + crypto_secretbox_NONCEBYTES,
	                               n - crypto_secretbox_NONCEBYTES, sealed, a->kek) != 0) {
		key_free(k);
		fd_err_set(err, FD_EINTERNAL, "signing key %s cannot be unsealed: "
		           "FRONTDESK_KEY_ENCRYPTION_KEY differs from the one it was sealed with", kid);
		return NULL;
	}
	k->private_pem[plen] = '\0';
	k->private_len = plen;
	snprintf(k->kid, sizeof(k->kid), "%s", kid);
	k->created_at = created_at;
	return k;
fail:
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
	int rc;
	if (q->insert) {
		if (q->retire) {
			if ((rc = store_retire_signing_key(tx, q->retire, q->retire_after)) < 0)
				return rc;
			q->lost_race = rc == 0;   /* another replica rotated it: use theirs */
		}
		if (!q->lost_race &&
		    (rc = store_insert_signing_key(tx, q->insert->kid, q->insert->sealed_hex, q->insert->public_pem)) < 0)
			return rc;
	}
	char kid[32];
	unsigned char *sealed;
	size_t n;
	int64_t created_at;
	if ((rc = store_signing_key(tx, kid, &sealed, &n, &created_at)) <= 0)
		return rc;
	q->key = unseal(q->a, kid, sealed, n, created_at, fd_tx_err(tx));
	PQfreemem(sealed);
	return q->key ? 0 : -(int)fd_tx_err(tx)->code;
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
	Frontdesk__V1__GetVerificationKeysResponse *r = q->resp;
	int rc = store_verification_keys(tx, q->arena, &r->keys, &r->n_keys);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < r->n_keys; i++)
		if (!(r->keys[i]->jwk = jwk_of(q->arena, r->keys[i]->kid, r->keys[i]->public_key_pem)))
			return fd_err_set(fd_tx_err(tx), FD_EINTERNAL, "verification key %s unreadable", r->keys[i]->kid);
	return 0;
}

int authd_get_verification_keys(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	authd_t *a = authd_of(call);
	Frontdesk__V1__GetVerificationKeysResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	struct pubkeys_q q = { fd_call_arena(call), r };
	fd_tx_opts_t o = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	int rc = fd_db_run_opts(a->db, &o, pubkeys_tx, &q, fd_call_err(call));
	if (rc < 0)
		return rc;
	r->issuer = a->cfg->common.token_issuer;
	r->cache_seconds = 60;
	return 0;
}
