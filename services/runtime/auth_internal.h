/* auth_internal.h - the verifier's parts, shared by its files and by no one
 * else: auth.c (the verifier, names, base64url, the bearer dispatch),
 * auth_cache.c (the caches), auth_status.c (tenant and account status),
 * jwt.c (signed tokens) and apikey.c (API keys). */
#ifndef FD_AUTH_INTERNAL_H
#define FD_AUTH_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <openssl/evp.h>
#include "fd/auth.h"
#include "fd/db.h"

#define TOKEN_MAX 4096          /* longer bearer values are refused unread */
#define HEADER_MAX 256          /* decoded JWT header */
#define PAYLOAD_MAX 2048        /* decoded JWT claims */
#define MAX_KEYS 16
#define KEY_REFRESH_MIN_MS 1000 /* an unknown kid reloads the keys at most this often */
#define KEY_REFRESH_MS 60000    /* and they are reloaded this often anyway */
#define CACHE_SLOTS 8192        /* per cache, a power of two */
#define CACHE_STRIPES 64

/* A direct-mapped table of fixed-size values under striped locks. A slot
 * holds one key; a newer entry for another key in the same slot replaces it
 * (it is a cache: the loser is verified again). */
typedef struct auth_cache {
	size_t vsize;
	unsigned char *slots;          /* CACHE_SLOTS * slot_size */
	size_t slot_size;
	pthread_mutex_t locks[CACHE_STRIPES];
} auth_cache_t;

int auth_cache_init(auth_cache_t *c, size_t vsize);
void auth_cache_fini(auth_cache_t *c);       /* wipes the values */
/* Copies the value of key into out if present and not expired at now. */
bool auth_cache_get(auth_cache_t *c, const unsigned char key[32], int64_t now, void *out);
void auth_cache_put(auth_cache_t *c, const unsigned char key[32], int64_t expire_ms, const void *val);
void auth_cache_clear(auth_cache_t *c);

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

	auth_cache_t tokens;           /* token hash -> fd_caller_t (claims only) */
	auth_cache_t statuses;         /* (tenant, account) -> account_status_t */
	auth_cache_t api_keys;         /* key hash -> fd_caller_t (complete) */

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

/* -FD_EUNAUTH with why (a static text that reveals nothing secret). */
int auth_unauth(fd_err_t *err, const char *why);
/* A decimal id (digits only, no sign, fits int64): 0, or -1. */
int auth_parse_id(const char *s, int64_t *out);

/* The status of (tenant, account) (account 0: the tenant alone), from the
 * cache or the database (then cached for ttl_ms). */
int auth_account_status(fd_verifier_t *v, int64_t tenant, int64_t account, int64_t deadline_ms,
                        account_status_t *st, fd_err_t *err);
/* Columns from col: tenant status, slug, then the account's role, username,
 * path, permissions, subtree_suspended (NULL role: no such account). */
void auth_read_status(PGresult *res, int row, int col, account_status_t *st);
/* Refuses a caller whose tenant or account is not active, and fills in what
 * only the database knows now (path, permissions, slug). */
int auth_apply_status(const account_status_t *st, fd_caller_t *c, fd_err_t *err);

/* tok (n bytes, printable) as a JWT, or as an API key (fdk_...). */
int auth_verify_jwt(fd_verifier_t *v, const char *tok, size_t n, int64_t deadline_ms, fd_caller_t *out,
                    fd_err_t *err);
int auth_verify_api_key(fd_verifier_t *v, const char *tok, size_t n, int64_t deadline_ms, fd_caller_t *out,
                        fd_err_t *err);

/* Frees the verifier's public keys (fd_verifier_free). */
void auth_free_keys(pubkey_t *keys, int n);

#endif
