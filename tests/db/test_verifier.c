/* test_verifier.c - the verifier (fd/auth.h) against a real database, with
 * tokens this test signs itself, so every rule can be broken one at a time:
 * the pinned algorithm (none, HS256 keyed with the public key, extra header
 * fields), exp / nbf / iss / aud with the skew, tampered claims, unknown kid,
 * a key that does not match its kid, duplicate claims, service-token
 * audiences, suspensions of a tenant and of an ancestor seen within the
 * status TTL, and API keys (keyed hash, wrong secret, revoked, expired, last
 * use recorded). The verifier connects as billingd's role: the reference
 * views are what other services read. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <sodium.h>
#include "dbtest.h"
#include "fd/auth.h"
#include "test.h"

#define TTL_MS 300
static const unsigned char HASH_KEY[32] = "0123456789abcdef0123456789abcde";

static EVP_PKEY *key1, *key2;
static char pem1[1024];

static char *b64(const void *data, size_t n)
{
	static char bufs[8][4096];
	static int next;
	char *out = bufs[next++ % 8];
	if (fd_b64url_encode(data, n, out, 4096) < 0)
		abort();
	return out;
}

/* header.claims signed with ES256 (raw r||s), as authd signs. */
static char *sign_es256(EVP_PKEY *k, const char *header, const char *claims)
{
	static char tok[4096];
	snprintf(tok, sizeof(tok), "%s.", b64(header, strlen(header)));
	strcat(tok, b64(claims, strlen(claims)));
	unsigned char der[128], raw[64];
	size_t derlen = sizeof(der);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k) != 1 ||
	    EVP_DigestSign(ctx, der, &derlen, (unsigned char *)tok, strlen(tok)) != 1)
		abort();
	EVP_MD_CTX_free(ctx);
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32);
	BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32);
	ECDSA_SIG_free(sig);
	strcat(tok, ".");
	strcat(tok, b64(raw, 64));
	return tok;
}

static const char *H1 = "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"testkid01\"}";

/* Claims of a tenant admin of tenant 1 (account 10), with overrides. */
static char *claims(const char *sub, const char *aud, int64_t tenant, const char *role, int64_t iat,
                    int64_t exp, const char *iss)
{
	static char c[1024];
	snprintf(c, sizeof(c),
	         "{\"sub\":\"%s\",\"aud\":\"%s\",\"tenant\":%" PRId64 ",\"reseller\":%s,\"role\":\"%s\","
	         "\"scopes\":[\"lines_read\",\"credits_read\"],\"iss\":\"%s\",\"iat\":%" PRId64 ",\"nbf\":%" PRId64
	         ",\"exp\":%" PRId64 ",\"jti\":\"j%ld\",\"tslug\":\"acme\",\"name\":\"boss\"}",
	         sub, aud, tenant, sub, role, iss, iat, iat, exp, random());
	return c;
}

static char *bearer(const char *tok)
{
	static char b[5000];
	snprintf(b, sizeof(b), "Bearer %s", tok);
	return b;
}

static int verify(fd_verifier_t *v, const char *auth, fd_caller_t *c, fd_err_t *err)
{
	memset(err, 0, sizeof(*err));
	return fd_verify_bearer(v, auth, 0, c, err);
}

#define REFUSED(v, auth, why)                                                            \
	do {                                                                                 \
		fd_caller_t c_;                                                                  \
		fd_err_t e_;                                                                     \
		int rc_ = verify(v, auth, &c_, &e_);                                             \
		CHECK(rc_ == -FD_EUNAUTH && strstr(e_.msg, why), "want UNAUTHENTICATED (%s), got %d: %s", why, \
		      rc_, e_.msg);                                                              \
	} while (0)

static void pause_ttl(void)
{
	usleep((TTL_MS + 100) * 1000);
}

static void test_base64url(void)
{
	unsigned char out[8];
	CHECK(fd_b64url_decode("TWFu", 4, out, sizeof(out)) == 3 && memcmp(out, "Man", 3) == 0, "decode");
	CHECK(fd_b64url_decode("TWE", 3, out, sizeof(out)) == 2, "no padding");
	CHECK(fd_b64url_decode("TWF", 3, out, sizeof(out)) < 0, "non-zero trailing bits refused");
	CHECK(fd_b64url_decode("TW=u", 4, out, sizeof(out)) < 0, "padding refused");
	CHECK(fd_b64url_decode("T", 1, out, sizeof(out)) < 0, "impossible length refused");
	CHECK(fd_scope_parse("credits_charge", 14) == FRONTDESK__V1__SCOPE__SCOPE_CREDITS_CHARGE, "scope names");
	CHECK(strcmp(fd_scope_name(FRONTDESK__V1__SCOPE__SCOPE_FORWARD_CLIENT_ADDRESS), "forward_client_address") == 0,
	      "scope names");
}

