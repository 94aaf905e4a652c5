/* jwt.c - access and service tokens: JWTs that authd signs with ES256.
 *
 * A first-seen token: header (alg pinned, read before anything else) ->
 * public key by kid (frontdesk.verification_keys, reloaded on an unknown
 * kid at most once a second) -> ECDSA P-256 over SHA-256 -> claims (read
 * with jansson; duplicates refused) -> the rules (iss, aud, exp, nbf, iat
 * with the skew) -> cached until exp. Then the account's status. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include "auth_internal.h"
#include "fd/clock.h"
#include "fd/log.h"

static const fd_sql_t SQL_KEYS = {
	"fd_auth_keys",
	"SELECT kid, public_key_pem FROM frontdesk.verification_keys"
	" WHERE retire_at IS NULL OR retire_at > now() - make_interval(secs => $1::int)"
	" ORDER BY created_at DESC LIMIT 16",
	1,
	FD_SQL_PLATFORM,
};

struct load_keys {
	int64_t skew_s;
	pubkey_t keys[MAX_KEYS];
	int n;
};

static EVP_PKEY *parse_p256(const char *pem, size_t len)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return NULL;
	EVP_PKEY *k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	char group[32];
	size_t glen = 0;
	if (k && (!EVP_PKEY_is_a(k, "EC") ||
	          !EVP_PKEY_get_group_name(k, group, sizeof(group), &glen) ||
	          strcmp(group, "prime256v1") != 0)) {
		EVP_PKEY_free(k);
		k = NULL;
	}
	return k;
}

static int load_keys_tx(fd_tx_t *tx, void *arg)
{
	struct load_keys *lk = arg;
	char skew[24];
	snprintf(skew, sizeof(skew), "%" PRId64, lk->skew_s);
	const char *params[] = { skew };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_KEYS, params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	for (int i = 0; i < PQntuples(res) && lk->n < MAX_KEYS; i++) {
		EVP_PKEY *k = parse_p256(PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1));
		if (!k) {
			fd_warn("verification key %s is not a P-256 public key; ignored", PQgetvalue(res, i, 0));
			continue;
		}
		snprintf(lk->keys[lk->n].kid, sizeof(lk->keys[0].kid), "%s", PQgetvalue(res, i, 0));
		lk->keys[lk->n++].pkey = k;
	}
	return 0;
}

void auth_free_keys(pubkey_t *keys, int n)
{
	for (int i = 0; i < n; i++)
		EVP_PKEY_free(keys[i].pkey);
}

/* The key of kid from the list, with a reference; NULL if absent. Sets
 * *gen to the list's generation. */
static EVP_PKEY *lookup_key(fd_verifier_t *v, const char *kid, uint64_t *gen)
{
	EVP_PKEY *k = NULL;
	pthread_mutex_lock(&v->keys_mu);
	for (int i = 0; i < v->nkeys && !k; i++) {
		if (strcmp(v->keys[i].kid, kid) == 0) {
			k = v->keys[i].pkey;
			EVP_PKEY_up_ref(k);
		}
	}
	*gen = v->keys_gen;
	pthread_mutex_unlock(&v->keys_mu);
	return k;
}

/* The key of kid, with a reference the caller frees; NULL if unknown. An
 * unknown kid (a new signing key) or a list older than KEY_REFRESH_MS reloads
 * the list, at most once per KEY_REFRESH_MIN_MS; threads that arrive during a
 * reload wait for it rather than fail. */
