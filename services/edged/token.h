/* token.h - the hand-off token a /live/ redirect carries to a streaming node,
 * and the per-node secrets the nodes' hooks present. Pure: no I/O, no clock
 * (callers pass the time), no allocation but the key set's.
 *
 * Keys. FRONTDESK_EDGED_SIGNING_KEYS = "kid:64hex[,kid:64hex...]" (kid 1..255,
 * at most EDGE_KEYS_MAX): the first key signs, every listed key verifies, so
 * a key is rotated by putting the new one first, keeping the old one listed
 * while tokens and node configs made with it live, then dropping it.
 *
 * Node keys. Each node gets its own key, derived from a signing key:
 *   node_key = crypto_kdf_derive_from_key(32, subkey id = node_id,
 *                                         context "fdedgend", signing key)
 * and its configured secret (nginx's node.conf) is that key in hex. Tokens
 * for a node are MACed with its node key, so a node's leaked secret lets no
 * one make or check the tokens of another node, nor learn the signing key.
 *
 * Token. The packed payload (big endian, EDGE_TOKEN_PAYLOAD bytes):
 *   version 1 | kid 1 | format 1 | tenant_id 8 | line_id 8 | session_id 8 |
 *   stream_id 8 | node_id 8 | client ip 16 (IPv4 as ::ffff:a.b.c.d) |
 *   issued_at ms 8 | expires_at s 8
 * followed by its MAC: keyed BLAKE2b (crypto_generichash, 16 bytes) under
 * the node key of node_id derived from the key named by kid. The text form
 * is base64url without padding (URL path segment and query safe), always
 * EDGE_TOKEN_LEN characters. edge_token_open checks only the MAC and the
 * shape: expiry, the client's address and the node are the caller's checks
 * (edge_token_expired, edge_token_ip_matches, edge_token_for_node). */
#ifndef EDGE_TOKEN_H
#define EDGE_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "fd/status.h"

#define EDGE_KEYS_SETTING "FRONTDESK_EDGED_SIGNING_KEYS"
#define EDGE_KEYS_MAX 4
#define EDGE_KEY_BYTES 32

#define EDGE_TOKEN_VERSION 1
#define EDGE_TOKEN_PAYLOAD 75                 /* packed payload bytes */
#define EDGE_TOKEN_MAC 16                     /* MAC bytes */
#define EDGE_TOKEN_RAW (EDGE_TOKEN_PAYLOAD + EDGE_TOKEN_MAC)
#define EDGE_TOKEN_LEN 122                    /* characters of the text form: ceil(91 * 4 / 3) */
#define EDGE_TOKEN_MAX (EDGE_TOKEN_LEN + 1)   /* the text form and its NUL */
#define EDGE_NODE_SECRET_LEN 64               /* hex characters of a node secret */

/* The output format, as common.proto's OutputFormat numbers it. */
typedef enum edge_format {
	EDGE_FORMAT_TS = 1,
	EDGE_FORMAT_M3U8 = 2,
	EDGE_FORMAT_RTMP = 3,
} edge_format_t;

/* Why edge_token_open refused a token (negative). */
typedef enum edge_token_status {
	EDGE_TOKEN_OK = 0,
	EDGE_TOKEN_MALFORMED = -1,   /* not base64url of the right length, unknown version or format, id 0 */
	EDGE_TOKEN_UNKNOWN_KID = -2, /* its key is not (or no longer) configured */
	EDGE_TOKEN_BAD_MAC = -3,     /* altered, or made for another node, or with another key */
} edge_token_status_t;

typedef struct edge_token {
	uint8_t version;             /* EDGE_TOKEN_VERSION; set by edge_token_make */
	uint8_t kid;                 /* the key that signed it; set by edge_token_make */
	uint8_t format;              /* edge_format_t */
	int64_t tenant_id;
	int64_t line_id;
	int64_t session_id;
	int64_t stream_id;
	int64_t node_id;             /* the node it was made for (> 0) */
	uint8_t ip[16];              /* the client's address; edge_token_set_ip */
	int64_t issued_at_ms;        /* wall clock, ms */
	int64_t expires_at;          /* wall clock, s: refused from this second on */
} edge_token_t;

struct edge_keys;

/* Parses spec (the setting's value). 0 and *keys (free with edge_keys_free),
 * or -FD_EINVAL with err naming the setting and the entry; err never holds
 * key material. */
int edge_keys_parse(const char *spec, struct edge_keys **keys, fd_err_t *err) FD_MUSTCHECK;
/* Wipes and frees; NULL is a no-op. */
void edge_keys_free(struct edge_keys *keys);
/* How many keys, and the kid of the i-th (0 = the signing key). */
int edge_keys_count(const struct edge_keys *keys);
uint8_t edge_keys_kid(const struct edge_keys *keys, int i);

/* The secret node_id (> 0) configures under the signing key: 64 lower-case
 * hex characters and a NUL. 0, or -FD_EINVAL for a node id <= 0. The caller
 * wipes hex when done. */
int edge_node_secret(const struct edge_keys *keys, int64_t node_id, char hex[EDGE_NODE_SECRET_LEN + 1]) FD_MUSTCHECK;
/* Whether secret (len bytes, hex in either case) is node_id's secret under
 * any configured key. Every key is tried, compared in constant time. */
bool edge_node_secret_ok(const struct edge_keys *keys, int64_t node_id, const char *secret, size_t len) FD_MUSTCHECK;

/* The client's address (IPv4 or IPv6 text) into tok->ip. 0, or -FD_EINVAL
 * when ip is not an address. */
int edge_token_set_ip(edge_token_t *tok, const char *ip) FD_MUSTCHECK;
/* The token's address as text ("1.2.3.4" for a v4-mapped one) into out. */
void edge_token_ip_str(const edge_token_t *tok, char *out, size_t outsz);

/* Signs tok with the first key: sets tok->version and tok->kid, writes the
 * text form (EDGE_TOKEN_LEN characters and a NUL) into out. 0, or -FD_EINVAL
 * when outsz < EDGE_TOKEN_MAX, the format is unknown or node_id <= 0. */
int edge_token_make(const struct edge_keys *keys, edge_token_t *tok, char *out, size_t outsz) FD_MUSTCHECK;
/* Reads text (len bytes, no NUL needed) into *tok. EDGE_TOKEN_OK when its MAC
 * verifies under the key its kid names, else an edge_token_status_t < 0 (and
 * *tok zeroed). Expiry, address and node are not checked. */
int edge_token_open(const struct edge_keys *keys, const char *text, size_t len, edge_token_t *tok) FD_MUSTCHECK;
/* "malformed", "unknown key", "bad MAC", "ok" (static). */
const char *edge_token_status_name(int status);

/* The caller's checks on an opened token. */
bool edge_token_expired(const edge_token_t *tok, int64_t now_s);
/* ip: the address the request came from (text); false when it is not an
 * address or not the token's. An IPv4 address matches its v4-mapped form. */
bool edge_token_ip_matches(const edge_token_t *tok, const char *ip);
bool edge_token_for_node(const edge_token_t *tok, int64_t node_id);

#endif
