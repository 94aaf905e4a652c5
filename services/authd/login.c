/* login.c - Login: a person's password exchanged for an access token and a
 * refresh token, behind failed-login limits per (account, source address)
 * and per source address that a stranger cannot use to lock an account
 * out. Login has no caller yet: it runs its own transactions, in the
 * platform (the counters) and in the tenant its slug names. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "authd.h"
#include "fd/log.h"

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
	const char *keys[] = { q->src_key, q->acct_key };
	const int64_t limits[] = { q->a->cfg->fail_per_source, q->a->cfg->fail_per_account };
	const char *started;
	int rc;
	q->retry_in = 0;
	for (int i = 0; i < 2; i++) {
		int64_t attempts, in;
		if ((rc = store_count_attempt(tx, q->arena, keys[i], q->a->cfg->fail_window, &attempts, &in, &started)) < 0)
			return rc;
		if (i == 1)
			q->window = started;
		if (attempts > limits[i] && in > q->retry_in)
			q->retry_in = in;
	}
	if ((rc = store_tenant_by_slug(tx, q->slug, FD_TX_LAST, &q->tenant, &q->tenant_active)) < 0)
		return rc;
	q->tenant_found = rc == 1;
	return 0;
}

static int account_tx(fd_tx_t *tx, void *arg)
{
	login_q_t *q = arg;
	int rc = store_login_account(tx, q->tenant, q->username, FD_TX_LAST, &q->acc, q->hash, &q->active);
	if (rc < 0)
		return rc;
	if ((q->found = rc == 1))
		snprintf(q->acc.tenant_slug, sizeof(q->acc.tenant_slug), "%s", q->slug);
	return 0;
}

/* A correct password, or no hashing slot: the attempt was not a guess. */
static int uncount_tx(fd_tx_t *tx, void *arg)
{
	login_q_t *q = arg;
	int rc = store_uncount_attempt(tx, q->src_key, 0);
	return rc < 0 ? rc : store_uncount_attempt(tx, q->acct_key, FD_TX_LAST);
}

static int success_tx(fd_tx_t *tx, void *arg)
{
	login_q_t *q = arg;
	fd_caller_t actor;
	int rc;
	if ((rc = store_uncount_attempt(tx, q->src_key, 0)) < 0 ||
	    (rc = store_clear_failures(tx, q->acct_key)) < 0 ||   /* resets its account's count */
	    (rc = store_prune_failures(tx, q->a->cfg->fail_window)) < 0 ||
	    (rc = store_touch_login(tx, q->tenant, q->acc.id)) < 0)
		return rc;
	account_caller(&q->acc, &actor);
	if ((rc = audit_row(tx, q->arena, &actor, NULL, q->source, "login.success", "account", q->acc.id, FD_AUDIT_OK,
	                    NULL)) < 0)
		return rc;
	return issue_refresh(tx, q->a, q->arena, q->tenant, q->acc.id, 0, &q->refresh, &q->refresh_exp);
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

static int64_t login_tenant(const login_q_t *q)
{
	return q->tenant_found ? q->tenant : FD_PLATFORM_TENANT;
}

static int limited_tx(fd_tx_t *tx, void *arg)
{
	login_q_t *q = arg;
	const char *label = login_label(q->arena, q->username);
	if (!label)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	int64_t account = 0;
	int rc;
	if ((rc = store_limited_lock(tx, q->acct_key)) < 0 ||
	    (rc = store_limited_repeat(tx, login_tenant(q), label, q->source, q->window,
	                               q->tenant_found ? NULL : q->slug)) != 0)
		return rc < 0 ? rc : 0;
	if (q->tenant_found && (rc = store_account_id(tx, q->tenant, q->username, &account)) < 0)
		return rc;
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
	if (f->password_ok &&        /* not a guess: its count is taken back */
	    ((rc = store_uncount_attempt(tx, q->src_key, 0)) < 0 || (rc = store_uncount_attempt(tx, q->acct_key, 0)) < 0))
		return rc;
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
		int rc = check_client_address("client_address", forwarded, fd_call_err(call));
		if (rc < 0)
			return rc;
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
	return *src ? 0 : fd_call_fail(call, FD_EEXHAUSTED, "out of memory for this request");
}

int authd_login(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__LoginRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_err_t *err = fd_call_err(call);
	int rc;
	char *const secrets[] = { req->password };
	if (pw_wipe_on_free(arena, secrets, 1) < 0)
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory for this request");
	if ((rc = check_login_slug("tenant_slug", req->tenant_slug, err)) < 0 ||
	    (rc = check_username("username", req->username, err)) < 0 ||
	    (rc = check_password_given("password", req->password, true, err)) < 0)
		return rc;
	const char *src;
	if ((rc = login_source(call, req->tenant_slug, req->client_address, &src)) < 0)
		return rc;

	/* The audit trail writes addresses as fd_audit_source does for every
	 * service ("::1", not "[::1]"); a forwarded one as the portal sent it. */
	login_q_t q = { .a = a, .arena = arena, .slug = req->tenant_slug, .username = req->username,
		            .source = src == req->client_address ? src : fd_audit_source(arena, fd_call_peer(call)) };
	q.src_key = fd_arena_printf(arena, "src:%s", src);
	q.acct_key = fd_arena_printf(arena, "acct:%s:%s:%s", req->tenant_slug, req->username, src);
	if (!q.source || !q.src_key || !q.acct_key)
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory for this request");
	fd_tx_opts_t po = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_call_deadline_ms(call) };
	if ((rc = fd_db_run_opts(a->db, &po, limits_tx, &q, err)) < 0)
		return rc;
	if (q.retry_in > 0) {
		fd_tx_opts_t lo = { .tenant_id = login_tenant(&q), .deadline_ms = fd_call_deadline_ms(call) };
		if ((rc = fd_tenant_run_opts(a->db, &lo, limited_tx, &q, err)) < 0)
			return rc;
		return fd_call_fail(call, FD_EEXHAUSTED, "too many failed logins; retry in %" PRId64 " s", q.retry_in);
	}
	if (q.tenant_found) {
		fd_tx_opts_t to = { .tenant_id = q.tenant, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
		if ((rc = fd_tenant_run_opts(a->db, &to, account_tx, &q, err)) < 0)
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
		if ((rc = fd_tenant_run_opts(a->db, &fo, failure_tx, &f, err)) < 0)
			return rc;
		return fd_call_fail(call, FD_EUNAUTH, "invalid tenant, username or password");
	}
	fd_tx_opts_t to = { .tenant_id = q.tenant, .deadline_ms = fd_call_deadline_ms(call) };
	if ((rc = fd_tenant_run_opts(a->db, &to, success_tx, &q, err)) < 0)
		return rc;

	Frontdesk__V1__LoginResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	if ((rc = issue_access(a, call, &q.acc, &r->access_token, &r->access_token_expires_at, &r->caller)) < 0)
		return rc;
	r->refresh_token = q.refresh;
	r->refresh_token_expires_at = q.refresh_exp;
	fd_call_set_log_tenant(call, q.tenant);
	fd_info("login: account %" PRId64 " (%s)", q.acc.id, fd_role_name(q.acc.role));
	return 0;
}
