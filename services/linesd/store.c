/* store.c - linesd's SQL and rows (store.h): every statement, the column
 * lists they share, and the messages made from rows. */
#include <inttypes.h>
#include <string.h>
#include "enums.h"
#include "linesd.h"
#include "store.h"
#include "fd/log.h"
#include "fd/pgarray.h"

/* A time column as Unix seconds. */
#define EPOCH(col) "floor(extract(epoch FROM " col "))::bigint"

/* ---- column lists (their enums are in store.h) ---- */

/* The columns of a line, as line_message reads them: select them FROM
 * frontdesk.lines l (and concatenate: "SELECT " LINE_COLUMNS " FROM ...").
 * status is derived (EXPIRED at the second); active_connections counts the
 * sessions not yet ended; last_seen from its sessions. */
#define LINE_COLUMNS                                                                                  \
	LINE_COLUMNS_WITH("(SELECT count(*) FROM frontdesk.sessions s WHERE s.tenant_id = l.tenant_id"           \
	                  " AND s.line_id = l.id AND s.ended_at IS NULL)",                                       \
	                  "coalesce((SELECT " EPOCH("max(s.last_seen_at)") " FROM frontdesk.sessions s"          \
	                  " WHERE s.tenant_id = l.tenant_id AND s.line_id = l.id), 0)")
/* The same with the connection count and last seen given as expressions. */
#define LINE_COLUMNS_WITH(CONNECTIONS, LAST_SEEN)                                                     \
	"l.id, l.reseller_id, l.username, encode(l.password_box, 'hex'), l.package_id,"                    \
	" CASE WHEN l.state IN ('banned', 'disabled') THEN l.state WHEN l.expires_at <= now() THEN 'expired'" \
	" ELSE l.state END, " EPOCH("l.expires_at") ", l.max_connections, l.bouquet_ids, l.allowed_ips,"     \
	" l.allowed_user_agents, l.output_formats, l.bandwidth_cap_kbps, l.trial, l.notes, " CONNECTIONS ","  \
	" " EPOCH("l.created_at") ", " EPOCH("l.updated_at") ", " LAST_SEEN ", l.reseller_path"
/* The columns of a session and its message: "SELECT " SESSION_COLUMNS
 * " FROM " SESSION_FROM " WHERE s.tenant_id = $1 AND ...". */
#define SESSION_COLUMNS                                                                               \
	"s.id, s.line_id, coalesce(l.username, ''), coalesce(l.reseller_id, 0), s.stream_id, s.node_id,"   \
	" host(s.client_ip), s.user_agent, s.output_format, " EPOCH("s.started_at") ", "                    \
	EPOCH("s.last_seen_at") ", coalesce(" EPOCH("s.ended_at") ", 0), s.end_reason"
#define SESSION_FROM                                                                                  \
	"frontdesk.sessions s LEFT JOIN frontdesk.lines l ON l.tenant_id = s.tenant_id AND l.id = s.line_id"
#define PKG_COLS                                                                                         \
	"id, name, duration_days, duration_hours, credit_cost, max_connections, bouquet_ids, trial,"         \
	" output_formats, bandwidth_cap_kbps, disabled, " EPOCH("created_at") ", " EPOCH("updated_at")

#define BQ_COLS "id, name, stream_ids, " EPOCH("created_at") ", " EPOCH("updated_at")

#define STREAM_COLS                                                                                      \
	"s.id, s.name, s.kind, s.category, s.number, s.logo_url, s.epg_channel, s.disabled, "                \
	EPOCH("s.created_at") ", " EPOCH("s.updated_at")

/* ListStreams' filters, $4..$7: kind (0 any), category ('' any), name
 * contains ('' any), include disabled. */
#define STREAM_FILTERS                                                                                   \
	" AND ($4::smallint = 0 OR s.kind = $4::smallint) AND ($5::text = '' OR s.category = $5::text)"     \
	" AND ($6::text = '' OR strpos(lower(s.name), lower($6::text)) > 0) AND ($7::boolean OR NOT s.disabled)"

/* How long a settler's claim on a pending row keeps the reconciliation pass
 * away from it: the longest Charge call (5 s) and a margin. A claim that
 * lapses only lets a second settler ask billingd again, which is harmless. */
#define STR_(x) #x
#define STR(x) STR_(x)
#define CLAIM_SECONDS STR(CHARGE_CLAIM_S)

/* The columns of a charge row as settling reads them; CH_* name them. */
#define CHARGE_COLUMNS                                                                                \
	"line_id, reseller_id, kind, package_id, periods, amount, state, coalesce(charge_entry_id, 0),"   \
	" coalesce(balance_after, 0), trials_left, actor_kind, actor_role, actor_tenant_id, actor_account_id," \
	" actor_key_id, actor_service, actor_path, actor_source, trial"

/* line_watchers rows expire this long after their last renewal (events.c
 * renews them every REFRESH_MS). */
#define WATCHER_TTL "30 seconds"

/* ---- rows ---- */

static Frontdesk__V1__Line *line_message_of(const struct linesd *l, fd_arena_t *a, int64_t tenant, PGresult *res,
                                            int row, int base, bool open_password)
{
	Frontdesk__V1__Line *m = fd_arena_zalloc(a, sizeof(*m));
	if (!m)
		return NULL;
	frontdesk__v1__line__init(m);
	m->id = col_i64(res, row, base + LINE_COL_ID);
	m->tenant_id = tenant;
	m->reseller_id = col_i64(res, row, base + LINE_COL_RESELLER);
	m->username = fd_arena_strdup(a, PQgetvalue(res, row, base + LINE_COL_USERNAME));
	m->password = open_password ? line_password_open(l, a, PQgetvalue(res, row, base + LINE_COL_PASSWORD_BOX)) : "";
	m->package_id = col_i64(res, row, base + LINE_COL_PACKAGE);
	m->status = enum_value(&LINE_STATUS, PQgetvalue(res, row, base + LINE_COL_STATUS));
	m->expires_at = col_i64(res, row, base + LINE_COL_EXPIRES);
	m->max_connections = (int32_t)col_i64(res, row, base + LINE_COL_MAX_CONNECTIONS);
	if (pg_parse_ints(a, PQgetvalue(res, row, base + LINE_COL_BOUQUETS), &m->bouquet_ids, &m->n_bouquet_ids) < 0 ||
	    pg_parse_texts(a, PQgetvalue(res, row, base + LINE_COL_IPS), &m->allowed_ips, &m->n_allowed_ips) < 0 ||
	    pg_parse_texts(a, PQgetvalue(res, row, base + LINE_COL_USER_AGENTS), &m->allowed_user_agents, &m->n_allowed_user_agents) < 0 ||
	    pg_parse_formats(a, PQgetvalue(res, row, base + LINE_COL_FORMATS), &m->allowed_output_formats,
	                     &m->n_allowed_output_formats) < 0)
		return NULL;
	m->bandwidth_cap_kbps = col_i64(res, row, base + LINE_COL_BANDWIDTH);
	m->trial = col_bool(res, row, base + LINE_COL_TRIAL);
	m->notes = fd_arena_strdup(a, PQgetvalue(res, row, base + LINE_COL_NOTES));
	m->active_connections = (int32_t)col_i64(res, row, base + LINE_COL_CONNECTIONS);
	m->created_at = col_i64(res, row, base + LINE_COL_CREATED);
	m->updated_at = col_i64(res, row, base + LINE_COL_UPDATED);
	m->last_seen_at = col_i64(res, row, base + LINE_COL_LAST_SEEN);
	if (!m->password) {
		fd_error("line %" PRId64 ": its password does not open with FRONTDESK_KEY_ENCRYPTION_KEY", m->id);
		m->password = "";
	}
	return m->username && m->notes ? m : NULL;
}

