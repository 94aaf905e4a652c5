/* sessions.c - people's sessions: Login, Refresh, Logout, WhoAmI; password
 * hashing under a concurrency bound; failed-login limits. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>
#include "authd.h"
#include "fd/log.h"
#include "fd/tenant.h"

#define PW_WAIT_MS 2000      /* a login waits this long for a hashing slot */

/* ---- scopes of each role ---- */

fd_scopes_t role_scopes(fd_role_t role)
{
	const fd_scopes_t service_only =
		FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_CREDITS_CHARGE) | FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_CREDITS_REFUND) |
		FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_ROUTE) | FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_PLAYBACK_AUTHORIZE);
	fd_scopes_t all = 0;
	for (int s = 1; s <= FD_SCOPE_MAX; s++)
		if (fd_scope_name((fd_scope_t)s))
			all |= FD_SCOPE(s);
	switch (role) {
	case FD_ROLE_PLATFORM_ADMIN:
		return all & ~service_only;
	case FD_ROLE_TENANT_ADMIN:
		return all & ~service_only & ~FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_TENANTS_WRITE) &
		       ~FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_BANDWIDTH_WRITE);
	case FD_ROLE_RESELLER:
		return FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_TENANTS_READ) |
		       FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_RESELLERS_READ) |
		       FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_RESELLERS_WRITE) |
		       FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_API_KEYS_READ) |
		       FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_API_KEYS_WRITE) |
		       FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_CREDITS_READ) |
		       FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_CREDITS_TRANSFER) |
		       FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_CATALOG_READ) |
		       FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_LINES_READ) |
		       FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_LINES_WRITE) |
		       FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_LINES_TRIAL) |
		       FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_SESSIONS_READ) |
		       FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_SESSIONS_WRITE) |
		       FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_AUDIT_READ);   /* its subtree's events */
	default:
		return 0;
	}
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

/* ---- passwords ---- */

static int pw_acquire(authd_t *a, fd_err_t *err)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += PW_WAIT_MS / 1000;
	pthread_mutex_lock(&a->pw_mu);
	while (a->pw_running >= a->cfg->pwhash_concurrency) {
		if (pthread_cond_timedwait(&a->pw_cv, &a->pw_mu, &ts) != 0 &&
		    a->pw_running >= a->cfg->pwhash_concurrency) {
			pthread_mutex_unlock(&a->pw_mu);
			return fd_err_set(err, FD_EEXHAUSTED, "too many logins in progress; retry in a second");
		}
	}
	a->pw_running++;
	pthread_mutex_unlock(&a->pw_mu);
	return 0;
}

static void pw_release(authd_t *a)
{
	pthread_mutex_lock(&a->pw_mu);
	a->pw_running--;
	pthread_cond_signal(&a->pw_cv);
	pthread_mutex_unlock(&a->pw_mu);
}

int pw_hash(authd_t *a, const char *password, char out[128], fd_err_t *err)
{
	int rc = pw_acquire(a, err);
	if (rc < 0)
		return rc;
	rc = crypto_pwhash_str(out, password, strlen(password), (unsigned long long)a->cfg->pwhash_opslimit,
	                       (size_t)a->cfg->pwhash_memlimit_kib * 1024);
	pw_release(a);
	if (rc != 0)
		return fd_err_set(err, FD_EEXHAUSTED, "password hashing ran out of memory; retry");
	return 0;
}

int pw_verify(authd_t *a, const char *hash, const char *password, fd_err_t *err)
{
	int rc = pw_acquire(a, err);
	if (rc < 0)
		return rc;
	rc = crypto_pwhash_str_verify(hash, password, strlen(password));
	pw_release(a);
	return rc == 0 ? 0 : -FD_EUNAUTH;
}

/* ---- tokens for an account ---- */

