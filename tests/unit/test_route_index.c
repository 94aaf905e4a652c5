/* test_route_index.c - Route's candidate index (services/routerd/index.h)
 * against the pass over every node it replaced: the reference below is
 * route_pick as it was at 464928d (gather, better, backup_key: the old
 * route.c, copied as it was but for names), run over the same table.
 *
 *  1. Random tables, thousands of them: the tenant's nodes, the shared
 *     pool's (tenant 0) and another tenant's, over regions (one not
 *     configured here), failure domains (named, and "" = each its own),
 *     weights (0 too), formats (none, some, all, in any URL order), states,
 *     capacities; health through the live fields (never reported, reported
 *     within or past miss_ms, exactly at it, stream ended, overloaded).
 *     Random asks (the tenant, the platform's own, another tenant; the pool
 *     allowed or not; a client region or none; each format; a current node
 *     of any kind; up to 4 exclusions) compare the node, its backups, their
 *     URLs, stickiness and the error's counts with the reference, exactly.
 *     Between asks the table changes the ways routerd changes it: reports
 *     (each replayed by index_touch, as beat.c does), streams ending, Route
 *     counting a viewer on its primary and replaying it (rd_route), viewers
 *     counted and not replayed yet (a Route between its count and its
 *     replay: stored keys above the live ones), time passing (nodes going
 *     silent, some exactly at miss_ms and one ms later), settings changed
 *     (region, state, weight, domain, formats, capacity: table_put) and new
 *     nodes registered.
 *  2. Fleets like bench/routing.sh's (1,000 and 10,000 nodes): the same
 *     comparison, and the leaves a choice looks at stay far below the
 *     fleet (printed).
 *  3. Searches racing replays: a node whose key falls and rises while other
 *     threads route; each answer must be one of the two nodes that can be
 *     best at any instant, never a worse one a half-seen replay would give.
 *
 * FD_TEST_SEED sets the seed (printed on failure), FD_TEST_TABLES the number
 * of random tables. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "index.h"
#include "regions.h"
#include "route.h"
#include "table.h"
#include "test.h"
#include "fd/tenant.h"

#define TENANT 5
#define OTHER 7                   /* another tenant: never chosen for TENANT */
#define MISS 2000
#define NREGIONS 4
#define TS FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_TS
#define RTMP FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_RTMP

static regions_t regions;
static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

/* 0 .. n-1 */
static int64_t below(int64_t n)
{
	return (int64_t)(rnd() % (uint64_t)n);
}

static bool chance(int percent)
{
	return below(100) < percent;
}

static char *dup(const char *s)
{
	char *d = strdup(s);
	if (!d)
		abort();
	return d;
}

/* ---- the reference: route_pick at 464928d ---- */

typedef struct cand {
	rnode_t *n;
	int64_t id;
	double key;
	uint64_t domain;
	int region;
	int url;
} cand_t;

#define KEY_REGION 4e4
#define KEY_WEIGHTED 2e4

static bool ref_excluded(const route_ask_t *ask, int64_t id)
{
	for (size_t i = 0; i < ask->nexclude; i++)
		if (ask->exclude[i] == id)
			return true;
	return false;
}

static bool better(const cand_t *a, const cand_t *b)
{
	return a->key != b->key ? a->key > b->key : a->id < b->id;
}

static bool same_domain(const cand_t *a, const cand_t *b)
{
	return a->domain && b->domain ? a->domain == b->domain : a->id == b->id;
}

static double backup_key(const cand_t *c, cand_t *const *chosen, int nchosen)
{
	bool other_domain = true;
	for (int i = 0; i < nchosen; i++)
		other_domain &= !same_domain(c, chosen[i]);
	return (other_domain ? 2e5 : 0) + (c->region != chosen[0]->region ? 1e5 : 0) + c->key;
}

static size_t gather(const rtable_t *t, const route_ask_t *ask, size_t lo, size_t hi, int64_t now, cand_t *cands,
                     size_t nc, route_pick_t *out)
{
	for (size_t i = lo; i < hi; i++) {
		rnode_t *n = t->nodes[i];
		out->seen++;
		health_t h = node_health(t, n, now);
		if (h != HEALTH_UP) {
			if (h == HEALTH_DOWN)
				out->down++;
			else
				out->overloaded++;
			continue;
		}
		int url = n->url_of[ask->format];
		if (n->state != STATE_ACTIVE || url < 0 || (ask->nexclude && ref_excluded(ask, n->id))) {
			out->unfit++;
			continue;
		}
		double headroom = 1.0 - node_fill(n, true);
		cands[nc++] = (cand_t){ .n = n, .id = n->id, .domain = n->domain, .region = n->region, .url = url,
		                        .key = (ask->region >= 0 && n->region == ask->region ? KEY_REGION : 0) +
		                               (n->weight > 0 ? KEY_WEIGHTED : 0) + n->weight * (headroom > 0 ? headroom : 0) };
	}
	return nc;
}

