/* store.h - routerd's SQL: every statement it runs and every row it reads
 * (store.c). Each function runs its statement in the caller's transaction;
 * flags as fd_tx_exec's (FD_TX_LAST when it is the transaction's last);
 * 0 or -code with fd_tx_err(tx) saying why.
 *
 * Every change of a node or of a tenant's settings sends its NOTIFY on
 * frontdesk_nodes in the same statement ("node <tenant> <id>",
 * "tenant <tenant>"): every replica reads it back (sync.c). */
#ifndef ROUTERD_STORE_H
#define ROUTERD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "fd/arena.h"
#include "fd/db.h"
#include "keys.h"
#include "regions.h"
#include "table.h"

/* The settings a register or an update writes (checked by check_node).
 * Borrowed for the call. */
typedef struct node_settings {
	const char *name;
	Frontdesk__V1__NodeUrl **urls;
	size_t nurls;
	const char *region, *country, *failure_domain;
	int64_t max_connections, max_egress_mbps, weight;
	char **tags;
	size_t ntags;
	int64_t high, low;             /* water marks, percent */
} node_settings_t;

/* What is stored of a node key: its secret's hash and its prefix. */
typedef struct key_row {
	unsigned char hash[32];
	char prefix[NODE_KEY_PREFIX_MAX];
} key_row_t;

/* ---- reading nodes and tenants ---- */

/* Nodes read in a transaction: valid until its function returns. */
typedef struct store_nodes {
	PGresult *res;
	int n;
} store_nodes_t;

/* Tenant's nodes (id 0: all of them; else the one node), with their last
 * persisted heartbeats. */
int store_read_nodes(fd_tx_t *tx, int64_t tenant, int64_t id, unsigned flags, store_nodes_t *out) FD_MUSTCHECK;
int64_t store_node_tenant(const store_nodes_t *r, int i);
int64_t store_node_id(const store_nodes_t *r, int i);
int64_t store_node_version(const store_nodes_t *r, int i);
/* Row i's settings (malloc'd, for table_put); NULL when out of memory or
 * unreadable. */
rcfg_t *store_node_cfg(const store_nodes_t *r, int i, const regions_t *regions);
/* Row i's last persisted heartbeat (zeros when none). */
void store_node_live(const store_nodes_t *r, int i, rlive_t *out);

/* A tenant's routing settings (TENANT_DEFAULTS when it has no row). */
int store_read_tenant(fd_tx_t *tx, int64_t tenant, unsigned flags, rtenant_t *out) FD_MUSTCHECK;
/* Every tenant's id (platform transaction), -1 terminated, malloc'd. */
int store_tenant_ids(fd_tx_t *tx, unsigned flags, int64_t **ids) FD_MUSTCHECK;

/* ---- writing nodes ---- */

/* A new node's id, taken before its row is written (its key carries it). */
int store_next_node_id(fd_tx_t *tx, int64_t *id) FD_MUSTCHECK;
/* -FD_EEXISTS "name: ..." when the tenant has a node of that name. a holds
 * the parameters. */
int store_insert_node(fd_tx_t *tx, fd_arena_t *a, int64_t tenant, int64_t id, const node_settings_t *s,
                      const key_row_t *key, unsigned flags) FD_MUSTCHECK;
/* Replaces the settings of a node still at version (key NULL: kept).
 * -FD_EEXISTS "name: ...", -FD_EABORTED when the node changed meanwhile. */
int store_update_node(fd_tx_t *tx, fd_arena_t *a, int64_t tenant, int64_t id, int64_t version,
                      const node_settings_t *s, const key_row_t *key, unsigned flags) FD_MUSTCHECK;
/* -FD_ENOTFOUND when the tenant has no such node. */
int store_set_state(fd_tx_t *tx, int64_t tenant, int64_t id, int state, const char *reason,
                    unsigned flags) FD_MUSTCHECK;

/* ---- tenants' routing settings ---- */

/* A change of them; what is not named keeps its value (or the default,
 * for a tenant without a row). */
typedef struct routing_change {
	int64_t max_egress_mbps;       /* -1: kept */
	int policy;                    /* BandwidthPolicy; 0: kept */
	int64_t min_bitrate_kbps;      /* 0: kept */
	int shared_pool_allowed;       /* -1: kept, 0, 1 */
} routing_change_t;
int store_set_routing(fd_tx_t *tx, int64_t tenant, const routing_change_t *c, unsigned flags) FD_MUSTCHECK;

/* ---- replicas ---- */

/* A NOTIFY on frontdesk_nodes. */
int store_notify(fd_tx_t *tx, const char *payload, unsigned flags) FD_MUSTCHECK;

/* Nodes' last heartbeats, written to node_live (a tenant transaction);
 * older than what is stored: ignored. */
typedef struct store_live {
	int64_t id;
	rlive_t l;
} store_live_t;
int store_persist_live(fd_tx_t *tx, fd_arena_t *a, int64_t tenant, const store_live_t *v, size_t n,
                       unsigned flags) FD_MUSTCHECK;

#endif
