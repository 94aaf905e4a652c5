/* auth.c - the verifier: bearer credentials to callers (see fd/auth.h).
 *
 * The path of a token seen before: hash it, find it in the token cache, find
 * its account's status in the status cache; no parsing, no signature, no
 * database. A first-seen token: header (alg pinned) -> public key by kid ->
 * ECDSA P-256 over SHA-256 -> claims -> status. API keys: the key's row and
 * its account's status come together from the database, then live in the
 * API-key cache for status_ttl_ms. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include "fd/auth.h"
#include "fd/db.h"
#include "fd/log.h"

#define TOKEN_MAX 4096          /* longer bearer values are refused unread */
#define HEADER_MAX 256          /* decoded JWT header */
#define PAYLOAD_MAX 2048        /* decoded JWT claims */
#define MAX_KEYS 16
#define KEY_REFRESH_MIN_MS 1000 /* an unknown kid reloads the keys at most this often */
#define KEY_REFRESH_MS 60000    /* and they are reloaded this often anyway */
#define CACHE_SLOTS 8192        /* per cache, a power of two */
#define CACHE_STRIPES 64

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- names ---- */

/* "SCOPE_CREDITS_CHARGE" -> "credits_charge", built once from the enum
 * descriptor the API generated, so a scope added to common.proto has its name. */
static char scope_names[FD_SCOPE_MAX + 1][40];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void names_init(void)
{
	const ProtobufCEnumDescriptor *d = &frontdesk__v1__scope__descriptor;
	for (unsigned i = 0; i < d->n_values; i++) {
		int v = d->values[i].value;
		const char *n = d->values[i].name;
		if (v <= 0 || v > FD_SCOPE_MAX || strncmp(n, "SCOPE_", 6) != 0)
			continue;
		size_t j = 0;
		for (n += 6; *n && j + 1 < sizeof(scope_names[v]); n++)
			scope_names[v][j++] = (char)tolower((unsigned char)*n);
		scope_names[v][j] = '\0';
	}
}

const char *fd_scope_name(fd_scope_t s)
{
	pthread_once(&names_once, names_init);
	if ((int)s <= 0 || (int)s > FD_SCOPE_MAX || !scope_names[s][0])
		return NULL;
	return scope_names[s];
}

fd_scope_t fd_scope_parse(const char *name, size_t len)
{
	pthread_once(&names_once, names_init);
	for (int s = 1; s <= FD_SCOPE_MAX; s++)
		if (scope_names[s][0] && strlen(scope_names[s]) == len && memcmp(scope_names[s], name, len) == 0)
			return (fd_scope_t)s;
	return (fd_scope_t)0;
}

static const char *const role_names[] = {
	[FD_ROLE_PLATFORM_ADMIN] = "platform_admin",
	[FD_ROLE_TENANT_ADMIN] = "tenant_admin",
	[FD_ROLE_RESELLER] = "reseller",
	[FD_ROLE_SERVICE] = "service",
};

const char *fd_role_name(fd_role_t r)
{
	if ((int)r <= 0 || (size_t)r >= sizeof(role_names) / sizeof(role_names[0]))
		return "unspecified";
	return role_names[r];
}

fd_role_t fd_role_parse(const char *name, size_t len)
{
	for (size_t r = 1; r < sizeof(role_names) / sizeof(role_names[0]); r++)
		if (strlen(role_names[r]) == len && memcmp(role_names[r], name, len) == 0)
			return (fd_role_t)r;
	return (fd_role_t)0;
}

