/* route.c - Route: which node serves a viewer, with backups, from memory.
 * The choice (route.h) reads Route's candidate index (index.h); rd_route
 * checks the request, applies the tenant's bandwidth cap, and answers.
 *
 * The structure. Candidates are indexed by owner (the tenant, or the shared
 * pool), region and format: one cell per (owner, region) holds the owner's
 * ACTIVE nodes there, and one tree per format (0: any) over those serving
 * it. A tree is a tournament over its nodes: each inner entry names the
 * best leaf below it by stored key (weight > 0 first, then weight x
 * headroom, headroom net of what this replica routed since the node's last
 * report; ties to the lower id). A cell is rebuilt only when its membership
 * changes (a node registered, updated, drained, disabled, activated: under
 * the table's write lock); a key is replayed up its path (O(log n), cut
 * short where the winner does not change) by whoever changes what it is
 * made of: a report (beat.c), another replica's share (sync.c), a stream
 * ending, a restart's read (table.c), and Route itself after counting a
 * viewer on its primary. Nothing is re-sorted, nor scanned, per call.
 *
 * The choice. Sticky first: the current node is looked up by id and kept
 * while it fits. Else the primary is the best of the client region's cells
 * of the tenant and the pool (two trees), and only if none fits there, the
 * best of the other cells. Backup k (up to 2) is the best by (another
 * failure domain than those chosen, another region than the primary's,
 * the client's region, key, id): the tiers are searched in that order over
 * the cells of the matching regions, the failure-domain rule applied to
 * whole subtrees too (leaves are sorted by failure domain, so a subtree of
 * one domain is left out at once). Each search is a branch and bound: down
 * the better child first, a subtree skipped when its winner cannot beat the
 * best found, and at a leaf the node checked as it is now: UP at this
 * instant (health computed then, so a node silent for miss_ms drops out on
 * time), ACTIVE, serving the format, not excluded; its key recomputed from
 * its live fields.
 *
 * Why it is right. The stored key of a node is never below its key now:
 * every change that can raise it (a report, a share, a reload) is replayed
 * before the writer returns, and what only lowers it (viewers counted by
 * another thread a moment before it replays) leaves the stored key above.
 * So a skipped subtree holds no node better than the one found, and the
 * answer is exactly the best of a pass over every node (the order is the
 * one the pass used, kept as tuples instead of one sum: tests/unit/
 * test_route.c checks the cases, tests/unit/test_route_index.c compares
 * with that pass, as it was at 464928d, over thousands of random tables
 * and their changes). The one difference the tuples make: the pass's sum
 * rounded keys to a coarser grid (2^-37 and up against 2^-38), so two keys
 * a few units of the last place apart tied there (to the lower id) and do
 * not here; keys from whole connection counts and capacities are never
 * that close unless equal. A node found not UP has its keys set to
 * -INFINITY, rechecked under the cell's mutex so that a report racing it
 * wins, until its next report; never-reported, stream-ended and overloaded
 * nodes are stored so at once.
 *
 * Its cost: a primary is a descent of two trees (about 2 log2 n leaves and
 * siblings), a backup one root look per cell of the tier plus a descent;
 * independent of the fleet but for log n. Measured (test_route_index,
 * Release, bench/routing.sh's fleet): 9-10 leaves and 1.8 us per choice
 * with its replay at 1,000 nodes, 12 leaves and 2.5 us at 10,000, against
 * 17 and 75 us for the pass over every node; in routerd under load the
 * index's functions are about 3% of its CPU, gRPC and the kernel's
 * loopback I/O and wake-ups the rest (perf, bench/routing.sh). Concurrency: searches take no
 * lock (the table's read lock keeps the cells' shape; keys and winners are
 * atomics); replays take their cell's mutex, held for one path per format,
 * inside the cell's sequence count. A search that read a replay half done
 * could leave out a subtree by a winner whose key had just fallen, and
 * return a worse node than either side of the replay (seen: 16% of Routes
 * racing a node replayed in a loop, tests/unit/test_route_index.c), so a
 * search whose cell's count moved is made again, the last of IDX_TRIES
 * under the cell's mutex: each answer is the exact best of the keys as
 * some replay left them, a report counting from the end of its replay
 * (counted: index_stats, logged when routerd stops). What a search reads at
 * a leaf is live (health at now, the key from the live fields), so a node
 * silent for miss_ms drops out at that instant whatever its stored key.
 * Why not a sorted list or a heap per bucket: every Route changes its
 * primary's headroom, so a sorted order would move a node per call, and a
 * heap cannot skip a failure domain or a silent node without popping;
 * the tournament tree updates in place and answers both. The counts of the
 * error (seen, down, overloaded, unfit) need every node: they are taken by
 * a pass only when nothing fits. */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <arpa/inet.h>
