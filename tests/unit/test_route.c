/* test_route.c - Route's choice (services/routerd/route.h) from a table of
 * cases: each lists a tenant's nodes (and the shared pool's), what the
 * viewer asks, and the node and backups it must get, or none. Ordering
 * (region first, weight > 0 before 0, weight x headroom, lowest id, sticky
 * while fit), exclusions (draining, disabled, down, never reported, stream
 * ended, overloaded, format, excluded ids) and backups (another failure
 * domain, then another region, at most 2); then the bandwidth rule and the
 * enum names. */
#include <stdlib.h>
#include <string.h>
#include "enums.h"
#include "regions.h"
#include "route.h"
#include "table.h"
#include "test.h"

#define TENANT 5
#define NOW 1700000000000LL       /* ms; any instant */
#define MISS 2000
#define TS FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_TS
#define M3U8 FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_M3U8
#define RTMP FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_RTMP
#define F(x) (1u << (x))

/* A node: id 0 ends a list. Unset fields: the tenant's own, region "eu",
 * weight 100, empty (0 of 100 connections), a failure domain of its own,
 * UP, ACTIVE, every format. */
typedef struct nspec {
	int64_t id;
	bool pool;                    /* the shared pool's (tenant 0) */
	const char *region;
	int weight;                   /* -1: 0 */
	int conn, max;                /* connections now, max_connections */
	int pend;                     /* routed here since the last report */
	const char *domain;
	char health;                  /* 'u' (default), 'o' overloaded, 'd' silent, 'n' never reported, 'c' stream ended */
	int state;                    /* 0: ACTIVE */
	unsigned formats;             /* F(TS) | ...; 0: all */
} nspec_t;

typedef struct rcase {
	const char *what;
	nspec_t nodes[8];
	const char *region;           /* the client's; NULL: unknown */
	int format;
	int64_t current;
	int64_t exclude[4];           /* 0 ends */
	bool shared;                  /* the tenant may use the shared pool */
	int64_t want[3];              /* node, backups; 0 ends; { 0 }: none fits */
	bool sticky;
	int want_url;                 /* index of the chosen node's URL */
	int counts[4];                /* seen, down, overloaded, unfit; checked when seen > 0 */
} rcase_t;

