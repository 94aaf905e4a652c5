/* catalog.c - the tenant's catalog: packages, bouquets, streams, and its lines
 * settings (migrations/0004_lines.sql).
 *
 * Tenant and platform admins write it; resellers read it. Catalog rows are
 * never deleted (disabled instead), so the id arrays (a package's bouquets, a
 * bouquet's streams) have no foreign keys: every id is checked on write, in
 * the transaction that stores it. Creates with an idempotency key claim it
 * first (fd/idem.h), so a concurrent duplicate waits for the first and
 * answers its row. Stream ids are numbered 1, 2, 3...
 * per tenant under a per-tenant advisory lock. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "enums.h"
#include "linesd.h"
#include "store.h"
#include "fd/idem.h"
#include "fd/text.h"

#define NAME_MAX_CHARS 200
#define CATEGORY_MAX_CHARS 100
#define LOGO_MAX_CHARS 1000
#define EPG_MAX_CHARS 200
#define QUERY_MAX_CHARS 200
#define MAX_PACKAGE_BOUQUETS 1000   /* packages_bouquets */
#define MAX_BOUQUET_STREAMS 5000    /* bouquets_streams */
#define MAX_TRIALS_PER_DAY 100000   /* lines_settings_trials */

/* ---- messages ---- */

/* A row's message (store.h: package_message, bouquet_message,
 * stream_message). */
typedef ProtobufCMessage *(*row_fn)(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int c);

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

/* A create's idempotency (fd/idem.h): claimed first in its transaction, so
 * a concurrent duplicate waits for the first and answers its row. 1 and
 * *id = the row made under the key earlier, 0 go on (also without a key),
 * -code. */
static int idem_begin(fd_tx_t *tx, const fd_idem_t *k, int64_t *id)
{
	fd_idem_replay_t first;
	int rc = fd_idem_claim(tx, k, &first);
	*id = first.result_id;
	return rc;
}

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
	fd_idem_t idem;                  /* creates: the request's key (none: .key NULL) */
	const char *id;                  /* updates: the row's id */
	const char *bouquets, *streams;  /* int8[] literals of ids that must exist, or NULL */
	const fd_sql_t *sql;
	const char *params[12];
	ProtobufCMessage *out;
	/* UpdatePackage: durations to merge with the stored ones (-1 = unchanged) */
	int64_t days, hours;
} write_q_t;

/* ---- packages ---- */

static int package_create_tx(fd_tx_t *tx, void *arg)
{
	write_q_t *q = arg;
	int64_t id;
	int rc = idem_begin(tx, &q->idem, &id);
	PGresult *res;
	if (rc == 1) {
		const char *params[] = { q->r->tenant_s, lines_i64(q->r, id) };
		if (!params[1])
			return TX_OOM(tx);
		if ((rc = fd_tx_exec(tx, &SQL_PKG_GET, params, 0, &res)) < 0)
			return rc;
		return one_row(tx, q->r, res, package_message, &q->out, "package", params[1]);
	}
	if (rc < 0 || (rc = must_exist(tx, q->r, &SQL_MISSING_BOUQUETS, q->bouquets, "bouquet_ids", "bouquet")) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_PKG_INSERT, q->params, 0, &res)) < 0 ||
	    (rc = one_row(tx, q->r, res, package_message, &q->out, "package", "")) < 0)
		return rc;
	return fd_idem_done(tx, &q->idem, ((Frontdesk__V1__Package *)q->out)->id, NULL, 0);
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
	    (rc = check_days(fd_call_err(call), req->duration_days)) < 0 || (rc = check_hours(fd_call_err(call), req->duration_hours)) < 0)
		return rc;
	if (req->duration_days == 0 && req->duration_hours == 0)
		return total_duration_error(fd_call_err(call));
	if ((rc = check_cost(fd_call_err(call), req->credit_cost)) < 0 || (rc = check_connections(fd_call_err(call), req->max_connections)) < 0 ||
	    (rc = check_ids(fd_call_err(call), "bouquet_ids", req->bouquet_ids, req->n_bouquet_ids, MAX_PACKAGE_BOUQUETS)) < 0 ||
	    (rc = check_formats(fd_call_err(call), "allowed_output_formats", req->allowed_output_formats,
	                        req->n_allowed_output_formats)) < 0 ||
	    (rc = check_bandwidth(fd_call_err(call), req->bandwidth_cap_kbps)) < 0)
		return rc;
	write_q_t q = { .r = &r };
	if ((rc = fd_idem_make(&r, "linesd", "CreatePackage", req->idempotency_key, false, msg, &q.idem)) < 0)
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
	int64_t days = q->days >= 0 ? q->days : col_i64(res, 0, PKG_LOCK_COL_DAYS);
	int64_t hours = q->hours >= 0 ? q->hours : col_i64(res, 0, PKG_LOCK_COL_HOURS);
	if (days + hours <= 0)
		return total_duration_error(fd_tx_err(tx));
	if ((rc = must_exist(tx, q->r, &SQL_MISSING_BOUQUETS, q->bouquets, "bouquet_ids", "bouquet")) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_PKG_UPDATE, q->params, 0, &res)) < 0)
		return rc;
	return one_row(tx, q->r, res, package_message, &q->out, "package", q->id);
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
	    (req->duration_days && (rc = check_days(fd_call_err(call), req->duration_days->value)) < 0) ||
	    (req->duration_hours && (rc = check_hours(fd_call_err(call), req->duration_hours->value)) < 0) ||
	    (req->credit_cost && (rc = check_cost(fd_call_err(call), req->credit_cost->value)) < 0) ||
	    (req->max_connections && (rc = check_connections(fd_call_err(call), req->max_connections->value)) < 0) ||
	    (req->bouquet_ids && (rc = check_ids(fd_call_err(call), "bouquet_ids", req->bouquet_ids->values,
	                                         req->bouquet_ids->n_values, MAX_PACKAGE_BOUQUETS)) < 0) ||
	    (req->allowed_output_formats &&
	     (rc = check_formats(fd_call_err(call), "allowed_output_formats", req->allowed_output_formats->values,
	                         req->allowed_output_formats->n_values)) < 0) ||
	    (req->bandwidth_cap_kbps && (rc = check_bandwidth(fd_call_err(call), req->bandwidth_cap_kbps->value)) < 0))
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

