/* brands.c - host names and slugs -> tenants (brands.h). The table is one
 * immutable snapshot, replaced whole by the refresh thread; readers take a
 * reference under a short lock. */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "brands.h"
#include "net.h"
#include "upstream.h"
#include "fd/clock.h"
#include "fd/log.h"

#define MAX_PLATFORM_HOSTS 32

typedef struct entry {
	char *key;          /* host name, or slug */
	int64_t tenant;
	char *slug;
} entry_t;

typedef struct table {
	int refs;
	size_t nhosts, nslugs;
	entry_t *hosts, *slugs;   /* sorted by key */
} table_t;

struct edge_brands {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	table_t *table;
	bool stop, loaded;
	pthread_t thread;
	bool started;
	int nplatform;
	char platform[MAX_PLATFORM_HOSTS][256];
};

static void table_unref(struct edge_brands *b, table_t *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&b->mu);
	bool last = --t->refs == 0;
	pthread_mutex_unlock(&b->mu);
	if (!last)
		return;
	for (size_t i = 0; i < t->nhosts; i++) {
		free(t->hosts[i].key);
		free(t->hosts[i].slug);
	}
	for (size_t i = 0; i < t->nslugs; i++) {
		free(t->slugs[i].key);
		free(t->slugs[i].slug);
	}
	free(t->hosts);
	free(t->slugs);
	free(t);
}

static table_t *table_ref(struct edge_brands *b)
{
	pthread_mutex_lock(&b->mu);
	table_t *t = b->table;
	if (t)
		t->refs++;
	pthread_mutex_unlock(&b->mu);
	return t;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const entry_t *)a)->key, ((const entry_t *)b)->key);
}

static const entry_t *find(const entry_t *v, size_t n, const char *key)
{
	entry_t k = { .key = (char *)key };
	return bsearch(&k, v, n, sizeof(*v), entry_cmp);
}

static int fill(entry_t *v, size_t *n, Frontdesk__V1__BrandHost **src, size_t count, bool by_slug)
{
	*n = 0;
	for (size_t i = 0; i < count; i++) {
		const char *key = by_slug ? src[i]->tenant_slug : src[i]->host_name;
		char norm[256];
		if (!key || !key[0])
			continue;
		if (!by_slug) {
			if (net_host_normalize(key, norm, sizeof(norm)) < 0)
				continue;
			key = norm;
		}
		entry_t *en = &v[(*n)++];
		en->key = strdup(key);
		en->slug = strdup(src[i]->tenant_slug ? src[i]->tenant_slug : "");
		en->tenant = src[i]->tenant_id;
		if (!en->key || !en->slug)
			return -1;
	}
	qsort(v, *n, sizeof(*v), entry_cmp);
	return 0;
}

/* One read of ListBrandHosts into a new table. */
static int refresh(edged_t *e, fd_err_t *err)
{
	struct edge_brands *b = e->brands;
	fd_arena_t a;
	fd_arena_init(&a, (size_t)64 << 20);
	Frontdesk__V1__ListBrandHostsRequest req = FRONTDESK__V1__LIST_BRAND_HOSTS_REQUEST__INIT;
	Frontdesk__V1__ListBrandHostsResponse *resp = NULL;
	int rc = upstream_call(e, UP_AUTHD, "ListBrandHosts", &req.base,
	                       &frontdesk__v1__list_brand_hosts_response__descriptor, &a, (ProtobufCMessage **)&resp, err);
	if (rc < 0)
		goto out;
	table_t *t = calloc(1, sizeof(*t));
	if (!t || !(t->hosts = calloc(resp->n_hosts + 1, sizeof(entry_t))) ||
	    !(t->slugs = calloc(resp->n_tenants + 1, sizeof(entry_t)))) {
		rc = fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		goto fail_table;
	}
	t->refs = 1;
	if (fill(t->hosts, &t->nhosts, resp->hosts, resp->n_hosts, false) < 0 ||
	    fill(t->slugs, &t->nslugs, resp->tenants, resp->n_tenants, true) < 0) {
		rc = fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		goto fail_table;
	}
	pthread_mutex_lock(&b->mu);
	table_t *old = b->table;
	b->table = t;
	b->loaded = true;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
	table_unref(b, old);
	goto out;
fail_table:
	if (t)
		t->refs = 1;
	table_unref(b, t);
out:
	fd_arena_free(&a);
	return rc;
}