int issue_access(authd_t *a, fd_call_t *call, const account_row_t *acc, char **token,
                 int64_t *expires_at, Frontdesk__V1__Caller **caller)
{
	fd_arena_t *arena = fd_call_arena(call);
	fd_caller_t c = {
		.tenant_id = acc->tenant_id,
		.account_id = acc->id,
		.reseller_id = acc->role == FD_ROLE_PLATFORM_ADMIN ? 0 : acc->id,
		.role = acc->role,
		.kind = FD_CRED_ACCESS_TOKEN,
		.scopes = role_scopes(acc->role),
		.permissions = acc->permissions,
	};
	snprintf(c.tenant_slug, sizeof(c.tenant_slug), "%s", acc->tenant_slug);
	snprintf(c.username, sizeof(c.username), "%s", acc->username);
	char *scopes = scopes_text(arena, c.scopes, "\"");
	int64_t now = time(NULL);
	c.expires_at = now + a->cfg->access_ttl;
	/* Usernames and slugs are checked to need no JSON escaping. */
	char *claims = scopes ? fd_arena_printf(arena, "\"sub\":\"%" PRId64 "\",\"aud\":\"frontdesk\",\"tenant\":%" PRId64
	                                        ",\"reseller\":%" PRId64 ",\"role\":\"%s\",\"scopes\":[%s],"
	                                        "\"tslug\":\"%s\",\"name\":\"%s\"",
	                                        c.account_id, c.tenant_id, c.reseller_id, fd_role_name(c.role),
	                                        scopes, c.tenant_slug, c.username)
	                      : NULL;
	if (!claims)
		return OOM(call);
	*token = keys_sign(a, arena, claims, now, c.expires_at, fd_call_err(call));
	if (!*token)
		return -(int)fd_call_err(call)->code;
	*expires_at = c.expires_at;
	*caller = caller_message(arena, &c);
	return *caller ? 0 : OOM(call);
}

/* ---- refresh tokens ---- */

static const fd_sql_t SQL_NEXT_REFRESH_ID = {
	"authd_next_refresh_id", "SELECT nextval('frontdesk.refresh_tokens_id_seq')", 0,
};
static const fd_sql_t SQL_INSERT_REFRESH = {
	"authd_insert_refresh",
	"INSERT INTO frontdesk.refresh_tokens (tenant_id, id, account_id, family_id, secret_hash, expires_at)"
	" VALUES ($1, $2, $3, coalesce($4::bigint, $2), decode($5, 'hex'),"
	"         now() + make_interval(secs => $6::int))"
	" RETURNING floor(extract(epoch FROM expires_at))::bigint",
	6,
};

/* A new refresh token for account (in family, 0 = a new family). */
static int new_refresh(fd_tx_t *tx, authd_t *a, fd_arena_t *arena, int64_t tenant, int64_t account,
                       int64_t family, char **token, int64_t *expires_at)
{
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_NEXT_REFRESH_ID, NULL, 0, &res);
	if (rc < 0)
		return rc;
	int64_t id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	char secret[44];
	new_secret(secret);
	*token = fd_arena_printf(arena, "fdr_%" PRId64 "_%" PRId64 "_%s", tenant, id, secret);
	sodium_memzero(secret, sizeof(secret));
	if (!*token)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	unsigned char h[32];
	char hh[65], ttl[24];
	secret_hash(a, *token, strlen(*token), h);
	sodium_bin2hex(hh, sizeof(hh), h, 32);
	snprintf(ttl, sizeof(ttl), "%" PRId64, a->cfg->refresh_ttl);
	const char *params[] = { id_str(arena, tenant), id_str(arena, id), id_str(arena, account),
		                     family ? id_str(arena, family) : NULL, hh, ttl };
	rc = fd_tx_exec(tx, &SQL_INSERT_REFRESH, params, 0, &res);
	if (rc < 0)
		return rc;
	*expires_at = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	return 0;
}

/* fdr_<tenant>_<id>_<secret> -> tenant, id; -1 if it is not that shape. */
static int parse_refresh(const char *tok, int64_t *tenant, int64_t *id)
{
	size_t n = strlen(tok);
	if (n < 8 || n > 100 || strncmp(tok, "fdr_", 4) != 0)
		return -1;
	char *end;
	long long t = strtoll(tok + 4, &end, 10);
	if (*end != '_' || end == tok + 4 || t < 0)   /* tenant 0: platform admins */
		return -1;
	long long i = strtoll(end + 1, &end, 10);
	if (*end != '_' || i <= 0 || strlen(end + 1) != 43)
		return -1;
	*tenant = t;
	*id = i;
	return 0;
}

/* ---- failed logins ---- */

/* Every attempt is counted before its password is checked, in one statement
 * per counter (the row lock orders concurrent attempts), so parallel guesses
 * cannot slip past the limit; a correct password takes its count back. */