static void test_tokens(fd_verifier_t *v)
{
	int64_t now = time(NULL);
	fd_caller_t c;
	fd_err_t err;

	char *good = sign_es256(key1, H1, claims("10", "frontdesk", 1, "tenant_admin", now, now + 600, "frontdesk"));
	char goodcopy[4096];
	snprintf(goodcopy, sizeof(goodcopy), "%s", good);
	int rc = verify(v, bearer(goodcopy), &c, &err);
	CHECK(rc == 0, "a good token: %s", err.msg);
	CHECK(c.tenant_id == 1 && c.account_id == 10 && c.reseller_id == 10 && c.role == FD_ROLE_TENANT_ADMIN &&
	      c.kind == FD_CRED_ACCESS_TOKEN, "caller fields");
	CHECK(c.scopes == (FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_LINES_READ) | FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_CREDITS_READ)),
	      "scopes %" PRIx64, c.scopes);
	CHECK(strcmp(c.path, "10.") == 0 && strcmp(c.tenant_slug, "acme") == 0, "path %s slug %s", c.path, c.tenant_slug);
	fd_verifier_stats_t s0, s1;
	fd_verifier_stats(v, &s0);
	CHECK(verify(v, bearer(goodcopy), &c, &err) == 0, "again: %s", err.msg);
	fd_verifier_stats(v, &s1);
	CHECK(s1.token_hits == s0.token_hits + 1 && s1.key_refreshes == s0.key_refreshes, "second check is a cache hit");

	/* The algorithm is pinned before anything else is read. */
	char tok[4096];
	const char *payload = strchr(goodcopy, '.') + 1;
	size_t plen = (size_t)(strchr(payload, '.') - payload);
	const char *none = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
	snprintf(tok, sizeof(tok), "%s.%.*s.", b64(none, strlen(none)), (int)plen, payload);
	REFUSED(v, bearer(tok), "algorithm");
	const char *none_kid = "{\"alg\":\"none\",\"kid\":\"testkid01\"}";
	snprintf(tok, sizeof(tok), "%s.%.*s.", b64(none_kid, strlen(none_kid)), (int)plen, payload);
	REFUSED(v, bearer(tok), "algorithm");
	/* HS256 with the public key's PEM as the HMAC secret: the classic confusion. */
	const char *hs = "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"testkid01\"}";
	snprintf(tok, sizeof(tok), "%s.%.*s", b64(hs, strlen(hs)), (int)plen, payload);
	unsigned char mac[32];
	unsigned maclen = 32;
	HMAC(EVP_sha256(), pem1, (int)strlen(pem1), (unsigned char *)tok, strlen(tok), mac, &maclen);
	strcat(tok, ".");
	strcat(tok, b64(mac, 32));
	REFUSED(v, bearer(tok), "algorithm");
	const char *lower = "{\"alg\":\"es256\",\"kid\":\"testkid01\"}";
	REFUSED(v, bearer(sign_es256(key1, lower, claims("10", "frontdesk", 1, "tenant_admin", now, now + 600, "frontdesk"))),
	        "algorithm");
	const char *jku = "{\"alg\":\"ES256\",\"kid\":\"testkid01\",\"jku\":\"http://x\"}";
	REFUSED(v, bearer(sign_es256(key1, jku, claims("10", "frontdesk", 1, "tenant_admin", now, now + 600, "frontdesk"))),
	        "header");

	/* Time, issuer, audience (skew is 5 s). */
	REFUSED(v, bearer(sign_es256(key1, H1, claims("10", "frontdesk", 1, "tenant_admin", now - 700, now - 60, "frontdesk"))),
	        "expired");
	REFUSED(v, bearer(sign_es256(key1, H1, claims("10", "frontdesk", 1, "tenant_admin", now + 60, now + 600, "frontdesk"))),
	        "not valid yet");
	CHECK(verify(v, bearer(sign_es256(key1, H1, claims("10", "frontdesk", 1, "tenant_admin", now + 3, now + 600,
	                                                    "frontdesk"))), &c, &err) == 0,
	      "within the skew: %s", err.msg);
	REFUSED(v, bearer(sign_es256(key1, H1, claims("10", "frontdesk", 1, "tenant_admin", now, now + 3600, "frontdesk"))),
	        "lifetime");
	REFUSED(v, bearer(sign_es256(key1, H1, claims("10", "frontdesk", 1, "tenant_admin", now, now + 600, "evil"))),
	        "issuer");
	REFUSED(v, bearer(sign_es256(key1, H1, claims("10", "billingd", 1, "tenant_admin", now, now + 600, "frontdesk"))),
	        "audience");

	/* Tampered claims keep the old signature. */
	char *other = claims("10", "frontdesk", 2, "tenant_admin", now, now + 600, "frontdesk");
	const char *sig = strrchr(goodcopy, '.') + 1;
	snprintf(tok, sizeof(tok), "%.*s.%s.%s", (int)(strchr(goodcopy, '.') - goodcopy), goodcopy,
	         b64(other, strlen(other)), sig);
	REFUSED(v, bearer(tok), "signature");
	/* Unknown kid; a key that is not the kid's. */
	const char *h2 = "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"otherkid1\"}";
	REFUSED(v, bearer(sign_es256(key2, h2, claims("10", "frontdesk", 1, "tenant_admin", now, now + 600, "frontdesk"))),
	        "key unknown");
	REFUSED(v, bearer(sign_es256(key2, H1, claims("10", "frontdesk", 1, "tenant_admin", now, now + 600, "frontdesk"))),
	        "signature");
	/* A claim given twice is ambiguous. */
	char dup[1200];
	char *cl = claims("10", "frontdesk", 1, "tenant_admin", now, now + 600, "frontdesk");
	snprintf(dup, sizeof(dup), "{\"tenant\":2,%s", cl + 1);
	REFUSED(v, bearer(sign_es256(key1, H1, dup)), "claims");
	/* Claims of the wrong JSON type, numbers that are not integers, a NUL
	 * escaped into a string, a truncated object: refused, never coerced. */
	static const char *const bad_claims[][2] = {
		{ "\"tenant\":1,", "\"tenant\":\"1\"," },
		{ "\"tenant\":1,", "\"tenant\":1.0," },
		{ "\"tenant\":1,", "\"tenant\":1e0," },
		{ "\"tenant\":1,", "\"tenant\":99999999999999999999," },
		{ "\"role\":\"tenant_admin\"", "\"role\":[\"tenant_admin\"]" },
		{ "\"sub\":\"10\"", "\"sub\":\"10\\u0000x\"" },
		{ "\"scopes\":[\"lines_read\",", "\"scopes\":[7," },
		{ "\"name\":\"boss\"}", "\"name\":\"boss\"" },
	};
	for (size_t i = 0; i < sizeof(bad_claims) / sizeof(bad_claims[0]); i++) {
		char *good_cl = claims("10", "frontdesk", 1, "tenant_admin", now, now + 600, "frontdesk");
		char bad[1200], *at = strstr(good_cl, bad_claims[i][0]);
		CHECK(at != NULL, "claim pattern %zu found", i);
		if (!at)
			continue;
		snprintf(bad, sizeof(bad), "%.*s%s%s", (int)(at - good_cl), good_cl, bad_claims[i][1],
		         at + strlen(bad_claims[i][0]));
		REFUSED(v, bearer(sign_es256(key1, H1, bad)), "claims");
	}
	/* A kid of the wrong type or too long, a typ other than JWT. */
	REFUSED(v, bearer(sign_es256(key1, "{\"alg\":\"ES256\",\"kid\":7}", claims("10", "frontdesk", 1, "tenant_admin",
	        now, now + 600, "frontdesk"))), "header");
	REFUSED(v, bearer(sign_es256(key1, "{\"alg\":\"ES256\",\"typ\":\"JWE\",\"kid\":\"testkid01\"}",
	        claims("10", "frontdesk", 1, "tenant_admin", now, now + 600, "frontdesk"))), "header");
	REFUSED(v, bearer(sign_es256(key1, "{\"alg\":\"ES256\",\"kid\":\"k0123456789012345678901234567890123456789"
	        "0123456789012345678901234\"}", claims("10", "frontdesk", 1, "tenant_admin", now, now + 600, "frontdesk"))),
	        "header");
	REFUSED(v, bearer(sign_es256(key1, "{\"alg\":\"ES256\",\"alg\":\"ES256\",\"kid\":\"testkid01\"}",
	        claims("10", "frontdesk", 1, "tenant_admin", now, now + 600, "frontdesk"))), "malformed");
	/* The role must match the account's. */
	REFUSED(v, bearer(sign_es256(key1, H1, claims("11", "frontdesk", 1, "tenant_admin", now, now + 600, "frontdesk"))),
	        "account");
	REFUSED(v, bearer(sign_es256(key1, H1, claims("99", "frontdesk", 1, "reseller", now, now + 600, "frontdesk"))),
	        "account");

	/* Malformed credentials. */
	REFUSED(v, NULL, "no credential");
	REFUSED(v, "Basic abc", "Bearer");
	REFUSED(v, "Bearer ", "malformed");
	REFUSED(v, "Bearer a.b.c.d", "malformed");
	REFUSED(v, "Bearer !!!.???.###", "malformed");
	char big[5000];
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "Bearer ", 7);
	REFUSED(v, big, "malformed");
}