static EVP_PKEY *find_key(fd_verifier_t *v, const char *kid, int64_t deadline_ms, fd_err_t *err)
{
	uint64_t gen;
	EVP_PKEY *k = lookup_key(v, kid, &gen);
	pthread_mutex_lock(&v->load_mu);
	int64_t now = fd_now_ms();
	bool stale = now - v->keys_loaded_ms >= KEY_REFRESH_MS;
	if (k && !stale) {
		pthread_mutex_unlock(&v->load_mu);
		return k;
	}
	pthread_mutex_lock(&v->keys_mu);
	bool reloaded_meanwhile = v->keys_gen != gen;
	pthread_mutex_unlock(&v->keys_mu);
	if (!k && reloaded_meanwhile) {
		/* Another thread reloaded while this one waited: look again. */
		k = lookup_key(v, kid, &gen);
		if (k || now - v->keys_loaded_ms < KEY_REFRESH_MIN_MS) {
			pthread_mutex_unlock(&v->load_mu);
			return k;
		}
	}
	if (now - v->keys_loaded_ms < KEY_REFRESH_MIN_MS) {
		pthread_mutex_unlock(&v->load_mu);   /* reloaded a moment ago: unknown it is */
		return k;
	}
	v->keys_loaded_ms = now;
	struct load_keys lk = { .skew_s = v->skew_s };
	fd_tx_opts_t o = { .tenant_id = FD_NO_TENANT, .deadline_ms = deadline_ms, .read_only = true };
	if (fd_db_run_opts(v->db, &o, load_keys_tx, &lk, err) < 0) {
		auth_free_keys(lk.keys, lk.n);
		v->keys_loaded_ms = 0;   /* try again on the next token */
		pthread_mutex_unlock(&v->load_mu);
		if (k)
			return k;            /* a stale list still verifies known keys */
		if (err->code != FD_EUNAVAIL && err->code != FD_EDEADLINE)
			fd_err_set(err, FD_EUNAVAIL, "verification keys cannot be read; retry");
		return NULL;
	}
	STAT(v, key_refreshes);
	err->code = FD_OK;   /* a retried attempt may have left a code: the load succeeded */
	pthread_mutex_lock(&v->keys_mu);
	auth_free_keys(v->keys, v->nkeys);
	memcpy(v->keys, lk.keys, sizeof(lk.keys[0]) * (size_t)lk.n);
	v->nkeys = lk.n;
	v->keys_gen++;
	pthread_mutex_unlock(&v->keys_mu);
	pthread_mutex_unlock(&v->load_mu);
	EVP_PKEY_free(k);
	return lookup_key(v, kid, &gen);
}

/* ES256: sig is r || s, 32 bytes each (JWS), which OpenSSL wants as DER. */
static bool es256_verify(fd_verifier_t *v, EVP_PKEY *key, const char *msg, size_t msglen,
                         const unsigned char sig[64])
{
	bool ok = false;
	unsigned char der[80], *p = der;
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!es || !r || !s || !ctx || !ECDSA_SIG_set0(es, r, s)) {
		BN_free(r);
		BN_free(s);
		goto out;
	}
	int derlen = i2d_ECDSA_SIG(es, NULL);
	if (derlen <= 0 || derlen > (int)sizeof(der) || i2d_ECDSA_SIG(es, &p) != derlen)
		goto out;
	ok = EVP_DigestVerifyInit(ctx, NULL, v->sha256, NULL, key) == 1 &&
	     EVP_DigestVerify(ctx, der, (size_t)derlen, (const unsigned char *)msg, msglen) == 1;
out:
	EVP_MD_CTX_free(ctx);
	ECDSA_SIG_free(es);
	return ok;
}

/* The header must be exactly what authd writes: alg ES256, typ JWT (if
 * present), a kid; nothing else. The algorithm is looked at first: a
 * header naming another is refused as such whatever else it holds. */
static int parse_header(const char *b64, size_t n, char kid[65], fd_err_t *err)
{
	unsigned char buf[HEADER_MAX];
	int len = fd_b64url_decode(b64, n, buf, sizeof(buf));
	if (len < 0)
		return auth_unauth(err, "malformed token");
	json_t *h = json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(h)) {
		json_decref(h);
		return auth_unauth(err, "malformed token");
	}
	int rc = 0;
	const char *alg = json_string_value(json_object_get(h, "alg"));
	json_t *typ = json_object_get(h, "typ"), *jkid = json_object_get(h, "kid");
	const char *k = json_string_value(jkid);
	if (!alg || strcmp(alg, "ES256") != 0)
		rc = auth_unauth(err, "token algorithm not accepted (only ES256)");
	else if ((typ && (!json_is_string(typ) || strcmp(json_string_value(typ), "JWT") != 0)) ||
	         (jkid && !k) || json_object_size(h) != (size_t)(1 + (typ != NULL) + (jkid != NULL)))
		rc = auth_unauth(err, "malformed token header");
	else if (!k || !k[0])
		rc = auth_unauth(err, "token has no key id");
	else if (json_string_length(jkid) > 64 || strlen(k) != json_string_length(jkid))
		rc = auth_unauth(err, "malformed token header");
	else
		memcpy(kid, k, json_string_length(jkid) + 1);
	json_decref(h);
	return rc;
}