static const fd_sql_t SQL_COUNT_ATTEMPT = {
	"authd_count_attempt",
	"INSERT INTO frontdesk.login_failures AS f (key, failures, window_start) VALUES ($1, 1, now())"
	" ON CONFLICT (key) DO UPDATE SET"
	"   failures = CASE WHEN f.window_start > now() - make_interval(secs => $2::int)"
	"                   THEN f.failures + 1 ELSE 1 END,"
	"   window_start = CASE WHEN f.window_start > now() - make_interval(secs => $2::int)"
	"                   THEN f.window_start ELSE now() END"
	" RETURNING f.failures, greatest(1, ceil(extract(epoch FROM"
	"           f.window_start + make_interval(secs => $2::int) - now())))::bigint,"
	"           extract(epoch FROM f.window_start)",
	2,
};
static const fd_sql_t SQL_UNCOUNT_ATTEMPT = {
	"authd_uncount_attempt",
	"UPDATE frontdesk.login_failures SET failures = greatest(failures - 1, 0) WHERE key = $1",
	1,
};
static const fd_sql_t SQL_CLEAR_FAILURES = {
	"authd_clear_failures", "DELETE FROM frontdesk.login_failures WHERE key = $1", 1,
};
static const fd_sql_t SQL_TENANT_BY_SLUG = {
	"authd_tenant_by_slug", "SELECT id, status FROM frontdesk.tenants WHERE slug = $1", 1,
};

typedef struct login_q {
	authd_t *a;
	fd_arena_t *arena;
	const char *slug, *username;
	const char *src_key, *acct_key;
	const char *source;          /* the address counted (src_key's) */
	int64_t retry_in;            /* > 0: over a limit */
	const char *window;          /* when the (account, source) window began (epoch seconds) */
	int64_t tenant;              /* 0 when the slug is unknown (tenant 0 is "platform") */
	bool tenant_found, tenant_active;
	account_row_t acc;
	bool found, active;
	char hash[160];
	/* on success */
	char *refresh;
	int64_t refresh_exp;
} login_q_t;

