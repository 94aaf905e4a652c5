/* routerd.h - routerd's settings, its in-memory node table, and what its
 * files share.
 *
 *   nodes.c     the node table (every node of every tenant, in memory on
 *               every replica), loading it, RegisterNode, GetNode,
 *               ListNodes, UpdateNode, SetNodeState, tenants' routing
 *               settings (GetTenantRouting, SetTenantBandwidth,
 *               SetSharedPoolAccess), input checks
 *   beat.c      node keys, Heartbeat, StreamHeartbeats, health
 *   route.c     Route
 *   sync.c      replicas: the LISTEN connection (frontdesk_nodes), sharing
 *               received heartbeats, persisting them; the monitor that turns
 *               health changes into events; WatchNodes
 *
 * Tables: migrations/0005_routing.sql.
 *
 * Health is derived, never stored: a node is DOWN before its first
 * heartbeat, when its last one is older than miss_after, or when its
 * heartbeat stream ended after its last report; OVERLOADED from going above
 * its high-water mark until it falls below its low-water mark; else UP.
 * Route computes it at the moment it answers, so a node that goes silent is
 * avoided exactly miss_after after its last heartbeat, with no timer in
 * between.
 *
 * Locks: tbl->lock (a rwlock) guards the table's shape and every node's
 * settings (rcfg_t, replaced whole under the write lock); Route, heartbeats
 * and reads take it shared. A node's live fields are atomics (the hot
 * path's), plus n->mu for its writers and its per-tenant viewer shares. */
#ifndef ROUTERD_H
#define ROUTERD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "fd/auth.h"
#include "fd/clock.h"
#include "fd/db.h"
#include "fd/request.h"
#include "fd/service.h"
#include "frontdesk/v1/routing.pb-c.h"

typedef struct routerd_config {
	fd_service_config_t common;
	int64_t heartbeat_ms;          /* the interval nodes are told */
	int64_t miss_after_ms;         /* 0: 2 x heartbeat_ms */
	int64_t share_ms;              /* received heartbeats are passed to the other replicas this often */
	int64_t persist_ms;            /* ... and written to node_live this often */
	char *regions;                 /* "eu-west=GB IE;us-east=US CA" */
} routerd_config_t;

#define MAX_REGIONS 64
#define REGION_LIST_MAX 160       /* the list of region names in an error message */
#define MAX_SHARES 64             /* tenants counted per shared-pool node */
#define NODE_KEY_PREFIX "fdn_"

typedef Frontdesk__V1__NodeHealth health_t;
#define HEALTH_UP FRONTDESK__V1__NODE_HEALTH__NODE_HEALTH_UP
#define HEALTH_DOWN FRONTDESK__V1__NODE_HEALTH__NODE_HEALTH_DOWN
#define HEALTH_OVERLOADED FRONTDESK__V1__NODE_HEALTH__NODE_HEALTH_OVERLOADED
#define STATE_ACTIVE FRONTDESK__V1__NODE_STATE__NODE_STATE_ACTIVE
#define STATE_DRAINING FRONTDESK__V1__NODE_STATE__NODE_STATE_DRAINING
#define STATE_DISABLED FRONTDESK__V1__NODE_STATE__NODE_STATE_DISABLED
#define EVT(name) FRONTDESK__V1__NODE_EVENT_TYPE__NODE_EVENT_TYPE_##name

