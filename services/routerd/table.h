/* table.h - the in-memory node table: every node of every tenant and each
 * tenant's routing settings, on every replica, and the rules read from it
 * (health, fill, a tenant's egress).
 *
 * Health is derived, never stored: a node is DOWN before its first
 * heartbeat, when its last one is older than miss_ms, or when its heartbeat
 * stream ended after its last report; OVERLOADED from going above its
 * high-water mark until it falls below its low-water mark; else UP. Route
 * computes it at the moment it answers, so a node that goes silent is
 * avoided exactly miss_ms after its last heartbeat, with no timer between.
 *
 * Locks: t->lock (a rwlock) guards the table's shape and every node's
 * settings (rcfg_t, replaced whole under the write lock); Route, heartbeats
 * and reads take it shared. A node's live fields are atomics (the hot
 * path's), plus n->mu for their writers and the per-tenant viewer shares;
 * whoever changes them then calls index_touch (index.h), which keeps Route's
 * candidate index in step. The table owns its nodes and their settings;
 * pointers into it are borrowed while the lock is held. */
#ifndef ROUTERD_TABLE_H
#define ROUTERD_TABLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "fd/status.h"
#include "frontdesk/v1/routing.pb-c.h"

typedef Frontdesk__V1__NodeHealth health_t;
#define HEALTH_UP FRONTDESK__V1__NODE_HEALTH__NODE_HEALTH_UP
#define HEALTH_DOWN FRONTDESK__V1__NODE_HEALTH__NODE_HEALTH_DOWN
#define HEALTH_OVERLOADED FRONTDESK__V1__NODE_HEALTH__NODE_HEALTH_OVERLOADED
#define STATE_ACTIVE FRONTDESK__V1__NODE_STATE__NODE_STATE_ACTIVE
#define STATE_DRAINING FRONTDESK__V1__NODE_STATE__NODE_STATE_DRAINING
#define STATE_DISABLED FRONTDESK__V1__NODE_STATE__NODE_STATE_DISABLED
#define POLICY_REFUSE FRONTDESK__V1__BANDWIDTH_POLICY__BANDWIDTH_POLICY_REFUSE
#define POLICY_LOWER_BITRATE FRONTDESK__V1__BANDWIDTH_POLICY__BANDWIDTH_POLICY_LOWER_BITRATE
#define EVT(name) FRONTDESK__V1__NODE_EVENT_TYPE__NODE_EVENT_TYPE_##name

#define MAX_SHARES 64             /* tenants counted per shared-pool node */

/* A node's settings as stored (immutable once published; replaced whole).
 * Every string is malloc'd and freed by cfg_free. */
typedef struct rcfg {
	char *name;
	int nurls;
	int formats[3];               /* OutputFormat */
	char *urls[3];
	int region;                   /* index into the region list; -1: not configured here */
	char country[3];
	char *failure_domain;         /* "" = a domain of its own */
	uint64_t domain;              /* a hash of failure_domain; 0 for "" (Route compares these) */
	int32_t max_connections;
	int64_t max_egress_mbps;
	int32_t weight;
	int ntags;
	char **tags;
	int high_water, low_water;    /* percent */
	int state;                    /* NodeState */
	char *state_reason;
	unsigned char key_hash[32];
	char key_prefix[48];
	int64_t version;
	int64_t created_at, updated_at;   /* Unix seconds */
} rcfg_t;

typedef struct rshare {
	int64_t tenant;
	int32_t viewers;
} rshare_t;

/* A node's live fields as a report or the database gives them. */
typedef struct rlive {
	int64_t hb_ms;                /* wall-clock ms; 0: never */
	int64_t closed_ms;            /* its heartbeat stream ended at; 0: never */
	int32_t conn;
	double egress, cpu;
	bool overloaded;
} rlive_t;

struct icell;
struct iowner;

typedef struct rnode {
	/* What Route reads of a candidate, together at the start (two cache
	 * lines). */
	int64_t tenant, id;
	/* live, as last reported (wall-clock ms) */
	_Atomic int64_t hb_ms;        /* 0: never */
	_Atomic int64_t closed_ms;    /* its heartbeat stream ended at; 0: never */
	_Atomic double egress;
	_Atomic int32_t conn;
	_Atomic bool overloaded;
	/* routed by this replica since the last report */
	_Atomic int32_t pend_conn;
	_Atomic int64_t pend_kbps;
	/* copies of settings, written with cfg under the write lock */
	double inv_conn, inv_egress;  /* 1 / capacity */
	uint64_t domain;              /* cfg->domain */
	int32_t weight;
	int16_t region;
	int8_t state;
	int8_t url_of[4];             /* OutputFormat -> index in cfg->urls, -1: none; [0]: any */
	/* index.c: the node's cell (NULL: in none) and its leaf in each
	 * format's tree (-1: none), written under the write lock */
	struct icell *cell;
	int32_t slot[4];

	rcfg_t *cfg;                  /* under the table lock */
	pthread_mutex_t mu;           /* writers of the live fields; shares */
	_Atomic double cpu;
	_Atomic int32_t streams;      /* heartbeat streams open on this replica (beat.c) */
	/* per-tenant viewers (shared-pool nodes), under mu */
	int nshares;
	int32_t viewers_total;
	rshare_t shares[MAX_SHARES];
	/* sync.c: what the sharer and the persister have not sent yet */
	_Atomic bool share_dirty, persist_dirty;
	int emitted;                  /* watch.c: the monitor's last health (monitor thread only) */
} rnode_t;