static void ref_pick(const rtable_t *t, const route_ask_t *ask, int64_t now, route_pick_t *out)
{
	memset(out, 0, sizeof(*out));
	size_t olo, ohi, slo = 0, shi = 0;
	table_range(t, ask->tenant, &olo, &ohi);
	if (ask->shared && ask->tenant != FD_PLATFORM_TENANT)
		table_range(t, FD_PLATFORM_TENANT, &slo, &shi);
	cand_t *cands = malloc(((ohi - olo) + (shi - slo) + 1) * sizeof(*cands));
	if (!cands)
		abort();
	size_t nc = gather(t, ask, olo, ohi, now, cands, 0, out);
	nc = gather(t, ask, slo, shi, now, cands, nc, out);

	cand_t *chosen[1 + ROUTE_MAX_BACKUPS] = { 0 };
	for (size_t i = 0; i < nc; i++) {
		if (ask->current && cands[i].id == ask->current)
			chosen[0] = &cands[i];
	}
	out->sticky = chosen[0] != NULL;
	for (size_t i = 0; !out->sticky && i < nc; i++)
		if (!chosen[0] || better(&cands[i], chosen[0]))
			chosen[0] = &cands[i];
	int nchosen = chosen[0] ? 1 : 0;
	while (nchosen > 0 && nchosen < 1 + ROUTE_MAX_BACKUPS) {
		cand_t *best = NULL;
		double best_key = -1;
		for (size_t i = 0; i < nc; i++) {
			cand_t *c = &cands[i];
			if (c == chosen[0] || c == chosen[1])
				continue;
			double k = backup_key(c, chosen, nchosen);
			if (k > best_key || (k == best_key && c->id < best->id)) {
				best = c;
				best_key = k;
			}
		}
		if (!best)
			break;
		chosen[nchosen++] = best;
	}
	for (int i = 0; i < nchosen; i++) {
		out->node[i] = chosen[i]->n;
		out->url[i] = chosen[i]->url;
	}
	out->n = nchosen;
	free(cands);
}

/* ---- tables ---- */

static const char *const REGION_NAMES[] = { "r0", "r1", "r2", "r3", "gone" };   /* "gone": not configured (-1) */
static const char *const DOMAINS[] = { "", "", "a", "b", "c", "d" };
static const int WEIGHTS[] = { 0, 1, 50, 100, 100, 200, 10000 };
static const int MAXCONN[] = { 1, 50, 100, 100, 1000 };

/* Random settings; state ACTIVE most of the time. */
static rcfg_t *random_cfg(int nregions, int ndomains)
{
	rcfg_t *c = calloc(1, sizeof(*c));
	if (!c)
		abort();
	c->name = dup("node");
	int order[3] = { TS, TS + 1, RTMP };
	for (int i = 2; i > 0; i--) {
		int j = (int)below(i + 1), x = order[i];
		order[i] = order[j];
		order[j] = x;
	}
	int nurls = chance(3) ? 0 : chance(50) ? 3 : 1 + (int)below(2);
	for (int i = 0; i < nurls; i++) {
		c->formats[c->nurls] = order[i];
		c->urls[c->nurls++] = dup("http://node.example");
	}
	c->region = region_find(&regions, REGION_NAMES[chance(5) ? NREGIONS : below(nregions)]);
	c->failure_domain = dup(DOMAINS[below(ndomains)]);
	c->max_connections = MAXCONN[below(5)];
	c->max_egress_mbps = chance(50) ? 1000 : 100;
	c->weight = WEIGHTS[below(7)];
	c->high_water = 90;
	c->low_water = 75;
	c->state = chance(85) ? STATE_ACTIVE : chance(50) ? STATE_DRAINING : STATE_DISABLED;
	c->state_reason = dup("");
	cfg_derive(c);
	return c;
}

