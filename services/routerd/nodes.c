/* nodes.c - the node table and the methods that manage nodes and tenants'
 * routing settings (see routerd.h).
 *
 * Writes go to PostgreSQL first, in the tenant's transaction, with a NOTIFY
 * of the change and its audit row (fd/audit.h) in the same transaction
 * (the writing replica alone audits it); then the writing replica reads the
 * row back into its table, and every other replica does the same when the
 * NOTIFY reaches it (sync.c). A row is applied only when its version is
 * newer than the table's, so the echo of one's own NOTIFY changes nothing. */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "routerd.h"
#include "fd/audit.h"
#include "fd/log.h"
#include "fd/pgarray.h"
#include "fd/tenant.h"
#include "fd/wire.h"

#define MAX_NAME 100
#define MAX_TAGS 32
#define MAX_TAG 64
#define MAX_URL 255
#define MAX_DOMAIN 64
#define MAX_REASON 200
#define MAX_CAPACITY 10000000
#define MAX_WEIGHT 10000
#define DEFAULT_WEIGHT 100
#define DEFAULT_HIGH 90
#define DEFAULT_LOW 75

/* ---- regions ---- */

int regions_parse(routerd_t *rd, const char *spec, fd_err_t *err)
{
	rd->nregions = 0;
	const char *p = spec;
	while (*p) {
		const char *end = p + strcspn(p, ";");
		const char *eq = memchr(p, '=', (size_t)(end - p));
		size_t nl = eq ? (size_t)(eq - p) : 0;
		if (!eq || nl == 0 || nl >= sizeof(rd->regions[0].name))
			return fd_err_set(err, FD_EINVAL, "FRONTDESK_ROUTERD_REGIONS: \"name=CC CC;...\" with names of 1..31 characters");
		if (rd->nregions == MAX_REGIONS)
			return fd_err_set(err, FD_EINVAL, "FRONTDESK_ROUTERD_REGIONS: at most %d regions", MAX_REGIONS);
		region_t *r = &rd->regions[rd->nregions];
		memset(r, 0, sizeof(*r));
		memcpy(r->name, p, nl);
		for (size_t i = 0; i < nl; i++)
			if (!(islower((unsigned char)p[i]) || isdigit((unsigned char)p[i]) || p[i] == '-'))
				return fd_err_set(err, FD_EINVAL, "FRONTDESK_ROUTERD_REGIONS: region %s: a-z, 0-9 and -", r->name);
		if (region_find(rd, r->name) >= 0)
			return fd_err_set(err, FD_EINVAL, "FRONTDESK_ROUTERD_REGIONS: region %s listed twice", r->name);
		for (const char *c = eq + 1; c < end;) {
			while (c < end && *c == ' ')
				c++;
			if (c == end)
				break;
			if (end - c < 2 || !isupper((unsigned char)c[0]) || !isupper((unsigned char)c[1]) ||
			    (c + 2 < end && c[2] != ' ') || r->ncountries == 256)
				return fd_err_set(err, FD_EINVAL, "FRONTDESK_ROUTERD_REGIONS: region %s: countries are "
				                  "ISO 3166-1 alpha-2 codes separated by spaces", r->name);
			memcpy(r->countries[r->ncountries++], c, 2);
			c += 2;
		}
		rd->nregions++;
		p = *end ? end + 1 : end;
	}
	if (rd->nregions == 0)
		return fd_err_set(err, FD_EINVAL, "FRONTDESK_ROUTERD_REGIONS: at least one region");
	/* The names for error messages, as many as fit with room for the tail. */
	char *l = rd->region_list;
	size_t used = 0, room = sizeof(rd->region_list) - sizeof(", ... (64 in all)");
	for (int i = 0; i < rd->nregions; i++) {
		size_t nl = strlen(rd->regions[i].name) + (i ? 2 : 0);
		if (used + nl >= room) {
			snprintf(l + used, sizeof(rd->region_list) - used, "%s... (%d in all)", i ? ", " : "", rd->nregions);
			return 0;
		}
		used += (size_t)snprintf(l + used, sizeof(rd->region_list) - used, "%s%s", i ? ", " : "",
		                         rd->regions[i].name);
	}
	return 0;
}

int region_unknown(fd_call_t *call, const routerd_t *rd, const char *field, const char *name)
{
	return fd_call_fail(call, FD_EINVAL, "%s: unknown region \"%.32s\" (regions: %s)", field, name, rd->region_list);
}

int region_find(const routerd_t *rd, const char *name)
{
	for (int i = 0; i < rd->nregions; i++)
		if (strcmp(rd->regions[i].name, name) == 0)
			return i;
	return -1;
}

int region_of_country(const routerd_t *rd, const char *cc)
{
	if (!cc[0])
		return -1;
	for (int i = 0; i < rd->nregions; i++)
		for (int j = 0; j < rd->regions[i].ncountries; j++)
			if (memcmp(rd->regions[i].countries[j], cc, 2) == 0)
				return i;
	return -1;
}

/* ---- the table ---- */

static void cfg_free(rcfg_t *c)
{
	if (!c)
		return;
	free(c->name);
	for (int i = 0; i < c->nurls; i++)
		free(c->urls[i]);
	free(c->failure_domain);
	for (int i = 0; i < c->ntags; i++)
		free(c->tags[i]);
	free(c->tags);
	free(c->state_reason);
	free(c);
}

int table_init(rtable_t *t)
{
	memset(t, 0, sizeof(*t));
	t->id_cap = 1024;
	if (!(t->by_id = calloc(t->id_cap, sizeof(*t->by_id))))
		return -FD_EEXHAUSTED;
	pthread_rwlock_init(&t->lock, NULL);
	return 0;
}

void table_free(rtable_t *t)
{
	for (size_t i = 0; i < t->n; i++) {
		cfg_free(t->nodes[i]->cfg);
		pthread_mutex_destroy(&t->nodes[i]->mu);
		free(t->nodes[i]);
	}
	free(t->nodes);
	free(t->by_id);
	free(t->tenants);
	pthread_rwlock_destroy(&t->lock);
}

static size_t id_slot(int64_t id, size_t cap)
{
	return (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull >> 20) & (cap - 1);
}

rnode_t *table_get(rtable_t *t, int64_t id)
{
	for (size_t i = id_slot(id, t->id_cap);; i = (i + 1) & (t->id_cap - 1)) {
		rnode_t *n = t->by_id[i];
		if (!n || n->id == id)
			return n;
	}
}

static int id_put(rnode_t **slots, size_t cap, rnode_t *n)
{
	size_t i = id_slot(n->id, cap);
	while (slots[i])
		i = (i + 1) & (cap - 1);
	slots[i] = n;
	return 0;
}

static bool before(const rnode_t *a, int64_t tenant, int64_t id)
{
	return a->tenant < tenant || (a->tenant == tenant && a->id < id);
}

/* Adds n (write lock held). */
static int table_add(rtable_t *t, rnode_t *n)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		rnode_t **v = realloc(t->nodes, cap * sizeof(*v));
		if (!v)
			return -FD_EEXHAUSTED;
		t->nodes = v;
		t->cap = cap;
	}
	if ((t->n + 1) * 2 > t->id_cap) {
		size_t cap = t->id_cap * 2;
		rnode_t **s = calloc(cap, sizeof(*s));
		if (!s)
			return -FD_EEXHAUSTED;
		for (size_t i = 0; i < t->n; i++)
			id_put(s, cap, t->nodes[i]);
		free(t->by_id);
		t->by_id = s;
		t->id_cap = cap;
	}
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (before(t->nodes[mid], n->tenant, n->id))
			lo = mid + 1;
		else
			hi = mid;
	}
	memmove(&t->nodes[lo + 1], &t->nodes[lo], (t->n - lo) * sizeof(*t->nodes));
	t->nodes[lo] = n;
	t->n++;
	id_put(t->by_id, t->id_cap, n);
	return 0;
}

