/* token.c - the hand-off token and the per-node secrets (token.h): the key
 * set, node keys derived per node, the packed payload and its keyed BLAKE2b,
 * base64url. Every derived key and packed secret is wiped before return. */
#include "token.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define KDF_CONTEXT "fdedgend"

_Static_assert(sizeof(KDF_CONTEXT) - 1 == crypto_kdf_CONTEXTBYTES, "kdf context is 8 bytes");
_Static_assert(EDGE_KEY_BYTES == crypto_kdf_KEYBYTES, "signing keys are kdf master keys");
_Static_assert(EDGE_TOKEN_MAX == sodium_base64_ENCODED_LEN(EDGE_TOKEN_RAW, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
               "EDGE_TOKEN_LEN is the base64url length of the raw token");

struct edge_keys {
	int n;
	struct {
		uint8_t kid;
		unsigned char key[EDGE_KEY_BYTES];
	} k[EDGE_KEYS_MAX];
};

/* ---- the key set ---- */

static int parse_kid(const char *s, size_t n, uint8_t *kid)
{
	if (n == 0 || n > 3 || s[0] == '0')
		return -1;
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > 255)
		return -1;
	*kid = (uint8_t)v;
	return 0;
}

int edge_keys_parse(const char *spec, struct edge_keys **keys, fd_err_t *err)
{
	*keys = NULL;
	if (sodium_init() < 0)
		return fd_err_set(err, FD_EINTERNAL, "libsodium did not initialise");
	if (!spec || !*spec)
		return fd_err_set(err, FD_EINVAL, "%s: not set; want kid:64hex[,kid:64hex...] (kid 1..255, the first signs)",
		                  EDGE_KEYS_SETTING);
	struct edge_keys *ks = calloc(1, sizeof(*ks));
	if (!ks)
		return fd_err_set(err, FD_EEXHAUSTED, "%s: out of memory", EDGE_KEYS_SETTING);
	int rc = 0;
	const char *p = spec;
	for (int entry = 1;; entry++) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		const char *colon = memchr(p, ':', n);
		if (ks->n == EDGE_KEYS_MAX) {
			rc = fd_err_set(err, FD_EINVAL, "%s: at most %d keys", EDGE_KEYS_SETTING, EDGE_KEYS_MAX);
			goto fail;
		}
		if (!colon) {
			rc = fd_err_set(err, FD_EINVAL, "%s: entry %d is not kid:64hex", EDGE_KEYS_SETTING, entry);
			goto fail;
		}
		uint8_t kid;
		if (parse_kid(p, (size_t)(colon - p), &kid) != 0) {
			rc = fd_err_set(err, FD_EINVAL, "%s: entry %d: the kid must be a number 1..255", EDGE_KEYS_SETTING,
			                entry);
			goto fail;
		}
		for (int i = 0; i < ks->n; i++)
			if (ks->k[i].kid == kid) {
				rc = fd_err_set(err, FD_EINVAL, "%s: kid %u is listed twice", EDGE_KEYS_SETTING, kid);
				goto fail;
			}
		const char *hex = colon + 1;
		size_t hl = n - (size_t)(hex - p), bl = 0;
		const char *hend = NULL;
		if (hl != 2 * EDGE_KEY_BYTES ||
		    sodium_hex2bin(ks->k[ks->n].key, EDGE_KEY_BYTES, hex, hl, NULL, &bl, &hend) != 0 ||
		    bl != EDGE_KEY_BYTES || hend != hex + hl) {
			rc = fd_err_set(err, FD_EINVAL, "%s: kid %u: the key must be 64 hex characters (32 random bytes)",
			                EDGE_KEYS_SETTING, kid);
			goto fail;
		}
		if (sodium_is_zero(ks->k[ks->n].key, EDGE_KEY_BYTES)) {
			rc = fd_err_set(err, FD_EINVAL, "%s: kid %u: the key is all zeros; make one with openssl rand -hex 32",
			                EDGE_KEYS_SETTING, kid);
			goto fail;
		}
		ks->k[ks->n++].kid = kid;
		if (!end)
			break;
		p = end + 1;
	}
	*keys = ks;
	return 0;
fail:
	edge_keys_free(ks);
	return rc;
}

void edge_keys_free(struct edge_keys *keys)
{
	if (!keys)
		return;
	sodium_memzero(keys, sizeof(*keys));
	free(keys);
}

int edge_keys_count(const struct edge_keys *keys)
{
	return keys->n;
}