Frontdesk__V1__Line *line_message(const struct linesd *l, fd_arena_t *a, int64_t tenant, PGresult *res, int row, int base)
{
	return line_message_of(l, a, tenant, res, row, base, true);
}

Frontdesk__V1__Line *line_message_sealed(const struct linesd *l, fd_arena_t *a, int64_t tenant, PGresult *res, int row,
                                         int base)
{
	return line_message_of(l, a, tenant, res, row, base, false);
}


Frontdesk__V1__Session *session_message(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int base)
{
	Frontdesk__V1__Session *m = fd_arena_zalloc(a, sizeof(*m));
	if (!m)
		return NULL;
	frontdesk__v1__session__init(m);
	m->id = col_i64(res, row, base + SESSION_COL_ID);
	m->tenant_id = tenant;
	m->line_id = col_i64(res, row, base + SESSION_COL_LINE);
	m->username = fd_arena_strdup(a, PQgetvalue(res, row, base + SESSION_COL_USERNAME));
	m->reseller_id = col_i64(res, row, base + SESSION_COL_RESELLER);
	m->stream_id = col_i64(res, row, base + SESSION_COL_STREAM);
	m->node_id = col_i64(res, row, base + SESSION_COL_NODE);
	m->client_ip = fd_arena_strdup(a, PQgetvalue(res, row, base + SESSION_COL_CLIENT_IP));
	m->user_agent = fd_arena_strdup(a, PQgetvalue(res, row, base + SESSION_COL_USER_AGENT));
	m->output_format = (Frontdesk__V1__OutputFormat)col_i64(res, row, base + SESSION_COL_FORMAT);
	m->started_at = col_i64(res, row, base + SESSION_COL_STARTED);
	m->last_seen_at = col_i64(res, row, base + SESSION_COL_LAST_SEEN);
	m->ended_at = col_i64(res, row, base + SESSION_COL_ENDED);
	m->end_reason = (Frontdesk__V1__SessionEndReason)col_i64(res, row, base + SESSION_COL_END_REASON);
	return m->username && m->client_ip && m->user_agent ? m : NULL;
}

ProtobufCMessage *package_message(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int base)
{
	Frontdesk__V1__Package *p = fd_arena_zalloc(a, sizeof(*p));
	if (!p)
		return NULL;
	frontdesk__v1__package__init(p);
	p->id = col_i64(res, row, base + PKG_COL_ID);
	p->tenant_id = tenant;
	p->name = fd_arena_strdup(a, PQgetvalue(res, row, base + PKG_COL_NAME));
	p->duration_days = (int32_t)col_i64(res, row, base + PKG_COL_DAYS);
	p->duration_hours = (int32_t)col_i64(res, row, base + PKG_COL_HOURS);
	p->credit_cost = col_i64(res, row, base + PKG_COL_COST);
	p->max_connections = (int32_t)col_i64(res, row, base + PKG_COL_MAX_CONNECTIONS);
	if (!p->name || pg_parse_ints(a, PQgetvalue(res, row, base + PKG_COL_BOUQUETS), &p->bouquet_ids, &p->n_bouquet_ids) < 0 ||
	    pg_parse_formats(a, PQgetvalue(res, row, base + PKG_COL_FORMATS), &p->allowed_output_formats,
	                     &p->n_allowed_output_formats) < 0)
		return NULL;
	p->trial = col_bool(res, row, base + PKG_COL_TRIAL);
	p->bandwidth_cap_kbps = col_i64(res, row, base + PKG_COL_BANDWIDTH);
	p->disabled = col_bool(res, row, base + PKG_COL_DISABLED);
	p->created_at = col_i64(res, row, base + PKG_COL_CREATED);
	p->updated_at = col_i64(res, row, base + PKG_COL_UPDATED);
	return &p->base;
}

ProtobufCMessage *bouquet_message(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int base)
{
	Frontdesk__V1__Bouquet *b = fd_arena_zalloc(a, sizeof(*b));
	if (!b)
		return NULL;
	frontdesk__v1__bouquet__init(b);
	b->id = col_i64(res, row, base + BQ_COL_ID);
	b->tenant_id = tenant;
	b->name = fd_arena_strdup(a, PQgetvalue(res, row, base + BQ_COL_NAME));
	if (!b->name || pg_parse_ints(a, PQgetvalue(res, row, base + BQ_COL_STREAMS), &b->stream_ids, &b->n_stream_ids) < 0)
		return NULL;
	b->created_at = col_i64(res, row, base + BQ_COL_CREATED);
	b->updated_at = col_i64(res, row, base + BQ_COL_UPDATED);
	return &b->base;
}

ProtobufCMessage *stream_message(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int base)
{
	Frontdesk__V1__Stream *s = fd_arena_zalloc(a, sizeof(*s));
	if (!s)
		return NULL;
	frontdesk__v1__stream__init(s);
	s->id = col_i64(res, row, base + STREAM_COL_ID);
	s->tenant_id = tenant;
	s->name = fd_arena_strdup(a, PQgetvalue(res, row, base + STREAM_COL_NAME));
	s->kind = (Frontdesk__V1__StreamKind)col_i64(res, row, base + STREAM_COL_KIND);
	s->category = fd_arena_strdup(a, PQgetvalue(res, row, base + STREAM_COL_CATEGORY));
	s->number = (int32_t)col_i64(res, row, base + STREAM_COL_NUMBER);
	s->logo_url = fd_arena_strdup(a, PQgetvalue(res, row, base + STREAM_COL_LOGO));
	s->epg_channel = fd_arena_strdup(a, PQgetvalue(res, row, base + STREAM_COL_EPG));
	s->disabled = col_bool(res, row, base + STREAM_COL_DISABLED);
	s->created_at = col_i64(res, row, base + STREAM_COL_CREATED);
	s->updated_at = col_i64(res, row, base + STREAM_COL_UPDATED);
	return s->name && s->category && s->logo_url && s->epg_channel ? &s->base : NULL;
}

/* ---- statements ---- */

const fd_sql_t SQL_ASYNC = {
	"linesd_async_commit", "SELECT set_config('synchronous_commit', 'off', true)", 0,
};
/* The latest heartbeat of each session ($2 ids, $3 times), never moving one back. */
const fd_sql_t SQL_BEATS = {
	"linesd_beats",
	"UPDATE frontdesk.sessions s SET last_seen_at = to_timestamp(v.at)"
	"  FROM unnest($2::bigint[], $3::bigint[]) AS v(id, at)"
	" WHERE s.tenant_id = $1 AND s.id = v.id AND s.ended_at IS NULL AND s.last_seen_at < to_timestamp(v.at)",
	3,
};

/* Ids of a caller's list ($2, an int8[] literal) that are not in the tenant's
 * table, the first one first. */
