/* keys.c - minting and reading node keys (keys.h). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sodium.h>
#include "keys.h"
#include "fd/auth.h"

static void secret_hash(const unsigned char hash_key[32], const char *secret, unsigned char hash[32])
{
	crypto_generichash(hash, 32, (const unsigned char *)secret, strlen(secret), hash_key, 32);
}

void key_new(const unsigned char hash_key[32], int64_t tenant, int64_t id, char key[NODE_KEY_MAX],
             unsigned char hash[32], char prefix[NODE_KEY_PREFIX_MAX])
{
	unsigned char raw[32];
	char secret[48];
	randombytes_buf(raw, sizeof(raw));
	fd_b64url_encode(raw, sizeof(raw), secret, sizeof(secret));
	sodium_memzero(raw, sizeof(raw));
	secret_hash(hash_key, secret, hash);
	snprintf(key, NODE_KEY_MAX, NODE_KEY_PREFIX "%" PRId64 "_%" PRId64 "_%s", tenant, id, secret);
	snprintf(prefix, NODE_KEY_PREFIX_MAX, NODE_KEY_PREFIX "%" PRId64 "_%" PRId64 "_", tenant, id);
	sodium_memzero(secret, sizeof(secret));
}

bool key_parse(const unsigned char hash_key[32], const char *key, int64_t *tenant, int64_t *id,
               unsigned char hash[32])
{
	size_t pl = strlen(NODE_KEY_PREFIX);
	int used = 0;
	*tenant = -1;
	*id = -1;
	if (!key || strncmp(key, NODE_KEY_PREFIX, pl) != 0 ||
	    sscanf(key + pl, "%" SCNd64 "_%" SCNd64 "_%n", tenant, id, &used) != 2 || used <= 0 || *tenant < 0 ||
	    *id <= 0)
		return false;
	secret_hash(hash_key, key + pl + used, hash);
	return true;
}
