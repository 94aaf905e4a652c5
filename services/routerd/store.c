/* store.c - every SQL statement of routerd and the reading of its rows
 * (store.h). Columns are read through the enum beside each column list;
 * parameters are built here from the callers' values. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "store.h"
#include "fd/pgarray.h"

/* ---- reading ---- */

/* A node row: the key, then X(column, expression) in the order of the
 * select list, so the enum and the list cannot drift apart. */
#define NODE_COLUMNS(X) \
	X(NAME, "n.name") \
	X(FORMATS, "n.formats") \
	X(URLS, "n.urls") \
	X(REGION, "n.region") \
	X(COUNTRY, "n.country") \
	X(FAILURE_DOMAIN, "n.failure_domain") \
	X(MAX_CONNECTIONS, "n.max_connections") \
	X(MAX_EGRESS_MBPS, "n.max_egress_mbps") \
	X(WEIGHT, "n.weight") \
	X(TAGS, "n.tags") \
	X(HIGH_WATER, "n.high_water") \
	X(LOW_WATER, "n.low_water") \
	X(STATE, "n.state") \
	X(STATE_REASON, "n.state_reason") \
	X(KEY_HASH, "encode(n.key_hash, 'hex')") \
	X(KEY_PREFIX, "n.key_prefix") \
	X(VERSION, "n.version") \
	X(CREATED_AT, "extract(epoch FROM n.created_at)::bigint") \
	X(UPDATED_AT, "extract(epoch FROM n.updated_at)::bigint") \
	X(HEARTBEAT_MS, "(extract(epoch FROM l.heartbeat_at) * 1000)::bigint") \
	X(CONNECTIONS, "l.connections") \
	X(EGRESS_MBPS, "l.egress_mbps") \
	X(CPU_PERCENT, "l.cpu_percent") \
	X(OVERLOADED, "l.overloaded") \
	X(STREAM_CLOSED_MS, "(extract(epoch FROM l.stream_closed_at) * 1000)::bigint")

#define COL_ENUM(name, expr) NC_##name,
#define COL_SQL(name, expr) ", " expr
enum node_col { NC_TENANT, NC_ID, NODE_COLUMNS(COL_ENUM) NC_COUNT };

#define SELECT_NODES \
	"SELECT n.tenant_id, n.id" NODE_COLUMNS(COL_SQL) \
	" FROM frontdesk.nodes n LEFT JOIN frontdesk.node_live l ON l.tenant_id = n.tenant_id AND l.node_id = n.id"

static const fd_sql_t SQL_TENANT_NODES = {
	"routerd_tenant_nodes", SELECT_NODES " WHERE n.tenant_id = $1", 1,
};
static const fd_sql_t SQL_NODE = {
	"routerd_node", SELECT_NODES " WHERE n.tenant_id = $1 AND n.id = $2", 2,
};

enum routing_col { RC_MAX_EGRESS_MBPS, RC_POLICY, RC_MIN_BITRATE_KBPS, RC_SHARED_POOL_ALLOWED };
static const fd_sql_t SQL_TENANT_ROUTING = {
	"routerd_tenant_routing",
	"SELECT max_egress_mbps, policy, min_bitrate_kbps, shared_pool_allowed"
	" FROM frontdesk.tenant_routing WHERE tenant_id = $1",
	1,
};
static const fd_sql_t SQL_TENANT_IDS = {
	"routerd_tenant_ids", "SELECT id FROM frontdesk.tenants ORDER BY id", 0,
	FD_SQL_PLATFORM,
};