static int limits_tx(fd_tx_t *tx, void *arg)
{
	login_q_t *q = arg;
	char w[24];
	snprintf(w, sizeof(w), "%" PRId64, q->a->cfg->fail_window);
	const char *keys[] = { q->src_key, q->acct_key };
	const int64_t limits[] = { q->a->cfg->fail_per_source, q->a->cfg->fail_per_account };
	PGresult *res;
	int rc;
	q->retry_in = 0;
	for (int i = 0; i < 2; i++) {
		const char *params[] = { keys[i], w };
		if ((rc = fd_tx_exec(tx, &SQL_COUNT_ATTEMPT, params, 0, &res)) < 0)
			return rc;
		int64_t attempts = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		int64_t in = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		if (i == 1 && !(q->window = fd_arena_strdup(q->arena, PQgetvalue(res, 0, 2))))
			return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
		if (attempts > limits[i] && in > q->retry_in)
			q->retry_in = in;
	}
	const char *sp[] = { q->slug };
	rc = fd_tx_exec(tx, &SQL_TENANT_BY_SLUG, sp, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	q->tenant_found = PQntuples(res) == 1;
	if (q->tenant_found) {
		q->tenant = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		q->tenant_active = strcmp(PQgetvalue(res, 0, 1), "active") == 0;
	}
	return 0;
}

static const fd_sql_t SQL_ACCOUNT_BY_NAME = {
	"authd_account_by_name",
	"SELECT a.id, a.role, a.password_hash, a.path, a.permissions,"
	"       NOT EXISTS (SELECT 1 FROM frontdesk.accounts s WHERE s.tenant_id = a.tenant_id"
	"                     AND s.id = ANY (frontdesk.path_ids(a.path)) AND s.status <> 'active')"
	"  FROM frontdesk.accounts a WHERE a.tenant_id = $1 AND a.username = $2",
	2,
};

static void read_account(PGresult *res, int row, int64_t tenant, const char *slug, const char *username,
                         account_row_t *acc)
{
	memset(acc, 0, sizeof(*acc));
	acc->tenant_id = tenant;
	acc->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
	const char *role = PQgetvalue(res, row, 1);
	acc->role = fd_role_parse(role, strlen(role));
	snprintf(acc->path, sizeof(acc->path), "%s", PQgetvalue(res, row, 3));
	acc->permissions = fd_permissions_parse(PQgetvalue(res, row, 4));
	snprintf(acc->tenant_slug, sizeof(acc->tenant_slug), "%s", slug);
	snprintf(acc->username, sizeof(acc->username), "%s", username);
}

static int account_tx(fd_tx_t *tx, void *arg)
{
	login_q_t *q = arg;
	const char *params[] = { id_str(q->arena, q->tenant), q->username };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_ACCOUNT_BY_NAME, params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	q->found = PQntuples(res) == 1;
	if (q->found) {
		read_account(res, 0, q->tenant, q->slug, q->username, &q->acc);
		snprintf(q->hash, sizeof(q->hash), "%s", PQgetvalue(res, 0, 2));
		q->active = strcmp(PQgetvalue(res, 0, 5), "t") == 0;
	}
	return 0;
}

/* A correct password: the attempt was not a guess. */
static int uncount_tx(fd_tx_t *tx, void *arg)
{
	login_q_t *q = arg;
	const char *p1[] = { q->src_key };
	const char *p2[] = { q->acct_key };
	int rc = fd_tx_exec(tx, &SQL_UNCOUNT_ATTEMPT, p1, 0, NULL);
	return rc < 0 ? rc : fd_tx_exec(tx, &SQL_UNCOUNT_ATTEMPT, p2, FD_TX_LAST, NULL);
}

static const fd_sql_t SQL_TOUCH_LOGIN = {
	"authd_touch_login",
	"UPDATE frontdesk.accounts SET last_login_at = now() WHERE tenant_id = $1 AND id = $2",
	2,
};

/* Counters whose window ended long ago are dropped a few at a time by each
 * successful login, so the table stays the size of the recent attacks. */
static const fd_sql_t SQL_PRUNE_FAILURES = {
	"authd_prune_failures",
	"DELETE FROM frontdesk.login_failures WHERE key IN ("
	"  SELECT key FROM frontdesk.login_failures"
	"   WHERE window_start < now() - 2 * make_interval(secs => $1::int) LIMIT 100)",
	1,
};

static int success_tx(fd_tx_t *tx, void *arg)
{
	login_q_t *q = arg;
	const char *sp[] = { q->src_key };
	const char *cp[] = { q->acct_key };
	int rc = fd_tx_exec(tx, &SQL_UNCOUNT_ATTEMPT, sp, 0, NULL);
	if (rc < 0 || (rc = fd_tx_exec(tx, &SQL_CLEAR_FAILURES, cp, 0, NULL)) < 0)   /* resets its account's count */
		return rc;
	char w[24];
	snprintf(w, sizeof(w), "%" PRId64, q->a->cfg->fail_window);
	const char *wp[] = { w };
	if ((rc = fd_tx_exec(tx, &SQL_PRUNE_FAILURES, wp, 0, NULL)) < 0)
		return rc;
	const char *tp[] = { id_str(q->arena, q->tenant), id_str(q->arena, q->acc.id) };
	if ((rc = fd_tx_exec(tx, &SQL_TOUCH_LOGIN, tp, 0, NULL)) < 0)
		return rc;
	fd_caller_t actor;
	account_caller(&q->acc, &actor);
	if ((rc = audit_row(tx, q->arena, &actor, NULL, q->source, "login.success", "account", q->acc.id, FD_AUDIT_OK,
	                    NULL)) < 0)
		return rc;
	return new_refresh(tx, q->a, q->arena, q->tenant, q->acc.id, 0, &q->refresh, &q->refresh_exp);
}

/* ---- failed logins in the audit trail ----
 *
 * A failed login is an event of the tenant its slug names (tenant 0 when
 * the slug is unknown, with the slug in the detail); the actor is who it
 * claimed to be ("login:alice"), the target the account when it exists.
 * Refusals past the rate limit are one event per window and (account,
 * source): the first adds a 'login.rate_limited' row, the later ones count
 * in its repeats (the one UPDATE migrations/0006_audit.sql lets authd make).
 * An advisory lock on the counter's key orders concurrent refusals, so two
 * of them never both find no row and add one each. */

static const fd_sql_t SQL_LIMITED_LOCK = {
	"authd_limited_lock", "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", 1,
};
static const fd_sql_t SQL_ACCOUNT_ID = {
	"authd_account_id", "SELECT id FROM frontdesk.accounts WHERE tenant_id = $1 AND username = $2", 2,
};
static const fd_sql_t SQL_LIMITED_REPEAT = {
	"authd_limited_repeat",
	"UPDATE frontdesk.audit_events e SET repeats = e.repeats + 1, last_at = greatest(e.last_at, now())"
	" WHERE e.tenant_id = $1 AND e.action = 'login.rate_limited' AND e.actor = $2 AND e.source = $3"
	"   AND e.at >= to_timestamp($4::double precision)"
	"   AND (e.detail ->> 'tenant_slug') IS NOT DISTINCT FROM $5"
	" RETURNING e.id",
	5,
};

static int64_t login_tenant(const login_q_t *q)
{
	return q->tenant_found ? q->tenant : FD_PLATFORM_TENANT;
}

static int limited_tx(fd_tx_t *tx, void *arg)
{
	login_q_t *q = arg;
	const char *label = login_label(q->arena, q->username);
	const char *tenant = id_str(q->arena, login_tenant(q));
	if (!label || !tenant)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	const char *lp[] = { q->acct_key };
	const char *ap[] = { tenant, q->username };
	const char *rp[] = { tenant, label, q->source, q->window, q->tenant_found ? NULL : q->slug };
	PGresult *res;
	int rc;
	if ((rc = fd_tx_exec(tx, &SQL_LIMITED_LOCK, lp, 0, NULL)) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_LIMITED_REPEAT, rp, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) > 0)
		return 0;
	int64_t account = 0;
	if (q->tenant_found) {
		if ((rc = fd_tx_exec(tx, &SQL_ACCOUNT_ID, ap, 0, &res)) < 0)
			return rc;
		account = PQntuples(res) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	}
	const char *detail[] = { "tenant_slug", q->slug, NULL };
	return audit_row(tx, q->arena, NULL, label, q->source, "login.rate_limited", "account", account,
	                 FD_AUDIT_LIMITED, q->tenant_found ? NULL : detail);
}