void table_range(rtable_t *t, int64_t tenant, size_t *lo, size_t *hi)
{
	size_t a = 0, b = t->n;
	while (a < b) {
		size_t mid = (a + b) / 2;
		if (before(t->nodes[mid], tenant, INT64_MIN))
			a = mid + 1;
		else
			b = mid;
	}
	*lo = a;
	b = t->n;
	while (a < b) {
		size_t mid = (a + b) / 2;
		if (t->nodes[mid]->tenant <= tenant)
			a = mid + 1;
		else
			b = mid;
	}
	*hi = a;
}

static const rtenant_t DEFAULT_TENANT = {
	.max_egress_mbps = 0,
	.policy = FRONTDESK__V1__BANDWIDTH_POLICY__BANDWIDTH_POLICY_REFUSE,
	.min_bitrate_kbps = 1000,
	.shared_pool_allowed = true,
};

static rtenant_t *tenant_slot(rtable_t *t, int64_t tenant, size_t *pos)
{
	size_t lo = 0, hi = t->ntenants;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (t->tenants[mid].tenant < tenant)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return lo < t->ntenants && t->tenants[lo].tenant == tenant ? &t->tenants[lo] : NULL;
}

const rtenant_t *table_tenant(rtable_t *t, int64_t tenant)
{
	size_t pos;
	const rtenant_t *r = tenant_slot(t, tenant, &pos);
	return r ? r : &DEFAULT_TENANT;
}

/* Stores a tenant's settings (write lock held). */
static int table_set_tenant(rtable_t *t, const rtenant_t *v)
{
	size_t pos;
	rtenant_t *r = tenant_slot(t, v->tenant, &pos);
	if (r) {
		*r = *v;
		return 0;
	}
	if (t->ntenants == t->captenants) {
		size_t cap = t->captenants ? t->captenants * 2 : 64;
		rtenant_t *nv = realloc(t->tenants, cap * sizeof(*nv));
		if (!nv)
			return -FD_EEXHAUSTED;
		t->tenants = nv;
		t->captenants = cap;
	}
	memmove(&t->tenants[pos + 1], &t->tenants[pos], (t->ntenants - pos) * sizeof(*t->tenants));
	t->tenants[pos] = *v;
	t->ntenants++;
	return 0;
}

/* ---- reading nodes from the database ---- */

#define NODE_COLUMNS \
	"n.tenant_id, n.id, n.name, n.formats, n.urls, n.region, n.country, n.failure_domain," \
	" n.max_connections, n.max_egress_mbps, n.weight, n.tags, n.high_water, n.low_water, n.state," \
	" n.state_reason, encode(n.key_hash, 'hex'), n.key_prefix, n.version," \
	" extract(epoch FROM n.created_at)::bigint, extract(epoch FROM n.updated_at)::bigint," \
	" (extract(epoch FROM l.heartbeat_at) * 1000)::bigint, l.connections, l.egress_mbps, l.cpu_percent," \
	" l.overloaded, (extract(epoch FROM l.stream_closed_at) * 1000)::bigint" \
	" FROM frontdesk.nodes n LEFT JOIN frontdesk.node_live l ON l.tenant_id = n.tenant_id AND l.node_id = n.id"

static const fd_sql_t SQL_TENANT_NODES = {
	"routerd_tenant_nodes", "SELECT " NODE_COLUMNS " WHERE n.tenant_id = $1", 1,
};
static const fd_sql_t SQL_NODE = {
	"routerd_node", "SELECT " NODE_COLUMNS " WHERE n.tenant_id = $1 AND n.id = $2", 2,
};
static const fd_sql_t SQL_TENANT_ROUTING = {
	"routerd_tenant_routing",
	"SELECT max_egress_mbps, policy, min_bitrate_kbps, shared_pool_allowed"
	" FROM frontdesk.tenant_routing WHERE tenant_id = $1",
	1,
};
static const fd_sql_t SQL_TENANT_IDS = {
	"routerd_tenant_ids", "SELECT id FROM frontdesk.tenants ORDER BY id", 0,
};

static int64_t col_i64(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* A node's settings from a row of NODE_COLUMNS (malloc'd); NULL when out of
 * memory or unreadable. */
static rcfg_t *cfg_of_row(routerd_t *rd, const PGresult *res, int row)
{
	fd_arena_t arena, *a = &arena;
	fd_arena_init(a, 1 << 20);
	rcfg_t *c = calloc(1, sizeof(*c));
	if (!c)
		goto fail;
	Frontdesk__V1__OutputFormat *formats;
	char **urls, **tags;
	size_t nf, nu, nt;
	if (pg_parse_formats(a, PQgetvalue(res, row, 3), &formats, &nf) < 0 ||
	    pg_parse_texts(a, PQgetvalue(res, row, 4), &urls, &nu) < 0 || nf != nu || nf > 3 ||
	    pg_parse_texts(a, PQgetvalue(res, row, 11), &tags, &nt) < 0)
		goto fail;
	if (!(c->name = strdup(PQgetvalue(res, row, 2))))
		goto fail;
	for (size_t i = 0; i < nf; i++) {
		c->formats[i] = formats[i];
		if (!(c->urls[i] = strdup(urls[i])))
			goto fail;
		c->nurls++;
	}
	c->region = region_find(rd, PQgetvalue(res, row, 5));
	snprintf(c->country, sizeof(c->country), "%s", PQgetvalue(res, row, 6));
	if (!(c->failure_domain = strdup(PQgetvalue(res, row, 7))))
		goto fail;
	/* FNV-1a; 0 is kept for "a domain of its own". */
	c->domain = 0;
	if (c->failure_domain[0]) {
		c->domain = 1469598103934665603ull;
		for (const char *p = c->failure_domain; *p; p++)
			c->domain = (c->domain ^ (unsigned char)*p) * 1099511628211ull;
		c->domain |= 1;
	}
	c->max_connections = (int32_t)col_i64(res, row, 8);
	c->max_egress_mbps = col_i64(res, row, 9);
	c->weight = (int32_t)col_i64(res, row, 10);
	if (nt && !(c->tags = calloc(nt, sizeof(*c->tags))))
		goto fail;
	for (size_t i = 0; i < nt; i++) {
		if (!(c->tags[i] = strdup(tags[i])))
			goto fail;
		c->ntags++;
	}
	c->high_water = (int)col_i64(res, row, 12);
	c->low_water = (int)col_i64(res, row, 13);
	c->state = (int)col_i64(res, row, 14);
	if (!(c->state_reason = strdup(PQgetvalue(res, row, 15))))
		goto fail;
	size_t hl;
	if (sodium_hex2bin(c->key_hash, sizeof(c->key_hash), PQgetvalue(res, row, 16), 64, NULL, &hl, NULL) != 0 ||
	    hl != sizeof(c->key_hash))
		goto fail;
	snprintf(c->key_prefix, sizeof(c->key_prefix), "%s", PQgetvalue(res, row, 17));
	c->version = col_i64(res, row, 18);
	c->created_at = col_i64(res, row, 19);
	c->updated_at = col_i64(res, row, 20);
	fd_arena_free(a);
	return c;
fail:
	fd_arena_free(a);
	cfg_free(c);
	return NULL;
}

/* The event a settings change makes, comparing old and new. */
static int change_event(const rcfg_t *old, const rcfg_t *c)
{
	if (!old)
		return EVT(REGISTERED);
	if (old->state != c->state)
		return c->state == STATE_DRAINING ? EVT(DRAINING) : c->state == STATE_DISABLED ? EVT(DISABLED) : EVT(ACTIVATED);
	return EVT(UPDATED);
}

