/* audit.c - authd's side of the audit trail: the rows its own actions add
 * (through fd_audit_add, in the action's transaction), and ListAuditEvents,
 * the one read of the trail every service writes.
 *
 * Who reads what: a tenant admin its tenant's events; a reseller the events
 * whose actor is in its own subtree (actor_path LIKE <its path> || '%': its
 * own and its sub-resellers', never its parent's, nor those of callers with
 * no path: admins, services, unverified logins); a platform admin any
 * tenant's, by naming it (0: the platform's own). */
#include <inttypes.h>
#include <string.h>
#include "authd.h"

const char *login_label(fd_arena_t *arena, const char *username)
{
	/* Usernames are checked (check_username: 64 characters of [A-Za-z0-9._@-])
	 * before any row is written; the bound is kept here all the same. */
	return fd_arena_printf(arena, "login:%.64s", username);
}

/* "<kind>:<id>", or NULL for id 0; *oom when it could not be made. */
static const char *target_of(fd_arena_t *arena, const char *kind, int64_t id, bool *oom)
{
	const char *target = id ? fd_arena_printf(arena, "%s:%" PRId64, kind, id) : NULL;
	*oom = id && !target;
	return target;
}

int audit_row(fd_tx_t *tx, fd_arena_t *arena, const fd_caller_t *actor, const char *actor_label,
              const char *source, const char *action, const char *kind, int64_t id,
              fd_audit_outcome_t outcome, const char *const *detail)
{
	bool oom;
	fd_audit_t ev = {
		.actor = actor,
		.actor_label = actor_label,
		.action = action,
		.target = target_of(arena, kind, id, &oom),
		.source = source,
		.outcome = outcome,
		.detail = detail,
	};
	if (oom)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return fd_audit_add(tx, arena, &ev, 0);
}

int audit_ok(fd_tx_t *tx, const fd_tctx_t *t, const char *action, const char *kind, int64_t id,
             const char *const *detail)
{
	bool oom;
	const char *target = target_of(t->arena, kind, id, &oom);
	if (oom)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return fd_tctx_audit(tx, t, action, target, detail, 0);
}

/* ---- ListAuditEvents ---- */

typedef struct events_q {
	fd_arena_t *arena;
	store_event_filter_t f;
	Frontdesk__V1__AuditEvent **out;
	size_t n;
} events_q_t;

static int events_tx(fd_tx_t *tx, void *arg)
{
	events_q_t *q = arg;
	return store_list_events(tx, q->arena, &q->f, &q->out, &q->n);
}

int authd_list_audit_events(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListAuditEventsRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_err_t *err = fd_call_err(call);
	fd_tctx_t t;
	int64_t before;
	int limit, rc;
	if ((rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_AUDIT_READ, req->tenant_id, NULL)) < 0)
		return rc;
	if (t.c.kind == FD_CRED_SERVICE_TOKEN || t.c.role == FD_ROLE_SERVICE)
		return fd_call_fail(call, FD_EPERM, "the audit trail is read by people's accounts, not services");
	if ((rc = fd_check_page(req->page_size, req->page_token, &limit, &before, err)) < 0 ||
	    (rc = fd_check_text("target", req->target, 0, 200, err)) < 0 ||
	    (rc = check_action_filter("action", req->action, err)) < 0)
		return rc;
	if (req->actor_account_id < 0)
		return fd_call_fail(call, FD_EINVAL, "actor_account_id: must not be negative");
	int64_t since = req->at_within ? req->at_within->start_at : 0;
	int64_t until = req->at_within ? req->at_within->end_at : 0;
	if (since < 0 || until < 0)
		return fd_call_fail(call, FD_EINVAL, "at_within: times are Unix seconds, not negative");
	if (since && until && until <= since)
		return fd_call_fail(call, FD_EINVAL, "at_within: end_at must be after start_at");
	size_t an = strlen(req->action);
	bool prefix = an && req->action[an - 1] == '.';
	events_q_t q = { .arena = t.arena,
		             .f = { .tenant = t.tenant, .prefix = fd_subtree_prefix(&t.c), .before = before,
		                    .actor_account = req->actor_account_id, .target = req->target,
		                    .action = prefix ? "" : req->action, .action_prefix = prefix ? req->action : "",
		                    .since = since, .until = until, .limit = limit + 1 } };
	fd_tx_opts_t ro = { .read_only = true };
	if ((rc = fd_tctx_run(&t, a->db, &ro, events_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__ListAuditEventsResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->events = q.out;
	r->n_events = q.n > (size_t)limit ? (size_t)limit : q.n;
	/* Newest first: the next page holds the ids below the last one shown. */
	if (q.n > (size_t)limit && !(r->next_page_token = fd_page_token(t.arena, q.out[limit - 1]->id)))
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory for this request");
	return 0;
}