typedef struct failure_q {
	login_q_t *q;
	bool password_ok;            /* right password, suspended account or tenant */
} failure_q_t;

static int failure_tx(fd_tx_t *tx, void *arg)
{
	failure_q_t *f = arg;
	login_q_t *q = f->q;
	int rc;
	if (f->password_ok) {        /* not a guess: its count is taken back */
		const char *p1[] = { q->src_key };
		const char *p2[] = { q->acct_key };
		if ((rc = fd_tx_exec(tx, &SQL_UNCOUNT_ATTEMPT, p1, 0, NULL)) < 0 ||
		    (rc = fd_tx_exec(tx, &SQL_UNCOUNT_ATTEMPT, p2, 0, NULL)) < 0)
			return rc;
	}
	const char *label = login_label(q->arena, q->username);
	if (!label)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	const char *unknown[] = { "tenant_slug", q->slug, NULL };
	const char *suspended[] = { "reason", !q->tenant_active ? "tenant suspended" : "account suspended", NULL };
	return audit_row(tx, q->arena, NULL, label, q->source, "login.failure", "account", q->found ? q->acc.id : 0,
	                 f->password_ok ? FD_AUDIT_REFUSED : FD_AUDIT_FAILED,
	                 f->password_ok ? suspended : q->tenant_found ? NULL : unknown);
}

/* The address failed logins are counted against: the peer's, or the one a
 * trusted portal forwards (its credential has SCOPE_FORWARD_CLIENT_ADDRESS),
 * for logins into its own tenant only: a portal of one tenant must not get
 * fresh counters, address after address, for another tenant's accounts. */
static int login_source(fd_call_t *call, const char *slug, const char *forwarded, const char **src)
{
	fd_arena_t *arena = fd_call_arena(call);
	if (forwarded[0]) {
		if (strlen(forwarded) > 64)
			return fd_call_fail(call, FD_EINVAL, "client_address: at most 64 characters");
		for (const char *p = forwarded; *p; p++)
			if (!strchr("0123456789abcdefABCDEF.:[]", *p))
				return fd_call_fail(call, FD_EINVAL, "client_address: an IPv4 or IPv6 address");
		fd_caller_t c;
		if (fd_call_metadata(call, "authorization") && fd_call_caller(call, &c) == 0 &&
		    (c.scopes & FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_FORWARD_CLIENT_ADDRESS)) &&
		    (c.role == FD_ROLE_PLATFORM_ADMIN || strcmp(c.tenant_slug, slug) == 0)) {
			*src = forwarded;
			return 0;
		}
	}
	/* "ipv4:127.0.0.1:5000" / "ipv6:[::1]:5000": the address without the port. */
	const char *peer = fd_call_peer(call);
	const char *p = strchr(peer, ':');
	p = p ? p + 1 : peer;
	const char *colon = strrchr(p, ':');
	size_t n = colon && colon > p ? (size_t)(colon - p) : strlen(p);
	if (n > 64)
		n = 64;
	*src = fd_arena_strndup(arena, p, n);
	return *src ? 0 : OOM(call);
}

