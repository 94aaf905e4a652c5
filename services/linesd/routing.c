/* routing.c - linesd as routerd's client: Route for each new playback, and
 * the state of every node, followed through WatchNodes, so that a session
 * is routed again only when its node went down, draining, disabled or
 * overloaded (never on every heartbeat).
 *
 * The follower thread holds WatchNodes (all tenants) open: the snapshot it
 * opens with, and every later one, says which nodes are fit; events update
 * one node. While the stream is down nothing is known: every heartbeat then
 * asks Route (sticky, so a healthy node is kept), which costs a call per
 * heartbeat but never leaves a viewer on a dead node.
 *
 * Not configured (FRONTDESK_ROUTERD_TARGET empty): AuthorizePlayback names
 * no node and says so in its note. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "linesd.h"
#include "fd/log.h"

#define ROUTE_TIMEOUT_MS 1000
#define WATCH_POLL_MS 250
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

typedef Frontdesk__V1__NodeHealth health_t;

/* One node's fitness: id 0 = an empty slot. */
typedef struct fit {
	int64_t id;
	bool bad;
} fit_t;

struct linesd_routing {
	linesd_t *l;
	fd_channel_t *ch;
	fd_token_source_t *token;     /* audience routerd */
	pthread_t thread;
	bool started;
	_Atomic bool stop;

	pthread_mutex_t mu;
	bool known;                   /* the follower has a snapshot */
	fit_t *slots;                 /* open addressing, a power of two */
	size_t cap, n;
};

static size_t slot_of(int64_t id, size_t cap)
{
	return (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull >> 17) & (cap - 1);
}

/* Records a node's fitness (mu held). */
static void fit_set(struct linesd_routing *r, int64_t id, bool bad)
{
	if ((r->n + 1) * 2 > r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 1024;
		fit_t *s = calloc(cap, sizeof(*s));
		if (!s)
			return;
		for (size_t i = 0; i < r->cap; i++)
			if (r->slots[i].id) {
				size_t k = slot_of(r->slots[i].id, cap);
				while (s[k].id)
					k = (k + 1) & (cap - 1);
				s[k] = r->slots[i];
			}
		free(r->slots);
		r->slots = s;
		r->cap = cap;
	}
	size_t k = slot_of(id, r->cap);
	while (r->slots[k].id && r->slots[k].id != id)
		k = (k + 1) & (r->cap - 1);
	if (!r->slots[k].id)
		r->n++;
	r->slots[k] = (fit_t){ id, bad };
}

static bool unfit(int state, int health)
{
	return state != FRONTDESK__V1__NODE_STATE__NODE_STATE_ACTIVE ||
	       health != FRONTDESK__V1__NODE_HEALTH__NODE_HEALTH_UP;
}

bool routing_enabled(linesd_t *l)
{
	return l->routing != NULL;
}

bool routing_node_unfit(linesd_t *l, int64_t node)
{
	struct linesd_routing *r = l->routing;
	if (!r || !node)
		return false;
	bool bad = true;   /* unknown, or the follower is down: ask Route */
	pthread_mutex_lock(&r->mu);
	if (r->known && r->cap) {
		size_t k = slot_of(node, r->cap);
		while (r->slots[k].id && r->slots[k].id != node)
			k = (k + 1) & (r->cap - 1);
		bad = r->slots[k].id ? r->slots[k].bad : true;
	}
	pthread_mutex_unlock(&r->mu);
	return bad;
}

int routing_route(linesd_t *l, const Frontdesk__V1__RouteRequest *req, fd_arena_t *arena,
                  Frontdesk__V1__RouteResponse **out, fd_err_t *err)
{
	struct linesd_routing *r = l->routing;
	char auth[FD_BEARER_MAX];
	int rc = fd_token_source_get(r->token, auth, sizeof(auth), err);
	if (rc < 0)
		return rc;
	fd_call_opts_t o = { .timeout_ms = ROUTE_TIMEOUT_MS, .idempotent = true, .authorization = auth };
	ProtobufCMessage *resp = NULL;
	rc = fd_channel_unary(r->ch, "/frontdesk.v1.RoutingService/Route", &req->base,
	                      &frontdesk__v1__route_response__descriptor, arena, &resp, &o, err);
	*out = rc == 0 ? (Frontdesk__V1__RouteResponse *)resp : NULL;
	return rc;
}

/* ---- the follower ---- */

static void apply(struct linesd_routing *r, const Frontdesk__V1__WatchNodesResponse *m)
{
	pthread_mutex_lock(&r->mu);
	if (m->payload_case == FRONTDESK__V1__WATCH_NODES_RESPONSE__PAYLOAD_SNAPSHOT && m->snapshot) {
		if (r->cap)
			memset(r->slots, 0, r->cap * sizeof(*r->slots));
		r->n = 0;
		for (size_t i = 0; i < m->snapshot->n_nodes; i++) {
			const Frontdesk__V1__NodeStatus *s = m->snapshot->nodes[i];
			fit_set(r, s->node_id, unfit(s->state, s->health));
		}
		r->known = true;
	} else if (m->payload_case == FRONTDESK__V1__WATCH_NODES_RESPONSE__PAYLOAD_EVENT && m->event && m->event->node) {
		const Frontdesk__V1__Node *n = m->event->node;
		fit_set(r, n->id, unfit(n->state, n->health));
	}
	pthread_mutex_unlock(&r->mu);
}

