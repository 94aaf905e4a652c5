/* store.h - authd's SQL, all of it (migrations/0002_auth.sql and later):
 * each statement with the reader of its rows, so a reader finds every query
 * here. Every function runs inside the caller's transaction function;
 * results live in the arena it is given (the call's, freed when the call
 * ends) or in the caller's buffers. Each returns 0 (or 1/0 for "found" where
 * it says so), or -code with fd_tx_err(tx) set; out of memory is
 * -FD_EEXHAUSTED. flags are fd_tx_exec's (FD_TX_LAST: the transaction's last
 * statement). Paths are the reseller tree's ("1.5.9."): a subtree prefix
 * (fd_subtree_prefix) limits a statement to what the caller sees. */
#ifndef AUTHD_STORE_H
#define AUTHD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "fd/auth.h"
#include "fd/db.h"
#include "fd/idem.h"
#include "frontdesk/v1/auth.pb-c.h"

/* ---- ids ---- */

typedef enum store_seq {
	SEQ_TENANTS,                 /* frontdesk.tenants_id_seq */
	SEQ_ACCOUNTS,                /* frontdesk.accounts_id_seq */
	SEQ_REFRESH_TOKENS,          /* frontdesk.refresh_tokens_id_seq */
	SEQ_API_KEYS,                /* frontdesk.api_keys_id_seq */
} store_seq_t;
/* The sequence's next value (ids are taken first where a statement needs
 * them twice, or before the tenant of a transaction exists). */
int store_next_id(fd_tx_t *tx, store_seq_t seq, int64_t *id) FD_MUSTCHECK;

/* ---- tenants (a platform-level table) ---- */

/* Moves the transaction's tenant setting (row-level security) to tenant:
 * CreateTenant's transaction is the new tenant's, its idempotency key the
 * platform's. */
int store_set_tenant(fd_tx_t *tx, int64_t tenant) FD_MUSTCHECK;
int store_insert_tenant(fd_tx_t *tx, fd_arena_t *arena, int64_t id, const char *slug, const char *name,
                        Frontdesk__V1__Tenant **out) FD_MUSTCHECK;
/* 1 with *out, or 0 when there is no such tenant. */
int store_tenant(fd_tx_t *tx, fd_arena_t *arena, int64_t id, unsigned flags, Frontdesk__V1__Tenant **out) FD_MUSTCHECK;
/* Tenants after id `after`, in id order, at most limit; status 0: any; query
 * "": any, else a case-insensitive part of the slug or name. */
int store_list_tenants(fd_tx_t *tx, fd_arena_t *arena, int64_t after, Frontdesk__V1__TenantStatus status,
                       const char *query, int limit, Frontdesk__V1__Tenant ***out, size_t *n) FD_MUSTCHECK;
/* Sets the status (with the reason when suspending): 1 with *out, or 0 when
 * there is no such tenant. */
int store_set_tenant_status(fd_tx_t *tx, fd_arena_t *arena, int64_t id, Frontdesk__V1__TenantStatus status,
                            const char *reason, Frontdesk__V1__Tenant **out) FD_MUSTCHECK;
/* The tenant a login names: 1 with its id and whether it is active, or 0. */
int store_tenant_by_slug(fd_tx_t *tx, const char *slug, unsigned flags, int64_t *id, bool *active) FD_MUSTCHECK;

/* ---- accounts: the reseller tree ---- */

/* What a token for an account says of it (login, refresh). */
typedef struct account_row {
	int64_t tenant_id, id, parent_id;
	fd_role_t role;
	char username[65];
	char tenant_slug[64];
	char path[FD_PATH_MAX];
	unsigned permissions;
} account_row_t;

/* The tenant's root account, its admin, with id (store_next_id). */
int store_insert_root(fd_tx_t *tx, fd_arena_t *arena, int64_t tenant, int64_t id, const char *username,
                      const char *display_name, const char *password_hash, Frontdesk__V1__Reseller **out) FD_MUSTCHECK;

typedef struct store_new_reseller {
	int64_t tenant, id;          /* id from store_next_id */
	int64_t parent;              /* 0: the tenant's root */
	const char *prefix;          /* the parent must be inside it */
	const char *username, *display_name, *password_hash, *notes;
	unsigned permissions;        /* FD_PERM_* */
} store_new_reseller_t;
/* 1 with *out, or 0 when the parent is not in the prefix's subtree. A taken
 * username is -FD_EEXISTS. */
