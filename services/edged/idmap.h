/* idmap.h - a bounded map from (tenant, id) to a small value and the time it
 * was set, in memory, for the playback state (state.c): open addressing
 * with linear probing, and a ring of keys in the order they were set, so
 * that the oldest entries go first, by age (idmap_expire) or when the map
 * is full (idmap_set evicts the oldest). Not thread-safe: the caller locks. */
#ifndef EDGE_IDMAP_H
#define EDGE_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct idmap_slot {
	int64_t tenant;
	int64_t id;              /* 0 marks an empty slot when tenant is 0 too: keys are never (0, 0) */
	int64_t at_ms;           /* when it was set */
	int32_t val;
	bool used;
} idmap_slot_t;

typedef struct idmap_key {
	int64_t tenant, id, at_ms;
} idmap_key_t;

typedef struct idmap {
	idmap_slot_t *slots;     /* cap slots, cap a power of two */
	size_t cap, n;
	size_t max;              /* entries at most */
	idmap_key_t *ring;       /* keys in the order they were set (a key set again is listed again) */
	size_t ring_cap, ring_head, ring_n;
	uint64_t evicted;        /* entries dropped because the map was full */
} idmap_t;

/* An empty map of at most max (>= 1) entries; it allocates as it fills. */
void idmap_init(idmap_t *m, size_t max);
void idmap_free(idmap_t *m);
/* Drops every entry (keeps the memory). */
void idmap_clear(idmap_t *m);

/* The entry of (tenant, id), or NULL. The pointer lives until the next
 * idmap_set, idmap_del or idmap_expire. */
const idmap_slot_t *idmap_get(const idmap_t *m, int64_t tenant, int64_t id);
/* Sets (tenant, id) to val at at_ms (a new entry, or an update, which
 * counts as new for the age order). When the map is full the oldest entry
 * is dropped first. 0, or -1 when out of memory (nothing changed). */
int idmap_set(idmap_t *m, int64_t tenant, int64_t id, int32_t val, int64_t at_ms);
/* Sets (tenant, id) unless it is there already: 1 added, 0 present, -1 out of memory. */
int idmap_add(idmap_t *m, int64_t tenant, int64_t id, int32_t val, int64_t at_ms);
void idmap_del(idmap_t *m, int64_t tenant, int64_t id);
/* Drops the entries set before before_ms; returns how many. */
size_t idmap_expire(idmap_t *m, int64_t before_ms);

#endif
