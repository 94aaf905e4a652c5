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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "authd.h"

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

const char *login_label(fd_arena_t *arena, const char *username)
{
	/* Usernames are checked (check_username: 64 characters of [A-Za-z0-9._@-])
	 * before any row is written; the bound is kept here all the same. */
	return fd_arena_printf(arena, "login:%.64s", username);
}

int audit_row(fd_tx_t *tx, fd_arena_t *arena, const fd_caller_t *actor, const char *actor_label,
              const char *source, const char *action, const char *kind, int64_t id,
              fd_audit_outcome_t outcome, const char *const *detail)
{
	const char *target = id ? fd_arena_printf(arena, "%s:%" PRId64, kind, id) : NULL;
	if (id && !target)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	fd_audit_t ev = {
		.actor = actor,
		.actor_label = actor_label,
		.action = action,
		.target = target,
		.source = source,
		.outcome = outcome,
		.detail = detail,
	};
	return fd_audit_add(tx, arena, &ev, 0);
}

/* ---- ListAuditEvents ---- */

enum {
	EV_ID, EV_TENANT, EV_AT, EV_ACTOR, EV_ACTOR_TENANT, EV_ACTOR_ACCOUNT, EV_ACTOR_ROLE, EV_ACTOR_PATH,
	EV_ACTOR_KEY, EV_ACTION, EV_TARGET, EV_SOURCE, EV_OUTCOME, EV_REPEATS, EV_LAST_AT, EV_DETAIL,
};
#define EVENT_COLS                                                                              \
	"e.id, e.tenant_id, floor(extract(epoch FROM e.at))::bigint, e.actor, e.actor_tenant_id,"  \
	" e.actor_account_id, e.actor_role, e.actor_path, e.actor_key_id, e.action, e.target,"      \
	" e.source, e.outcome, e.repeats, floor(extract(epoch FROM e.last_at))::bigint, e.detail::text"

/* $2: the caller's subtree ("" for admins); $3: before this id (0: from the
 * newest); $6 exact action, $7 action prefix (both checked to hold no LIKE
 * wildcard); $8, $9 the half-open time range (0: open). */
static const fd_sql_t SQL_LIST_EVENTS = {
	"authd_list_audit_events",
	"SELECT " EVENT_COLS " FROM frontdesk.audit_events e"
	" WHERE e.tenant_id = $1 AND e.actor_path LIKE $2 || '%'"
	"   AND ($3::bigint = 0 OR e.id < $3)"
	"   AND ($4::bigint = 0 OR e.actor_account_id = $4)"
	"   AND ($5 = '' OR e.target = $5)"
	"   AND ($6 = '' OR e.action = $6) AND ($7 = '' OR e.action LIKE $7 || '%')"
	"   AND ($8::bigint = 0 OR e.at >= to_timestamp($8))"
	"   AND ($9::bigint = 0 OR e.at < to_timestamp($9))"
	" ORDER BY e.id DESC LIMIT $10",
	10,
};

static const struct {
	const char *text;
	Frontdesk__V1__AuditOutcome value;
} OUTCOMES[] = {
	{ "ok", FRONTDESK__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_OK },
	{ "failed", FRONTDESK__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_FAILED },
	{ "refused", FRONTDESK__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_REFUSED },
	{ "limited", FRONTDESK__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_LIMITED },
};

static Frontdesk__V1__AuditOutcome outcome_of(const char *s)
{
	for (size_t i = 0; i < sizeof(OUTCOMES) / sizeof(OUTCOMES[0]); i++)
		if (strcmp(OUTCOMES[i].text, s) == 0)
			return OUTCOMES[i].value;
	return FRONTDESK__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_UNSPECIFIED;
}

