/* index.c - Route's candidates by owner, region and format (index.h):
 * cells rebuilt when their membership changes, stored keys kept by the
 * writers of the live fields, and the branch-and-bound search. */
#include <stdlib.h>
#include <string.h>
#include "index.h"

/* ---- one tree ---- */

/* The key a node is stored with: -INFINITY while no report could make it
 * UP (never reported, its stream ended, overloaded); time alone (a silent
 * node) is left to the searches (index_drop). */
static double stored_key(const rnode_t *n)
{
	int64_t hb = atomic_load(&n->hb_ms);
	if (hb == 0 || atomic_load(&n->closed_ms) >= hb || atomic_load(&n->overloaded))
		return -INFINITY;
	return node_key(n);
}

/* The better of leaves a and b by stored key, then lower id; -1: none. */
static int32_t winner(const itree_t *tr, int32_t a, int32_t b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	double va = atomic_load_explicit(&tr->val[a], memory_order_relaxed);
	double vb = atomic_load_explicit(&tr->val[b], memory_order_relaxed);
	if (va != vb)
		return va > vb ? a : b;
	return tr->id[a] < tr->id[b] ? a : b;
}

/* Stores x as leaf j's key and replays the matches above it (cell mutex
 * held). Stops where the winner neither was nor is j: nothing above
 * changes. */
static void tree_set(itree_t *tr, int32_t j, double x)
{
	atomic_store_explicit(&tr->val[j], x, memory_order_relaxed);
	for (int32_t v = (tr->size + j) / 2; v >= 1; v /= 2) {
		int32_t old = atomic_load_explicit(&tr->win[v], memory_order_relaxed);
		int32_t w = winner(tr, atomic_load_explicit(&tr->win[2 * v], memory_order_relaxed),
		                   atomic_load_explicit(&tr->win[2 * v + 1], memory_order_relaxed));
		if (w != old)
			atomic_store_explicit(&tr->win[v], w, memory_order_relaxed);
		else if (old != j)
			break;
	}
}

static void tree_free(itree_t *tr)
{
	free(tr->node);
	free(tr->id);
	free(tr->group);
	free((void *)tr->val);
	free((void *)tr->win);
	memset(tr, 0, sizeof(*tr));
}

