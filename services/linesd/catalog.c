/* catalog.c - the tenant's catalog: packages, bouquets, streams, and its lines
 * settings (migrations/0004_lines.sql).
 *
 * Tenant and platform admins write it; resellers read it. Catalog rows are
 * never deleted (disabled instead), so the id arrays (a package's bouquets, a
 * bouquet's streams) have no foreign keys: every id is checked on write, in
 * the transaction that stores it. Creates with an idempotency key serialize
 * on that key (a transaction-level advisory lock), so a concurrent duplicate
 * waits for the first and answers its row. Stream ids are numbered 1, 2, 3...
 * per tenant under a per-tenant advisory lock. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "linesd.h"
#include "fd/wire.h"

#define NAME_MAX_CHARS 200
#define CATEGORY_MAX_CHARS 100
#define LOGO_MAX_CHARS 1000
#define EPG_MAX_CHARS 200
#define QUERY_MAX_CHARS 200
#define MAX_DURATION_DAYS 3660
#define MAX_CREDIT_COST 1000000000
#define MAX_CONNECTIONS 1000
#define MAX_PACKAGE_BOUQUETS 1000   /* packages_bouquets */
#define MAX_BOUQUET_STREAMS 5000    /* bouquets_streams */
#define MAX_TRIALS_PER_DAY 100000   /* lines_settings_trials */

/* ---- columns and messages ---- */

#define PKG_COLS                                                                                         \
	"id, name, duration_days, duration_hours, credit_cost, max_connections, bouquet_ids, trial,"         \
	" output_formats, bandwidth_cap_kbps, disabled, " EPOCH("created_at") ", " EPOCH("updated_at")
#define BQ_COLS "id, name, stream_ids, " EPOCH("created_at") ", " EPOCH("updated_at")
#define STREAM_COLS                                                                                      \
	"s.id, s.name, s.kind, s.category, s.number, s.logo_url, s.epg_channel, s.disabled, "                \
	EPOCH("s.created_at") ", " EPOCH("s.updated_at")

/* Each builds a message from the row's columns starting at c, in the arena;
 * NULL when out of memory. */
typedef ProtobufCMessage *(*row_fn)(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int c);

static ProtobufCMessage *package_row(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int c)
{
	Frontdesk__V1__Package *p = fd_arena_zalloc(a, sizeof(*p));
	if (!p)
		return NULL;
	frontdesk__v1__package__init(p);
	p->id = col_i64(res, row, c);
	p->tenant_id = tenant;
	p->name = fd_arena_strdup(a, PQgetvalue(res, row, c + 1));
	p->duration_days = (int32_t)col_i64(res, row, c + 2);
	p->duration_hours = (int32_t)col_i64(res, row, c + 3);
	p->credit_cost = col_i64(res, row, c + 4);
	p->max_connections = (int32_t)col_i64(res, row, c + 5);
	if (!p->name || pg_parse_ints(a, PQgetvalue(res, row, c + 6), &p->bouquet_ids, &p->n_bouquet_ids) < 0 ||
	    pg_parse_formats(a, PQgetvalue(res, row, c + 8), &p->allowed_output_formats,
	                     &p->n_allowed_output_formats) < 0)
		return NULL;
	p->trial = col_bool(res, row, c + 7);
	p->bandwidth_cap_kbps = col_i64(res, row, c + 9);
	p->disabled = col_bool(res, row, c + 10);
	p->created_at = col_i64(res, row, c + 11);
	p->updated_at = col_i64(res, row, c + 12);
	return &p->base;
}

static ProtobufCMessage *bouquet_row(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int c)
{
	Frontdesk__V1__Bouquet *b = fd_arena_zalloc(a, sizeof(*b));
	if (!b)
		return NULL;
	frontdesk__v1__bouquet__init(b);
	b->id = col_i64(res, row, c);
	b->tenant_id = tenant;
	b->name = fd_arena_strdup(a, PQgetvalue(res, row, c + 1));
	if (!b->name || pg_parse_ints(a, PQgetvalue(res, row, c + 2), &b->stream_ids, &b->n_stream_ids) < 0)
		return NULL;
	b->created_at = col_i64(res, row, c + 3);
	b->updated_at = col_i64(res, row, c + 4);
	return &b->base;
}

static ProtobufCMessage *stream_row(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int c)
{
	Frontdesk__V1__Stream *s = fd_arena_zalloc(a, sizeof(*s));
	if (!s)
		return NULL;
	frontdesk__v1__stream__init(s);
	s->id = col_i64(res, row, c);
	s->tenant_id = tenant;
	s->name = fd_arena_strdup(a, PQgetvalue(res, row, c + 1));
	s->kind = (Frontdesk__V1__StreamKind)col_i64(res, row, c + 2);
	s->category = fd_arena_strdup(a, PQgetvalue(res, row, c + 3));
	s->number = (int32_t)col_i64(res, row, c + 4);
	s->logo_url = fd_arena_strdup(a, PQgetvalue(res, row, c + 5));
	s->epg_channel = fd_arena_strdup(a, PQgetvalue(res, row, c + 6));
	s->disabled = col_bool(res, row, c + 7);
	s->created_at = col_i64(res, row, c + 8);
	s->updated_at = col_i64(res, row, c + 9);
	return s->name && s->category && s->logo_url && s->epg_channel ? &s->base : NULL;
}

/* ---- parameters ---- */

/* Parameter text of v in r's arena; *oom set when out of memory. */
static const char *num(fd_tctx_t *r, bool *oom, int64_t v)
{
	const char *s = lines_i64(r, v);
	if (!s)
		*oom = true;
	return s;
}

static const char *boolean(bool v)
{
	return v ? "true" : "false";
}

/* ---- the writes' shared pieces ---- */

/* Tenant admins and platform admins acting in the tenant write the catalog. */
static int write_begin(fd_tctx_t *r, fd_call_t *call, int64_t tenant_id)
{
	int rc = fd_tctx_begin(r, call, FRONTDESK__V1__SCOPE__SCOPE_CATALOG_WRITE, tenant_id, "lines");
	if (rc < 0)
		return rc;
	if (!fd_tctx_admin(r))
		return fd_call_fail(call, FD_EPERM, "the catalog is written by tenant admins only");
	return 0;
}