/* ---- base64url, hex ---- */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int fd_b64url_encode(const unsigned char *in, size_t n, char *out, size_t outsz)
{
	size_t need = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
	if (need + 1 > outsz)
		return -1;
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = B64URL[v >> 18];
		out[o++] = B64URL[v >> 12 & 63];
		out[o++] = B64URL[v >> 6 & 63];
		out[o++] = B64URL[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = B64URL[v >> 18];
		out[o++] = B64URL[v >> 12 & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = B64URL[v >> 18];
		out[o++] = B64URL[v >> 12 & 63];
		out[o++] = B64URL[v >> 6 & 63];
	}
	out[o] = '\0';
	return (int)o;
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

int fd_b64url_decode(const char *in, size_t n, unsigned char *out, size_t outsz)
{
	if (n % 4 == 1)
		return -1;
	size_t need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
	if (need > outsz)
		return -1;
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64val(in[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	/* Leftover bits must be zero: one encoding per value (no malleable tokens). */
	if (acc & ((1u << bits) - 1))
		return -1;
	return (int)o;
}

int fd_hex_key32(const char *hex, const char *var, unsigned char out[32], fd_err_t *err)
{
	size_t len;
	if (!hex || strlen(hex) != 64 ||
	    sodium_hex2bin(out, 32, hex, 64, NULL, &len, NULL) != 0 || len != 32)
		return fd_err_set(err, FD_EINVAL, "%s: must be 64 hex digits (32 random bytes; e.g. "
		                  "`openssl rand -hex 32`)", var);
	return 0;
}

/* ---- a small JSON reader, for JWT headers and claims ---- */

typedef struct json {
	const char *p, *end;
} json_t;

static void json_ws(json_t *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static bool json_eat(json_t *j, char c)
{
	json_ws(j);
	if (j->p < j->end && *j->p == c) {
		j->p++;
		return true;
	}
	return false;
}

/* A string into out (NUL-terminated, at most outsz - 1 bytes). Escapes other
 * than \" \\ \/ and \uXXXX below 0x80 are refused: authd writes none, and a
 * claim that needs them is not one it wrote. */
static int json_string(json_t *j, char *out, size_t outsz, size_t *len)
{
	if (!json_eat(j, '"'))
		return -1;
	size_t o = 0;
	while (j->p < j->end && *j->p != '"') {
		char c = *j->p++;
		if ((unsigned char)c < 0x20)
			return -1;
		if (c == '\\') {
			if (j->p >= j->end)
				return -1;
			c = *j->p++;
			if (c == 'u') {
				if (j->end - j->p < 4)
					return -1;
				unsigned v = 0;
				for (int k = 0; k < 4; k++) {
					int d = j->p[k];
					v = v << 4 | (unsigned)(isdigit(d) ? d - '0' : (d | 32) >= 'a' && (d | 32) <= 'f' ? (d | 32) - 'a' + 10 : 99);
				}
				if (v == 0 || v >= 0x80)
					return -1;
				j->p += 4;
				c = (char)v;
			} else if (c != '"' && c != '\\' && c != '/') {
				return -1;
			}
		}
		if (o + 1 >= outsz)
			return -1;
		out[o++] = c;
	}
	if (!json_eat(j, '"'))
		return -1;
	out[o] = '\0';
	if (len)
		*len = o;
	return 0;
}

static int json_int(json_t *j, int64_t *v)
{
	json_ws(j);
	bool neg = j->p < j->end && *j->p == '-';
	if (neg)
		j->p++;
	if (j->p >= j->end || !isdigit((unsigned char)*j->p))
		return -1;
	int64_t x = 0;
	while (j->p < j->end && isdigit((unsigned char)*j->p)) {
		int d = *j->p++ - '0';
		if (x > (INT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
		return -1;
	*v = neg ? -x : x;
	return 0;
}

/* Skips any value (for claims this verifier does not use). */
static int json_skip(json_t *j, int depth)
{
	char tmp[PAYLOAD_MAX];
	json_ws(j);
	if (j->p >= j->end || depth > 8)
		return -1;
	char c = *j->p;
	if (c == '"')
		return json_string(j, tmp, sizeof(tmp), NULL);
	if (c == '{' || c == '[') {
		char close = c == '{' ? '}' : ']';
		j->p++;
		if (json_eat(j, close))
			return 0;
		do {
			if (c == '{' && (json_string(j, tmp, sizeof(tmp), NULL) < 0 || !json_eat(j, ':')))
				return -1;
			if (json_skip(j, depth + 1) < 0)
				return -1;
		} while (json_eat(j, ','));
		return json_eat(j, close) ? 0 : -1;
	}
	if (c == '-' || isdigit((unsigned char)c)) {
		j->p++;
		while (j->p < j->end && strchr("0123456789.eE+-", *j->p))
			j->p++;
		return 0;
	}
	static const char *const lits[] = { "true", "false", "null" };
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(lits[i]);
		if ((size_t)(j->end - j->p) >= n && memcmp(j->p, lits[i], n) == 0) {
			j->p += n;
			return 0;
		}
	}
	return -1;
}

/* ---- the caches ---- */

/* A direct-mapped table of fixed-size values under striped locks. A slot
 * holds one key; a newer entry for another key in the same slot replaces it
 * (it is a cache: the loser is verified again). */
typedef struct cache {
	size_t vsize;
	unsigned char *slots;          /* CACHE_SLOTS * slot_size */
	size_t slot_size;
	pthread_mutex_t locks[CACHE_STRIPES];
} cache_t;

typedef struct slot_head {
	unsigned char key[32];
	int64_t expire_ms;             /* 0: empty */
} slot_head_t;

static int cache_init(cache_t *c, size_t vsize)
{
	c->vsize = vsize;
	c->slot_size = (sizeof(slot_head_t) + vsize + 15) & ~(size_t)15;
	c->slots = calloc(CACHE_SLOTS, c->slot_size);
	if (!c->slots)
		return -1;
	for (int i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_init(&c->locks[i], NULL);
	return 0;
}

static void cache_fini(cache_t *c)
{
	if (!c->slots)
		return;
	sodium_memzero(c->slots, CACHE_SLOTS * c->slot_size);
	free(c->slots);
	for (int i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_destroy(&c->locks[i]);
}

static size_t cache_index(const unsigned char key[32])
{
	uint64_t h;
	memcpy(&h, key, sizeof(h));
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (size_t)(h & (CACHE_SLOTS - 1));
}

static bool cache_get(cache_t *c, const unsigned char key[32], int64_t now, void *out)
{
	size_t i = cache_index(key);
	slot_head_t *s = (slot_head_t *)(c->slots + i * c->slot_size);
	pthread_mutex_t *mu = &c->locks[i % CACHE_STRIPES];
	bool hit = false;
	pthread_mutex_lock(mu);
	if (s->expire_ms > now && sodium_memcmp(s->key, key, 32) == 0) {
		memcpy(out, s + 1, c->vsize);
		hit = true;
	}
	pthread_mutex_unlock(mu);
	return hit;
}

static void cache_put(cache_t *c, const unsigned char key[32], int64_t expire_ms, const void *val)
{
	size_t i = cache_index(key);
	slot_head_t *s = (slot_head_t *)(c->slots + i * c->slot_size);
	pthread_mutex_t *mu = &c->locks[i % CACHE_STRIPES];
	pthread_mutex_lock(mu);
	memcpy(s->key, key, 32);
	s->expire_ms = expire_ms;
	memcpy(s + 1, val, c->vsize);
	pthread_mutex_unlock(mu);
}

static void cache_clear(cache_t *c)
{
	for (int st = 0; st < CACHE_STRIPES; st++) {
		pthread_mutex_lock(&c->locks[st]);
		for (size_t i = (size_t)st; i < CACHE_SLOTS; i += CACHE_STRIPES)
			((slot_head_t *)(c->slots + i * c->slot_size))->expire_ms = 0;
		pthread_mutex_unlock(&c->locks[st]);
	}
}

/* ---- the verifier ---- */

typedef struct pubkey {
	char kid[65];
	EVP_PKEY *pkey;
} pubkey_t;

/* What the database says of an account now. */
typedef struct account_status {
	bool tenant_found;
	bool tenant_active;
	bool found;
	bool suspended;              /* it or an ancestor */
	fd_role_t role;
	unsigned permissions;
	char tenant_slug[64];
	char username[65];
	char path[FD_PATH_MAX];
} account_status_t;

struct fd_verifier {
	fd_db_t *db;
	unsigned char hash_key[32];    /* API keys: the stored keyed hash */
	unsigned char cache_key[32];   /* process-local: cache keys of tokens */
	char issuer[128];
	char audience[32];
	int64_t skew_s;
	int64_t ttl_ms;
	EVP_MD *sha256;

	cache_t tokens;                /* token hash -> fd_caller_t (claims only) */
	cache_t statuses;              /* (tenant, account) -> account_status_t */
	cache_t api_keys;              /* key hash -> fd_caller_t (complete) */

	pthread_mutex_t keys_mu;       /* the key list */
	pthread_mutex_t load_mu;       /* one reload at a time; others wait for it */
	pubkey_t keys[MAX_KEYS];
	int nkeys;
	uint64_t keys_gen;             /* bumped by every reload */
	int64_t keys_loaded_ms;        /* last reload attempt (under load_mu) */

	/* Counters: relaxed atomics, no lock on the hot path. */
	_Atomic uint64_t token_hits, token_misses, status_hits, status_misses, api_key_hits, api_key_misses,
		key_refreshes;
};

#define STAT(v, field) atomic_fetch_add_explicit(&(v)->field, 1, memory_order_relaxed)

fd_verifier_t *fd_verifier_new(const fd_verifier_opts_t *o, fd_err_t *err)
{
	if (sodium_init() < 0) {
		fd_err_set(err, FD_EINTERNAL, "libsodium failed to initialise");
		return NULL;
	}
	if (!o->db || !o->hash_key || !o->issuer || !o->audience ||
	    strlen(o->issuer) >= 128 || strlen(o->audience) >= 32 ||
	    o->status_ttl_ms < 1 || o->status_ttl_ms > 5000 || o->skew_seconds < 0 ||
	    o->skew_seconds > 300) {
		fd_err_set(err, FD_EINVAL, "verifier: bad options (issuer, audience, a status TTL of "
		           "1..5000 ms and a clock skew of 0..300 s are required)");
		return NULL;
	}
	fd_verifier_t *v = calloc(1, sizeof(*v));
	if (!v) {
		fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		return NULL;
	}
	v->db = o->db;
	memcpy(v->hash_key, o->hash_key, 32);
	randombytes_buf(v->cache_key, sizeof(v->cache_key));
	snprintf(v->issuer, sizeof(v->issuer), "%s", o->issuer);
	snprintf(v->audience, sizeof(v->audience), "%s", o->audience);
	v->skew_s = o->skew_seconds;
	v->ttl_ms = o->status_ttl_ms;
	pthread_mutex_init(&v->keys_mu, NULL);
	pthread_mutex_init(&v->load_mu, NULL);
	v->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!v->sha256 || cache_init(&v->tokens, sizeof(fd_caller_t)) < 0 ||
	    cache_init(&v->statuses, sizeof(account_status_t)) < 0 ||
	    cache_init(&v->api_keys, sizeof(fd_caller_t)) < 0) {
		fd_verifier_free(v);
		fd_err_set(err, FD_EEXHAUSTED, "verifier: out of memory");
		return NULL;
	}
	return v;
}

void fd_verifier_free(fd_verifier_t *v)
{
	if (!v)
		return;
	cache_fini(&v->tokens);
	cache_fini(&v->statuses);
	cache_fini(&v->api_keys);
	for (int i = 0; i < v->nkeys; i++)
		EVP_PKEY_free(v->keys[i].pkey);
	EVP_MD_free(v->sha256);
	pthread_mutex_destroy(&v->keys_mu);
	pthread_mutex_destroy(&v->load_mu);
	sodium_memzero(v->hash_key, sizeof(v->hash_key));
	free(v);
}

void fd_verifier_flush(fd_verifier_t *v)
{
	cache_clear(&v->tokens);
	cache_clear(&v->statuses);
	cache_clear(&v->api_keys);
	pthread_mutex_lock(&v->load_mu);
	v->keys_loaded_ms = 0;
	pthread_mutex_unlock(&v->load_mu);
}

void fd_verifier_stats(fd_verifier_t *v, fd_verifier_stats_t *out)
{
	out->token_hits = atomic_load(&v->token_hits);
	out->token_misses = atomic_load(&v->token_misses);
	out->status_hits = atomic_load(&v->status_hits);
	out->status_misses = atomic_load(&v->status_misses);
	out->api_key_hits = atomic_load(&v->api_key_hits);
	out->api_key_misses = atomic_load(&v->api_key_misses);
	out->key_refreshes = atomic_load(&v->key_refreshes);
}

/* ---- public keys ---- */

static const fd_sql_t SQL_KEYS = {
	"fd_auth_keys",
	"SELECT kid, public_key_pem FROM frontdesk.verification_keys"
	" WHERE retire_at IS NULL OR retire_at > now() - make_interval(secs => $1::int)"
	" ORDER BY created_at DESC LIMIT 16",
	1,
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

static void free_keys(pubkey_t *keys, int n)
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
	int64_t now = now_ms();
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
		free_keys(lk.keys, lk.n);
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
	free_keys(v->keys, v->nkeys);
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

/* ---- tokens ---- */

static int unauth(fd_err_t *err, const char *why)
{
	return fd_err_set(err, FD_EUNAUTH, "%s", why);
}

/* The header must be exactly what authd writes: alg ES256, typ JWT (if
 * present), a kid; nothing else. */
static int parse_header(const char *b64, size_t n, char kid[65], fd_err_t *err)
{
	unsigned char buf[HEADER_MAX];
	int len = fd_b64url_decode(b64, n, buf, sizeof(buf));
	if (len < 0)
		return unauth(err, "malformed token");
	json_t j = { (const char *)buf, (const char *)buf + len };
	bool alg = false;
	kid[0] = '\0';
	if (!json_eat(&j, '{'))
		return unauth(err, "malformed token");
	do {
		char key[16], val[65];
		if (json_string(&j, key, sizeof(key), NULL) < 0 || !json_eat(&j, ':') ||
		    json_string(&j, val, sizeof(val), NULL) < 0)
			return unauth(err, "malformed token header");
		if (strcmp(key, "alg") == 0 && !alg) {
			if (strcmp(val, "ES256") != 0)
				return unauth(err, "token algorithm not accepted (only ES256)");
			alg = true;
		} else if (strcmp(key, "typ") == 0) {
			if (strcmp(val, "JWT") != 0)
				return unauth(err, "malformed token header");
		} else if (strcmp(key, "kid") == 0 && !kid[0] && val[0]) {
			memcpy(kid, val, strlen(val) + 1);
		} else {
			return unauth(err, "malformed token header");
		}
	} while (json_eat(&j, ','));
	if (!json_eat(&j, '}') || (json_ws(&j), j.p != j.end) || !alg)
		return unauth(err, alg ? "malformed token header" : "token algorithm not accepted (only ES256)");
	if (!kid[0])
		return unauth(err, "token has no key id");
	return 0;
}

enum {
	C_ISS = 1 << 0, C_AUD = 1 << 1, C_SUB = 1 << 2, C_TENANT = 1 << 3, C_RESELLER = 1 << 4,
	C_ROLE = 1 << 5, C_SCOPES = 1 << 6, C_IAT = 1 << 7, C_NBF = 1 << 8, C_EXP = 1 << 9,
	C_JTI = 1 << 10, C_TSLUG = 1 << 11, C_NAME = 1 << 12,
};
#define C_REQUIRED (C_ISS | C_AUD | C_SUB | C_TENANT | C_ROLE | C_SCOPES | C_IAT | C_NBF | C_EXP | C_JTI)

typedef struct claims {
	char iss[128], aud[32], sub[64];
	int64_t tenant, reseller, iat, nbf, exp;
	fd_role_t role;
	fd_scopes_t scopes;
	char tslug[64], name[65];
} claims_t;

static int parse_claims(const char *b64, size_t n, claims_t *c)
{
	unsigned char buf[PAYLOAD_MAX];
	int len = fd_b64url_decode(b64, n, buf, sizeof(buf));
	if (len < 0)
		return -1;
	json_t j = { (const char *)buf, (const char *)buf + len };
	unsigned seen = 0;
	if (!json_eat(&j, '{'))
		return -1;
	if (json_eat(&j, '}'))
		return -1;
	do {
		char key[16], tmp[64];
		size_t tl;
		if (json_string(&j, key, sizeof(key), NULL) < 0 || !json_eat(&j, ':'))
			return -1;
		unsigned bit = 0;
		int rc = 0;
		if (strcmp(key, "iss") == 0) {
			bit = C_ISS;
			rc = json_string(&j, c->iss, sizeof(c->iss), NULL);
		} else if (strcmp(key, "aud") == 0) {
			bit = C_AUD;
			rc = json_string(&j, c->aud, sizeof(c->aud), NULL);
		} else if (strcmp(key, "sub") == 0) {
			bit = C_SUB;
			rc = json_string(&j, c->sub, sizeof(c->sub), NULL);
		} else if (strcmp(key, "tenant") == 0) {
			bit = C_TENANT;
			rc = json_int(&j, &c->tenant);
		} else if (strcmp(key, "reseller") == 0) {
			bit = C_RESELLER;
			rc = json_int(&j, &c->reseller);
		} else if (strcmp(key, "role") == 0) {
			bit = C_ROLE;
			rc = json_string(&j, tmp, sizeof(tmp), &tl);
			if (rc == 0 && !(c->role = fd_role_parse(tmp, tl)))
				rc = -1;
		} else if (strcmp(key, "scopes") == 0) {
			bit = C_SCOPES;
			if (!json_eat(&j, '['))
				return -1;
			if (!json_eat(&j, ']')) {
				do {
					fd_scope_t s;
					if (json_string(&j, tmp, sizeof(tmp), &tl) < 0 || !(s = fd_scope_parse(tmp, tl)))
						return -1;
					c->scopes |= FD_SCOPE(s);
				} while (json_eat(&j, ','));
				if (!json_eat(&j, ']'))
					return -1;
			}
		} else if (strcmp(key, "iat") == 0) {
			bit = C_IAT;
			rc = json_int(&j, &c->iat);
		} else if (strcmp(key, "nbf") == 0) {
			bit = C_NBF;
			rc = json_int(&j, &c->nbf);
		} else if (strcmp(key, "exp") == 0) {
			bit = C_EXP;
			rc = json_int(&j, &c->exp);
		} else if (strcmp(key, "jti") == 0) {
			bit = C_JTI;
			rc = json_string(&j, tmp, sizeof(tmp), NULL);
		} else if (strcmp(key, "tslug") == 0) {
			bit = C_TSLUG;
			rc = json_string(&j, c->tslug, sizeof(c->tslug), NULL);
		} else if (strcmp(key, "name") == 0) {
			bit = C_NAME;
			rc = json_string(&j, c->name, sizeof(c->name), NULL);
		} else {
			rc = json_skip(&j, 0);
		}
		if (rc < 0 || (seen & bit))
			return -1;    /* a claim given twice is ambiguous: refused */
		seen |= bit;
	} while (json_eat(&j, ','));
	if (!json_eat(&j, '}') || (json_ws(&j), j.p != j.end))
		return -1;
	return (seen & C_REQUIRED) == C_REQUIRED ? 0 : -1;
}

static int parse_id(const char *s, int64_t *out)
{
	char *end;
	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (*end || errno || v < 0)
		return -1;
	*out = v;
	return 0;
}

/* Claims -> caller, after the signature: every rule a token must pass except
 * the status of its tenant and account. */
static int claims_to_caller(fd_verifier_t *v, const claims_t *c, int64_t now_s, fd_caller_t *out,
                            fd_err_t *err)
{
	if (strcmp(c->iss, v->issuer) != 0)
		return unauth(err, "token issuer not accepted");
	if (c->exp + v->skew_s <= now_s)
		return unauth(err, "token expired");
	if (c->nbf - v->skew_s > now_s || c->iat - v->skew_s > now_s)
		return unauth(err, "token not valid yet");
	if (c->exp - c->iat > 900 + v->skew_s)
		return unauth(err, "token lifetime too long");
	memset(out, 0, sizeof(*out));
	out->role = c->role;
	out->scopes = c->scopes;
	out->tenant_id = c->tenant;
	out->expires_at = c->exp;
	if (c->role == FD_ROLE_SERVICE) {
		/* Service tokens are for one service only. */
		if (strcmp(c->aud, v->audience) != 0)
			return unauth(err, "token audience not accepted");
		if (strncmp(c->sub, "service:", 8) != 0 || !c->sub[8] || strlen(c->sub + 8) >= sizeof(out->service) ||
		    c->tenant != 0)
			return unauth(err, "malformed token");
		out->kind = FD_CRED_SERVICE_TOKEN;
		snprintf(out->service, sizeof(out->service), "%s", c->sub + 8);
		return 0;
	}
	if (strcmp(c->aud, "frontdesk") != 0)
		return unauth(err, "token audience not accepted");
	if (parse_id(c->sub, &out->account_id) < 0 || out->account_id <= 0 || c->tenant < 0 ||
	    c->reseller < 0 || (c->role == FD_ROLE_PLATFORM_ADMIN) != (c->tenant == 0))
		return unauth(err, "malformed token");
	out->kind = FD_CRED_ACCESS_TOKEN;
	out->reseller_id = c->reseller;
	snprintf(out->tenant_slug, sizeof(out->tenant_slug), "%s", c->tslug);
	snprintf(out->username, sizeof(out->username), "%s", c->name);
	return 0;
}

/* ---- status of tenants and accounts ---- */

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

/* Columns: tenant status, slug, then the account's role, username, path,
 * permissions, subtree_suspended from column `col`. */
static void read_status(PGresult *res, int row, int col, account_status_t *st)
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
		read_status(res, 0, 2, &q->st);
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

static int account_status(fd_verifier_t *v, int64_t tenant, int64_t account, int64_t deadline_ms,
                          account_status_t *st, fd_err_t *err)
{
	unsigned char key[32];
	status_key(tenant, account, key);
	int64_t now = now_ms();
	if (cache_get(&v->statuses, key, now, st)) {
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
	cache_put(&v->statuses, key, now + v->ttl_ms, st);
	return 0;
}

/* Refuses a caller whose tenant or account is not active, and fills in what
 * only the database knows now (path, permissions, slug). */
static int apply_status(const account_status_t *st, fd_caller_t *c, fd_err_t *err)
{
	if (!st->tenant_active)
		return unauth(err, "tenant suspended or unknown");
	if (!st->found || st->role != c->role)
		return unauth(err, "account unknown");
	if (st->suspended)
		return unauth(err, "account suspended");
	c->permissions = st->role == FD_ROLE_RESELLER ? st->permissions
	                                              : FD_PERM_CREATE_SUBRESELLERS | FD_PERM_CREATE_TRIALS;
	snprintf(c->path, sizeof(c->path), "%s", st->path);
	snprintf(c->tenant_slug, sizeof(c->tenant_slug), "%s", st->tenant_slug);
	snprintf(c->username, sizeof(c->username), "%s", st->username);
	return 0;
}

static void token_cache_key(fd_verifier_t *v, const char *tok, size_t n, unsigned char out[32])
{
	crypto_generichash(out, 32, (const unsigned char *)tok, n, v->cache_key, sizeof(v->cache_key));
}

static int verify_jwt(fd_verifier_t *v, const char *tok, size_t n, int64_t deadline_ms,
                      fd_caller_t *out, fd_err_t *err)
{
	int64_t now = now_ms();
	unsigned char ckey[32];
	token_cache_key(v, tok, n, ckey);
	if (cache_get(&v->tokens, ckey, now, out)) {
		STAT(v, token_hits);
	} else {
		STAT(v, token_misses);
		const char *dot1 = memchr(tok, '.', n);
		const char *dot2 = dot1 ? memchr(dot1 + 1, '.', n - (size_t)(dot1 + 1 - tok)) : NULL;
		if (!dot1 || !dot2 || memchr(dot2 + 1, '.', n - (size_t)(dot2 + 1 - tok)))
			return unauth(err, "malformed token");
		char kid[65];
		int rc = parse_header(tok, (size_t)(dot1 - tok), kid, err);
		if (rc < 0)
			return rc;
		unsigned char sig[64];
		if (fd_b64url_decode(dot2 + 1, n - (size_t)(dot2 + 1 - tok), sig, sizeof(sig)) != 64)
			return unauth(err, "malformed token signature");
		err->code = FD_OK;
		EVP_PKEY *key = find_key(v, kid, deadline_ms, err);
		if (!key)
			return err->code == FD_EUNAVAIL || err->code == FD_EDEADLINE ? -(int)err->code
			                                                              : unauth(err, "token key unknown");
		bool good = es256_verify(v, key, tok, (size_t)(dot2 - tok), sig);
		EVP_PKEY_free(key);
		if (!good)
			return unauth(err, "token signature invalid");
		claims_t c = { 0 };
		if (parse_claims(dot1 + 1, (size_t)(dot2 - dot1 - 1), &c) < 0)
			return unauth(err, "malformed token claims");
		rc = claims_to_caller(v, &c, now / 1000, out, err);
		if (rc < 0)
			return rc;
		cache_put(&v->tokens, ckey, (c.exp + v->skew_s) * 1000, out);
	}
	if (out->expires_at + v->skew_s <= now / 1000)
		return unauth(err, "token expired");
	if (out->kind == FD_CRED_SERVICE_TOKEN)
		return 0;
	account_status_t st;
	int rc = account_status(v, out->tenant_id, out->account_id, deadline_ms, &st, err);
	if (rc < 0)
		return rc;
	return apply_status(&st, out, err);
}

/* ---- API keys ---- */

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
	read_status(res, 0, 2, &q->st);
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
static int verify_api_key(fd_verifier_t *v, const char *tok, size_t n, int64_t deadline_ms,
                          fd_caller_t *out, fd_err_t *err)
{
	int64_t now = now_ms();
	unsigned char hash[32];
	crypto_generichash(hash, 32, (const unsigned char *)tok, n, v->hash_key, 32);
	if (!cache_get(&v->api_keys, hash, now, out)) {
		STAT(v, api_key_misses);
		int64_t tenant, id;
		char tmp[48];
		const char *p = tok + 4, *u1 = memchr(p, '_', n - 4);
		const char *u2 = u1 ? memchr(u1 + 1, '_', n - (size_t)(u1 + 1 - tok)) : NULL;
		if (!u1 || !u2 || u1 - p >= 20 || u2 - u1 - 1 >= 20 || n - (size_t)(u2 + 1 - tok) != 43)
			return unauth(err, "malformed API key");
		memcpy(tmp, p, (size_t)(u1 - p));
		tmp[u1 - p] = '\0';
		if (parse_id(tmp, &tenant) < 0)
			return unauth(err, "malformed API key");
		memcpy(tmp, u1 + 1, (size_t)(u2 - u1 - 1));
		tmp[u2 - u1 - 1] = '\0';
		if (parse_id(tmp, &id) < 0 || id <= 0)
			return unauth(err, "malformed API key");
		struct key_q q = { .v = v, .tenant = tenant, .id = id, .hash = hash, .out = out };
		fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = deadline_ms };
		int rc = fd_db_run_opts(v->db, &o, api_key_tx, &q, err);
		if (rc < 0)
			return rc == -FD_EUNAVAIL || rc == -FD_EDEADLINE ? rc : unauth(err, "API key cannot be checked");
		if (!q.found || !q.match)
			return unauth(err, "invalid API key");
		if (q.revoked)
			return unauth(err, "API key revoked");
		int rc2 = apply_status(&q.st, out, err);
		if (rc2 < 0)
			return rc2;
		int64_t until = now + v->ttl_ms;
		if (out->expires_at && out->expires_at * 1000 < until)
			until = out->expires_at * 1000;
		cache_put(&v->api_keys, hash, until, out);
	} else {
		STAT(v, api_key_hits);
	}
	if (out->expires_at && out->expires_at <= now / 1000)
		return unauth(err, "API key expired");
	return 0;
}

int fd_verify_bearer(fd_verifier_t *v, const char *authorization, int64_t deadline_ms,
                     fd_caller_t *out, fd_err_t *err)
{
	if (!authorization)
		return unauth(err, "no credential: send `authorization: Bearer <token or API key>`");
	if (strncasecmp(authorization, "Bearer ", 7) != 0)
		return unauth(err, "authorization: expected `Bearer <token or API key>`");
	const char *tok = authorization + 7;
	size_t n = strnlen(tok, TOKEN_MAX + 1);
	if (n == 0 || n > TOKEN_MAX)
		return unauth(err, "malformed credential");
	for (size_t i = 0; i < n; i++)
		if (!isgraph((unsigned char)tok[i]))
			return unauth(err, "malformed credential");
	if (n > 4 && memcmp(tok, "fdk_", 4) == 0)
		return verify_api_key(v, tok, n, deadline_ms, out, err);
	return verify_jwt(v, tok, n, deadline_ms, out, err);
}

int fd_verifier_tenant(fd_verifier_t *v, int64_t tenant, int64_t deadline_ms, bool *active, fd_err_t *err)
{
	account_status_t st;
	int rc = account_status(v, tenant, 0, deadline_ms, &st, err);
	if (rc < 0)
		return rc;
	if (!st.tenant_found)
		return fd_err_set(err, FD_ENOTFOUND, "tenant %" PRId64 " not found", tenant);
	*active = st.tenant_active;
	return 0;
}

/* ---- handlers' questions ---- */

int fd_caller_need(const fd_caller_t *c, fd_scope_t s, fd_err_t *err)
{
	if (c->scopes & FD_SCOPE(s))
		return 0;
	return fd_err_set(err, FD_EPERM, "this credential lacks the scope %s", fd_scope_name(s));
}

int fd_caller_tenant(const fd_caller_t *c, int64_t requested, int64_t *tenant, fd_err_t *err)
{
	if (requested < 0)
		return fd_err_set(err, FD_EINVAL, "tenant_id: must be 0 (your own) or a tenant id");
	if (requested == 0 || requested == c->tenant_id) {
		*tenant = c->tenant_id;
		return 0;
	}
	if (c->role == FD_ROLE_PLATFORM_ADMIN || c->role == FD_ROLE_SERVICE) {
		*tenant = requested;
		return 0;
	}
	return fd_err_set(err, FD_ENOTFOUND, "tenant %" PRId64 " not found", requested);
}