static void test_service_tokens(fd_verifier_t *v)
{
	int64_t now = time(NULL);
	fd_caller_t c;
	fd_err_t err;
	char cl[1024];
#define SERVICE_CLAIMS(aud)                                                                             \
	snprintf(cl, sizeof(cl),                                                                            \
	         "{\"sub\":\"service:linesd\",\"aud\":\"%s\",\"tenant\":0,\"reseller\":0,\"role\":\"service\"," \
	         "\"scopes\":[\"credits_charge\",\"credits_refund\"],\"iss\":\"frontdesk\",\"iat\":%" PRId64    \
	         ",\"nbf\":%" PRId64 ",\"exp\":%" PRId64 ",\"jti\":\"s1\"}",                                  \
	         aud, now, now, now + 300)
	SERVICE_CLAIMS("billingd");
	int rc = verify(v, bearer(sign_es256(key1, H1, cl)), &c, &err);
	CHECK(rc == 0 && c.kind == FD_CRED_SERVICE_TOKEN && c.role == FD_ROLE_SERVICE &&
	      strcmp(c.service, "linesd") == 0 && c.tenant_id == 0, "service token for billingd: %s", err.msg);
	CHECK(fd_caller_need(&c, FRONTDESK__V1__SCOPE__SCOPE_CREDITS_CHARGE, &err) == 0, "has credits_charge");
	CHECK(fd_caller_need(&c, FRONTDESK__V1__SCOPE__SCOPE_CREDITS_MINT, &err) == -FD_EPERM, "no credits_mint");
	int64_t t;
	CHECK(fd_caller_tenant(&c, 7, &t, &err) == 0 && t == 7, "a service names the tenant");
	SERVICE_CLAIMS("routerd");
	REFUSED(v, bearer(sign_es256(key1, H1, cl)), "audience");
	SERVICE_CLAIMS("frontdesk");
	REFUSED(v, bearer(sign_es256(key1, H1, cl)), "audience");
}

