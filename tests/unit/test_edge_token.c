/* test_edge_token.c - edged's hand-off token and node secrets
 * (services/edged/token.h): the key setting, round trips, every bit flip
 * refused, node binding, key ids and rotation, node secrets, malformed
 * text, addresses, and one golden token computed outside libsodium. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include "test.h"
#include "token.h"

#define K1 "0101010101010101010101010101010101010101010101010101010101010101"
#define K2 "a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2"
#define K3 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
/* test_golden's expectations, computed with Python's hashlib (see there). */
#define GOLDEN_TOKEN                                                                                \
	"AQkBAAAAAAAAAAIAAAAAAAAAAwAAAAAAAAAEAAAAAAAAAAUAAAAAAAAABgAAAAAAAAAAAAD__woBAgMAAAGLz-VoAAAAAABlU_" \
	"EFBz4qGrqJ0Dl0J04FHRvuDQ"
#define GOLDEN_SECRET "6368ff76bf0deab2f780a8cac707a3031441d694d6f3854ed94d639c7262f84f"

static struct edge_keys *keys(const char *spec)
{
	fd_err_t err = { 0 };
	struct edge_keys *k = NULL;
	if (edge_keys_parse(spec, &k, &err) != 0) {
		fprintf(stderr, "edge_keys_parse(%s): %s\n", spec, err.msg);
		abort();
	}
	return k;
}

static edge_token_t sample(int64_t node)
{
	edge_token_t t = { .format = EDGE_FORMAT_M3U8, .tenant_id = 7, .line_id = 1234567, .session_id = 99887766,
		               .stream_id = 42, .node_id = node, .issued_at_ms = 1750000000123LL,
		               .expires_at = 1750000005LL };
	if (edge_token_set_ip(&t, "203.0.113.9") != 0)
		abort();
	return t;
}

