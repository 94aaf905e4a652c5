/* sessions.c - people's sessions after Login: Refresh (a refresh token
 * rotated on use; a used one presented again revokes its whole family),
 * Logout (one family, or every session of the caller), WhoAmI. Refresh and
 * a single Logout have no caller but the token: they run in the tenant the
 * token names. */
#include <inttypes.h>
#include <string.h>
#include <sodium.h>
#include "authd.h"
#include "fd/log.h"

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
	store_refresh_t row;
	q->refused = NULL;
	q->revoked = 0;
	int rc = store_lock_refresh(tx, q->tenant, q->id, &row);
	if (rc < 0)
		return rc;
	char want[67] = "\\x";
	secret_hash_hex(q->a, q->token, strlen(q->token), want + 2);
	if (rc == 0 || sodium_memcmp(row.secret_hash, want, 66) != 0) {
		q->refused = "invalid refresh token";
		return 0;
	}
	if (q->logout || (row.used && !row.revoked)) {
		/* Logout, or a used token presented again: stolen or replayed. Either
		 * way the whole family ends. */
		if ((rc = store_revoke_family(tx, q->tenant, row.family, &q->revoked)) < 0 || q->logout)
			return rc;
		q->refused = "refresh token already used; its sessions are revoked";
		fd_warn("refresh token reuse in family %" PRId64 ": family revoked", row.family);
		/* Whoever presented it proved nothing: the actor is the token's id
		 * (never the token), the target its account. */
		const char *label = fd_arena_printf(q->arena, "refresh_token:%" PRId64, q->id);
		const char *family = id_str(q->arena, row.family);
		const char *count = id_str(q->arena, q->revoked);
		const char *detail[] = { "family", family, "revoked", count, NULL };
		if (!label || !family || !count)
			return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
		return audit_row(tx, q->arena, NULL, label, q->source, "refresh_token.reuse", "account", row.acc.id,
		                 FD_AUDIT_REFUSED, detail);
	}
	if (row.revoked || row.used) {
		q->refused = "refresh token revoked";
		return 0;
	}
	if (row.expired) {
		q->refused = "refresh token expired";
		return 0;
	}
	if (!row.account_active || !row.tenant_active) {
		q->refused = "account or tenant suspended";
		return 0;
	}
	q->acc = row.acc;
	if ((rc = store_use_refresh(tx, q->tenant, q->id)) < 0)
		return rc;
	return issue_refresh(tx, q->a, q->arena, q->tenant, q->acc.id, row.family, &q->refresh, &q->refresh_exp);
}

int authd_refresh(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__RefreshRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	refresh_q_t q = { .a = a, .arena = arena, .token = req->refresh_token,
		              .source = fd_audit_source(arena, fd_call_peer(call)) };
	char *const secrets[] = { req->refresh_token };
	if (!q.source || pw_wipe_on_free(arena, secrets, 1) < 0)
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory for this request");
	if (!req->refresh_token[0])
		return fd_call_fail(call, FD_EINVAL, "refresh_token: required");
	if (parse_refresh_token(req->refresh_token, &q.tenant, &q.id) < 0)
		return fd_call_fail(call, FD_EUNAUTH, "invalid refresh token");
	fd_tx_opts_t o = { .tenant_id = q.tenant, .deadline_ms = fd_call_deadline_ms(call) };
	int rc = fd_tenant_run_opts(a->db, &o, refresh_tx, &q, fd_call_err(call));
	if (rc < 0)
		return rc == -FD_EINVAL || rc == -FD_ENOTFOUND ? fd_call_fail(call, FD_EUNAUTH, "invalid refresh token") : rc;
	if (q.refused)
		return fd_call_fail(call, FD_EUNAUTH, "%s", q.refused);
	Frontdesk__V1__RefreshResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	if ((rc = issue_access(a, call, &q.acc, &r->access_token, &r->access_token_expires_at, &r->caller)) < 0)
		return rc;
	r->refresh_token = q.refresh;
	r->refresh_token_expires_at = q.refresh_exp;
	fd_call_set_log_tenant(call, q.tenant);
	return 0;
}

/* ---- Logout ---- */

struct logout_all {
	const fd_tctx_t *t;
	int revoked;
};

static int logout_all_tx(fd_tx_t *tx, void *arg)
{
	struct logout_all *q = arg;
	return store_revoke_account(tx, q->t->tenant, q->t->c.account_id, true, FD_TX_LAST, &q->revoked);
}

int authd_logout(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__LogoutRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	Frontdesk__V1__LogoutResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	int rc;
	if (req->all_sessions) {
		fd_tctx_t t;
		if ((rc = fd_tctx_begin(&t, call, 0, 0, NULL)) < 0)
			return rc;
		if (t.c.kind != FD_CRED_ACCESS_TOKEN && t.c.kind != FD_CRED_API_KEY)
			return fd_call_fail(call, FD_EPERM, "all_sessions: only for people's accounts");
		struct logout_all q = { &t, 0 };
		if ((rc = fd_tctx_run(&t, a->db, NULL, logout_all_tx, &q)) < 0)
			return rc;
		r->revoked = q.revoked;
		return 0;
	}
	refresh_q_t q = { .a = a, .arena = arena, .token = req->refresh_token, .logout = true };
	char *const secrets[] = { req->refresh_token };
	if (pw_wipe_on_free(arena, secrets, 1) < 0)
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory for this request");
	if (!req->refresh_token[0])
		return fd_call_fail(call, FD_EINVAL, "refresh_token: required unless all_sessions is set");
	if (parse_refresh_token(req->refresh_token, &q.tenant, &q.id) < 0)
		return fd_call_fail(call, FD_EUNAUTH, "invalid refresh token");
	fd_tx_opts_t o = { .tenant_id = q.tenant, .deadline_ms = fd_call_deadline_ms(call) };
	if ((rc = fd_tenant_run_opts(a->db, &o, refresh_tx, &q, fd_call_err(call))) < 0)
		return rc;
	if (q.refused)
		return fd_call_fail(call, FD_EUNAUTH, "%s", q.refused);
	r->revoked = q.revoked;
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
	Frontdesk__V1__WhoAmIResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	if (!(r->caller = caller_message(fd_call_arena(call), &c)))
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory for this request");
	return 0;
}