int store_insert_reseller(fd_tx_t *tx, fd_arena_t *arena, const store_new_reseller_t *r,
                          Frontdesk__V1__Reseller **out) FD_MUSTCHECK;
/* Account id in the prefix's subtree: 1 with *out, or 0. */
int store_reseller(fd_tx_t *tx, fd_arena_t *arena, int64_t tenant, int64_t id, const char *prefix,
                   Frontdesk__V1__Reseller **out) FD_MUSTCHECK;

typedef struct store_reseller_filter {
	int64_t tenant;
	const char *prefix;
	int64_t after;               /* ids above it */
	int64_t parent;              /* 0: any */
	Frontdesk__V1__ResellerStatus status;   /* 0: any */
	const char *query;           /* "": any; else part of the username or display name */
	int limit;
} store_reseller_filter_t;
int store_list_resellers(fd_tx_t *tx, fd_arena_t *arena, const store_reseller_filter_t *f,
                         Frontdesk__V1__Reseller ***out, size_t *n) FD_MUSTCHECK;

/* UpdateReseller's change: NULL / 0 fields stay as they are. */
typedef struct store_reseller_update {
	int64_t tenant, id;
	const char *prefix;
	const char *display_name;
	const char *permissions;     /* a text[] literal (permissions_text) */
	const char *password_hash;
	Frontdesk__V1__ResellerStatus status;
	const char *notes;
	const char *old_password_hash;   /* the hash the row must still have (own password); NULL: any */
} store_reseller_update_t;
/* 1 with *out (as the row is now), or 0 when it is not in the subtree or its
 * password hash changed meanwhile. */
int store_update_reseller(fd_tx_t *tx, fd_arena_t *arena, const store_reseller_update_t *u,
                          Frontdesk__V1__Reseller **out) FD_MUSTCHECK;
/* The account's password hash: 1, or 0 when there is no such account. */
int store_password_hash(fd_tx_t *tx, int64_t tenant, int64_t id, unsigned flags, char out[160]) FD_MUSTCHECK;
/* The role of account id in the prefix's subtree: 1, or 0. */
int store_account_role(fd_tx_t *tx, int64_t tenant, int64_t id, const char *prefix, fd_role_t *role) FD_MUSTCHECK;
/* The id of the account named username: 1, or 0. */
int store_account_id(fd_tx_t *tx, int64_t tenant, const char *username, int64_t *id) FD_MUSTCHECK;
/* The account a login names: 1 with *acc (but its tenant_slug), its password
 * hash, and whether it and every account above it are active; or 0. */
int store_login_account(fd_tx_t *tx, int64_t tenant, const char *username, unsigned flags, account_row_t *acc,
                        char hash[160], bool *active) FD_MUSTCHECK;
int store_touch_login(fd_tx_t *tx, int64_t tenant, int64_t id) FD_MUSTCHECK;

/* ---- failed logins (a platform-level table of counters by key) ---- */

/* Counts an attempt under key in a window of window_s seconds: *attempts in
 * the window so far, *retry_in the seconds left of it, *started when it
 * began (epoch seconds as text, in the arena). */
int store_count_attempt(fd_tx_t *tx, fd_arena_t *arena, const char *key, int64_t window_s, int64_t *attempts,
                        int64_t *retry_in, const char **started) FD_MUSTCHECK;
/* Takes one attempt back (it was not a guess). */
int store_uncount_attempt(fd_tx_t *tx, const char *key, unsigned flags) FD_MUSTCHECK;
int store_clear_failures(fd_tx_t *tx, const char *key) FD_MUSTCHECK;
/* Drops up to 100 counters whose window ended two windows ago. */
int store_prune_failures(fd_tx_t *tx, int64_t window_s) FD_MUSTCHECK;
/* Orders the refusals of one counter key for the rest of the transaction. */
int store_limited_lock(fd_tx_t *tx, const char *key) FD_MUSTCHECK;
/* Counts a repeat in the window's 'login.rate_limited' event of actor from
 * source, begun at or after started (epoch seconds) for slug (NULL: a known
 * tenant's): 1 if there was one, 0 if the event is still to be added. */
int store_limited_repeat(fd_tx_t *tx, int64_t tenant, const char *actor, const char *source, const char *started,
                         const char *slug) FD_MUSTCHECK;