#include "routerd.h"
#include "index.h"
#include "route.h"
#include "fd/tenant.h"

#define MAX_EXCLUDE 16
#define MAX_BITRATE_KBPS 1000000

static bool excluded(const route_ask_t *ask, int64_t id)
{
	for (size_t i = 0; i < ask->nexclude; i++)
		if (ask->exclude[i] == id)
			return true;
	return false;
}

/* Whether the viewer's current node still fits: the tenant's (or the
 * pool's, when allowed), ACTIVE, UP now, serving the format, not excluded. */
static bool still_fits(const rtable_t *t, const route_ask_t *ask, const rnode_t *n, int64_t now)
{
	bool mine = n->tenant == ask->tenant || (ask->shared && n->tenant == FD_PLATFORM_TENANT);
	return mine && n->state == STATE_ACTIVE && n->url_of[ask->format] >= 0 && !excluded(ask, n->id) &&
	       node_health(t, n, now) == HEALTH_UP;
}

/* The owners whose nodes the viewer may use: the tenant, the pool. */
static int owners_of(const rtable_t *t, const route_ask_t *ask, const iowner_t *own[2])
{
	int n = 0;
	if ((own[n] = index_owner(t, ask->tenant)))
		n++;
	if (ask->shared && ask->tenant != FD_PLATFORM_TENANT && (own[n] = index_owner(t, FD_PLATFORM_TENANT)))
		n++;
	return n;
}

static int rank_of(const route_ask_t *ask, const icell_t *c)
{
	return ask->region >= 0 && c->region == ask->region;
}

static void probe_init(iprobe_t *p, const rtable_t *t, const route_ask_t *ask, int64_t now)
{
	memset(p, 0, sizeof(*p));
	p->t = t;
	p->now = now;
	p->format = ask->format;
	p->exclude = ask->exclude;
	p->nexclude = ask->nexclude;
}

/* The best primary: the client region's cells, then (only if none fits
 * there) every other cell. */
static rnode_t *primary(const rtable_t *t, const route_ask_t *ask, const iowner_t *const *own, int nown,
                        int64_t now, unsigned *leaves)
{
	iprobe_t p;
	probe_init(&p, t, ask, now);
	for (int i = 0; ask->region >= 0 && i < nown; i++)
		if (ask->region + 1 < own[i]->ncells && own[i]->cell[ask->region + 1])
			index_search(&p, own[i]->cell[ask->region + 1], 1);
	bool in_region = p.best != NULL;
	for (int i = 0; !in_region && i < nown; i++)
		for (int k = 0; k < own[i]->nlist; k++)
			if (!rank_of(ask, own[i]->list[k]))
				index_search(&p, own[i]->list[k], 0);
	*leaves += p.leaves;
	return p.best;
}

/* The next backup after chosen[0..n): the first tier with a node, of
 * (another failure domain, another region than chosen[0]'s), (another
 * domain, its region), (a chosen domain, another region), (a chosen domain,
 * its region); in a tier, the client region's cells first. */