static void put(rtable_t *t, int64_t tenant, int64_t id, rcfg_t *c)
{
	rnode_t *n;
	rcfg_t *old;
	if (table_put(t, tenant, id, c, &n, &old) < 0)
		abort();
	cfg_free(old);
}

/* A report as beat.c applies one (hb at or before now), replayed. */
static void report(rnode_t *n, int64_t now)
{
	const rcfg_t *c = n->cfg;
	pthread_mutex_lock(&n->mu);
	int r = (int)below(10);
	int64_t hb = r < 6 ? now - below(MISS / 2) : r < 8 ? now - MISS : r < 9 ? now - MISS - 1 : now;
	atomic_store(&n->conn, (int32_t)below(c->max_connections + c->max_connections / 8 + 2));
	atomic_store(&n->egress, chance(30) ? (double)below(c->max_egress_mbps + 10) : 0.0);
	atomic_store(&n->pend_conn, 0);
	atomic_store(&n->pend_kbps, 0);
	atomic_store(&n->overloaded, chance(8));
	atomic_store(&n->hb_ms, hb);
	pthread_mutex_unlock(&n->mu);
	index_touch(n);
}

/* The first live fields of a node: never reported, reported, its stream
 * ended after its report. */
static void first_live(rnode_t *n, int64_t now)
{
	if (chance(6))
		return;
	report(n, now);
	if (chance(6)) {
		atomic_store(&n->closed_ms, atomic_load(&n->hb_ms) + below(2));
		index_touch(n);
	}
}

static int64_t node_tenant(void)
{
	int r = (int)below(10);
	return r < 4 ? TENANT : r < 9 ? FD_PLATFORM_TENANT : OTHER;
}

static rnode_t *any_node(const rtable_t *t)
{
	return t->n ? t->nodes[below((int64_t)t->n)] : NULL;
}

static void random_ask(const rtable_t *t, route_ask_t *ask, int64_t *exclude)
{
	memset(ask, 0, sizeof(*ask));
	int r = (int)below(20);
	ask->tenant = r < 17 ? TENANT : r < 19 ? FD_PLATFORM_TENANT : OTHER;
	ask->shared = chance(60);
	ask->region = chance(15) ? -1 : (int)below(NREGIONS);
	ask->format = (int)below(4);
	r = (int)below(10);
	rnode_t *n = any_node(t);
	ask->current = r < 4 || !n ? 0 : r < 9 ? n->id : 999999;
	ask->nexclude = chance(60) ? 0 : (size_t)below(5);
	for (size_t i = 0; i < ask->nexclude; i++) {
		rnode_t *x = any_node(t);
		exclude[i] = x ? x->id : 1;
	}
	ask->exclude = exclude;
}

static unsigned long compared, mismatches;

static void describe(char *buf, size_t len, const route_pick_t *p)
{
	buf[0] = 0;
	for (int i = 0; i < p->n; i++)
		snprintf(buf + strlen(buf), len - strlen(buf), " %lld/u%d", (long long)p->node[i]->id, p->url[i]);
	snprintf(buf + strlen(buf), len - strlen(buf), "%s counts %zu %zu %zu %zu", p->sticky ? " sticky" : "", p->seen,
	         p->down, p->overloaded, p->unfit);
}

/* One ask both ways; the index's choice returned in *got. */
static bool compare(const rtable_t *t, const route_ask_t *ask, int64_t now, route_pick_t *got, const char *where)
{
	route_pick_t want;
	ref_pick(t, ask, now, &want);
	int rc = route_pick(t, ask, now, got);
	bool same = rc == 0 && got->n == want.n && got->sticky == want.sticky && got->seen == want.seen &&
	            got->down == want.down && got->overloaded == want.overloaded && got->unfit == want.unfit;
	for (int i = 0; same && i < want.n; i++)
		same = got->node[i] == want.node[i] && got->url[i] == want.url[i];
	compared++;
	if (!same) {
		mismatches++;
		char a[256], b[256];
		describe(a, sizeof(a), got);
		describe(b, sizeof(b), &want);
		CHECK(same, "%s: tenant %lld shared %d region %d format %d current %lld, %zu excluded: got [%s] want [%s]",
		      where, (long long)ask->tenant, ask->shared, ask->region, ask->format, (long long)ask->current,
		      ask->nexclude, a, b);
	}
	return same;
}

