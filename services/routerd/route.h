/* route.h - Route's choice, apart from the call (route.c), so that unit
 * tests reach it (tests/unit/test_route.c).
 *
 * Of the nodes the tenant may use (its own, and the shared pool when
 * allowed), the eligible ones are ACTIVE, UP (health computed now, so a
 * silent node drops out exactly miss_ms after its last heartbeat), serving
 * the format, not excluded. The node is the current one when it is still
 * eligible (sticky); otherwise the best by: in the client's region,
 * weight > 0, weight x headroom (headroom counts what this replica routed
 * there since the node's last report, so a burst of viewers between two
 * heartbeats spreads instead of piling on one node), lowest id. Backups (up
 * to 2): the best of the rest by: another failure domain than those chosen,
 * another region than the node's, then the same order. The choice reads
 * the candidate index (index.h); route.c's header says how. */
#ifndef ROUTERD_ROUTE_H
#define ROUTERD_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "table.h"

#define ROUTE_MAX_BACKUPS 2

/* What a viewer asks. Borrowed for the call. */
typedef struct route_ask {
	int64_t tenant;
	bool shared;                  /* the shared pool's nodes too */
	int region;                   /* the client's region; -1: unknown */
	int format;                   /* OutputFormat; 0: any */
	int64_t current;              /* the node the viewer is on; 0: none */
	const int64_t *exclude;       /* node ids not to use */
	size_t nexclude;
} route_ask_t;

/* The choice. Nodes are borrowed from the table while its lock is held. */
typedef struct route_pick {
	int n;                        /* chosen: 0 (none fits), or the node and its backups */
	rnode_t *node[1 + ROUTE_MAX_BACKUPS];
	int url[1 + ROUTE_MAX_BACKUPS];   /* index of the format's URL in each node's cfg->urls */
	bool sticky;                  /* node[0] is ask->current */
	/* Of the nodes seen, why the others were left out (for the error):
	 * route_count's. */
	size_t seen, down, overloaded, unfit;   /* unfit: not active, no format, or excluded */
	unsigned leaves;              /* index leaves the choice looked at */
} route_pick_t;

/* Chooses under t's lock (either mode), from the index: the counts are
 * left 0. 0, or -FD_EEXHAUSTED when out of memory. May drop nodes found
 * silent from the index (index_drop). */
int route_choose(const rtable_t *t, const route_ask_t *ask, int64_t now, route_pick_t *out) FD_MUSTCHECK;
/* The counts, by a pass over every node the tenant may use (the error when
 * nothing fits). */
void route_count(const rtable_t *t, const route_ask_t *ask, int64_t now, route_pick_t *out);
/* route_choose, then route_count. */
int route_pick(const rtable_t *t, const route_ask_t *ask, int64_t now, route_pick_t *out) FD_MUSTCHECK;

/* Route's bandwidth rule for a tenant at egress e (Mbps) asking bitrate_kbps
 * (0: unknown): 0 to route as asked, 1 to route with *cap_kbps as the
 * bitrate cap (policy LOWER_BITRATE), -1 to refuse (REFUSE). */
int route_bandwidth(const rtenant_t *t, double e, int64_t bitrate_kbps, int64_t *cap_kbps);

#endif