/* Applies one row: a new node, or newer settings (write lock held). */
static int apply_row(routerd_t *rd, const PGresult *res, int row)
{
	int64_t tenant = col_i64(res, row, 0), id = col_i64(res, row, 1);
	rnode_t *n = table_get(&rd->tbl, id);
	if (n && n->tenant != tenant)
		return 0;   /* ids are global: cannot happen */
	if (n && n->cfg->version >= col_i64(res, row, 18))
		return 0;
	rcfg_t *c = cfg_of_row(rd, res, row);
	if (!c)
		return -FD_EEXHAUSTED;
	bool fresh = !n;
	if (fresh) {
		if (!(n = calloc(1, sizeof(*n)))) {
			cfg_free(c);
			return -FD_EEXHAUSTED;
		}
		n->tenant = tenant;
		n->id = id;
		pthread_mutex_init(&n->mu, NULL);
		n->emitted = HEALTH_DOWN;
		int rc = table_add(&rd->tbl, n);
		if (rc < 0) {
			pthread_mutex_destroy(&n->mu);
			free(n);
			cfg_free(c);
			return rc;
		}
	}
	rcfg_t *old = fresh ? NULL : n->cfg;
	n->cfg = c;
	n->inv_conn = 1.0 / c->max_connections;
	n->inv_egress = 1.0 / (double)c->max_egress_mbps;
	n->domain = c->domain;
	n->weight = c->weight;
	n->region = (int16_t)c->region;
	n->state = (int8_t)c->state;
	memset(n->url_of, -1, sizeof(n->url_of));
	n->url_of[0] = c->nurls > 0 ? 0 : -1;
	for (int i = 0; i < c->nurls; i++)
		if (c->formats[i] > 0 && c->formats[i] < 4 && n->url_of[c->formats[i]] < 0)
			n->url_of[c->formats[i]] = (int8_t)i;
	/* The last persisted heartbeat, when newer than what this replica has. */
	int64_t hb = col_i64(res, row, 21);
	pthread_mutex_lock(&n->mu);
	if (hb > atomic_load(&n->hb_ms)) {
		atomic_store(&n->conn, (int32_t)col_i64(res, row, 22));
		atomic_store(&n->egress, strtod(PQgetvalue(res, row, 23), NULL));
		atomic_store(&n->cpu, strtod(PQgetvalue(res, row, 24), NULL));
		atomic_store(&n->overloaded, PQgetvalue(res, row, 25)[0] == 't');
		atomic_store(&n->hb_ms, hb);
	}
	int64_t closed = col_i64(res, row, 26);
	if (closed > atomic_load(&n->closed_ms))
		atomic_store(&n->closed_ms, closed);
	pthread_mutex_unlock(&n->mu);
	sync_emit(rd, n, change_event(old, c), c->state != (old ? old->state : STATE_ACTIVE) ? c->state_reason : "");
	cfg_free(old);
	return 0;
}

struct load_q {
	routerd_t *rd;
	int64_t tenant, id;           /* id 0: every node of the tenant */
	bool found;
};

static int load_tx(fd_tx_t *tx, void *arg)
{
	struct load_q *q = arg;
	char t[24], id[24];
	snprintf(t, sizeof(t), "%" PRId64, q->tenant);
	snprintf(id, sizeof(id), "%" PRId64, q->id);
	const char *params[] = { t, id };
	PGresult *nodes, *settings;
	int rc = fd_tx_exec(tx, q->id ? &SQL_NODE : &SQL_TENANT_NODES, params, 0, &nodes);
	if (rc < 0)
		return rc;
	if ((rc = fd_tx_exec(tx, &SQL_TENANT_ROUTING, params, FD_TX_LAST, &settings)) < 0)
		return rc;
	rtenant_t s = DEFAULT_TENANT;
	s.tenant = q->tenant;
	if (PQntuples(settings) == 1) {
		s.max_egress_mbps = col_i64(settings, 0, 0);
		s.policy = (int)col_i64(settings, 0, 1);
		s.min_bitrate_kbps = col_i64(settings, 0, 2);
		s.shared_pool_allowed = PQgetvalue(settings, 0, 3)[0] == 't';
	}
	pthread_rwlock_wrlock(&q->rd->tbl.lock);
	rc = table_set_tenant(&q->rd->tbl, &s);
	for (int i = 0; rc == 0 && i < PQntuples(nodes); i++)
		rc = apply_row(q->rd, nodes, i);
	pthread_rwlock_unlock(&q->rd->tbl.lock);
	q->found = PQntuples(nodes) > 0;
	return rc < 0 ? fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory loading nodes") : 0;
}

static int load(routerd_t *rd, int64_t tenant, int64_t id, bool *found, fd_err_t *err)
{
	struct load_q q = { rd, tenant, id, false };
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_real_ms() + 10000, .read_only = true };
	int rc = fd_tenant_run_opts(rd->db, &o, load_tx, &q, err);
	if (found)
		*found = q.found;
	return rc;
}

static int tenant_ids_tx(fd_tx_t *tx, void *arg)
{
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_TENANT_IDS, NULL, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	int64_t **ids = arg;
	int n = PQntuples(res);
	if (!(*ids = calloc((size_t)n + 1, sizeof(**ids))))
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	for (int i = 0; i < n; i++)
		(*ids)[i] = col_i64(res, i, 0);
	(*ids)[n] = -1;
	return 0;
}

int nodes_load_all(routerd_t *rd, fd_err_t *err)
{
	int64_t *ids = NULL;
	fd_tx_opts_t o = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_real_ms() + 10000, .read_only = true };
	int rc = fd_db_run_opts(rd->db, &o, tenant_ids_tx, &ids, err);
	for (size_t i = 0; rc == 0 && ids[i] >= 0; i++)
		rc = load(rd, ids[i], 0, NULL, err);
	free(ids);
	return rc;
}

int nodes_reload(routerd_t *rd, int64_t tenant, int64_t id, fd_err_t *err)
{
	bool found;
	int rc = load(rd, tenant, id, &found, err);
	if (rc == 0 && !found)
		return fd_err_set(err, FD_ENOTFOUND, "node %" PRId64 " not found", id);
	return rc;
}

int tenant_reload(routerd_t *rd, int64_t tenant, fd_err_t *err)
{
	return load(rd, tenant, -1, NULL, err);   /* id -1: no node matches */
}

/* ---- messages ---- */

Frontdesk__V1__NodeLoad *load_message(fd_arena_t *a, const rnode_t *n)
{
	if (!atomic_load(&n->hb_ms))
		return NULL;
	Frontdesk__V1__NodeLoad *l = fd_arena_zalloc(a, sizeof(*l));
	if (!l)
		return NULL;
	frontdesk__v1__node_load__init(l);
	l->active_connections = atomic_load(&n->conn);
	l->egress_mbps = atomic_load(&n->egress);
	l->cpu_percent = atomic_load(&n->cpu);
	l->measured_at = atomic_load(&n->hb_ms) / 1000;
	return l;
}

Frontdesk__V1__Node *node_message(routerd_t *rd, fd_arena_t *a, const rnode_t *n, bool owner, int64_t now)
{
	const rcfg_t *c = n->cfg;
	Frontdesk__V1__Node *m = fd_arena_zalloc(a, sizeof(*m));
	Frontdesk__V1__NodeUrl **urls = fd_arena_zalloc(a, sizeof(*urls) * 3);
	if (!m || !urls)
		return NULL;
	frontdesk__v1__node__init(m);
	m->id = n->id;
	m->tenant_id = n->tenant;
	m->name = c->name;
	for (int i = 0; i < c->nurls; i++) {
		if (!(urls[i] = fd_arena_zalloc(a, sizeof(*urls[i]))))
			return NULL;
		frontdesk__v1__node_url__init(urls[i]);
		urls[i]->format = c->formats[i];
		urls[i]->base_url = c->urls[i];
	}
	m->urls = urls;
	m->n_urls = (size_t)c->nurls;
	m->region = c->region >= 0 ? rd->regions[c->region].name : "";
	m->country = (char *)c->country;
	m->failure_domain = c->failure_domain;
	m->max_connections = c->max_connections;
	m->max_egress_mbps = c->max_egress_mbps;
	m->weight = c->weight;
	m->tags = c->tags;
	m->n_tags = (size_t)c->ntags;
	m->high_water_percent = c->high_water;
	m->low_water_percent = c->low_water;
	m->state = c->state;
	m->health = node_health(rd, n, now);
	m->load = load_message(a, n);
	m->last_heartbeat_at = atomic_load(&n->hb_ms) / 1000;
	m->key_prefix = owner ? (char *)c->key_prefix : "";
	m->created_at = c->created_at;
	m->updated_at = c->updated_at;
	return m;
}

