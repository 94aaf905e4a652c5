/* cache.c - the heartbeat cache (cache.h): sharded hash tables of live
 * sessions, their generations, and the heartbeats waiting to be written. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "cache.h"

#define BUCKETS 4096            /* per shard */

typedef struct sess {
	struct sess *next;
	cache_entry_t e;
} sess_t;

typedef struct shard {
	pthread_mutex_t mu;
	uint64_t gen;                /* bumped by every drop of this shard */
	sess_t *buckets[BUCKETS];
	size_t n;
	cache_beat_t *beats;         /* heartbeats not yet written */
	size_t nbeats, capbeats;
} shard_t;

struct cache {
	shard_t shards[CACHE_SHARDS];
	_Atomic uint64_t drops;      /* every drop of every shard */
	_Atomic unsigned stale_shard;   /* cache_forget_stale's round robin */
};

cache_t *cache_new(void)
{
	cache_t *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	for (int i = 0; i < CACHE_SHARDS; i++)
		pthread_mutex_init(&c->shards[i].mu, NULL);
	return c;
}

static shard_t *shard_of(cache_t *c, int64_t id)
{
	return &c->shards[(uint64_t)id % CACHE_SHARDS];
}

static sess_t **slot_of(shard_t *sh, int64_t id)
{
	uint64_t h = (uint64_t)id / CACHE_SHARDS;
	h ^= h >> 17;
	h *= 0x9e3779b97f4a7c15ull;
	return &sh->buckets[(h >> 40) % BUCKETS];
}

/* Under sh->mu. */
static sess_t *find(shard_t *sh, int64_t id)
{
	for (sess_t *s = *slot_of(sh, id); s; s = s->next)
		if (s->e.id == id)
			return s;
	return NULL;
}

/* Under sh->mu: a drop happens. */
static void bump(cache_t *c, shard_t *sh)
{
	sh->gen++;
	atomic_fetch_add(&c->drops, 1);
}

/* Under sh->mu: bumps, then frees the entries of sh that drop says. */
static void shard_drop_if(cache_t *c, shard_t *sh, bool (*drop)(const cache_entry_t *, int64_t), int64_t arg)
{
	bump(c, sh);
	for (int b = 0; b < BUCKETS; b++)
		for (sess_t **p = &sh->buckets[b]; *p;) {
			if (drop(&(*p)->e, arg)) {
				sess_t *s = *p;
				*p = s->next;
				free(s);
				sh->n--;
			} else {
				p = &(*p)->next;
			}
		}
}

static bool seen_before(const cache_entry_t *e, int64_t t)
{
	return e->last_seen < t;
}

static bool of_line(const cache_entry_t *e, int64_t line)
{
	return e->line == line;
}

void cache_free(cache_t *c)
{
	if (!c)
		return;
	for (int i = 0; i < CACHE_SHARDS; i++) {
		shard_drop_if(c, &c->shards[i], seen_before, INT64_MAX);
		free(c->shards[i].beats);
		pthread_mutex_destroy(&c->shards[i].mu);
	}
	free(c);
}

uint64_t cache_gen(cache_t *c, int64_t id)
{
	shard_t *sh = shard_of(c, id);
	pthread_mutex_lock(&sh->mu);
	uint64_t g = sh->gen;
	pthread_mutex_unlock(&sh->mu);
	return g;
}

uint64_t cache_drops(cache_t *c)
{
	return atomic_load(&c->drops);
}

bool cache_put(cache_t *c, bool global, uint64_t gen, const cache_entry_t *e)
{
	shard_t *sh = shard_of(c, e->id);
	pthread_mutex_lock(&sh->mu);
	bool ok = (global ? atomic_load(&c->drops) : sh->gen) == gen;
	sess_t *s = ok ? find(sh, e->id) : NULL;
	if (ok && !s && sh->n < CACHE_SHARD_MAX && (s = calloc(1, sizeof(*s)))) {
		sess_t **slot = slot_of(sh, e->id);
		s->next = *slot;
		*slot = s;
		sh->n++;
	}
	if (s)
		s->e = *e;
	pthread_mutex_unlock(&sh->mu);
	return s != NULL;
}