/* One of the ways routerd changes the table. */
static void mutate(rtable_t *t, int64_t *now, int64_t *next_id, int nregions, int ndomains)
{
	rnode_t *n = any_node(t);
	int r = (int)below(100);
	if (!n || r < 4) {                        /* a node registered */
		int64_t id = (*next_id)++;
		put(t, node_tenant(), id, random_cfg(nregions, ndomains));
		first_live(table_get(t, id), *now);
	} else if (r < 30) {                      /* a report */
		report(n, *now);
	} else if (r < 45) {                      /* Route counted a viewer there and replays it */
		atomic_fetch_add(&n->pend_conn, 1 + (int32_t)below(3));
		atomic_fetch_add(&n->pend_kbps, 4000);
		index_touch(n);
	} else if (r < 52) {                      /* ... and has not replayed it yet */
		atomic_fetch_add(&n->pend_conn, 1 + (int32_t)below(5));
	} else if (r < 57) {                      /* its stream ended */
		atomic_store(&n->closed_ms, *now);
		index_touch(n);
	} else if (r < 72) {                      /* time passes */
		*now += below(MISS / 3);
	} else if (r < 80) {                      /* up to exactly miss_ms after a node's report, or 1 ms past */
		int64_t hb = atomic_load(&n->hb_ms);
		if (hb && hb + MISS + 1 > *now)
			*now = hb + MISS + (chance(50) ? 1 : 0);
	} else if (r < 92) {                      /* its settings changed */
		put(t, n->tenant, n->id, random_cfg(nregions, ndomains));
	} else {                                  /* a restart's read of live fields: only newer ones */
		rlive_t l = { .hb_ms = *now - below(MISS), .conn = (int32_t)below(n->cfg->max_connections + 1),
			          .egress = 0, .overloaded = chance(5) };
		node_take_live(n, &l);
	}
}

static void random_table(int k)
{
	rtable_t t;
	if (table_init(&t, MISS) < 0)
		abort();
	int r = (int)below(10);
	int nnodes = r < 4 ? 1 + (int)below(8) : r < 8 ? 9 + (int)below(56) : 65 + (int)below(400);
	int nregions = 1 + (int)below(NREGIONS), ndomains = 1 + (int)below(6);
	int64_t now = 1700000000000LL + below(1000000), next_id = 1;
	for (int i = 0; i < nnodes; i++) {
		/* ids not in tenant order, some far apart */
		int64_t id = next_id + (chance(10) ? 1000 : 0);
		next_id = id + 1;
		put(&t, node_tenant(), id, random_cfg(nregions, ndomains));
		first_live(table_get(&t, id), now);
	}
	char where[64];
	for (int step = 0; step < 40; step++) {
		int nm = (int)below(4);
		for (int i = 0; i < nm; i++)
			mutate(&t, &now, &next_id, nregions, ndomains);
		for (int a = 0; a < 3; a++) {
			route_ask_t ask;
			int64_t exclude[4];
			random_ask(&t, &ask, exclude);
			route_pick_t got;
			snprintf(where, sizeof(where), "table %d (%zu nodes) step %d", k, t.n, step);
			if (!compare(&t, &ask, now, &got, where))
				continue;
			/* As rd_route: the viewer counted on a new primary, replayed. */
			if (got.n > 0 && !got.sticky && chance(50)) {
				atomic_fetch_add(&got.node[0]->pend_conn, 1);
				atomic_fetch_add(&got.node[0]->pend_kbps, 4000);
				index_touch(got.node[0]);
			}
		}
	}
	table_free(&t);
}

/* ---- fleets like bench/routing.sh's ---- */

static double cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static const char *const COUNTRIES[] = { "GB", "DE", "US", "BR", "IN", "JP", "SG", "AE", "ZA", "AU", "FR", "CA", "" };

