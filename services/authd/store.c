/* store.c - every SQL statement of authd and the reading of its rows
 * (store.h). Columns are read through the enum beside each column list
 * (an X-macro gives both, so they cannot drift apart); statements name
 * tenant_id even where row-level security would filter: RLS is the second
 * wall, not the only one. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "enums.h"
#include "store.h"

#define OUT_OF_MEMORY(tx) fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory")
#define EPOCH(x) "floor(extract(epoch FROM " x "))::bigint"
#define EPOCH0(x) "coalesce(floor(extract(epoch FROM " x "))::bigint, 0)"

#define COL_ENUM(P, name, expr) P##name,
#define COL_SQL(P, name, expr) ", " expr

/* An integer parameter as text. */
typedef struct { char s[24]; } num_t;
static num_t numb(int64_t v)
{
	num_t n;
	snprintf(n.s, sizeof(n.s), "%" PRId64, v);
	return n;
}

static int64_t col_i64(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static bool col_bool(const PGresult *res, int row, int col)
{
	return PQgetvalue(res, row, col)[0] == 't';
}

static const char *col_text(const PGresult *res, int row, int col)
{
	return PQgetvalue(res, row, col);
}

static fd_role_t col_role(const PGresult *res, int row, int col)
{
	const char *s = col_text(res, row, col);
	return fd_role_parse(s, strlen(s));
}

/* Every row of res through read into a new array in the arena. */
#define READ_ROWS(tx, arena, res, read, out, n)                                          \
	do {                                                                                 \
		int rows_ = PQntuples(res);                                                      \
		*(n) = 0;                                                                        \
		*(out) = fd_arena_zalloc((arena), sizeof(**(out)) * (size_t)(rows_ ? rows_ : 1)); \
		if (!*(out))                                                                     \
			return OUT_OF_MEMORY(tx);                                                    \
		for (int i_ = 0; i_ < rows_; i_++)                                               \
			if (!((*(out))[(*(n))++] = read((arena), res, i_)))                          \
				return OUT_OF_MEMORY(tx);                                                \
	} while (0)

/* ---- ids ---- */

/* Sequences are platform-level: ids are taken before (or without) a tenant. */
static const fd_sql_t SQL_NEXT_ID[] = {
	[SEQ_TENANTS] = { "authd_next_tenant", "SELECT nextval('frontdesk.tenants_id_seq')", 0, FD_SQL_PLATFORM },
	[SEQ_ACCOUNTS] = { "authd_next_account", "SELECT nextval('frontdesk.accounts_id_seq')", 0, FD_SQL_PLATFORM },
	[SEQ_REFRESH_TOKENS] = { "authd_next_refresh", "SELECT nextval('frontdesk.refresh_tokens_id_seq')", 0, FD_SQL_PLATFORM },
	[SEQ_API_KEYS] = { "authd_next_api_key", "SELECT nextval('frontdesk.api_keys_id_seq')", 0, FD_SQL_PLATFORM },
};

int store_next_id(fd_tx_t *tx, store_seq_t seq, int64_t *id)
{
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_NEXT_ID[seq], NULL, 0, &res);
	if (rc < 0)
		return rc;
	*id = col_i64(res, 0, 0);
	return 0;
}

/* ---- tenants ---- */

#define TENANT_COLUMNS(X) \
	X(TC_, SLUG, "slug") \
	X(TC_, NAME, "name") \
	X(TC_, STATUS, "status") /* TENANT_STATUS_NAMES */ \
	X(TC_, SUSPEND_REASON, "suspend_reason") \
	X(TC_, CREATED_AT, EPOCH("created_at")) \
	X(TC_, UPDATED_AT, EPOCH("updated_at")) \
	X(TC_, SUSPENDED_AT, EPOCH0("suspended_at"))
enum tenant_col { TC_ID, TENANT_COLUMNS(COL_ENUM) TC_COUNT };
#define TENANT_COLS "id" TENANT_COLUMNS(COL_SQL)

static Frontdesk__V1__Tenant *tenant_row(fd_arena_t *arena, const PGresult *res, int row)
{
	Frontdesk__V1__Tenant *t = fd_arena_zalloc(arena, sizeof(*t));
	if (!t)
		return NULL;
	frontdesk__v1__tenant__init(t);
	t->id = col_i64(res, row, TC_ID);
	t->slug = fd_arena_strdup(arena, col_text(res, row, TC_SLUG));
	t->name = fd_arena_strdup(arena, col_text(res, row, TC_NAME));
	t->status = enum_value(TENANT_STATUS_NAMES, col_text(res, row, TC_STATUS),
	                       FRONTDESK__V1__TENANT_STATUS__TENANT_STATUS_SUSPENDED);
	t->suspend_reason = fd_arena_strdup(arena, col_text(res, row, TC_SUSPEND_REASON));
	t->created_at = col_i64(res, row, TC_CREATED_AT);
	t->updated_at = col_i64(res, row, TC_UPDATED_AT);
	t->suspended_at = col_i64(res, row, TC_SUSPENDED_AT);
	return t->slug && t->name && t->suspend_reason ? t : NULL;
}