typedef struct claims {
	char iss[128], aud[32], sub[64];
	int64_t tenant, reseller, iat, nbf, exp;
	fd_role_t role;
	fd_scopes_t scopes;
	char tslug[64], name[65];
} claims_t;

/* A string claim into out (at most outsz - 1 bytes, no NUL inside). */
static bool claim_string(json_t *claims, const char *name, char *out, size_t outsz, bool required)
{
	json_t *v = json_object_get(claims, name);
	if (!v)
		return !required && (out[0] = '\0', true);
	size_t n = json_string_length(v);
	if (!json_is_string(v) || n >= outsz || strlen(json_string_value(v)) != n)
		return false;
	memcpy(out, json_string_value(v), n + 1);
	return true;
}

/* An integer claim (a JSON number without fraction or exponent). */
static bool claim_int(json_t *claims, const char *name, int64_t *out, bool required)
{
	json_t *v = json_object_get(claims, name);
	if (!v)
		return !required && (*out = 0, true);
	if (!json_is_integer(v))
		return false;
	*out = (int64_t)json_integer_value(v);
	return true;
}

/* The claims authd writes, read with jansson. A claim given twice is
 * ambiguous (which one did the signer mean?): JSON_REJECT_DUPLICATES
 * refuses the whole token. Unknown claims are ignored. */
static int parse_claims(const char *b64, size_t n, claims_t *c)
{
	unsigned char buf[PAYLOAD_MAX];
	int len = fd_b64url_decode(b64, n, buf, sizeof(buf));
	if (len < 0)
		return -1;
	json_t *j = json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
	int rc = -1;
	char role[32], jti[64];
	json_t *scopes = json_object_get(j, "scopes");
	if (!json_is_object(j) || !claim_string(j, "iss", c->iss, sizeof(c->iss), true) ||
	    !claim_string(j, "aud", c->aud, sizeof(c->aud), true) ||
	    !claim_string(j, "sub", c->sub, sizeof(c->sub), true) || !claim_int(j, "tenant", &c->tenant, true) ||
	    !claim_int(j, "reseller", &c->reseller, false) || !claim_string(j, "role", role, sizeof(role), true) ||
	    !claim_int(j, "iat", &c->iat, true) || !claim_int(j, "nbf", &c->nbf, true) ||
	    !claim_int(j, "exp", &c->exp, true) || !claim_string(j, "jti", jti, sizeof(jti), true) ||
	    !claim_string(j, "tslug", c->tslug, sizeof(c->tslug), false) ||
	    !claim_string(j, "name", c->name, sizeof(c->name), false) || !json_is_array(scopes) ||
	    !(c->role = fd_role_parse(role, strlen(role))))
		goto out;
	size_t i;
	json_t *s;
	json_array_foreach(scopes, i, s) {
		fd_scope_t sc = json_is_string(s) ? fd_scope_parse(json_string_value(s), json_string_length(s)) : 0;
		if (!sc)
			goto out;
		c->scopes |= FD_SCOPE(sc);
	}
	rc = 0;
out:
	json_decref(j);
	return rc;
}

/* Claims -> caller, after the signature: every rule a token must pass except
 * the status of its tenant and account. */
