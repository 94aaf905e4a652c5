/* table.c - the in-memory node table (table.h): nodes sorted by (tenant,
 * id) with an id index, tenants' routing settings, publishing settings, and
 * the rules read from the table. */
#include <stdlib.h>
#include <string.h>
#include "table.h"
#include "index.h"
#include "fd/log.h"
#include "fd/tenant.h"

const rtenant_t TENANT_DEFAULTS = {
	.max_egress_mbps = 0,
	.policy = POLICY_REFUSE,
	.min_bitrate_kbps = 1000,
	.shared_pool_allowed = true,
};

void cfg_free(rcfg_t *c)
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

void cfg_derive(rcfg_t *c)
{
	/* FNV-1a; 0 is kept for "a domain of its own". */
	c->domain = 0;
	if (c->failure_domain && c->failure_domain[0]) {
		c->domain = 1469598103934665603ull;
		for (const char *p = c->failure_domain; *p; p++)
			c->domain = (c->domain ^ (unsigned char)*p) * 1099511628211ull;
		c->domain |= 1;
	}
}

int cfg_change_event(const rcfg_t *old, const rcfg_t *c)
{
	if (!old)
		return EVT(REGISTERED);
	if (old->state != c->state)
		return c->state == STATE_DRAINING ? EVT(DRAINING) : c->state == STATE_DISABLED ? EVT(DISABLED) : EVT(ACTIVATED);
	return EVT(UPDATED);
}

int table_init(rtable_t *t, int64_t miss_ms)
{
	memset(t, 0, sizeof(*t));
	t->miss_ms = miss_ms;
	t->id_cap = 1024;
	if (!(t->by_id = calloc(t->id_cap, sizeof(*t->by_id))))
		return -FD_EEXHAUSTED;
	pthread_rwlock_init(&t->lock, NULL);
	return 0;
}

void table_free(rtable_t *t)
{
	if (!t->by_id)
		return;
	index_free(t);
	for (size_t i = 0; i < t->n; i++) {
		cfg_free(t->nodes[i]->cfg);
		pthread_mutex_destroy(&t->nodes[i]->mu);
		free(t->nodes[i]);
	}
	free(t->nodes);
	free(t->by_id);
	free(t->tenants);
	pthread_rwlock_destroy(&t->lock);
	memset(t, 0, sizeof(*t));
}

static size_t id_slot(int64_t id, size_t cap)
{
	return (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull >> 20) & (cap - 1);
}

rnode_t *table_get(const rtable_t *t, int64_t id)
{
	for (size_t i = id_slot(id, t->id_cap);; i = (i + 1) & (t->id_cap - 1)) {
		rnode_t *n = t->by_id[i];
		if (!n || n->id == id)
			return n;
	}
}

static void id_put(rnode_t **slots, size_t cap, rnode_t *n)
{
	size_t i = id_slot(n->id, cap);
	while (slots[i])
		i = (i + 1) & (cap - 1);
	slots[i] = n;
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

void table_range(const rtable_t *t, int64_t tenant, size_t *lo, size_t *hi)
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

static rtenant_t *tenant_slot(const rtable_t *t, int64_t tenant, size_t *pos)
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

const rtenant_t *table_tenant(const rtable_t *t, int64_t tenant)
{
	size_t pos;
	const rtenant_t *r = tenant_slot(t, tenant, &pos);
	return r ? r : &TENANT_DEFAULTS;
}

int table_set_tenant(rtable_t *t, const rtenant_t *v)
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

int table_put(rtable_t *t, int64_t tenant, int64_t id, rcfg_t *c, rnode_t **node, rcfg_t **old)
{
	rnode_t *n = table_get(t, id);
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
		int rc = table_add(t, n);
		if (rc < 0) {
			pthread_mutex_destroy(&n->mu);
			free(n);
			cfg_free(c);
			return rc;
		}
	}
	*old = fresh ? NULL : n->cfg;
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
	*node = n;
	/* The settings are published whatever the index can do: out of memory
	 * there, the node is left out of Route's choice until a later
	 * table_put rebuilds every cell. */
	if (fresh)
		memset(n->slot, -1, sizeof(n->slot));
	if (index_place(t, n) < 0 || (t->unindexed && index_rebuild(t) < 0)) {
		if (!t->unindexed)
			fd_warn("routerd: out of memory indexing node %lld: not routed to until the next change",
			        (long long)id);
		t->unindexed = true;
	} else {
		t->unindexed = false;
	}
	return 0;
}

void node_take_live(rnode_t *n, const rlive_t *l)
{
	pthread_mutex_lock(&n->mu);
	if (l->hb_ms > atomic_load(&n->hb_ms)) {
		atomic_store(&n->conn, l->conn);
		atomic_store(&n->egress, l->egress);
		atomic_store(&n->cpu, l->cpu);
		atomic_store(&n->overloaded, l->overloaded);
		atomic_store(&n->hb_ms, l->hb_ms);
	}
	if (l->closed_ms > atomic_load(&n->closed_ms))
		atomic_store(&n->closed_ms, l->closed_ms);
	pthread_mutex_unlock(&n->mu);
	index_touch(n);
}

double tenant_egress(const rtable_t *t, int64_t tenant, int64_t now)
{
	double sum = 0;
	size_t lo, hi;
	table_range(t, tenant, &lo, &hi);
	for (size_t i = lo; i < hi; i++)
		if (node_health(t, t->nodes[i], now) != HEALTH_DOWN)
			sum += atomic_load(&t->nodes[i]->egress);
	if (tenant == FD_PLATFORM_TENANT)
		return sum;
	table_range(t, FD_PLATFORM_TENANT, &lo, &hi);
	for (size_t i = lo; i < hi; i++) {
		rnode_t *n = t->nodes[i];
		if (node_health(t, n, now) == HEALTH_DOWN)
			continue;
		pthread_mutex_lock(&n->mu);
		for (int k = 0; k < n->nshares; k++)
			if (n->shares[k].tenant == tenant && n->viewers_total > 0)
				sum += atomic_load(&n->egress) * n->shares[k].viewers / n->viewers_total;
		pthread_mutex_unlock(&n->mu);
	}
	return sum;
}