static const fd_sql_t SQL_SET_TENANT = {
	"authd_set_tenant", "SELECT set_config('frontdesk.tenant_id', $1, true)", 1,
};
static const fd_sql_t SQL_INSERT_TENANT = {
	"authd_insert_tenant",
	"INSERT INTO frontdesk.tenants (id, slug, name) VALUES ($1, $2, $3) RETURNING " TENANT_COLS,
	3,
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_TENANT = {
	"authd_get_tenant", "SELECT " TENANT_COLS " FROM frontdesk.tenants WHERE id = $1", 1,
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_LIST_TENANTS = {
	"authd_list_tenants",
	"SELECT " TENANT_COLS " FROM frontdesk.tenants"
	" WHERE id > $1 AND ($2 = '' OR status = $2)"
	"   AND ($3 = '' OR strpos(lower(slug || ' ' || name), lower($3)) > 0)"
	" ORDER BY id LIMIT $4",
	4,
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_SET_TENANT_STATUS = {
	"authd_suspend_tenant",
	"UPDATE frontdesk.tenants SET status = $2, updated_at = now(),"
	"       suspend_reason = CASE WHEN $2 = 'suspended' THEN $3 ELSE '' END,"
	"       suspended_at = CASE WHEN $2 = 'suspended' THEN coalesce(suspended_at, now()) END"
	" WHERE id = $1 RETURNING " TENANT_COLS,
	3,
	FD_SQL_PLATFORM,
};
enum { SC_ID, SC_STATUS };
static const fd_sql_t SQL_TENANT_BY_SLUG = {
	"authd_tenant_by_slug", "SELECT id, status FROM frontdesk.tenants WHERE slug = $1", 1,
	FD_SQL_PLATFORM,
};

int store_set_tenant(fd_tx_t *tx, int64_t tenant)
{
	num_t t = numb(tenant);
	const char *params[] = { t.s };
	return fd_tx_exec(tx, &SQL_SET_TENANT, params, 0, NULL);
}

int store_insert_tenant(fd_tx_t *tx, fd_arena_t *arena, int64_t id, const char *slug, const char *name,
                        Frontdesk__V1__Tenant **out)
{
	num_t i = numb(id);
	const char *params[] = { i.s, slug, name };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_INSERT_TENANT, params, 0, &res);
	if (rc < 0)
		return rc;
	return (*out = tenant_row(arena, res, 0)) ? 0 : OUT_OF_MEMORY(tx);
}

/* The one row of res, if any: 1 with *out, 0 if none. */
static int one_tenant(fd_tx_t *tx, fd_arena_t *arena, const PGresult *res, Frontdesk__V1__Tenant **out)
{
	*out = NULL;
	if (PQntuples(res) == 0)
		return 0;
	return (*out = tenant_row(arena, res, 0)) ? 1 : OUT_OF_MEMORY(tx);
}

int store_tenant(fd_tx_t *tx, fd_arena_t *arena, int64_t id, unsigned flags, Frontdesk__V1__Tenant **out)
{
	num_t i = numb(id);
	const char *params[] = { i.s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_TENANT, params, flags, &res);
	return rc < 0 ? rc : one_tenant(tx, arena, res, out);
}

int store_list_tenants(fd_tx_t *tx, fd_arena_t *arena, int64_t after, Frontdesk__V1__TenantStatus status,
                       const char *query, int limit, Frontdesk__V1__Tenant ***out, size_t *n)
{
	const char *st = enum_text(TENANT_STATUS_NAMES, status);
	num_t a = numb(after), l = numb(limit);
	const char *params[] = { a.s, st ? st : "", query, l.s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_LIST_TENANTS, params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	READ_ROWS(tx, arena, res, tenant_row, out, n);
	return 0;
}

int store_set_tenant_status(fd_tx_t *tx, fd_arena_t *arena, int64_t id, Frontdesk__V1__TenantStatus status,
                            const char *reason, Frontdesk__V1__Tenant **out)
{
	num_t i = numb(id);
	const char *params[] = { i.s, enum_text(TENANT_STATUS_NAMES, status), reason };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_SET_TENANT_STATUS, params, 0, &res);
	return rc < 0 ? rc : one_tenant(tx, arena, res, out);
}

int store_tenant_by_slug(fd_tx_t *tx, const char *slug, unsigned flags, int64_t *id, bool *active)
{
	const char *params[] = { slug };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_TENANT_BY_SLUG, params, flags, &res);
	if (rc < 0 || PQntuples(res) == 0)
		return rc < 0 ? rc : 0;
	*id = col_i64(res, 0, SC_ID);
	*active = enum_value(TENANT_STATUS_NAMES, col_text(res, 0, SC_STATUS), 0) ==
	          FRONTDESK__V1__TENANT_STATUS__TENANT_STATUS_ACTIVE;
	return 1;
}

/* ---- accounts ---- */

/* A Reseller message's columns. The row's own status is read from the row
 * itself, not the subquery: in an UPDATE's RETURNING the subquery still
 * sees the row as it was. */
#define RESELLER_COLUMNS(X) \
	X(RC_, PARENT, "coalesce(a.parent_id, 0)") \
	X(RC_, USERNAME, "a.username") \
	X(RC_, DISPLAY_NAME, "a.display_name") \
	X(RC_, ROLE, "a.role") \
	X(RC_, STATUS, "a.status") /* ACCOUNT_STATUS_NAMES */ \
	X(RC_, PERMISSIONS, "a.permissions") \
	X(RC_, PATH, "a.path") \
	X(RC_, NOTES, "a.notes") \
	X(RC_, CREATED_AT, EPOCH("a.created_at")) \
	X(RC_, UPDATED_AT, EPOCH("a.updated_at")) \
	X(RC_, LAST_LOGIN_AT, EPOCH0("a.last_login_at")) \
	X(RC_, EFFECTIVE_SUSPENDED, "a.status = 'suspended' OR coalesce((SELECT bool_or(s.status = 'suspended')" \
	                            "   FROM frontdesk.accounts s WHERE s.tenant_id = a.tenant_id AND s.id <> a.id" \
	                            "    AND s.id = ANY (frontdesk.path_ids(a.path))), false)") \
	X(RC_, TENANT, "a.tenant_id")
enum reseller_col { RC_ID, RESELLER_COLUMNS(COL_ENUM) RC_COUNT };
#define RESELLER_COLS "a.id" RESELLER_COLUMNS(COL_SQL)

static Frontdesk__V1__Reseller *reseller_row(fd_arena_t *arena, const PGresult *res, int row)
{
	Frontdesk__V1__Reseller *r = fd_arena_zalloc(arena, sizeof(*r));
	if (!r)
		return NULL;
	frontdesk__v1__reseller__init(r);
	r->id = col_i64(res, row, RC_ID);
	r->tenant_id = col_i64(res, row, RC_TENANT);
	r->parent_id = col_i64(res, row, RC_PARENT);
	r->username = fd_arena_strdup(arena, col_text(res, row, RC_USERNAME));
	r->display_name = fd_arena_strdup(arena, col_text(res, row, RC_DISPLAY_NAME));
	r->role = (Frontdesk__V1__Role)col_role(res, row, RC_ROLE);
	r->status = enum_value(ACCOUNT_STATUS_NAMES, col_text(res, row, RC_STATUS),
	                       FRONTDESK__V1__RESELLER_STATUS__RESELLER_STATUS_ACTIVE);
	r->effective_status = col_bool(res, row, RC_EFFECTIVE_SUSPENDED)
	                          ? FRONTDESK__V1__RESELLER_STATUS__RESELLER_STATUS_SUSPENDED
	                          : FRONTDESK__V1__RESELLER_STATUS__RESELLER_STATUS_ACTIVE;
	r->permissions = permissions_list(arena, fd_permissions_parse(col_text(res, row, RC_PERMISSIONS)),
	                                  &r->n_permissions);
	int depth = -1;
	for (const char *p = col_text(res, row, RC_PATH); *p; p++)
		depth += *p == '.';
	r->depth = depth;
	r->notes = fd_arena_strdup(arena, col_text(res, row, RC_NOTES));
	r->created_at = col_i64(res, row, RC_CREATED_AT);
	r->updated_at = col_i64(res, row, RC_UPDATED_AT);
	r->last_login_at = col_i64(res, row, RC_LAST_LOGIN_AT);
	return r->username && r->display_name && r->permissions && r->notes ? r : NULL;
}

/* The one row of res, if any: 1 with *out, 0 if none. */
static int one_reseller(fd_tx_t *tx, fd_arena_t *arena, const PGresult *res, Frontdesk__V1__Reseller **out)
{
	*out = NULL;
	if (PQntuples(res) == 0)
		return 0;
	return (*out = reseller_row(arena, res, 0)) ? 1 : OUT_OF_MEMORY(tx);
}

static const fd_sql_t SQL_INSERT_ROOT = {
	"authd_insert_root",
	"INSERT INTO frontdesk.accounts AS a (tenant_id, id, path, role, username, display_name, password_hash,"
	"                                     permissions)"
	" VALUES ($1, $2::bigint, $2::bigint::text || '.', 'tenant_admin', $3, $4, $5, '{create_subresellers,create_trials}')"
	" RETURNING " RESELLER_COLS,
	5,
};
enum { NR_TENANT, NR_ID, NR_PARENT, NR_USERNAME, NR_DISPLAY_NAME, NR_HASH, NR_PERMISSIONS, NR_NOTES, NR_PREFIX,
	   NR_NPARAMS };
static const fd_sql_t SQL_INSERT_RESELLER = {
	"authd_insert_reseller",
	"INSERT INTO frontdesk.accounts AS a (tenant_id, id, parent_id, path, role, username, display_name,"
	"                                     password_hash, permissions, notes)"
	" SELECT $1, $2::bigint, p.id, p.path || $2::bigint::text || '.', 'reseller', $4, $5, $6, $7::text[], $8"
	"   FROM frontdesk.accounts p"
	"  WHERE p.tenant_id = $1 AND p.path LIKE $9 || '%'"
	"    AND CASE WHEN $3::bigint IS NULL THEN p.parent_id IS NULL ELSE p.id = $3 END"
	" RETURNING " RESELLER_COLS,
	NR_NPARAMS,
};
static const fd_sql_t SQL_RESELLER = {
	"authd_get_reseller",
	"SELECT " RESELLER_COLS " FROM frontdesk.accounts a"
	" WHERE a.tenant_id = $1 AND a.id = $2 AND a.path LIKE $3 || '%'",
	3,
};
enum { LR_TENANT, LR_PREFIX, LR_AFTER, LR_PARENT, LR_STATUS, LR_QUERY, LR_LIMIT, LR_NPARAMS };
static const fd_sql_t SQL_LIST_RESELLERS = {
	"authd_list_resellers",
	"SELECT " RESELLER_COLS " FROM frontdesk.accounts a"
	" WHERE a.tenant_id = $1 AND a.path LIKE $2 || '%' AND a.id > $3"
	"   AND ($4::bigint = 0 OR a.parent_id = $4) AND ($5 = '' OR a.status = $5)"
	"   AND ($6 = '' OR strpos(lower(a.username || ' ' || a.display_name), lower($6)) > 0)"
	" ORDER BY a.id LIMIT $7",
	LR_NPARAMS,
};
enum { UR_TENANT, UR_ID, UR_DISPLAY_NAME, UR_PERMISSIONS, UR_HASH, UR_STATUS, UR_NOTES, UR_PREFIX, UR_OLD_HASH,
	   UR_NPARAMS };
/* UR_OLD_HASH: the password hash the row must still have (a change of one's
 * own password checked against it); NULL: any. */
static const fd_sql_t SQL_UPDATE_RESELLER = {
	"authd_update_reseller",
	"UPDATE frontdesk.accounts AS a SET"
	"   display_name = coalesce($3, a.display_name), permissions = coalesce($4::text[], a.permissions),"
	"   password_hash = coalesce($5, a.password_hash), status = coalesce($6, a.status),"
	"   notes = coalesce($7, a.notes), updated_at = now()"
	" WHERE a.tenant_id = $1 AND a.id = $2 AND a.path LIKE $8 || '%'"
	"   AND ($9::text IS NULL OR a.password_hash = $9)"
	" RETURNING " RESELLER_COLS,
	UR_NPARAMS,
};
static const fd_sql_t SQL_PASSWORD_HASH = {
	"authd_password_hash",
	"SELECT password_hash FROM frontdesk.accounts WHERE tenant_id = $1 AND id = $2",
	2,
};
static const fd_sql_t SQL_ACCOUNT_ROLE = {
	"authd_key_account",
	"SELECT a.role FROM frontdesk.accounts a WHERE a.tenant_id = $1 AND a.id = $2 AND a.path LIKE $3 || '%'",
	3,
};
static const fd_sql_t SQL_ACCOUNT_ID = {
	"authd_account_id", "SELECT id FROM frontdesk.accounts WHERE tenant_id = $1 AND username = $2", 2,
};
enum { LA_ID, LA_ROLE, LA_HASH, LA_PATH, LA_PERMISSIONS, LA_ACTIVE };
static const fd_sql_t SQL_LOGIN_ACCOUNT = {
	"authd_account_by_name",
	"SELECT a.id, a.role, a.password_hash, a.path, a.permissions,"
	"       NOT EXISTS (SELECT 1 FROM frontdesk.accounts s WHERE s.tenant_id = a.tenant_id"
	"                     AND s.id = ANY (frontdesk.path_ids(a.path)) AND s.status <> 'active')"
	"  FROM frontdesk.accounts a WHERE a.tenant_id = $1 AND a.username = $2",
	2,
};
static const fd_sql_t SQL_TOUCH_LOGIN = {
	"authd_touch_login",
	"UPDATE frontdesk.accounts SET last_login_at = now() WHERE tenant_id = $1 AND id = $2",
	2,
};

int store_insert_root(fd_tx_t *tx, fd_arena_t *arena, int64_t tenant, int64_t id, const char *username,
                      const char *display_name, const char *password_hash, Frontdesk__V1__Reseller **out)
{
	num_t t = numb(tenant), i = numb(id);
	const char *params[] = { t.s, i.s, username, display_name, password_hash };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_INSERT_ROOT, params, 0, &res);
	if (rc < 0)
		return rc;
	return (*out = reseller_row(arena, res, 0)) ? 0 : OUT_OF_MEMORY(tx);
}

