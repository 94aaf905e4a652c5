/* auth_cache.c - the verifier's caches: fixed-size values by a 32-byte key,
 * direct-mapped, under striped locks (auth_internal.h). */
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "auth_internal.h"

typedef struct slot_head {
	unsigned char key[32];
	int64_t expire_ms;             /* 0: empty */
} slot_head_t;

int auth_cache_init(auth_cache_t *c, size_t vsize)
{
	c->vsize = vsize;
	c->slot_size = (sizeof(slot_head_t) + vsize + 15) & ~(size_t)15;
	c->slots = calloc(CACHE_SLOTS, c->slot_size);
	if (!c->slots)
		return -1;
	for (int i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_init(&c->locks[i], NULL);
	return 0;
}

void auth_cache_fini(auth_cache_t *c)
{
	if (!c->slots)
		return;
	sodium_memzero(c->slots, CACHE_SLOTS * c->slot_size);
	free(c->slots);
	for (int i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_destroy(&c->locks[i]);
}

static size_t cache_index(const unsigned char key[32])
{
	uint64_t h;
	memcpy(&h, key, sizeof(h));
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (size_t)(h & (CACHE_SLOTS - 1));
}

bool auth_cache_get(auth_cache_t *c, const unsigned char key[32], int64_t now, void *out)
{
	size_t i = cache_index(key);
	slot_head_t *s = (slot_head_t *)(c->slots + i * c->slot_size);
	pthread_mutex_t *mu = &c->locks[i % CACHE_STRIPES];
	bool hit = false;
	pthread_mutex_lock(mu);
	if (s->expire_ms > now && sodium_memcmp(s->key, key, 32) == 0) {
		memcpy(out, s + 1, c->vsize);
		hit = true;
	}
	pthread_mutex_unlock(mu);
	return hit;
}

void auth_cache_put(auth_cache_t *c, const unsigned char key[32], int64_t expire_ms, const void *val)
{
	size_t i = cache_index(key);
	slot_head_t *s = (slot_head_t *)(c->slots + i * c->slot_size);
	pthread_mutex_t *mu = &c->locks[i % CACHE_STRIPES];
	pthread_mutex_lock(mu);
	memcpy(s->key, key, 32);
	s->expire_ms = expire_ms;
	memcpy(s + 1, val, c->vsize);
	pthread_mutex_unlock(mu);
}

void auth_cache_clear(auth_cache_t *c)
{
	for (int st = 0; st < CACHE_STRIPES; st++) {
		pthread_mutex_lock(&c->locks[st]);
		for (size_t i = (size_t)st; i < CACHE_SLOTS; i += CACHE_STRIPES)
			((slot_head_t *)(c->slots + i * c->slot_size))->expire_ms = 0;
		pthread_mutex_unlock(&c->locks[st]);
	}
}