int authd_login(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__LoginRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_err_t *err = fd_call_err(call);
	int rc;
	if (strcmp(req->tenant_slug, "platform") != 0 && (rc = check_slug("tenant_slug", req->tenant_slug, err)) < 0)
		return rc;
	if ((rc = check_username("username", req->username, err)) < 0)
		return rc;
	if (!req->password[0] || strlen(req->password) > 1024)
		return fd_call_fail(call, FD_EINVAL, "password: 1 to 1024 bytes");
	const char *src;
	if ((rc = login_source(call, req->tenant_slug, req->client_address, &src)) < 0)
		return rc;

	/* The audit trail writes addresses as fd_audit_source does for every
	 * service ("::1", not "[::1]"); a forwarded one as the portal sent it. */
	login_q_t q = { .a = a, .arena = arena, .slug = req->tenant_slug, .username = req->username,
		            .source = src == req->client_address ? src : fd_audit_source(arena, fd_call_peer(call)) };
	if (!q.source)
		return OOM(call);
	q.src_key = fd_arena_printf(arena, "src:%s", src);
	q.acct_key = fd_arena_printf(arena, "acct:%s:%s:%s", req->tenant_slug, req->username, src);
	if (!q.src_key || !q.acct_key)
		return OOM(call);
	fd_tx_opts_t po = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_call_deadline_ms(call) };
	if ((rc = fd_db_run_opts(a->db, &po, limits_tx, &q, err)) < 0)
		return rc;
	if (q.retry_in > 0) {
		fd_tx_opts_t lo = { .tenant_id = login_tenant(&q), .deadline_ms = fd_call_deadline_ms(call) };
		if ((rc = fd_db_run_opts(a->db, &lo, limited_tx, &q, err)) < 0)
			return rc;
		return fd_call_fail(call, FD_EEXHAUSTED, "too many failed logins; retry in %" PRId64 " s", q.retry_in);
	}
	if (q.tenant_found) {
		fd_tx_opts_t to = { .tenant_id = q.tenant, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
		if ((rc = fd_db_run_opts(a->db, &to, account_tx, &q, err)) < 0)
			return rc;
	}
	/* The same work and the same answer whether or not the user exists. */
	rc = pw_verify(a, q.found ? q.hash : a->dummy_hash, req->password, err);
	bool password_ok = rc == 0 && q.found;
	bool ok = password_ok && q.tenant_active && q.active;
	if (rc == -FD_EEXHAUSTED) {  /* no hashing slot: not an attempt at all */
		fd_err_t e2;
		int urc = fd_db_run_opts(a->db, &po, uncount_tx, &q, &e2);
		if (urc < 0)
			fd_warn("failed-login counters not corrected: %s", e2.msg);
		return rc;
	}
	if (!ok) {                   /* a success uncounts in success_tx */
		failure_q_t f = { .q = &q, .password_ok = password_ok };
		fd_tx_opts_t fo = { .tenant_id = login_tenant(&q), .deadline_ms = fd_call_deadline_ms(call) };
		if ((rc = fd_db_run_opts(a->db, &fo, failure_tx, &f, err)) < 0)
			return rc;
		return fd_call_fail(call, FD_EUNAUTH, "invalid tenant, username or password");
	}
	fd_tx_opts_t to = { .tenant_id = q.tenant, .deadline_ms = fd_call_deadline_ms(call) };
	if ((rc = fd_db_run_opts(a->db, &to, success_tx, &q, err)) < 0)
		return rc;

	Frontdesk__V1__LoginResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__login_response__init(r);
	if ((rc = issue_access(a, call, &q.acc, &r->access_token, &r->access_token_expires_at, &r->caller)) < 0)
		return rc;
	r->refresh_token = q.refresh;
	r->refresh_token_expires_at = q.refresh_exp;
	fd_call_set_log_tenant(call, q.tenant);
	fd_info("login: account %" PRId64 " (%s)", q.acc.id, fd_role_name(q.acc.role));
	*resp = &r->base;
	return 0;
}

/* ---- Refresh ---- */

static const fd_sql_t SQL_REFRESH_LOCK = {
	"authd_refresh_lock",
	"SELECT r.account_id, r.family_id, r.secret_hash, r.used_at IS NOT NULL, r.revoked_at IS NOT NULL,"
	"       r.expires_at <= now(), a.role, a.username, a.path, a.permissions,"
	"       NOT EXISTS (SELECT 1 FROM frontdesk.accounts s WHERE s.tenant_id = a.tenant_id"
	"                     AND s.id = ANY (frontdesk.path_ids(a.path)) AND s.status <> 'active'),"
	"       t.status = 'active', t.slug"
	"  FROM frontdesk.refresh_tokens r"
	"  JOIN frontdesk.accounts a ON a.tenant_id = r.tenant_id AND a.id = r.account_id"
	"  JOIN frontdesk.tenants t ON t.id = r.tenant_id"
	" WHERE r.tenant_id = $1 AND r.id = $2 FOR NO KEY UPDATE OF r",
	2,
};
static const fd_sql_t SQL_REFRESH_USE = {
	"authd_refresh_use", "UPDATE frontdesk.refresh_tokens SET used_at = now() WHERE tenant_id = $1 AND id = $2", 2,
};
static const fd_sql_t SQL_REVOKE_FAMILY = {
	"authd_revoke_family",
	"UPDATE frontdesk.refresh_tokens SET revoked_at = now()"
	" WHERE tenant_id = $1 AND family_id = $2 AND revoked_at IS NULL",
	2,
};
static const fd_sql_t SQL_REVOKE_ACCOUNT = {
	"authd_revoke_account",
	"UPDATE frontdesk.refresh_tokens SET revoked_at = now()"
	" WHERE tenant_id = $1 AND account_id = $2 AND revoked_at IS NULL AND expires_at > now()",
	2,
};