/* ---- who sees what ---- */

bool scope_has(const scope_t *s, const rnode_t *n)
{
	return s->all || n->tenant == s->tenant || (s->shared && n->tenant == FD_PLATFORM_TENANT);
}

static bool sees_all(const fd_caller_t *c)
{
	return c->role == FD_ROLE_PLATFORM_ADMIN || c->role == FD_ROLE_SERVICE;
}

int scope_of(fd_call_t *call, const fd_caller_t *c, int64_t tenant_id, bool include_shared, bool all, scope_t *out)
{
	memset(out, 0, sizeof(*out));
	if (all) {
		if (!sees_all(c))
			return fd_call_fail(call, FD_EPERM, "all_tenants: platform admins and services only");
		out->all = true;
		return 0;
	}
	int rc = fd_call_tenant(call, c, tenant_id, &out->tenant);
	if (rc < 0)
		return rc;
	routerd_t *rd = routerd_of(call);
	pthread_rwlock_rdlock(&rd->tbl.lock);
	out->shared = include_shared && table_tenant(&rd->tbl, out->tenant)->shared_pool_allowed;
	pthread_rwlock_unlock(&rd->tbl.lock);
	return 0;
}

/* ---- the request prelude ---- */

typedef struct rreq {
	fd_call_t *call;
	routerd_t *rd;
	fd_arena_t *arena;
	fd_caller_t c;
	int64_t tenant;
	char tenant_s[24];
} rreq_t;

static int rreq_begin(rreq_t *r, fd_call_t *call, fd_scope_t scope, int64_t tenant_id)
{
	memset(r, 0, sizeof(*r));
	r->call = call;
	r->rd = routerd_of(call);
	r->arena = fd_call_arena(call);
	int rc = fd_call_caller(call, &r->c);
	if (rc < 0 || (rc = fd_caller_need(&r->c, scope, fd_call_err(call))) < 0 ||
	    (rc = fd_call_tenant(call, &r->c, tenant_id, &r->tenant)) < 0)
		return rc;
	snprintf(r->tenant_s, sizeof(r->tenant_s), "%" PRId64, r->tenant);
	return 0;
}

static int rreq_run(rreq_t *r, fd_tx_fn fn, void *arg)
{
	fd_tx_opts_t o = { .tenant_id = r->tenant, .deadline_ms = fd_call_deadline_ms(r->call) };
	return fd_tenant_run_opts(r->rd->db, &o, fn, arg, fd_call_err(r->call));
}

/* Records r's action on target ("node:12", "tenant:3") in the audit trail of
 * r's tenant, inside the transaction that does it (so the row exists iff the
 * change committed, and only the replica that made the change writes it:
 * the others only read the change back after its NOTIFY). detail: NULL or
 * key, value, ..., NULL; never a key or secret. */
static int audit(fd_tx_t *tx, rreq_t *r, const char *action, const char *target, const char *const *detail,
                 unsigned flags)
{
	const char *source = fd_audit_source(r->arena, fd_call_peer(r->call));
	if (!source || !target)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	fd_audit_t ev = {
		.actor = &r->c, .action = action, .target = target, .source = source,
		.outcome = FD_AUDIT_OK, .detail = detail,
	};
	return fd_audit_add(tx, r->arena, &ev, flags);
}

static const char *node_target(rreq_t *r, int64_t id)
{
	return fd_arena_printf(r->arena, "node:%" PRId64, id);
}

/* The node r's tenant may see, under the read lock (released by the caller),
 * read from the database when this replica has not heard of it yet; NULL
 * with NOT_FOUND otherwise. own: only the tenant's own nodes. */
static rnode_t *visible_node(rreq_t *r, int64_t id, bool own)
{
	routerd_t *rd = r->rd;
	if (id <= 0) {
		pthread_rwlock_rdlock(&rd->tbl.lock);
		fd_call_fail(r->call, FD_EINVAL, "node_id: required");
		return NULL;
	}
	pthread_rwlock_rdlock(&rd->tbl.lock);
	rnode_t *n = table_get(&rd->tbl, id);
	if (!n || n->tenant != r->tenant) {
		pthread_rwlock_unlock(&rd->tbl.lock);
		fd_err_t e;
		if (!n && nodes_reload(rd, r->tenant, id, &e) < 0)
			fd_debug("node %" PRId64 " not in tenant %" PRId64 ": %s", id, r->tenant, e.msg);
		pthread_rwlock_rdlock(&rd->tbl.lock);
		n = table_get(&rd->tbl, id);
	}
	bool ok = n && (n->tenant == r->tenant ||
	                (!own && n->tenant == FD_PLATFORM_TENANT &&
	                 table_tenant(&rd->tbl, r->tenant)->shared_pool_allowed));
	if (!ok) {
		fd_call_fail(r->call, FD_ENOTFOUND, "node %" PRId64 " not found", id);
		return NULL;
	}
	return n;
}

/* ---- input checks ---- */

static int check_url(fd_call_t *call, size_t i, int format, const char *u)
{
	size_t len = strlen(u);
	if (len == 0 || len > MAX_URL)
		return fd_call_fail(call, FD_EINVAL, "urls[%zu].base_url: 1..%d characters", i, MAX_URL);
	bool rtmp = format == FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_RTMP;
	const char *host;
	if (rtmp ? (strncmp(u, "rtmp://", 7) == 0 ? (host = u + 7) : strncmp(u, "rtmps://", 8) == 0 ? (host = u + 8) : NULL) == NULL
	         : (strncmp(u, "http://", 7) == 0 ? (host = u + 7) : strncmp(u, "https://", 8) == 0 ? (host = u + 8) : NULL) == NULL)
		return fd_call_fail(call, FD_EINVAL, "urls[%zu].base_url: an absolute %s URL", i,
		                    rtmp ? "rtmp:// or rtmps://" : "http:// or https://");
	for (const char *p = u; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || *p == '?' || *p == '#' || *p == '@' || *p == '\\')
			return fd_call_fail(call, FD_EINVAL, "urls[%zu].base_url: no spaces, query, fragment, "
			                    "user info or non-ASCII characters", i);
	size_t hl = strcspn(host, ":/");
	if (hl == 0 && host[0] == '[') {
		const char *close = strchr(host, ']');
		if (!close)
			return fd_call_fail(call, FD_EINVAL, "urls[%zu].base_url: unterminated [IPv6] host", i);
		hl = (size_t)(close - host) + 1;
	} else if (hl == 0) {
		return fd_call_fail(call, FD_EINVAL, "urls[%zu].base_url: a host is required", i);
	} else {
		for (size_t k = 0; k < hl; k++)
			if (!(isalnum((unsigned char)host[k]) || host[k] == '.' || host[k] == '-'))
				return fd_call_fail(call, FD_EINVAL, "urls[%zu].base_url: bad host", i);
	}
	const char *rest = host + hl;
	if (*rest == ':') {
		char *end;
		long port = strtol(rest + 1, &end, 10);
		if (end == rest + 1 || port < 1 || port > 65535 || (*end && *end != '/'))
			return fd_call_fail(call, FD_EINVAL, "urls[%zu].base_url: port 1..65535", i);
	}
	return 0;
}

typedef struct urls_in {
	Frontdesk__V1__NodeUrl **v;
	size_t n;
} urls_in_t;