int store_insert_reseller(fd_tx_t *tx, fd_arena_t *arena, const store_new_reseller_t *r,
                          Frontdesk__V1__Reseller **out)
{
	num_t t = numb(r->tenant), i = numb(r->id), p = numb(r->parent);
	const char *perms = permissions_text(arena, r->permissions, true);
	if (!perms)
		return OUT_OF_MEMORY(tx);
	const char *params[NR_NPARAMS] = {
		[NR_TENANT] = t.s, [NR_ID] = i.s, [NR_PARENT] = r->parent ? p.s : NULL,
		[NR_USERNAME] = r->username, [NR_DISPLAY_NAME] = r->display_name, [NR_HASH] = r->password_hash,
		[NR_PERMISSIONS] = perms, [NR_NOTES] = r->notes, [NR_PREFIX] = r->prefix,
	};
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_INSERT_RESELLER, params, 0, &res);
	return rc < 0 ? rc : one_reseller(tx, arena, res, out);
}

int store_reseller(fd_tx_t *tx, fd_arena_t *arena, int64_t tenant, int64_t id, const char *prefix,
                   Frontdesk__V1__Reseller **out)
{
	num_t t = numb(tenant), i = numb(id);
	const char *params[] = { t.s, i.s, prefix };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_RESELLER, params, 0, &res);
	return rc < 0 ? rc : one_reseller(tx, arena, res, out);
}

int store_list_resellers(fd_tx_t *tx, fd_arena_t *arena, const store_reseller_filter_t *f,
                         Frontdesk__V1__Reseller ***out, size_t *n)
{
	num_t t = numb(f->tenant), a = numb(f->after), p = numb(f->parent), l = numb(f->limit);
	const char *st = enum_text(ACCOUNT_STATUS_NAMES, f->status);
	const char *params[LR_NPARAMS] = {
		[LR_TENANT] = t.s, [LR_PREFIX] = f->prefix, [LR_AFTER] = a.s, [LR_PARENT] = p.s,
		[LR_STATUS] = st ? st : "", [LR_QUERY] = f->query, [LR_LIMIT] = l.s,
	};
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_LIST_RESELLERS, params, 0, &res);
	if (rc < 0)
		return rc;
	READ_ROWS(tx, arena, res, reseller_row, out, n);
	return 0;
}

int store_update_reseller(fd_tx_t *tx, fd_arena_t *arena, const store_reseller_update_t *u,
                          Frontdesk__V1__Reseller **out)
{
	num_t t = numb(u->tenant), i = numb(u->id);
	const char *params[UR_NPARAMS] = {
		[UR_TENANT] = t.s, [UR_ID] = i.s, [UR_DISPLAY_NAME] = u->display_name,
		[UR_PERMISSIONS] = u->permissions, [UR_HASH] = u->password_hash,
		[UR_STATUS] = u->status ? enum_text(ACCOUNT_STATUS_NAMES, u->status) : NULL,
		[UR_NOTES] = u->notes, [UR_PREFIX] = u->prefix, [UR_OLD_HASH] = u->old_password_hash,
	};
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_UPDATE_RESELLER, params, 0, &res);
	return rc < 0 ? rc : one_reseller(tx, arena, res, out);
}

int store_password_hash(fd_tx_t *tx, int64_t tenant, int64_t id, unsigned flags, char out[160])
{
	num_t t = numb(tenant), i = numb(id);
	const char *params[] = { t.s, i.s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_PASSWORD_HASH, params, flags, &res);
	if (rc < 0 || PQntuples(res) != 1)
		return rc < 0 ? rc : 0;
	snprintf(out, 160, "%s", col_text(res, 0, 0));
	return 1;
}

int store_account_role(fd_tx_t *tx, int64_t tenant, int64_t id, const char *prefix, fd_role_t *role)
{
	num_t t = numb(tenant), i = numb(id);
	const char *params[] = { t.s, i.s, prefix };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_ACCOUNT_ROLE, params, 0, &res);
	if (rc < 0 || PQntuples(res) == 0)
		return rc < 0 ? rc : 0;
	*role = col_role(res, 0, 0);
	return 1;
}

