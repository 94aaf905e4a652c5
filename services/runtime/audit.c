/* audit.c - appending to the audit trail (fd/audit.h). */
#include <inttypes.h>
#include <string.h>
#include "fd/audit.h"
#include "fd/pgarray.h"

/* The INSERT into audit_events (hash-partitioned) is the plpgsql function
 * frontdesk.audit_add (migrations/0019_generic_plans.sql), so that its plan
 * is kept by the session also behind a pooler that cannot keep prepared
 * statements. Parameters: the tenant, the actor's label, tenant, account,
 * role, path and API key, the action, target, source, outcome and the
 * detail's key, value pairs (a text[] literal; NULL: none). */
static const fd_sql_t SQL_AUDIT = {
	"fd_audit_add",
	"SELECT frontdesk.audit_add($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
	12,
};

static const char *const OUTCOMES[] = {
	[FD_AUDIT_OK] = "ok", [FD_AUDIT_FAILED] = "failed",
	[FD_AUDIT_REFUSED] = "refused", [FD_AUDIT_LIMITED] = "limited",
};

const char *fd_audit_actor_label(fd_arena_t *a, const fd_caller_t *c)
{
	if (c->kind == FD_CRED_SERVICE_TOKEN || c->role == FD_ROLE_SERVICE)
		return fd_arena_printf(a, "service:%s", c->service);
	if (c->kind == FD_CRED_API_KEY)
		return fd_arena_printf(a, "apikey:%" PRId64, c->api_key_id);
	return fd_arena_printf(a, "%s:%" PRId64, c->role == FD_ROLE_RESELLER ? "reseller" : "admin",
	                       c->account_id);
}

const char *fd_audit_source(fd_arena_t *a, const char *peer)
{
	if (!peer)
		return fd_arena_strdup(a, "");
	const char *p = strncmp(peer, "ipv4:", 5) == 0 || strncmp(peer, "ipv6:", 5) == 0 ? peer + 5 : peer;
	size_t n = strlen(p);
	if (p[0] == '[') {                    /* [::1]:5000 */
		const char *end = strchr(p, ']');
		p++;
		n = end ? (size_t)(end - p) : strlen(p);
	} else {
		const char *colon = strrchr(p, ':');
		if (colon && strchr(p, ':') == colon) /* one colon: host:port */
			n = (size_t)(colon - p);
	}
	return fd_arena_strndup(a, p, n > 64 ? 64 : n);
}

int fd_audit_add(fd_tx_t *tx, fd_arena_t *a, const fd_audit_t *ev, unsigned flags)
{
	fd_err_t *err = fd_tx_err(tx);
	int64_t tenant = fd_tx_tenant(tx);
	if (tenant < 0)
		return fd_err_set(err, FD_EINTERNAL, "audit: %s outside a tenant transaction", ev->action);
	const fd_caller_t *c = ev->actor;
	const char *role = "";
	if (c)
		role = c->kind == FD_CRED_SERVICE_TOKEN ? "service" : fd_role_name(c->role);
	if (strcmp(role, "unspecified") == 0)
		role = "";
	size_t nd = 0;
	if (ev->detail)
		while (ev->detail[nd])
			nd++;
	if (nd % 2)
		return fd_err_set(err, FD_EINTERNAL, "audit: %s: detail needs key, value pairs", ev->action);
	const char *params[] = {
		fd_arena_printf(a, "%" PRId64, tenant),
		c ? fd_audit_actor_label(a, c) : ev->actor_label ? ev->actor_label : "anonymous",
		fd_arena_printf(a, "%" PRId64, c ? c->tenant_id : 0),
		fd_arena_printf(a, "%" PRId64, c && c->kind != FD_CRED_SERVICE_TOKEN ? c->account_id : 0),
		role,
		c && c->role == FD_ROLE_RESELLER ? c->path : "",
		fd_arena_printf(a, "%" PRId64, c ? c->api_key_id : 0),
		ev->action,
		ev->target ? ev->target : "",
		ev->source ? ev->source : "",
		OUTCOMES[ev->outcome],
		nd ? pg_text_array(a, (char *const *)ev->detail, nd) : NULL,
	};
	for (size_t i = 0; i < 11; i++)
		if (!params[i])
			return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	if (nd && !params[11])
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	return fd_tx_exec(tx, &SQL_AUDIT, params, flags, NULL);
}