static int bouquet_create_tx(fd_tx_t *tx, void *arg)
{
	write_q_t *q = arg;
	int64_t id;
	int rc = idem_begin(tx, &q->idem, &id);
	PGresult *res;
	if (rc == 1) {
		const char *params[] = { q->r->tenant_s, lines_i64(q->r, id) };
		if (!params[1])
			return TX_OOM(tx);
		if ((rc = fd_tx_exec(tx, &SQL_BQ_GET, params, 0, &res)) < 0)
			return rc;
		return one_row(tx, q->r, res, bouquet_message, &q->out, "bouquet", params[1]);
	}
	if (rc < 0 || (rc = must_exist(tx, q->r, &SQL_MISSING_STREAMS, q->streams, "stream_ids", "stream")) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_BQ_INSERT, q->params, 0, &res)) < 0 ||
	    (rc = one_row(tx, q->r, res, bouquet_message, &q->out, "bouquet", "")) < 0)
		return rc;
	return fd_idem_done(tx, &q->idem, ((Frontdesk__V1__Bouquet *)q->out)->id, NULL, 0);
}

int linesd_create_bouquet(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__CreateBouquetRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc;
	if ((rc = write_begin(&r, call, req->tenant_id)) < 0 ||
	    (rc = check_name(&r, "name", req->name, 1, NAME_MAX_CHARS)) < 0 ||
	    (rc = check_ids(fd_call_err(call), "stream_ids", req->stream_ids, req->n_stream_ids, MAX_BOUQUET_STREAMS)) < 0)
		return rc;
	write_q_t q = { .r = &r };
	if ((rc = fd_idem_make(&r, "linesd", "CreateBouquet", req->idempotency_key, false, msg, &q.idem)) < 0)
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
	return one_row(tx, q->r, res, bouquet_message, &q->out, "bouquet", q->id);
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
	    (req->stream_ids && (rc = check_ids(fd_call_err(call), "stream_ids", req->stream_ids->values, req->stream_ids->n_values,
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

static int stream_create_tx(fd_tx_t *tx, void *arg)
{
	write_q_t *q = arg;
	const char *lock[] = { q->r->tenant_s };
	int rc = fd_tx_exec(tx, &SQL_STREAM_LOCK, lock, 0, NULL);
	if (rc < 0)
		return rc;
	int64_t id;
	PGresult *res;
	if ((rc = idem_begin(tx, &q->idem, &id)) == 1) {
		const char *params[] = { q->r->tenant_s, lines_i64(q->r, id) };
		if (!params[1])
			return TX_OOM(tx);
		if ((rc = fd_tx_exec(tx, &SQL_STREAM_GET, params, 0, &res)) < 0)
			return rc;
		return one_row(tx, q->r, res, stream_message, &q->out, "stream", params[1]);
	}
	if (rc < 0 || (rc = must_exist(tx, q->r, &SQL_MISSING_BOUQUETS, q->bouquets, "bouquet_ids", "bouquet")) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_STREAM_INSERT, q->params, 0, &res)) < 0 ||
	    (rc = one_row(tx, q->r, res, stream_message, &q->out, "stream", "")) < 0)
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
	return fd_idem_done(tx, &q->idem, sid, NULL, 0);
}

int linesd_create_stream(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__CreateStreamRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc;
	if ((rc = write_begin(&r, call, req->tenant_id)) < 0 ||
	    (rc = check_name(&r, "name", req->name, 1, NAME_MAX_CHARS)) < 0 || (rc = check_kind(fd_call_err(call), (int)req->kind, true)) < 0 ||
	    (rc = check_name(&r, "category", req->category, 0, CATEGORY_MAX_CHARS)) < 0 ||
	    (rc = check_number(fd_call_err(call), req->number)) < 0 ||
	    (rc = check_text(&r, "logo_url", req->logo_url, 0, LOGO_MAX_CHARS)) < 0 ||
	    (rc = check_name(&r, "epg_channel", req->epg_channel, 0, EPG_MAX_CHARS)) < 0 ||
	    (rc = check_ids(fd_call_err(call), "bouquet_ids", req->bouquet_ids, req->n_bouquet_ids, MAX_PACKAGE_BOUQUETS)) < 0)
		return rc;
	write_q_t q = { .r = &r };
	if ((rc = fd_idem_make(&r, "linesd", "CreateStream", req->idempotency_key, false, msg, &q.idem)) < 0)
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
	return rc < 0 ? rc : one_row(tx, q->r, res, stream_message, &q->out, "stream", q->id);
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
	    (rc = check_kind(fd_call_err(call), (int)req->kind, false)) < 0 ||
	    (req->category && (rc = check_name(&r, "category", req->category->value, 0, CATEGORY_MAX_CHARS)) < 0) ||
	    (req->number && (rc = check_number(fd_call_err(call), req->number->value)) < 0) ||
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
		if (!(q->out[q->n++] = q->build(q->r->arena, q->r->tenant, res, i, LIST_COL_ROW)))
			return TX_OOM(tx);
	if (n > q->limit)
		q->last_pos = col_i64(res, q->limit - 1, LIST_COL_POS);
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
	list_q_t q = { .sql = &SQL_LIST_PACKAGES, .build = package_message };
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
	list_q_t q = { .sql = &SQL_LIST_BOUQUETS, .build = bouquet_message };
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
	list_q_t q = { .sql = &SQL_LIST_STREAMS, .build = stream_message };
	int rc;
	if ((rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_CATALOG_READ, req->tenant_id, "lines")) < 0 ||
	    (rc = check_kind(fd_call_err(call), (int)req->kind, false)) < 0 ||
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
		q.must = &SQL_CAT_LINE_VISIBLE;
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

#define DEFAULT_TRIALS_PER_DAY 10

typedef struct settings_q {
	fd_tctx_t *r;
	const char *params[3];
	Frontdesk__V1__LinesSettings *out;
} settings_q_t;

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
		q->out->connection_limit_policy = enum_value(&CONNECTION_POLICY, DEFAULT_POLICY);
		q->out->trials_per_day = DEFAULT_TRIALS_PER_DAY;
		return 0;
	}
	q->out->connection_limit_policy = enum_value(&CONNECTION_POLICY, PQgetvalue(res, 0, SETTINGS_COL_POLICY));
	q->out->trials_per_day = (int32_t)col_i64(res, 0, SETTINGS_COL_TRIALS_PER_DAY);
	q->out->updated_at = col_i64(res, 0, SETTINGS_COL_UPDATED);
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
	const char *policy = NULL;   /* UNSPECIFIED: unchanged */
	if (req->connection_limit_policy &&
	    !(policy = enum_name(&CONNECTION_POLICY, req->connection_limit_policy)))
		return fd_call_fail(call, FD_EINVAL, "connection_limit_policy: REFUSE_NEW or END_OLDEST");
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
