/* verify.c - bench_verify: the cost of the verifier (fd/auth.h) in process,
 * beside two baselines, round after round (interleaved), then the medians.
 *
 *   bench_verify --db "host=... port=... dbname=... user=postgres"
 *                [--seconds S] [--rounds R] [--threads T] [--db-user ROLE]
 *                [--only CASE,...]   (run these cases only: for profiling)
 *                [--scopes lines_read|all]  (the tokens' scopes: lines_read
 *                                     alone (default), or every scope, for
 *                                     tokens about as long as authd's)
 *
 * --db names a migrated database as a superuser: the bench inserts its own
 * signing key (made here with OpenSSL; retire_at set, so it never conflicts
 * with authd's signing key), a tenant, its tenant admin and an API key, and
 * deletes them at the end. The verifier's pool connects as --db-user
 * (frontdesk_authd), as a service would. Tokens are signed here as authd
 * signs them: ES256, raw r||s.
 *
 * Cases (each runs for S seconds a round; one line per case and round):
 *   ecdsa_p256_verify_raw    baseline: EVP_DigestVerifyInit + EVP_DigestVerify
 *                            of one token's signing input, key parsed once
 *   jwt_decode_libjwt        baseline: libjwt's jwt_decode with the PEM key,
 *                            a distinct token each time
 *   verify_first_seen        fd_verify_bearer, a distinct token each time:
 *                            header, key, signature, claims (status cached)
 *   verify_cached            the same token again: token and status cache hits
 *   verify_api_key_cached    the same API key again: API-key cache hit
 *   verify_cached_mt         verify_cached from T threads at once (same token)
 *   verify_api_key_cached_mt verify_api_key_cached from T threads at once
 * Output: bench <case> rate=<ops/s> us_per_op=<wall µs> cpu_us_per_op=<CPU µs>
 * (CPU: CLOCK_PROCESS_CPUTIME_ID, every thread of the process; for the _mt
 * cases rate is the sum over the threads and both per-op figures divide by
 * every thread's ops). Fresh tokens are signed between timed batches, never
 * inside them. Then the medians, ratios, the goals (first seen <= 400 µs of
 * CPU, cached <= 5 µs) and the verifier's counters (fd_verifier_stats) of
 * each case, which show that first-seen tokens missed and cached ones hit. */
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <jwt.h>
#include <libpq-fe.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include "fd/auth.h"
#include "fd/db.h"
#include "fd/log.h"

#define BATCH 256                /* ops between two clock readings */
#define TOK_MAX 4096
#define MAX_ROUNDS 100
#define MAX_THREADS 16

enum {
	C_RAW, C_LIBJWT, C_FIRST, C_CACHED, C_APIKEY, C_CACHED_MT, C_APIKEY_MT, NCASES
};
static const char *const case_names[NCASES] = {
	"ecdsa_p256_verify_raw", "jwt_decode_libjwt", "verify_first_seen", "verify_cached",
	"verify_api_key_cached", "verify_cached_mt", "verify_api_key_cached_mt",
};

typedef struct result {
	double rate, us, cpu_us;
} result_t;

static result_t results[NCASES][MAX_ROUNDS];

/* ---- the bench's own identity: key, tenant, account, API key ---- */

static EVP_PKEY *sign_key;
static char pem[1024];
static size_t pem_len;
static char kid[40], slug[40], username[40];
static char header_b64[128];
static int64_t tenant_id, account_id, api_key_id;
static char api_key_bearer[160];
static unsigned char hash_key[32];
static unsigned long jti_seq;
static char scopes_json[2048] = "\"lines_read\"";

static void die(const char *what)
{
	fprintf(stderr, "bench_verify: %s\n", what);
	exit(1);
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void b64(const void *in, size_t n, char *out, size_t outsz)
{
	if (fd_b64url_encode(in, n, out, outsz) < 0)
		die("base64url: no room");
}

/* ES256 over msg as a JWS wants it: raw r || s, 32 bytes each. */
static void es256_sign(const char *msg, size_t n, unsigned char raw[64])
{
	unsigned char der[80];
	size_t derlen = sizeof(der);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, sign_key) != 1 ||
	    EVP_DigestSign(ctx, der, &derlen, (const unsigned char *)msg, n) != 1)
		die("ECDSA signing failed");
	EVP_MD_CTX_free(ctx);
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	if (!sig || BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32) != 32 ||
	    BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32) != 32)
		die("ECDSA signature: unexpected form");
	ECDSA_SIG_free(sig);
}