uint8_t edge_keys_kid(const struct edge_keys *keys, int i)
{
	return i >= 0 && i < keys->n ? keys->k[i].kid : 0;
}

/* ---- node keys ---- */

static void node_key(const unsigned char master[EDGE_KEY_BYTES], int64_t node_id, unsigned char out[32])
{
	/* Cannot fail: 32 bytes is within crypto_kdf_BYTES_MIN..MAX. */
	(void)crypto_kdf_derive_from_key(out, 32, (uint64_t)node_id, KDF_CONTEXT, master);
}

int edge_node_secret(const struct edge_keys *keys, int64_t node_id, char hex[EDGE_NODE_SECRET_LEN + 1])
{
	hex[0] = '\0';
	if (node_id <= 0)
		return -FD_EINVAL;
	unsigned char k[32];
	node_key(keys->k[0].key, node_id, k);
	sodium_bin2hex(hex, EDGE_NODE_SECRET_LEN + 1, k, sizeof(k));
	sodium_memzero(k, sizeof(k));
	return 0;
}

bool edge_node_secret_ok(const struct edge_keys *keys, int64_t node_id, const char *secret, size_t len)
{
	if (node_id <= 0 || !secret || len != EDGE_NODE_SECRET_LEN)
		return false;
	unsigned char given[32], k[32];
	size_t bl = 0;
	const char *end = NULL;
	if (sodium_hex2bin(given, sizeof(given), secret, len, NULL, &bl, &end) != 0 || bl != sizeof(given) ||
	    end != secret + len) {
		sodium_memzero(given, sizeof(given));
		return false;
	}
	/* Every key is tried and the results OR'd: which key matched (if any)
	 * does not change the work done. */
	unsigned match = 0;
	for (int i = 0; i < keys->n; i++) {
		node_key(keys->k[i].key, node_id, k);
		match |= (unsigned)(1 + sodium_memcmp(given, k, sizeof(k)));   /* 0 -> 1, -1 -> 0 */
	}
	sodium_memzero(k, sizeof(k));
	sodium_memzero(given, sizeof(given));
	return match != 0;
}

/* ---- addresses ---- */

static int parse_ip(const char *ip, uint8_t out[16])
{
	struct in_addr v4;
	if (!ip)
		return -1;
	if (inet_pton(AF_INET, ip, &v4) == 1) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &v4, 4);
		return 0;
	}
	return inet_pton(AF_INET6, ip, out) == 1 ? 0 : -1;
}

int edge_token_set_ip(edge_token_t *tok, const char *ip)
{
	uint8_t a[16];
	if (parse_ip(ip, a) != 0)
		return -FD_EINVAL;
	memcpy(tok->ip, a, 16);
	return 0;
}

void edge_token_ip_str(const edge_token_t *tok, char *out, size_t outsz)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (outsz == 0)
		return;
	const char *r = memcmp(tok->ip, mapped, 12) == 0 ? inet_ntop(AF_INET, tok->ip + 12, out, (socklen_t)outsz)
	                                                : inet_ntop(AF_INET6, tok->ip, out, (socklen_t)outsz);
	if (!r)
		out[0] = '\0';
}

bool edge_token_ip_matches(const edge_token_t *tok, const char *ip)
{
	uint8_t a[16];
	return parse_ip(ip, a) == 0 && memcmp(a, tok->ip, 16) == 0;
}

bool edge_token_expired(const edge_token_t *tok, int64_t now_s)
{
	return now_s >= tok->expires_at;
}

bool edge_token_for_node(const edge_token_t *tok, int64_t node_id)
{
	return tok->node_id > 0 && tok->node_id == node_id;
}

/* ---- the packed payload ---- */

static uint8_t *put64(uint8_t *p, int64_t v)
{
	uint64_t u = (uint64_t)v;
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)u;
		u >>= 8;
	}
	return p + 8;
}

static const uint8_t *get64(const uint8_t *p, int64_t *v)
{
	uint64_t u = 0;
	for (int i = 0; i < 8; i++)
		u = u << 8 | p[i];
	*v = (int64_t)u;
	return p + 8;
}

static void pack(const edge_token_t *t, uint8_t out[EDGE_TOKEN_PAYLOAD])
{
	uint8_t *p = out;
	*p++ = t->version;
	*p++ = t->kid;
	*p++ = t->format;
	p = put64(p, t->tenant_id);
	p = put64(p, t->line_id);
	p = put64(p, t->session_id);
	p = put64(p, t->stream_id);
	p = put64(p, t->node_id);
	memcpy(p, t->ip, 16);
	p += 16;
	p = put64(p, t->issued_at_ms);
	put64(p, t->expires_at);
}