const fd_sql_t SQL_MISSING_BOUQUETS = {
	"linesd_cat_missing_bouquets",
	"SELECT u.x FROM unnest($2::bigint[]) WITH ORDINALITY u(x, o)"
	" WHERE NOT EXISTS (SELECT 1 FROM frontdesk.bouquets b WHERE b.tenant_id = $1 AND b.id = u.x)"
	" ORDER BY u.o LIMIT 1",
	2,
};
const fd_sql_t SQL_MISSING_STREAMS = {
	"linesd_cat_missing_streams",
	"SELECT u.x FROM unnest($2::bigint[]) WITH ORDINALITY u(x, o)"
	" WHERE NOT EXISTS (SELECT 1 FROM frontdesk.streams s WHERE s.tenant_id = $1 AND s.id = u.x)"
	" ORDER BY u.o LIMIT 1",
	2,
};
const fd_sql_t SQL_PKG_GET = {
	"linesd_cat_pkg_get",
	"SELECT " PKG_COLS " FROM frontdesk.packages WHERE tenant_id = $1 AND id = $2",
	2,
};
const fd_sql_t SQL_PKG_INSERT = {
	"linesd_cat_pkg_insert",
	"INSERT INTO frontdesk.packages (tenant_id, name, duration_days, duration_hours, credit_cost,"
	"   max_connections, bouquet_ids, trial, output_formats, bandwidth_cap_kbps)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7::bigint[], $8, $9::smallint[], $10)"
	" RETURNING " PKG_COLS,
	10,
};
const fd_sql_t SQL_PKG_LOCK = {
	"linesd_cat_pkg_lock",
	"SELECT duration_days, duration_hours FROM frontdesk.packages WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
	2,
};
const fd_sql_t SQL_PKG_UPDATE = {
	"linesd_cat_pkg_update",
	"UPDATE frontdesk.packages SET name = coalesce($3, name),"
	"   duration_days = coalesce($4::integer, duration_days),"
	"   duration_hours = coalesce($5::integer, duration_hours),"
	"   credit_cost = coalesce($6::bigint, credit_cost),"
	"   max_connections = coalesce($7::integer, max_connections),"
	"   bouquet_ids = coalesce($8::bigint[], bouquet_ids),"
	"   output_formats = coalesce($9::smallint[], output_formats),"
	"   bandwidth_cap_kbps = coalesce($10::bigint, bandwidth_cap_kbps),"
	"   disabled = coalesce($11::boolean, disabled),"
	"   updated_at = now()"
	" WHERE tenant_id = $1 AND id = $2"
	" RETURNING " PKG_COLS,
	11,
};
const fd_sql_t SQL_BQ_GET = {
	"linesd_cat_bq_get",
	"SELECT " BQ_COLS " FROM frontdesk.bouquets WHERE tenant_id = $1 AND id = $2",
	2,
};
const fd_sql_t SQL_BQ_INSERT = {
	"linesd_cat_bq_insert",
	"INSERT INTO frontdesk.bouquets (tenant_id, name, stream_ids) VALUES ($1, $2, $3::bigint[])"
	" RETURNING " BQ_COLS,
	3,
};
const fd_sql_t SQL_BQ_LOCK = {
	"linesd_cat_bq_lock",
	"SELECT 1 FROM frontdesk.bouquets WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
	2,
};
const fd_sql_t SQL_BQ_UPDATE = {
	"linesd_cat_bq_update",
	"UPDATE frontdesk.bouquets SET name = coalesce($3, name), stream_ids = coalesce($4::bigint[], stream_ids),"
	"   updated_at = now()"
	" WHERE tenant_id = $1 AND id = $2"
	" RETURNING " BQ_COLS,
	4,
};
const fd_sql_t SQL_STREAM_GET = {
	"linesd_cat_stream_get",
	"SELECT " STREAM_COLS " FROM frontdesk.streams s WHERE s.tenant_id = $1 AND s.id = $2",
	2,
};
/* Stream ids are numbered per tenant, one create at a time. */
const fd_sql_t SQL_STREAM_LOCK = {
	"linesd_cat_stream_lock",
	"SELECT pg_advisory_xact_lock(hashtextextended('linesd.streams/' || $1::text, 0))",
	1,
};
const fd_sql_t SQL_STREAM_INSERT = {
	"linesd_cat_stream_insert",
	"INSERT INTO frontdesk.streams AS s (tenant_id, id, name, kind, category, number, logo_url, epg_channel)"
	" SELECT $1::bigint, coalesce(max(m.id), 0) + 1, $2::text, $3::smallint, $4::text, $5::integer, $6::text,"
	"        $7::text"
	"   FROM frontdesk.streams m WHERE m.tenant_id = $1::bigint"
	" RETURNING " STREAM_COLS,
	7,
};
const fd_sql_t SQL_STREAM_APPEND = {
	"linesd_cat_stream_append",
	"UPDATE frontdesk.bouquets SET stream_ids = stream_ids || $3::bigint, updated_at = now()"
	" WHERE tenant_id = $1 AND id = ANY ($2::bigint[])",
	3,
};
const fd_sql_t SQL_STREAM_UPDATE = {
	"linesd_cat_stream_update",
	"UPDATE frontdesk.streams s SET name = coalesce($3, s.name), kind = coalesce($4::smallint, s.kind),"
	"   category = coalesce($5, s.category), number = coalesce($6::integer, s.number),"
	"   logo_url = coalesce($7, s.logo_url), epg_channel = coalesce($8, s.epg_channel),"
	"   disabled = coalesce($9::boolean, s.disabled), updated_at = now()"
	" WHERE s.tenant_id = $1 AND s.id = $2"
	" RETURNING " STREAM_COLS,
	9,
};
/* Every list statement returns the row's position (what pages follow) in
 * column 0 and the row from column 1: $1 tenant, $2 the position after which
 * the page starts, $3 limit + 1 (one more tells whether a next page exists). */
const fd_sql_t SQL_LIST_PACKAGES = {
	"linesd_cat_list_packages",
	"SELECT id, " PKG_COLS " FROM frontdesk.packages"
	" WHERE tenant_id = $1 AND id > $2 AND (NOT $4::boolean OR trial) AND ($5::boolean OR NOT disabled)"
	"   AND ($6::text = '' OR strpos(lower(name), lower($6::text)) > 0)"
	" ORDER BY id LIMIT $3",
	6,
};
const fd_sql_t SQL_LIST_BOUQUETS = {
	"linesd_cat_list_bouquets",
	"SELECT id, " BQ_COLS " FROM frontdesk.bouquets"
	" WHERE tenant_id = $1 AND id > $2 AND ($4::text = '' OR strpos(lower(name), lower($4::text)) > 0)"
	" ORDER BY id LIMIT $3",
	4,
};
const fd_sql_t SQL_LIST_STREAMS = {
	"linesd_cat_list_streams",
	"SELECT s.id, " STREAM_COLS " FROM frontdesk.streams s"
	" WHERE s.tenant_id = $1 AND s.id > $2" STREAM_FILTERS
	" ORDER BY s.id LIMIT $3",
	7,
};
/* A bouquet's streams in its order, paged by position in its list. */
const fd_sql_t SQL_LIST_BOUQUET_STREAMS = {
	"linesd_cat_list_bouquet_streams",
	"SELECT u.o, " STREAM_COLS " FROM frontdesk.bouquets b"
	" CROSS JOIN LATERAL unnest(b.stream_ids) WITH ORDINALITY u(sid, o)"
	" JOIN frontdesk.streams s ON s.tenant_id = b.tenant_id AND s.id = u.sid"
	" WHERE b.tenant_id = $1 AND b.id = $8 AND u.o > $2" STREAM_FILTERS
	" ORDER BY u.o LIMIT $3",
	8,
};
/* A line's streams: its bouquets in its order, each bouquet's streams in
 * their order, a stream at its first place only; paged by that place. */