static const rcase_t cases[] = {
	/* ---- ordering ---- */
	{ "the client's region first, even nearly full",
	  { { .id = 1, .region = "us" }, { .id = 2, .conn = 95 }, { 0 } }, "eu", .want = { 2, 1 } },
	{ "no region known: headroom decides",
	  { { .id = 1, .region = "us" }, { .id = 2, .conn = 95 }, { 0 } }, NULL, .want = { 1, 2 } },
	{ "weight > 0 before weight 0, however full",
	  { { .id = 1, .weight = -1 }, { .id = 2, .weight = 1, .conn = 99 }, { 0 } }, "eu", .want = { 2, 1 } },
	{ "weight 0 nodes still serve when alone",
	  { { .id = 1, .weight = -1 }, { 0 } }, "eu", .want = { 1 } },
	{ "weight x headroom, ties to the lower id",
	  { { .id = 3, .weight = 50 }, { .id = 2, .weight = 200, .conn = 80 }, { .id = 1, .weight = 100, .conn = 50 }, { 0 } }, "eu",
	  .want = { 1, 3, 2 } },
	{ "headroom counts what was routed since the last report",
	  { { .id = 1, .conn = 10, .pend = 30 }, { .id = 2, .conn = 20 }, { 0 } }, "eu", .want = { 2, 1 } },
	{ "a full node has no headroom, but weight > 0 still counts",
	  { { .id = 1, .conn = 100, .max = 100 }, { .id = 2, .weight = -1 }, { 0 } }, "eu", .want = { 1, 2 } },
	{ "sticky: the current node while it fits, even if worse",
	  { { .id = 1 }, { .id = 2, .conn = 80 }, { 0 } }, "eu", .current = 2, .want = { 2, 1 }, .sticky = true },
	{ "not sticky once the current node is overloaded",
	  { { .id = 1, .conn = 50 }, { .id = 2, .health = 'o' }, { .id = 3 }, { 0 } }, "eu", .current = 2, .want = { 3, 1 } },
	{ "not sticky once the current node is excluded",
	  { { .id = 1, .conn = 50 }, { .id = 2 }, { 0 } }, "eu", .current = 2, .exclude = { 2 }, .want = { 1 } },
	{ "not sticky to a node of another tenant",
	  { { .id = 1, .conn = 50 }, { .id = 2, .pool = true }, { 0 } }, "eu", .current = 2, .want = { 1 } },

	/* ---- exclusions ---- */
	{ "draining and disabled nodes take no one",
	  { { .id = 1, .state = STATE_DRAINING }, { .id = 2, .state = STATE_DISABLED }, { .id = 3, .conn = 90 }, { 0 } }, "eu",
	  .want = { 3 }, .counts = { 3, 0, 0, 2 } },
	{ "down: silent past the miss window, never reported, stream ended",
	  { { .id = 1, .health = 'd' }, { .id = 2, .health = 'n' }, { .id = 3, .health = 'c' }, { .id = 4, .conn = 90 }, { 0 } }, "eu",
	  .want = { 4 }, .counts = { 4, 3, 0, 0 } },
	{ "overloaded nodes take no one",
	  { { .id = 1, .health = 'o' }, { .id = 2, .conn = 90 }, { 0 } }, "eu", .want = { 2 }, .counts = { 2, 0, 1, 0 } },
	{ "a node without the format is left out; the URL is the format's",
	  { { .id = 1, .formats = F(TS) }, { .id = 2, .formats = F(TS) | F(M3U8), .conn = 90 }, { 0 } }, "eu", .format = M3U8,
	  .want = { 2 }, .want_url = 1, .counts = { 2, 0, 0, 1 } },
	{ "any format: the first URL",
	  { { .id = 1, .formats = F(RTMP) }, { 0 } }, "eu", .format = 0, .want = { 1 }, .want_url = 0 },
	{ "excluded ids are left out",
	  { { .id = 1 }, { .id = 2 }, { .id = 3, .conn = 90 }, { 0 } }, "eu", .exclude = { 1, 2 }, .want = { 3 },
	  .counts = { 3, 0, 0, 2 } },
	{ "nothing fits",
	  { { .id = 1, .health = 'd' }, { .id = 2, .health = 'o' }, { .id = 3, .state = STATE_DRAINING }, { 0 } }, "eu",
	  .want = { 0 }, .counts = { 3, 1, 1, 1 } },
	{ "no nodes at all", { { 0 } }, "eu", .want = { 0 } },

	/* ---- the shared pool ---- */
	{ "the shared pool only when allowed",
	  { { .id = 1, .conn = 90 }, { .id = 2, .pool = true }, { 0 } }, "eu", .want = { 1 }, .counts = { 1, 0, 0, 0 } },
	{ "the shared pool competes with the tenant's own when allowed",
	  { { .id = 1, .conn = 90 }, { .id = 2, .pool = true }, { 0 } }, "eu", .shared = true, .want = { 2, 1 } },

	/* ---- backups ---- */
	{ "backups: another failure domain before a better node in the same one",
	  { { .id = 1, .domain = "dc1" }, { .id = 2, .domain = "dc1", .conn = 10 }, { .id = 3, .domain = "dc2", .conn = 60 }, { 0 } },
	  "eu", .want = { 1, 3, 2 } },
	{ "backups: then another region than the node's",
	  { { .id = 1, .domain = "dc1" }, { .id = 2, .domain = "dc2" }, { .id = 3, .domain = "dc3", .region = "us", .conn = 90 }, { 0 } },
	  "eu", .want = { 1, 3, 2 } },
	{ "backups: the second avoids the first backup's domain too",
	  { { .id = 1, .domain = "a" }, { .id = 2, .domain = "b" }, { .id = 3, .domain = "b", .conn = 1 }, { .id = 4, .domain = "c", .conn = 50 },
	    { 0 } }, "eu", .want = { 1, 2, 4 } },
	{ "backups: nodes of no named domain are each their own",
	  { { .id = 1 }, { .id = 2, .conn = 10 }, { .id = 3, .conn = 20 }, { 0 } }, "eu", .want = { 1, 2, 3 } },
	{ "backups: at most two",
	  { { .id = 1 }, { .id = 2 }, { .id = 3 }, { .id = 4 }, { .id = 5 }, { 0 } }, "eu", .want = { 1, 2, 3 } },
	{ "backups: the same domain when there is no other",
	  { { .id = 1, .domain = "x" }, { .id = 2, .domain = "x", .conn = 50 }, { 0 } }, "eu", .want = { 1, 2 } },
	{ "backups: never an ineligible node",
	  { { .id = 1 }, { .id = 2, .health = 'd' }, { .id = 3, .state = STATE_DRAINING }, { 0 } }, "eu", .want = { 1 } },
	{ "backups of a sticky node follow the same rules",
	  { { .id = 1, .domain = "a" }, { .id = 2, .domain = "a", .conn = 70 }, { .id = 3, .domain = "b", .conn = 80 }, { 0 } }, "eu",
	  .current = 2, .want = { 2, 3, 1 }, .sticky = true },
};