int store_account_id(fd_tx_t *tx, int64_t tenant, const char *username, int64_t *id)
{
	num_t t = numb(tenant);
	const char *params[] = { t.s, username };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_ACCOUNT_ID, params, 0, &res);
	if (rc < 0 || PQntuples(res) == 0)
		return rc < 0 ? rc : 0;
	*id = col_i64(res, 0, 0);
	return 1;
}

int store_login_account(fd_tx_t *tx, int64_t tenant, const char *username, unsigned flags, account_row_t *acc,
                        char hash[160], bool *active)
{
	num_t t = numb(tenant);
	const char *params[] = { t.s, username };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_LOGIN_ACCOUNT, params, flags, &res);
	if (rc < 0 || PQntuples(res) != 1)
		return rc < 0 ? rc : 0;
	memset(acc, 0, sizeof(*acc));
	acc->tenant_id = tenant;
	acc->id = col_i64(res, 0, LA_ID);
	acc->role = col_role(res, 0, LA_ROLE);
	snprintf(acc->path, sizeof(acc->path), "%s", col_text(res, 0, LA_PATH));
	acc->permissions = fd_permissions_parse(col_text(res, 0, LA_PERMISSIONS));
	snprintf(acc->username, sizeof(acc->username), "%s", username);
	snprintf(hash, 160, "%s", col_text(res, 0, LA_HASH));
	*active = col_bool(res, 0, LA_ACTIVE);
	return 1;
}

int store_touch_login(fd_tx_t *tx, int64_t tenant, int64_t id)
{
	num_t t = numb(tenant), i = numb(id);
	const char *params[] = { t.s, i.s };
	return fd_tx_exec(tx, &SQL_TOUCH_LOGIN, params, 0, NULL);
}

/* ---- failed logins ---- */

/* Every attempt is counted before its password is checked, in one statement
 * per counter (the row lock orders concurrent attempts), so parallel guesses
 * cannot slip past the limit; a correct password takes its count back. */
