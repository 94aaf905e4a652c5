/* authd.h - what authd's parts share: its settings, its state, and each
 * part's functions. The parts, by file:
 *   main.c       settings, the method table, start and stop
 *   check.c      input rules, pure (check.h)
 *   enums.c      enum <-> stored text tables (enums.h)
 *   store.c      every SQL statement and the reading of its rows (store.h)
 *   secrets.c    keyed hashes, new secrets, idempotency of creates
 *   passwords.c  argon2id under a concurrency bound
 *   tokens.c     access tokens, refresh tokens, scopes of roles
 *   keys.c       signing keys, GetVerificationKeys
 *   services.c   service secrets, IssueServiceToken
 *   tenants.c    CreateTenant, GetTenant, ListTenants, SuspendTenant
 *   resellers.c  CreateReseller, GetReseller, ListResellers, UpdateReseller
 *   apikeys.c    CreateApiKey, ListApiKeys, RevokeApiKey
 *   login.c      Login and its failed-login limits
 *   sessions.c   Refresh, Logout, WhoAmI
 *   audit.c      authd's audit rows, ListAuditEvents
 *   hosts.c      brand host names: RequestHost, ApproveHost, ListHosts,
 *                DeleteHost, ListBrandHosts; the platform's own names
 * Handlers start from fd_tctx_begin (tenants/fd/tctx.h), but Login and
 * Refresh, which have no caller, and end in fd_reply. */
#ifndef AUTHD_H
#define AUTHD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "check.h"
#include "enums.h"
#include "store.h"
#include "fd/audit.h"
#include "fd/auth.h"
#include "fd/db.h"
#include "fd/hostname.h"
#include "fd/idem.h"
#include "fd/request.h"
#include "fd/service.h"
#include "fd/tctx.h"
#include "fd/tenant.h"
#include "fd/text.h"
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
	char *platform_hosts;          /* FRONTDESK_PLATFORM_HOSTS: the platform's own host names */
} authd_config_t;

#define AUTHD_PLATFORM_HOSTS_MAX 32

typedef struct signing_key signing_key_t;

typedef struct service_secret {
	char name[32];
	unsigned char hash[32];        /* secret_hash of its secret */
	fd_scopes_t scopes;
} service_secret_t;

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

	service_secret_t services[8];
	int nservices;

	/* FRONTDESK_PLATFORM_HOSTS' host names, normalised (its IP literals
	 * left out): reserved, with every name below them. */
	char platform_hosts[AUTHD_PLATFORM_HOSTS_MAX][FD_HOSTNAME_SIZE];
	int nplatform_hosts;
} authd_t;

static inline authd_t *authd_of(fd_call_t *call)
{
	return fd_service_state(fd_call_service(call));
}