/* A node's settings as stored (immutable once published; replaced whole). */
typedef struct rcfg {
	char *name;
	int nurls;
	int formats[3];               /* OutputFormat */
	char *urls[3];
	int region;                   /* index into the region list */
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

typedef struct rnode {
	/* What Route reads of every node, together at the start (two cache
	 * lines, no pointer to follow): a pass over 1,000s of nodes then stays
	 * in cache. */
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

	rcfg_t *cfg;                  /* under tbl->lock */
	pthread_mutex_t mu;           /* writers of the live fields; shares */
	_Atomic double cpu;
	_Atomic int32_t streams;      /* heartbeat streams open on this replica */
	/* per-tenant viewers (shared-pool nodes), under mu */
	int nshares;
	int32_t viewers_total;
	rshare_t shares[MAX_SHARES];
	/* sync.c */
	_Atomic bool share_dirty, persist_dirty;
	int emitted;                  /* the monitor's last health (monitor thread only) */
} rnode_t;

/* A tenant's routing settings. */
typedef struct rtenant {
	int64_t tenant;
	int64_t max_egress_mbps;
	int policy;                   /* BandwidthPolicy */
	int64_t min_bitrate_kbps;
	bool shared_pool_allowed;
} rtenant_t;

typedef struct rtable {
	pthread_rwlock_t lock;
	rnode_t **nodes;              /* sorted by (tenant, id) */
	size_t n, cap;
	rnode_t **by_id;              /* open addressing on id, capacity a power of two */
	size_t id_cap;
	rtenant_t *tenants;           /* sorted by tenant */
	size_t ntenants, captenants;
} rtable_t;

struct routerd_sync;

typedef struct region {
	char name[32];
	char countries[256][3];       /* NUL-terminated alpha-2 codes */
	int ncountries;
} region_t;

typedef struct routerd {
	const routerd_config_t *cfg;
	fd_db_t *db;
	int64_t miss_ms;
	unsigned char key_hash_key[32];   /* node secrets' keyed BLAKE2b */
	region_t regions[MAX_REGIONS];
	int nregions;
	/* "eu-west, us-east, ..." for error messages: the names that fit in
	 * REGION_LIST_MAX, then "... (N in all)". */
	char region_list[REGION_LIST_MAX];
	rtable_t tbl;
	struct routerd_sync *sync;
} routerd_t;

static inline routerd_t *routerd_of(fd_call_t *call)
{
	return fd_service_state(fd_call_service(call));
}

#define OOM(call) fd_call_fail((call), FD_EEXHAUSTED, "out of memory for this request")

/* ---- nodes.c ---- */

int regions_parse(routerd_t *rd, const char *spec, fd_err_t *err) FD_MUSTCHECK;
/* The region index of name, -1 if unknown. */
int region_find(const routerd_t *rd, const char *name);
/* Fails the call with INVALID_ARGUMENT: field names an unknown region; the
 * message lists the configured ones (bounded: REGION_LIST_MAX). */
int region_unknown(fd_call_t *call, const routerd_t *rd, const char *field, const char *name);
/* The region of an alpha-2 country, -1 if none. */
int region_of_country(const routerd_t *rd, const char *cc);

int table_init(rtable_t *t);
void table_free(rtable_t *t);
/* Under the lock (either mode). */
rnode_t *table_get(rtable_t *t, int64_t id);
/* [*lo, *hi) of tenant's nodes in t->nodes. */
void table_range(rtable_t *t, int64_t tenant, size_t *lo, size_t *hi);
const rtenant_t *table_tenant(rtable_t *t, int64_t tenant);   /* defaults if absent */

/* Reads every tenant's nodes and settings into the table (start-up, and
 * after the LISTEN connection was lost). */
int nodes_load_all(routerd_t *rd, fd_err_t *err) FD_MUSTCHECK;
/* Reads one node again (after a NOTIFY or on a miss); -FD_ENOTFOUND if it
 * does not exist. Applies only a newer version; emits its event. */
int nodes_reload(routerd_t *rd, int64_t tenant, int64_t id, fd_err_t *err) FD_MUSTCHECK;
int tenant_reload(routerd_t *rd, int64_t tenant, fd_err_t *err) FD_MUSTCHECK;

/* An alpha-2 country or "" (-FD_EINVAL naming field through the call). */
int check_country(fd_call_t *call, const char *field, const char *cc) FD_MUSTCHECK;

/* The node as the API shows it, into the arena (under the table lock). */
Frontdesk__V1__Node *node_message(routerd_t *rd, fd_arena_t *a, const rnode_t *n, bool owner, int64_t now);
/* The node's load as last reported (NULL before the first report). */
Frontdesk__V1__NodeLoad *load_message(fd_arena_t *a, const rnode_t *n);

int rd_register_node(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int rd_get_node(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int rd_list_nodes(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int rd_update_node(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int rd_set_node_state(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int rd_get_tenant_routing(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int rd_set_tenant_bandwidth(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int rd_set_shared_pool_access(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);

/* Which nodes a caller may see: its tenant's, the shared pool's when
 * allowed and asked for, or all. */
typedef struct scope {
	int64_t tenant;
	bool shared;                  /* also tenant 0's nodes */
	bool all;
} scope_t;
bool scope_has(const scope_t *s, const rnode_t *n);
/* The scope of a ListNodes / WatchNodes request (-code with the call's error). */
int scope_of(fd_call_t *call, const fd_caller_t *c, int64_t tenant_id, bool include_shared, bool all,
             scope_t *out) FD_MUSTCHECK;

/* ---- beat.c ---- */

health_t node_health(const routerd_t *rd, const rnode_t *n, int64_t now);
/* f = the larger of the connection and egress fractions, with pending routes. */
double node_fill(const rnode_t *n, bool pending);
int rd_heartbeat(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
extern const fd_stream_ops_t rd_stream_heartbeats;

/* ---- route.c ---- */

int rd_route(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
/* The tenant's egress now (own nodes + its share of shared-pool nodes), under the lock. */
double tenant_egress(routerd_t *rd, int64_t tenant, int64_t now);

/* ---- sync.c ---- */

int sync_init(routerd_t *rd, fd_err_t *err) FD_MUSTCHECK;
void sync_fini(routerd_t *rd);
/* A node's heartbeat changed its health or it is new: share it at once. */
void sync_urgent(routerd_t *rd);
/* A node's heartbeat stream ended: tell the other replicas now. */
void sync_stream_closed(routerd_t *rd, int64_t tenant, int64_t id, int64_t at_ms);
/* Send a node event to this replica's watchers (settings changes). */
void sync_emit(routerd_t *rd, const rnode_t *n, int type, const char *reason);
extern const fd_stream_ops_t rd_watch_nodes;

#endif