enum { CA_FAILURES, CA_RETRY_IN, CA_STARTED };
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
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_UNCOUNT_ATTEMPT = {
	"authd_uncount_attempt",
	"UPDATE frontdesk.login_failures SET failures = greatest(failures - 1, 0) WHERE key = $1",
	1,
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_CLEAR_FAILURES = {
	"authd_clear_failures", "DELETE FROM frontdesk.login_failures WHERE key = $1", 1,
	FD_SQL_PLATFORM,
};
/* Counters whose window ended long ago are dropped a few at a time by each
 * successful login, so the table stays the size of the recent attacks. */
static const fd_sql_t SQL_PRUNE_FAILURES = {
	"authd_prune_failures",
	"DELETE FROM frontdesk.login_failures WHERE key IN ("
	"  SELECT key FROM frontdesk.login_failures"
	"   WHERE window_start < now() - 2 * make_interval(secs => $1::int) LIMIT 100)",
	1,
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_LIMITED_LOCK = {
	"authd_limited_lock", "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", 1,
};
/* One more repeat on the window's login.rate_limited row: the UPDATE of
 * audit_events (hash-partitioned) is frontdesk.audit_limited_repeat
 * (migrations/0019_generic_plans.sql), whose generic plan the session keeps,
 * also behind a pooler; as a plain statement a custom plan was made again on
 * every call. Its id, or no row. */
static const fd_sql_t SQL_LIMITED_REPEAT = {
	"authd_limited_repeat", "SELECT * FROM frontdesk.audit_limited_repeat($1, $2, $3, $4, $5)", 5,
};

int store_count_attempt(fd_tx_t *tx, fd_arena_t *arena, const char *key, int64_t window_s, int64_t *attempts,
                        int64_t *retry_in, const char **started)
{
	num_t w = numb(window_s);
	const char *params[] = { key, w.s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_COUNT_ATTEMPT, params, 0, &res);
	if (rc < 0)
		return rc;
	*attempts = col_i64(res, 0, CA_FAILURES);
	*retry_in = col_i64(res, 0, CA_RETRY_IN);
	return (*started = fd_arena_strdup(arena, col_text(res, 0, CA_STARTED))) ? 0 : OUT_OF_MEMORY(tx);
}

int store_uncount_attempt(fd_tx_t *tx, const char *key, unsigned flags)
{
	const char *params[] = { key };
	return fd_tx_exec(tx, &SQL_UNCOUNT_ATTEMPT, params, flags, NULL);
}

int store_clear_failures(fd_tx_t *tx, const char *key)
{
	const char *params[] = { key };
	return fd_tx_exec(tx, &SQL_CLEAR_FAILURES, params, 0, NULL);
}

int store_prune_failures(fd_tx_t *tx, int64_t window_s)
{
	num_t w = numb(window_s);
	const char *params[] = { w.s };
	return fd_tx_exec(tx, &SQL_PRUNE_FAILURES, params, 0, NULL);
}

int store_limited_lock(fd_tx_t *tx, const char *key)
{
	const char *params[] = { key };
	return fd_tx_exec(tx, &SQL_LIMITED_LOCK, params, 0, NULL);
}

int store_limited_repeat(fd_tx_t *tx, int64_t tenant, const char *actor, const char *source, const char *started,
                         const char *slug)
{
	num_t t = numb(tenant);
	const char *params[] = { t.s, actor, source, started, slug };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_LIMITED_REPEAT, params, 0, &res);
	return rc < 0 ? rc : PQntuples(res) > 0;
}

/* ---- refresh tokens ---- */

static const fd_sql_t SQL_INSERT_REFRESH = {
	"authd_insert_refresh",
	"INSERT INTO frontdesk.refresh_tokens (tenant_id, id, account_id, family_id, secret_hash, expires_at)"
	" VALUES ($1, $2, $3, coalesce($4::bigint, $2), decode($5, 'hex'),"
	"         now() + make_interval(secs => $6::int))"
	" RETURNING " EPOCH("expires_at"),
	6,
};
enum refresh_col {
	FC_ACCOUNT, FC_FAMILY, FC_SECRET_HASH, FC_USED, FC_REVOKED, FC_EXPIRED, FC_ROLE, FC_USERNAME, FC_PATH,
	FC_PERMISSIONS, FC_ACCOUNT_ACTIVE, FC_TENANT_ACTIVE, FC_TENANT_SLUG,
};
static const fd_sql_t SQL_LOCK_REFRESH = {
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
static const fd_sql_t SQL_USE_REFRESH = {
	"authd_refresh_use", "UPDATE frontdesk.refresh_tokens SET used_at = now() WHERE tenant_id = $1 AND id = $2", 2,
};
static const fd_sql_t SQL_REVOKE_FAMILY = {
	"authd_revoke_family",
	"UPDATE frontdesk.refresh_tokens SET revoked_at = now()"
	" WHERE tenant_id = $1 AND family_id = $2 AND revoked_at IS NULL",
	2,
};
/* A password reset revokes every token; Logout's all_sessions only those
 * still live. */
static const fd_sql_t SQL_REVOKE_ACCOUNT[] = {
	{ "authd_revoke_on_reset",
	  "UPDATE frontdesk.refresh_tokens SET revoked_at = now()"
	  " WHERE tenant_id = $1 AND account_id = $2 AND revoked_at IS NULL",
	  2 },
	{ "authd_revoke_account",
	  "UPDATE frontdesk.refresh_tokens SET revoked_at = now()"
	  " WHERE tenant_id = $1 AND account_id = $2 AND revoked_at IS NULL AND expires_at > now()",
	  2 },
};

int store_insert_refresh(fd_tx_t *tx, int64_t tenant, int64_t id, int64_t account, int64_t family,
                         const char *hash, int64_t ttl_s, int64_t *expires_at)
{
	num_t t = numb(tenant), i = numb(id), a = numb(account), f = numb(family), ttl = numb(ttl_s);
	const char *params[] = { t.s, i.s, a.s, family ? f.s : NULL, hash, ttl.s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_INSERT_REFRESH, params, 0, &res);
	if (rc < 0)
		return rc;
	*expires_at = col_i64(res, 0, 0);
	return 0;
}

int store_lock_refresh(fd_tx_t *tx, int64_t tenant, int64_t id, store_refresh_t *out)
{
	num_t t = numb(tenant), i = numb(id);
	const char *params[] = { t.s, i.s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_LOCK_REFRESH, params, 0, &res);
	if (rc < 0 || PQntuples(res) != 1)
		return rc < 0 ? rc : 0;
	memset(out, 0, sizeof(*out));
	out->family = col_i64(res, 0, FC_FAMILY);
	/* Kept only when it has the one shape a hash can have: the caller
	 * compares all of it in constant time. */
	if (PQgetlength(res, 0, FC_SECRET_HASH) == 66)
		memcpy(out->secret_hash, col_text(res, 0, FC_SECRET_HASH), 67);
	out->used = col_bool(res, 0, FC_USED);
	out->revoked = col_bool(res, 0, FC_REVOKED);
	out->expired = col_bool(res, 0, FC_EXPIRED);
	out->account_active = col_bool(res, 0, FC_ACCOUNT_ACTIVE);
	out->tenant_active = col_bool(res, 0, FC_TENANT_ACTIVE);
	account_row_t *acc = &out->acc;
	acc->tenant_id = tenant;
	acc->id = col_i64(res, 0, FC_ACCOUNT);
	acc->role = col_role(res, 0, FC_ROLE);
	snprintf(acc->username, sizeof(acc->username), "%s", col_text(res, 0, FC_USERNAME));
	snprintf(acc->path, sizeof(acc->path), "%s", col_text(res, 0, FC_PATH));
	acc->permissions = fd_permissions_parse(col_text(res, 0, FC_PERMISSIONS));
	snprintf(acc->tenant_slug, sizeof(acc->tenant_slug), "%s", col_text(res, 0, FC_TENANT_SLUG));
	return 1;
}

int store_use_refresh(fd_tx_t *tx, int64_t tenant, int64_t id)
{
	num_t t = numb(tenant), i = numb(id);
	const char *params[] = { t.s, i.s };
	return fd_tx_exec(tx, &SQL_USE_REFRESH, params, 0, NULL);
}

int store_revoke_family(fd_tx_t *tx, int64_t tenant, int64_t family, int *revoked)
{
	num_t t = numb(tenant), f = numb(family);
	const char *params[] = { t.s, f.s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_REVOKE_FAMILY, params, 0, &res);
	if (rc >= 0 && revoked)
		*revoked = atoi(PQcmdTuples(res));
	return rc;
}

int store_revoke_account(fd_tx_t *tx, int64_t tenant, int64_t account, bool live, unsigned flags, int *revoked)
{
	num_t t = numb(tenant), a = numb(account);
	const char *params[] = { t.s, a.s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_REVOKE_ACCOUNT[live], params, flags, &res);
	if (rc >= 0 && revoked)
		*revoked = atoi(PQcmdTuples(res));
	return rc;
}

/* ---- API keys ---- */

#define KEY_COLUMNS(X) \
	X(KC_, ACCOUNT, "k.account_id") \
	X(KC_, NAME, "k.name") \
	X(KC_, PREFIX, "k.prefix") \
	X(KC_, SCOPES, "k.scopes") \
	X(KC_, CREATED_BY, "k.created_by") \
	X(KC_, CREATED_AT, EPOCH("k.created_at")) \
	X(KC_, EXPIRES_AT, EPOCH0("k.expires_at")) \
	X(KC_, LAST_USED_AT, EPOCH0("k.last_used_at")) \
	X(KC_, REVOKED_AT, EPOCH0("k.revoked_at")) \
	X(KC_, TENANT, "k.tenant_id")
enum key_col { KC_ID, KEY_COLUMNS(COL_ENUM) KC_COUNT };
#define KEY_COLS "k.id" KEY_COLUMNS(COL_SQL)

static Frontdesk__V1__ApiKey *key_row(fd_arena_t *arena, const PGresult *res, int row)
{
	Frontdesk__V1__ApiKey *k = fd_arena_zalloc(arena, sizeof(*k));
	if (!k)
		return NULL;
	frontdesk__v1__api_key__init(k);
	k->id = col_i64(res, row, KC_ID);
	k->tenant_id = col_i64(res, row, KC_TENANT);
	k->reseller_id = col_i64(res, row, KC_ACCOUNT);
	k->name = fd_arena_strdup(arena, col_text(res, row, KC_NAME));
	k->prefix = fd_arena_strdup(arena, col_text(res, row, KC_PREFIX));
	fd_scopes_t scopes = fd_scopes_parse(col_text(res, row, KC_SCOPES));
	k->scopes = fd_arena_zalloc(arena, sizeof(*k->scopes) * (FD_SCOPE_MAX + 1));
	for (int s = 1; s <= FD_SCOPE_MAX && k->scopes; s++)
		if (scopes & FD_SCOPE(s))
			k->scopes[k->n_scopes++] = (Frontdesk__V1__Scope)s;
	k->created_by = col_i64(res, row, KC_CREATED_BY);
	k->created_at = col_i64(res, row, KC_CREATED_AT);
	k->expires_at = col_i64(res, row, KC_EXPIRES_AT);
	k->last_used_at = col_i64(res, row, KC_LAST_USED_AT);
	k->revoked_at = col_i64(res, row, KC_REVOKED_AT);
	return k->name && k->prefix && k->scopes ? k : NULL;
}

enum { NK_TENANT, NK_ID, NK_ACCOUNT, NK_NAME, NK_PREFIX, NK_HASH, NK_SCOPES, NK_CREATED_BY, NK_EXPIRES_AT,
	   NK_NPARAMS };
static const fd_sql_t SQL_INSERT_KEY = {
	"authd_insert_api_key",
	"INSERT INTO frontdesk.api_keys AS k (tenant_id, id, account_id, name, prefix, secret_hash, scopes,"
	"                                     created_by, expires_at)"
	" VALUES ($1, $2, $3, $4, $5, decode($6, 'hex'), $7::text[], $8, to_timestamp(nullif($9::bigint, 0)))"
	" RETURNING " KEY_COLS,
	NK_NPARAMS,
};
enum { LK_TENANT, LK_PREFIX, LK_AFTER, LK_ACCOUNT, LK_REVOKED, LK_LIMIT, LK_NPARAMS };
static const fd_sql_t SQL_LIST_KEYS = {
	"authd_list_api_keys",
	"SELECT " KEY_COLS " FROM frontdesk.api_keys k"
	"  JOIN frontdesk.accounts a ON a.tenant_id = k.tenant_id AND a.id = k.account_id"
	" WHERE k.tenant_id = $1 AND a.path LIKE $2 || '%' AND k.id > $3"
	"   AND ($4::bigint = 0 OR k.account_id = $4)"
	"   AND ($5 OR (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())))"
	" ORDER BY k.id LIMIT $6",
	LK_NPARAMS,
};
/* KC_COUNT, the column after KEY_COLS, says whether this call revoked it
 * (the subquery sees the row as it was before the UPDATE). */
static const fd_sql_t SQL_REVOKE_KEY = {
	"authd_revoke_api_key",
	"UPDATE frontdesk.api_keys k SET revoked_at = coalesce(k.revoked_at, now())"
	"  FROM frontdesk.accounts a"
	" WHERE k.tenant_id = $1 AND k.id = $2 AND a.tenant_id = k.tenant_id AND a.id = k.account_id"
	"   AND a.path LIKE $3 || '%'"
	" RETURNING " KEY_COLS ", (SELECT o.revoked_at IS NULL FROM frontdesk.api_keys o"
	"                           WHERE o.tenant_id = k.tenant_id AND o.id = k.id)",
	3,
};

int store_insert_api_key(fd_tx_t *tx, fd_arena_t *arena, const store_new_key_t *k, Frontdesk__V1__ApiKey **out)
{
	num_t t = numb(k->tenant), i = numb(k->id), a = numb(k->account), by = numb(k->created_by),
	      exp = numb(k->expires_at);
	const char *params[NK_NPARAMS] = {
		[NK_TENANT] = t.s, [NK_ID] = i.s, [NK_ACCOUNT] = a.s, [NK_NAME] = k->name, [NK_PREFIX] = k->prefix,
		[NK_HASH] = k->hash, [NK_SCOPES] = k->scopes, [NK_CREATED_BY] = by.s, [NK_EXPIRES_AT] = exp.s,
	};
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_INSERT_KEY, params, 0, &res);
	if (rc < 0)
		return rc;
	return (*out = key_row(arena, res, 0)) ? 0 : OUT_OF_MEMORY(tx);
}

int store_list_api_keys(fd_tx_t *tx, fd_arena_t *arena, const store_key_filter_t *f, Frontdesk__V1__ApiKey ***out,
                        size_t *n)
{
	num_t t = numb(f->tenant), a = numb(f->after), acc = numb(f->account), l = numb(f->limit);
	const char *params[LK_NPARAMS] = {
		[LK_TENANT] = t.s, [LK_PREFIX] = f->prefix, [LK_AFTER] = a.s, [LK_ACCOUNT] = acc.s,
		[LK_REVOKED] = f->include_revoked ? "true" : "false", [LK_LIMIT] = l.s,
	};
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_LIST_KEYS, params, 0, &res);
	if (rc < 0)
		return rc;
	READ_ROWS(tx, arena, res, key_row, out, n);
	return 0;
}