/* "Bearer <header>.<claims>.<sig>" for the bench's tenant admin, valid for
 * 900 s from now, with a jti of its own (so every token is distinct). */
static void make_token(char out[TOK_MAX])
{
	char claims[3072], claims_b64[4200];
	int64_t now = (int64_t)time(NULL);
	int n = snprintf(claims, sizeof(claims),
	                 "{\"sub\":\"%" PRId64 "\",\"aud\":\"frontdesk\",\"tenant\":%" PRId64
	                 ",\"reseller\":%" PRId64 ",\"role\":\"tenant_admin\",\"scopes\":[%s],"
	                 "\"iss\":\"frontdesk\",\"iat\":%" PRId64 ",\"nbf\":%" PRId64 ",\"exp\":%" PRId64
	                 ",\"jti\":\"bench-%d-%lu\",\"tslug\":\"%s\",\"name\":\"%s\"}",
	                 account_id, tenant_id, account_id, scopes_json, now, now, now + 900, (int)getpid(), ++jti_seq,
	                 slug, username);
	if (n < 0 || (size_t)n >= sizeof(claims))
		die("claims: no room");
	b64(claims, (size_t)n, claims_b64, sizeof(claims_b64));
	int len = snprintf(out, TOK_MAX, "Bearer %s.%s", header_b64, claims_b64);
	if (len < 0 || len + 1 + 87 >= TOK_MAX)
		die("token: no room");
	unsigned char raw[64];
	es256_sign(out + 7, (size_t)len - 7, raw);
	out[len] = '.';
	b64(raw, sizeof(raw), out + len + 1, (size_t)(TOK_MAX - len - 1));
}

static PGresult *sql(PGconn *pg, const char *text, int n, const char *const *params, bool want_row)
{
	PGresult *res = PQexecParams(pg, text, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	if ((st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) || (want_row && PQntuples(res) != 1)) {
		fprintf(stderr, "bench_verify: %s\n  failed: %s", text, PQresultErrorMessage(res));
		exit(1);
	}
	return res;
}

static int64_t sql_id(PGconn *pg, const char *text, int n, const char *const *params)
{
	PGresult *res = sql(pg, text, n, params, true);
	int64_t v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return v;
}

static void exec(PGconn *pg, const char *text, int n, const char *const *params)
{
	PQclear(sql(pg, text, n, params, false));
}

/* The rows the verifier reads, inserted as the superuser in one transaction. */
static void setup_db(PGconn *pg)
{
	unsigned char rnd[8];
	randombytes_buf(rnd, sizeof(rnd));
	char hex[17];
	sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
	snprintf(kid, sizeof(kid), "bench-%s", hex);
	snprintf(slug, sizeof(slug), "bench-%s", hex);
	snprintf(username, sizeof(username), "bench-admin");

	exec(pg, "BEGIN", 0, NULL);
	const char *kp[] = { kid, pem };
	/* retire_at set: it verifies (the view keeps it until then) but is not the
	 * one signing key authd keeps (unique where retire_at IS NULL). */
	exec(pg, "INSERT INTO frontdesk.signing_keys (kid, private_sealed, public_key_pem, retire_at)"
	         " VALUES ($1, '\\x00'::bytea, $2, now() + interval '1 day')", 2, kp);
	const char *tp[] = { slug };
	tenant_id = sql_id(pg, "INSERT INTO frontdesk.tenants (slug, name) VALUES ($1, 'bench_verify')"
	                       " RETURNING id", 1, tp);
	char t[24], a[24], k[24], path[48];
	snprintf(t, sizeof(t), "%" PRId64, tenant_id);
	const char *sp[] = { t };
	exec(pg, "SELECT set_config('frontdesk.tenant_id', $1, true)", 1, sp);
	account_id = sql_id(pg, "SELECT nextval('frontdesk.accounts_id_seq')", 0, NULL);
	snprintf(a, sizeof(a), "%" PRId64, account_id);
	snprintf(path, sizeof(path), "%" PRId64 ".", account_id);
	const char *ap[] = { t, a, path, username };
	exec(pg, "INSERT INTO frontdesk.accounts (tenant_id, id, parent_id, path, role, username, password_hash)"
	         " VALUES ($1, $2, NULL, $3, 'tenant_admin', $4, 'not-a-hash')", 4, ap);

	api_key_id = sql_id(pg, "SELECT nextval('frontdesk.api_keys_id_seq')", 0, NULL);
	snprintf(k, sizeof(k), "%" PRId64, api_key_id);
	unsigned char secret[32], h[32];
	char secret_b64[48], h_hex[65], prefix[64];
	randombytes_buf(secret, sizeof(secret));
	b64(secret, sizeof(secret), secret_b64, sizeof(secret_b64));
	int n = snprintf(api_key_bearer, sizeof(api_key_bearer), "Bearer fdk_%s_%s_%s", t, k, secret_b64);
	crypto_generichash(h, sizeof(h), (const unsigned char *)api_key_bearer + 7, (size_t)n - 7, hash_key,
	                   sizeof(hash_key));
	sodium_bin2hex(h_hex, sizeof(h_hex), h, sizeof(h));
	snprintf(prefix, sizeof(prefix), "fdk_%s_%s", t, k);
	const char *kq[] = { t, k, a, prefix, h_hex };
	exec(pg, "INSERT INTO frontdesk.api_keys (tenant_id, id, account_id, name, prefix, secret_hash, scopes,"
	         " created_by) VALUES ($1, $2, $3, 'bench_verify', $4, decode($5, 'hex'), '{lines_read}', $3)",
	     5, kq);
	exec(pg, "COMMIT", 0, NULL);
}

/* Deletes what setup_db inserted; a failure is only reported. */
static void cleanup_db(PGconn *pg)
{
	char t[24];
	snprintf(t, sizeof(t), "%" PRId64, tenant_id);
	static const char *const steps[] = {
		"SELECT set_config('frontdesk.tenant_id', $1, true)",
		"DELETE FROM frontdesk.api_keys WHERE tenant_id = $1",
		"DELETE FROM frontdesk.accounts WHERE tenant_id = $1",
		"DELETE FROM frontdesk.tenants WHERE id = $1",
		"DELETE FROM frontdesk.signing_keys WHERE kid = $1",
	};
	PQclear(PQexec(pg, "BEGIN"));
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		const char *param[] = { i == 4 ? kid : t };
		PGresult *res = PQexecParams(pg, steps[i], 1, NULL, param, NULL, NULL, 0);
		ExecStatusType st = PQresultStatus(res);
		if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
			fprintf(stderr, "bench_verify: cleanup left tenant %s and key %s: %s", t, kid,
			        PQresultErrorMessage(res));
			PQclear(res);
			PQclear(PQexec(pg, "ROLLBACK"));
			return;
		}
		PQclear(res);
	}
	PQclear(PQexec(pg, "COMMIT"));
}

