/* passwords.c - line passwords: a keyed hash to find a line by them, sealed
 * (crypto_secretbox) to show them again, opened into memory wiped when the
 * call ends. */
#include <string.h>
#include <sodium.h>
#include "linesd.h"

void line_password_hash(const linesd_t *l, int64_t tenant, const char *password, char hex[65])
{
	unsigned char h[32];
	crypto_generichash_state st;
	crypto_generichash_init(&st, l->pw_hash_key, sizeof(l->pw_hash_key), sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)&tenant, sizeof(tenant));
	crypto_generichash_update(&st, (const unsigned char *)password, strlen(password));
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(hex, 65, h, sizeof(h));
	sodium_memzero(h, sizeof(h));
}

const char *line_password_seal(const fd_tctx_t *r, const char *password)
{
	size_t n = strlen(password), blen = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + n;
	unsigned char *b = fd_arena_alloc(r->arena, blen);
	char *hex = fd_arena_alloc(r->arena, 2 * blen + 1);
	if (!b || !hex)
		return NULL;
	randombytes_buf(b, crypto_secretbox_NONCEBYTES);
	crypto_secretbox_easy(b + crypto_secretbox_NONCEBYTES, (const unsigned char *)password, n, b,
	                      linesd_of(r->call)->pw_box_key);
	sodium_bin2hex(hex, 2 * blen + 1, b, blen);
	return hex;
}

char *line_password_open(const linesd_t *l, fd_arena_t *a, const char *box_hex)
{
	/* bytea in hex output: "\x...." */
	if (box_hex[0] == '\\' && box_hex[1] == 'x')
		box_hex += 2;
	size_t hl = strlen(box_hex), blen = hl / 2;
	if (blen < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES)
		return NULL;
	unsigned char *b = fd_arena_alloc(a, blen);
	if (!b || sodium_hex2bin(b, blen, box_hex, hl, NULL, NULL, NULL) != 0)
		return NULL;
	size_t n = blen - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
	/* The opened password is wiped when the call's arena is freed. */
	char *pw = fd_arena_secret(a, n + 1);
	if (!pw || crypto_secretbox_open_easy((unsigned char *)pw, b + crypto_secretbox_NONCEBYTES,
	                                      blen - crypto_secretbox_NONCEBYTES, b, l->pw_box_key) != 0)
		return NULL;
	pw[n] = '\0';
	return pw;
}

void random_text(char *out, size_t n)
{
	static const char alphabet[] = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
	for (size_t i = 0; i < n; i++)
		out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
	out[n] = '\0';
}