/* A tenant's routing settings. */
typedef struct rtenant {
	int64_t tenant;
	int64_t max_egress_mbps;      /* 0: no cap */
	int policy;                   /* BandwidthPolicy */
	int64_t min_bitrate_kbps;
	bool shared_pool_allowed;
} rtenant_t;

/* A tenant without a row: no cap, refuse at the cap, a 1000 kbit/s floor,
 * the shared pool allowed (migrations/0005_routing.sql's defaults). */
extern const rtenant_t TENANT_DEFAULTS;

typedef struct rtable {
	pthread_rwlock_t lock;
	int64_t miss_ms;              /* a node silent this long is DOWN */
	rnode_t **nodes;              /* sorted by (tenant, id) */
	size_t n, cap;
	rnode_t **by_id;              /* open addressing on id, capacity a power of two */
	size_t id_cap;
	rtenant_t *tenants;           /* sorted by tenant */
	size_t ntenants, captenants;
	/* Route's candidates (index.h): owners sorted by tenant */
	struct iowner *owners;
	size_t nowners, capowners;
	bool unindexed;               /* a rebuild ran out of memory: the next table_put rebuilds all */
} rtable_t;

/* 0, or -FD_EEXHAUSTED. */
int table_init(rtable_t *t, int64_t miss_ms);
void table_free(rtable_t *t);

/* Under the lock (either mode). NULL if absent. */
rnode_t *table_get(const rtable_t *t, int64_t id);
/* [*lo, *hi) of tenant's nodes in t->nodes (under the lock). */
void table_range(const rtable_t *t, int64_t tenant, size_t *lo, size_t *hi);
/* A tenant's settings (TENANT_DEFAULTS if it has none), under the lock. */
const rtenant_t *table_tenant(const rtable_t *t, int64_t tenant);
/* Stores a tenant's settings (write lock held). 0 or -FD_EEXHAUSTED. */
int table_set_tenant(rtable_t *t, const rtenant_t *v);

/* Publishes c as the settings of node (tenant, id), adding the node when it
 * is new, and places it in Route's index (write lock held). Takes c (freed
 * on failure); *node receives the node, *old the settings c replaced (NULL
 * for a new node: the caller compares and frees them with cfg_free). 0 or
 * -FD_EEXHAUSTED. */
int table_put(rtable_t *t, int64_t tenant, int64_t id, rcfg_t *c, rnode_t **node, rcfg_t **old) FD_MUSTCHECK;
/* Takes the live fields of l where they are newer than n's (a restart, or a
 * node another replica persisted); index_touch after. */
void node_take_live(rnode_t *n, const rlive_t *l);

/* Derives what the settings' strings imply (c->domain). */
void cfg_derive(rcfg_t *c);
void cfg_free(rcfg_t *c);

/* The event a settings change makes, comparing old (NULL: new) and c. */
int cfg_change_event(const rcfg_t *old, const rcfg_t *c);

static inline health_t node_health(const rtable_t *t, const rnode_t *n, int64_t now)
{
	int64_t hb = atomic_load(&n->hb_ms);
	if (hb == 0 || now - hb > t->miss_ms || atomic_load(&n->closed_ms) >= hb)
		return HEALTH_DOWN;
	return atomic_load(&n->overloaded) ? HEALTH_OVERLOADED : HEALTH_UP;
}

/* The larger of the connection and egress fractions, with what this
 * replica routed there since the last report when pending. */
static inline double node_fill(const rnode_t *n, bool pending)
{
	double conn = atomic_load_explicit(&n->conn, memory_order_relaxed);
	double egress = atomic_load_explicit(&n->egress, memory_order_relaxed);
	if (pending) {
		conn += atomic_load_explicit(&n->pend_conn, memory_order_relaxed);
		egress += (double)atomic_load_explicit(&n->pend_kbps, memory_order_relaxed) / 1000.0;
	}
	double fc = conn * n->inv_conn, fe = egress * n->inv_egress;
	return fc > fe ? fc : fe;
}

/* The tenant's egress now: its own nodes' and its viewers' share of the
 * shared pool's; nodes that are DOWN count nothing (under the lock). */
double tenant_egress(const rtable_t *t, int64_t tenant, int64_t now);

#endif