typedef struct refresh_q {
	authd_t *a;
	fd_arena_t *arena;
	const char *token;
	const char *source;          /* the client's address, for the audit trail */
	int64_t tenant, id;
	bool logout;                 /* revoke the family instead of rotating */
	/* results */
	const char *refused;         /* why, when it is refused (after committing a revocation) */
	int revoked;
	account_row_t acc;
	char *refresh;
	int64_t refresh_exp;
} refresh_q_t;

static int refresh_tx(fd_tx_t *tx, void *arg)
{
	refresh_q_t *q = arg;
	const char *params[] = { id_str(q->arena, q->tenant), id_str(q->arena, q->id) };
	PGresult *res;
	q->refused = NULL;
	q->revoked = 0;
	int rc = fd_tx_exec(tx, &SQL_REFRESH_LOCK, params, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) != 1) {
		q->refused = "invalid refresh token";
		return 0;
	}
	unsigned char h[32];
	char want[67] = "\\x";
	secret_hash(q->a, q->token, strlen(q->token), h);
	sodium_bin2hex(want + 2, 65, h, 32);
	if (PQgetlength(res, 0, 2) != 66 || sodium_memcmp(PQgetvalue(res, 0, 2), want, 66) != 0) {
		q->refused = "invalid refresh token";
		return 0;
	}
	PGresult *lock = res;
	const char *family = fd_arena_strdup(q->arena, PQgetvalue(res, 0, 1));
	const char *fp[] = { params[0], family };
	bool used = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
	bool revoked = strcmp(PQgetvalue(res, 0, 4), "t") == 0;
	bool expired = strcmp(PQgetvalue(res, 0, 5), "t") == 0;
	if (q->logout || (used && !revoked)) {
		/* Logout, or a used token presented again: stolen or replayed. Either
		 * way the whole family ends. */
		if ((rc = fd_tx_exec(tx, &SQL_REVOKE_FAMILY, fp, 0, &res)) < 0)
			return rc;
		q->revoked = atoi(PQcmdTuples(res));
		if (!q->logout) {
			q->refused = "refresh token already used; its sessions are revoked";
			fd_warn("refresh token reuse in family %s: family revoked", family);
			/* Whoever presented it proved nothing: the actor is the token's id
			 * (never the token), the target its account. */
			const char *label = fd_arena_printf(q->arena, "refresh_token:%" PRId64, q->id);
			const char *count = id_str(q->arena, q->revoked);
			const char *detail[] = { "family", family, "revoked", count, NULL };
			if (!label || !family || !count)
				return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
			return audit_row(tx, q->arena, NULL, label, q->source, "refresh_token.reuse", "account",
			                 strtoll(PQgetvalue(lock, 0, 0), NULL, 10), FD_AUDIT_REFUSED, detail);
		}
		return 0;
	}
	if (revoked || used) {
		q->refused = "refresh token revoked";
		return 0;
	}
	if (expired) {
		q->refused = "refresh token expired";
		return 0;
	}
	if (strcmp(PQgetvalue(res, 0, 10), "t") != 0 || strcmp(PQgetvalue(res, 0, 11), "t") != 0) {
		q->refused = "account or tenant suspended";
		return 0;
	}
	memset(&q->acc, 0, sizeof(q->acc));
	q->acc.tenant_id = q->tenant;
	q->acc.id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	const char *role = PQgetvalue(res, 0, 6);
	q->acc.role = fd_role_parse(role, strlen(role));
	snprintf(q->acc.username, sizeof(q->acc.username), "%s", PQgetvalue(res, 0, 7));
	snprintf(q->acc.path, sizeof(q->acc.path), "%s", PQgetvalue(res, 0, 8));
	q->acc.permissions = fd_permissions_parse(PQgetvalue(res, 0, 9));
	snprintf(q->acc.tenant_slug, sizeof(q->acc.tenant_slug), "%s", PQgetvalue(res, 0, 12));
	if ((rc = fd_tx_exec(tx, &SQL_REFRESH_USE, params, 0, NULL)) < 0)
		return rc;
	return new_refresh(tx, q->a, q->arena, q->tenant, q->acc.id, strtoll(family, NULL, 10), &q->refresh,
	                   &q->refresh_exp);
}