static int64_t col_i64(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static double col_f64(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0 : strtod(PQgetvalue(res, row, col), NULL);
}

static bool col_bool(const PGresult *res, int row, int col)
{
	return PQgetvalue(res, row, col)[0] == 't';
}

static const char *col_text(const PGresult *res, int row, int col)
{
	return PQgetvalue(res, row, col);
}

static void i64_param(char buf[24], int64_t v)
{
	snprintf(buf, 24, "%" PRId64, v);
}

int store_read_nodes(fd_tx_t *tx, int64_t tenant, int64_t id, unsigned flags, store_nodes_t *out)
{
	char t[24], i[24];
	i64_param(t, tenant);
	i64_param(i, id);
	const char *params[] = { t, i };
	out->res = NULL;
	out->n = 0;
	int rc = fd_tx_exec(tx, id ? &SQL_NODE : &SQL_TENANT_NODES, params, flags, &out->res);
	if (rc < 0)
		return rc;
	out->n = PQntuples(out->res);
	return 0;
}

int64_t store_node_tenant(const store_nodes_t *r, int i)
{
	return col_i64(r->res, i, NC_TENANT);
}

int64_t store_node_id(const store_nodes_t *r, int i)
{
	return col_i64(r->res, i, NC_ID);
}

int64_t store_node_version(const store_nodes_t *r, int i)
{
	return col_i64(r->res, i, NC_VERSION);
}

rcfg_t *store_node_cfg(const store_nodes_t *r, int row, const regions_t *regions)
{
	const PGresult *res = r->res;
	fd_arena_t arena, *a = &arena;
	fd_arena_init(a, 1 << 20);
	rcfg_t *c = calloc(1, sizeof(*c));
	if (!c)
		goto fail;
	Frontdesk__V1__OutputFormat *formats;
	char **urls, **tags;
	size_t nf, nu, nt;
	if (pg_parse_formats(a, col_text(res, row, NC_FORMATS), &formats, &nf) < 0 ||
	    pg_parse_texts(a, col_text(res, row, NC_URLS), &urls, &nu) < 0 || nf != nu || nf > 3 ||
	    pg_parse_texts(a, col_text(res, row, NC_TAGS), &tags, &nt) < 0)
		goto fail;
	if (!(c->name = strdup(col_text(res, row, NC_NAME))))
		goto fail;
	for (size_t i = 0; i < nf; i++) {
		c->formats[i] = formats[i];
		if (!(c->urls[i] = strdup(urls[i])))
			goto fail;
		c->nurls++;
	}
	c->region = region_find(regions, col_text(res, row, NC_REGION));
	snprintf(c->country, sizeof(c->country), "%s", col_text(res, row, NC_COUNTRY));
	if (!(c->failure_domain = strdup(col_text(res, row, NC_FAILURE_DOMAIN))))
		goto fail;
	c->max_connections = (int32_t)col_i64(res, row, NC_MAX_CONNECTIONS);
	c->max_egress_mbps = col_i64(res, row, NC_MAX_EGRESS_MBPS);
	c->weight = (int32_t)col_i64(res, row, NC_WEIGHT);
	if (nt && !(c->tags = calloc(nt, sizeof(*c->tags))))
		goto fail;
	for (size_t i = 0; i < nt; i++) {
		if (!(c->tags[i] = strdup(tags[i])))
			goto fail;
		c->ntags++;
	}
	c->high_water = (int)col_i64(res, row, NC_HIGH_WATER);
	c->low_water = (int)col_i64(res, row, NC_LOW_WATER);
	c->state = (int)col_i64(res, row, NC_STATE);
	if (!(c->state_reason = strdup(col_text(res, row, NC_STATE_REASON))))
		goto fail;
	size_t hl;
	if (sodium_hex2bin(c->key_hash, sizeof(c->key_hash), col_text(res, row, NC_KEY_HASH), 64, NULL, &hl, NULL) != 0 ||
	    hl != sizeof(c->key_hash))
		goto fail;
	snprintf(c->key_prefix, sizeof(c->key_prefix), "%s", col_text(res, row, NC_KEY_PREFIX));
	c->version = col_i64(res, row, NC_VERSION);
	c->created_at = col_i64(res, row, NC_CREATED_AT);
	c->updated_at = col_i64(res, row, NC_UPDATED_AT);
	cfg_derive(c);
	fd_arena_free(a);
	return c;
fail:
	fd_arena_free(a);
	cfg_free(c);
	return NULL;
}

void store_node_live(const store_nodes_t *r, int i, rlive_t *out)
{
	const PGresult *res = r->res;
	*out = (rlive_t){
		.hb_ms = col_i64(res, i, NC_HEARTBEAT_MS),
		.closed_ms = col_i64(res, i, NC_STREAM_CLOSED_MS),
		.conn = (int32_t)col_i64(res, i, NC_CONNECTIONS),
		.egress = col_f64(res, i, NC_EGRESS_MBPS),
		.cpu = col_f64(res, i, NC_CPU_PERCENT),
		.overloaded = col_bool(res, i, NC_OVERLOADED),
	};
}

int store_read_tenant(fd_tx_t *tx, int64_t tenant, unsigned flags, rtenant_t *out)
{
	char t[24];
	i64_param(t, tenant);
	const char *params[] = { t };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_TENANT_ROUTING, params, flags, &res);
	if (rc < 0)
		return rc;
	*out = TENANT_DEFAULTS;
	out->tenant = tenant;
	if (PQntuples(res) == 1) {
		out->max_egress_mbps = col_i64(res, 0, RC_MAX_EGRESS_MBPS);
		out->policy = (int)col_i64(res, 0, RC_POLICY);
		out->min_bitrate_kbps = col_i64(res, 0, RC_MIN_BITRATE_KBPS);
		out->shared_pool_allowed = col_bool(res, 0, RC_SHARED_POOL_ALLOWED);
	}
	return 0;
}