const fd_sql_t SQL_LIST_LINE_STREAMS = {
	"linesd_cat_list_line_streams",
	"WITH e AS ("
	"  SELECT x.sid, row_number() OVER (ORDER BY lb.o, x.o) AS pos"
	"    FROM frontdesk.lines l"
	"   CROSS JOIN LATERAL unnest(l.bouquet_ids) WITH ORDINALITY lb(bid, o)"
	"    JOIN frontdesk.bouquets b ON b.tenant_id = l.tenant_id AND b.id = lb.bid"
	"   CROSS JOIN LATERAL unnest(b.stream_ids) WITH ORDINALITY x(sid, o)"
	"   WHERE l.tenant_id = $1 AND l.id = $8 AND l.state <> 'pending' AND l.reseller_path LIKE $9::text || '%'),"
	" f AS (SELECT sid, min(pos) AS pos FROM e GROUP BY sid)"
	" SELECT f.pos, " STREAM_COLS " FROM f JOIN frontdesk.streams s ON s.tenant_id = $1 AND s.id = f.sid"
	" WHERE f.pos > $2" STREAM_FILTERS
	" ORDER BY f.pos LIMIT $3",
	9,
};
const fd_sql_t SQL_CAT_LINE_VISIBLE = {
	"linesd_cat_line_visible",
	"SELECT 1 FROM frontdesk.lines"
	" WHERE tenant_id = $1 AND id = $2 AND state <> 'pending' AND reseller_path LIKE $3::text || '%'",
	3,
};
const fd_sql_t SQL_SETTINGS_GET = {
	"linesd_cat_settings_get",
	"SELECT connection_limit_policy, trials_per_day, " EPOCH("updated_at")
	" FROM frontdesk.lines_settings WHERE tenant_id = $1",
	1,
};
/* No row yet: the defaults with the change applied. */
const fd_sql_t SQL_SETTINGS_UPSERT = {
	"linesd_cat_settings_upsert",
	"INSERT INTO frontdesk.lines_settings AS t (tenant_id, connection_limit_policy, trials_per_day)"
	" VALUES ($1, coalesce($2::text, '" DEFAULT_POLICY "'), coalesce($3::integer, 10))"
	" ON CONFLICT (tenant_id) DO UPDATE"
	"   SET connection_limit_policy = coalesce($2::text, t.connection_limit_policy),"
	"       trials_per_day = coalesce($3::integer, t.trials_per_day), updated_at = now()"
	" RETURNING connection_limit_policy, trials_per_day, " EPOCH("updated_at"),
	3,
};

const fd_sql_t SQL_PACKAGE = {
	"linesd_package",
	"SELECT credit_cost, max_connections, bouquet_ids, trial, disabled FROM frontdesk.packages"
	" WHERE tenant_id = $1 AND id = $2",
	2,
};
const fd_sql_t SQL_BOUQUETS_EXIST = {
	"linesd_bouquets_exist",
	"SELECT count(*) FROM frontdesk.bouquets WHERE tenant_id = $1 AND id = ANY ($2::bigint[])", 2,
};
const fd_sql_t SQL_USERNAME_TAKEN = {
	"linesd_username_taken",
	"SELECT 1 FROM frontdesk.lines WHERE tenant_id = $1 AND username = $2", 2,
};
/* The lock first, in a statement of its own: a statement's snapshot is
 * taken before its lock is granted, so the count must come after. */
const fd_sql_t SQL_TRIAL_LOCK = {
	"linesd_trial_lock",
	"SELECT pg_advisory_xact_lock(hashtextextended('linesd.trials/' || $1::bigint || '/' || $2::bigint, 0))",
	2,
};
const fd_sql_t SQL_TRIAL_COUNT = {
	"linesd_trial_count",
	"SELECT 0,"
	" coalesce((SELECT trials_per_day FROM frontdesk.lines_settings WHERE tenant_id = $1), 10),"
	" (SELECT count(*) FROM frontdesk.line_charges WHERE tenant_id = $1 AND reseller_id = $2 AND trial"
	"    AND created_at > now() - interval '24 hours'),"
	" coalesce((SELECT " EPOCH("min(created_at) + interval '24 hours' - now()") " FROM frontdesk.line_charges"
	"    WHERE tenant_id = $1 AND reseller_id = $2 AND trial AND created_at > now() - interval '24 hours'), 0)",
	2,
};
const fd_sql_t SQL_INSERT_PENDING_LINE = {
	"linesd_insert_pending_line",
	"INSERT INTO frontdesk.lines (tenant_id, reseller_id, reseller_path, username, password_hash, password_box,"
	"   package_id, state, expires_at, max_connections, bouquet_ids, allowed_ips, allowed_user_agents,"
	"   output_formats, bandwidth_cap_kbps, trial, notes)"
	" SELECT $1, $2, $3, $4, decode($5, 'hex'), decode($6, 'hex'), p.id, 'pending', now(),"
	"        coalesce(nullif($8::integer, 0), p.max_connections), coalesce($9::bigint[], p.bouquet_ids),"
	"        $10::cidr[], $11::text[], p.output_formats, p.bandwidth_cap_kbps, p.trial, $12"
	"   FROM frontdesk.packages p WHERE p.tenant_id = $1 AND p.id = $7"
	" RETURNING id",
	12,
};
/* Committed claimed: the call that made it settles it next. $11.. the
 * caller, for the audit row of whoever applies it (CHARGE_COLUMNS). */
const fd_sql_t SQL_INSERT_CHARGE = {
	"linesd_insert_charge",
	"INSERT INTO frontdesk.line_charges (tenant_id, line_id, reseller_id, kind, trial, package_id, periods,"
	"   amount, idem_key, request_hash, trials_left, actor_kind, actor_role, actor_tenant_id, actor_account_id,"
	"   actor_key_id, actor_service, actor_path, actor_source, claimed_until)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, decode($10, 'hex'), $11, $12, $13, $14, $15, $16, $17, $18,"
	"         $19, now() + make_interval(secs => " CLAIM_SECONDS ")) RETURNING id",
	19,
};
const fd_sql_t SQL_LINE_VISIBLE = {
	"linesd_line_visible",
	"SELECT l.reseller_id, l.package_id, l.state FROM frontdesk.lines l"
	" WHERE l.tenant_id = $1 AND l.id = $2 AND l.state <> 'pending' AND l.reseller_path LIKE $3::text || '%'",
	3,
};
/* Newest first, at most 50 (GetLineResponse.status_history). */
const fd_sql_t SQL_STATUS_HISTORY = {
	"linesd_status_history",
	"SELECT status, previous_status, reason, actor_account_id, actor, " EPOCH("changed_at")
	"  FROM frontdesk.line_status_history WHERE tenant_id = $1 AND line_id = $2 ORDER BY id DESC LIMIT 50",
	2,
};
const fd_sql_t SQL_GET_LINE = {
	"linesd_get_line",
	"SELECT " LINE_COLUMNS " FROM frontdesk.lines l"
	" WHERE l.tenant_id = $1 AND (l.id = $2 OR ($2 = 0 AND l.username = $3)) AND l.state <> 'pending'"
	"   AND l.reseller_path LIKE $4::text || '%'",
	4,
};
/* Filters: NULL = any. $5 status ('active', 'expired', 'disabled', 'banned'),
 * $6 subtree prefix pattern, $7 direct owner, $8 username contains, $9/$10
 * expires_at range, $11 package, $12 trial only. */
const fd_sql_t SQL_LIST_LINES = {
	"linesd_list_lines",
	"SELECT " LINE_COLUMNS " FROM frontdesk.lines l"
	" WHERE l.tenant_id = $1 AND l.id > $2 AND l.state <> 'pending' AND l.reseller_path LIKE $4::text || '%'"
	"   AND ($5::text IS NULL OR CASE WHEN l.state IN ('banned', 'disabled') THEN l.state"
	"        WHEN l.expires_at <= now() THEN 'expired' ELSE l.state END = $5)"
	"   AND ($6::text IS NULL OR l.reseller_path LIKE $6)"
	"   AND ($7::bigint IS NULL OR l.reseller_id = $7)"
	"   AND ($8::text IS NULL OR strpos(lower(l.username), lower($8)) > 0)"
	"   AND ($9::bigint IS NULL OR l.expires_at >= to_timestamp($9))"
	"   AND ($10::bigint IS NULL OR l.expires_at < to_timestamp($10))"
	"   AND ($11::bigint IS NULL OR l.package_id = $11)"
	"   AND (NOT $12::boolean OR l.trial)"
	" ORDER BY l.id LIMIT $3",
	12,
};
/* The line's row, and its advisory lock: the one its authorizations hold
 * from their connection-limit check to their commit, so a session opened
 * just before this change is seen (and ended) by the change's later
 * statements (migrations/0020_line_rules.sql). */