static int check_urls(fd_call_t *call, Frontdesk__V1__NodeUrl **v, size_t n)
{
	if (n == 0 || n > 3)
		return fd_call_fail(call, FD_EINVAL, "urls: 1..3 entries, one per output format");
	for (size_t i = 0; i < n; i++) {
		int f = v[i]->format;
		if (f < FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_TS || f > FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_RTMP)
			return fd_call_fail(call, FD_EINVAL, "urls[%zu].format: TS, M3U8 or RTMP", i);
		for (size_t j = 0; j < i; j++)
			if (v[j]->format == v[i]->format)
				return fd_call_fail(call, FD_EINVAL, "urls[%zu].format: a format is listed twice", i);
		int rc = check_url(call, i, f, v[i]->base_url);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int check_tags(fd_call_t *call, char **v, size_t n)
{
	if (n > MAX_TAGS)
		return fd_call_fail(call, FD_EINVAL, "tags: at most %d", MAX_TAGS);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(v[i]);
		if (len == 0 || len > MAX_TAG || strspn(v[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		                                              "0123456789._:/=-") != len)
			return fd_call_fail(call, FD_EINVAL, "tags[%zu]: 1..%d of A-Z a-z 0-9 . _ : / = -", i, MAX_TAG);
		for (size_t j = 0; j < i; j++)
			if (strcmp(v[i], v[j]) == 0)
				return fd_call_fail(call, FD_EINVAL, "tags[%zu]: \"%s\" is listed twice", i, v[i]);
	}
	return 0;
}

static int check_region(fd_call_t *call, const routerd_t *rd, const char *field, const char *region, bool required)
{
	if (!region[0] && !required)
		return 0;
	if (!region[0])
		return fd_call_fail(call, FD_EINVAL, "%s: required (regions: %s)", field, rd->region_list);
	if (region_find(rd, region) < 0)
		return region_unknown(call, rd, field, region);
	return 0;
}

int check_country(fd_call_t *call, const char *field, const char *cc)
{
	if (cc[0] && !(isupper((unsigned char)cc[0]) && isupper((unsigned char)cc[1]) && !cc[2]))
		return fd_call_fail(call, FD_EINVAL, "%s: two upper-case letters (ISO 3166-1 alpha-2)", field);
	return 0;
}

/* The settings a register or an update ends with, checked together. */
typedef struct node_in {
	const char *name;
	Frontdesk__V1__NodeUrl **urls;
	size_t nurls;
	const char *region, *country, *failure_domain;
	int64_t max_connections, max_egress_mbps, weight;
	char **tags;
	size_t ntags;
	int64_t high, low;
} node_in_t;

static int check_node(fd_call_t *call, const routerd_t *rd, const node_in_t *in)
{
	int rc;
	/* The name and the failure domain are labels (a portal shows them; Route
	 * compares domains byte for byte): fd_check_name. Tags are a restricted
	 * alphabet already (check_tags). */
	if ((rc = fd_check_name("name", in->name, 1, MAX_NAME, fd_call_err(call))) < 0 ||
	    (rc = check_urls(call, in->urls, in->nurls)) < 0 ||
	    (rc = check_region(call, rd, "region", in->region, true)) < 0 ||
	    (rc = check_country(call, "country", in->country)) < 0 ||
	    (rc = fd_check_name("failure_domain", in->failure_domain, 0, MAX_DOMAIN, fd_call_err(call))) < 0 ||
	    (rc = check_tags(call, in->tags, in->ntags)) < 0)
		return rc;
	if (in->max_connections < 1 || in->max_connections > MAX_CAPACITY)
		return fd_call_fail(call, FD_EINVAL, "max_connections: 1..%d", MAX_CAPACITY);
	if (in->max_egress_mbps < 1 || in->max_egress_mbps > MAX_CAPACITY)
		return fd_call_fail(call, FD_EINVAL, "max_egress_mbps: 1..%d", MAX_CAPACITY);
	if (in->weight < 0 || in->weight > MAX_WEIGHT)
		return fd_call_fail(call, FD_EINVAL, "weight: 0..%d", MAX_WEIGHT);
	if (in->high < 1 || in->high > 100)
		return fd_call_fail(call, FD_EINVAL, "high_water_percent: 1..100");
	if (in->low < 1 || in->low >= in->high)
		return fd_call_fail(call, FD_EINVAL, "low_water_percent: 1..%" PRId64 " (below high_water_percent)",
		                    in->high - 1);
	return 0;
}

/* Postgres parameters of the checked settings. */
typedef struct node_params {
	const char *formats, *urls, *tags;
} node_params_t;

static int node_params(fd_arena_t *a, const node_in_t *in, node_params_t *p)
{
	Frontdesk__V1__OutputFormat f[3];
	char *u[3];
	for (size_t i = 0; i < in->nurls; i++) {
		f[i] = in->urls[i]->format;
		u[i] = in->urls[i]->base_url;
	}
	p->formats = pg_format_array(a, f, in->nurls);
	p->urls = pg_text_array(a, u, in->nurls);
	p->tags = pg_text_array(a, in->tags, in->ntags);
	return p->formats && p->urls && p->tags ? 0 : -FD_EEXHAUSTED;
}

/* ---- node keys ---- */

/* A new key "fdn_<tenant>_<id>_<secret>" into out, its secret's hash and
 * the prefix shown later: "fdn_<tenant>_<id>_", the non-secret head, as an
 * API key's prefix is (nothing of the secret is stored or shown). */
static void new_key(const routerd_t *rd, int64_t tenant, int64_t id, char *out, size_t outsz,
                    unsigned char hash[32], char *prefix, size_t prefixsz)
{
	unsigned char raw[32];
	char secret[48];
	randombytes_buf(raw, sizeof(raw));
	fd_b64url_encode(raw, sizeof(raw), secret, sizeof(secret));
	sodium_memzero(raw, sizeof(raw));
	crypto_generichash(hash, 32, (const unsigned char *)secret, strlen(secret), rd->key_hash_key,
	                   sizeof(rd->key_hash_key));
	snprintf(out, outsz, NODE_KEY_PREFIX "%" PRId64 "_%" PRId64 "_%s", tenant, id, secret);
	snprintf(prefix, prefixsz, NODE_KEY_PREFIX "%" PRId64 "_%" PRId64 "_", tenant, id);
	sodium_memzero(secret, sizeof(secret));
}

/* ---- RegisterNode ---- */

/* The idempotency key is claimed first, with the node's id: a concurrent
 * request under the same key waits on the claim until the first commits,
 * then finds it taken and answers the first result (it never runs the
 * registration a second time, which would fail: the name is taken by then).
 * Should the first roll back, the claim goes with it and the waiting one
 * registers. READ COMMITTED: the look-up after a lost claim is a new
 * statement, which sees the winner's committed row. */
static const fd_sql_t SQL_IDEM_CLAIM = {
	"routerd_idem_claim",
	"INSERT INTO frontdesk.routing_idempotency (tenant_id, idem_key, request_hash, result_id)"
	" VALUES ($1, $2, decode($3, 'hex'), nextval(pg_get_serial_sequence('frontdesk.nodes', 'id')))"
	" ON CONFLICT (tenant_id, idem_key) DO NOTHING RETURNING result_id",
	3,
};
static const fd_sql_t SQL_IDEM_FIND = {
	"routerd_idem_find",
	"SELECT encode(request_hash, 'hex'), result_id FROM frontdesk.routing_idempotency"
	" WHERE tenant_id = $1 AND idem_key = $2",
	2,
};
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

struct register_q {
	rreq_t *r;
	const Frontdesk__V1__RegisterNodeRequest *req;
	const node_in_t *in;
	const char *idem, *hash;
	int64_t id;
	bool replay;
	char key[128];
};

/* A lost claim: the first request's result, if it was this same request. */
static int register_replay(fd_tx_t *tx, struct register_q *q)
{
	const char *ip[] = { q->r->tenant_s, q->idem };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_IDEM_FIND, ip, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) != 1)   /* rows are never deleted: cannot happen */
		return fd_err_set(fd_tx_err(tx), FD_EABORTED, "idempotency_key: claimed meanwhile; try again");
	if (strcmp(PQgetvalue(res, 0, 0), q->hash) != 0)
		return fd_err_set(fd_tx_err(tx), FD_EPRECOND,
		                  "idempotency_key: already used for another RegisterNode request");
	q->id = col_i64(res, 0, 1);
	q->replay = true;
	return 0;
}