int store_tenant_ids(fd_tx_t *tx, unsigned flags, int64_t **ids)
{
	PGresult *res;
	*ids = NULL;
	int rc = fd_tx_exec(tx, &SQL_TENANT_IDS, NULL, flags, &res);
	if (rc < 0)
		return rc;
	int n = PQntuples(res);
	if (!(*ids = calloc((size_t)n + 1, sizeof(**ids))))
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	for (int i = 0; i < n; i++)
		(*ids)[i] = col_i64(res, i, 0);
	(*ids)[n] = -1;
	return 0;
}

/* ---- writing nodes ---- */

static const fd_sql_t SQL_NODE_ID = {
	"routerd_node_id", "SELECT nextval(pg_get_serial_sequence('frontdesk.nodes', 'id'))", 0,
};

/* The parameters both writes of a node's settings share, $3..$14. */
enum { SP_NAME, SP_FORMATS, SP_URLS, SP_REGION, SP_COUNTRY, SP_FAILURE_DOMAIN, SP_MAX_CONNECTIONS,
	   SP_MAX_EGRESS_MBPS, SP_WEIGHT, SP_TAGS, SP_HIGH_WATER, SP_LOW_WATER, SP_COUNT };

static const fd_sql_t SQL_INSERT_NODE = {
	"routerd_insert_node",
	"WITH n AS (INSERT INTO frontdesk.nodes (tenant_id, id, name, formats, urls, region, country,"
	"  failure_domain, max_connections, max_egress_mbps, weight, tags, high_water, low_water,"
	"  key_hash, key_prefix)"
	" OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
	"  decode($15, 'hex'), $16) RETURNING id)"
	" SELECT pg_notify('frontdesk_nodes', 'node ' || $1 || ' ' || id) FROM n",
	16,
};

static const fd_sql_t SQL_UPDATE_NODE = {
	"routerd_update_node",
	"WITH n AS (UPDATE frontdesk.nodes SET name = $3, formats = $4, urls = $5, region = $6, country = $7,"
	"  failure_domain = $8, max_connections = $9, max_egress_mbps = $10, weight = $11, tags = $12,"
	"  high_water = $13, low_water = $14, key_hash = coalesce(decode($15, 'hex'), key_hash),"
	"  key_prefix = coalesce($16, key_prefix), version = version + 1, updated_at = now()"
	" WHERE tenant_id = $1 AND id = $2 AND version = $17 RETURNING id)"
	" SELECT pg_notify('frontdesk_nodes', 'node ' || $1 || ' ' || id) FROM n",
	17,
};

static const fd_sql_t SQL_SET_STATE = {
	"routerd_set_state",
	"WITH n AS (UPDATE frontdesk.nodes SET state = $3, state_reason = $4, version = version + 1,"
	"  updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING id)"
	" SELECT pg_notify('frontdesk_nodes', 'node ' || $1 || ' ' || id) FROM n",
	4,
};

/* The settings as statement parameters, into p (strings in a). */
static int settings_params(fd_arena_t *a, const node_settings_t *s, const char *p[SP_COUNT])
{
	Frontdesk__V1__OutputFormat f[3];
	char *u[3];
	for (size_t i = 0; i < s->nurls && i < 3; i++) {
		f[i] = s->urls[i]->format;
		u[i] = s->urls[i]->base_url;
	}
	size_t nu = s->nurls < 3 ? s->nurls : 3;
	p[SP_NAME] = s->name;
	p[SP_FORMATS] = pg_format_array(a, f, nu);
	p[SP_URLS] = pg_text_array(a, u, nu);
	p[SP_REGION] = s->region;
	p[SP_COUNTRY] = s->country;
	p[SP_FAILURE_DOMAIN] = s->failure_domain;
	p[SP_MAX_CONNECTIONS] = fd_arena_printf(a, "%" PRId64, s->max_connections);
	p[SP_MAX_EGRESS_MBPS] = fd_arena_printf(a, "%" PRId64, s->max_egress_mbps);
	p[SP_WEIGHT] = fd_arena_printf(a, "%" PRId64, s->weight);
	p[SP_TAGS] = pg_text_array(a, s->tags, s->ntags);
	p[SP_HIGH_WATER] = fd_arena_printf(a, "%" PRId64, s->high);
	p[SP_LOW_WATER] = fd_arena_printf(a, "%" PRId64, s->low);
	for (int i = 0; i < SP_COUNT; i++)
		if (!p[i])
			return -FD_EEXHAUSTED;
	return 0;
}