static void fleet(int nodes)
{
	regions_t big;
	fd_err_t err;
	if (regions_parse(&big, "eu-west=GB FR;eu-central=DE;eu-east=RO;us-east=US CA;us-west=MX;sa-east=BR;"
	                        "me-central=AE;af-south=ZA;ap-south=IN;ap-east=JP;ap-southeast=SG;oc=AU", &err) < 0) {
		fprintf(stderr, "regions: %s\n", err.msg);
		abort();
	}
	rtable_t t;
	if (table_init(&t, MISS) < 0)
		abort();
	int64_t now = 1700000000000LL;
	int nshared = nodes * 80 / 100;
	for (int i = 0; i < nodes; i++) {
		bool pool = i < nshared;
		int j = pool ? i : i - nshared, nreg = pool ? 12 : 4, region = j % nreg;
		rcfg_t *c = calloc(1, sizeof(*c));
		if (!c)
			abort();
		char name[32];
		snprintf(name, sizeof(name), "n%d", i);
		c->name = dup(name);
		c->formats[0] = TS;
		c->urls[c->nurls++] = dup("http://node.example");
		c->region = region;
		snprintf(name, sizeof(name), "%s-r%d-d%d", pool ? "pool" : "own", region, (j / nreg) % 4);
		c->failure_domain = dup(name);
		c->max_connections = 100000;
		c->max_egress_mbps = 100000;
		c->weight = 100;
		c->high_water = 90;
		c->low_water = 75;
		c->state = STATE_ACTIVE;
		c->state_reason = dup("");
		cfg_derive(c);
		put(&t, pool ? FD_PLATFORM_TENANT : TENANT, 1 + i, c);
		rnode_t *n = table_get(&t, 1 + i);
		rlive_t l = { .hb_ms = now - below(MISS / 2), .conn = (int32_t)below(50) };
		node_take_live(n, &l);
	}
	unsigned long leaves = 0, routes = 0;
	char where[64];
	snprintf(where, sizeof(where), "fleet of %d", nodes);
	for (int i = 0; i < 3000; i++) {
		route_ask_t ask = { .tenant = TENANT, .shared = true, .format = TS };
		ask.region = region_of_country(&big, COUNTRIES[i % 13]);
		route_pick_t got;
		bool ok = compare(&t, &ask, now, &got, where);
		CHECK(got.n == 3, "%s: %d chosen", where, got.n);
		leaves += got.leaves;
		routes++;
		if (ok && got.n > 0) {
			atomic_fetch_add(&got.node[0]->pend_conn, 1);
			atomic_fetch_add(&got.node[0]->pend_kbps, 4000);
			index_touch(got.node[0]);
		}
		if (i % 3 == 0) {                     /* the keeper: a node reports */
			rnode_t *n = t.nodes[below((int64_t)t.n)];
			pthread_mutex_lock(&n->mu);
			atomic_store(&n->conn, (int32_t)below(50));
			atomic_store(&n->pend_conn, 0);
			atomic_store(&n->pend_kbps, 0);
			atomic_store(&n->hb_ms, now);
			pthread_mutex_unlock(&n->mu);
			index_touch(n);
		}
		now += 1;
	}
	double per = (double)leaves / (double)routes;
	/* The CPU a choice costs here, each way (printed, not checked: the
	 * machine's noise is no test's business). */
	route_ask_t ask = { .tenant = TENANT, .shared = true, .format = TS };
	double ns[2];
	for (int way = 0; way < 2; way++) {
		int calls = way == 0 ? 20000 : 1000;
		double t0 = cpu_ns();
		for (int i = 0; i < calls; i++) {
			ask.region = region_of_country(&big, COUNTRIES[i % 13]);
			route_pick_t got;
			if (way == 0) {
				if (route_choose(&t, &ask, now, &got) < 0)
					abort();
				atomic_fetch_add(&got.node[0]->pend_conn, 1);
				index_touch(got.node[0]);
			} else {
				ref_pick(&t, &ask, now, &got);
				atomic_fetch_add(&got.node[0]->pend_conn, 1);
			}
		}
		ns[way] = (cpu_ns() - t0) / calls;
	}
	printf("fleet of %d nodes: %.1f index leaves looked at per Route (node and 2 backups); CPU per choice: "
	       "%.2f us from the index (with its replay), %.1f us by the pass over every node\n", nodes, per,
	       ns[0] / 1000, ns[1] / 1000);
	CHECK(per < 64, "fleet of %d: %.1f leaves per Route", nodes, per);
	table_free(&t);
}

/* ---- searches racing replays ---- */

/* The tenant's node b (key 2e4 + 3) in r0; in the pool's r0 cell, k (2e4 +
 * 5) and j, whose key a writer moves between 2e4 + 10 and 2e4 + 1, and
 * 1,000 weight-0 nodes, so that j's replays walk a long path. The best is
 * j or k at every instant; b only by a subtree left out on a winner's key
 * seen fallen before its winner moved. */
typedef struct race {
	rtable_t t;
	rnode_t *j;
	_Atomic bool stop;
	_Atomic unsigned long wrong, routes;
} race_t;