static void raw_of(const char *text, uint8_t raw[EDGE_TOKEN_RAW])
{
	size_t bl = 0;
	if (sodium_base642bin(raw, EDGE_TOKEN_RAW, text, strlen(text), NULL, &bl, NULL,
	                      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || bl != EDGE_TOKEN_RAW)
		abort();
}

static int open_raw(const struct edge_keys *k, const uint8_t raw[EDGE_TOKEN_RAW], edge_token_t *out)
{
	char text[EDGE_TOKEN_MAX];
	sodium_bin2base64(text, sizeof(text), raw, EDGE_TOKEN_RAW, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return edge_token_open(k, text, strlen(text), out);
}

static void test_keys_setting(void)
{
	static const struct {
		const char *spec;
		const char *msg;   /* part of the message */
	} bad[] = {
		{ "", "not set" },
		{ "1", "entry 1 is not kid:64hex" },
		{ "1:", "kid 1: the key must be 64 hex" },
		{ "0:" K1, "entry 1: the kid must be a number 1..255" },
		{ "256:" K1, "the kid must be a number" },
		{ "01:" K1, "the kid must be a number" },
		{ "x:" K1, "the kid must be a number" },
		{ "-1:" K1, "the kid must be a number" },
		{ ":" K1, "the kid must be a number" },
		{ "1:" K1 "00", "kid 1: the key must be 64 hex" },
		{ "1:" K1 " ", "kid 1: the key must be 64 hex" },
		{ " 1:" K1, "the kid must be a number" },
		{ "1:zz01010101010101010101010101010101010101010101010101010101010101", "the key must be 64 hex" },
		{ "1:" K1 ",", "entry 2 is not kid:64hex" },
		{ "1:" K1 ",2:" K2 ",1:" K3, "kid 1 is listed twice" },
		{ "1:" K1 ",2:" K2 ",3:" K3 ",4:" K1 ",5:" K2, "at most 4 keys" },
		{ "1:0000000000000000000000000000000000000000000000000000000000000000", "all zeros" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fd_err_t err = { 0 };
		struct edge_keys *k = (struct edge_keys *)1;
		int rc = edge_keys_parse(bad[i].spec, &k, &err);
		CHECK(rc == -FD_EINVAL && k == NULL, "%s: refused (rc %d)", bad[i].spec, rc);
		CHECK(strstr(err.msg, EDGE_KEYS_SETTING) && strstr(err.msg, bad[i].msg), "%s: message %s", bad[i].spec,
		      err.msg);
		CHECK(!strstr(err.msg, "0101010101") && !strstr(err.msg, "a2a2a2a2"), "%s: no key in %s", bad[i].spec,
		      err.msg);
	}
	fd_err_t err = { 0 };
	struct edge_keys *k = NULL;
	CHECK(edge_keys_parse(NULL, &k, &err) == -FD_EINVAL && strstr(err.msg, EDGE_KEYS_SETTING), "NULL: %s", err.msg);

	k = keys("1:" K1);
	CHECK(edge_keys_count(k) == 1 && edge_keys_kid(k, 0) == 1, "one key, kid 1");
	edge_keys_free(k);
	k = keys("255:" K2 ",3:" K1 ",4:" K3 ",9:A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A1");
	CHECK(edge_keys_count(k) == 4 && edge_keys_kid(k, 0) == 255 && edge_keys_kid(k, 1) == 3 &&
	          edge_keys_kid(k, 3) == 9 && edge_keys_kid(k, 4) == 0,
	      "four keys in order, upper-case hex accepted");
	edge_keys_free(k);
	edge_keys_free(NULL);
}

static void test_round_trip(void)
{
	struct edge_keys *k = keys("5:" K1 ",6:" K2);
	static const uint8_t formats[] = { EDGE_FORMAT_TS, EDGE_FORMAT_M3U8, EDGE_FORMAT_RTMP };
	for (size_t f = 0; f < sizeof(formats); f++) {
		edge_token_t t = sample(11), o;
		t.format = formats[f];
		char text[EDGE_TOKEN_MAX];
		CHECK(edge_token_make(k, &t, text, sizeof(text)) == 0, "made");
		CHECK(t.version == EDGE_TOKEN_VERSION && t.kid == 5, "version and kid set by make");
		CHECK(strlen(text) == EDGE_TOKEN_LEN, "length %zu", strlen(text));
		CHECK(strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == EDGE_TOKEN_LEN,
		      "base64url only: %s", text);
		CHECK(edge_token_open(k, text, strlen(text), &o) == EDGE_TOKEN_OK, "opens");
		CHECK(o.version == t.version && o.kid == t.kid && o.format == t.format && o.tenant_id == t.tenant_id &&
		          o.line_id == t.line_id && o.session_id == t.session_id && o.stream_id == t.stream_id &&
		          o.node_id == t.node_id && !memcmp(o.ip, t.ip, 16) && o.issued_at_ms == t.issued_at_ms &&
		          o.expires_at == t.expires_at,
		      "every field back");
		CHECK(o.format == formats[f], "format %u", o.format);
	}
	/* Extremes survive packing. */
	edge_token_t t = sample(INT64_MAX), o;
	t.tenant_id = INT64_MAX;
	t.line_id = -1;
	t.session_id = INT64_MIN;
	t.expires_at = 0;
	char text[EDGE_TOKEN_MAX];
	CHECK(edge_token_make(k, &t, text, sizeof(text)) == 0 && edge_token_open(k, text, strlen(text), &o) == 0 &&
	          o.tenant_id == INT64_MAX && o.line_id == -1 && o.session_id == INT64_MIN && o.node_id == INT64_MAX,
	      "extreme values");
	/* The text needs no NUL: a token inside a path is opened by its length. */
	char path[200];
	snprintf(path, sizeof(path), "/%s/42/index.m3u8", text);
	CHECK(edge_token_open(k, path + 1, EDGE_TOKEN_LEN, &o) == 0 && o.stream_id == 42, "opened inside a path");
	/* make's refusals */
	t = sample(11);
	CHECK(edge_token_make(k, &t, text, EDGE_TOKEN_MAX - 1) == -FD_EINVAL && text[0] == '\0', "out too small");
	t.format = 0;
	CHECK(edge_token_make(k, &t, text, sizeof(text)) == -FD_EINVAL, "format 0");
	t.format = 4;
	CHECK(edge_token_make(k, &t, text, sizeof(text)) == -FD_EINVAL, "format 4");
	t = sample(0);
	CHECK(edge_token_make(k, &t, text, sizeof(text)) == -FD_EINVAL, "node 0");
	t = sample(-3);
	CHECK(edge_token_make(k, &t, text, sizeof(text)) == -FD_EINVAL, "node < 0");
	edge_keys_free(k);
}

static void test_bit_flips(void)
{
	struct edge_keys *k = keys("1:" K1 ",2:" K2);
	edge_token_t t = sample(3), o;
	char text[EDGE_TOKEN_MAX];
	uint8_t raw[EDGE_TOKEN_RAW];
	CHECK(edge_token_make(k, &t, text, sizeof(text)) == 0, "made");
	raw_of(text, raw);
	int refused = 0, clean = 1;
	for (int bit = 0; bit < EDGE_TOKEN_RAW * 8; bit++) {
		raw[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		int rc = open_raw(k, raw, &o);
		raw[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		if (rc < 0)
			refused++;
		else
			fprintf(stderr, "bit %d flipped: opened\n", bit);
		/* A refused token leaves nothing behind. */
		static const edge_token_t zero;
		if (rc < 0 && memcmp(&o, &zero, sizeof(o)) != 0)
			clean = 0;
	}
	CHECK(refused == EDGE_TOKEN_RAW * 8, "%d of %d single-bit flips refused", refused, EDGE_TOKEN_RAW * 8);
	CHECK(clean, "a refused token is zeroed");
	CHECK(open_raw(k, raw, &o) == 0, "the unflipped raw still opens");
	/* Flips in the MAC itself say "bad MAC". */
	raw[EDGE_TOKEN_PAYLOAD] ^= 1;
	CHECK(open_raw(k, raw, &o) == EDGE_TOKEN_BAD_MAC, "MAC bit: bad MAC");
	raw[EDGE_TOKEN_PAYLOAD] ^= 1;
	raw[EDGE_TOKEN_PAYLOAD - 1] ^= 1;   /* expires_at's lowest bit */
	CHECK(open_raw(k, raw, &o) == EDGE_TOKEN_BAD_MAC, "expiry bit: bad MAC");
	edge_keys_free(k);
}

/* The byte offsets of the packed payload (token.h). */
enum { OFF_VERSION = 0, OFF_KID = 1, OFF_FORMAT = 2, OFF_NODE = 35 };

static void test_node_binding(void)
{
	struct edge_keys *k = keys("1:" K1);
	edge_token_t t = sample(1), o;
	char text[EDGE_TOKEN_MAX];
	uint8_t raw[EDGE_TOKEN_RAW];
	CHECK(edge_token_make(k, &t, text, sizeof(text)) == 0, "made for node 1");
	raw_of(text, raw);
	CHECK(raw[OFF_NODE + 7] == 1 && raw[OFF_NODE] == 0, "node id where token.h says");
	raw[OFF_NODE + 7] = 2;
	CHECK(open_raw(k, raw, &o) == EDGE_TOKEN_BAD_MAC, "node 1's token with node_id 2: bad MAC");
	CHECK(edge_token_open(k, text, strlen(text), &o) == 0 && edge_token_for_node(&o, 1) && !edge_token_for_node(&o, 2),
	      "for node 1, not node 2");

	/* Node 1's secret (its node key) is all a leak gives: with it, one can
	 * MAC node 1's tokens, but not a token for node 2. */
	char hex[EDGE_NODE_SECRET_LEN + 1];
	unsigned char nk1[32];
	CHECK(edge_node_secret(k, 1, hex) == 0 && sodium_hex2bin(nk1, 32, hex, 64, NULL, NULL, NULL) == 0, "node 1's key");
	raw[OFF_NODE + 7] = 1;
	crypto_generichash(raw + EDGE_TOKEN_PAYLOAD, EDGE_TOKEN_MAC, raw, EDGE_TOKEN_PAYLOAD, nk1, 32);
	CHECK(open_raw(k, raw, &o) == 0, "node 1's key MACs node 1's tokens (the node key is the MAC key)");
	raw[OFF_NODE + 7] = 2;
	crypto_generichash(raw + EDGE_TOKEN_PAYLOAD, EDGE_TOKEN_MAC, raw, EDGE_TOKEN_PAYLOAD, nk1, 32);
	CHECK(open_raw(k, raw, &o) == EDGE_TOKEN_BAD_MAC, "node 1's key cannot forge a token for node 2");
	/* Nor MAC under the signing key itself. */
	unsigned char master[32];
	CHECK(sodium_hex2bin(master, 32, K1, 64, NULL, NULL, NULL) == 0, "hex");
	crypto_generichash(raw + EDGE_TOKEN_PAYLOAD, EDGE_TOKEN_MAC, raw, EDGE_TOKEN_PAYLOAD, master, 32);
	CHECK(open_raw(k, raw, &o) == EDGE_TOKEN_BAD_MAC, "a MAC under the signing key itself is refused");
	edge_keys_free(k);
}

static void test_kids_and_rotation(void)
{
	struct edge_keys *old = keys("1:" K1), *both = keys("2:" K2 ",1:" K1), *fresh = keys("2:" K2),
	                 *samekid = keys("1:" K2);
	edge_token_t t = sample(8), o;
	char a[EDGE_TOKEN_MAX], b[EDGE_TOKEN_MAX];
	CHECK(edge_token_make(old, &t, a, sizeof(a)) == 0 && t.kid == 1, "signed with the old key");
	t = sample(8);
	CHECK(edge_token_make(both, &t, b, sizeof(b)) == 0 && t.kid == 2, "the new key signs once first");
	CHECK(edge_token_open(both, a, strlen(a), &o) == 0 && o.kid == 1, "old token opens while its key is listed");
	CHECK(edge_token_open(both, b, strlen(b), &o) == 0 && o.kid == 2, "new token opens");
	CHECK(edge_token_open(fresh, a, strlen(a), &o) == EDGE_TOKEN_UNKNOWN_KID, "old key removed: unknown key");
	CHECK(edge_token_open(fresh, b, strlen(b), &o) == 0, "new token still opens");
	CHECK(edge_token_open(old, b, strlen(b), &o) == EDGE_TOKEN_UNKNOWN_KID, "new token on an old edge: unknown key");
	CHECK(edge_token_open(samekid, a, strlen(a), &o) == EDGE_TOKEN_BAD_MAC, "kid 1 with another key: bad MAC");
	/* A kid rewritten to another configured key's. */
	uint8_t raw[EDGE_TOKEN_RAW];
	raw_of(a, raw);
	raw[OFF_KID] = 2;
	CHECK(open_raw(both, raw, &o) == EDGE_TOKEN_BAD_MAC, "kid 1 -> 2: bad MAC");
	raw[OFF_KID] = 77;
	CHECK(open_raw(both, raw, &o) == EDGE_TOKEN_UNKNOWN_KID, "kid 77: unknown key");
	CHECK(strcmp(edge_token_status_name(EDGE_TOKEN_UNKNOWN_KID), "unknown key") == 0 &&
	          strcmp(edge_token_status_name(EDGE_TOKEN_BAD_MAC), "bad MAC") == 0 &&
	          strcmp(edge_token_status_name(EDGE_TOKEN_MALFORMED), "malformed") == 0 &&
	          strcmp(edge_token_status_name(0), "ok") == 0,
	      "status names");
	edge_keys_free(old);
	edge_keys_free(both);
	edge_keys_free(fresh);
	edge_keys_free(samekid);
}

static void test_node_secrets(void)
{
	struct edge_keys *old = keys("1:" K1), *both = keys("2:" K2 ",1:" K1), *fresh = keys("2:" K2);
	char s1[EDGE_NODE_SECRET_LEN + 1], s2[EDGE_NODE_SECRET_LEN + 1], n1[EDGE_NODE_SECRET_LEN + 1];
	CHECK(edge_node_secret(old, 1, s1) == 0 && edge_node_secret(old, 2, s2) == 0, "secrets of nodes 1 and 2");
	CHECK(strlen(s1) == 64 && strspn(s1, "0123456789abcdef") == 64, "64 lower-case hex: %s", s1);
	CHECK(strcmp(s1, s2) != 0, "node 1 != node 2");
	CHECK(edge_node_secret(both, 1, n1) == 0 && strcmp(n1, s1) != 0, "the new key gives node 1 another secret");
	CHECK(edge_node_secret(old, 0, s2) == -FD_EINVAL && s2[0] == '\0', "node 0 has none");
	CHECK(edge_node_secret(old, -1, s2) == -FD_EINVAL, "node -1 has none");

	/* The derivation is the one token.h states (nodes' configs depend on it). */
	unsigned char master[32], sub[32];
	char want[65];
	CHECK(sodium_hex2bin(master, 32, K1, 64, NULL, NULL, NULL) == 0, "hex");
	crypto_kdf_derive_from_key(sub, 32, 1, "fdedgend", master);
	sodium_bin2hex(want, sizeof(want), sub, 32);
	CHECK(strcmp(want, s1) == 0, "crypto_kdf_derive_from_key(32, node_id, \"fdedgend\", key)");

	CHECK(edge_node_secret_ok(both, 1, s1, 64), "old key's secret while both are listed");
	CHECK(edge_node_secret_ok(both, 1, n1, 64), "new key's secret");
	CHECK(edge_node_secret_ok(old, 1, s1, 64) && !edge_node_secret_ok(old, 1, n1, 64), "only the listed key's");
	CHECK(!edge_node_secret_ok(fresh, 1, s1, 64), "old key removed: its secrets refused");
	CHECK(!edge_node_secret_ok(both, 2, s1, 64), "node 1's secret is not node 2's");
	CHECK(!edge_node_secret_ok(both, 0, s1, 64), "node 0");
	char up[65];
	for (int i = 0; i < 65; i++)
		up[i] = (char)(s1[i] >= 'a' && s1[i] <= 'f' ? s1[i] - 32 : s1[i]);
	CHECK(edge_node_secret_ok(both, 1, up, 64), "upper case accepted");
	CHECK(!edge_node_secret_ok(both, 1, s1, 63), "63 characters");
	CHECK(!edge_node_secret_ok(both, 1, s1, 0), "empty");
	CHECK(!edge_node_secret_ok(both, 1, NULL, 64), "NULL");
	char longer[70];
	snprintf(longer, sizeof(longer), "%s00", s1);
	CHECK(!edge_node_secret_ok(both, 1, longer, 66), "66 characters");
	char bad[65];
	memcpy(bad, s1, 65);
	bad[10] = 'g';
	CHECK(!edge_node_secret_ok(both, 1, bad, 64), "not hex");
	memcpy(bad, s1, 65);
	bad[63] = bad[63] == '0' ? '1' : '0';
	CHECK(!edge_node_secret_ok(both, 1, bad, 64), "last digit changed");
	edge_keys_free(old);
	edge_keys_free(both);
	edge_keys_free(fresh);
}

static void test_malformed(void)
{
	struct edge_keys *k = keys("1:" K1);
	edge_token_t t = sample(4), o;
	char text[EDGE_TOKEN_MAX], buf[300];
	CHECK(edge_token_make(k, &t, text, sizeof(text)) == 0, "made");
	CHECK(edge_token_open(k, "", 0, &o) == EDGE_TOKEN_MALFORMED, "empty");
	CHECK(edge_token_open(k, NULL, 0, &o) == EDGE_TOKEN_MALFORMED, "NULL");
	CHECK(edge_token_open(k, text, EDGE_TOKEN_LEN - 1, &o) == EDGE_TOKEN_MALFORMED, "one short");
	snprintf(buf, sizeof(buf), "%sA", text);
	CHECK(edge_token_open(k, buf, strlen(buf), &o) == EDGE_TOKEN_MALFORMED, "one long");
	snprintf(buf, sizeof(buf), "%s%s", text, text);
	CHECK(edge_token_open(k, buf, strlen(buf), &o) == EDGE_TOKEN_MALFORMED, "twice");
	snprintf(buf, sizeof(buf), "%s==", text);
	CHECK(edge_token_open(k, buf, strlen(buf), &o) == EDGE_TOKEN_MALFORMED, "padded");
	memset(buf, 'A', EDGE_TOKEN_LEN);
	CHECK(edge_token_open(k, buf, EDGE_TOKEN_LEN, &o) == EDGE_TOKEN_MALFORMED, "all A: version 0");
	/* Every byte outside base64url's alphabet, at the start, inside and at
	 * the end (libsodium 1.0.18 alone decodes bytes >= 0x80 as letters). */
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	int outside = 0, refused = 0;
	for (int c = 0; c < 256; c++) {
		if (c && strchr(b64, c))
			continue;
		static const int at[] = { 0, 20, EDGE_TOKEN_LEN - 1 };
		for (size_t i = 0; i < 3; i++) {
			memcpy(buf, text, EDGE_TOKEN_MAX);
			buf[at[i]] = (char)c;
			outside++;
			if (edge_token_open(k, buf, EDGE_TOKEN_LEN, &o) == EDGE_TOKEN_MALFORMED)
				refused++;
			else
				fprintf(stderr, "byte 0x%02x at %d opened\n", c, at[i]);
		}
	}
	CHECK(outside == 3 * (256 - 64) && refused == outside, "%d of %d refused", refused, outside);
	/* 91 bytes end in a character carrying 2 bits: its 4 low bits must be
	 * 0, so no second text decodes to the same token. */
	memcpy(buf, text, EDGE_TOKEN_MAX);
	int last = (int)(strchr(b64, buf[EDGE_TOKEN_LEN - 1]) - b64);
	CHECK((last & 15) == 0, "the last character's low bits are zero");
	buf[EDGE_TOKEN_LEN - 1] = b64[last | 1];
	CHECK(edge_token_open(k, buf, EDGE_TOKEN_LEN, &o) == EDGE_TOKEN_MALFORMED, "non-canonical last character");
	/* version, format and node checked before the MAC */
	uint8_t raw[EDGE_TOKEN_RAW];
	raw_of(text, raw);
	raw[OFF_VERSION] = 2;
	CHECK(open_raw(k, raw, &o) == EDGE_TOKEN_MALFORMED, "version 2");
	raw[OFF_VERSION] = 1;
	raw[OFF_FORMAT] = 0;
	CHECK(open_raw(k, raw, &o) == EDGE_TOKEN_MALFORMED, "format 0");
	raw[OFF_FORMAT] = 4;
	CHECK(open_raw(k, raw, &o) == EDGE_TOKEN_MALFORMED, "format 4");
	raw[OFF_FORMAT] = EDGE_FORMAT_M3U8;
	memset(raw + OFF_NODE, 0, 8);
	CHECK(open_raw(k, raw, &o) == EDGE_TOKEN_MALFORMED, "node 0");
	raw[OFF_NODE] = 0x80;
	CHECK(open_raw(k, raw, &o) == EDGE_TOKEN_MALFORMED, "negative node");
	edge_keys_free(k);
}

static void test_addresses(void)
{
	edge_token_t t = { 0 };
	char s[64];
	CHECK(edge_token_set_ip(&t, "192.0.2.7") == 0, "IPv4");
	static const uint8_t mapped[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7 };
	CHECK(memcmp(t.ip, mapped, 16) == 0, "stored v4-mapped");
	CHECK(edge_token_ip_matches(&t, "192.0.2.7"), "same IPv4");
	CHECK(edge_token_ip_matches(&t, "::ffff:192.0.2.7"), "its v4-mapped form");
	CHECK(!edge_token_ip_matches(&t, "192.0.2.8"), "another IPv4");
	CHECK(!edge_token_ip_matches(&t, "::192.0.2.7"), "v4-compatible is another address");
	CHECK(!edge_token_ip_matches(&t, "192.0.2.7 "), "trailing blank");
	CHECK(!edge_token_ip_matches(&t, ""), "empty");
	CHECK(!edge_token_ip_matches(&t, NULL), "NULL");
	CHECK(!edge_token_ip_matches(&t, "192.0.2.7:1234"), "with a port");
	edge_token_ip_str(&t, s, sizeof(s));
	CHECK(strcmp(s, "192.0.2.7") == 0, "as text: %s", s);

	CHECK(edge_token_set_ip(&t, "2001:db8::1") == 0, "IPv6");
	CHECK(edge_token_ip_matches(&t, "2001:DB8:0:0::1"), "same IPv6, other spelling");
	CHECK(!edge_token_ip_matches(&t, "2001:db8::2"), "another IPv6");
	CHECK(!edge_token_ip_matches(&t, "192.0.2.7"), "an IPv4");
	edge_token_ip_str(&t, s, sizeof(s));
	CHECK(strcmp(s, "2001:db8::1") == 0, "as text: %s", s);

	CHECK(edge_token_set_ip(&t, "::1") == 0 && edge_token_ip_matches(&t, "::1") &&
	          !edge_token_ip_matches(&t, "127.0.0.1"), "::1 is not 127.0.0.1");
	uint8_t before[16];
	memcpy(before, t.ip, 16);
	static const char *const bad[] = { "", "localhost", "1.2.3", "1.2.3.4.5", "256.1.1.1", "fe80::1%eth0",
		                               "[::1]", "::g", " 1.2.3.4" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(edge_token_set_ip(&t, bad[i]) == -FD_EINVAL, "%s refused", bad[i]);
	CHECK(edge_token_set_ip(&t, NULL) == -FD_EINVAL, "NULL refused");
	CHECK(memcmp(before, t.ip, 16) == 0, "a refused address leaves ip as it was");

	/* expiry: refused from expires_at on */
	t.expires_at = 1000;
	CHECK(!edge_token_expired(&t, 999) && edge_token_expired(&t, 1000) && edge_token_expired(&t, 5000), "expiry");
	t.node_id = 0;
	CHECK(!edge_token_for_node(&t, 0), "node 0 is no node");
}

/* One token computed outside libsodium's token code (Python's hashlib:
 * node key = blake2b(b"", key=K3, digest_size=32, salt=le64(node)+8*b"\0",
 * person=b"fdedgend"+8*b"\0"); MAC = blake2b(payload, key=node key,
 * digest_size=16)), so the wire form cannot drift unnoticed. */
static void test_golden(void)
{
	struct edge_keys *k = keys("9:" K3);
	edge_token_t t = { .format = EDGE_FORMAT_TS, .tenant_id = 2, .line_id = 3, .session_id = 4, .stream_id = 5,
		               .node_id = 6, .issued_at_ms = 1700000000000LL, .expires_at = 1700000005LL };
	CHECK(edge_token_set_ip(&t, "10.1.2.3") == 0, "ip");
	char text[EDGE_TOKEN_MAX], secret[EDGE_NODE_SECRET_LEN + 1];
	CHECK(edge_token_make(k, &t, text, sizeof(text)) == 0, "made");
	CHECK(strcmp(text, GOLDEN_TOKEN) == 0, "golden token:\n got %s\nwant %s", text, GOLDEN_TOKEN);
	CHECK(edge_node_secret(k, 6, secret) == 0 && strcmp(secret, GOLDEN_SECRET) == 0, "golden secret: %s", secret);
	edge_keys_free(k);
}

int main(void)
{
	if (sodium_init() < 0)
		return 2;
	test_keys_setting();
	test_round_trip();
	test_bit_flips();
	test_node_binding();
	test_kids_and_rotation();
	test_node_secrets();
	test_malformed();
	test_addresses();
	test_golden();
	return test_summary();
}