static int name_taken(fd_tx_t *tx, const node_settings_t *s)
{
	return fd_err_set(fd_tx_err(tx), FD_EEXISTS, "name: a node named \"%s\" already exists", s->name);
}

int store_next_node_id(fd_tx_t *tx, int64_t *id)
{
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_NODE_ID, NULL, 0, &res);
	if (rc < 0)
		return rc;
	*id = col_i64(res, 0, 0);
	return 0;
}

int store_insert_node(fd_tx_t *tx, fd_arena_t *a, int64_t tenant, int64_t id, const node_settings_t *s,
                      const key_row_t *key, unsigned flags)
{
	char t[24], i[24], hash_hex[65];
	i64_param(t, tenant);
	i64_param(i, id);
	sodium_bin2hex(hash_hex, sizeof(hash_hex), key->hash, sizeof(key->hash));
	const char *p[16] = { t, i };
	if (settings_params(a, s, p + 2) < 0)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	p[14] = hash_hex;
	p[15] = key->prefix;
	int rc = fd_tx_exec(tx, &SQL_INSERT_NODE, p, flags, NULL);
	return rc == -FD_EEXISTS ? name_taken(tx, s) : rc;
}

int store_update_node(fd_tx_t *tx, fd_arena_t *a, int64_t tenant, int64_t id, int64_t version,
                      const node_settings_t *s, const key_row_t *key, unsigned flags)
{
	char t[24], i[24], v[24], hash_hex[65];
	i64_param(t, tenant);
	i64_param(i, id);
	i64_param(v, version);
	if (key)
		sodium_bin2hex(hash_hex, sizeof(hash_hex), key->hash, sizeof(key->hash));
	const char *p[17] = { t, i };
	if (settings_params(a, s, p + 2) < 0)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	p[14] = key ? hash_hex : NULL;
	p[15] = key ? key->prefix : NULL;
	p[16] = v;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_UPDATE_NODE, p, flags, &res);
	if (rc == -FD_EEXISTS)
		return name_taken(tx, s);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 0)
		return fd_err_set(fd_tx_err(tx), FD_EABORTED, "node %" PRId64 " changed meanwhile; try again", id);
	return 0;
}

int store_set_state(fd_tx_t *tx, int64_t tenant, int64_t id, int state, const char *reason, unsigned flags)
{
	char t[24], i[24], st[8];
	i64_param(t, tenant);
	i64_param(i, id);
	snprintf(st, sizeof(st), "%d", state);
	const char *p[] = { t, i, st, reason };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_SET_STATE, p, flags, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 0)
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "node %" PRId64 " not found", id);
	return 0;
}

/* ---- tenants' routing settings ---- */

/* NULL parameters keep the stored value (or the default, for a new row). */
static const fd_sql_t SQL_SET_ROUTING = {
	"routerd_set_routing",
	"WITH s AS (INSERT INTO frontdesk.tenant_routing AS t (tenant_id, max_egress_mbps, policy,"
	"  min_bitrate_kbps, shared_pool_allowed)"
	" VALUES ($1, coalesce($2::bigint, 0), coalesce($3::smallint, 1), coalesce($4::bigint, 1000),"
	"  coalesce($5::boolean, true))"
	" ON CONFLICT (tenant_id) DO UPDATE SET"
	"  max_egress_mbps = coalesce($2::bigint, t.max_egress_mbps), policy = coalesce($3::smallint, t.policy),"
	"  min_bitrate_kbps = coalesce($4::bigint, t.min_bitrate_kbps),"
	"  shared_pool_allowed = coalesce($5::boolean, t.shared_pool_allowed), updated_at = now()"
	" RETURNING tenant_id)"
	" SELECT pg_notify('frontdesk_nodes', 'tenant ' || tenant_id) FROM s",
	5,
};