bool cache_touch(cache_t *c, int64_t id, int64_t tenant, int64_t now, int64_t timeout, cache_entry_t *out)
{
	shard_t *sh = shard_of(c, id);
	pthread_mutex_lock(&sh->mu);
	sess_t *s = find(sh, id);
	bool hit = s && s->e.tenant == tenant && now < s->e.expires_at && now - s->e.last_seen <= timeout;
	if (hit) {
		s->e.last_seen = now;
		*out = s->e;
	}
	pthread_mutex_unlock(&sh->mu);
	return hit;
}

void cache_drop(cache_t *c, int64_t id)
{
	shard_t *sh = shard_of(c, id);
	pthread_mutex_lock(&sh->mu);
	bump(c, sh);
	for (sess_t **p = slot_of(sh, id); *p; p = &(*p)->next)
		if ((*p)->e.id == id) {
			sess_t *s = *p;
			*p = s->next;
			free(s);
			sh->n--;
			break;
		}
	pthread_mutex_unlock(&sh->mu);
}

void cache_drop_line(cache_t *c, int64_t line)
{
	for (int i = 0; i < CACHE_SHARDS; i++) {
		shard_t *sh = &c->shards[i];
		pthread_mutex_lock(&sh->mu);
		shard_drop_if(c, sh, of_line, line);
		pthread_mutex_unlock(&sh->mu);
	}
}

void cache_set_node(cache_t *c, int64_t id, int64_t node)
{
	shard_t *sh = shard_of(c, id);
	pthread_mutex_lock(&sh->mu);
	sess_t *s = find(sh, id);
	if (s)
		s->e.node = node;
	pthread_mutex_unlock(&sh->mu);
}

void cache_forget_stale(cache_t *c, int64_t older_than)
{
	shard_t *sh = &c->shards[atomic_fetch_add(&c->stale_shard, 1) % CACHE_SHARDS];
	pthread_mutex_lock(&sh->mu);
	shard_drop_if(c, sh, seen_before, older_than);
	pthread_mutex_unlock(&sh->mu);
}

void cache_forget_all(cache_t *c)
{
	for (int i = 0; i < CACHE_SHARDS; i++) {
		shard_t *sh = &c->shards[i];
		pthread_mutex_lock(&sh->mu);
		shard_drop_if(c, sh, seen_before, INT64_MAX);
		pthread_mutex_unlock(&sh->mu);
	}
}

size_t cache_count(cache_t *c)
{
	size_t n = 0;
	for (int i = 0; i < CACHE_SHARDS; i++) {
		shard_t *sh = &c->shards[i];
		pthread_mutex_lock(&sh->mu);
		n += sh->n;
		pthread_mutex_unlock(&sh->mu);
	}
	return n;
}

void cache_note_beat(cache_t *c, int64_t tenant, int64_t id, int64_t at)
{
	shard_t *sh = shard_of(c, id);
	pthread_mutex_lock(&sh->mu);
	if (sh->nbeats == sh->capbeats) {
		size_t cap = sh->capbeats ? 2 * sh->capbeats : 256;
		cache_beat_t *b = realloc(sh->beats, cap * sizeof(*b));
		if (!b) {
			pthread_mutex_unlock(&sh->mu);
			return;
		}
		sh->beats = b;
		sh->capbeats = cap;
	}
	sh->beats[sh->nbeats++] = (cache_beat_t){ tenant, id, at };
	pthread_mutex_unlock(&sh->mu);
}

static int beat_order(const void *a, const void *b)
{
	const cache_beat_t *x = a, *y = b;
	if (x->tenant != y->tenant)
		return x->tenant < y->tenant ? -1 : 1;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->at < y->at ? -1 : x->at > y->at;
}

size_t cache_take_beats(cache_t *c, cache_beat_t **out)
{
	size_t total = 0;
	cache_beat_t *all = NULL;
	for (int i = 0; i < CACHE_SHARDS; i++) {
		shard_t *sh = &c->shards[i];
		pthread_mutex_lock(&sh->mu);
		if (sh->nbeats) {
			cache_beat_t *grown = realloc(all, (total + sh->nbeats) * sizeof(*all));
			if (grown) {   /* else these beats are lost, as a note_beat out of memory */
				all = grown;
				memcpy(all + total, sh->beats, sh->nbeats * sizeof(*all));
				total += sh->nbeats;
			}
			sh->nbeats = 0;
		}
		pthread_mutex_unlock(&sh->mu);
	}
	if (total)
		qsort(all, total, sizeof(*all), beat_order);
	*out = all;
	return total;
}