static int register_tx(fd_tx_t *tx, void *arg)
{
	struct register_q *q = arg;
	rreq_t *r = q->r;
	q->replay = false;
	const char *cp[] = { r->tenant_s, q->idem, q->hash };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_IDEM_CLAIM, cp, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 0)
		return register_replay(tx, q);
	q->id = col_i64(res, 0, 0);
	unsigned char hash[32];
	char prefix[48], hash_hex[65], id_s[24], mc[24], me[24], w[24], hi[8], lo[8];
	new_key(r->rd, r->tenant, q->id, q->key, sizeof(q->key), hash, prefix, sizeof(prefix));
	sodium_bin2hex(hash_hex, sizeof(hash_hex), hash, sizeof(hash));
	snprintf(id_s, sizeof(id_s), "%" PRId64, q->id);
	snprintf(mc, sizeof(mc), "%" PRId64, q->in->max_connections);
	snprintf(me, sizeof(me), "%" PRId64, q->in->max_egress_mbps);
	snprintf(w, sizeof(w), "%" PRId64, q->in->weight);
	snprintf(hi, sizeof(hi), "%" PRId64, q->in->high);
	snprintf(lo, sizeof(lo), "%" PRId64, q->in->low);
	node_params_t p;
	if (node_params(r->arena, q->in, &p) < 0)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	const char *np[] = { r->tenant_s, id_s, q->in->name, p.formats, p.urls, q->in->region, q->in->country,
		                 q->in->failure_domain, mc, me, w, p.tags, hi, lo, hash_hex, prefix };
	if ((rc = fd_tx_exec(tx, &SQL_INSERT_NODE, np, 0, NULL)) < 0) {
		if (rc == -FD_EEXISTS)
			return fd_err_set(fd_tx_err(tx), FD_EEXISTS, "name: a node named \"%s\" already exists", q->in->name);
		return rc;
	}
	const char *detail[] = { "name", q->in->name, "region", q->in->region, NULL };
	return audit(tx, r, "node.register", node_target(r, q->id), detail, FD_TX_LAST);
}

/* Reads the node back into the table and answers it (read lock taken here). */
static int answer_node(rreq_t *r, int64_t id, Frontdesk__V1__Node **out)
{
	int rc = nodes_reload(r->rd, r->tenant, id, fd_call_err(r->call));
	if (rc < 0)
		return rc;
	pthread_rwlock_rdlock(&r->rd->tbl.lock);
	rnode_t *n = table_get(&r->rd->tbl, id);
	*out = n ? node_message(r->rd, r->arena, n, true, fd_now_ms()) : NULL;
	pthread_rwlock_unlock(&r->rd->tbl.lock);
	return *out ? 0 : OOM(r->call);
}

int rd_register_node(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__RegisterNodeRequest *req = (const void *)msg;
	rreq_t r;
	int rc = rreq_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_NODES_WRITE, req->tenant_id);
	if (rc < 0)
		return rc;
	node_in_t in = {
		.name = req->name, .urls = req->urls, .nurls = req->n_urls, .region = req->region,
		.country = req->country, .failure_domain = req->failure_domain,
		.max_connections = req->max_connections, .max_egress_mbps = req->max_egress_mbps,
		.weight = req->weight ? req->weight : DEFAULT_WEIGHT, .tags = req->tags, .ntags = req->n_tags,
		.high = req->high_water_percent ? req->high_water_percent : DEFAULT_HIGH,
		.low = req->low_water_percent ? req->low_water_percent : DEFAULT_LOW,
	};
	if (req->weight < 0)
		return fd_call_fail(call, FD_EINVAL, "weight: 0 (the default, %d) .. %d", DEFAULT_WEIGHT, MAX_WEIGHT);
	if ((rc = check_node(call, r.rd, &in)) < 0 || (rc = fd_check_idem_key(req->idempotency_key, fd_call_err(call))) < 0)
		return rc;
	if (!req->idempotency_key[0])
		return fd_call_fail(call, FD_EINVAL, "idempotency_key: required for this call");
	const char *idem = r.c.kind == FD_CRED_SERVICE_TOKEN
	                   ? fd_arena_printf(r.arena, "RegisterNode/svc:%s/%s", r.c.service, req->idempotency_key)
	                   : fd_arena_printf(r.arena, "RegisterNode/acct:%" PRId64 "/%s", r.c.account_id,
	                                     req->idempotency_key);
	const char *hash = fd_request_hash(r.arena, msg);
	if (!idem || !hash)
		return OOM(call);
	struct register_q q = { .r = &r, .req = req, .in = &in, .idem = idem, .hash = hash };
	if ((rc = rreq_run(&r, register_tx, &q)) < 0) {
		sodium_memzero(q.key, sizeof(q.key));
		return rc;
	}
	Frontdesk__V1__RegisterNodeResponse *out = fd_arena_zalloc(r.arena, sizeof(*out));
	if (!out)
		return OOM(call);
	frontdesk__v1__register_node_response__init(out);
	out->node_key = q.replay ? "" : fd_arena_strdup(r.arena, q.key);
	sodium_memzero(q.key, sizeof(q.key));
	if (!out->node_key)
		return OOM(call);
	if ((rc = answer_node(&r, q.id, &out->node)) < 0)
		return rc;
	if (!q.replay)
		fd_info("node %" PRId64 " (%s) registered in tenant %" PRId64, q.id, in.name, r.tenant);
	*resp = &out->base;
	return 0;
}

/* ---- GetNode ---- */

int rd_get_node(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__GetNodeRequest *req = (const void *)msg;
	rreq_t r;
	int rc = rreq_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_NODES_READ, req->tenant_id);
	if (rc < 0)
		return rc;
	Frontdesk__V1__GetNodeResponse *out = fd_arena_zalloc(r.arena, sizeof(*out));
	if (!out)
		return OOM(call);
	frontdesk__v1__get_node_response__init(out);
	rnode_t *n = visible_node(&r, req->node_id, false);
	if (n && !(out->node = node_message(r.rd, r.arena, n, n->tenant == r.tenant, fd_now_ms())))
		rc = OOM(call);
	pthread_rwlock_unlock(&r.rd->tbl.lock);
	if (!n)
		return -(int)fd_call_err(call)->code;
	if (rc < 0)
		return rc;
	*resp = &out->base;
	return 0;
}

/* ---- ListNodes ---- */