int store_revoke_api_key(fd_tx_t *tx, fd_arena_t *arena, int64_t tenant, int64_t id, const char *prefix,
                         Frontdesk__V1__ApiKey **out, bool *revoked_now)
{
	num_t t = numb(tenant), i = numb(id);
	const char *params[] = { t.s, i.s, prefix };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_REVOKE_KEY, params, 0, &res);
	if (rc < 0 || PQntuples(res) == 0)
		return rc < 0 ? rc : 0;
	*revoked_now = col_bool(res, 0, KC_COUNT);
	return (*out = key_row(arena, res, 0)) ? 1 : OUT_OF_MEMORY(tx);
}

/* ---- the audit trail ---- */

#define EVENT_COLUMNS(X) \
	X(EC_, TENANT, "e.tenant_id") \
	X(EC_, AT, EPOCH("e.at")) \
	X(EC_, ACTOR, "e.actor") \
	X(EC_, ACTOR_TENANT, "e.actor_tenant_id") \
	X(EC_, ACTOR_ACCOUNT, "e.actor_account_id") \
	X(EC_, ACTOR_ROLE, "e.actor_role") \
	X(EC_, ACTOR_PATH, "e.actor_path") \
	X(EC_, ACTOR_KEY, "e.actor_key_id") \
	X(EC_, ACTION, "e.action") \
	X(EC_, TARGET, "e.target") \
	X(EC_, SOURCE, "e.source") \
	X(EC_, OUTCOME, "e.outcome") /* AUDIT_OUTCOME_NAMES */ \
	X(EC_, REPEATS, "e.repeats") \
	X(EC_, LAST_AT, EPOCH("e.last_at")) \
	X(EC_, DETAIL, "e.detail::text")
enum event_col { EC_ID, EVENT_COLUMNS(COL_ENUM) EC_COUNT };
#define EVENT_COLS "e.id" EVENT_COLUMNS(COL_SQL)

static Frontdesk__V1__AuditEvent *event_row(fd_arena_t *arena, const PGresult *res, int row)
{
	Frontdesk__V1__AuditEvent *e = fd_arena_zalloc(arena, sizeof(*e));
	if (!e)
		return NULL;
	frontdesk__v1__audit_event__init(e);
	e->id = col_i64(res, row, EC_ID);
	e->tenant_id = col_i64(res, row, EC_TENANT);
	e->at = col_i64(res, row, EC_AT);
	e->actor = fd_arena_strdup(arena, col_text(res, row, EC_ACTOR));
	e->actor_tenant_id = col_i64(res, row, EC_ACTOR_TENANT);
	e->actor_account_id = col_i64(res, row, EC_ACTOR_ACCOUNT);
	e->actor_role = (Frontdesk__V1__Role)col_role(res, row, EC_ACTOR_ROLE);
	e->actor_path = fd_arena_strdup(arena, col_text(res, row, EC_ACTOR_PATH));
	e->actor_api_key_id = col_i64(res, row, EC_ACTOR_KEY);
	e->action = fd_arena_strdup(arena, col_text(res, row, EC_ACTION));
	e->target = fd_arena_strdup(arena, col_text(res, row, EC_TARGET));
	e->source = fd_arena_strdup(arena, col_text(res, row, EC_SOURCE));
	e->outcome = enum_value(AUDIT_OUTCOME_NAMES, col_text(res, row, EC_OUTCOME),
	                        FRONTDESK__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_UNSPECIFIED);
	e->repeats = (int32_t)col_i64(res, row, EC_REPEATS);
	e->last_at = col_i64(res, row, EC_LAST_AT);
	e->detail_json = fd_arena_strdup(arena, col_text(res, row, EC_DETAIL));
	if (!e->actor || !e->actor_path || !e->action || !e->target || !e->source || !e->detail_json)
		return NULL;
	return e;
}

enum { LE_TENANT, LE_PREFIX, LE_BEFORE, LE_ACTOR, LE_TARGET, LE_ACTION, LE_ACTION_PREFIX, LE_SINCE, LE_UNTIL,
	   LE_LIMIT, LE_NPARAMS };
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
	LE_NPARAMS,
};

int store_list_events(fd_tx_t *tx, fd_arena_t *arena, const store_event_filter_t *f, Frontdesk__V1__AuditEvent ***out,
                      size_t *n)
{
	num_t t = numb(f->tenant), b = numb(f->before), a = numb(f->actor_account), s = numb(f->since),
	      u = numb(f->until), l = numb(f->limit);
	const char *params[LE_NPARAMS] = {
		[LE_TENANT] = t.s, [LE_PREFIX] = f->prefix, [LE_BEFORE] = b.s, [LE_ACTOR] = a.s, [LE_TARGET] = f->target,
		[LE_ACTION] = f->action, [LE_ACTION_PREFIX] = f->action_prefix, [LE_SINCE] = s.s, [LE_UNTIL] = u.s,
		[LE_LIMIT] = l.s,
	};
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_LIST_EVENTS, params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	READ_ROWS(tx, arena, res, event_row, out, n);
	return 0;
}

/* ---- brand host names (platform-level: FD_SQL_PLATFORM) ---- */

#define HOST_COLUMNS(X) \
	X(HC_, TENANT, "tenant_id") \
	X(HC_, STATUS, "status") /* HOST_STATUS_NAMES */ \
	X(HC_, REASON, "reason") \
	X(HC_, CREATED_AT, EPOCH("created_at")) \
	X(HC_, UPDATED_AT, EPOCH("updated_at")) \
	X(HC_, ID, "id")
enum host_col { HC_NAME, HOST_COLUMNS(COL_ENUM) HC_COUNT };
#define HOST_COLS "host_name" HOST_COLUMNS(COL_SQL)