static void test_statuses(fd_verifier_t *v, dbtest_t *t)
{
	int64_t now = time(NULL);
	fd_caller_t c;
	fd_err_t err;
	char admin[5000], deep[5000];
	snprintf(admin, sizeof(admin), "%s",
	         bearer(sign_es256(key1, H1, claims("10", "frontdesk", 1, "tenant_admin", now, now + 600, "frontdesk"))));
	snprintf(deep, sizeof(deep), "%s",
	         bearer(sign_es256(key1, H1, claims("12", "frontdesk", 1, "reseller", now, now + 600, "frontdesk"))));
	CHECK(verify(v, admin, &c, &err) == 0, "admin before: %s", err.msg);
	CHECK(verify(v, deep, &c, &err) == 0 && strcmp(c.path, "10.11.12.") == 0 &&
	      c.permissions == FD_PERM_CREATE_TRIALS, "deep reseller before: %s", err.msg);
	int64_t tn;
	CHECK(fd_caller_tenant(&c, 2, &tn, &err) == -FD_ENOTFOUND, "a reseller naming another tenant: NOT_FOUND");
	CHECK(fd_caller_tenant(&c, 0, &tn, &err) == 0 && tn == 1, "0 is its own tenant");

	/* An ancestor suspended: the subtree is refused within the TTL. */
	dbtest_exec(t->admin, "UPDATE frontdesk.accounts SET status = 'suspended' WHERE tenant_id = 1 AND id = 11");
	pause_ttl();
	REFUSED(v, deep, "suspended");
	CHECK(verify(v, admin, &c, &err) == 0, "the admin above is not: %s", err.msg);
	dbtest_exec(t->admin, "UPDATE frontdesk.accounts SET status = 'active' WHERE tenant_id = 1 AND id = 11");
	pause_ttl();
	CHECK(verify(v, deep, &c, &err) == 0, "reactivated: %s", err.msg);

	/* The tenant suspended: all of it is refused. */
	dbtest_exec(t->admin, "UPDATE frontdesk.tenants SET status = 'suspended' WHERE id = 1");
	pause_ttl();
	REFUSED(v, admin, "tenant");
	REFUSED(v, deep, "tenant");
	dbtest_exec(t->admin, "UPDATE frontdesk.tenants SET status = 'active' WHERE id = 1");
	pause_ttl();
	CHECK(verify(v, admin, &c, &err) == 0, "tenant reactivated: %s", err.msg);
}