static int by_id(const void *a, const void *b)
{
	const rnode_t *x = *(rnode_t *const *)a, *y = *(rnode_t *const *)b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static bool has_tag(const rcfg_t *c, const char *tag)
{
	for (int i = 0; i < c->ntags; i++)
		if (strcmp(c->tags[i], tag) == 0)
			return true;
	return false;
}

int rd_list_nodes(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListNodesRequest *req = (const void *)msg;
	routerd_t *rd = routerd_of(call);
	fd_arena_t *a = fd_call_arena(call);
	fd_caller_t c;
	scope_t s;
	int limit;
	int64_t after;
	int rc = fd_call_caller(call, &c);
	if (rc < 0 || (rc = fd_caller_need(&c, FRONTDESK__V1__SCOPE__SCOPE_NODES_READ, fd_call_err(call))) < 0 ||
	    (rc = scope_of(call, &c, req->tenant_id, req->include_shared_pool, req->all_tenants, &s)) < 0 ||
	    (rc = fd_check_page(req->page_size, req->page_token, &limit, &after, fd_call_err(call))) < 0 ||
	    (rc = check_region(call, rd, "region", req->region, false)) < 0)
		return rc;
	if (req->state < 0 || req->state > STATE_DISABLED)
		return fd_call_fail(call, FD_EINVAL, "state: a NodeState");
	if (req->health < 0 || req->health > HEALTH_OVERLOADED)
		return fd_call_fail(call, FD_EINVAL, "health: a NodeHealth");
	if (strlen(req->tag) > MAX_TAG)
		return fd_call_fail(call, FD_EINVAL, "tag: at most %d characters", MAX_TAG);
	int region = req->region[0] ? region_find(rd, req->region) : -1;
	Frontdesk__V1__ListNodesResponse *out = fd_arena_zalloc(a, sizeof(*out));
	if (!out)
		return OOM(call);
	frontdesk__v1__list_nodes_response__init(out);
	int64_t now = fd_now_ms();
	pthread_rwlock_rdlock(&rd->tbl.lock);
	rnode_t **hits = fd_arena_alloc(a, sizeof(*hits) * (rd->tbl.n + 1));
	size_t nh = 0;
	for (size_t i = 0; hits && i < rd->tbl.n; i++) {
		rnode_t *n = rd->tbl.nodes[i];
		if (n->id <= after || !scope_has(&s, n) || (region >= 0 && n->cfg->region != region) ||
		    (req->state && n->cfg->state != (int)req->state) ||
		    (req->health && node_health(rd, n, now) != req->health) || (req->tag[0] && !has_tag(n->cfg, req->tag)))
			continue;
		hits[nh++] = n;
	}
	bool oom = !hits;
	if (hits) {
		qsort(hits, nh, sizeof(*hits), by_id);
		size_t take = nh < (size_t)limit ? nh : (size_t)limit;
		out->nodes = fd_arena_alloc(a, sizeof(*out->nodes) * (take + 1));
		for (size_t i = 0; out->nodes && i < take; i++) {
			bool owner = s.all || hits[i]->tenant == s.tenant;
			if (!(out->nodes[i] = node_message(rd, a, hits[i], owner, now)))
				break;
			out->n_nodes++;
		}
		oom = out->n_nodes < take;
		if (!oom && nh > take && !(out->next_page_token = fd_page_token(a, hits[take - 1]->id)))
			oom = true;
	}
	pthread_rwlock_unlock(&rd->tbl.lock);
	if (oom)
		return OOM(call);
	*resp = &out->base;
	return 0;
}

/* ---- UpdateNode ---- */

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

struct update_q {
	rreq_t *r;
	int64_t id, version;
	const node_in_t *in;
	bool rotate;
	char key[128];
};

static int update_tx(fd_tx_t *tx, void *arg)
{
	struct update_q *q = arg;
	rreq_t *r = q->r;
	char id_s[24], ver[24], mc[24], me[24], w[24], hi[8], lo[8], hash_hex[65], prefix[48];
	snprintf(id_s, sizeof(id_s), "%" PRId64, q->id);
	snprintf(ver, sizeof(ver), "%" PRId64, q->version);
	snprintf(mc, sizeof(mc), "%" PRId64, q->in->max_connections);
	snprintf(me, sizeof(me), "%" PRId64, q->in->max_egress_mbps);
	snprintf(w, sizeof(w), "%" PRId64, q->in->weight);
	snprintf(hi, sizeof(hi), "%" PRId64, q->in->high);
	snprintf(lo, sizeof(lo), "%" PRId64, q->in->low);
	if (q->rotate) {
		unsigned char hash[32];
		new_key(r->rd, r->tenant, q->id, q->key, sizeof(q->key), hash, prefix, sizeof(prefix));
		sodium_bin2hex(hash_hex, sizeof(hash_hex), hash, sizeof(hash));
	}
	node_params_t p;
	if (node_params(r->arena, q->in, &p) < 0)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	const char *np[] = { r->tenant_s, id_s, q->in->name, p.formats, p.urls, q->in->region, q->in->country,
		                 q->in->failure_domain, mc, me, w, p.tags, hi, lo,
		                 q->rotate ? hash_hex : NULL, q->rotate ? prefix : NULL, ver };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_UPDATE_NODE, np, 0, &res);
	if (rc == -FD_EEXISTS)
		return fd_err_set(fd_tx_err(tx), FD_EEXISTS, "name: a node named \"%s\" already exists", q->in->name);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 0)
		return fd_err_set(fd_tx_err(tx), FD_EABORTED, "node %" PRId64 " changed meanwhile; try again", q->id);
	/* A new key is its own action; an update changes where viewers are
	 * sent (URLs, capacity, region), so it is recorded too. */
	const char *detail[] = { "name", q->in->name, NULL };
	return audit(tx, r, q->rotate ? "node.rotate_key" : "node.update", node_target(r, q->id), detail, FD_TX_LAST);
}

/* Copies a string out of the table into the arena (read lock held). */
static char *keep(fd_arena_t *a, const char *s)
{
	return fd_arena_strdup(a, s);
}

int rd_update_node(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__UpdateNodeRequest *req = (const void *)msg;
	rreq_t r;
	int rc = rreq_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_NODES_WRITE, req->tenant_id);
	if (rc < 0)
		return rc;
	/* The node's settings now, merged with the request's changes. */
	rnode_t *n = visible_node(&r, req->node_id, true);
	node_in_t in = { 0 };
	int64_t version = 0;
	bool oom = false;
	if (n) {
		const rcfg_t *c = n->cfg;
		version = c->version;
		in.name = req->name[0] ? req->name : keep(r.arena, c->name);
		if (req->urls) {
			in.urls = req->urls->values;
			in.nurls = req->urls->n_values;
		} else {
			in.urls = fd_arena_alloc(r.arena, sizeof(*in.urls) * 3);
			for (int i = 0; in.urls && i < c->nurls; i++) {
				Frontdesk__V1__NodeUrl *u = fd_arena_zalloc(r.arena, sizeof(*u));
				if (!u)
					break;
				frontdesk__v1__node_url__init(u);
				u->format = c->formats[i];
				u->base_url = keep(r.arena, c->urls[i]);
				in.urls[in.nurls++] = u;
			}
		}
		in.region = req->region ? req->region->value : keep(r.arena, c->region >= 0 ? r.rd->regions[c->region].name : "");
		in.country = req->country ? req->country->value : keep(r.arena, c->country);
		in.failure_domain = req->failure_domain ? req->failure_domain->value : keep(r.arena, c->failure_domain);
		in.max_connections = req->max_connections ? req->max_connections->value : c->max_connections;
		in.max_egress_mbps = req->max_egress_mbps ? req->max_egress_mbps->value : c->max_egress_mbps;
		in.weight = req->weight ? req->weight->value : c->weight;
		if (req->tags) {
			in.tags = req->tags->values;
			in.ntags = req->tags->n_values;
		} else {
			in.tags = fd_arena_alloc(r.arena, sizeof(char *) * ((size_t)c->ntags + 1));
			for (int i = 0; in.tags && i < c->ntags; i++)
				in.tags[in.ntags++] = keep(r.arena, c->tags[i]);
		}
		in.high = req->high_water_percent ? req->high_water_percent->value : c->high_water;
		in.low = req->low_water_percent ? req->low_water_percent->value : c->low_water;
		/* An empty list arrives as NULL: only our own copies can be out of memory. */
		oom = !in.name || !in.region || !in.country || !in.failure_domain ||
		      (!req->urls && (!in.urls || in.nurls != (size_t)c->nurls)) ||
		      (!req->tags && (!in.tags || in.ntags != (size_t)c->ntags));
	}
	pthread_rwlock_unlock(&r.rd->tbl.lock);
	if (!n)
		return -(int)fd_call_err(call)->code;
	if (oom)
		return OOM(call);
	if ((rc = check_node(call, r.rd, &in)) < 0)
		return rc;
	struct update_q q = { .r = &r, .id = req->node_id, .version = version, .in = &in, .rotate = req->rotate_key };
	rc = rreq_run(&r, update_tx, &q);
	Frontdesk__V1__UpdateNodeResponse *out = fd_arena_zalloc(r.arena, sizeof(*out));
	if (rc == 0 && out) {
		frontdesk__v1__update_node_response__init(out);
		out->node_key = req->rotate_key ? fd_arena_strdup(r.arena, q.key) : "";
	}
	sodium_memzero(q.key, sizeof(q.key));
	if (rc < 0)
		return rc;
	if (!out || !out->node_key)
		return OOM(call);
	if ((rc = answer_node(&r, req->node_id, &out->node)) < 0)
		return rc;
	*resp = &out->base;
	return 0;
}

/* ---- SetNodeState ---- */

static const fd_sql_t SQL_SET_STATE = {
	"routerd_set_state",
	"WITH n AS (UPDATE frontdesk.nodes SET state = $3, state_reason = $4, version = version + 1,"
	"  updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING id)"
	" SELECT pg_notify('frontdesk_nodes', 'node ' || $1 || ' ' || id) FROM n",
	4,
};