/* A create's idempotency: the key as lines_idem makes it (NULL: no key) and
 * the request's fingerprint. */
static int create_idem(fd_tctx_t *r, const char *method, const char *key, const ProtobufCMessage *msg,
                       const char **idem, const char **hash)
{
	int rc = lines_idem(r, method, key, false, idem);
	if (rc < 0)
		return rc;
	*hash = NULL;
	if (*idem && !(*hash = fd_request_hash(r->arena, msg)))
		return OOM(r->call);
	return 0;
}

static const fd_sql_t SQL_IDEM_LOCK = {
	"linesd_cat_idem_lock",
	"SELECT pg_advisory_xact_lock(hashtextextended('linesd.idem/' || $1::text || '/' || $2::text, 0))",
	2,
};

/* Within a create's transaction, before anything is written: waits for a
 * concurrent call with the same key, then looks the key up. 1 and *id = the
 * row made under it earlier, 0 go on (also without a key), -code. */
static int idem_begin(fd_tx_t *tx, fd_tctx_t *r, const char *idem, const char *hash, int64_t *id)
{
	if (!idem)
		return 0;
	const char *params[] = { r->tenant_s, idem };
	int rc = fd_tx_exec(tx, &SQL_IDEM_LOCK, params, 0, NULL);
	return rc < 0 ? rc : lidem_find(tx, r, idem, hash, id);
}

static int idem_end(fd_tx_t *tx, fd_tctx_t *r, const char *idem, const char *hash, int64_t id)
{
	return idem ? lidem_store(tx, r, idem, hash, id) : 0;
}

/* Ids of a caller's list ($2, an int8[] literal) that are not in the tenant's
 * table, the first one first. */
static const fd_sql_t SQL_MISSING_BOUQUETS = {
	"linesd_cat_missing_bouquets",
	"SELECT u.x FROM unnest($2::bigint[]) WITH ORDINALITY u(x, o)"
	" WHERE NOT EXISTS (SELECT 1 FROM frontdesk.bouquets b WHERE b.tenant_id = $1 AND b.id = u.x)"
	" ORDER BY u.o LIMIT 1",
	2,
};
static const fd_sql_t SQL_MISSING_STREAMS = {
	"linesd_cat_missing_streams",
	"SELECT u.x FROM unnest($2::bigint[]) WITH ORDINALITY u(x, o)"
	" WHERE NOT EXISTS (SELECT 1 FROM frontdesk.streams s WHERE s.tenant_id = $1 AND s.id = u.x)"
	" ORDER BY u.o LIMIT 1",
	2,
};

/* Every id of ids (an int8[] literal; NULL or "{}": nothing to check) exists
 * in the tenant, or -FD_ENOTFOUND naming field and the first missing id. */
static int must_exist(fd_tx_t *tx, fd_tctx_t *r, const fd_sql_t *sql, const char *ids, const char *field,
                      const char *what)
{
	if (!ids || strcmp(ids, "{}") == 0)
		return 0;
	const char *params[] = { r->tenant_s, ids };
	PGresult *res;
	int rc = fd_tx_exec(tx, sql, params, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) > 0)
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "%s: %s %s not found", field, what, PQgetvalue(res, 0, 0));
	return 0;
}

/* The one row a statement returned, as a message into *out; 0 rows is
 * -FD_ENOTFOUND "<what> <id> not found". */
static int one_row(fd_tx_t *tx, fd_tctx_t *r, PGresult *res, row_fn build, ProtobufCMessage **out, const char *what,
                   const char *id)
{
	if (PQntuples(res) == 0)
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "%s %s not found", what, id);
	if (!(*out = build(r->arena, r->tenant, res, 0, 0)))
		return TX_OOM(tx);
	return 0;
}

/* Fails the call naming field unless s is free text of min..max characters. */
static int check_text(fd_tctx_t *r, const char *field, const char *s, int min, int max)
{
	return fd_check_text(field, s, min, max, fd_call_err(r->call));
}

/* The same for a name or label shown in portals and playlists (a package's,
 * bouquet's or stream's name, a stream's category and EPG channel id): no
 * leading or trailing blanks either. */
static int check_name(fd_tctx_t *r, const char *field, const char *s, int min, int max)
{
	return fd_check_name(field, s, min, max, fd_call_err(r->call));
}

/* What a create or an update runs: the idempotency record (creates), the ids
 * to check, the statement and the row it returns. */
typedef struct write_q {
	fd_tctx_t *r;
	const char *idem, *hash;
	const char *id;                  /* updates: the row's id */
	const char *bouquets, *streams;  /* int8[] literals of ids that must exist, or NULL */
	const fd_sql_t *sql;
	const char *params[12];
	ProtobufCMessage *out;
	/* UpdatePackage: durations to merge with the stored ones (-1 = unchanged) */
	int64_t days, hours;
} write_q_t;

/* ---- packages ---- */

static const fd_sql_t SQL_PKG_GET = {
	"linesd_cat_pkg_get",
	"SELECT " PKG_COLS " FROM frontdesk.packages WHERE tenant_id = $1 AND id = $2",
	2,
};
static const fd_sql_t SQL_PKG_INSERT = {
	"linesd_cat_pkg_insert",
	"INSERT INTO frontdesk.packages (tenant_id, name, duration_days, duration_hours, credit_cost,"
	"   max_connections, bouquet_ids, trial, output_formats, bandwidth_cap_kbps)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7::bigint[], $8, $9::smallint[], $10)"
	" RETURNING " PKG_COLS,
	10,
};
static const fd_sql_t SQL_PKG_LOCK = {
	"linesd_cat_pkg_lock",
	"SELECT duration_days, duration_hours FROM frontdesk.packages WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
	2,
};
static const fd_sql_t SQL_PKG_UPDATE = {
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

static int package_create_tx(fd_tx_t *tx, void *arg)
{
	write_q_t *q = arg;
	int64_t id;
	int rc = idem_begin(tx, q->r, q->idem, q->hash, &id);
	PGresult *res;
	if (rc == 1) {
		const char *params[] = { q->r->tenant_s, lines_i64(q->r, id) };
		if (!params[1])
			return TX_OOM(tx);
		if ((rc = fd_tx_exec(tx, &SQL_PKG_GET, params, 0, &res)) < 0)
			return rc;
		return one_row(tx, q->r, res, package_row, &q->out, "package", params[1]);
	}
	if (rc < 0 || (rc = must_exist(tx, q->r, &SQL_MISSING_BOUQUETS, q->bouquets, "bouquet_ids", "bouquet")) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_PKG_INSERT, q->params, 0, &res)) < 0 ||
	    (rc = one_row(tx, q->r, res, package_row, &q->out, "package", "")) < 0)
		return rc;
	return idem_end(tx, q->r, q->idem, q->hash, ((Frontdesk__V1__Package *)q->out)->id);
}