static rnode_t *backup(const rtable_t *t, const route_ask_t *ask, const iowner_t *const *own, int nown,
                       int64_t now, rnode_t *const *chosen, int n, unsigned *leaves)
{
	int region0 = chosen[0]->region;
	for (int tier = 0; tier < 4; tier++) {
		iprobe_t p;
		probe_init(&p, t, ask, now);
		p.rule = tier < 2 ? IDX_OTHER : IDX_SAME;
		for (int i = 0; i < n; i++) {
			p.groups[p.ngroups++] = node_group(chosen[i]);
			p.skip[p.nskip++] = chosen[i];
		}
		bool other_region = tier % 2 == 0;
		for (int rank = 1; rank >= 0; rank--)
			for (int i = 0; i < nown; i++)
				for (int k = 0; k < own[i]->nlist; k++) {
					icell_t *c = own[i]->list[k];
					if ((c->region != region0) == other_region && rank_of(ask, c) == rank)
						index_search(&p, c, rank);
				}
		*leaves += p.leaves;
		if (p.best)
			return p.best;
	}
	return NULL;
}

int route_choose(const rtable_t *t, const route_ask_t *ask, int64_t now, route_pick_t *out)
{
	memset(out, 0, sizeof(*out));
	const iowner_t *own[2];
	int nown = owners_of(t, ask, own);
	rnode_t *chosen[1 + ROUTE_MAX_BACKUPS] = { 0 };
	rnode_t *cur = ask->current ? table_get(t, ask->current) : NULL;
	if (cur && still_fits(t, ask, cur, now)) {
		chosen[0] = cur;
		out->sticky = true;
	} else {
		chosen[0] = primary(t, ask, own, nown, now, &out->leaves);
	}
	int n = chosen[0] ? 1 : 0;
	while (n > 0 && n < 1 + ROUTE_MAX_BACKUPS && (chosen[n] = backup(t, ask, own, nown, now, chosen, n, &out->leaves)))
		n++;
	for (int i = 0; i < n; i++) {
		out->node[i] = chosen[i];
		out->url[i] = chosen[i]->url_of[ask->format];
	}
	out->n = n;
	return 0;
}

/* Why the nodes of [lo, hi) were left out. */
static void count_range(const rtable_t *t, const route_ask_t *ask, size_t lo, size_t hi, int64_t now,
                        route_pick_t *out)
{
	for (size_t i = lo; i < hi; i++) {
		const rnode_t *n = t->nodes[i];
		out->seen++;
		health_t h = node_health(t, n, now);
		if (h == HEALTH_DOWN)
			out->down++;
		else if (h != HEALTH_UP)
			out->overloaded++;
		else if (n->state != STATE_ACTIVE || n->url_of[ask->format] < 0 || excluded(ask, n->id))
			out->unfit++;
	}
}

void route_count(const rtable_t *t, const route_ask_t *ask, int64_t now, route_pick_t *out)
{
	size_t lo, hi;
	out->seen = out->down = out->overloaded = out->unfit = 0;
	table_range(t, ask->tenant, &lo, &hi);
	count_range(t, ask, lo, hi, now, out);
	if (ask->shared && ask->tenant != FD_PLATFORM_TENANT) {
		table_range(t, FD_PLATFORM_TENANT, &lo, &hi);
		count_range(t, ask, lo, hi, now, out);
	}
}

int route_pick(const rtable_t *t, const route_ask_t *ask, int64_t now, route_pick_t *out)
{
	int rc = route_choose(t, ask, now, out);
	if (rc == 0)
		route_count(t, ask, now, out);
	return rc;
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
	if (route_choose(&rd->tbl, &ask, now, &pick) < 0) {
		pthread_rwlock_unlock(&rd->tbl.lock);
		return OOM(call);
	}
	if (pick.n == 0) {
		route_count(&rd->tbl, &ask, now, &pick);
		pthread_rwlock_unlock(&rd->tbl.lock);
		return fd_call_fail(call, FD_EEXHAUSTED, "no node can take the viewer: of %zu nodes, %zu down, %zu "
		                    "overloaded, %zu draining, disabled, excluded or without the format",
		                    pick.seen, pick.down, pick.overloaded, pick.unfit);
	}
	out->sticky = pick.sticky;
	if (!pick.sticky) {
		atomic_fetch_add(&pick.node[0]->pend_conn, 1);
		atomic_fetch_add(&pick.node[0]->pend_kbps, req->bitrate_kbps);
		index_touch(pick.node[0]);
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