static void unpack(const uint8_t in[EDGE_TOKEN_PAYLOAD], edge_token_t *t)
{
	const uint8_t *p = in;
	t->version = *p++;
	t->kid = *p++;
	t->format = *p++;
	p = get64(p, &t->tenant_id);
	p = get64(p, &t->line_id);
	p = get64(p, &t->session_id);
	p = get64(p, &t->stream_id);
	p = get64(p, &t->node_id);
	memcpy(t->ip, p, 16);
	p += 16;
	p = get64(p, &t->issued_at_ms);
	get64(p, &t->expires_at);
}

/* Whether s[0..n) is only base64url's alphabet. Checked before decoding:
 * libsodium 1.0.18 (Debian 12) decodes every byte >= 0x80 as if it were a
 * letter, which would give one token many texts. */
static bool b64url_only(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
	}
	return true;
}

static bool format_known(uint8_t f)
{
	return f == EDGE_FORMAT_TS || f == EDGE_FORMAT_M3U8 || f == EDGE_FORMAT_RTMP;
}

/* The MAC of payload under node_id's key derived from master. */
static void mac(const unsigned char master[EDGE_KEY_BYTES], int64_t node_id, const uint8_t payload[EDGE_TOKEN_PAYLOAD],
                uint8_t out[EDGE_TOKEN_MAC])
{
	unsigned char k[32];
	node_key(master, node_id, k);
	/* Cannot fail: output and key lengths are within BLAKE2b's bounds. */
	(void)crypto_generichash(out, EDGE_TOKEN_MAC, payload, EDGE_TOKEN_PAYLOAD, k, sizeof(k));
	sodium_memzero(k, sizeof(k));
}

int edge_token_make(const struct edge_keys *keys, edge_token_t *tok, char *out, size_t outsz)
{
	if (outsz > 0)
		out[0] = '\0';
	if (outsz < EDGE_TOKEN_MAX || !format_known(tok->format) || tok->node_id <= 0)
		return -FD_EINVAL;
	tok->version = EDGE_TOKEN_VERSION;
	tok->kid = keys->k[0].kid;
	uint8_t raw[EDGE_TOKEN_RAW];
	pack(tok, raw);
	mac(keys->k[0].key, tok->node_id, raw, raw + EDGE_TOKEN_PAYLOAD);
	sodium_bin2base64(out, outsz, raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));
	return 0;
}

int edge_token_open(const struct edge_keys *keys, const char *text, size_t len, edge_token_t *tok)
{
	memset(tok, 0, sizeof(*tok));
	if (!text || len != EDGE_TOKEN_LEN)
		return EDGE_TOKEN_MALFORMED;
	uint8_t raw[EDGE_TOKEN_RAW], want[EDGE_TOKEN_MAC];
	size_t bl = 0;
	const char *end = NULL;
	int rc = EDGE_TOKEN_MALFORMED, ki = -1;
	edge_token_t t;
	/* Only the alphabet (b64url_only), and libsodium refuses non-zero
	 * trailing bits: each token has exactly one text form. */
	if (!b64url_only(text, len) ||
	    sodium_base642bin(raw, sizeof(raw), text, len, NULL, &bl, &end,
	                      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    bl != sizeof(raw) || end != text + len)
		goto out;
	unpack(raw, &t);
	if (t.version != EDGE_TOKEN_VERSION || !format_known(t.format) || t.node_id <= 0)
		goto out;
	for (int i = 0; i < keys->n; i++)
		if (keys->k[i].kid == t.kid)
			ki = i;
	if (ki < 0) {
		rc = EDGE_TOKEN_UNKNOWN_KID;
		goto out;
	}
	mac(keys->k[ki].key, t.node_id, raw, want);
	if (crypto_verify_16(want, raw + EDGE_TOKEN_PAYLOAD) != 0) {
		rc = EDGE_TOKEN_BAD_MAC;
		goto out;
	}
	*tok = t;
	rc = EDGE_TOKEN_OK;
out:
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(want, sizeof(want));
	return rc;
}

const char *edge_token_status_name(int status)
{
	switch (status) {
	case EDGE_TOKEN_OK: return "ok";
	case EDGE_TOKEN_MALFORMED: return "malformed";
	case EDGE_TOKEN_UNKNOWN_KID: return "unknown key";
	case EDGE_TOKEN_BAD_MAC: return "bad MAC";
	default: return "unknown status";
	}
}
