/* tokens.c - the tokens authd issues to people: access tokens (ES256 JWTs
 * signed by keys.c, with the scopes of the account's role) and refresh
 * tokens (fdr_<tenant>_<id>_<secret>, stored as a keyed hash, rotated on
 * use by sessions.c). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sodium.h>
#include "authd.h"
#include "fd/clock.h"

#define SCOPE(x) FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_##x)

fd_scopes_t role_scopes(fd_role_t role)
{
	/* The calls only services make (linesd's, the HTTP edge's): no person's
	 * token or API key carries them. */
	const fd_scopes_t service_only =
		SCOPE(CREDITS_CHARGE) | SCOPE(CREDITS_REFUND) | SCOPE(ROUTE) | SCOPE(PLAYBACK_AUTHORIZE) |
		SCOPE(LINE_CHANNELS_READ) | SCOPE(PLAYBACK_EVENTS) | SCOPE(SESSIONS_REPORT) | SCOPE(HOSTS_RESOLVE);
	fd_scopes_t all = 0;
	for (int s = 1; s <= FD_SCOPE_MAX; s++)
		if (fd_scope_name((fd_scope_t)s))
			all |= FD_SCOPE(s);
	switch (role) {
	case FD_ROLE_PLATFORM_ADMIN:
		return all & ~service_only;
	case FD_ROLE_TENANT_ADMIN:
		return all & ~service_only & ~SCOPE(TENANTS_WRITE) & ~SCOPE(BANDWIDTH_WRITE);
	case FD_ROLE_RESELLER:
		return SCOPE(TENANTS_READ) | SCOPE(RESELLERS_READ) | SCOPE(RESELLERS_WRITE) | SCOPE(API_KEYS_READ) |
		       SCOPE(API_KEYS_WRITE) | SCOPE(CREDITS_READ) | SCOPE(CREDITS_TRANSFER) | SCOPE(CATALOG_READ) |
		       SCOPE(LINES_READ) | SCOPE(LINES_WRITE) | SCOPE(LINES_TRIAL) | SCOPE(SESSIONS_READ) |
		       SCOPE(SESSIONS_WRITE) | SCOPE(AUDIT_READ);   /* its subtree's events */
	default:
		return 0;
	}
}

char *scopes_text(fd_arena_t *arena, fd_scopes_t scopes, const char *quote)
{
	char *out = fd_arena_strdup(arena, "");
	for (int s = 1; s <= FD_SCOPE_MAX && out; s++)
		if (scopes & FD_SCOPE(s))
			out = fd_arena_printf(arena, "%s%s%s%s%s", out, out[0] ? "," : "", quote,
			                      fd_scope_name((fd_scope_t)s), quote);
	return out;
}

Frontdesk__V1__Scope *scopes_list(fd_arena_t *arena, fd_scopes_t scopes, size_t *n)
{
	Frontdesk__V1__Scope *v = fd_arena_zalloc(arena, sizeof(*v) * (FD_SCOPE_MAX + 1));
	*n = 0;
	for (int s = 1; s <= FD_SCOPE_MAX && v; s++)
		if (scopes & FD_SCOPE(s))
			v[(*n)++] = (Frontdesk__V1__Scope)s;
	return v;
}

Frontdesk__V1__Caller *caller_message(fd_arena_t *arena, const fd_caller_t *c)
{
	Frontdesk__V1__Caller *m = fd_arena_zalloc(arena, sizeof(*m));
	if (!m)
		return NULL;
	frontdesk__v1__caller__init(m);
	m->tenant_id = c->tenant_id;
	m->tenant_slug = fd_arena_strdup(arena, c->tenant_slug);
	m->role = (Frontdesk__V1__Role)c->role;
	m->account_id = c->account_id;
	m->reseller_id = c->reseller_id;
	m->username = fd_arena_strdup(arena, c->username);
	m->credential_kind = (Frontdesk__V1__CredentialKind)c->kind;
	m->api_key_id = c->api_key_id;
	m->service_name = fd_arena_strdup(arena, c->service);
	m->expires_at = c->expires_at;
	m->scopes = scopes_list(arena, c->scopes, &m->n_scopes);
	if (!m->tenant_slug || !m->username || !m->service_name || !m->scopes)
		return NULL;
	return m;
}

void account_caller(const account_row_t *acc, fd_caller_t *c)
{
	memset(c, 0, sizeof(*c));
	c->tenant_id = acc->tenant_id;
	c->account_id = acc->id;
	c->reseller_id = acc->role == FD_ROLE_PLATFORM_ADMIN ? 0 : acc->id;
	c->role = acc->role;
	c->kind = FD_CRED_ACCESS_TOKEN;
	c->permissions = acc->permissions;
	snprintf(c->tenant_slug, sizeof(c->tenant_slug), "%s", acc->tenant_slug);
	snprintf(c->username, sizeof(c->username), "%s", acc->username);
	snprintf(c->path, sizeof(c->path), "%s", acc->path);
}

int issue_access(authd_t *a, fd_call_t *call, const account_row_t *acc, char **token,
                 int64_t *expires_at, Frontdesk__V1__Caller **caller)
{
	fd_arena_t *arena = fd_call_arena(call);
	fd_caller_t c;
	account_caller(acc, &c);
	c.scopes = role_scopes(acc->role);
	char *scopes = scopes_text(arena, c.scopes, "\"");
	/* fd_now_s: the clock FRONTDESK_TEST_CLOCK_OFFSET_MS shifts. */
	int64_t now = fd_now_s();
	c.expires_at = now + a->cfg->access_ttl;
	/* Usernames and slugs are checked to need no JSON escaping. */
	char *claims = scopes ? fd_arena_printf(arena, "\"sub\":\"%" PRId64 "\",\"aud\":\"frontdesk\",\"tenant\":%" PRId64
	                                        ",\"reseller\":%" PRId64 ",\"role\":\"%s\",\"scopes\":[%s],"
	                                        "\"tslug\":\"%s\",\"name\":\"%s\"",
	                                        c.account_id, c.tenant_id, c.reseller_id, fd_role_name(c.role),
	                                        scopes, c.tenant_slug, c.username)
	                      : NULL;
	if (!claims)
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory for this request");
	*token = keys_sign(a, arena, claims, now, c.expires_at, fd_call_err(call));
	if (!*token)
		return -(int)fd_call_err(call)->code;
	*expires_at = c.expires_at;
	*caller = caller_message(arena, &c);
	return *caller ? 0 : fd_call_fail(call, FD_EEXHAUSTED, "out of memory for this request");
}

int issue_refresh(fd_tx_t *tx, authd_t *a, fd_arena_t *arena, int64_t tenant, int64_t account,
                  int64_t family, char **token, int64_t *expires_at)
{
	int64_t id;
	int rc = store_next_id(tx, SEQ_REFRESH_TOKENS, &id);
	if (rc < 0)
		return rc;
	char secret[44];
	new_secret(secret);
	*token = fd_arena_printf(arena, "fdr_%" PRId64 "_%" PRId64 "_%s", tenant, id, secret);
	sodium_memzero(secret, sizeof(secret));
	if (!*token)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	if (fd_arena_wipe_on_free(arena, *token, strlen(*token)) < 0) {
		sodium_memzero(*token, strlen(*token));
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	}
	char hh[65];
	secret_hash_hex(a, *token, strlen(*token), hh);
	return store_insert_refresh(tx, tenant, id, account, family, hh, a->cfg->refresh_ttl, expires_at);
}