static int by_group(const void *a, const void *b)
{
	const rnode_t *x = *(rnode_t *const *)a, *y = *(rnode_t *const *)b;
	uint64_t gx = node_group(x), gy = node_group(y);
	if (gx != gy)
		return gx < gy ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* A tree over nodes v[0..m) (sorted here). 0 or -FD_EEXHAUSTED. */
static int tree_build(itree_t *tr, rnode_t **v, int32_t m)
{
	memset(tr, 0, sizeof(*tr));
	if (m == 0)
		return 0;
	int32_t size = 1;
	while (size < m)
		size *= 2;
	qsort(v, (size_t)m, sizeof(*v), by_group);
	tr->m = m;
	tr->size = size;
	tr->node = calloc((size_t)size, sizeof(*tr->node));
	tr->id = calloc((size_t)size, sizeof(*tr->id));
	tr->group = calloc(2 * (size_t)size, sizeof(*tr->group));
	tr->val = calloc((size_t)size, sizeof(*tr->val));
	tr->win = calloc(2 * (size_t)size, sizeof(*tr->win));
	if (!tr->node || !tr->id || !tr->group || !tr->val || !tr->win) {
		tree_free(tr);
		return -FD_EEXHAUSTED;
	}
	for (int32_t j = 0; j < size; j++) {
		rnode_t *n = j < m ? v[j] : NULL;
		tr->node[j] = n;
		tr->id[j] = n ? n->id : INT64_MAX;
		/* Padding takes the last node's group: a subtree keeps one group
		 * when its nodes do. */
		tr->group[size + j] = node_group(n ? n : v[m - 1]);
		atomic_init(&tr->val[j], n ? stored_key(n) : -INFINITY);
		atomic_init(&tr->win[size + j], n ? j : -1);
	}
	atomic_init(&tr->win[0], -1);
	tr->group[0] = 0;
	for (int32_t i = size - 1; i >= 1; i--) {
		atomic_init(&tr->win[i], winner(tr, atomic_load(&tr->win[2 * i]), atomic_load(&tr->win[2 * i + 1])));
		tr->group[i] = tr->group[2 * i] == tr->group[2 * i + 1] ? tr->group[2 * i] : 0;
	}
	return 0;
}

/* ---- owners and cells ---- */

static iowner_t *owner_find(const rtable_t *t, int64_t tenant, size_t *pos)
{
	size_t lo = 0, hi = t->nowners;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (t->owners[mid].tenant < tenant)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return lo < t->nowners && t->owners[lo].tenant == tenant ? &t->owners[lo] : NULL;
}

const iowner_t *index_owner(const rtable_t *t, int64_t tenant)
{
	size_t pos;
	return owner_find(t, tenant, &pos);
}

/* The cell of (tenant, region), made when absent (write lock held). */
static icell_t *cell_of(rtable_t *t, int64_t tenant, int region)
{
	size_t pos;
	iowner_t *o = owner_find(t, tenant, &pos);
	if (!o) {
		if (t->nowners == t->capowners) {
			size_t cap = t->capowners ? t->capowners * 2 : 16;
			iowner_t *v = realloc(t->owners, cap * sizeof(*v));
			if (!v)
				return NULL;
			t->owners = v;
			t->capowners = cap;
		}
		memmove(&t->owners[pos + 1], &t->owners[pos], (t->nowners - pos) * sizeof(*t->owners));
		o = &t->owners[pos];
		memset(o, 0, sizeof(*o));
		o->tenant = tenant;
		t->nowners++;
	}
	int k = region + 1;
	if (k >= o->ncells) {
		/* The list first: it must hold ncells entries whenever ncells
		 * grows (a failure in between leaves both as they were). */
		int n = k + 1;
		icell_t **list = realloc(o->list, (size_t)n * sizeof(*list));
		if (!list)
			return NULL;
		o->list = list;
		icell_t **cell = realloc(o->cell, (size_t)n * sizeof(*cell));
		if (!cell)
			return NULL;
		memset(cell + o->ncells, 0, (size_t)(n - o->ncells) * sizeof(*cell));
		o->cell = cell;
		o->ncells = n;
	}
	if (o->cell[k])
		return o->cell[k];
	icell_t *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->owner = tenant;
	c->region = region;
	pthread_mutex_init(&c->mu, NULL);
	o->cell[k] = c;
	o->nlist = 0;
	for (int i = 0; i < o->ncells; i++)
		if (o->cell[i])
			o->list[o->nlist++] = o->cell[i];
	return c;
}

/* Rebuilds c from the table: the owner's ACTIVE nodes in its region (write
 * lock held). Its members learn their leaves; on failure c is unchanged. */
static int cell_rebuild(rtable_t *t, icell_t *c)
{
	size_t lo, hi;
	table_range(t, c->owner, &lo, &hi);
	rnode_t **all = malloc((hi - lo + 1) * sizeof(*all)), **v = malloc((hi - lo + 1) * sizeof(*v));
	itree_t fresh[IDX_FORMATS];
	memset(fresh, 0, sizeof(fresh));
	int rc = all && v ? 0 : -FD_EEXHAUSTED;
	size_t nall = 0;
	for (size_t i = lo; rc == 0 && i < hi; i++) {
		rnode_t *n = t->nodes[i];
		if (n->region == c->region && n->state == STATE_ACTIVE)
			all[nall++] = n;
	}
	for (int f = 0; rc == 0 && f < IDX_FORMATS; f++) {
		int32_t m = 0;
		for (size_t i = 0; i < nall; i++)
			if (all[i]->url_of[f] >= 0)
				v[m++] = all[i];
		rc = tree_build(&fresh[f], v, m);
	}
	if (rc == 0) {
		pthread_mutex_lock(&c->mu);
		for (int f = 0; f < IDX_FORMATS; f++) {
			tree_free(&c->tree[f]);
			c->tree[f] = fresh[f];
		}
		pthread_mutex_unlock(&c->mu);
		for (size_t i = 0; i < nall; i++) {
			all[i]->cell = c;
			memset(all[i]->slot, -1, sizeof(all[i]->slot));
		}
		for (int f = 0; f < IDX_FORMATS; f++)
			for (int32_t j = 0; j < c->tree[f].m; j++)
				c->tree[f].node[j]->slot[f] = j;
	} else {
		for (int f = 0; f < IDX_FORMATS; f++)
			tree_free(&fresh[f]);
	}
	free(all);
	free(v);
	return rc;
}

int index_place(rtable_t *t, rnode_t *n)
{
	icell_t *old = n->cell;
	icell_t *c = n->state == STATE_ACTIVE ? cell_of(t, n->tenant, n->region) : NULL;
	n->cell = NULL;
	memset(n->slot, -1, sizeof(n->slot));
	int rc = 0;
	if (old && old != c)
		rc = cell_rebuild(t, old);
	if (n->state == STATE_ACTIVE && !c)
		rc = -FD_EEXHAUSTED;
	if (c) {
		int rc2 = cell_rebuild(t, c);
		rc = rc < 0 ? rc : rc2;
	}
	return rc;
}

int index_rebuild(rtable_t *t)
{
	for (size_t i = 0; i < t->n; i++) {
		rnode_t *n = t->nodes[i];
		if (n->state != STATE_ACTIVE) {
			n->cell = NULL;
			memset(n->slot, -1, sizeof(n->slot));
		} else if (!cell_of(t, n->tenant, n->region)) {
			return -FD_EEXHAUSTED;
		}
	}
	for (size_t i = 0; i < t->nowners; i++)
		for (int k = 0; k < t->owners[i].nlist; k++) {
			int rc = cell_rebuild(t, t->owners[i].list[k]);
			if (rc < 0)
				return rc;
		}
	return 0;
}

/* ---- keys ---- */

static void cell_lock(icell_t *c)
{
	if (pthread_mutex_trylock(&c->mu) != 0) {
		pthread_mutex_lock(&c->mu);
		c->waits++;
	}
}

/* Sets n's leaves to x inside the cell's sequence count (mu held): odd
 * from before the first store to after the last, so that a search which
 * read any of them half done sees the count moved. */
static void set_leaves(icell_t *c, const rnode_t *n, double x)
{
	uint32_t s = atomic_load_explicit(&c->seq, memory_order_relaxed);
	atomic_store_explicit(&c->seq, s + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	for (int f = 0; f < IDX_FORMATS; f++)
		if (n->slot[f] >= 0)
			tree_set(&c->tree[f], n->slot[f], x);
	atomic_store_explicit(&c->seq, s + 2, memory_order_release);
}

void index_touch(rnode_t *n)
{
	icell_t *c = n->cell;
	if (!c)
		return;
	cell_lock(c);
	c->touches++;
	set_leaves(c, n, stored_key(n));
	pthread_mutex_unlock(&c->mu);
}

/* index_drop with c's mutex held. */
static void drop_held(const rtable_t *t, icell_t *c, rnode_t *n, int64_t now)
{
	if (node_health(t, n, now) != HEALTH_UP) {
		set_leaves(c, n, -INFINITY);
		c->drops++;
	}
}

void index_drop(const rtable_t *t, rnode_t *n, int64_t now)
{
	icell_t *c = n->cell;
	if (!c)
		return;
	cell_lock(c);
	drop_held(t, c, n, now);
	pthread_mutex_unlock(&c->mu);
}

void index_stats(const rtable_t *t, uint64_t *touches, uint64_t *waits, uint64_t *drops, uint64_t *retries,
                 uint64_t *locked)
{
	*touches = *waits = *drops = *retries = *locked = 0;
	for (size_t i = 0; i < t->nowners; i++)
		for (int k = 0; k < t->owners[i].nlist; k++) {
			icell_t *c = t->owners[i].list[k];
			pthread_mutex_lock(&c->mu);
			*touches += c->touches;
			*waits += c->waits;
			*drops += c->drops;
			*locked += c->locked;
			pthread_mutex_unlock(&c->mu);
			*retries += atomic_load_explicit(&c->retries, memory_order_relaxed);
		}
}

void index_free(rtable_t *t)
{
	for (size_t i = 0; i < t->nowners; i++) {
		iowner_t *o = &t->owners[i];
		for (int k = 0; k < o->nlist; k++) {
			for (int f = 0; f < IDX_FORMATS; f++)
				tree_free(&o->list[k]->tree[f]);
			pthread_mutex_destroy(&o->list[k]->mu);
			free(o->list[k]);
		}
		free(o->cell);
		free(o->list);
	}
	free(t->owners);
	t->owners = NULL;
	t->nowners = t->capowners = 0;
}

/* ---- searching ---- */

static bool beats(const iprobe_t *p, int rank, double key, int64_t id)
{
	if (!p->best)
		return true;
	if (rank != p->best_rank)
		return rank > p->best_rank;
	if (key != p->best_key)
		return key > p->best_key;
	return id < p->best->id;
}

static bool in_groups(const iprobe_t *p, uint64_t g)
{
	for (int i = 0; i < p->ngroups; i++)
		if (p->groups[i] == g)
			return true;
	return false;
}

/* Whether a subtree whose nodes are all in group g (0: mixed) can hold a
 * node the rule allows. */
static bool group_may(const iprobe_t *p, uint64_t g)
{
	if (p->rule == IDX_ANY || g == 0)
		return true;
	return (p->rule == IDX_OTHER) != in_groups(p, g);
}

static void leaf(iprobe_t *p, icell_t *c, rnode_t *n, int rank)
{
	p->leaves++;
	/* A node that left the cell after a rebuild failed stays in its old
	 * trees: only members count. */
	if (n->cell != c || n->state != STATE_ACTIVE || n->url_of[p->format] < 0)
		return;
	for (int i = 0; i < p->nskip; i++)
		if (p->skip[i] == n)
			return;
	for (size_t i = 0; i < p->nexclude; i++)
		if (p->exclude[i] == n->id)
			return;
	if (node_health(p->t, n, p->now) != HEALTH_UP) {
		if (p->held == c)
			drop_held(p->t, p->held, n, p->now);
		else
			index_drop(p->t, n, p->now);
		return;
	}
	double k = node_key(n);
	if (beats(p, rank, k, n->id)) {
		p->best = n;
		p->best_rank = rank;
		p->best_key = k;
	}
}

/* Depth first, the better child first; a subtree is left out when its
 * winner's stored key and id cannot beat the best found (stored keys are
 * never below the node's key now: every rise goes through index_touch), or
 * when the failure-domain rule excludes its one group. */
static void tree_search(iprobe_t *p, icell_t *c, const itree_t *tr, int rank)
{
	int32_t stack[64];
	int sp = 0;
	stack[sp++] = 1;
	while (sp > 0) {
		int32_t v = stack[--sp];
		int32_t j = atomic_load_explicit(&tr->win[v], memory_order_relaxed);
		if (j < 0)
			continue;
		double sv = atomic_load_explicit(&tr->val[j], memory_order_relaxed);
		if (sv == -INFINITY || !beats(p, rank, sv, tr->id[j]) || !group_may(p, tr->group[v]))
			continue;
		if (v >= tr->size) {
			leaf(p, c, tr->node[v - tr->size], rank);
			continue;
		}
		/* The child holding the winner is searched first (pushed last). */
		bool left = atomic_load_explicit(&tr->win[2 * v], memory_order_relaxed) == j;
		stack[sp++] = left ? 2 * v + 1 : 2 * v;
		stack[sp++] = left ? 2 * v : 2 * v + 1;
	}
}

/* The search proper is exact against the keys and winners it reads when
 * they hold still (every winner's key at least every key below it); a
 * replay of the cell running meanwhile can break that for what one search
 * reads (a winner named before its key fell, read after), and a subtree
 * left out by it can hold the best node. The cell's sequence count tells:
 * the search is made again, from what was best before this cell, until it
 * ran between two replays; the last of IDX_TRIES runs under the cell's
 * mutex, so that a stream of replays cannot keep it from an exact answer
 * (both counted). index_drop from this search's own leaves moves the count
 * too; the next try then skips the dropped node at once. */
void index_search(iprobe_t *p, icell_t *c, int rank)
{
	const itree_t *tr = &c->tree[p->format];
	if (tr->m == 0)
		return;
	rnode_t *best = p->best;
	int best_rank = p->best_rank;
	double best_key = p->best_key;
	for (int try = 1; try < IDX_TRIES; try++) {
		uint32_t s1 = atomic_load_explicit(&c->seq, memory_order_acquire);
		tree_search(p, c, tr, rank);
		atomic_thread_fence(memory_order_acquire);
		uint32_t s2 = atomic_load_explicit(&c->seq, memory_order_relaxed);
		if (s1 == s2 && !(s1 & 1))
			return;
		atomic_fetch_add_explicit(&c->retries, 1, memory_order_relaxed);
		p->best = best;
		p->best_rank = best_rank;
		p->best_key = best_key;
	}
	cell_lock(c);
	c->locked++;
	p->held = c;
	tree_search(p, c, tr, rank);
	p->held = NULL;
	pthread_mutex_unlock(&c->mu);
}