/* ---- handlers ---- */
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
int authd_request_host(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_approve_host(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_list_hosts(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_delete_host(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int authd_list_brand_hosts(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);

/* ---- keys.c: signing ---- */
int keys_init(authd_t *a, fd_err_t *err);
void keys_fini(authd_t *a);
/* A signed JWT for claims (a JSON object body without braces, e.g.
 * "\"sub\":\"5\",..."); iss, iat, nbf, exp, jti are added here. Returns a
 * string in arena. */
char *keys_sign(authd_t *a, fd_arena_t *arena, const char *claims, int64_t now, int64_t exp,
                fd_err_t *err);

/* ---- services.c ---- */
/* "linesd=secret,edged=secret" into a->services (only hashes are kept). */
int services_parse(authd_t *a, const char *spec, fd_err_t *err);

/* ---- hosts.c ---- */
/* FRONTDESK_PLATFORM_HOSTS (fd_hostname_list_next's list) into
 * a->platform_hosts; -FD_EINVAL naming the variable and the entry. */
int hosts_parse(authd_t *a, const char *list, fd_err_t *err) FD_MUSTCHECK;

/* ---- passwords.c ---- */
/* Password hashing with the concurrency bound. */
int pw_hash(authd_t *a, const char *password, char out[128], fd_err_t *err) FD_MUSTCHECK;
/* 0 when it matches, -FD_EUNAUTH when not, -FD_EEXHAUSTED when too many run. */
int pw_verify(authd_t *a, const char *hash, const char *password, fd_err_t *err);
/* Wipes the request's password fields when the call's arena is freed (they
 * were unpacked into it): 0, or -FD_EEXHAUSTED (then they are wiped now). */
int pw_wipe_on_free(fd_arena_t *arena, char *const *fields, size_t n) FD_MUSTCHECK;

/* ---- tokens.c: people's tokens ---- */
/* Role default scopes. */
fd_scopes_t role_scopes(fd_role_t role);
/* A set of scopes as names joined by commas, each between quote ("\"" for
 * JSON, "" for a text[] literal's inside), and as the API's enum list. */
char *scopes_text(fd_arena_t *arena, fd_scopes_t scopes, const char *quote);
Frontdesk__V1__Scope *scopes_list(fd_arena_t *arena, fd_scopes_t scopes, size_t *n);
Frontdesk__V1__Caller *caller_message(fd_arena_t *arena, const fd_caller_t *c);
/* The caller an access token of acc would make (the actor of a login). */
void account_caller(const account_row_t *acc, fd_caller_t *c);
/* An access token for an account; fills the token, its expiry and the
 * caller message (in the call's arena). */
int issue_access(authd_t *a, fd_call_t *call, const account_row_t *acc, char **token,
                 int64_t *expires_at, Frontdesk__V1__Caller **caller) FD_MUSTCHECK;
/* A new refresh token for account (in family, 0 = a new family), in arena
 * (wiped when it is freed), with its expiry. */
int issue_refresh(fd_tx_t *tx, authd_t *a, fd_arena_t *arena, int64_t tenant, int64_t account,
                  int64_t family, char **token, int64_t *expires_at) FD_MUSTCHECK;

/* ---- secrets.c ---- */
/* Keyed BLAKE2b of a secret (refresh tokens, API keys, service secrets). */
void secret_hash(const authd_t *a, const char *s, size_t n, unsigned char out[32]);
/* The same as 64 hex digits. */
void secret_hash_hex(const authd_t *a, const char *s, size_t n, char out[65]);
/* A new secret: 32 random bytes, base64url (43 characters + NUL). */
void new_secret(char out[44]);
/* The idempotency of one of authd's creates (fd/idem.h, service "authd"):
 * fd_idem_make's key, and authd's own fingerprint of the request: a keyed
 * BLAKE2b, its packed copy wiped, since authd's requests carry passwords
 * (an unkeyed hash of one stored in a row would let a reader of the table
 * test guesses at BLAKE2b speed, not argon2id's). Keys are optional. 0 or
 * -code with the call's error set; out of memory fails the call. */
int authd_idem_make(const fd_tctx_t *t, const char *method, const char *client_key, const ProtobufCMessage *req,
                    fd_idem_t *k) FD_MUSTCHECK;
/* The first answer of a replay, unpacked into the arena (desc: the
 * response's); NULL with the transaction's error set when unreadable. */
ProtobufCMessage *authd_idem_answer(fd_tx_t *tx, const fd_idem_t *k, const fd_idem_replay_t *first,
                                    const ProtobufCMessageDescriptor *desc);
/* The answer packed for fd_idem_done, in the arena; data NULL when out of
 * memory. */
ProtobufCBinaryData authd_idem_pack(fd_arena_t *arena, const ProtobufCMessage *resp);

/* ---- audit.c: authd's rows of the audit trail ---- */
/* Appends one event (fd_audit_add) with target "<kind>:<id>" (id 0: none)
 * and detail pairs (NULL-terminated, may be NULL), for callers that have not
 * proved who they are (logins, refresh tokens: actor NULL, actor_label) or
 * outcomes other than OK; fd_tctx_audit otherwise. In the tx's tenant. */
int audit_row(fd_tx_t *tx, fd_arena_t *arena, const fd_caller_t *actor, const char *actor_label,
              const char *source, const char *action, const char *kind, int64_t id,
              fd_audit_outcome_t outcome, const char *const *detail) FD_MUSTCHECK;
/* t's caller's OK action on "<kind>:<id>" (fd_tctx_audit). */
int audit_ok(fd_tx_t *tx, const fd_tctx_t *t, const char *action, const char *kind, int64_t id,
             const char *const *detail) FD_MUSTCHECK;
/* "login:<username>", the label of a caller that has not proved who it is. */
const char *login_label(fd_arena_t *arena, const char *username);

/* Integer as text in the arena (NULL: out of memory). */
const char *id_str(fd_arena_t *arena, int64_t v);

#endif