static void *race_writer(void *arg)
{
	race_t *r = arg;
	pthread_rwlock_rdlock(&r->t.lock);
	for (unsigned long i = 0; !atomic_load(&r->stop); i++) {
		atomic_store(&r->j->conn, i % 2 ? 90 : 99);
		index_touch(r->j);
	}
	pthread_rwlock_unlock(&r->t.lock);
	return NULL;
}

static void *race_reader(void *arg)
{
	race_t *r = arg;
	route_ask_t ask = { .tenant = TENANT, .shared = true, .region = 0, .format = TS };
	int64_t now = 1700000000000LL;
	for (int i = 0; i < 250000; i++) {
		route_pick_t p;
		pthread_rwlock_rdlock(&r->t.lock);
		if (route_choose(&r->t, &ask, now, &p) < 0)
			abort();
		pthread_rwlock_unlock(&r->t.lock);
		if (p.n == 0 || (p.node[0]->id != 2 && p.node[0]->id != 3))
			atomic_fetch_add(&r->wrong, 1);
		atomic_fetch_add(&r->routes, 1);
	}
	return NULL;
}

static void race_node(race_t *r, int64_t tenant, int64_t id, int weight, int conn)
{
	rcfg_t *c = calloc(1, sizeof(*c));
	if (!c)
		abort();
	c->name = dup("node");
	c->formats[0] = TS;
	c->urls[c->nurls++] = dup("http://node.example");
	c->region = 0;
	c->failure_domain = dup("");
	c->max_connections = 100;
	c->max_egress_mbps = 1000;
	c->weight = weight;
	c->high_water = 100;
	c->low_water = 75;
	c->state = STATE_ACTIVE;
	c->state_reason = dup("");
	cfg_derive(c);
	put(&r->t, tenant, id, c);
	rlive_t l = { .hb_ms = 1700000000000LL, .conn = conn };
	node_take_live(table_get(&r->t, id), &l);
}

static void race(void)
{
	race_t r;
	memset(&r, 0, sizeof(r));
	if (table_init(&r.t, 1000000000) < 0)
		abort();
	race_node(&r, TENANT, 1, 100, 97);                 /* b */
	race_node(&r, FD_PLATFORM_TENANT, 2, 100, 90);     /* j */
	race_node(&r, FD_PLATFORM_TENANT, 3, 100, 95);     /* k */
	for (int i = 0; i < 1000; i++)
		race_node(&r, FD_PLATFORM_TENANT, 10 + i, 0, 0);
	r.j = table_get(&r.t, 2);
	pthread_t w, rd[2];
	pthread_create(&w, NULL, race_writer, &r);
	for (int i = 0; i < 2; i++)
		pthread_create(&rd[i], NULL, race_reader, &r);
	for (int i = 0; i < 2; i++)
		pthread_join(rd[i], NULL);
	atomic_store(&r.stop, true);
	pthread_join(w, NULL);
	uint64_t touches, waits, drops, retries, locked;
	index_stats(&r.t, &touches, &waits, &drops, &retries, &locked);
	printf("race: %lu routes against %llu replays of one node: %lu wrong; %llu searches made again, %llu under "
	       "the cell's lock\n", atomic_load(&r.routes), (unsigned long long)touches, atomic_load(&r.wrong),
	       (unsigned long long)retries, (unsigned long long)locked);
	CHECK(atomic_load(&r.wrong) == 0, "race: %lu answers neither j nor k", atomic_load(&r.wrong));
	table_free(&r.t);
}

int main(void)
{
	fd_err_t err;
	if (regions_parse(&regions, "r0=GB;r1=US;r2=JP;r3=BR", &err) < 0) {
		fprintf(stderr, "regions: %s\n", err.msg);
		return 1;
	}
	const char *s = getenv("FD_TEST_SEED"), *nt = getenv("FD_TEST_TABLES");
	uint64_t seed = s ? strtoull(s, NULL, 0) : 0x5eed14;
	rng_state = seed ? seed : 1;
	int tables = nt ? atoi(nt) : 2500;
	for (int k = 0; k < tables && mismatches < 20; k++)
		random_table(k);
	printf("%lu random choices compared with the pass over every node, %lu differ (seed %#llx)\n", compared,
	       mismatches, (unsigned long long)seed);
	fleet(1000);
	fleet(10000);
	race();
	return test_summary();
}