static void api_key(char *out, size_t n, int64_t id, const char *secret)
{
	snprintf(out, n, "fdk_1_%" PRId64 "_%s", id, secret);
}

static void insert_key(dbtest_t *t, int64_t id, const char *whole, const char *extra)
{
	unsigned char h[32];
	char hex[65], sql[1024];
	crypto_generichash(h, 32, (const unsigned char *)whole, strlen(whole), HASH_KEY, 32);
	sodium_bin2hex(hex, sizeof(hex), h, 32);
	snprintf(sql, sizeof(sql),
	         "SET frontdesk.tenant_id = '1';"
	         "INSERT INTO frontdesk.api_keys (tenant_id, id, account_id, name, prefix, secret_hash, scopes,"
	         " created_by, expires_at) VALUES (1, %" PRId64 ", 11, 'k', 'fdk_1_%" PRId64 "_', '\\x%s',"
	         " '{lines_read,lines_write}', 10, %s)",
	         id, id, hex, extra);
	dbtest_exec(t->admin, sql);
}

static void test_api_keys(fd_verifier_t *v, dbtest_t *t)
{
	const char *secret = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ";   /* 43 characters */
	char k5[128], k6[128], wrong[128], auth[200];
	api_key(k5, sizeof(k5), 5, secret);
	api_key(k6, sizeof(k6), 6, secret);
	insert_key(t, 5, k5, "NULL");
	insert_key(t, 6, k6, "now() + interval '3 seconds'");
	fd_caller_t c;
	fd_err_t err;
	snprintf(auth, sizeof(auth), "Bearer %s", k5);
	int rc = verify(v, auth, &c, &err);
	CHECK(rc == 0 && c.kind == FD_CRED_API_KEY && c.tenant_id == 1 && c.account_id == 11 && c.api_key_id == 5 &&
	      c.role == FD_ROLE_RESELLER && c.reseller_id == 11 && strcmp(c.path, "10.11.") == 0,
	      "API key: %s", err.msg);
	CHECK(c.scopes == (FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_LINES_READ) | FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_LINES_WRITE)),
	      "key scopes");
	CHECK(dbtest_is(t->admin, "SET frontdesk.tenant_id = '1'; SELECT last_used_at IS NOT NULL FROM frontdesk.api_keys WHERE id = 5", "t"),
	      "last use recorded");
	api_key(wrong, sizeof(wrong), 5, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPX");
	snprintf(auth, sizeof(auth), "Bearer %s", wrong);
	REFUSED(v, auth, "invalid API key");
	snprintf(auth, sizeof(auth), "Bearer fdk_1_5_short");
	REFUSED(v, auth, "malformed");
	snprintf(auth, sizeof(auth), "Bearer fdk_2_5_%s", secret);
	REFUSED(v, auth, "invalid API key");   /* another tenant's id space */

	/* Revoked: refused within the TTL. */
	dbtest_exec(t->admin, "SET frontdesk.tenant_id = '1'; UPDATE frontdesk.api_keys SET revoked_at = now() WHERE id = 5");
	pause_ttl();
	snprintf(auth, sizeof(auth), "Bearer %s", k5);
	REFUSED(v, auth, "revoked");
	/* Expired. */
	snprintf(auth, sizeof(auth), "Bearer %s", k6);
	CHECK(verify(v, auth, &c, &err) == 0, "k6 before expiry: %s", err.msg);
	usleep(3200 * 1000);
	REFUSED(v, auth, "expired");
}

/* A verifier that has never loaded its keys, hit by first-seen tokens from
 * several threads at once: every one verifies (those arriving during the
 * load wait for it instead of failing with "key unknown"). */