const fd_sql_t SQL_LOCK_LINE = {
	"linesd_lock_line",
	"SELECT l.reseller_id, l.state, CASE WHEN l.state IN ('banned', 'disabled') THEN l.state"
	"       WHEN l.expires_at <= now() THEN 'expired' ELSE l.state END, p.max_connections, p.bouquet_ids,"
	"       pg_advisory_xact_lock(l.id)"
	"  FROM frontdesk.lines l LEFT JOIN frontdesk.packages p ON p.tenant_id = l.tenant_id AND p.id = l.package_id"
	" WHERE l.tenant_id = $1 AND l.id = $2 AND l.state <> 'pending' AND l.reseller_path LIKE $3::text || '%'"
	"   FOR NO KEY UPDATE OF l",
	3,
};
const fd_sql_t SQL_UPDATE_LINE = {
	"linesd_update_line",
	"UPDATE frontdesk.lines SET updated_at = now(),"
	"  max_connections = coalesce($3::integer, max_connections),"
	"  allowed_ips = coalesce($4::cidr[], allowed_ips),"
	"  allowed_user_agents = coalesce($5::text[], allowed_user_agents),"
	"  bouquet_ids = coalesce($6::bigint[], bouquet_ids),"
	"  notes = coalesce($7, notes),"
	"  bandwidth_cap_kbps = coalesce($8::bigint, bandwidth_cap_kbps),"
	"  password_hash = coalesce(decode($9, 'hex'), password_hash),"
	"  password_box = coalesce(decode($10, 'hex'), password_box)"
	" WHERE tenant_id = $1 AND id = $2",
	10,
};
const fd_sql_t SQL_SET_STATE = {
	"linesd_set_state",
	"UPDATE frontdesk.lines SET state = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2",
	3,
};
/* Every SetLineStatus is kept with its reason (migrations/0008_lines.sql). */
const fd_sql_t SQL_STATUS_HISTORY_ADD = {
	"linesd_status_history_add",
	"INSERT INTO frontdesk.line_status_history (tenant_id, line_id, status, previous_status, reason, actor,"
	"   actor_account_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
	7,
};
const fd_sql_t SQL_STATUS_HISTORY_DROP = {
	"linesd_status_history_drop",
	"DELETE FROM frontdesk.line_status_history WHERE tenant_id = $1 AND line_id = $2",
	2,
};
/* Ends the line's live sessions (LINE_REVOKED = 6), announcing each. */
const fd_sql_t SQL_END_LINE_SESSIONS = {
	"linesd_end_line_sessions",
	"WITH e AS (UPDATE frontdesk.sessions SET ended_at = now(), end_reason = 6"
	"            WHERE tenant_id = $1 AND line_id = $2 AND ended_at IS NULL RETURNING id)"
	" SELECT frontdesk.line_event($1, 6, $2, $3, e.id, 6) FROM e",
	3,
};
const fd_sql_t SQL_DELETE_LINE = {
	"linesd_delete_line", "DELETE FROM frontdesk.lines WHERE tenant_id = $1 AND id = $2", 2,
};
/* A line's applied charges with something left to refund, newest first
 * (DeleteLine's plan, lines.c). */
const fd_sql_t SQL_LINE_CHARGES = {
	"linesd_line_charges",
	"SELECT id, charge_entry_id, amount - refunded, refunded FROM frontdesk.line_charges"
	" WHERE tenant_id = $1 AND line_id = $2 AND state = 'applied' AND charge_entry_id IS NOT NULL"
	"   AND amount > refunded ORDER BY id DESC",
	2,
};
/* Only when nothing was refunded of it since the plan ($4: what was then). */
const fd_sql_t SQL_CHARGE_REFUNDED = {
	"linesd_charge_refunded",
	"UPDATE frontdesk.line_charges SET refunded = refunded + $3, updated_at = now()"
	" WHERE tenant_id = $1 AND id = $2 AND refunded = $4",
	4,
};

/* ---- charges (charges.c) ---- */
/* The caller's claim: the request itself (or its retry) settles its row
 * whatever claim it has. The reconciliation pass's: only a row unclaimed or
 * whose claim lapsed, skipping a row another settler has locked. */
const fd_sql_t SQL_CHARGE_CLAIM = {
	"linesd_charge_claim",
	"UPDATE frontdesk.line_charges SET claimed_until = now() + make_interval(secs => " CLAIM_SECONDS ")"
	" WHERE tenant_id = $1 AND id = $2 AND state = 'pending' RETURNING " CHARGE_COLUMNS,
	2,
};
const fd_sql_t SQL_CHARGE_CLAIM_LAPSED = {
	"linesd_charge_claim_lapsed",
	"UPDATE frontdesk.line_charges c SET claimed_until = now() + make_interval(secs => " CLAIM_SECONDS ")"
	"  FROM (SELECT id FROM frontdesk.line_charges WHERE tenant_id = $1 AND id = $2 AND state = 'pending'"
	"          AND (claimed_until IS NULL OR claimed_until < now()) FOR UPDATE SKIP LOCKED) x"
	" WHERE c.tenant_id = $1 AND c.id = x.id RETURNING " CHARGE_COLUMNS,
	2,
};
const fd_sql_t SQL_CHARGE_READ = {
	"linesd_charge_read",
	"SELECT " CHARGE_COLUMNS " FROM frontdesk.line_charges WHERE tenant_id = $1 AND id = $2",
	2,
};
const fd_sql_t SQL_CHARGE_LOCK = {
	"linesd_charge_lock",
	"SELECT " CHARGE_COLUMNS " FROM frontdesk.line_charges WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
	2,
};
const fd_sql_t SQL_CHARGE_DROP = {
	"linesd_charge_drop",
	"WITH c AS (DELETE FROM frontdesk.line_charges WHERE tenant_id = $1 AND id = $2 AND state = 'pending'"
	"           RETURNING line_id, kind, idem_key),"
	" k AS (DELETE FROM frontdesk.idempotency i USING c"
	"        WHERE i.tenant_id = $1 AND i.service = 'linesd' AND i.idem_key = c.idem_key)"
	" DELETE FROM frontdesk.lines l USING c"
	"  WHERE l.tenant_id = $1 AND l.id = c.line_id AND c.kind = 'create' AND l.state = 'pending'",
	2,
};
const fd_sql_t SQL_APPLY_CREATE = {
	"linesd_apply_create",
	"UPDATE frontdesk.lines l SET state = 'active', updated_at = now(),"
	"  expires_at = date_trunc('second', now())"
	"             + make_interval(days => p.duration_days * $3, hours => p.duration_hours * $3)"
	"  FROM frontdesk.packages p"
	" WHERE l.tenant_id = $1 AND l.id = $2 AND l.state = 'pending' AND p.tenant_id = $1 AND p.id = $4"
	" RETURNING " EPOCH("l.expires_at"),
	4,
};
/* A different package also brings its connections, bouquets, formats and cap. */
const fd_sql_t SQL_APPLY_EXTEND = {
	"linesd_apply_extend",
	"UPDATE frontdesk.lines l SET updated_at = now(), expiry_announced = NULL, package_id = p.id, trial = p.trial,"
	"  expires_at = greatest(l.expires_at, date_trunc('second', now()))"
	"             + make_interval(days => p.duration_days * $3, hours => p.duration_hours * $3),"
	"  max_connections = CASE WHEN p.id <> l.package_id THEN p.max_connections ELSE l.max_connections END,"
	"  bouquet_ids = CASE WHEN p.id <> l.package_id THEN p.bouquet_ids ELSE l.bouquet_ids END,"
	"  output_formats = CASE WHEN p.id <> l.package_id THEN p.output_formats ELSE l.output_formats END,"
	"  bandwidth_cap_kbps = CASE WHEN p.id <> l.package_id THEN p.bandwidth_cap_kbps ELSE l.bandwidth_cap_kbps END"
	"  FROM frontdesk.packages p"
	" WHERE l.tenant_id = $1 AND l.id = $2 AND l.state <> 'pending' AND p.tenant_id = $1 AND p.id = $4"
	" RETURNING " EPOCH("l.expires_at"),
	4,
};
const fd_sql_t SQL_CHARGE_APPLIED = {
	"linesd_charge_applied",
	"UPDATE frontdesk.line_charges SET state = 'applied', charge_entry_id = nullif($3::bigint, 0),"
	" balance_after = $4, claimed_until = NULL, updated_at = now() WHERE tenant_id = $1 AND id = $2",
	4,
};
const fd_sql_t SQL_EVENT = {
	"linesd_event", "SELECT frontdesk.line_event($1, $2, $3, $4, $5, $6)", 6,
};
const fd_sql_t SQL_LINE_BY_ID = {
	"linesd_line_by_id",
	"SELECT " LINE_COLUMNS " FROM frontdesk.lines l WHERE l.tenant_id = $1 AND l.id = $2 AND l.state <> 'pending'",
	2,
};
const fd_sql_t SQL_PENDING = {
	"linesd_pending",
	"SELECT id FROM frontdesk.line_charges WHERE tenant_id = $1 AND state = 'pending'"
	" AND created_at < now() - make_interval(secs => $2) AND (claimed_until IS NULL OR claimed_until < now())"
	" ORDER BY created_at LIMIT 100",
	2,
};

