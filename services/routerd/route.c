/* route.c - Route: which node serves a viewer, with backups, from memory.
 * The choice (route.h) is pure over the table; rd_route checks the request,
 * applies the tenant's bandwidth cap, and answers. */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <arpa/inet.h>
#include "routerd.h"
#include "route.h"
#include "fd/tenant.h"

#define MAX_EXCLUDE 16
#define MAX_BITRATE_KBPS 1000000

/* An eligible node, with what the choice compares kept at hand (the passes
 * over 1,000s of candidates then touch one small array). */
typedef struct cand {
	rnode_t *n;
	int64_t id;
	double key;                   /* the order of primaries (better()) */
	uint64_t domain;              /* 0: its own */
	int region;
	int url;                      /* index of the format's URL */
} cand_t;

/* Each worker thread keeps its candidate array between calls: a fresh
 * 50 KB from the call's arena every Route was handed back to the kernel and
 * faulted in again (measured: ~20 us of a ~70 us Route with 1,000 nodes). */
typedef struct cand_buf {
	size_t cap;
	cand_t v[];
} cand_buf_t;

static pthread_key_t cand_key;
static pthread_once_t cand_once = PTHREAD_ONCE_INIT;

static void cand_key_make(void)
{
	if (pthread_key_create(&cand_key, free) != 0)
		abort();
}

static cand_t *cand_array(size_t n)
{
	pthread_once(&cand_once, cand_key_make);
	cand_buf_t *b = pthread_getspecific(cand_key);
	if (b && b->cap >= n)
		return b->v;
	size_t cap = b ? b->cap : 256;
	while (cap < n)
		cap *= 2;
	cand_buf_t *nb = malloc(sizeof(*nb) + cap * sizeof(cand_t));
	if (!nb)
		return NULL;
	nb->cap = cap;
	free(b);
	pthread_setspecific(cand_key, nb);
	return nb->v;
}

static bool excluded(const route_ask_t *ask, int64_t id)
{
	for (size_t i = 0; i < ask->nexclude; i++)
		if (ask->exclude[i] == id)
			return true;
	return false;
}

/* The order of primaries as one number: in the client's region, then
 * weight > 0, then weight x headroom (at most 10,000). */
#define KEY_REGION 4e4
#define KEY_WEIGHTED 2e4

/* Whether a is a better primary than b; ties: the lower id. */
static bool better(const cand_t *a, const cand_t *b)
{
	return a->key != b->key ? a->key > b->key : a->id < b->id;
}

static bool same_domain(const cand_t *a, const cand_t *b)
{
	return a->domain && b->domain ? a->domain == b->domain : a->id == b->id;
}

/* A backup's order: another failure domain than the chosen nodes, then
 * another region than the node's, then a primary's order. */
static double backup_key(const cand_t *c, cand_t *const *chosen, int nchosen)
{
	bool other_domain = true;
	for (int i = 0; i < nchosen; i++)
		other_domain &= !same_domain(c, chosen[i]);
	return (other_domain ? 2e5 : 0) + (c->region != chosen[0]->region ? 1e5 : 0) + c->key;
}

