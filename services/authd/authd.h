/* authd.h - what authd's parts share: its settings, its state, input checks
 * and the conversions from rows to messages. */
#ifndef AUTHD_H
#define AUTHD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <libpq-fe.h>
#include "fd/audit.h"
#include "fd/auth.h"
#include "fd/db.h"
#include "fd/request.h"
#include "fd/service.h"
#include "fd/tenant.h"
#include "fd/wire.h"
#include "frontdesk/v1/auth.pb-c.h"

typedef struct authd_config {
	fd_service_config_t common;
	char *key_encryption_key;      /* 64 hex: seals the signing keys */
	int64_t access_ttl;            /* seconds */
	int64_t refresh_ttl;
	int64_t rotate_seconds;        /* a signing key signs this long */
	char *service_secrets;         /* "linesd=...,edged=..." */
	int64_t fail_per_account;      /* failed logins per (account, source) per window */
	int64_t fail_per_source;
	int64_t fail_window;           /* seconds */
	int64_t pwhash_concurrency;
	int64_t pwhash_opslimit;
	int64_t pwhash_memlimit_kib;
} authd_config_t;

typedef struct signing_key signing_key_t;

typedef struct authd {
	fd_service_t *svc;
	const authd_config_t *cfg;
	fd_db_t *db;
	unsigned char kek[32];
	unsigned char hash_key[32];

	/* The key that signs now (reloaded or rotated under mu). */
	pthread_mutex_t key_mu;
	signing_key_t *signing;

	/* Password hashes running now, bounded by cfg->pwhash_concurrency. */
	pthread_mutex_t pw_mu;
	pthread_cond_t pw_cv;
	int pw_running;
	char dummy_hash[128];          /* verified when the user does not exist */

	struct service_secret {
		char name[32];
		unsigned char hash[32];
		fd_scopes_t scopes;
	} services[8];
	int nservices;
} authd_t;

static inline authd_t *authd_of(fd_call_t *call)
{
	return fd_service_state(fd_call_service(call));
}