static regions_t regions;

static char *dup(const char *s)
{
	char *d = strdup(s);
	if (!d)
		abort();
	return d;
}

static void add_node(rtable_t *t, const nspec_t *s)
{
	rcfg_t *c = calloc(1, sizeof(*c));
	if (!c)
		abort();
	c->name = dup("node");
	unsigned formats = s->formats ? s->formats : F(TS) | F(M3U8) | F(RTMP);
	for (int f = TS; f <= RTMP; f++)
		if (formats & F(f)) {
			c->formats[c->nurls] = f;
			c->urls[c->nurls++] = dup("http://node.example");
		}
	c->region = region_find(&regions, s->region ? s->region : "eu");
	c->failure_domain = dup(s->domain ? s->domain : "");
	c->max_connections = s->max ? s->max : 100;
	c->max_egress_mbps = 1000;
	c->weight = s->weight < 0 ? 0 : s->weight ? s->weight : 100;
	c->high_water = 90;
	c->low_water = 75;
	c->state = s->state ? s->state : STATE_ACTIVE;
	c->state_reason = dup("");
	cfg_derive(c);
	rnode_t *n;
	rcfg_t *old;
	if (table_put(t, s->pool ? 0 : TENANT, s->id, c, &n, &old) < 0)
		abort();
	rlive_t l = { .conn = s->conn, .hb_ms = NOW - 100 };
	switch (s->health) {
	case 'o': l.overloaded = true; break;
	case 'd': l.hb_ms = NOW - MISS - 1; break;
	case 'n': l.hb_ms = 0; break;
	case 'c': l.closed_ms = l.hb_ms + 1; break;
	}
	node_take_live(n, &l);
	atomic_store(&n->pend_conn, s->pend);
}

static void run_case(size_t i, const rcase_t *k)
{
	rtable_t t;
	if (table_init(&t, MISS) < 0)
		abort();
	for (const nspec_t *s = k->nodes; s->id; s++)
		add_node(&t, s);
	size_t nex = 0;
	while (nex < 4 && k->exclude[nex])
		nex++;
	route_ask_t ask = { .tenant = TENANT, .shared = k->shared, .region = k->region ? region_find(&regions, k->region) : -1,
		                .format = k->format, .current = k->current, .exclude = k->exclude, .nexclude = nex };
	route_pick_t p;
	int rc = route_pick(&t, &ask, NOW, &p);
	CHECK(rc == 0, "case %zu (%s): rc %d", i, k->what, rc);
	int nwant = 0;
	while (nwant < 3 && k->want[nwant])
		nwant++;
	char got[64] = "", want[64] = "";
	for (int j = 0; j < p.n; j++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), " %lld", (long long)p.node[j]->id);
	for (int j = 0; j < nwant; j++)
		snprintf(want + strlen(want), sizeof(want) - strlen(want), " %lld", (long long)k->want[j]);
	CHECK(strcmp(got, want) == 0, "case %zu (%s): got [%s ] want [%s ]", i, k->what, got, want);
	CHECK(p.sticky == k->sticky, "case %zu (%s): sticky %d", i, k->what, p.sticky);
	if (p.n > 0)
		CHECK(p.url[0] == k->want_url, "case %zu (%s): url %d want %d", i, k->what, p.url[0], k->want_url);
	if (k->counts[0])
		CHECK(p.seen == (size_t)k->counts[0] && p.down == (size_t)k->counts[1] &&
		      p.overloaded == (size_t)k->counts[2] && p.unfit == (size_t)k->counts[3],
		      "case %zu (%s): counts %zu %zu %zu %zu", i, k->what, p.seen, p.down, p.overloaded, p.unfit);
	table_free(&t);
}