static void forget(struct linesd_routing *r)
{
	pthread_mutex_lock(&r->mu);
	r->known = false;
	pthread_mutex_unlock(&r->mu);
}

static void nap(struct linesd_routing *r, int ms)
{
	for (int left = ms; left > 0 && !atomic_load(&r->stop); left -= 50) {
		struct timespec ts = { 0, 50 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

static void *follower_main(void *arg)
{
	struct linesd_routing *r = arg;
	int backoff = BACKOFF_MIN_MS;
	bool warned = false;
	while (!atomic_load(&r->stop)) {
		fd_err_t err;
		char auth[FD_BEARER_MAX];
		Frontdesk__V1__WatchNodesRequest req = FRONTDESK__V1__WATCH_NODES_REQUEST__INIT;
		req.all_tenants = true;
		req.snapshot_interval_seconds = 5;
		fd_client_stream_t *s = NULL;
		if (fd_token_source_get(r->token, auth, sizeof(auth), &err) == 0) {
			fd_call_opts_t o = { .authorization = auth };
			s = fd_channel_stream(r->ch, "/frontdesk.v1.RoutingService/WatchNodes", &req.base, &o, &err);
		}
		int rc = s ? 1 : -FD_EUNAVAIL;
		bool got = false;
		while (s && !atomic_load(&r->stop)) {
			fd_arena_t a;
			fd_arena_init(&a, (size_t)64 << 20);
			ProtobufCMessage *m = NULL;
			rc = fd_client_stream_recv(s, &frontdesk__v1__watch_nodes_response__descriptor, &a, &m, WATCH_POLL_MS, &err);
			if (rc == 1) {
				apply(r, (const Frontdesk__V1__WatchNodesResponse *)m);
				if (!got && warned)
					fd_info("linesd: following node state again");
				got = true;
				warned = false;
				backoff = BACKOFF_MIN_MS;
			}
			fd_arena_free(&a);
			if (rc != 1 && rc != -FD_EDEADLINE)
				break;
		}
		fd_client_stream_free(s);
		forget(r);
		if (atomic_load(&r->stop))
			break;
		if (!warned)
			fd_warn("linesd: cannot follow node state from routerd (%s); heartbeats ask Route until it is back",
			        rc == 0 ? "stream ended" : err.msg);
		warned = true;
		nap(r, backoff);
		backoff = backoff * 2 < BACKOFF_MAX_MS ? backoff * 2 : BACKOFF_MAX_MS;
	}
	return NULL;
}

/* ---- life ---- */

int routing_init(linesd_t *l, fd_err_t *err)
{
	const linesd_config_t *cfg = l->cfg;
	if (!cfg->routerd_target[0])
		return 0;
	struct linesd_routing *r = calloc(1, sizeof(*r));
	if (!r)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	r->l = l;
	atomic_init(&r->stop, false);
	pthread_mutex_init(&r->mu, NULL);
	l->routing = r;   /* routing_fini frees it from here on */
	fd_channel_opts_t co = { .target = cfg->routerd_target, .tls_ca = cfg->common.tls_ca[0] ? cfg->common.tls_ca : NULL };
	if (!(r->ch = fd_channel_new(&co, err)))
		return -FD_EINVAL;
	fd_token_source_opts_t to = { .authd = l->authd, .service = "linesd", .secret = cfg->service_secret,
		                          .audience = "routerd" };
	if (!(r->token = fd_token_source_new(&to, err)))
		return -FD_EINVAL;
	if (pthread_create(&r->thread, NULL, follower_main, r) != 0)
		return fd_err_set(err, FD_EINTERNAL, "cannot start the node follower thread");
	r->started = true;
	return 0;
}

void routing_fini(linesd_t *l)
{
	struct linesd_routing *r = l ? l->routing : NULL;
	if (!r)
		return;
	atomic_store(&r->stop, true);
	if (r->started)
		pthread_join(r->thread, NULL);
	fd_token_source_free(r->token);
	fd_channel_free(r->ch);
	pthread_mutex_destroy(&r->mu);
	free(r->slots);
	l->routing = NULL;
	free(r);
}

Frontdesk__V1__RoutedNode *routing_node_message(fd_arena_t *a, int64_t node)
{
	if (!node)
		return NULL;
	Frontdesk__V1__RoutedNode *n = fd_arena_zalloc(a, sizeof(*n));
	if (n) {
		frontdesk__v1__routed_node__init(n);
		n->node_id = node;
	}
	return n;
}