static Frontdesk__V1__Host *host_row(fd_arena_t *arena, const PGresult *res, int row)
{
	Frontdesk__V1__Host *h = fd_arena_zalloc(arena, sizeof(*h));
	if (!h)
		return NULL;
	frontdesk__v1__host__init(h);
	h->host_name = fd_arena_strdup(arena, col_text(res, row, HC_NAME));
	h->tenant_id = col_i64(res, row, HC_TENANT);
	h->status = enum_value(HOST_STATUS_NAMES, col_text(res, row, HC_STATUS),
	                       FRONTDESK__V1__HOST_STATUS__HOST_STATUS_PENDING);
	h->reason = fd_arena_strdup(arena, col_text(res, row, HC_REASON));
	h->created_at = col_i64(res, row, HC_CREATED_AT);
	h->updated_at = col_i64(res, row, HC_UPDATED_AT);
	return h->host_name && h->reason ? h : NULL;
}

/* The one row of res, if any: 1 with *out and *id (id may be NULL), 0 if none. */
static int one_host(fd_tx_t *tx, fd_arena_t *arena, const PGresult *res, Frontdesk__V1__Host **out, int64_t *id)
{
	*out = NULL;
	if (PQntuples(res) == 0)
		return 0;
	if (id)
		*id = col_i64(res, 0, HC_ID);
	return (*out = host_row(arena, res, 0)) ? 1 : OUT_OF_MEMORY(tx);
}

/* DO NOTHING on a conflict waits for a transaction inserting the same name
 * to end, so the caller's next statement (READ COMMITTED) sees its row. */