struct state_q {
	rreq_t *r;
	int64_t node_id;
	const char *id, *state, *reason;
};

static const char *state_name(int state)
{
	return state == STATE_ACTIVE ? "active" : state == STATE_DRAINING ? "draining" : "disabled";
}

static int state_tx(fd_tx_t *tx, void *arg)
{
	struct state_q *q = arg;
	const char *p[] = { q->r->tenant_s, q->id, q->state, q->reason };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_SET_STATE, p, 0, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) == 0)
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "node %s not found", q->id);
	const char *detail[] = { "state", state_name(atoi(q->state)), "reason", q->reason, NULL };
	return audit(tx, q->r, "node.set_state", node_target(q->r, q->node_id), detail, FD_TX_LAST);
}

int rd_set_node_state(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__SetNodeStateRequest *req = (const void *)msg;
	rreq_t r;
	int rc = rreq_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_NODES_WRITE, req->tenant_id);
	if (rc < 0)
		return rc;
	if (req->state < STATE_ACTIVE || req->state > STATE_DISABLED)
		return fd_call_fail(call, FD_EINVAL, "state: ACTIVE, DRAINING or DISABLED");
	if ((rc = fd_check_text("reason", req->reason, 0, MAX_REASON, fd_call_err(call))) < 0)
		return rc;
	if (req->node_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "node_id: required");
	struct state_q q = { &r, req->node_id, fd_arena_printf(r.arena, "%" PRId64, req->node_id),
		                 fd_arena_printf(r.arena, "%d", (int)req->state), req->reason };
	if (!q.id || !q.state)
		return OOM(call);
	if ((rc = rreq_run(&r, state_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__SetNodeStateResponse *out = fd_arena_zalloc(r.arena, sizeof(*out));
	if (!out)
		return OOM(call);
	frontdesk__v1__set_node_state_response__init(out);
	if ((rc = answer_node(&r, req->node_id, &out->node)) < 0)
		return rc;
	fd_info("node %" PRId64 " of tenant %" PRId64 " set to state %d", req->node_id, r.tenant, (int)req->state);
	*resp = &out->base;
	return 0;
}

/* ---- tenants' routing settings ---- */

static Frontdesk__V1__TenantRouting *routing_message(rreq_t *r)
{
	Frontdesk__V1__TenantRouting *m = fd_arena_zalloc(r->arena, sizeof(*m));
	if (!m)
		return NULL;
	frontdesk__v1__tenant_routing__init(m);
	pthread_rwlock_rdlock(&r->rd->tbl.lock);
	const rtenant_t *t = table_tenant(&r->rd->tbl, r->tenant);
	m->tenant_id = r->tenant;
	m->max_egress_mbps = t->max_egress_mbps;
	m->policy = t->policy;
	m->min_bitrate_kbps = t->min_bitrate_kbps;
	m->shared_pool_allowed = t->shared_pool_allowed;
	m->egress_mbps = tenant_egress(r->rd, r->tenant, fd_now_ms());
	pthread_rwlock_unlock(&r->rd->tbl.lock);
	return m;
}

int rd_get_tenant_routing(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__GetTenantRoutingRequest *req = (const void *)msg;
	rreq_t r;
	int rc = rreq_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_NODES_READ, req->tenant_id);
	if (rc < 0)
		return rc;
	Frontdesk__V1__GetTenantRoutingResponse *out = fd_arena_zalloc(r.arena, sizeof(*out));
	if (!out)
		return OOM(call);
	frontdesk__v1__get_tenant_routing_response__init(out);
	if (!(out->routing = routing_message(&r)))
		return OOM(call);
	*resp = &out->base;
	return 0;
}

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

struct routing_q {
	rreq_t *r;
	const char *cap, *policy, *min_bitrate, *shared;
};

/* Both settings are the platform's (SCOPE_BANDWIDTH_WRITE) over what a
 * tenant's viewers get: recorded in the tenant's trail. */
static int routing_tx(fd_tx_t *tx, void *arg)
{
	struct routing_q *q = arg;
	const char *p[] = { q->r->tenant_s, q->cap, q->policy, q->min_bitrate, q->shared };
	int rc = fd_tx_exec(tx, &SQL_SET_ROUTING, p, 0, NULL);
	if (rc < 0)
		return rc;
	const char *target = fd_arena_printf(q->r->arena, "tenant:%s", q->r->tenant_s);
	if (q->shared) {
		const char *detail[] = { "allowed", q->shared, NULL };
		return audit(tx, q->r, "tenant.set_shared_pool_access", target, detail, FD_TX_LAST);
	}
	const char *policy = !q->policy ? "unchanged" : strcmp(q->policy, "1") == 0 ? "refuse" : "lower_bitrate";
	const char *detail[] = { "max_egress_mbps", q->cap, "policy", policy,
		                     "min_bitrate_kbps", q->min_bitrate ? q->min_bitrate : "unchanged", NULL };
	return audit(tx, q->r, "tenant.set_bandwidth", target, detail, FD_TX_LAST);
}

static int set_routing(rreq_t *r, struct routing_q *q, ProtobufCMessage **resp, bool bandwidth)
{
	q->r = r;
	int rc = rreq_run(r, routing_tx, q);
	if (rc < 0 || (rc = tenant_reload(r->rd, r->tenant, fd_call_err(r->call))) < 0)
		return rc;
	Frontdesk__V1__TenantRouting *m = routing_message(r);
	if (!m)
		return OOM(r->call);
	if (bandwidth) {
		Frontdesk__V1__SetTenantBandwidthResponse *out = fd_arena_zalloc(r->arena, sizeof(*out));
		if (!out)
			return OOM(r->call);
		frontdesk__v1__set_tenant_bandwidth_response__init(out);
		out->routing = m;
		*resp = &out->base;
	} else {
		Frontdesk__V1__SetSharedPoolAccessResponse *out = fd_arena_zalloc(r->arena, sizeof(*out));
		if (!out)
			return OOM(r->call);
		frontdesk__v1__set_shared_pool_access_response__init(out);
		out->routing = m;
		*resp = &out->base;
	}
	return 0;
}

int rd_set_tenant_bandwidth(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__SetTenantBandwidthRequest *req = (const void *)msg;
	rreq_t r;
	int rc = rreq_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_BANDWIDTH_WRITE, req->tenant_id);
	if (rc < 0)
		return rc;
	if (req->max_egress_mbps < 0 || req->max_egress_mbps > MAX_CAPACITY)
		return fd_call_fail(call, FD_EINVAL, "max_egress_mbps: 0 (no cap) .. %d", MAX_CAPACITY);
	if (req->policy < 0 || req->policy > FRONTDESK__V1__BANDWIDTH_POLICY__BANDWIDTH_POLICY_LOWER_BITRATE)
		return fd_call_fail(call, FD_EINVAL, "policy: REFUSE or LOWER_BITRATE (UNSPECIFIED: unchanged)");
	if (req->min_bitrate_kbps < 0 || req->min_bitrate_kbps > 1000000)
		return fd_call_fail(call, FD_EINVAL, "min_bitrate_kbps: 0 (unchanged) .. 1000000");
	struct routing_q q = {
		.cap = fd_arena_printf(r.arena, "%" PRId64, req->max_egress_mbps),
		.policy = req->policy ? fd_arena_printf(r.arena, "%d", (int)req->policy) : NULL,
		.min_bitrate = req->min_bitrate_kbps ? fd_arena_printf(r.arena, "%" PRId64, req->min_bitrate_kbps) : NULL,
	};
	if (!q.cap || (req->policy && !q.policy) || (req->min_bitrate_kbps && !q.min_bitrate))
		return OOM(call);
	return set_routing(&r, &q, resp, true);
}

int rd_set_shared_pool_access(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__SetSharedPoolAccessRequest *req = (const void *)msg;
	rreq_t r;
	int rc = rreq_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_BANDWIDTH_WRITE, req->tenant_id);
	if (rc < 0)
		return rc;
	struct routing_q q = { .shared = req->allowed ? "true" : "false" };
	return set_routing(&r, &q, resp, false);
}