/* ---- AuthorizePlayback (authorize.c) ---- */
/* The decision (AUTH_COL_*), then the line's columns (LINE_COL_* from
 * AUTH_COL_LINE; NULL when no line was found). */
/* The outcome's number comes last in the text: pg_stat_activity shows a
 * statement's first 1024 bytes, and tests find waiting authorizations by
 * the function's name there. */
/* (Its text up to "authorize_playback(" stays within PostgreSQL's default
 * track_activity_query_size, 1024: the tests find waiting authorizations in
 * pg_stat_activity by it.) Outcome -1: stale (the line changed before its
 * lock was taken). */
const fd_sql_t SQL_AUTHORIZE = {
	"linesd_authorize",
	"SELECT o.n, d.retry_after, d.session_id, d.reused, d.replaced_id, d.line_id, "
	LINE_COLUMNS_WITH("coalesce(d.live, (SELECT count(*) FROM frontdesk.sessions s WHERE s.tenant_id = $1"
	                  " AND s.line_id = l.id AND s.ended_at IS NULL))",
	                  "CASE WHEN d.session_id > 0 THEN " EPOCH("now()") " ELSE coalesce((SELECT "
	                  EPOCH("max(s.last_seen_at)") " FROM frontdesk.sessions s WHERE s.tenant_id = $1"
	                  " AND s.line_id = l.id), 0) END")
	"  , (d.line).rev"
	"  FROM frontdesk.authorize_playback($1, $2, decode($3, 'hex'), $4, $5::inet, $6, $7::smallint, $8, $9, $10,"
	"       $16::text[], $11, $12, $13, $14, coalesce((SELECT connection_limit_policy = 'end_oldest'"
	"                                        FROM frontdesk.lines_settings WHERE tenant_id = $1), false), $15) d"
	"  LEFT JOIN LATERAL (SELECT (d.line).*) l ON true"
	"  CROSS JOIN LATERAL (SELECT CASE WHEN d.outcome = 'stale' THEN -1"
	"                      ELSE " PLAYBACK_OUTCOME_SQL("d.outcome") " END) o(n)",
	16,
};
/* AuthorizePlayback of a line whose rules linesd holds (rules.h): the
 * connection limit, the live sessions once, the insert (0020_line_rules.sql);
 * the outcome's number (-1: stale), the session, reused, replaced, live. */
const fd_sql_t SQL_OPEN_SESSION = {
	"linesd_open_session",
	"SELECT CASE WHEN d.outcome = 'stale' THEN -1 ELSE " PLAYBACK_OUTCOME_SQL("d.outcome") " END,"
	"       d.session_id, d.reused, d.replaced_id, coalesce(d.live, 0)"
	"  FROM frontdesk.open_session($1, $2, $3, $4, $5, $6::bigint[], $7, $8, $9::inet, $10, $11::smallint, $12, $13,"
	"       $14, $15, $16) d",
	16,
};
/* The preload (rules.c): the active tenants after $1, in order, at most
 * $2; then a tenant's lines that can be allowed now (active, not expired)
 * after line $2, in order, at most $3: the columns of authorize_playback's
 * line (no live counts), its rev and its password's lookup hash. */
const fd_sql_t SQL_PRELOAD_TENANTS = {
	"linesd_preload_tenants",
	"SELECT id FROM frontdesk.tenants WHERE status = 'active' AND id > $1 ORDER BY id LIMIT $2",
	2, FD_SQL_PLATFORM,
};
const fd_sql_t SQL_PRELOAD_LINES = {
	"linesd_preload_lines",
	"SELECT " LINE_COLUMNS_WITH("0", "0") ", l.rev, encode(l.password_hash, 'hex')"
	"  FROM frontdesk.lines l"
	" WHERE l.tenant_id = $1 AND l.id > $2 AND l.state = 'active' AND l.expires_at > now()"
	" ORDER BY l.id LIMIT $3",
	3,
};
/* A tenant's rules (rules.c): its status (NULL: no such tenant), its
 * connection-limit policy, its suspended accounts as LIKE prefixes, then
 * the failure keys over their limits ($2 the window, $3 and $4 the limits
 * per username and source; NULL columns when none). */
const fd_sql_t SQL_TENANT_RULES = {
	"linesd_tenant_rules",
	"SELECT t.status, t.end_oldest, t.paths, f.key, ceil(extract(epoch FROM f.window_start))::bigint, f.failures"
	"  FROM (SELECT (SELECT status FROM frontdesk.tenants WHERE id = $1) AS status,"
	"               coalesce((SELECT connection_limit_policy = 'end_oldest' FROM frontdesk.lines_settings"
	"                          WHERE tenant_id = $1), false) AS end_oldest,"
	"               (SELECT coalesce(array_agg(path || '%' ORDER BY path), '{}') FROM frontdesk.account_refs"
	"                 WHERE tenant_id = $1 AND status = 'suspended') AS paths) t"
	"  LEFT JOIN frontdesk.playback_failures f"
	"    ON f.tenant_id = $1 AND f.window_start > now() - make_interval(secs => $2::integer)"
	"   AND f.failures >= CASE WHEN f.key LIKE 'u:%' THEN $3::integer ELSE $4::integer END",
	4,
};
/* GetLineChannels (channels.c): AuthorizePlayback's decision for stream 0
 * (the same checks and failure counting), then, when allowed, one row per
 * channel in playlist order (CHAN_COL_*; a single row with NULL channel
 * columns when none or when denied). The catalog version and the channels
 * are read at the statement's snapshot (frontdesk.line_channels is STABLE). */
const fd_sql_t SQL_LINE_CHANNELS = {
	"linesd_line_channels",
	"SELECT o.n, d.retry_after, coalesce((d.line).bouquet_ids, '{}'), coalesce((d.line).output_formats, '{}'),"
	"       coalesce(v.version, 0), c.stream_id, c.name, c.number, c.logo_url, c.epg_channel, c.category_id,"
	"       c.category, c.category_first, c.added_at"
	"  FROM frontdesk.authorize_playback($1, $2, decode($3, 'hex'), 0, $4::inet, $5, 0::smallint, 0, '', $6,"
	"       $7::text[], $8, $9, $10, $11, false, false) d"
	"  CROSS JOIN LATERAL (SELECT " PLAYBACK_OUTCOME_SQL("d.outcome") ") o(n)"
	"  LEFT JOIN frontdesk.catalog_versions v ON v.tenant_id = $1 AND d.outcome = 'allowed'"
	"  LEFT JOIN LATERAL frontdesk.line_channels($1, CASE WHEN d.outcome = 'allowed' THEN (d.line).bouquet_ids END) c"
	"    ON true"
	" ORDER BY c.pos",
	11,
};