/* ---- the cases ---- */

static fd_verifier_t *verifier;
static char (*toks)[TOK_MAX];         /* BATCH fresh tokens */
static char cached_tok[TOK_MAX];
static unsigned char raw_der[80];
static int raw_derlen;
static const char *raw_msg;
static size_t raw_msglen;
static EVP_PKEY *verify_key;          /* the public key alone, parsed from PEM once */
static EVP_MD *sha256;

static void check_ok(int rc, const fd_err_t *err, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "bench_verify: %s refused: %d %s\n", what, rc, err->msg);
		exit(1);
	}
}

static void verify_one(const char *bearer, const char *what)
{
	fd_caller_t c;
	fd_err_t err = { 0 };
	check_ok(fd_verify_bearer(verifier, bearer, 0, &c, &err), &err, what);
}

static void run_batch(int cs)
{
	switch (cs) {
	case C_RAW:
		for (int i = 0; i < BATCH; i++) {
			EVP_MD_CTX *ctx = EVP_MD_CTX_new();
			if (!ctx || EVP_DigestVerifyInit(ctx, NULL, sha256, NULL, verify_key) != 1 ||
			    EVP_DigestVerify(ctx, raw_der, (size_t)raw_derlen, (const unsigned char *)raw_msg,
			                     raw_msglen) != 1)
				die("raw ECDSA verify failed");
			EVP_MD_CTX_free(ctx);
		}
		break;
	case C_LIBJWT:
		for (int i = 0; i < BATCH; i++) {
			jwt_t *j = NULL;
			if (jwt_decode(&j, toks[i] + 7, (const unsigned char *)pem, (int)pem_len) != 0 || !j)
				die("libjwt: jwt_decode refused the token");
			jwt_free(j);
		}
		break;
	case C_FIRST:
		for (int i = 0; i < BATCH; i++)
			verify_one(toks[i], "a first-seen token");
		break;
	case C_CACHED:
	case C_CACHED_MT:
		for (int i = 0; i < BATCH; i++)
			verify_one(cached_tok, "the cached token");
		break;
	case C_APIKEY:
	case C_APIKEY_MT:
		for (int i = 0; i < BATCH; i++)
			verify_one(api_key_bearer, "the API key");
		break;
	}
}

