/* view.c - scopes and node messages (view.h). */
#include <string.h>
#include "view.h"
#include "fd/service.h"
#include "fd/tenant.h"

bool scope_has(const scope_t *s, const rnode_t *n)
{
	return s->all || n->tenant == s->tenant || (s->shared && n->tenant == FD_PLATFORM_TENANT);
}

static bool sees_all(const fd_caller_t *c)
{
	return c->role == FD_ROLE_PLATFORM_ADMIN || c->role == FD_ROLE_SERVICE;
}

int scope_of(fd_call_t *call, rtable_t *t, const fd_caller_t *c, int64_t tenant_id, bool include_shared, bool all,
             scope_t *out)
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
	pthread_rwlock_rdlock(&t->lock);
	out->shared = include_shared && table_tenant(t, out->tenant)->shared_pool_allowed;
	pthread_rwlock_unlock(&t->lock);
	return 0;
}

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

Frontdesk__V1__Node *node_message(const rtable_t *t, const regions_t *regions, fd_arena_t *a, const rnode_t *n,
                                  bool owner, int64_t now)
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
	m->region = (char *)region_name(regions, c->region);
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
	m->health = node_health(t, n, now);
	m->load = load_message(a, n);
	m->last_heartbeat_at = atomic_load(&n->hb_ms) / 1000;
	m->key_prefix = owner ? (char *)c->key_prefix : "";
	m->created_at = c->created_at;
	m->updated_at = c->updated_at;
	return m;
}