static Frontdesk__V1__AuditEvent *event_message(fd_arena_t *arena, PGresult *res, int row)
{
	Frontdesk__V1__AuditEvent *e = fd_arena_zalloc(arena, sizeof(*e));
	if (!e)
		return NULL;
	frontdesk__v1__audit_event__init(e);
	e->id = strtoll(PQgetvalue(res, row, EV_ID), NULL, 10);
	e->tenant_id = strtoll(PQgetvalue(res, row, EV_TENANT), NULL, 10);
	e->at = ts_col(res, row, EV_AT);
	e->actor = fd_arena_strdup(arena, PQgetvalue(res, row, EV_ACTOR));
	e->actor_tenant_id = strtoll(PQgetvalue(res, row, EV_ACTOR_TENANT), NULL, 10);
	e->actor_account_id = strtoll(PQgetvalue(res, row, EV_ACTOR_ACCOUNT), NULL, 10);
	const char *role = PQgetvalue(res, row, EV_ACTOR_ROLE);
	e->actor_role = (Frontdesk__V1__Role)fd_role_parse(role, strlen(role));
	e->actor_path = fd_arena_strdup(arena, PQgetvalue(res, row, EV_ACTOR_PATH));
	e->actor_api_key_id = strtoll(PQgetvalue(res, row, EV_ACTOR_KEY), NULL, 10);
	e->action = fd_arena_strdup(arena, PQgetvalue(res, row, EV_ACTION));
	e->target = fd_arena_strdup(arena, PQgetvalue(res, row, EV_TARGET));
	e->source = fd_arena_strdup(arena, PQgetvalue(res, row, EV_SOURCE));
	e->outcome = outcome_of(PQgetvalue(res, row, EV_OUTCOME));
	e->repeats = atoi(PQgetvalue(res, row, EV_REPEATS));
	e->last_at = ts_col(res, row, EV_LAST_AT);
	e->detail_json = fd_arena_strdup(arena, PQgetvalue(res, row, EV_DETAIL));
	if (!e->actor || !e->actor_path || !e->action || !e->target || !e->source || !e->detail_json)
		return NULL;
	return e;
}

typedef struct events_q {
	fd_arena_t *arena;
	const char *params[10];
	Frontdesk__V1__AuditEvent **out;
	size_t n;
} events_q_t;

static int events_tx(fd_tx_t *tx, void *arg)
{
	events_q_t *q = arg;
	PGresult *res;
	q->n = 0;
	int rc = fd_tx_exec(tx, &SQL_LIST_EVENTS, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	int n = PQntuples(res);
	q->out = fd_arena_zalloc(q->arena, sizeof(*q->out) * (size_t)(n ? n : 1));
	if (!q->out)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	for (int i = 0; i < n; i++)
		if (!(q->out[q->n++] = event_message(q->arena, res, i)))
			return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return 0;
}

/* An action filter: what action names are made of ("line.create"), so that
 * it holds no LIKE wildcard; a trailing '.' makes it a prefix. */
static int check_action(fd_call_t *call, const char *s)
{
	size_t n = strlen(s);
	if (n > 100)
		return fd_call_fail(call, FD_EINVAL, "action: at most 100 characters");
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.'))
			return fd_call_fail(call, FD_EINVAL, "action: only a-z, 0-9, _ and . (\"tenant.suspend\", or \"login.\" "
			                    "for every login action)");
	return 0;
}

int authd_list_audit_events(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListAuditEventsRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_err_t *err = fd_call_err(call);
	fd_caller_t c;
	int64_t tenant, before;
	int limit, rc;
	if ((rc = authd_caller(call, FRONTDESK__V1__SCOPE__SCOPE_AUDIT_READ, &c)) < 0)
		return rc;
	if (c.kind == FD_CRED_SERVICE_TOKEN || c.role == FD_ROLE_SERVICE)
		return fd_call_fail(call, FD_EPERM, "the audit trail is read by people's accounts, not services");
	if ((rc = fd_call_tenant(call, &c, req->tenant_id, &tenant)) < 0 ||
	    (rc = fd_check_page(req->page_size, req->page_token, &limit, &before, err)) < 0 ||
	    (rc = fd_check_text("target", req->target, 0, 200, err)) < 0 || (rc = check_action(call, req->action)) < 0)
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
	events_q_t q = { .arena = arena,
		             .params = { id_str(arena, tenant), caller_subtree(&c), id_str(arena, before),
		                         id_str(arena, req->actor_account_id), req->target, prefix ? "" : req->action,
		                         prefix ? req->action : "", id_str(arena, since), id_str(arena, until),
		                         id_str(arena, limit + 1) } };
	for (size_t i = 0; i < 10; i++)
		if (!q.params[i])
			return OOM(call);
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	if ((rc = fd_db_run_opts(a->db, &o, events_tx, &q, err)) < 0)
		return rc;
	Frontdesk__V1__ListAuditEventsResponse *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return OOM(call);
	frontdesk__v1__list_audit_events_response__init(r);
	r->events = q.out;
	r->n_events = q.n > (size_t)limit ? (size_t)limit : q.n;
	/* Newest first: the next page holds the ids below the last one shown. */
	if (q.n > (size_t)limit && !(r->next_page_token = fd_page_token(arena, q.out[limit - 1]->id)))
		return OOM(call);
	*resp = &r->base;
	return 0;
}