/* Multi-threaded cases: every thread runs batches until told to stop. */
static volatile int mt_stop;
static pthread_barrier_t mt_barrier;

struct mt_arg {
	int cs;
	unsigned long ops;
};

static void *mt_worker(void *p)
{
	struct mt_arg *a = p;
	pthread_barrier_wait(&mt_barrier);
	while (!__atomic_load_n(&mt_stop, __ATOMIC_RELAXED)) {
		run_batch(a->cs);
		a->ops += BATCH;
	}
	return NULL;
}

static result_t run_mt(int cs, int nthreads, double seconds)
{
	pthread_t th[MAX_THREADS];
	struct mt_arg args[MAX_THREADS];
	mt_stop = 0;
	pthread_barrier_init(&mt_barrier, NULL, (unsigned)nthreads + 1);
	for (int t = 0; t < nthreads; t++) {
		args[t] = (struct mt_arg){ .cs = cs };
		if (pthread_create(&th[t], NULL, mt_worker, &args[t]) != 0)
			die("cannot start a thread");
	}
	pthread_barrier_wait(&mt_barrier);
	double w0 = mono(), c0 = cpu();
	usleep((useconds_t)(seconds * 1e6));
	__atomic_store_n(&mt_stop, 1, __ATOMIC_RELAXED);
	unsigned long ops = 0;
	for (int t = 0; t < nthreads; t++) {
		pthread_join(th[t], NULL);
		ops += args[t].ops;
	}
	double wall = mono() - w0, c = cpu() - c0;
	pthread_barrier_destroy(&mt_barrier);
	return (result_t){ ops / wall, wall * 1e6 / ops, c * 1e6 / ops };
}

/* Untimed, before each case: a fresh token for the cached cases, and the
 * cached entries (re)filled, as a status older than the TTL is read again
 * from the database. */
static void warm_up(void)
{
	make_token(cached_tok);
	verify_one(cached_tok, "the cached token");
	verify_one(api_key_bearer, "the API key");
}

static result_t run_case(int cs, double seconds, int nthreads)
{
	if (cs == C_CACHED_MT || cs == C_APIKEY_MT)
		return run_mt(cs, nthreads, seconds);
	double wall = 0, c = 0;
	unsigned long ops = 0;
	while (wall < seconds) {
		if (cs == C_FIRST || cs == C_LIBJWT)
			for (int i = 0; i < BATCH; i++)
				make_token(toks[i]);
		double w0 = mono(), c0 = cpu();
		run_batch(cs);
		c += cpu() - c0;
		wall += mono() - w0;
		ops += BATCH;
	}
	return (result_t){ ops / wall, wall * 1e6 / ops, c * 1e6 / ops };
}