/* ---- sessions (sessions.c) ---- */
const fd_sql_t SQL_SESSION_STATE = {
	"linesd_session_state",
	"SELECT s.line_id, s.node_id, s.ended_at IS NOT NULL, s.end_reason, " EPOCH("s.last_seen_at") ","
	"       coalesce(" EPOCH("l.expires_at") ", 0), coalesce(l.state, 'deleted')"
	"  FROM frontdesk.sessions s LEFT JOIN frontdesk.lines l ON l.tenant_id = s.tenant_id AND l.id = s.line_id"
	" WHERE s.tenant_id = $1 AND s.id = $2",
	2,
};
/* Ends one live session with a reason, announcing it. */
const fd_sql_t SQL_END_SESSION = {
	"linesd_end_session",
	"WITH e AS (UPDATE frontdesk.sessions s SET ended_at = now(), end_reason = $3"
	"            WHERE s.tenant_id = $1 AND s.id = $2 AND s.ended_at IS NULL"
	"            RETURNING s.id, s.line_id, s.end_reason)"
	" SELECT frontdesk.line_event($1, 6, e.line_id, coalesce(l.reseller_id, 0), e.id, e.end_reason)"
	"   FROM e LEFT JOIN frontdesk.lines l ON l.tenant_id = $1 AND l.id = e.line_id",
	3,
};
const fd_sql_t SQL_SESSION_ROUTE = {
	"linesd_session_route",
	"SELECT stream_id, host(client_ip), output_format FROM frontdesk.sessions"
	" WHERE tenant_id = $1 AND id = $2 AND ended_at IS NULL",
	2,
};
const fd_sql_t SQL_SESSION_MOVE = {
	"linesd_session_move",
	"UPDATE frontdesk.sessions SET node_id = $4"
	" WHERE tenant_id = $1 AND id = $2 AND node_id = $3 AND ended_at IS NULL",
	4,
};
/* $3 end reason; $4 subtree pattern of the caller ('%' for the edge). */
const fd_sql_t SQL_CLOSE_SESSION = {
	"linesd_close_session",
	"WITH t AS (SELECT s.id FROM frontdesk.sessions s JOIN frontdesk.lines l"
	"             ON l.tenant_id = s.tenant_id AND l.id = s.line_id"
	"           WHERE s.tenant_id = $1 AND s.id = $2 AND l.reseller_path LIKE $4::text || '%'),"
	" e AS (UPDATE frontdesk.sessions s SET ended_at = now(), end_reason = $3"
	"        FROM t WHERE s.tenant_id = $1 AND s.id = t.id AND s.ended_at IS NULL"
	"        RETURNING s.id, s.line_id, s.end_reason),"
	" n AS (SELECT frontdesk.line_event($1, 6, e.line_id, coalesce(l.reseller_id, 0), e.id, e.end_reason) FROM e"
	"        LEFT JOIN frontdesk.lines l ON l.tenant_id = $1 AND l.id = e.line_id WHERE $5)"
	" SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM n), (SELECT count(*) FROM e)",
	5,
};
/* ReportSessions (sessions.c), for one tenant: the reported sessions ($2)
 * the heartbeat cache could not answer, each with its verdict (REPORT_COL_*:
 * 0 live, else the end reason); those it ends (timed out, line no longer
 * allowed: $4 tenant active, $5 suspended paths, or expired) are ended and
 * announced in the same statement. $3 the session timeout. */
const fd_sql_t SQL_REPORT_SESSIONS = {
	"linesd_report_sessions",
	"WITH st AS ("
	"  SELECT s.id, s.line_id, s.node_id, coalesce(" EPOCH("l.expires_at") ", 0) AS expires,"
	"         coalesce(l.reseller_id, 0) AS reseller, s.ended_at IS NOT NULL AS was_ended,"
	"         CASE WHEN s.ended_at IS NOT NULL THEN s.end_reason"
	"              WHEN s.last_seen_at < now() - make_interval(secs => $3) THEN 2"
	"              WHEN l.id IS NULL OR l.state <> 'active' OR NOT $4::boolean"
	"                   OR l.reseller_path LIKE ANY ($5::text[]) THEN 6"
	"              WHEN l.expires_at <= now() THEN 5 ELSE 0 END AS verdict"
	"    FROM frontdesk.sessions s LEFT JOIN frontdesk.lines l ON l.tenant_id = s.tenant_id AND l.id = s.line_id"
	"   WHERE s.tenant_id = $1 AND s.id = ANY ($2::bigint[])),"
	" e AS (UPDATE frontdesk.sessions s"
	"          SET ended_at = CASE WHEN st.verdict = 2 THEN s.last_seen_at + make_interval(secs => $3) ELSE now() END,"
	"              end_reason = st.verdict"
	"         FROM st WHERE s.tenant_id = $1 AND s.id = st.id AND NOT st.was_ended AND st.verdict > 0"
	"           AND s.ended_at IS NULL"
	"        RETURNING s.id, s.line_id, s.end_reason),"
	" n AS (SELECT frontdesk.line_event($1, 6, e.line_id, st.reseller, e.id, e.end_reason)"
	"         FROM e JOIN st ON st.id = e.id)"
	" SELECT st.id, st.line_id, st.node_id, st.expires, st.verdict, (SELECT count(*) FROM n),"
	"        (SELECT set_config('synchronous_commit', 'off', true))"
	"   FROM st",
	5,
};
const fd_sql_t SQL_SESSION = {
	"linesd_session",
	"SELECT " SESSION_COLUMNS " FROM " SESSION_FROM " WHERE s.tenant_id = $1 AND s.id = $2",
	2,
};
/* Live sessions of the caller's subtree: $4 subtree pattern, $5 line,
 * $6 reseller subtree pattern, $7 stream, $8 node (NULL = any), $9 timeout. */
const fd_sql_t SQL_LIST_SESSIONS = {
	"linesd_list_sessions",
	"SELECT " SESSION_COLUMNS " FROM " SESSION_FROM
	" WHERE s.tenant_id = $1 AND s.id > $2 AND s.ended_at IS NULL"
	"   AND s.last_seen_at > now() - make_interval(secs => $9) AND l.reseller_path LIKE $4::text || '%'"
	"   AND ($5::bigint IS NULL OR s.line_id = $5) AND ($6::text IS NULL OR l.reseller_path LIKE $6)"
	"   AND ($7::bigint IS NULL OR s.stream_id = $7) AND ($8::bigint IS NULL OR s.node_id = $8)"
	" ORDER BY s.id LIMIT $3",
	9,
};

/* ---- the janitor's jobs (janitor.c) ---- */
/* In one tenant: sessions past the timeout end (TIMED_OUT = 2, at their
 * last heartbeat + timeout); lines past their expiry are announced once
 * (line.expired) and their sessions end (LINE_EXPIRED = 5); sessions ended
 * over an hour ago and old failure counters are deleted. */
