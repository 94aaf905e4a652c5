/* test_linesd_cache.c - the heartbeat cache's rules (services/linesd/cache.h):
 * insert, look-up, drops, and the generations that keep a stale read from
 * being cached, and the heartbeats taken in order. */
#include <stdlib.h>
#include "cache.h"
#include "test.h"

static cache_entry_t entry(int64_t id, int64_t tenant, int64_t line, int64_t expires_at, int64_t last_seen)
{
	return (cache_entry_t){ .id = id, .tenant = tenant, .line = line, .node = 7, .expires_at = expires_at,
		                    .last_seen = last_seen };
}

static void test_put_and_touch(void)
{
	cache_t *c = cache_new();
	cache_entry_t e = entry(10, 3, 100, 2000, 1000), out;
	CHECK(cache_put(c, false, cache_gen(c, 10), &e), "a put with the shard's generation");
	CHECK(cache_count(c) == 1, "one cached");
	CHECK(cache_touch(c, 10, 3, 1030, 90, &out) && out.node == 7 && out.line == 100 && out.last_seen == 1030,
	      "a hit: last_seen becomes now");
	CHECK(!cache_touch(c, 10, 4, 1031, 90, &out), "another tenant's session is not a hit");
	CHECK(!cache_touch(c, 11, 3, 1031, 90, &out), "an unknown session is not a hit");
	CHECK(cache_touch(c, 10, 3, 1120, 90, &out), "exactly the timeout after the last beat: a hit");
	CHECK(!cache_touch(c, 10, 3, 1211, 90, &out), "past the timeout: not a hit");
	CHECK(!cache_touch(c, 10, 3, 2000, 5000, &out), "the line expired (now == expires_at): not a hit");
	/* A put replaces the entry of its id. */
	e = entry(10, 3, 100, 5000, 1300);
	e.node = 9;
	CHECK(cache_put(c, false, cache_gen(c, 10), &e) && cache_count(c) == 1, "replaced, still one");
	CHECK(cache_touch(c, 10, 3, 1301, 90, &out) && out.node == 9, "the new node");
	cache_set_node(c, 10, 11);
	CHECK(cache_touch(c, 10, 3, 1302, 90, &out) && out.node == 11, "moved to node 11");
	cache_free(c);
}

static void test_generations(void)
{
	cache_t *c = cache_new();
	cache_entry_t e = entry(20, 3, 200, 9000, 1000), out;
	uint64_t gen = cache_gen(c, 20), drops = cache_drops(c);
	cache_drop(c, 20 + CACHE_SHARDS);   /* another session of the same shard, never cached */
	CHECK(cache_gen(c, 20) != gen && cache_drops(c) == drops + 1, "a drop bumps its shard and the count");
	CHECK(!cache_put(c, false, gen, &e), "read before a drop of its shard: refused");
	CHECK(!cache_put(c, true, drops, &e), "read before any drop (global): refused");
	CHECK(cache_count(c) == 0, "nothing cached");
	CHECK(cache_put(c, true, cache_drops(c), &e), "read after: cached");
	/* A drop of another shard: the shard's generation still holds, the global one does not. */
	uint64_t g20 = cache_gen(c, 20), all = cache_drops(c);
	cache_drop(c, 21);
	cache_entry_t e2 = entry(20, 3, 200, 9000, 1001);
	CHECK(cache_put(c, false, g20, &e2), "another shard's drop does not refuse a per-shard put");
	CHECK(!cache_put(c, true, all, &e2), "... but refuses a global one");
	cache_drop(c, 20);
	CHECK(!cache_touch(c, 20, 3, 1002, 90, &out) && cache_count(c) == 0, "dropped");
	cache_free(c);
}

static void test_drops(void)
{
	cache_t *c = cache_new();
	cache_entry_t out;
	for (int64_t id = 1; id <= 200; id++) {
		cache_entry_t e = entry(id, 3, id % 2 ? 501 : 502, 9000, 1000 + id);
		CHECK(cache_put(c, true, cache_drops(c), &e), "put %lld", (long long)id);
	}
	CHECK(cache_count(c) == 200, "200 cached");
	uint64_t g = cache_gen(c, 2);
	cache_drop_line(c, 501);
	CHECK(cache_count(c) == 100, "a line's sessions dropped: %zu left", cache_count(c));
	CHECK(!cache_touch(c, 1, 3, 1100, 900, &out) && cache_touch(c, 2, 3, 1100, 900, &out), "line 501's gone, 502's kept");
	CHECK(cache_gen(c, 2) != g, "a line's drop bumps every shard");
	/* Stale ones go one shard per call: after a round, every shard. */
	for (int i = 0; i < CACHE_SHARDS; i++)
		cache_forget_stale(c, 1101);
	CHECK(cache_count(c) == 50, "seen before 1101 forgotten, the rest kept: %zu", cache_count(c));
	CHECK(cache_touch(c, 102, 3, 1150, 900, &out) && !cache_touch(c, 100, 3, 1150, 900, &out), "by last_seen");
	cache_forget_all(c);
	CHECK(cache_count(c) == 0, "all forgotten");
	cache_free(c);
}

static void test_beats(void)
{
	cache_t *c = cache_new();
	cache_beat_t *b;
	CHECK(cache_take_beats(c, &b) == 0 && b == NULL, "none");
	cache_note_beat(c, 5, 30, 1002);
	cache_note_beat(c, 4, 99, 1001);
	cache_note_beat(c, 5, 30, 1001);
	cache_note_beat(c, 5, 7, 1003);
	size_t n = cache_take_beats(c, &b);
	CHECK(n == 4, "four beats: %zu", n);
	if (n == 4) {
		CHECK(b[0].tenant == 4 && b[0].id == 99, "tenant 4 first");
		CHECK(b[1].tenant == 5 && b[1].id == 7, "then by session");
		CHECK(b[2].id == 30 && b[2].at == 1001 && b[3].id == 30 && b[3].at == 1002, "then by time");
	}
	free(b);
	CHECK(cache_take_beats(c, &b) == 0, "taken once");
	free(b);
	cache_free(c);
}

int main(void)
{
	test_put_and_touch();
	test_generations();
	test_drops();
	test_beats();
	return test_summary();
}