/* ---- the bandwidth rule ---- */

typedef struct bcase {
	int64_t cap_mbps;
	int policy;
	int64_t min_kbps;
	double egress;
	int64_t bitrate_kbps;
	int want;                     /* 0 route, 1 route capped, -1 refuse */
	int64_t want_cap;
} bcase_t;

static const bcase_t bcases[] = {
	{ 100, POLICY_REFUSE, 1000, 50.0, 0, 0, 0 },
	{ 100, POLICY_REFUSE, 1000, 99.0, 1000, 0, 0 },          /* exactly at the cap once routed: fits */
	{ 100, POLICY_REFUSE, 1000, 99.0, 1001, -1, 0 },
	{ 100, POLICY_REFUSE, 1000, 100.0, 0, -1, 0 },            /* bitrate unknown: refused at the cap */
	{ 100, POLICY_LOWER_BITRATE, 1000, 98.5, 3000, 1, 1500 }, /* what is left */
	{ 100, POLICY_LOWER_BITRATE, 1000, 99.8, 3000, 1, 1000 }, /* never below the floor */
	{ 100, POLICY_LOWER_BITRATE, 500, 120.0, 0, 1, 500 },     /* past the cap: the floor */
	{ 100, POLICY_LOWER_BITRATE, 0, 100.0, 0, 1, 0 },
};

int main(void)
{
	fd_err_t err;
	if (regions_parse(&regions, "eu=GB FR;us=US;ap=JP", &err) < 0) {
		fprintf(stderr, "regions: %s\n", err.msg);
		return 1;
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(i, &cases[i]);
	for (size_t i = 0; i < sizeof(bcases) / sizeof(bcases[0]); i++) {
		const bcase_t *b = &bcases[i];
		rtenant_t t = TENANT_DEFAULTS;
		t.max_egress_mbps = b->cap_mbps;
		t.policy = b->policy;
		t.min_bitrate_kbps = b->min_kbps;
		int64_t cap = -1;
		int rc = route_bandwidth(&t, b->egress, b->bitrate_kbps, &cap);
		CHECK(rc == b->want, "bandwidth case %zu: got %d want %d", i, rc, b->want);
		if (rc == 1)
			CHECK(cap == b->want_cap, "bandwidth case %zu: cap %lld want %lld", i, (long long)cap,
			      (long long)b->want_cap);
	}
	/* The enum names routerd writes (audit details): each way round. */
	const enum_name_t *tables[] = { NODE_STATE_NAMES, NODE_HEALTH_NAMES, BANDWIDTH_POLICY_NAMES };
	for (size_t i = 0; i < 3; i++)
		for (const enum_name_t *e = tables[i]; e->name; e++)
			CHECK(enum_value(tables[i], enum_name(tables[i], e->value)) == e->value, "enum %s", e->name);
	CHECK(strcmp(enum_name(NODE_STATE_NAMES, STATE_DRAINING), "draining") == 0, "draining");
	CHECK(strcmp(enum_name(BANDWIDTH_POLICY_NAMES, POLICY_LOWER_BITRATE), "lower_bitrate") == 0, "lower_bitrate");
	CHECK(strcmp(enum_name(NODE_STATE_NAMES, 9), "unknown") == 0 && enum_value(NODE_HEALTH_NAMES, "sick") == -1,
	      "unknown values and names");
	return test_summary();
}
