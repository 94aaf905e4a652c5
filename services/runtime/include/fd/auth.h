/* auth.h - who is calling: the verifier every service links.
 *
 * A call's `authorization: Bearer <credential>` metadata holds one of
 *   - an access token or service token: a JWT signed by authd with ES256,
 *     header {"alg":"ES256","typ":"JWT","kid":...}. The algorithm is pinned:
 *     a header naming anything else is refused before the claims are read.
 *     The signature is checked with the public key of its kid (read from the
 *     view frontdesk.verification_keys, refreshed on an unknown kid at most
 *     once a second); then iss, aud, exp, nbf and iat with a bounded skew.
 *   - an API key, fdk_<tenant>_<id>_<secret>: looked up in its tenant
 *     (frontdesk.api_key_refs) and compared as a keyed BLAKE2b hash in
 *     constant time; revoked or expired keys are refused.
 * and yields an fd_caller_t, the only source of a request's tenant.
 *
 * Caches: a verified token is kept (keyed by a BLAKE2b hash of it) until its
 * exp; the status of its tenant and account (tenant suspended, account or an
 * ancestor suspended, path, permissions) and an API key's row are kept for
 * status_ttl_ms (at most 5000), so a suspension or revocation is seen by
 * every service within that time.
 *
 * Threads: one verifier serves every thread of a service. */
#ifndef FD_AUTH_H
#define FD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "fd/status.h"
#include "frontdesk/v1/common.pb-c.h"

struct fd_db;
struct fd_call;

/* Roles, scopes and credential kinds are the API's own enum values. */
typedef Frontdesk__V1__Role fd_role_t;
typedef Frontdesk__V1__Scope fd_scope_t;
#define FD_ROLE_PLATFORM_ADMIN FRONTDESK__V1__ROLE__ROLE_PLATFORM_ADMIN
#define FD_ROLE_TENANT_ADMIN FRONTDESK__V1__ROLE__ROLE_TENANT_ADMIN
#define FD_ROLE_RESELLER FRONTDESK__V1__ROLE__ROLE_RESELLER
#define FD_ROLE_SERVICE FRONTDESK__V1__ROLE__ROLE_SERVICE

#define FD_CRED_ACCESS_TOKEN 1   /* CredentialKind values */
#define FD_CRED_API_KEY 2
#define FD_CRED_SERVICE_TOKEN 3

/* A set of scopes: bit (1 << scope). */
typedef uint64_t fd_scopes_t;
#define FD_SCOPE(s) ((fd_scopes_t)1 << (s))
#define FD_SCOPE_MAX 63

/* Reseller permissions (ResellerPermission values as bits). */
#define FD_PERM_CREATE_SUBRESELLERS (1u << 1)
#define FD_PERM_CREATE_TRIALS (1u << 2)

#define FD_PATH_MAX 360          /* "1.5.9.": 16 ids of up to 20 digits */

typedef struct fd_caller {
	int64_t tenant_id;           /* the credential's own tenant (0: platform, services) */
	int64_t account_id;          /* people and API keys; 0 for services */
	int64_t reseller_id;         /* the account it acts as (the root for tenant admins) */
	int64_t api_key_id;          /* API keys only */
	int64_t expires_at;          /* Unix seconds; 0: an API key without expiry */
	fd_role_t role;
	int kind;                    /* FD_CRED_* */
	fd_scopes_t scopes;
	unsigned permissions;        /* FD_PERM_*, as the database has them now */
	char tenant_slug[64];
	char username[65];
	char service[32];            /* service tokens: "linesd" */
	char path[FD_PATH_MAX];      /* the account's path in the reseller tree, "1.5.9." */
} fd_caller_t;

typedef struct fd_verifier fd_verifier_t;

typedef struct fd_verifier_opts {
	struct fd_db *db;                  /* the service's pool (reads the reference views) */
	const unsigned char *hash_key;     /* 32 bytes: FRONTDESK_SECRET_HASH_KEY */
	const char *issuer;                /* expected iss */
	const char *audience;              /* the service's own name: aud "frontdesk" (people's
	                                      tokens) or this name (service tokens) */
	int64_t skew_seconds;              /* allowed clock difference for exp, nbf, iat */
	int64_t status_ttl_ms;             /* 1..5000: how stale a status or API key may be */
} fd_verifier_opts_t;