#define RACERS 8
struct racer {
	fd_verifier_t *v;
	char auth[5000];
	int rc;
	fd_err_t err;
	pthread_barrier_t *go;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	fd_caller_t c;
	pthread_barrier_wait(r->go);
	r->rc = fd_verify_bearer(r->v, r->auth, 0, &c, &r->err);
	return NULL;
}

static void test_first_load_race(fd_db_t *db)
{
	fd_err_t err = { 0 };
	fd_verifier_opts_t vo = { .db = db, .hash_key = HASH_KEY, .issuer = "frontdesk", .audience = "billingd",
		                      .skew_seconds = 5, .status_ttl_ms = TTL_MS };
	fd_verifier_t *v = fd_verifier_new(&vo, &err);
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, RACERS);
	static struct racer r[RACERS];
	pthread_t t[RACERS];
	int64_t now = time(NULL);
	for (int i = 0; i < RACERS; i++) {
		r[i] = (struct racer){ .v = v, .go = &go };
		snprintf(r[i].auth, sizeof(r[i].auth), "%s",
		         bearer(sign_es256(key1, H1, claims("10", "frontdesk", 1, "tenant_admin", now, now + 600, "frontdesk"))));
	}
	for (int i = 0; i < RACERS; i++)
		pthread_create(&t[i], NULL, race, &r[i]);
	for (int i = 0; i < RACERS; i++) {
		pthread_join(t[i], NULL);
		CHECK(r[i].rc == 0, "racer %d: %d %s", i, r[i].rc, r[i].err.msg);
	}
	fd_verifier_stats_t st;
	fd_verifier_stats(v, &st);
	CHECK(st.key_refreshes == 1, "one load for all of them: %" PRIu64, st.key_refreshes);
	pthread_barrier_destroy(&go);
	fd_verifier_free(v);
}

int main(void)
{
	dbtest_t t;
	int rc = dbtest_init(&t, "verifier");
	if (rc)
		return rc == DBTEST_SKIP ? DBTEST_SKIP : 1;
	if (dbtest_migrate(&t) < 0 || sodium_init() < 0) {
		dbtest_done(&t);
		return 1;
	}
	srandom((unsigned)time(NULL));
	test_base64url();
	key1 = EVP_EC_gen("P-256");
	key2 = EVP_EC_gen("P-256");
	BIO *bio = BIO_new(BIO_s_mem());
	PEM_write_bio_PUBKEY(bio, key1);
	char *p;
	long n = BIO_get_mem_data(bio, &p);
	snprintf(pem1, sizeof(pem1), "%.*s", (int)n, p);
	BIO_free(bio);
	char sql[2048];
	snprintf(sql, sizeof(sql),
	         "INSERT INTO frontdesk.signing_keys (kid, private_sealed, public_key_pem) VALUES ('testkid01', '\\x00', '%s');"
	         "INSERT INTO frontdesk.tenants (id, slug, name) VALUES (1, 'acme', 'Acme');"
	         "SET frontdesk.tenant_id = '1';"
	         "INSERT INTO frontdesk.accounts (tenant_id, id, parent_id, path, role, username, password_hash, permissions) VALUES"
	         " (1, 10, NULL, '10.', 'tenant_admin', 'boss', 'x', '{}'),"
	         " (1, 11, 10, '10.11.', 'reseller', 'mid', 'x', '{create_subresellers,create_trials}'),"
	         " (1, 12, 11, '10.11.12.', 'reseller', 'leaf', 'x', '{create_trials}');",
	         pem1);
	CHECK(dbtest_exec(t.admin, sql) == 0, "fixture rows");

	fd_err_t err = { 0 };
	fd_db_opts_t dbo = { .conninfo = dbtest_url(&t, "frontdesk_billingd"), .pool_size = 2, .prepared = true };
	fd_db_t *db = fd_db_open(&dbo, &err);
	fd_verifier_opts_t vo = { .db = db, .hash_key = HASH_KEY, .issuer = "frontdesk", .audience = "billingd",
		                      .skew_seconds = 5, .status_ttl_ms = TTL_MS };
	fd_verifier_t *v = db ? fd_verifier_new(&vo, &err) : NULL;
	CHECK(v != NULL, "verifier: %s", err.msg);
	if (v) {
		test_tokens(v);
		test_service_tokens(v);
		test_statuses(v, &t);
		test_api_keys(v, &t);
		test_first_load_race(db);
	}
	fd_verifier_free(v);
	fd_db_close(db);
	EVP_PKEY_free(key1);
	EVP_PKEY_free(key2);
	dbtest_done(&t);
	return test_summary();
}