/* The eligible nodes of [lo, hi) into cands. */
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
		if (n->state != STATE_ACTIVE || url < 0 || (ask->nexclude && excluded(ask, n->id))) {
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

int route_pick(const rtable_t *t, const route_ask_t *ask, int64_t now, route_pick_t *out)
{
	memset(out, 0, sizeof(*out));
	size_t olo, ohi, slo = 0, shi = 0;
	table_range(t, ask->tenant, &olo, &ohi);
	if (ask->shared && ask->tenant != FD_PLATFORM_TENANT)
		table_range(t, FD_PLATFORM_TENANT, &slo, &shi);
	cand_t *cands = cand_array((ohi - olo) + (shi - slo) + 1);
	if (!cands)
		return -FD_EEXHAUSTED;
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
	return 0;
}

int route_bandwidth(const rtenant_t *t, double e, int64_t bitrate_kbps, int64_t *cap_kbps)
{
	double cap = (double)t->max_egress_mbps;
	bool at_cap = bitrate_kbps > 0 ? e + bitrate_kbps / 1000.0 > cap : e >= cap;
	if (!at_cap)
		return 0;
	if (t->policy != POLICY_LOWER_BITRATE)
		return -1;
	double left = floor((cap - e) * 1000.0);
	int64_t kbps = left > 0 ? (int64_t)left : 0;
	*cap_kbps = kbps > t->min_bitrate_kbps ? kbps : t->min_bitrate_kbps;
	return 1;
}

/* ---- the call ---- */

static Frontdesk__V1__RoutedNode *routed(const routerd_t *rd, fd_arena_t *a, const rnode_t *n, int url)
{
	Frontdesk__V1__RoutedNode *m = fd_arena_zalloc(a, sizeof(*m));
	if (!m)
		return NULL;
	frontdesk__v1__routed_node__init(m);
	const rcfg_t *cfg = n->cfg;
	m->node_id = n->id;
	m->name = fd_arena_strdup(a, cfg->name);
	m->url = fd_arena_strdup(a, cfg->urls[url]);
	m->region = (char *)region_name(&rd->regions, cfg->region);
	m->country = fd_arena_strdup(a, cfg->country);
	m->failure_domain = fd_arena_strdup(a, cfg->failure_domain);
	return m->name && m->url && m->country && m->failure_domain ? m : NULL;
}

static int check_route(fd_call_t *call, const routerd_t *rd, const Frontdesk__V1__RouteRequest *req, int *region)
{
	if (req->tenant_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: required (the viewer's tenant)");
	if (req->line_id < 0 || req->session_id < 0 || req->stream_id < 0 || req->current_node_id < 0)
		return fd_call_fail(call, FD_EINVAL, "line_id, session_id, stream_id, current_node_id: >= 0");
	if (req->client_ip[0]) {
		unsigned char buf[16];
		if (inet_pton(AF_INET, req->client_ip, buf) != 1 && inet_pton(AF_INET6, req->client_ip, buf) != 1)
			return fd_call_fail(call, FD_EINVAL, "client_ip: an IPv4 or IPv6 address");
	}
	int rc = check_country(call, "client_country", req->client_country);
	if (rc < 0)
		return rc;
	if (req->client_region[0] && (*region = region_find(&rd->regions, req->client_region)) < 0)
		return region_unknown(call, &rd->regions, "client_region", req->client_region);
	if (!req->client_region[0])
		*region = region_of_country(&rd->regions, req->client_country);
	if (req->bitrate_kbps < 0 || req->bitrate_kbps > MAX_BITRATE_KBPS)
		return fd_call_fail(call, FD_EINVAL, "bitrate_kbps: 0 (unknown) .. %d", MAX_BITRATE_KBPS);
	if (req->output_format < 0 || req->output_format > FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_RTMP)
		return fd_call_fail(call, FD_EINVAL, "output_format: an OutputFormat");
	if (req->n_exclude_node_ids > MAX_EXCLUDE)
		return fd_call_fail(call, FD_EINVAL, "exclude_node_ids: at most %d", MAX_EXCLUDE);
	return 0;
}

int rd_route(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__RouteRequest *req = (const void *)msg;
	routerd_t *rd = routerd_of(call);
	fd_arena_t *a = fd_call_arena(call);
	fd_caller_t caller;
	route_ask_t ask = { .region = -1, .format = req->output_format, .current = req->current_node_id,
		                .exclude = req->exclude_node_ids, .nexclude = req->n_exclude_node_ids };
	int rc = fd_call_caller(call, &caller);
	if (rc < 0 || (rc = fd_caller_need(&caller, FRONTDESK__V1__SCOPE__SCOPE_ROUTE, fd_call_err(call))) < 0 ||
	    (rc = check_route(call, rd, req, &ask.region)) < 0 ||
	    (rc = fd_call_tenant(call, &caller, req->tenant_id, &ask.tenant)) < 0)
		return rc;
	Frontdesk__V1__RouteResponse *out = fd_reply(call, resp);
	Frontdesk__V1__RoutedNode **backups = fd_arena_zalloc(a, sizeof(*backups) * ROUTE_MAX_BACKUPS);
	if (!out || !backups)
		return OOM(call);
	int64_t now = fd_now_ms();

	pthread_rwlock_rdlock(&rd->tbl.lock);
	const rtenant_t *t = table_tenant(&rd->tbl, ask.tenant);
	ask.shared = t->shared_pool_allowed;
	if (t->max_egress_mbps > 0) {
		double e = tenant_egress(&rd->tbl, ask.tenant, now);
		if (route_bandwidth(t, e, req->bitrate_kbps, &out->bitrate_cap_kbps) < 0) {
			pthread_rwlock_unlock(&rd->tbl.lock);
			return fd_call_fail(call, FD_EEXHAUSTED, "tenant %" PRId64 " is at its bandwidth cap (%.1f of %" PRId64
			                    " Mbps)", ask.tenant, e, t->max_egress_mbps);
		}
	}
	route_pick_t pick;
	if (route_pick(&rd->tbl, &ask, now, &pick) < 0) {
		pthread_rwlock_unlock(&rd->tbl.lock);
		return OOM(call);
	}
	if (pick.n == 0) {
		pthread_rwlock_unlock(&rd->tbl.lock);
		return fd_call_fail(call, FD_EEXHAUSTED, "no node can take the viewer: of %zu nodes, %zu down, %zu "
		                    "overloaded, %zu draining, disabled, excluded or without the format",
		                    pick.seen, pick.down, pick.overloaded, pick.unfit);
	}
	out->sticky = pick.sticky;
	if (!pick.sticky) {
		atomic_fetch_add(&pick.node[0]->pend_conn, 1);
		atomic_fetch_add(&pick.node[0]->pend_kbps, req->bitrate_kbps);
	}
	out->node = routed(rd, a, pick.node[0], pick.url[0]);
	out->backups = backups;
	for (int i = 1; i < pick.n; i++)
		if ((backups[out->n_backups] = routed(rd, a, pick.node[i], pick.url[i])))
			out->n_backups++;
	pthread_rwlock_unlock(&rd->tbl.lock);
	if (!out->node || out->n_backups != (size_t)(pick.n - 1))
		return OOM(call);
	return 0;
}