static void *refresher(void *arg)
{
	edged_t *e = arg;
	struct edge_brands *b = e->brands;
	bool failing = false;
	for (;;) {
		fd_err_t err = { 0 };
		if (refresh(e, &err) < 0) {
			if (!failing)
				fd_warn("brand host names: cannot read them from authd (%s); keeping the last ones", err.msg);
			failing = true;
		} else if (failing) {
			fd_info("brand host names: read from authd again");
			failing = false;
		}
		pthread_mutex_lock(&b->mu);
		struct timespec ts = fd_real_after(e->cfg->hosts_refresh_ms);
		while (!b->stop && pthread_cond_timedwait(&b->cv, &b->mu, &ts) == 0)
			;
		bool stop = b->stop;
		pthread_mutex_unlock(&b->mu);
		if (stop)
			return NULL;
	}
}

int brands_start(edged_t *e, fd_err_t *err)
{
	struct edge_brands *b = calloc(1, sizeof(*b));
	if (!b)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	e->brands = b;
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	for (const char *s = e->cfg->platform_hosts; *s;) {
		size_t n = strcspn(s, ",");
		char name[256];
		if (n >= sizeof(name) || b->nplatform == MAX_PLATFORM_HOSTS)
			return fd_err_set(err, FD_EINVAL, "FRONTDESK_PLATFORM_HOSTS: at most %d names of 253 characters",
			                  MAX_PLATFORM_HOSTS);
		memcpy(name, s, n);
		name[n] = '\0';
		if (net_host_normalize(name, b->platform[b->nplatform], sizeof(b->platform[0])) < 0)
			return fd_err_set(err, FD_EINVAL, "FRONTDESK_PLATFORM_HOSTS: \"%s\" is not a host name", name);
		b->nplatform++;
		s += n + (s[n] == ',');
	}
	if (pthread_create(&b->thread, NULL, refresher, e) != 0)
		return fd_err_set(err, FD_EUNAVAIL, "cannot start the brand host names' thread");
	b->started = true;
	/* A fresh edge that answered "unknown host" for its first second would
	 * look broken: wait a little for the first table. */
	pthread_mutex_lock(&b->mu);
	struct timespec ts = fd_real_after(1000);
	while (!b->loaded && pthread_cond_timedwait(&b->cv, &b->mu, &ts) == 0)
		;
	pthread_mutex_unlock(&b->mu);
	return 0;
}

void brands_stop(edged_t *e)
{
	struct edge_brands *b = e->brands;
	if (!b)
		return;
	if (b->started) {
		pthread_mutex_lock(&b->mu);
		b->stop = true;
		pthread_cond_broadcast(&b->cv);
		pthread_mutex_unlock(&b->mu);
		pthread_join(b->thread, NULL);
	}
	table_unref(b, b->table);
	pthread_mutex_destroy(&b->mu);
	pthread_cond_destroy(&b->cv);
	free(b);
	e->brands = NULL;
}

bool brands_is_platform_host(edged_t *e, const char *host)
{
	const struct edge_brands *b = e->brands;
	for (int i = 0; i < b->nplatform; i++)
		if (strcmp(b->platform[i], host) == 0)
			return true;
	return false;
}

static bool lookup(edged_t *e, bool by_slug, const char *key, int64_t *tenant, const char **slug, fd_arena_t *arena)
{
	table_t *t = table_ref(e->brands);
	if (!t)
		return false;
	const entry_t *en = by_slug ? find(t->slugs, t->nslugs, key) : find(t->hosts, t->nhosts, key);
	bool ok = en != NULL;
	if (ok) {
		*tenant = en->tenant;
		if (slug && !(*slug = fd_arena_strdup(arena, en->slug)))
			ok = false;
	}
	table_unref(e->brands, t);
	return ok;
}

bool brands_by_host(edged_t *e, const char *host, int64_t *tenant, const char **slug, fd_arena_t *arena)
{
	return lookup(e, false, host, tenant, slug, arena);
}

bool brands_by_slug(edged_t *e, const char *slug, int64_t *tenant, fd_arena_t *arena)
{
	return lookup(e, true, slug, tenant, NULL, arena);
}
