/* cache.h - the heartbeat cache: the live sessions this replica answers
 * heartbeats from, and the heartbeats not yet written. Memory only (no
 * database, no linesd state), so its rules are unit tested
 * (tests/unit/test_linesd_cache.c); sessions.c fills it from what the
 * database said and keeps it right through the line events.
 *
 * Generations: an entry read from the database before a drop may be stale
 * (the drop may have been for it), so cache_put refuses it. A caller reads
 * the generation before it asks the database (cache_gen for a known id,
 * cache_drops when the id is known only after), and hands it to cache_put.
 * Every drop (one session, a line's, a shard's old entries, all) bumps its
 * shard's generation and the count of all drops.
 *
 * Thread-safe: one mutex per shard. */
#ifndef LINESD_CACHE_H
#define LINESD_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CACHE_SHARDS 64
#define CACHE_SHARD_MAX 65536   /* sessions cached per shard at most; past it the database answers */

typedef struct cache cache_t;

/* What is cached of a live session. */
typedef struct cache_entry {
	int64_t id, tenant, line, node;
	int64_t expires_at;          /* the line's, when cached (Unix seconds) */
	int64_t last_seen;           /* Unix seconds */
} cache_entry_t;

/* A heartbeat not yet written. */
typedef struct cache_beat {
	int64_t tenant, id, at;
} cache_beat_t;

/* NULL when out of memory. Freed (entries and beats) by cache_free. */
cache_t *cache_new(void);
void cache_free(cache_t *c);

/* The generation of id's shard, and the count of every drop, to read before
 * the database is asked. */
uint64_t cache_gen(cache_t *c, int64_t id);
uint64_t cache_drops(cache_t *c);

/* Caches e (inserted, or the entry of e->id replaced) unless something was
 * dropped since gen was read: gen is e->id's shard generation, or with
 * global the count of all drops. False when refused (a drop since, or the
 * shard full, or out of memory). */
bool cache_put(cache_t *c, bool global, uint64_t gen, const cache_entry_t *e);

/* A hit: session id is cached for tenant, its line not yet expired at now
 * and its last heartbeat at most timeout seconds before now. Then its
 * last_seen becomes now and *out gets the entry. False otherwise (the
 * entry, if any, is left as it is). */
bool cache_touch(cache_t *c, int64_t id, int64_t tenant, int64_t now, int64_t timeout, cache_entry_t *out);

/* Drops session id (a drop even if it was not cached). */
void cache_drop(cache_t *c, int64_t id);
/* Drops every session of line (a drop in every shard). */
void cache_drop_line(cache_t *c, int64_t line);
/* A cached session moved to node (no drop: nothing read before is stale). */
void cache_set_node(cache_t *c, int64_t id, int64_t node);
/* Drops the entries of one shard (round robin over calls) last seen before
 * older_than: sessions nobody heartbeats any more. */
void cache_forget_stale(cache_t *c, int64_t older_than);
/* Drops everything (the events that keep it right may have been missed). */
void cache_forget_all(cache_t *c);
/* How many sessions are cached. */
size_t cache_count(cache_t *c);

/* Notes a heartbeat to write (lost when out of memory: the heartbeat was
 * answered; only its write is missing). */
void cache_note_beat(cache_t *c, int64_t tenant, int64_t id, int64_t at);
/* Takes every heartbeat noted so far, sorted by tenant, session and time:
 * *out malloc'd (the caller frees it), NULL when none. Returns the count. */
size_t cache_take_beats(cache_t *c, cache_beat_t **out);

#endif
