/* routerd.h - routerd's state and settings, the request context its
 * handlers share, and its methods. Each part has its own header; the calls
 * go one way, from the handlers down to the table:
 *
 *   main.c      settings, start-up and shutdown, the method table
 *   nodes.c     RegisterNode, GetNode, ListNodes, UpdateNode, SetNodeState
 *   tenants.c   GetTenantRouting, SetTenantBandwidth, SetSharedPoolAccess
 *   beat.c      Heartbeat, StreamHeartbeats: load reports, keys recognised
 *   route.c     Route (route.h: the choice itself, unit-tested)
 *   index.c     Route's candidates by owner, region and format (index.h)
 *   check.c     checks of a node's settings (check.h)
 *   sync.c      replicas (sync.h): reading the database into the table, the
 *               LISTEN connection, sharing and persisting heartbeats
 *   watch.c     WatchNodes, node events, the health monitor (watch.h)
 *   view.c      what callers see: scopes, the node as the API shows it (view.h)
 *   store.c     every SQL statement and row of routerd (store.h)
 *   table.c     the in-memory node table, its locking, health (table.h)
 *   regions.c   the region list (regions.h)
 *   keys.c      node keys (keys.h)
 *   enums.c     enum names (enums.h)
 *
 *   nodes, tenants -> check, store, sync, view, keys, enums
 *   beat -> keys, sync, index;  route -> index, table, regions;  index -> table
 *   sync -> store, watch;  watch -> view;  view, store -> table, regions
 *
 * Tables: migrations/0005_routing.sql (nodes, node_live, tenant_routing);
 * RegisterNode's keys: frontdesk.idempotency (fd/idem.h). */
#ifndef ROUTERD_H
#define ROUTERD_H

#include <stdbool.h>
#include <stdint.h>
#include "fd/clock.h"
#include "fd/db.h"
#include "fd/service.h"
#include "fd/tctx.h"
#include "regions.h"
#include "table.h"

typedef struct routerd_config {
	fd_service_config_t common;
	int64_t heartbeat_ms;          /* the interval nodes are told */
	int64_t miss_after_ms;         /* 0: 2 x heartbeat_ms */
	int64_t share_ms;              /* received heartbeats are passed to the other replicas this often */
	int64_t persist_ms;            /* ... and written to node_live this often */
	char *regions;                 /* "eu-west=GB IE;us-east=US CA" */
} routerd_config_t;

struct routerd_sync;
struct routerd_watch;

typedef struct routerd {
	const routerd_config_t *cfg;
	fd_db_t *db;
	unsigned char key_hash_key[32];   /* node secrets' keyed BLAKE2b */
	regions_t regions;
	rtable_t tbl;                  /* miss_ms: miss_after_ms resolved */
	struct routerd_sync *sync;     /* sync.c's */
	struct routerd_watch *watch;   /* watch.c's */
} routerd_t;

static inline routerd_t *routerd_of(fd_call_t *call)
{
	return fd_service_state(fd_call_service(call));
}

#define OOM(call) fd_call_fail((call), FD_EEXHAUSTED, "out of memory for this request")

/* A handler's request: the tenant context of the call (fd/tctx.h) and the
 * service. */
typedef struct rreq {
	fd_tctx_t t;
	routerd_t *rd;
} rreq_t;

/* fd_tctx_begin for routerd (0 or -code with the call's error set). */
static inline int rreq_begin(rreq_t *r, fd_call_t *call, fd_scope_t scope, int64_t tenant_id)
{
	r->rd = routerd_of(call);
	return fd_tctx_begin(&r->t, call, scope, tenant_id, NULL);
}

/* Runs fn in a transaction of r's tenant, bounded by the call's deadline. */
static inline int rreq_run(const rreq_t *r, fd_tx_fn fn, void *arg)
{
	return fd_tctx_run(&r->t, r->rd->db, NULL, fn, arg);
}

/* ---- methods (main.c's table) ---- */

int rd_register_node(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);     /* nodes.c */
int rd_get_node(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int rd_list_nodes(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int rd_update_node(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int rd_set_node_state(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int rd_get_tenant_routing(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);  /* tenants.c */
int rd_set_tenant_bandwidth(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int rd_set_shared_pool_access(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int rd_heartbeat(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);          /* beat.c */
extern const fd_stream_ops_t rd_stream_heartbeats;
int rd_route(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);              /* route.c */
extern const fd_stream_ops_t rd_watch_nodes;                                           /* watch.c */

#endif
