/* index.h - the candidates Route chooses from, indexed (index.c): for each
 * owner (a tenant, or the shared pool: tenant 0) and region, a cell of the
 * owner's ACTIVE nodes there, with one tournament tree per output format
 * over the nodes serving it. route.c's header explains the structure and
 * why choosing from it gives the answer of a pass over every node.
 *
 * Locks: the cells' shape (membership, leaf order, failure-domain groups)
 * changes only under the table's write lock (index_place); the stored keys
 * and winners change under the cell's mutex (index_touch, index_drop) with
 * the table lock held in either mode, inside the cell's sequence count (odd
 * while a replay runs); searches read them lock-free and search a cell
 * again when its count moved meanwhile (a replay seen half done could
 * leave out a subtree by a winner whose key just fell). */
#ifndef ROUTERD_INDEX_H
#define ROUTERD_INDEX_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include "table.h"

#define IDX_FORMATS 4             /* OutputFormat 0 (any), TS, M3U8, RTMP */

/* One format's tree of a cell: leaves 0..m-1 are its nodes sorted by
 * (failure-domain group, id), padded to a power of two; node v (1 the root,
 * 2v and 2v+1 its children, size + j leaf j) names in win[v] the leaf with
 * the best stored key below it (ties: the lower id), -1 when none. */
typedef struct itree {
	int32_t m, size;
	rnode_t **node;               /* [size]: NULL for padding */
	int64_t *id;                  /* [size] */
	uint64_t *group;              /* [2 * size]: every leaf below v in this group, else 0 */
	_Atomic double *val;          /* [size]: the stored key; -INFINITY: not a candidate until touched */
	_Atomic int32_t *win;         /* [2 * size] */
} itree_t;

typedef struct icell {
	int64_t owner;
	int region;                   /* -1: a region not configured here */
	pthread_mutex_t mu;           /* writers of val and win */
	_Atomic uint32_t seq;         /* bumped before and after every replay (under mu): odd while one runs */
	uint64_t touches, waits, drops;   /* under mu: key updates, of them found mu taken; nodes dropped */
	_Atomic uint64_t retries;     /* searches of this cell made again: a replay ran meanwhile */
	uint64_t locked;              /* under mu: searches that ran under it (IDX_TRIES reached) */
	itree_t tree[IDX_FORMATS];
} icell_t;

typedef struct iowner {
	int64_t tenant;
	int ncells;
	icell_t **cell;               /* [ncells]: by region + 1 (NULL: none yet) */
	icell_t **list;               /* [nlist]: the cells in use, in region order */
	int nlist;
} iowner_t;

/* The failure-domain group of a node: its named domain's hash (odd), or a
 * group of its own (its id, shifted: even) for "". Two nodes share a
 * failure domain exactly when their groups are equal. */
static inline uint64_t node_group(const rnode_t *n)
{
	return n->domain ? n->domain : (uint64_t)n->id << 1;
}

/* The order of primaries within a region, higher first: weight > 0 before
 * weight 0 (IDX_WEIGHTED more), then weight x headroom (at most 10,000),
 * headroom counting what this replica routed since the node's last report.
 * One sum, as the pass over every node computed it (so products equal but
 * for their last bits, 200 x 0.18 and 100 x 0.36, still tie). */
#define IDX_WEIGHTED 2e4

static inline double node_key(const rnode_t *n)
{
	double h = 1.0 - node_fill(n, true);
	return (n->weight > 0 ? IDX_WEIGHTED : 0) + n->weight * (h > 0 ? h : 0);
}

/* The node's cells after its settings changed or it is new (write lock
 * held): the cells it left and joined are rebuilt. 0 or -FD_EEXHAUSTED
 * (the cells keep their last shape; n is then in none). */
int index_place(rtable_t *t, rnode_t *n) FD_MUSTCHECK;
/* Every cell rebuilt (write lock held). 0 or -FD_EEXHAUSTED. */
int index_rebuild(rtable_t *t) FD_MUSTCHECK;
/* n's live fields changed (a report, a share, a stream ended, Route counted
 * a viewer): its stored keys are set from them (table lock held, either
 * mode). */
void index_touch(rnode_t *n);
/* A search found n not UP at now: it is no candidate until its next report
 * (index_touch). Checked again under the cell's mutex. (Unlike the pass
 * over every node, a wall clock stepped back does not make a dropped node
 * a candidate again before that report.) */
void index_drop(const rtable_t *t, rnode_t *n, int64_t now);
/* The owner's cells (table lock held); NULL when it has no ACTIVE node. */
const iowner_t *index_owner(const rtable_t *t, int64_t tenant);
/* Sums of the cells' counters. */
void index_stats(const rtable_t *t, uint64_t *touches, uint64_t *waits, uint64_t *drops, uint64_t *retries,
                 uint64_t *locked);
void index_free(rtable_t *t);

/* ---- searching ---- */

/* What a search looks for, and the best found so far. Candidates compare by
 * (rank, key, lower id); rank is the caller's per cell (the client's region
 * first). A node passes when it is UP at now, ACTIVE, serving the format,
 * not excluded, not in skip, and, by rule, in another failure domain than
 * every group in groups (IDX_OTHER) or in one of them (IDX_SAME). */
enum { IDX_ANY, IDX_OTHER, IDX_SAME };

typedef struct iprobe {
	const rtable_t *t;
	int64_t now;
	int format;
	const int64_t *exclude;
	size_t nexclude;
	int rule;
	int ngroups, nskip;
	uint64_t groups[3];
	const rnode_t *skip[3];
	icell_t *held;                /* the cell whose mutex this search holds (its last try) */
	/* out */
	rnode_t *best;
	int best_rank;
	double best_key;
	unsigned leaves;              /* leaves looked at */
} iprobe_t;

/* Searches cell c's tree of p->format with rank, keeping in p the best
 * node that passes. A search that overlapped a replay of the cell (its
 * sequence count moved) is made again; the last of IDX_TRIES under the
 * cell's mutex (index.c). */
#define IDX_TRIES 4
void index_search(iprobe_t *p, icell_t *c, int rank);

#endif
