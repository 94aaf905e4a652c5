/* keys.h - node keys: "fdn_<tenant>_<id>_<secret>", minted here and
 * recognised here. Only a keyed BLAKE2b of the secret is kept (the table's
 * key_hash); the prefix shown later is the non-secret head "fdn_<tenant>_<id>_",
 * as an API key's is. */
#ifndef ROUTERD_KEYS_H
#define ROUTERD_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NODE_KEY_PREFIX "fdn_"
#define NODE_KEY_MAX 128          /* a key's length, NUL included */
#define NODE_KEY_PREFIX_MAX 48

/* A new key of node id into key (the caller wipes it once answered), the
 * secret's hash under hash_key, and the prefix shown later. */
void key_new(const unsigned char hash_key[32], int64_t tenant, int64_t id, char key[NODE_KEY_MAX],
             unsigned char hash[32], char prefix[NODE_KEY_PREFIX_MAX]);
/* Reads a presented key: its tenant, its node and its secret's hash. false
 * when it is not shaped as a node key. */
bool key_parse(const unsigned char hash_key[32], const char *key, int64_t *tenant, int64_t *id,
               unsigned char hash[32]);

#endif