int store_set_routing(fd_tx_t *tx, int64_t tenant, const routing_change_t *c, unsigned flags)
{
	char t[24], cap[24], policy[8], min[24];
	i64_param(t, tenant);
	i64_param(cap, c->max_egress_mbps);
	snprintf(policy, sizeof(policy), "%d", c->policy);
	i64_param(min, c->min_bitrate_kbps);
	const char *p[] = {
		t, c->max_egress_mbps >= 0 ? cap : NULL, c->policy ? policy : NULL, c->min_bitrate_kbps ? min : NULL,
		c->shared_pool_allowed < 0 ? NULL : c->shared_pool_allowed ? "true" : "false",
	};
	return fd_tx_exec(tx, &SQL_SET_ROUTING, p, flags, NULL);
}

/* ---- replicas ---- */

static const fd_sql_t SQL_NOTIFY = { "routerd_notify", "SELECT pg_notify('frontdesk_nodes', $1)", 1, FD_SQL_PLATFORM };

int store_notify(fd_tx_t *tx, const char *payload, unsigned flags)
{
	const char *p[] = { payload };
	return fd_tx_exec(tx, &SQL_NOTIFY, p, flags, NULL);
}

static const fd_sql_t SQL_PERSIST = {
	"routerd_persist",
	"INSERT INTO frontdesk.node_live AS l (tenant_id, node_id, heartbeat_at, connections, egress_mbps,"
	"  cpu_percent, overloaded, stream_closed_at)"
	" SELECT $1, u.id, to_timestamp(u.hb / 1000.0), u.conn, u.egress, u.cpu, u.over,"
	"  CASE WHEN u.closed > 0 THEN to_timestamp(u.closed / 1000.0) END"
	" FROM unnest($2::bigint[], $3::bigint[], $4::int[], $5::float8[], $6::float8[], $7::boolean[], $8::bigint[])"
	"  AS u(id, hb, conn, egress, cpu, over, closed)"
	" WHERE u.hb > 0"
	" ON CONFLICT (tenant_id, node_id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at,"
	"  connections = EXCLUDED.connections, egress_mbps = EXCLUDED.egress_mbps,"
	"  cpu_percent = EXCLUDED.cpu_percent, overloaded = EXCLUDED.overloaded,"
	"  stream_closed_at = EXCLUDED.stream_closed_at"
	" WHERE l.heartbeat_at <= EXCLUDED.heartbeat_at",
	8,
};

int store_persist_live(fd_tx_t *tx, fd_arena_t *a, int64_t tenant, const store_live_t *v, size_t n, unsigned flags)
{
	size_t cap = n ? n : 1;
	int64_t *id = fd_arena_alloc(a, sizeof(int64_t) * cap), *hb = fd_arena_alloc(a, sizeof(int64_t) * cap),
	        *conn = fd_arena_alloc(a, sizeof(int64_t) * cap), *closed = fd_arena_alloc(a, sizeof(int64_t) * cap);
	char **egress = fd_arena_alloc(a, sizeof(char *) * cap), **cpu = fd_arena_alloc(a, sizeof(char *) * cap),
	     **over = fd_arena_alloc(a, sizeof(char *) * cap);
	bool ok = id && hb && conn && closed && egress && cpu && over;
	for (size_t k = 0; ok && k < n; k++) {
		id[k] = v[k].id;
		hb[k] = v[k].l.hb_ms;
		conn[k] = v[k].l.conn;
		closed[k] = v[k].l.closed_ms;
		egress[k] = fd_arena_printf(a, "%.3f", v[k].l.egress);
		cpu[k] = fd_arena_printf(a, "%.1f", v[k].l.cpu);
		over[k] = v[k].l.overloaded ? "t" : "f";
		ok = egress[k] && cpu[k];
	}
	const char *p[8] = { NULL };
	if (ok) {
		p[0] = fd_arena_printf(a, "%" PRId64, tenant);
		p[1] = pg_int_array(a, id, n);
		p[2] = pg_int_array(a, hb, n);
		p[3] = pg_int_array(a, conn, n);
		p[4] = pg_text_array(a, egress, n);
		p[5] = pg_text_array(a, cpu, n);
		p[6] = pg_text_array(a, over, n);
		p[7] = pg_int_array(a, closed, n);
	}
	for (int i = 0; ok && i < 8; i++)
		ok = p[i] != NULL;
	if (!ok)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	return fd_tx_exec(tx, &SQL_PERSIST, p, flags, NULL);
}
