/* idmap.c - the bounded (tenant, id) map of the playback state (idmap.h):
 * linear probing with backward-shift deletion (no tombstones), a ring of
 * keys in the order they were set for eviction by age or count. */
#include <stdlib.h>
#include <string.h>
#include "idmap.h"

#define FIRST_CAP 64

static uint64_t mix(int64_t tenant, int64_t id)
{
	/* splitmix64 of the two words */
	uint64_t x = (uint64_t)id * 0x9e3779b97f4a7c15ULL ^ (uint64_t)tenant * 0xc2b2ae3d27d4eb4fULL;
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

void idmap_init(idmap_t *m, size_t max)
{
	memset(m, 0, sizeof(*m));
	m->max = max ? max : 1;
}

void idmap_free(idmap_t *m)
{
	free(m->slots);
	free(m->ring);
	memset(m, 0, sizeof(*m));
}

void idmap_clear(idmap_t *m)
{
	if (m->slots)
		memset(m->slots, 0, m->cap * sizeof(*m->slots));
	m->n = 0;
	m->ring_head = m->ring_n = 0;
}

static size_t find_slot(const idmap_t *m, int64_t tenant, int64_t id, bool *found)
{
	size_t mask = m->cap - 1;
	size_t i = (size_t)mix(tenant, id) & mask;
	for (;;) {
		const idmap_slot_t *s = &m->slots[i];
		if (!s->used) {
			*found = false;
			return i;
		}
		if (s->tenant == tenant && s->id == id) {
			*found = true;
			return i;
		}
		i = (i + 1) & mask;
	}
}

const idmap_slot_t *idmap_get(const idmap_t *m, int64_t tenant, int64_t id)
{
	if (!m->n)
		return NULL;
	bool found;
	size_t i = find_slot(m, tenant, id, &found);
	return found ? &m->slots[i] : NULL;
}

static int grow(idmap_t *m)
{
	size_t cap = m->cap ? m->cap * 2 : FIRST_CAP;
	idmap_slot_t *slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return -1;
	idmap_slot_t *old = m->slots;
	size_t old_cap = m->cap;
	m->slots = slots;
	m->cap = cap;
	for (size_t i = 0; i < old_cap; i++) {
		if (!old[i].used)
			continue;
		bool found;
		size_t j = find_slot(m, old[i].tenant, old[i].id, &found);
		m->slots[j] = old[i];
	}
	free(old);
	return 0;
}

/* Backward-shift deletion: the entries after i that probed past it move up. */
static void delete_at(idmap_t *m, size_t i)
{
	size_t mask = m->cap - 1;
	size_t j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (!m->slots[j].used)
			break;
		size_t home = (size_t)mix(m->slots[j].tenant, m->slots[j].id) & mask;
		/* Move j to i when its home is not within (i, j] (cyclically). */
		bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!between) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	memset(&m->slots[i], 0, sizeof(m->slots[i]));
	m->n--;
}

void idmap_del(idmap_t *m, int64_t tenant, int64_t id)
{
	if (!m->n)
		return;
	bool found;
	size_t i = find_slot(m, tenant, id, &found);
	if (found)
		delete_at(m, i);
}

/* Takes the oldest key off the ring and drops its entry unless it was set
 * again since. Returns whether an entry was dropped. */
static bool ring_pop(idmap_t *m)
{
	idmap_key_t k = m->ring[m->ring_head];
	m->ring_head = (m->ring_head + 1) % m->ring_cap;
	m->ring_n--;
	if (!m->n)
		return false;
	bool found;
	size_t i = find_slot(m, k.tenant, k.id, &found);
	if (!found || m->slots[i].at_ms != k.at_ms)
		return false;
	delete_at(m, i);
	return true;
}

static int ring_push(idmap_t *m, int64_t tenant, int64_t id, int64_t at_ms)
{
	if (m->ring_n == m->ring_cap && m->ring_cap < m->max) {
		size_t cap = m->ring_cap ? m->ring_cap * 2 : FIRST_CAP;
		if (cap > m->max)
			cap = m->max;
		idmap_key_t *r = malloc(cap * sizeof(*r));
		if (!r)
			return -1;
		for (size_t k = 0; k < m->ring_n; k++)
			r[k] = m->ring[(m->ring_head + k) % m->ring_cap];
		free(m->ring);
		m->ring = r;
		m->ring_cap = cap;
		m->ring_head = 0;
	}
	while (m->ring_n == m->ring_cap)
		if (ring_pop(m))
			m->evicted++;
	m->ring[(m->ring_head + m->ring_n) % m->ring_cap] = (idmap_key_t){ tenant, id, at_ms };
	m->ring_n++;
	return 0;
}

static int put(idmap_t *m, int64_t tenant, int64_t id, int32_t val, int64_t at_ms, bool replace)
{
	if ((m->n + 1) * 10 > m->cap * 7 && grow(m) < 0)
		return -1;
	bool found;
	size_t i = find_slot(m, tenant, id, &found);
	if (found && !replace)
		return 0;
	if (ring_push(m, tenant, id, at_ms) < 0)
		return -1;
	/* The push may have evicted entries, which moves slots: look again. */
	i = find_slot(m, tenant, id, &found);
	if (!found)
		m->n++;
	m->slots[i] = (idmap_slot_t){ .tenant = tenant, .id = id, .at_ms = at_ms, .val = val, .used = true };
	return 1;
}

int idmap_set(idmap_t *m, int64_t tenant, int64_t id, int32_t val, int64_t at_ms)
{
	return put(m, tenant, id, val, at_ms, true) < 0 ? -1 : 0;
}

int idmap_add(idmap_t *m, int64_t tenant, int64_t id, int32_t val, int64_t at_ms)
{
	return put(m, tenant, id, val, at_ms, false);
}

size_t idmap_expire(idmap_t *m, int64_t before_ms)
{
	size_t dropped = 0;
	while (m->ring_n && m->ring[m->ring_head].at_ms < before_ms)
		dropped += ring_pop(m);
	return dropped;
}