/* ---- refresh tokens ---- */

/* A new token's row, hash its keyed hash (hex), family 0: its own. Its expiry
 * in *expires_at (Unix seconds). */
int store_insert_refresh(fd_tx_t *tx, int64_t tenant, int64_t id, int64_t account, int64_t family,
                         const char *hash, int64_t ttl_s, int64_t *expires_at) FD_MUSTCHECK;

typedef struct store_refresh {
	int64_t family;
	char secret_hash[67];        /* as bytea's text: "\x" and 64 hex digits */
	bool used, revoked, expired;
	bool account_active;         /* the account and every account above it */
	bool tenant_active;
	account_row_t acc;
} store_refresh_t;
/* Token id, locked for this transaction: 1 with *out, or 0 if none. */
int store_lock_refresh(fd_tx_t *tx, int64_t tenant, int64_t id, store_refresh_t *out) FD_MUSTCHECK;
int store_use_refresh(fd_tx_t *tx, int64_t tenant, int64_t id) FD_MUSTCHECK;
/* Revokes what is not yet revoked: the family's tokens; the account's live
 * ones (live) or all of them; *revoked (may be NULL) how many. */
int store_revoke_family(fd_tx_t *tx, int64_t tenant, int64_t family, int *revoked) FD_MUSTCHECK;
int store_revoke_account(fd_tx_t *tx, int64_t tenant, int64_t account, bool live, unsigned flags,
                         int *revoked) FD_MUSTCHECK;

/* ---- API keys ---- */

typedef struct store_new_key {
	int64_t tenant, id, account, created_by, expires_at;   /* expires_at 0: never */
	const char *name, *prefix, *hash;   /* hash: keyed hash of the whole key, hex */
	const char *scopes;          /* a text[] literal of scope names */
} store_new_key_t;
int store_insert_api_key(fd_tx_t *tx, fd_arena_t *arena, const store_new_key_t *k, Frontdesk__V1__ApiKey **out) FD_MUSTCHECK;

typedef struct store_key_filter {
	int64_t tenant;
	const char *prefix;          /* keys of accounts in this subtree */
	int64_t after, account;      /* account 0: any */
	bool include_revoked;        /* and expired */
	int limit;
} store_key_filter_t;
int store_list_api_keys(fd_tx_t *tx, fd_arena_t *arena, const store_key_filter_t *f, Frontdesk__V1__ApiKey ***out,
                        size_t *n) FD_MUSTCHECK;
/* Revokes key id of an account in the prefix's subtree: 1 with *out and
 * whether this call revoked it (not already revoked), or 0 if none. */
int store_revoke_api_key(fd_tx_t *tx, fd_arena_t *arena, int64_t tenant, int64_t id, const char *prefix,
                         Frontdesk__V1__ApiKey **out, bool *revoked_now) FD_MUSTCHECK;

/* ---- the audit trail (written through fd/audit.h; read here) ---- */

typedef struct store_event_filter {
	int64_t tenant;
	const char *prefix;          /* events whose actor is in this subtree ("": any) */
	int64_t before;              /* ids below it (0: from the newest) */
	int64_t actor_account;       /* 0: any */
	const char *target;          /* "": any */
	const char *action;          /* "": any; exact */
	const char *action_prefix;   /* "": any; checked to hold no LIKE wildcard */
	int64_t since, until;        /* the half-open time range (0: open) */
	int limit;
} store_event_filter_t;
/* Newest first. */
int store_list_events(fd_tx_t *tx, fd_arena_t *arena, const store_event_filter_t *f, Frontdesk__V1__AuditEvent ***out,
                      size_t *n) FD_MUSTCHECK;

/* ---- brand host names (migrations/0018_hosts.sql, a platform-level table) ----
 * Every statement may run with or without a tenant (FD_SQL_PLATFORM): the
 * writes run in the transaction of the host's tenant, whose audit trail
 * gets the event. name is normalised (fd/hostname.h). */

/* Those that return a row give its id too (*id; id may be NULL): the API
 * does not show it, the audit trail's targets ("host:<id>") and the pages
 * of ListHosts use it. */

/* Adds name for tenant with status: 1 with *out, or 0 when the name is held
 * already (by any tenant; nothing changed). */