static int check_days(fd_tctx_t *r, int64_t v)
{
	if (v < 0 || v > MAX_DURATION_DAYS)
		return fd_call_fail(r->call, FD_EINVAL, "duration_days: 0 to %d", MAX_DURATION_DAYS);
	return 0;
}

static int check_hours(fd_tctx_t *r, int64_t v)
{
	if (v < 0 || v > 23)
		return fd_call_fail(r->call, FD_EINVAL, "duration_hours: 0 to 23");
	return 0;
}

static int check_cost(fd_tctx_t *r, int64_t v)
{
	if (v < 0 || v > MAX_CREDIT_COST)
		return fd_call_fail(r->call, FD_EINVAL, "credit_cost: 0 to %d", MAX_CREDIT_COST);
	return 0;
}

static int check_connections(fd_tctx_t *r, int64_t v)
{
	if (v < 1 || v > MAX_CONNECTIONS)
		return fd_call_fail(r->call, FD_EINVAL, "max_connections: 1 to %d", MAX_CONNECTIONS);
	return 0;
}

static int check_bandwidth(fd_tctx_t *r, int64_t v)
{
	if (v < 0)
		return fd_call_fail(r->call, FD_EINVAL, "bandwidth_cap_kbps: must not be negative (0 = none)");
	return 0;
}

static int total_duration_error(fd_err_t *err)
{
	return fd_err_set(err, FD_EINVAL, "duration_days, duration_hours: the duration must be more than 0");
}

int linesd_create_package(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__CreatePackageRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc;
	if ((rc = write_begin(&r, call, req->tenant_id)) < 0 ||
	    (rc = check_name(&r, "name", req->name, 1, NAME_MAX_CHARS)) < 0 ||
	    (rc = check_days(&r, req->duration_days)) < 0 || (rc = check_hours(&r, req->duration_hours)) < 0)
		return rc;
	if (req->duration_days == 0 && req->duration_hours == 0)
		return total_duration_error(fd_call_err(call));
	if ((rc = check_cost(&r, req->credit_cost)) < 0 || (rc = check_connections(&r, req->max_connections)) < 0 ||
	    (rc = check_ids(call, "bouquet_ids", req->bouquet_ids, req->n_bouquet_ids, MAX_PACKAGE_BOUQUETS)) < 0 ||
	    (rc = check_formats(call, "allowed_output_formats", req->allowed_output_formats,
	                        req->n_allowed_output_formats)) < 0 ||
	    (rc = check_bandwidth(&r, req->bandwidth_cap_kbps)) < 0)
		return rc;
	write_q_t q = { .r = &r };
	if ((rc = create_idem(&r, "CreatePackage", req->idempotency_key, msg, &q.idem, &q.hash)) < 0)
		return rc;
	bool oom = false;
	q.bouquets = pg_int_array(r.arena, req->bouquet_ids, req->n_bouquet_ids);
	const char *params[] = {
		r.tenant_s, req->name, num(&r, &oom, req->duration_days), num(&r, &oom, req->duration_hours),
		num(&r, &oom, req->credit_cost), num(&r, &oom, req->max_connections), q.bouquets, boolean(req->trial),
		pg_format_array(r.arena, req->allowed_output_formats, req->n_allowed_output_formats),
		num(&r, &oom, req->bandwidth_cap_kbps),
	};
	if (oom || !params[6] || !params[8])
		return OOM(call);
	memcpy(q.params, params, sizeof(params));
	if ((rc = lines_run(&r, package_create_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__CreatePackageResponse *out = fd_reply(call, resp);
	if (!out)
		return -FD_EEXHAUSTED;
	out->package = (Frontdesk__V1__Package *)q.out;
	return 0;
}

static int package_update_tx(fd_tx_t *tx, void *arg)
{
	write_q_t *q = arg;
	const char *params[] = { q->r->tenant_s, q->id };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_PKG_LOCK, params, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 0)
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "package %s not found", q->id);
	int64_t days = q->days >= 0 ? q->days : col_i64(res, 0, 0);
	int64_t hours = q->hours >= 0 ? q->hours : col_i64(res, 0, 1);
	if (days + hours <= 0)
		return total_duration_error(fd_tx_err(tx));
	if ((rc = must_exist(tx, q->r, &SQL_MISSING_BOUQUETS, q->bouquets, "bouquet_ids", "bouquet")) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_PKG_UPDATE, q->params, 0, &res)) < 0)
		return rc;
	return one_row(tx, q->r, res, package_row, &q->out, "package", q->id);
}