fd_verifier_t *fd_verifier_new(const fd_verifier_opts_t *opts, fd_err_t *err) FD_MUSTCHECK;
void fd_verifier_free(fd_verifier_t *v);

/* Verifies "Bearer <credential>" (the metadata value) and fills *out.
 * -FD_EUNAUTH with a reason that reveals nothing secret when it is missing,
 * malformed, forged, expired, revoked, or its tenant or account is
 * suspended; -FD_EUNAVAIL when the database is needed and unreachable;
 * deadline_ms bounds any database lookup (0: none). */
int fd_verify_bearer(fd_verifier_t *v, const char *authorization, int64_t deadline_ms,
                     fd_caller_t *out, fd_err_t *err) FD_MUSTCHECK;

/* Whether tenant exists (-FD_ENOTFOUND if not) and is active, from the
 * status cache (at most status_ttl_ms old). */
int fd_verifier_tenant(fd_verifier_t *v, int64_t tenant, int64_t deadline_ms, bool *active,
                       fd_err_t *err) FD_MUSTCHECK;

/* Forget every cached token, key and status (tests; key rotation). */
void fd_verifier_flush(fd_verifier_t *v);

/* Counters (benchmarks, tests). */
typedef struct fd_verifier_stats {
	uint64_t token_hits, token_misses;     /* verified-token cache */
	uint64_t status_hits, status_misses;   /* tenant/account status cache */
	uint64_t api_key_hits, api_key_misses; /* API-key cache */
	uint64_t key_refreshes;                /* public keys read from the database */
} fd_verifier_stats_t;
void fd_verifier_stats(fd_verifier_t *v, fd_verifier_stats_t *out);

/* ---- what a handler asks of the caller ---- */

/* Needs scope s: -FD_EPERM naming it otherwise. */
int fd_caller_need(const fd_caller_t *c, fd_scope_t s, fd_err_t *err) FD_MUSTCHECK;

/* The tenant a request acts in: its tenant_id field (0 = the caller's own).
 * Tenant admins and resellers may name only their own (another answers
 * NOT_FOUND, as if it did not exist); platform admins and services name any.
 * Returns 0 and sets *tenant, or -code. */
int fd_caller_tenant(const fd_caller_t *c, int64_t requested, int64_t *tenant,
                     fd_err_t *err) FD_MUSTCHECK;

/* Scope names as JWT claims write them: "credits_charge" (static), NULL if
 * s is not a scope. */
const char *fd_scope_name(fd_scope_t s);
/* The scope of a claim name; 0 if unknown. */
fd_scope_t fd_scope_parse(const char *name, size_t len);
/* A text[] column of scope names ("{lines_read,credits_read}") as a set. */
fd_scopes_t fd_scopes_parse(const char *pg_array);
/* A text[] column of reseller permissions as FD_PERM_* bits. */
unsigned fd_permissions_parse(const char *pg_array);
const char *fd_role_name(fd_role_t r);           /* "tenant_admin" */
fd_role_t fd_role_parse(const char *name, size_t len);   /* 0 if unknown */

/* Base64url without padding. fd_b64url_encode writes 4*ceil(n/3) bytes at
 * most plus a NUL into out (outsz) and returns the length, -1 if it does not
 * fit; fd_b64url_decode returns the decoded length, -1 on bad input or no room. */
int fd_b64url_encode(const unsigned char *in, size_t n, char *out, size_t outsz);
int fd_b64url_decode(const char *in, size_t n, unsigned char *out, size_t outsz);

/* Parses a 64-hex-digit key from the environment into 32 bytes; -FD_EINVAL
 * naming var otherwise. */
int fd_hex_key32(const char *hex, const char *var, unsigned char out[32], fd_err_t *err) FD_MUSTCHECK;

#endif