const fd_sql_t SQL_SWEEP_TIMEOUTS = {
	"linesd_sweep_timeouts",
	"WITH e AS (UPDATE frontdesk.sessions s SET ended_at = s.last_seen_at + make_interval(secs => $2), end_reason = 2"
	"            WHERE s.tenant_id = $1 AND s.ended_at IS NULL"
	"              AND s.last_seen_at < now() - make_interval(secs => $2) RETURNING s.id, s.line_id)"
	" SELECT count(frontdesk.line_event($1, 6, e.line_id, coalesce(l.reseller_id, 0), e.id, 2))"
	"   FROM e LEFT JOIN frontdesk.lines l ON l.tenant_id = $1 AND l.id = e.line_id",
	2,
};
const fd_sql_t SQL_SWEEP_EXPIRED = {
	"linesd_sweep_expired",
	"WITH x AS (UPDATE frontdesk.lines l SET expiry_announced = l.expires_at"
	"            WHERE l.tenant_id = $1 AND l.expiry_announced IS NULL AND l.expires_at <= now()"
	"              AND l.state <> 'pending' RETURNING l.id, l.reseller_id, l.state),"
	" n AS (SELECT frontdesk.line_event($1, 3, x.id, x.reseller_id, 0, 1) FROM x WHERE x.state = 'active'),"
	" e AS (UPDATE frontdesk.sessions s SET ended_at = now(), end_reason = 5 FROM x"
	"        WHERE s.tenant_id = $1 AND s.line_id = x.id AND s.ended_at IS NULL RETURNING s.id, x.id AS line_id, x.reseller_id)"
	" SELECT (SELECT count(*) FROM n), (SELECT count(frontdesk.line_event($1, 6, e.line_id, e.reseller_id, e.id, 5)) FROM e)",
	1,
};
/* Sessions of lines whose reseller (or one above it) is suspended end
 * (LINE_REVOKED = 6): suspended accounts are few, their paths cover the
 * rest; in a suspended tenant every session ends. */
const fd_sql_t SQL_SWEEP_SUSPENDED = {
	"linesd_sweep_suspended",
	"WITH sp AS (SELECT path || '%' AS p FROM frontdesk.account_refs WHERE tenant_id = $1 AND status = 'suspended'),"
	" ts AS (SELECT coalesce((SELECT status = 'suspended' FROM frontdesk.tenants WHERE id = $1), false) AS off),"
	" e AS (UPDATE frontdesk.sessions s SET ended_at = now(), end_reason = 6 FROM frontdesk.lines l, ts"
	"        WHERE s.tenant_id = $1 AND s.ended_at IS NULL AND l.tenant_id = $1 AND l.id = s.line_id"
	"          AND (ts.off OR l.reseller_path LIKE ANY (ARRAY(SELECT p FROM sp)))"
	"        RETURNING s.id, s.line_id, l.reseller_id)"
	" SELECT count(frontdesk.line_event($1, 6, e.line_id, e.reseller_id, e.id, 6)) FROM e",
	1,
};
const fd_sql_t SQL_SWEEP_OLD = {
	"linesd_sweep_old",
	"WITH a AS (DELETE FROM frontdesk.sessions WHERE tenant_id = $1 AND ended_at < now() - interval '1 hour'),"
	" b AS (DELETE FROM frontdesk.playback_failures WHERE tenant_id = $1"
	"        AND window_start < now() - interval '1 day')"
	" SELECT 1",
	1,
};

/* ---- events (events.c) ---- */
const fd_sql_t SQL_WATCHER_UPSERT = {
	"linesd_ev_watcher_upsert",
	"WITH gone AS (DELETE FROM frontdesk.line_watchers"
	"               WHERE tenant_id = $1 AND replica <> $2 AND expires_at < now())"
	" INSERT INTO frontdesk.line_watchers (tenant_id, replica, expires_at)"
	" VALUES ($1, $2, now() + interval '" WATCHER_TTL "')"
	" ON CONFLICT (tenant_id, replica) DO UPDATE SET expires_at = EXCLUDED.expires_at",
	2,
};
const fd_sql_t SQL_WATCHER_DELETE = {
	"linesd_ev_watcher_delete",
	"DELETE FROM frontdesk.line_watchers WHERE tenant_id = $1 AND replica = $2",
	2,
};
const fd_sql_t SQL_WATCHED = {
	"linesd_ev_watched",
	"SELECT EXISTS (SELECT 1 FROM frontdesk.line_watchers WHERE tenant_id = $1 AND expires_at > now())",
	1,
};
const fd_sql_t SQL_WATCH_LINE = {
	"linesd_ev_watch_line",
	"SELECT reseller_path FROM frontdesk.lines WHERE tenant_id = $1 AND id = $2 AND state <> 'pending'",
	2,
};
/* The owner's path is read after the message's columns, at LINE_NCOLS. */
const fd_sql_t SQL_EVENT_LINE = {
	"linesd_ev_line",
	"SELECT " LINE_COLUMNS ", l.reseller_path FROM frontdesk.lines l"
	" WHERE l.tenant_id = $1 AND l.id = $2 AND l.state <> 'pending'",
	2,
};
/* ... and at SESSION_NCOLS (NULL once the line is deleted). */
const fd_sql_t SQL_EVENT_SESSION = {
	"linesd_ev_session",
	"SELECT " SESSION_COLUMNS ", l.reseller_path FROM " SESSION_FROM
	" WHERE s.tenant_id = $1 AND s.id = $2",
	2,
};
/* WatchPlaybackEvents: the lines a suspended account's subtree holds that
 * were allowed until then ($2 the account; $3 at most this many). */
const fd_sql_t SQL_SUBTREE_LINES = {
	"linesd_ev_subtree_lines",
	"SELECT l.id FROM frontdesk.lines l"
	" WHERE l.tenant_id = $1 AND l.state = 'active' AND l.expires_at > now()"
	"   AND l.reseller_path LIKE (SELECT a.path FROM frontdesk.account_refs a WHERE a.tenant_id = $1 AND a.id = $2)"
	"                            || '%'"
	" ORDER BY l.id LIMIT $3",
	3,
};
const fd_sql_t SQL_ACCOUNT_PATH = {
	"linesd_ev_account_path",
	"SELECT path FROM frontdesk.account_refs WHERE tenant_id = $1 AND id = $2",
	2,
};

const fd_sql_t SQL_RESELLER = {
	"linesd_reseller",
	"SELECT path, coalesce(subtree_suspended, false) FROM frontdesk.account_refs"
	" WHERE tenant_id = $1 AND id = $2 AND role IN ('reseller', 'tenant_admin')",
	2,
};


/* ---- when the janitor's jobs are next due (janitor.c) ---- */

/* When linesd.session_timeout is next due in a tenant ($2 the timeout, $3
 * the janitor's period, seconds): while sessions are live, within a period
 * (a suspended reseller's sessions end within one, as ever) and at the
 * first one's timeout; then when the oldest ended session or failure
 * counter is old enough to go; NULL: nothing. */
const fd_sql_t SQL_SESSIONS_NEXT = {
	"linesd_sessions_next",
	"SELECT ceil(extract(epoch FROM least("
	"   (SELECT min(last_seen_at) + make_interval(secs => $2) FROM frontdesk.sessions"
	"     WHERE tenant_id = $1 AND ended_at IS NULL),"
	"   (SELECT now() + make_interval(secs => $3) WHERE EXISTS (SELECT 1 FROM frontdesk.sessions"
	"     WHERE tenant_id = $1 AND ended_at IS NULL)),"
	"   (SELECT min(ended_at) + interval '1 hour' FROM frontdesk.sessions WHERE tenant_id = $1 AND ended_at IS NOT NULL),"
	"   (SELECT min(window_start) + interval '1 day' FROM frontdesk.playback_failures WHERE tenant_id = $1))))::bigint",
	3,
};
/* When linesd.expiry is next due: the next expiry not yet announced. */
const fd_sql_t SQL_EXPIRY_NEXT = {
	"linesd_expiry_next",
	"SELECT ceil(extract(epoch FROM min(expires_at)))::bigint FROM frontdesk.lines"
	" WHERE tenant_id = $1 AND expiry_announced IS NULL AND state <> 'pending'",
	1,
};
/* When linesd.reconcile is next due ($2 reconcile_after): the first pending
 * charge old enough, once its settler's claim has lapsed. */
const fd_sql_t SQL_RECONCILE_NEXT = {
	"linesd_reconcile_next",
	"SELECT ceil(extract(epoch FROM min(greatest(created_at + make_interval(secs => $2),"
	"                                           coalesce(claimed_until, created_at)))))::bigint"
	"  FROM frontdesk.line_charges WHERE tenant_id = $1 AND state = 'pending'",
	2,
};