int linesd_update_package(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__UpdatePackageRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc;
	if ((rc = write_begin(&r, call, req->tenant_id)) < 0)
		return rc;
	if (req->package_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "package_id: required");
	if ((req->name[0] && (rc = check_name(&r, "name", req->name, 1, NAME_MAX_CHARS)) < 0) ||
	    (req->duration_days && (rc = check_days(&r, req->duration_days->value)) < 0) ||
	    (req->duration_hours && (rc = check_hours(&r, req->duration_hours->value)) < 0) ||
	    (req->credit_cost && (rc = check_cost(&r, req->credit_cost->value)) < 0) ||
	    (req->max_connections && (rc = check_connections(&r, req->max_connections->value)) < 0) ||
	    (req->bouquet_ids && (rc = check_ids(call, "bouquet_ids", req->bouquet_ids->values,
	                                         req->bouquet_ids->n_values, MAX_PACKAGE_BOUQUETS)) < 0) ||
	    (req->allowed_output_formats &&
	     (rc = check_formats(call, "allowed_output_formats", req->allowed_output_formats->values,
	                         req->allowed_output_formats->n_values)) < 0) ||
	    (req->bandwidth_cap_kbps && (rc = check_bandwidth(&r, req->bandwidth_cap_kbps->value)) < 0))
		return rc;
	bool oom = false;
	write_q_t q = { .r = &r, .id = num(&r, &oom, req->package_id),
		            .days = req->duration_days ? req->duration_days->value : -1,
		            .hours = req->duration_hours ? req->duration_hours->value : -1 };
	if (req->bouquet_ids && !(q.bouquets = pg_int_array(r.arena, req->bouquet_ids->values, req->bouquet_ids->n_values)))
		oom = true;
	const char *formats = NULL;
	if (req->allowed_output_formats &&
	    !(formats = pg_format_array(r.arena, req->allowed_output_formats->values, req->allowed_output_formats->n_values)))
		oom = true;
	const char *params[] = {
		r.tenant_s, q.id, req->name[0] ? req->name : NULL,
		req->duration_days ? num(&r, &oom, req->duration_days->value) : NULL,
		req->duration_hours ? num(&r, &oom, req->duration_hours->value) : NULL,
		req->credit_cost ? num(&r, &oom, req->credit_cost->value) : NULL,
		req->max_connections ? num(&r, &oom, req->max_connections->value) : NULL,
		q.bouquets, formats,
		req->bandwidth_cap_kbps ? num(&r, &oom, req->bandwidth_cap_kbps->value) : NULL,
		req->disabled ? boolean(req->disabled->value) : NULL,
	};
	if (oom)
		return OOM(call);
	memcpy(q.params, params, sizeof(params));
	if ((rc = lines_run(&r, package_update_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__UpdatePackageResponse *out = fd_reply(call, resp);
	if (!out)
		return -FD_EEXHAUSTED;
	out->package = (Frontdesk__V1__Package *)q.out;
	return 0;
}

/* ---- bouquets ---- */

static const fd_sql_t SQL_BQ_GET = {
	"linesd_cat_bq_get",
	"SELECT " BQ_COLS " FROM frontdesk.bouquets WHERE tenant_id = $1 AND id = $2",
	2,
};
static const fd_sql_t SQL_BQ_INSERT = {
	"linesd_cat_bq_insert",
	"INSERT INTO frontdesk.bouquets (tenant_id, name, stream_ids) VALUES ($1, $2, $3::bigint[])"
	" RETURNING " BQ_COLS,
	3,
};
static const fd_sql_t SQL_BQ_LOCK = {
	"linesd_cat_bq_lock",
	"SELECT 1 FROM frontdesk.bouquets WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
	2,
};
static const fd_sql_t SQL_BQ_UPDATE = {
	"linesd_cat_bq_update",
	"UPDATE frontdesk.bouquets SET name = coalesce($3, name), stream_ids = coalesce($4::bigint[], stream_ids),"
	"   updated_at = now()"
	" WHERE tenant_id = $1 AND id = $2"
	" RETURNING " BQ_COLS,
	4,
};

static int bouquet_create_tx(fd_tx_t *tx, void *arg)
{
	write_q_t *q = arg;
	int64_t id;
	int rc = idem_begin(tx, q->r, q->idem, q->hash, &id);
	PGresult *res;
	if (rc == 1) {
		const char *params[] = { q->r->tenant_s, lines_i64(q->r, id) };
		if (!params[1])
			return TX_OOM(tx);
		if ((rc = fd_tx_exec(tx, &SQL_BQ_GET, params, 0, &res)) < 0)
			return rc;
		return one_row(tx, q->r, res, bouquet_row, &q->out, "bouquet", params[1]);
	}
	if (rc < 0 || (rc = must_exist(tx, q->r, &SQL_MISSING_STREAMS, q->streams, "stream_ids", "stream")) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_BQ_INSERT, q->params, 0, &res)) < 0 ||
	    (rc = one_row(tx, q->r, res, bouquet_row, &q->out, "bouquet", "")) < 0)
		return rc;
	return idem_end(tx, q->r, q->idem, q->hash, ((Frontdesk__V1__Bouquet *)q->out)->id);
}

int linesd_create_bouquet(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__CreateBouquetRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc;
	if ((rc = write_begin(&r, call, req->tenant_id)) < 0 ||
	    (rc = check_name(&r, "name", req->name, 1, NAME_MAX_CHARS)) < 0 ||
	    (rc = check_ids(call, "stream_ids", req->stream_ids, req->n_stream_ids, MAX_BOUQUET_STREAMS)) < 0)
		return rc;
	write_q_t q = { .r = &r };
	if ((rc = create_idem(&r, "CreateBouquet", req->idempotency_key, msg, &q.idem, &q.hash)) < 0)
		return rc;
	if (!(q.streams = pg_int_array(r.arena, req->stream_ids, req->n_stream_ids)))
		return OOM(call);
	q.params[0] = r.tenant_s;
	q.params[1] = req->name;
	q.params[2] = q.streams;
	if ((rc = lines_run(&r, bouquet_create_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__CreateBouquetResponse *out = fd_reply(call, resp);
	if (!out)
		return -FD_EEXHAUSTED;
	out->bouquet = (Frontdesk__V1__Bouquet *)q.out;
	return 0;
}

static int bouquet_update_tx(fd_tx_t *tx, void *arg)
{
	write_q_t *q = arg;
	PGresult *res;
	int rc;
	if (q->streams) {
		/* The bouquet first: an unknown bouquet is not found whatever its list. */
		const char *params[] = { q->r->tenant_s, q->id };
		if ((rc = fd_tx_exec(tx, &SQL_BQ_LOCK, params, 0, &res)) < 0)
			return rc;
		if (PQntuples(res) == 0)
			return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "bouquet %s not found", q->id);
		if ((rc = must_exist(tx, q->r, &SQL_MISSING_STREAMS, q->streams, "stream_ids", "stream")) < 0)
			return rc;
	}
	if ((rc = fd_tx_exec(tx, &SQL_BQ_UPDATE, q->params, 0, &res)) < 0)
		return rc;
	return one_row(tx, q->r, res, bouquet_row, &q->out, "bouquet", q->id);
}

int linesd_update_bouquet(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__UpdateBouquetRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc;
	if ((rc = write_begin(&r, call, req->tenant_id)) < 0)
		return rc;
	if (req->bouquet_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "bouquet_id: required");
	if ((req->name[0] && (rc = check_name(&r, "name", req->name, 1, NAME_MAX_CHARS)) < 0) ||
	    (req->stream_ids && (rc = check_ids(call, "stream_ids", req->stream_ids->values, req->stream_ids->n_values,
	                                        MAX_BOUQUET_STREAMS)) < 0))
		return rc;
	bool oom = false;
	write_q_t q = { .r = &r, .id = num(&r, &oom, req->bouquet_id) };
	if (req->stream_ids && !(q.streams = pg_int_array(r.arena, req->stream_ids->values, req->stream_ids->n_values)))
		oom = true;
	if (oom)
		return OOM(call);
	q.params[0] = r.tenant_s;
	q.params[1] = q.id;
	q.params[2] = req->name[0] ? req->name : NULL;
	q.params[3] = q.streams;
	if ((rc = lines_run(&r, bouquet_update_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__UpdateBouquetResponse *out = fd_reply(call, resp);
	if (!out)
		return -FD_EEXHAUSTED;
	out->bouquet = (Frontdesk__V1__Bouquet *)q.out;
	return 0;
}

/* ---- streams ---- */

static const fd_sql_t SQL_STREAM_GET = {
	"linesd_cat_stream_get",
	"SELECT " STREAM_COLS " FROM frontdesk.streams s WHERE s.tenant_id = $1 AND s.id = $2",
	2,
};
/* Stream ids are numbered per tenant, one create at a time. */
static const fd_sql_t SQL_STREAM_LOCK = {
	"linesd_cat_stream_lock",
	"SELECT pg_advisory_xact_lock(hashtextextended('linesd.streams/' || $1::text, 0))",
	1,
};
static const fd_sql_t SQL_STREAM_INSERT = {
	"linesd_cat_stream_insert",
	"INSERT INTO frontdesk.streams AS s (tenant_id, id, name, kind, category, number, logo_url, epg_channel)"
	" SELECT $1::bigint, coalesce(max(m.id), 0) + 1, $2::text, $3::smallint, $4::text, $5::integer, $6::text,"
	"        $7::text"
	"   FROM frontdesk.streams m WHERE m.tenant_id = $1::bigint"
	" RETURNING " STREAM_COLS,
	7,
};
static const fd_sql_t SQL_STREAM_APPEND = {
	"linesd_cat_stream_append",
	"UPDATE frontdesk.bouquets SET stream_ids = stream_ids || $3::bigint, updated_at = now()"
	" WHERE tenant_id = $1 AND id = ANY ($2::bigint[])",
	3,
};
static const fd_sql_t SQL_STREAM_UPDATE = {
	"linesd_cat_stream_update",
	"UPDATE frontdesk.streams s SET name = coalesce($3, s.name), kind = coalesce($4::smallint, s.kind),"
	"   category = coalesce($5, s.category), number = coalesce($6::integer, s.number),"
	"   logo_url = coalesce($7, s.logo_url), epg_channel = coalesce($8, s.epg_channel),"
	"   disabled = coalesce($9::boolean, s.disabled), updated_at = now()"
	" WHERE s.tenant_id = $1 AND s.id = $2"
	" RETURNING " STREAM_COLS,
	9,
};

static int stream_create_tx(fd_tx_t *tx, void *arg)
{
	write_q_t *q = arg;
	const char *lock[] = { q->r->tenant_s };
	int rc = fd_tx_exec(tx, &SQL_STREAM_LOCK, lock, 0, NULL);
	if (rc < 0)
		return rc;
	int64_t id;
	PGresult *res;
	if ((rc = idem_begin(tx, q->r, q->idem, q->hash, &id)) == 1) {
		const char *params[] = { q->r->tenant_s, lines_i64(q->r, id) };
		if (!params[1])
			return TX_OOM(tx);
		if ((rc = fd_tx_exec(tx, &SQL_STREAM_GET, params, 0, &res)) < 0)
			return rc;
		return one_row(tx, q->r, res, stream_row, &q->out, "stream", params[1]);
	}
	if (rc < 0 || (rc = must_exist(tx, q->r, &SQL_MISSING_BOUQUETS, q->bouquets, "bouquet_ids", "bouquet")) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_STREAM_INSERT, q->params, 0, &res)) < 0 ||
	    (rc = one_row(tx, q->r, res, stream_row, &q->out, "stream", "")) < 0)
		return rc;
	int64_t sid = ((Frontdesk__V1__Stream *)q->out)->id;
	if (strcmp(q->bouquets, "{}") != 0) {
		const char *params[] = { q->r->tenant_s, q->bouquets, lines_i64(q->r, sid) };
		if (!params[2])
			return TX_OOM(tx);
		if ((rc = fd_tx_exec(tx, &SQL_STREAM_APPEND, params, 0, NULL)) < 0) {
			if (rc == -FD_EPRECOND)   /* bouquets_streams */
				return fd_err_set(fd_tx_err(tx), FD_EPRECOND,
				                  "bouquet_ids: a bouquet already holds %d streams", MAX_BOUQUET_STREAMS);
			return rc;
		}
	}
	return idem_end(tx, q->r, q->idem, q->hash, sid);
}

static int check_kind(fd_tctx_t *r, Frontdesk__V1__StreamKind kind, bool required)
{
	if ((kind == FRONTDESK__V1__STREAM_KIND__STREAM_KIND_UNSPECIFIED && required) ||
	    (int)kind < 0 || kind > FRONTDESK__V1__STREAM_KIND__STREAM_KIND_SERIES)
		return fd_call_fail(r->call, FD_EINVAL, "kind: LIVE, MOVIE or SERIES");
	return 0;
}

static int check_number(fd_tctx_t *r, int64_t v)
{
	if (v < 0)
		return fd_call_fail(r->call, FD_EINVAL, "number: must not be negative (0 = none)");
	return 0;
}

int linesd_create_stream(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__CreateStreamRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc;
	if ((rc = write_begin(&r, call, req->tenant_id)) < 0 ||
	    (rc = check_name(&r, "name", req->name, 1, NAME_MAX_CHARS)) < 0 || (rc = check_kind(&r, req->kind, true)) < 0 ||
	    (rc = check_name(&r, "category", req->category, 0, CATEGORY_MAX_CHARS)) < 0 ||
	    (rc = check_number(&r, req->number)) < 0 ||
	    (rc = check_text(&r, "logo_url", req->logo_url, 0, LOGO_MAX_CHARS)) < 0 ||
	    (rc = check_name(&r, "epg_channel", req->epg_channel, 0, EPG_MAX_CHARS)) < 0 ||
	    (rc = check_ids(call, "bouquet_ids", req->bouquet_ids, req->n_bouquet_ids, MAX_PACKAGE_BOUQUETS)) < 0)
		return rc;
	write_q_t q = { .r = &r };
	if ((rc = create_idem(&r, "CreateStream", req->idempotency_key, msg, &q.idem, &q.hash)) < 0)
		return rc;
	bool oom = false;
	q.bouquets = pg_int_array(r.arena, req->bouquet_ids, req->n_bouquet_ids);
	const char *params[] = {
		r.tenant_s, req->name, num(&r, &oom, req->kind), req->category, num(&r, &oom, req->number),
		req->logo_url, req->epg_channel,
	};
	if (oom || !q.bouquets)
		return OOM(call);
	memcpy(q.params, params, sizeof(params));
	if ((rc = lines_run(&r, stream_create_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__CreateStreamResponse *out = fd_reply(call, resp);
	if (!out)
		return -FD_EEXHAUSTED;
	out->stream = (Frontdesk__V1__Stream *)q.out;
	return 0;
}

static int stream_update_tx(fd_tx_t *tx, void *arg)
{
	write_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_STREAM_UPDATE, q->params, 0, &res);
	return rc < 0 ? rc : one_row(tx, q->r, res, stream_row, &q->out, "stream", q->id);
}

int linesd_update_stream(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__UpdateStreamRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc;
	if ((rc = write_begin(&r, call, req->tenant_id)) < 0)
		return rc;
	if (req->stream_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "stream_id: required");
	if ((req->name[0] && (rc = check_name(&r, "name", req->name, 1, NAME_MAX_CHARS)) < 0) ||
	    (rc = check_kind(&r, req->kind, false)) < 0 ||
	    (req->category && (rc = check_name(&r, "category", req->category->value, 0, CATEGORY_MAX_CHARS)) < 0) ||
	    (req->number && (rc = check_number(&r, req->number->value)) < 0) ||
	    (req->logo_url && (rc = check_text(&r, "logo_url", req->logo_url->value, 0, LOGO_MAX_CHARS)) < 0) ||
	    (req->epg_channel && (rc = check_name(&r, "epg_channel", req->epg_channel->value, 0, EPG_MAX_CHARS)) < 0))
		return rc;
	bool oom = false;
	write_q_t q = { .r = &r, .id = num(&r, &oom, req->stream_id) };
	const char *params[] = {
		r.tenant_s, q.id, req->name[0] ? req->name : NULL, req->kind ? num(&r, &oom, req->kind) : NULL,
		req->category ? req->category->value : NULL, req->number ? num(&r, &oom, req->number->value) : NULL,
		req->logo_url ? req->logo_url->value : NULL, req->epg_channel ? req->epg_channel->value : NULL,
		req->disabled ? boolean(req->disabled->value) : NULL,
	};
	if (oom)
		return OOM(call);
	memcpy(q.params, params, sizeof(params));
	if ((rc = lines_run(&r, stream_update_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__UpdateStreamResponse *out = fd_reply(call, resp);
	if (!out)
		return -FD_EEXHAUSTED;
	out->stream = (Frontdesk__V1__Stream *)q.out;
	return 0;
}

/* ---- lists ---- */

/* Every list statement returns the row's position (what pages follow) in
 * column 0 and the row from column 1: $1 tenant, $2 the position after which
 * the page starts, $3 limit + 1 (one more tells whether a next page exists). */
static const fd_sql_t SQL_LIST_PACKAGES = {
	"linesd_cat_list_packages",
	"SELECT id, " PKG_COLS " FROM frontdesk.packages"
	" WHERE tenant_id = $1 AND id > $2 AND (NOT $4::boolean OR trial) AND ($5::boolean OR NOT disabled)"
	"   AND ($6::text = '' OR strpos(lower(name), lower($6::text)) > 0)"
	" ORDER BY id LIMIT $3",
	6,
};
static const fd_sql_t SQL_LIST_BOUQUETS = {
	"linesd_cat_list_bouquets",
	"SELECT id, " BQ_COLS " FROM frontdesk.bouquets"
	" WHERE tenant_id = $1 AND id > $2 AND ($4::text = '' OR strpos(lower(name), lower($4::text)) > 0)"
	" ORDER BY id LIMIT $3",
	4,
};
/* ListStreams' filters, $4..$7: kind (0 any), category ('' any), name
 * contains ('' any), include disabled. */
#define STREAM_FILTERS                                                                                   \
	" AND ($4::smallint = 0 OR s.kind = $4::smallint) AND ($5::text = '' OR s.category = $5::text)"     \
	" AND ($6::text = '' OR strpos(lower(s.name), lower($6::text)) > 0) AND ($7::boolean OR NOT s.disabled)"
static const fd_sql_t SQL_LIST_STREAMS = {
	"linesd_cat_list_streams",
	"SELECT s.id, " STREAM_COLS " FROM frontdesk.streams s"
	" WHERE s.tenant_id = $1 AND s.id > $2" STREAM_FILTERS
	" ORDER BY s.id LIMIT $3",
	7,
};
/* A bouquet's streams in its order, paged by position in its list. */
static const fd_sql_t SQL_LIST_BOUQUET_STREAMS = {
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
static const fd_sql_t SQL_LIST_LINE_STREAMS = {
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
static const fd_sql_t SQL_LINE_VISIBLE = {
	"linesd_cat_line_visible",
	"SELECT 1 FROM frontdesk.lines"
	" WHERE tenant_id = $1 AND id = $2 AND state <> 'pending' AND reseller_path LIKE $3::text || '%'",
	3,
};

typedef struct list_q {
	fd_tctx_t *r;
	/* When set: a statement ($1 tenant, $2 id, $3 subtree) that must find a
	 * row, else NOT_FOUND "<what> <id> not found". */
	const fd_sql_t *must;
	const char *must_id, *must_what;
	const fd_sql_t *sql;
	const char *params[9];
	row_fn build;
	ProtobufCMessage **out;
	size_t n;
	int64_t last_pos;       /* of the row at index limit - 1 */
	int limit;
} list_q_t;

static int list_tx(fd_tx_t *tx, void *arg)
{
	list_q_t *q = arg;
	PGresult *res;
	int rc;
	if (q->must) {
		const char *params[] = { q->r->tenant_s, q->must_id, fd_subtree_prefix(&q->r->c) };
		if (!params[2])
			return TX_OOM(tx);
		if ((rc = fd_tx_exec(tx, q->must, params, 0, &res)) < 0)
			return rc;
		if (PQntuples(res) == 0)
			return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "%s %s not found", q->must_what, q->must_id);
	}
	if ((rc = fd_tx_exec(tx, q->sql, q->params, 0, &res)) < 0)
		return rc;
	int n = PQntuples(res);
	q->n = 0;
	if (!(q->out = fd_arena_zalloc(q->r->arena, sizeof(*q->out) * (size_t)(n ? n : 1))))
		return TX_OOM(tx);
	for (int i = 0; i < n; i++)
		if (!(q->out[q->n++] = q->build(q->r->arena, q->r->tenant, res, i, 1)))
			return TX_OOM(tx);
	if (n > q->limit)
		q->last_pos = col_i64(res, q->limit - 1, 0);
	return 0;
}

/* Paging in q: limit, and $2 and $3 of its statement. */
static int list_page(fd_tctx_t *r, list_q_t *q, int32_t page_size, const char *page_token)
{
	int64_t after;
	int rc = fd_check_page(page_size, page_token, &q->limit, &after, fd_call_err(r->call));
	if (rc < 0)
		return rc;
	bool oom = false;
	q->r = r;
	q->params[0] = r->tenant_s;
	q->params[1] = num(r, &oom, after);
	q->params[2] = num(r, &oom, q->limit + 1);
	return oom ? OOM(r->call) : 0;
}

/* Runs q; *items and *n get the page (protobuf-c reads a repeated message
 * field as an array of ProtobufCMessage pointers, which is what q->out
 * holds), *token the next page's token (left empty on the last). */
static int list_run(fd_tctx_t *r, list_q_t *q, ProtobufCMessage ***items, size_t *n, char **token)
{
	int rc = lines_run_ro(r, list_tx, q);
	if (rc < 0)
		return rc;
	*n = q->n > (size_t)q->limit ? (size_t)q->limit : q->n;
	*items = q->out;
	if (q->n > (size_t)q->limit && !(*token = fd_page_token(r->arena, q->last_pos)))
		return OOM(r->call);
	return 0;
}

int linesd_list_packages(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListPackagesRequest *req = (const void *)msg;
	fd_tctx_t r;
	list_q_t q = { .sql = &SQL_LIST_PACKAGES, .build = package_row };
	int rc;
	if ((rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_CATALOG_READ, req->tenant_id, "lines")) < 0 ||
	    (rc = check_text(&r, "query", req->query, 0, QUERY_MAX_CHARS)) < 0 ||
	    (rc = list_page(&r, &q, req->page_size, req->page_token)) < 0)
		return rc;
	q.params[3] = boolean(req->trial_only);
	q.params[4] = boolean(req->include_disabled);
	q.params[5] = req->query;
	Frontdesk__V1__ListPackagesResponse *out = fd_reply(call, resp);
	if (!out)
		return -FD_EEXHAUSTED;
	ProtobufCMessage **items;
	if ((rc = list_run(&r, &q, &items, &out->n_packages, &out->next_page_token)) < 0)
		return rc;
	out->packages = (Frontdesk__V1__Package **)items;
	return 0;
}

int linesd_list_bouquets(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListBouquetsRequest *req = (const void *)msg;
	fd_tctx_t r;
	list_q_t q = { .sql = &SQL_LIST_BOUQUETS, .build = bouquet_row };
	int rc;
	if ((rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_CATALOG_READ, req->tenant_id, "lines")) < 0 ||
	    (rc = check_text(&r, "query", req->query, 0, QUERY_MAX_CHARS)) < 0 ||
	    (rc = list_page(&r, &q, req->page_size, req->page_token)) < 0)
		return rc;
	q.params[3] = req->query;
	Frontdesk__V1__ListBouquetsResponse *out = fd_reply(call, resp);
	if (!out)
		return -FD_EEXHAUSTED;
	ProtobufCMessage **items;
	if ((rc = list_run(&r, &q, &items, &out->n_bouquets, &out->next_page_token)) < 0)
		return rc;
	out->bouquets = (Frontdesk__V1__Bouquet **)items;
	return 0;
}

int linesd_list_streams(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListStreamsRequest *req = (const void *)msg;
	fd_tctx_t r;
	list_q_t q = { .sql = &SQL_LIST_STREAMS, .build = stream_row };
	int rc;
	if ((rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_CATALOG_READ, req->tenant_id, "lines")) < 0 ||
	    (rc = check_kind(&r, req->kind, false)) < 0 ||
	    (rc = check_text(&r, "category", req->category, 0, CATEGORY_MAX_CHARS)) < 0 ||
	    (rc = check_text(&r, "query", req->query, 0, QUERY_MAX_CHARS)) < 0)
		return rc;
	if (req->bouquet_id < 0)
		return fd_call_fail(call, FD_EINVAL, "bouquet_id: must not be negative");
	if (req->line_id < 0)
		return fd_call_fail(call, FD_EINVAL, "line_id: must not be negative");
	if (req->bouquet_id && req->line_id)
		return fd_call_fail(call, FD_EINVAL, "bouquet_id, line_id: give one of them, not both");
	if ((rc = list_page(&r, &q, req->page_size, req->page_token)) < 0)
		return rc;
	bool oom = false;
	q.params[3] = num(&r, &oom, req->kind);
	q.params[4] = req->category;
	q.params[5] = req->query;
	q.params[6] = boolean(req->include_disabled);
	if (req->bouquet_id) {
		q.sql = &SQL_LIST_BOUQUET_STREAMS;
		q.must = &SQL_BQ_GET;   /* $3 (the subtree) unused: bouquets are the whole tenant's */
		q.must_what = "bouquet";
		q.must_id = q.params[7] = num(&r, &oom, req->bouquet_id);
	} else if (req->line_id) {
		q.sql = &SQL_LIST_LINE_STREAMS;
		q.must = &SQL_LINE_VISIBLE;
		q.must_what = "line";
		q.must_id = q.params[7] = num(&r, &oom, req->line_id);
		q.params[8] = fd_subtree_prefix(&r.c);
		oom = oom || !q.params[8];
	}
	if (oom)
		return OOM(call);
	Frontdesk__V1__ListStreamsResponse *out = fd_reply(call, resp);
	if (!out)
		return -FD_EEXHAUSTED;
	ProtobufCMessage **items;
	if ((rc = list_run(&r, &q, &items, &out->n_streams, &out->next_page_token)) < 0)
		return rc;
	out->streams = (Frontdesk__V1__Stream **)items;
	return 0;
}

/* ---- lines settings ---- */

#define DEFAULT_POLICY "refuse_new"
#define DEFAULT_TRIALS_PER_DAY 10

static const fd_sql_t SQL_SETTINGS_GET = {
	"linesd_cat_settings_get",
	"SELECT connection_limit_policy, trials_per_day, " EPOCH("updated_at")
	" FROM frontdesk.lines_settings WHERE tenant_id = $1",
	1,
};
/* No row yet: the defaults with the change applied. */
static const fd_sql_t SQL_SETTINGS_UPSERT = {
	"linesd_cat_settings_upsert",
	"INSERT INTO frontdesk.lines_settings AS t (tenant_id, connection_limit_policy, trials_per_day)"
	" VALUES ($1, coalesce($2::text, '" DEFAULT_POLICY "'), coalesce($3::integer, 10))"
	" ON CONFLICT (tenant_id) DO UPDATE"
	"   SET connection_limit_policy = coalesce($2::text, t.connection_limit_policy),"
	"       trials_per_day = coalesce($3::integer, t.trials_per_day), updated_at = now()"
	" RETURNING connection_limit_policy, trials_per_day, " EPOCH("updated_at"),
	3,
};

typedef struct settings_q {
	fd_tctx_t *r;
	const char *params[3];
	Frontdesk__V1__LinesSettings *out;
} settings_q_t;

static Frontdesk__V1__ConnectionLimitPolicy policy_of(const char *s)
{
	return strcmp(s, "end_oldest") == 0 ? FRONTDESK__V1__CONNECTION_LIMIT_POLICY__CONNECTION_LIMIT_POLICY_END_OLDEST
	                                    : FRONTDESK__V1__CONNECTION_LIMIT_POLICY__CONNECTION_LIMIT_POLICY_REFUSE_NEW;
}

static int settings_tx(fd_tx_t *tx, void *arg)
{
	settings_q_t *q = arg;
	bool update = q->params[1] || q->params[2];
	PGresult *res;
	int rc = update ? fd_tx_exec(tx, &SQL_SETTINGS_UPSERT, q->params, FD_TX_LAST, &res)
	                : fd_tx_exec(tx, &SQL_SETTINGS_GET, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	if (!(q->out = fd_arena_zalloc(q->r->arena, sizeof(*q->out))))
		return TX_OOM(tx);
	frontdesk__v1__lines_settings__init(q->out);
	q->out->tenant_id = q->r->tenant;
	if (PQntuples(res) == 0) {
		q->out->connection_limit_policy = policy_of(DEFAULT_POLICY);
		q->out->trials_per_day = DEFAULT_TRIALS_PER_DAY;
		return 0;
	}
	q->out->connection_limit_policy = policy_of(PQgetvalue(res, 0, 0));
	q->out->trials_per_day = (int32_t)col_i64(res, 0, 1);
	q->out->updated_at = col_i64(res, 0, 2);
	return 0;
}

int linesd_get_settings(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__GetLinesSettingsRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_CATALOG_READ, req->tenant_id, "lines");
	if (rc < 0)
		return rc;
	settings_q_t q = { .r = &r, .params = { r.tenant_s } };
	if ((rc = lines_run_ro(&r, settings_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__GetLinesSettingsResponse *out = fd_reply(call, resp);
	if (!out)
		return -FD_EEXHAUSTED;
	out->settings = q.out;
	return 0;
}

int linesd_update_settings(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__UpdateLinesSettingsRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc = write_begin(&r, call, req->tenant_id);
	if (rc < 0)
		return rc;
	const char *policy;
	switch (req->connection_limit_policy) {
	case FRONTDESK__V1__CONNECTION_LIMIT_POLICY__CONNECTION_LIMIT_POLICY_UNSPECIFIED:
		policy = NULL;
		break;
	case FRONTDESK__V1__CONNECTION_LIMIT_POLICY__CONNECTION_LIMIT_POLICY_REFUSE_NEW:
		policy = "refuse_new";
		break;
	case FRONTDESK__V1__CONNECTION_LIMIT_POLICY__CONNECTION_LIMIT_POLICY_END_OLDEST:
		policy = "end_oldest";
		break;
	default:
		return fd_call_fail(call, FD_EINVAL, "connection_limit_policy: REFUSE_NEW or END_OLDEST");
	}
	if (req->trials_per_day && (req->trials_per_day->value < 0 || req->trials_per_day->value > MAX_TRIALS_PER_DAY))
		return fd_call_fail(call, FD_EINVAL, "trials_per_day: 0 to %d", MAX_TRIALS_PER_DAY);
	bool oom = false;
	settings_q_t q = { .r = &r, .params = { r.tenant_s, policy,
		                                    req->trials_per_day ? num(&r, &oom, req->trials_per_day->value) : NULL } };
	if (oom)
		return OOM(call);
	/* Nothing to change: the settings as they are (no row is written). */
	if ((rc = (policy || req->trials_per_day) ? lines_run(&r, settings_tx, &q) : lines_run_ro(&r, settings_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__UpdateLinesSettingsResponse *out = fd_reply(call, resp);
	if (!out)
		return -FD_EEXHAUSTED;
	out->settings = q.out;
	return 0;
}