static int claims_to_caller(fd_verifier_t *v, const claims_t *c, int64_t now_s, fd_caller_t *out,
                            fd_err_t *err)
{
	if (strcmp(c->iss, v->issuer) != 0)
		return auth_unauth(err, "token issuer not accepted");
	if (c->exp + v->skew_s <= now_s)
		return auth_unauth(err, "token expired");
	if (c->nbf - v->skew_s > now_s || c->iat - v->skew_s > now_s)
		return auth_unauth(err, "token not valid yet");
	if (c->exp - c->iat > 900 + v->skew_s)
		return auth_unauth(err, "token lifetime too long");
	memset(out, 0, sizeof(*out));
	out->role = c->role;
	out->scopes = c->scopes;
	out->tenant_id = c->tenant;
	out->expires_at = c->exp;
	if (c->role == FD_ROLE_SERVICE) {
		/* Service tokens are for one service only. */
		if (strcmp(c->aud, v->audience) != 0)
			return auth_unauth(err, "token audience not accepted");
		if (strncmp(c->sub, "service:", 8) != 0 || !c->sub[8] || strlen(c->sub + 8) >= sizeof(out->service) ||
		    c->tenant != 0)
			return auth_unauth(err, "malformed token");
		out->kind = FD_CRED_SERVICE_TOKEN;
		snprintf(out->service, sizeof(out->service), "%s", c->sub + 8);
		return 0;
	}
	if (strcmp(c->aud, "frontdesk") != 0)
		return auth_unauth(err, "token audience not accepted");
	if (auth_parse_id(c->sub, &out->account_id) < 0 || out->account_id <= 0 || c->tenant < 0 ||
	    c->reseller < 0 || (c->role == FD_ROLE_PLATFORM_ADMIN) != (c->tenant == 0))
		return auth_unauth(err, "malformed token");
	out->kind = FD_CRED_ACCESS_TOKEN;
	out->reseller_id = c->reseller;
	snprintf(out->tenant_slug, sizeof(out->tenant_slug), "%s", c->tslug);
	snprintf(out->username, sizeof(out->username), "%s", c->name);
	return 0;
}

static void token_cache_key(fd_verifier_t *v, const char *tok, size_t n, unsigned char out[32])
{
	crypto_generichash(out, 32, (const unsigned char *)tok, n, v->cache_key, sizeof(v->cache_key));
}

int auth_verify_jwt(fd_verifier_t *v, const char *tok, size_t n, int64_t deadline_ms,
                    fd_caller_t *out, fd_err_t *err)
{
	int64_t now = fd_now_ms();
	unsigned char ckey[32];
	token_cache_key(v, tok, n, ckey);
	if (auth_cache_get(&v->tokens, ckey, now, out)) {
		STAT(v, token_hits);
	} else {
		STAT(v, token_misses);
		const char *dot1 = memchr(tok, '.', n);
		const char *dot2 = dot1 ? memchr(dot1 + 1, '.', n - (size_t)(dot1 + 1 - tok)) : NULL;
		if (!dot1 || !dot2 || memchr(dot2 + 1, '.', n - (size_t)(dot2 + 1 - tok)))
			return auth_unauth(err, "malformed token");
		char kid[65];
		int rc = parse_header(tok, (size_t)(dot1 - tok), kid, err);
		if (rc < 0)
			return rc;
		unsigned char sig[64];
		if (fd_b64url_decode(dot2 + 1, n - (size_t)(dot2 + 1 - tok), sig, sizeof(sig)) != 64)
			return auth_unauth(err, "malformed token signature");
		err->code = FD_OK;
		EVP_PKEY *key = find_key(v, kid, deadline_ms, err);
		if (!key)
			return err->code == FD_EUNAVAIL || err->code == FD_EDEADLINE ? -(int)err->code
			                                                              : auth_unauth(err, "token key unknown");
		bool good = es256_verify(v, key, tok, (size_t)(dot2 - tok), sig);
		EVP_PKEY_free(key);
		if (!good)
			return auth_unauth(err, "token signature invalid");
		claims_t c = { 0 };
		if (parse_claims(dot1 + 1, (size_t)(dot2 - dot1 - 1), &c) < 0)
			return auth_unauth(err, "malformed token claims");
		rc = claims_to_caller(v, &c, now / 1000, out, err);
		if (rc < 0)
			return rc;
		auth_cache_put(&v->tokens, ckey, (c.exp + v->skew_s) * 1000, out);
	}
	if (out->expires_at + v->skew_s <= now / 1000)
		return auth_unauth(err, "token expired");
	if (out->kind == FD_CRED_SERVICE_TOKEN)
		return 0;
	account_status_t st;
	int rc = auth_account_status(v, out->tenant_id, out->account_id, deadline_ms, &st, err);
	if (rc < 0)
		return rc;
	return auth_apply_status(&st, out, err);
}