int store_insert_host(fd_tx_t *tx, fd_arena_t *arena, const char *name, int64_t tenant,
                      Frontdesk__V1__HostStatus status, Frontdesk__V1__Host **out, int64_t *id) FD_MUSTCHECK;
/* The host named name, whoever holds it: 1 with *out, or 0. */
int store_host(fd_tx_t *tx, fd_arena_t *arena, const char *name, unsigned flags, Frontdesk__V1__Host **out) FD_MUSTCHECK;
/* The same when tenant holds it, locked for this transaction: 1, or 0. */
int store_lock_host(fd_tx_t *tx, fd_arena_t *arena, const char *name, int64_t tenant, Frontdesk__V1__Host **out,
                    int64_t *id) FD_MUSTCHECK;
/* Sets the status and reason of name, held by tenant: 1 with *out as it is
 * now, or 0 when tenant does not hold it. */
int store_set_host_status(fd_tx_t *tx, fd_arena_t *arena, const char *name, int64_t tenant,
                          Frontdesk__V1__HostStatus status, const char *reason, Frontdesk__V1__Host **out,
                          int64_t *id) FD_MUSTCHECK;
/* Removes name, held by tenant: 1 with *out as it was, or 0. */
int store_delete_host(fd_tx_t *tx, fd_arena_t *arena, const char *name, int64_t tenant, Frontdesk__V1__Host **out,
                      int64_t *id) FD_MUSTCHECK;

typedef struct store_host_filter {
	int64_t tenant;              /* -1: every tenant's */
	Frontdesk__V1__HostStatus status;   /* 0: any */
	int64_t after;               /* rows after this id (the page token's) */
	int limit;
} store_host_filter_t;
/* In the order they were asked for; (*ids)[i] is (*out)[i]'s row id, for
 * the next page's token. */
int store_list_hosts(fd_tx_t *tx, fd_arena_t *arena, const store_host_filter_t *f, Frontdesk__V1__Host ***out,
                     int64_t **ids, size_t *n) FD_MUSTCHECK;
/* What the edge needs, in one snapshot: every approved host of every active
 * tenant with its slug (by name), and every active tenant but the platform
 * with an empty host_name (by id). */
int store_brand_hosts(fd_tx_t *tx, fd_arena_t *arena, Frontdesk__V1__BrandHost ***hosts, size_t *nhosts,
                      Frontdesk__V1__BrandHost ***tenants, size_t *ntenants) FD_MUSTCHECK;

/* ---- the platform's idempotency keys (CreateTenant) ----
 * fd/idem.h's claim and record, in the same rows of frontdesk.idempotency,
 * for a key of tenant 0 claimed in another tenant's transaction: fd_idem_claim
 * takes the key's tenant from the transaction, and CreateTenant's
 * transaction is the new tenant's (its audit event is that tenant's). Each
 * moves the tenant setting to the platform and leaves it there. Returns as
 * fd_idem_claim / fd_idem_done. */
int store_platform_idem_claim(fd_tx_t *tx, const fd_idem_t *k, fd_idem_replay_t *first) FD_MUSTCHECK;
int store_platform_idem_done(fd_tx_t *tx, const fd_idem_t *k, int64_t result_id,
                             const ProtobufCBinaryData *response) FD_MUSTCHECK;

/* ---- signing keys (platform-level) ---- */

/* The key that signs now: 1 with its kid, sealed private key (PQfreemem it)
 * and creation time, or 0 if there is none. */
int store_signing_key(fd_tx_t *tx, char kid[32], unsigned char **sealed, size_t *sealed_len,
                      int64_t *created_at) FD_MUSTCHECK;
/* A new key (a kid already there is left as it is). */
int store_insert_signing_key(fd_tx_t *tx, const char *kid, const char *sealed_hex, const char *public_pem) FD_MUSTCHECK;
/* Retires kid after secs, and drops the keys retired over a day ago: 1, or
 * 0 when kid was no longer the signing key (another replica rotated it). */
int store_retire_signing_key(fd_tx_t *tx, const char *kid, int64_t secs) FD_MUSTCHECK;
/* The keys tokens may still be signed with, newest first, at most 16: kid,
 * public key, times, signing (jwk left for the caller). */
int store_verification_keys(fd_tx_t *tx, fd_arena_t *arena, Frontdesk__V1__VerificationKey ***out, size_t *n) FD_MUSTCHECK;

#endif