static const fd_sql_t SQL_INSERT_HOST = {
	"authd_insert_host",
	"INSERT INTO frontdesk.brand_hosts (host_name, tenant_id, status) VALUES ($1, $2, $3)"
	" ON CONFLICT (host_name) DO NOTHING RETURNING " HOST_COLS,
	3,
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_HOST = {
	"authd_get_host", "SELECT " HOST_COLS " FROM frontdesk.brand_hosts WHERE host_name = $1", 1,
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_LOCK_HOST = {
	"authd_lock_host",
	"SELECT " HOST_COLS " FROM frontdesk.brand_hosts WHERE host_name = $1 AND tenant_id = $2 FOR UPDATE", 2,
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_SET_HOST_STATUS = {
	"authd_set_host_status",
	"UPDATE frontdesk.brand_hosts SET status = $3, reason = $4, updated_at = now()"
	" WHERE host_name = $1 AND tenant_id = $2 RETURNING " HOST_COLS,
	4,
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_DELETE_HOST = {
	"authd_delete_host",
	"DELETE FROM frontdesk.brand_hosts WHERE host_name = $1 AND tenant_id = $2 RETURNING " HOST_COLS, 2,
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_LIST_HOSTS = {
	"authd_list_hosts",
	"SELECT " HOST_COLS " FROM frontdesk.brand_hosts"
	" WHERE ($1::bigint < 0 OR tenant_id = $1) AND ($2 = '' OR status = $2) AND id > $3"
	" ORDER BY id LIMIT $4",
	4,
	FD_SQL_PLATFORM,
};
enum { BH_NAME, BH_TENANT, BH_SLUG };
static const fd_sql_t SQL_BRAND_HOSTS = {
	"authd_brand_hosts",
	"SELECT h.host_name, h.tenant_id, t.slug FROM frontdesk.brand_hosts h"
	"  JOIN frontdesk.tenants t ON t.id = h.tenant_id"
	" WHERE h.status = 'approved' AND t.status = 'active' ORDER BY h.host_name",
	0,
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_BRAND_TENANTS = {
	"authd_brand_tenants",
	"SELECT '', id, slug FROM frontdesk.tenants WHERE status = 'active' AND id > 0 ORDER BY id",
	0,
	FD_SQL_PLATFORM,
};

int store_insert_host(fd_tx_t *tx, fd_arena_t *arena, const char *name, int64_t tenant,
                      Frontdesk__V1__HostStatus status, Frontdesk__V1__Host **out, int64_t *id)
{
	num_t t = numb(tenant);
	const char *params[] = { name, t.s, enum_text(HOST_STATUS_NAMES, status) };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_INSERT_HOST, params, 0, &res);
	return rc < 0 ? rc : one_host(tx, arena, res, out, id);
}

int store_host(fd_tx_t *tx, fd_arena_t *arena, const char *name, unsigned flags, Frontdesk__V1__Host **out)
{
	const char *params[] = { name };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_HOST, params, flags, &res);
	return rc < 0 ? rc : one_host(tx, arena, res, out, NULL);
}

int store_lock_host(fd_tx_t *tx, fd_arena_t *arena, const char *name, int64_t tenant, Frontdesk__V1__Host **out,
                    int64_t *id)
{
	num_t t = numb(tenant);
	const char *params[] = { name, t.s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_LOCK_HOST, params, 0, &res);
	return rc < 0 ? rc : one_host(tx, arena, res, out, id);
}

int store_set_host_status(fd_tx_t *tx, fd_arena_t *arena, const char *name, int64_t tenant,
                          Frontdesk__V1__HostStatus status, const char *reason, Frontdesk__V1__Host **out,
                          int64_t *id)
{
	num_t t = numb(tenant);
	const char *params[] = { name, t.s, enum_text(HOST_STATUS_NAMES, status), reason };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_SET_HOST_STATUS, params, 0, &res);
	return rc < 0 ? rc : one_host(tx, arena, res, out, id);
}

int store_delete_host(fd_tx_t *tx, fd_arena_t *arena, const char *name, int64_t tenant, Frontdesk__V1__Host **out,
                      int64_t *id)
{
	num_t t = numb(tenant);
	const char *params[] = { name, t.s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_DELETE_HOST, params, 0, &res);
	return rc < 0 ? rc : one_host(tx, arena, res, out, id);
}

int store_list_hosts(fd_tx_t *tx, fd_arena_t *arena, const store_host_filter_t *f, Frontdesk__V1__Host ***out,
                     int64_t **ids, size_t *n)
{
	const char *st = enum_text(HOST_STATUS_NAMES, f->status);
	num_t t = numb(f->tenant), a = numb(f->after), l = numb(f->limit);
	const char *params[] = { t.s, st ? st : "", a.s, l.s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_LIST_HOSTS, params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	READ_ROWS(tx, arena, res, host_row, out, n);
	if (!(*ids = fd_arena_zalloc(arena, sizeof(**ids) * (*n ? *n : 1))))
		return OUT_OF_MEMORY(tx);
	for (size_t i = 0; i < *n; i++)
		(*ids)[i] = col_i64(res, (int)i, HC_ID);
	return 0;
}

static Frontdesk__V1__BrandHost *brand_row(fd_arena_t *arena, const PGresult *res, int row)
{
	Frontdesk__V1__BrandHost *b = fd_arena_zalloc(arena, sizeof(*b));
	if (!b)
		return NULL;
	frontdesk__v1__brand_host__init(b);
	b->host_name = fd_arena_strdup(arena, col_text(res, row, BH_NAME));
	b->tenant_id = col_i64(res, row, BH_TENANT);
	b->tenant_slug = fd_arena_strdup(arena, col_text(res, row, BH_SLUG));
	return b->host_name && b->tenant_slug ? b : NULL;
}

int store_brand_hosts(fd_tx_t *tx, fd_arena_t *arena, Frontdesk__V1__BrandHost ***hosts, size_t *nhosts,
                      Frontdesk__V1__BrandHost ***tenants, size_t *ntenants)
{
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_BRAND_HOSTS, NULL, 0, &res);
	if (rc < 0)
		return rc;
	READ_ROWS(tx, arena, res, brand_row, hosts, nhosts);
	if ((rc = fd_tx_exec(tx, &SQL_BRAND_TENANTS, NULL, FD_TX_LAST, &res)) < 0)
		return rc;
	READ_ROWS(tx, arena, res, brand_row, tenants, ntenants);
	return 0;
}

/* ---- the platform's idempotency keys ---- */

/* As tenants/idem.c's, with the key's tenant always the platform's: DO
 * NOTHING on a conflict waits for the holder of the key to finish, so the
 * next statement sees its row (READ COMMITTED). */
static const fd_sql_t SQL_PLATFORM_CLAIM = {
	"authd_platform_idem_claim",
	"INSERT INTO frontdesk.idempotency (tenant_id, service, idem_key, request_hash)"
	" VALUES (0, $1, $2, decode($3, 'hex')) ON CONFLICT DO NOTHING RETURNING 1",
	3,
};
enum { PF_HASH, PF_RESULT, PF_HAS_RESPONSE, PF_RESPONSE };
static const fd_sql_t SQL_PLATFORM_FIRST = {
	"authd_platform_idem_first",
	"SELECT encode(request_hash, 'hex'), coalesce(result_id, 0), response IS NOT NULL, response"
	"  FROM frontdesk.idempotency WHERE tenant_id = 0 AND service = $1 AND idem_key = $2",
	2,
};
static const fd_sql_t SQL_PLATFORM_DONE = {
	"authd_platform_idem_done",
	"UPDATE frontdesk.idempotency SET result_id = $3, response = $4::bytea"
	" WHERE tenant_id = 0 AND service = $1 AND idem_key = $2",
	4,
};

int store_platform_idem_claim(fd_tx_t *tx, const fd_idem_t *k, fd_idem_replay_t *first)
{
	memset(first, 0, sizeof(*first));
	if (!k->key)
		return 0;
	const char *params[] = { k->service, k->key, k->hash };
	PGresult *res;
	int rc;
	if ((rc = store_set_tenant(tx, 0)) < 0 || (rc = fd_tx_exec(tx, &SQL_PLATFORM_CLAIM, params, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) == 1)
		return 0;
	if ((rc = fd_tx_exec(tx, &SQL_PLATFORM_FIRST, params, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) != 1)   /* claimed and given up between the two statements: rare; retried */
		return fd_err_set(fd_tx_err(tx), FD_EABORTED, "idempotency_key: in use by a call that gave up; try again");
	if (strcmp(col_text(res, 0, PF_HASH), k->hash) != 0)
		return fd_err_set(fd_tx_err(tx), FD_EPRECOND, "idempotency_key: already used with a different request");
	first->result_id = col_i64(res, 0, PF_RESULT);
	if (col_bool(res, 0, PF_HAS_RESPONSE)) {
		size_t n = 0;
		unsigned char *bin = PQunescapeBytea((const unsigned char *)col_text(res, 0, PF_RESPONSE), &n);
		uint8_t *copy = bin ? fd_arena_alloc(k->arena, n ? n : 1) : NULL;
		if (copy)
			memcpy(copy, bin, n);
		PQfreemem(bin);
		if (!copy)
			return OUT_OF_MEMORY(tx);
		first->response.data = copy;
		first->response.len = n;
	}
	return 1;
}

int store_platform_idem_done(fd_tx_t *tx, const fd_idem_t *k, int64_t result_id, const ProtobufCBinaryData *response)
{
	if (!k->key)
		return 0;
	/* bytea's text input: \x and two hex digits a byte. */
	char *hex = fd_arena_alloc(k->arena, 2 * response->len + 3);
	if (!hex)
		return OUT_OF_MEMORY(tx);
	hex[0] = '\\';
	hex[1] = 'x';
	for (size_t i = 0; i < response->len; i++)
		snprintf(hex + 2 + 2 * i, 3, "%02x", response->data[i]);
	hex[2 + 2 * response->len] = '\0';
	num_t id = numb(result_id);
	const char *params[] = { k->service, k->key, id.s, hex };
	int rc = store_set_tenant(tx, 0);
	return rc < 0 ? rc : fd_tx_exec(tx, &SQL_PLATFORM_DONE, params, 0, NULL);
}

/* ---- signing keys ---- */

enum { SK_KID, SK_SEALED, SK_CREATED_AT };
static const fd_sql_t SQL_SIGNING_KEY = {
	"authd_signing_key",
	"SELECT kid, private_sealed, " EPOCH("created_at") " FROM frontdesk.signing_keys WHERE retire_at IS NULL",
	0,
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_INSERT_SIGNING_KEY = {
	"authd_insert_key",
	"INSERT INTO frontdesk.signing_keys (kid, private_sealed, public_key_pem)"
	" VALUES ($1, decode($2, 'hex'), $3) ON CONFLICT DO NOTHING",
	3,
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_RETIRE_SIGNING_KEY = {
	"authd_retire_key",
	"UPDATE frontdesk.signing_keys SET retire_at = now() + make_interval(secs => $2::int)"
	" WHERE kid = $1 AND retire_at IS NULL",
	2,
	FD_SQL_PLATFORM,
};
static const fd_sql_t SQL_DROP_OLD_SIGNING_KEYS = {
	"authd_drop_old_keys",
	"DELETE FROM frontdesk.signing_keys WHERE retire_at < now() - interval '1 day'",
	0,
	FD_SQL_PLATFORM,
};
enum { VK_KID, VK_PEM, VK_CREATED_AT, VK_RETIRE_AT };
static const fd_sql_t SQL_VERIFICATION_KEYS = {
	"authd_public_keys",
	"SELECT kid, public_key_pem, " EPOCH("created_at") ", " EPOCH0("retire_at")
	"  FROM frontdesk.verification_keys"
	" WHERE retire_at IS NULL OR retire_at > now() ORDER BY created_at DESC LIMIT 16",
	0,
	FD_SQL_PLATFORM,
};

int store_signing_key(fd_tx_t *tx, char kid[32], unsigned char **sealed, size_t *sealed_len, int64_t *created_at)
{
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_SIGNING_KEY, NULL, 0, &res);
	if (rc < 0 || PQntuples(res) != 1)
		return rc < 0 ? rc : 0;
	snprintf(kid, 32, "%s", col_text(res, 0, SK_KID));
	*created_at = col_i64(res, 0, SK_CREATED_AT);
	*sealed_len = 0;
	*sealed = PQunescapeBytea((const unsigned char *)col_text(res, 0, SK_SEALED), sealed_len);
	return *sealed ? 1 : OUT_OF_MEMORY(tx);
}

int store_insert_signing_key(fd_tx_t *tx, const char *kid, const char *sealed_hex, const char *public_pem)
{
	const char *params[] = { kid, sealed_hex, public_pem };
	return fd_tx_exec(tx, &SQL_INSERT_SIGNING_KEY, params, 0, NULL);
}

int store_retire_signing_key(fd_tx_t *tx, const char *kid, int64_t secs)
{
	num_t s = numb(secs);
	const char *params[] = { kid, s.s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_RETIRE_SIGNING_KEY, params, 0, &res);
	if (rc < 0)
		return rc;
	if (strcmp(PQcmdTuples(res), "1") != 0)
		return 0;
	rc = fd_tx_exec(tx, &SQL_DROP_OLD_SIGNING_KEYS, NULL, 0, NULL);
	return rc < 0 ? rc : 1;
}

static Frontdesk__V1__VerificationKey *verification_key_row(fd_arena_t *arena, const PGresult *res, int row)
{
	Frontdesk__V1__VerificationKey *k = fd_arena_zalloc(arena, sizeof(*k));
	if (!k)
		return NULL;
	frontdesk__v1__verification_key__init(k);
	k->kid = fd_arena_strdup(arena, col_text(res, row, VK_KID));
	k->algorithm = "ES256";
	k->public_key_pem = fd_arena_strdup(arena, col_text(res, row, VK_PEM));
	k->created_at = col_i64(res, row, VK_CREATED_AT);
	k->retire_at = col_i64(res, row, VK_RETIRE_AT);
	k->signing = k->retire_at == 0;
	return k->kid && k->public_key_pem ? k : NULL;
}

int store_verification_keys(fd_tx_t *tx, fd_arena_t *arena, Frontdesk__V1__VerificationKey ***out, size_t *n)
{
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_VERIFICATION_KEYS, NULL, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	READ_ROWS(tx, arena, res, verification_key_row, out, n);
	return 0;
}