int authd_refresh(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__RefreshRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	refresh_q_t q = { .a = a, .arena = arena, .token = req->refresh_token,
		              .source = fd_audit_source(arena, fd_call_peer(call)) };
	if (!q.source)
		return OOM(call);
	if (!req->refresh_token[0])
		return fd_call_fail(call, FD_EINVAL, "refresh_token: required");
	if (parse_refresh(req->refresh_token, &q.tenant, &q.id) < 0)
		return fd_call_fail(call, FD_EUNAUTH, "invalid refresh token");
	fd_tx_opts_t o = { .tenant_id = q.tenant, .deadline_ms = fd_call_deadline_ms(call) };
	int rc = fd_db_run_opts(a->db, &o, refresh_tx, &q, fd_call_err(call));
	if (rc < 0)
		return rc == -FD_EINVAL || rc == -FD_ENOTFOUND ? fd_call_fail(call, FD_EUNAUTH, "invalid refresh token") : rc;
	if (q.refused)
		return fd_call_fail(call, FD_EUNAUTH, "%s", q.refused);
	Frontdesk__V1__RefreshResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__refresh_response__init(r);
	if ((rc = issue_access(a, call, &q.acc, &r->access_token, &r->access_token_expires_at, &r->caller)) < 0)
		return rc;
	r->refresh_token = q.refresh;
	r->refresh_token_expires_at = q.refresh_exp;
	fd_call_set_log_tenant(call, q.tenant);
	*resp = &r->base;
	return 0;
}

/* ---- Logout ---- */

struct logout_all {
	fd_arena_t *arena;
	int64_t tenant, account;
	int revoked;
};

static int logout_all_tx(fd_tx_t *tx, void *arg)
{
	struct logout_all *q = arg;
	const char *params[] = { id_str(q->arena, q->tenant), id_str(q->arena, q->account) };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_REVOKE_ACCOUNT, params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	q->revoked = atoi(PQcmdTuples(res));
	return 0;
}

int authd_logout(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__LogoutRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	Frontdesk__V1__LogoutResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__logout_response__init(r);
	int rc;
	if (req->all_sessions) {
		fd_caller_t c;
		if ((rc = authd_caller(call, 0, &c)) < 0)
			return rc;
		if (c.kind != FD_CRED_ACCESS_TOKEN && c.kind != FD_CRED_API_KEY)
			return fd_call_fail(call, FD_EPERM, "all_sessions: only for people's accounts");
		struct logout_all q = { arena, c.tenant_id, c.account_id, 0 };
		fd_tx_opts_t o = { .tenant_id = c.tenant_id, .deadline_ms = fd_call_deadline_ms(call) };
		if ((rc = fd_db_run_opts(a->db, &o, logout_all_tx, &q, fd_call_err(call))) < 0)
			return rc;
		r->revoked = q.revoked;
	} else {
		refresh_q_t q = { .a = a, .arena = arena, .token = req->refresh_token, .logout = true };
		if (!req->refresh_token[0])
			return fd_call_fail(call, FD_EINVAL, "refresh_token: required unless all_sessions is set");
		if (parse_refresh(req->refresh_token, &q.tenant, &q.id) < 0)
			return fd_call_fail(call, FD_EUNAUTH, "invalid refresh token");
		fd_tx_opts_t o = { .tenant_id = q.tenant, .deadline_ms = fd_call_deadline_ms(call) };
		if ((rc = fd_db_run_opts(a->db, &o, refresh_tx, &q, fd_call_err(call))) < 0)
			return rc;
		if (q.refused)
			return fd_call_fail(call, FD_EUNAUTH, "%s", q.refused);
		r->revoked = q.revoked;
	}
	*resp = &r->base;
	return 0;
}

/* ---- WhoAmI ---- */

int authd_whoami(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	(void)msg;
	fd_caller_t c;
	int rc = fd_call_caller(call, &c);
	if (rc < 0)
		return rc;
	fd_arena_t *arena = fd_call_arena(call);
	Frontdesk__V1__WhoAmIResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__who_am_iresponse__init(r);
	if (!(r->caller = caller_message(arena, &c)))
		return OOM(call);
	*resp = &r->base;
	return 0;
}