/* Is case cs in the comma-separated list (NULL: every case)? */
static bool selected(const char *only, int cs)
{
	if (!only)
		return true;
	size_t n = strlen(case_names[cs]);
	for (const char *p = only; *p;) {
		size_t len = strcspn(p, ",");
		if (len == n && strncmp(p, case_names[cs], n) == 0)
			return true;
		p += len + (p[len] == ',');
	}
	return false;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(int cs, int rounds, size_t field)
{
	double v[MAX_ROUNDS];
	for (int r = 0; r < rounds; r++)
		v[r] = *(const double *)((const char *)&results[cs][r] + field);
	qsort(v, (size_t)rounds, sizeof(double), cmp_double);
	return rounds % 2 ? v[rounds / 2] : (v[rounds / 2 - 1] + v[rounds / 2]) / 2;
}

int main(int argc, char **argv)
{
	const char *conninfo = NULL, *db_user = "frontdesk_authd", *only = NULL, *scopes = "lines_read";
	double seconds = 1;
	int rounds = 3, nthreads = 2;
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (!strcmp(k, "--db")) conninfo = v;
		else if (!strcmp(k, "--db-user")) db_user = v;
		else if (!strcmp(k, "--seconds")) seconds = atof(v);
		else if (!strcmp(k, "--rounds")) rounds = atoi(v);
		else if (!strcmp(k, "--threads")) nthreads = atoi(v);
		else if (!strcmp(k, "--only")) only = v;
		else if (!strcmp(k, "--scopes")) scopes = v;
		else { fprintf(stderr, "bench_verify: unknown option %s\n", k); return 2; }
	}
	int nselected = 0;
	for (int cs = 0; cs < NCASES; cs++)
		nselected += selected(only, cs);
	if (!conninfo || seconds <= 0 || rounds < 1 || rounds > MAX_ROUNDS || nthreads < 1 ||
	    nthreads > MAX_THREADS || !nselected ||
	    (strcmp(scopes, "lines_read") != 0 && strcmp(scopes, "all") != 0)) {
		fprintf(stderr, "usage: bench_verify --db CONNINFO (a migrated database, as superuser) "
		                "[--seconds S] [--rounds 1..%d] [--threads 1..%d] [--db-user ROLE] "
		                "[--scopes lines_read|all] [--only CASE,...]\n",
		        MAX_ROUNDS, MAX_THREADS);
		return 2;
	}
	if (strcmp(scopes, "all") == 0) {
		/* Every scope the API defines, as claims name them. */
		size_t o = 0;
		for (int sc = 1; sc <= FD_SCOPE_MAX; sc++) {
			const char *name = fd_scope_name((fd_scope_t)sc);
			if (name)
				o += (size_t)snprintf(scopes_json + o, sizeof(scopes_json) - o, "%s\"%s\"", o ? "," : "",
				                      name);
		}
	}
	fd_log_init("bench_verify", FD_LOG_WARN);
	if (sodium_init() < 0)
		die("libsodium failed to initialise");
	randombytes_buf(hash_key, sizeof(hash_key));

	/* The signing key, and its public half as PEM (what the database holds). */
	if (!(sign_key = EVP_EC_gen("P-256")))
		die("cannot generate a P-256 key");
	BIO *bio = BIO_new(BIO_s_mem());
	char *p;
	if (!bio || PEM_write_bio_PUBKEY(bio, sign_key) != 1)
		die("cannot write the public key");
	long plen = BIO_get_mem_data(bio, &p);
	if (plen <= 0 || (size_t)plen >= sizeof(pem))
		die("public key PEM: no room");
	memcpy(pem, p, (size_t)plen);
	pem_len = (size_t)plen;
	BIO_free(bio);
	bio = BIO_new_mem_buf(pem, (int)pem_len);
	if (!bio || !(verify_key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)))
		die("cannot read the public key back");
	BIO_free(bio);
	if (!(sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)))
		die("no SHA-256");

	PGconn *pg = PQconnectdb(conninfo);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "bench_verify: --db: %s", PQerrorMessage(pg));
		return 1;
	}
	setup_db(pg);
	char header[128];
	snprintf(header, sizeof(header), "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", kid);
	b64(header, strlen(header), header_b64, sizeof(header_b64));

	fd_err_t err = { 0 };
	fd_db_opts_t dbo = { .conninfo = conninfo, .user = db_user, .application_name = "bench_verify",
	                     .pool_size = nthreads + 2, .prepared = true };
	fd_db_t *db = fd_db_open(&dbo, &err);
	if (!db) {
		fprintf(stderr, "bench_verify: database: %s\n", err.msg);
		return 1;
	}
	fd_verifier_opts_t vo = { .db = db, .hash_key = hash_key, .issuer = "frontdesk",
	                          .audience = "authd", .skew_seconds = 30, .status_ttl_ms = 4000 };
	if (!(verifier = fd_verifier_new(&vo, &err))) {
		fprintf(stderr, "bench_verify: verifier: %s\n", err.msg);
		return 1;
	}
	if (!(toks = calloc(BATCH, TOK_MAX)))
		die("out of memory");

	/* The raw baseline verifies one real token's signature. */
	make_token(cached_tok);
	char *dot = strrchr(cached_tok, '.');
	raw_msg = cached_tok + 7;
	raw_msglen = (size_t)(dot - raw_msg);
	{
		unsigned char sig[64];
		if (fd_b64url_decode(dot + 1, strlen(dot + 1), sig, sizeof(sig)) != 64)
			die("own signature unreadable");
		ECDSA_SIG *es = ECDSA_SIG_new();
		BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
		unsigned char *q = raw_der;
		if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s) ||
		    (raw_derlen = i2d_ECDSA_SIG(es, NULL)) <= 0 || raw_derlen > (int)sizeof(raw_der) ||
		    i2d_ECDSA_SIG(es, &q) != raw_derlen)
			die("DER signature");
		ECDSA_SIG_free(es);
		static char msg_copy[TOK_MAX];
		memcpy(msg_copy, raw_msg, raw_msglen);
		raw_msg = msg_copy;
	}

	printf("# bench_verify: tenant %" PRId64 ", account %" PRId64 ", kid %s; %d rounds of %.1f s a case;"
	       " mt cases: %d threads; %ld CPUs online; tokens of %zu bytes, API key of %zu bytes\n",
	       tenant_id, account_id, kid, rounds, seconds, nthreads, sysconf(_SC_NPROCESSORS_ONLN),
	       strlen(cached_tok) - 7, strlen(api_key_bearer) - 7);
	fd_verifier_stats_t st_case[NCASES] = { 0 };
	for (int r = 0; r < rounds; r++) {
		for (int cs = 0; cs < NCASES; cs++) {
			if (!selected(only, cs))
				continue;
			fd_verifier_stats_t s0, s1;
			warm_up();
			fd_verifier_stats(verifier, &s0);
			results[cs][r] = run_case(cs, seconds, nthreads);
			fd_verifier_stats(verifier, &s1);
			st_case[cs].token_hits += s1.token_hits - s0.token_hits;
			st_case[cs].token_misses += s1.token_misses - s0.token_misses;
			st_case[cs].status_hits += s1.status_hits - s0.status_hits;
			st_case[cs].status_misses += s1.status_misses - s0.status_misses;
			st_case[cs].api_key_hits += s1.api_key_hits - s0.api_key_hits;
			st_case[cs].api_key_misses += s1.api_key_misses - s0.api_key_misses;
			st_case[cs].key_refreshes += s1.key_refreshes - s0.key_refreshes;
			printf("bench %s rate=%.0f us_per_op=%.3f cpu_us_per_op=%.3f\n", case_names[cs],
			       results[cs][r].rate, results[cs][r].us, results[cs][r].cpu_us);
			fflush(stdout);
		}
	}

	if (only) {
		fd_verifier_free(verifier);
		fd_db_close(db);
		cleanup_db(pg);
		PQfinish(pg);
		return 0;
	}
	printf("--- medians over %d rounds\n", rounds);
	double med_cpu[NCASES], med_rate[NCASES];
	for (int cs = 0; cs < NCASES; cs++) {
		med_rate[cs] = median(cs, rounds, offsetof(result_t, rate));
		med_cpu[cs] = median(cs, rounds, offsetof(result_t, cpu_us));
		printf("median %-26s rate=%9.0f/s us_per_op=%8.3f cpu_us_per_op=%8.3f\n", case_names[cs],
		       med_rate[cs], median(cs, rounds, offsetof(result_t, us)), med_cpu[cs]);
	}
	printf("ratio cpu verify_first_seen/ecdsa_p256_verify_raw=%.2f jwt_decode_libjwt/verify_first_seen=%.2f\n",
	       med_cpu[C_FIRST] / med_cpu[C_RAW], med_cpu[C_LIBJWT] / med_cpu[C_FIRST]);
	printf("ratio rate verify_cached_mt/verify_cached=%.2f verify_api_key_cached_mt/verify_api_key_cached=%.2f"
	       " (%d threads; %d would be perfect scaling on idle cores)\n",
	       med_rate[C_CACHED_MT] / med_rate[C_CACHED], med_rate[C_APIKEY_MT] / med_rate[C_APIKEY], nthreads,
	       nthreads);
	printf("goal verify_first_seen cpu_us_per_op <= 400: %s (%.1f)\n",
	       med_cpu[C_FIRST] <= 400 ? "met" : "MISSED", med_cpu[C_FIRST]);
	printf("goal verify_cached cpu_us_per_op <= 5: %s (%.2f)\n", med_cpu[C_CACHED] <= 5 ? "met" : "MISSED",
	       med_cpu[C_CACHED]);
	for (int cs = C_FIRST; cs < NCASES; cs++)
		printf("stats %-26s token_hits=%" PRIu64 " token_misses=%" PRIu64 " status_hits=%" PRIu64
		       " status_misses=%" PRIu64 " api_key_hits=%" PRIu64 " api_key_misses=%" PRIu64
		       " key_refreshes=%" PRIu64 "\n",
		       case_names[cs], st_case[cs].token_hits, st_case[cs].token_misses, st_case[cs].status_hits,
		       st_case[cs].status_misses, st_case[cs].api_key_hits, st_case[cs].api_key_misses,
		       st_case[cs].key_refreshes);

	fd_verifier_free(verifier);
	fd_db_close(db);
	cleanup_db(pg);
	PQfinish(pg);
	EVP_PKEY_free(verify_key);
	EVP_PKEY_free(sign_key);
	EVP_MD_free(sha256);
	free(toks);
	return 0;
}