/* ---- handlers (one file per group) ---- */
int authd_create_tenant(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_get_tenant(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_list_tenants(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_suspend_tenant(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_login(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_refresh(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_logout(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_whoami(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_create_reseller(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_get_reseller(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_list_resellers(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_update_reseller(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_create_api_key(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_list_api_keys(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_revoke_api_key(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_list_audit_events(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_get_verification_keys(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_issue_service_token(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);

/* ---- keys.c: signing ---- */
int keys_init(authd_t *a, fd_err_t *err);
void keys_fini(authd_t *a);
/* A signed JWT for claims (a JSON object body without braces, e.g.
 * "\"sub\":\"5\",..."); iss, iat, nbf, exp, jti are added here. Returns a
 * string in arena. */
char *keys_sign(authd_t *a, fd_arena_t *arena, const char *claims, int64_t now, int64_t exp,
                fd_err_t *err);

/* ---- sessions.c: people's tokens ---- */
/* Role default scopes. */
fd_scopes_t role_scopes(fd_role_t role);
/* An access token for an account; fills the token, its expiry and the
 * caller message. */
typedef struct account_row {
	int64_t tenant_id, id, parent_id;
	fd_role_t role;
	char username[65];
	char tenant_slug[64];
	char path[FD_PATH_MAX];
	unsigned permissions;
} account_row_t;
int issue_access(authd_t *a, fd_call_t *call, const account_row_t *acc, char **token,
                 int64_t *expires_at, Frontdesk__V1__Caller **caller);
Frontdesk__V1__Caller *caller_message(fd_arena_t *arena, const fd_caller_t *c);

/* Password hashing with the concurrency bound. */
int pw_hash(authd_t *a, const char *password, char out[128], fd_err_t *err);
/* 0 when it matches, -FD_EUNAUTH when not, -FD_EEXHAUSTED when too many run. */
int pw_verify(authd_t *a, const char *hash, const char *password, fd_err_t *err);

/* ---- check.c: input ---- */
int check_username(const char *field, const char *s, fd_err_t *err);
int check_password(const char *field, const char *s, fd_err_t *err);
int check_slug(const char *field, const char *s, fd_err_t *err);

/* Keyed BLAKE2b of a secret (refresh tokens, API keys, service secrets). */
void secret_hash(const authd_t *a, const char *s, size_t n, unsigned char out[32]);
/* A new secret: 32 random bytes, base64url (43 characters + NUL). */
void new_secret(char out[44]);

/* Conversions. */
int64_t ts_col(PGresult *res, int row, int col);       /* epoch column; NULL -> 0 */
const char *id_str(fd_arena_t *arena, int64_t v);
/* The Reseller message of a row from RESELLER_COLS (resellers.c). The row's
 * own status is read from the row itself, not the subquery: in an UPDATE's
 * RETURNING the subquery still sees the row as it was. */
#define RESELLER_COLS                                                                      \
	"a.id, coalesce(a.parent_id, 0), a.username, a.display_name, a.role, a.status,"        \
	" a.permissions, a.path, a.notes, floor(extract(epoch FROM a.created_at))::bigint,"           \
	" floor(extract(epoch FROM a.updated_at))::bigint,"                                           \
	" coalesce(floor(extract(epoch FROM a.last_login_at))::bigint, 0),"                           \
	" a.status = 'suspended' OR coalesce((SELECT bool_or(s.status = 'suspended')"          \
	"   FROM frontdesk.accounts s WHERE s.tenant_id = a.tenant_id AND s.id <> a.id"         \
	"    AND s.id = ANY (frontdesk.path_ids(a.path))), false)"
Frontdesk__V1__Reseller *reseller_message(fd_arena_t *arena, int64_t tenant, PGresult *res, int row);
/* A set of scopes as names joined by commas, each between quote ("\"" for
 * JSON, "" for a text[] literal's inside), and as the API's enum list. */
char *scopes_text(fd_arena_t *arena, fd_scopes_t scopes, const char *quote);
Frontdesk__V1__Scope *scopes_list(fd_arena_t *arena, fd_scopes_t scopes, size_t *n);
const char *permissions_array(fd_arena_t *arena, unsigned perms);

/* Idempotency of creates (auth_idempotency). Within fn: a stored answer for
 * key is unpacked into *replay (same request) or -FD_EPRECOND (different). */
int idem_lookup(fd_tx_t *tx, fd_arena_t *arena, int64_t tenant, const char *method, const char *key,
                const unsigned char req_hash[32], const ProtobufCMessageDescriptor *desc,
                ProtobufCMessage **replay);
int idem_store(fd_tx_t *tx, int64_t tenant, const char *method, const char *key,
               const unsigned char req_hash[32], const ProtobufCMessage *resp);
/* The keyed BLAKE2b of the packed request (packed in the call's arena and
 * wiped: it may hold a password). -FD_EEXHAUSTED when out of memory: never a
 * made-up hash, which two different requests could share. */
int request_hash(const authd_t *a, fd_arena_t *arena, const ProtobufCMessage *req,
                 unsigned char out[32]) FD_MUSTCHECK;

/* The path prefix of the accounts a caller may see in a tenant: its own
 * subtree for resellers, everything ("") for tenant and platform admins. */
static inline const char *caller_subtree(const fd_caller_t *c)
{
	return c->role == FD_ROLE_RESELLER ? c->path : "";
}

/* The caller must be in scope s; and the tenant the request names. */
int authd_caller(fd_call_t *call, fd_scope_t s, fd_caller_t *c) FD_MUSTCHECK;

/* ---- audit.c: authd's rows of the audit trail ---- */
/* The caller an access token of acc would make (the actor of a login). */
void account_caller(const account_row_t *acc, fd_caller_t *c);
/* Appends one event (fd_audit_add) with target "<kind>:<id>" (id 0: none)
 * and detail pairs (NULL-terminated, may be NULL). In the tx's tenant. */
int audit_row(fd_tx_t *tx, fd_arena_t *arena, const fd_caller_t *actor, const char *actor_label,
              const char *source, const char *action, const char *kind, int64_t id,
              fd_audit_outcome_t outcome, const char *const *detail) FD_MUSTCHECK;
/* "login:<username>", the label of a caller that has not proved who it is. */
const char *login_label(fd_arena_t *arena, const char *username);

#define OOM(call) fd_call_fail((call), FD_EEXHAUSTED, "out of memory for this request")

#endif
