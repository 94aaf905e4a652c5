/* auth.c - the verifier: bearer credentials to callers (see fd/auth.h).
 *
 * The path of a token seen before: hash it, find it in the token cache, find
 * its account's status in the status cache; no parsing, no signature, no
 * database. A first-seen one goes to jwt.c (signed tokens) or apikey.c (API
 * keys); auth_status.c holds the status of tenants and accounts, and
 * auth_cache.c the caches they share (auth_internal.h). This file: the
 * verifier itself, the names of roles and scopes, base64url, and the
 * questions handlers ask of a caller. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sodium.h>
#include "auth_internal.h"
#include "fd/log.h"

int auth_unauth(fd_err_t *err, const char *why)
{
	return fd_err_set(err, FD_EUNAUTH, "%s", why);
}

int auth_parse_id(const char *s, int64_t *out)
{
	char *end;
	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (*end || errno || v < 0)
		return -1;
	*out = v;
	return 0;
}

/* ---- the verifier ---- */

fd_verifier_t *fd_verifier_new(const fd_verifier_opts_t *o, fd_err_t *err)
{
	if (sodium_init() < 0) {
		fd_err_set(err, FD_EINTERNAL, "libsodium failed to initialise");
		return NULL;
	}
	if (!o->db || !o->hash_key || !o->issuer || !o->audience ||
	    strlen(o->issuer) >= 128 || strlen(o->audience) >= 32 ||
	    o->status_ttl_ms < 1 || o->status_ttl_ms > 5000 || o->skew_seconds < 0 ||
	    o->skew_seconds > 300) {
		fd_err_set(err, FD_EINVAL, "verifier: bad options (issuer, audience, a status TTL of "
		           "1..5000 ms and a clock skew of 0..300 s are required)");
		return NULL;
	}
	fd_verifier_t *v = calloc(1, sizeof(*v));
	if (!v) {
		fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		return NULL;
	}
	v->db = o->db;
	memcpy(v->hash_key, o->hash_key, 32);
	randombytes_buf(v->cache_key, sizeof(v->cache_key));
	snprintf(v->issuer, sizeof(v->issuer), "%s", o->issuer);
	snprintf(v->audience, sizeof(v->audience), "%s", o->audience);
	v->skew_s = o->skew_seconds;
	v->ttl_ms = o->status_ttl_ms;
	pthread_mutex_init(&v->keys_mu, NULL);
	pthread_mutex_init(&v->load_mu, NULL);
	v->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!v->sha256 || auth_cache_init(&v->tokens, sizeof(fd_caller_t)) < 0 ||
	    auth_cache_init(&v->statuses, sizeof(account_status_t)) < 0 ||
	    auth_cache_init(&v->api_keys, sizeof(fd_caller_t)) < 0) {
		fd_verifier_free(v);
		fd_err_set(err, FD_EEXHAUSTED, "verifier: out of memory");
		return NULL;
	}
	return v;
}

void fd_verifier_free(fd_verifier_t *v)
{
	if (!v)
		return;
	auth_cache_fini(&v->tokens);
	auth_cache_fini(&v->statuses);
	auth_cache_fini(&v->api_keys);
	auth_free_keys(v->keys, v->nkeys);
	EVP_MD_free(v->sha256);
	pthread_mutex_destroy(&v->keys_mu);
	pthread_mutex_destroy(&v->load_mu);
	sodium_memzero(v->hash_key, sizeof(v->hash_key));
	free(v);
}

void fd_verifier_flush(fd_verifier_t *v)
{
	auth_cache_clear(&v->tokens);
	auth_cache_clear(&v->statuses);
	auth_cache_clear(&v->api_keys);
	pthread_mutex_lock(&v->load_mu);
	v->keys_loaded_ms = 0;
	pthread_mutex_unlock(&v->load_mu);
}

void fd_verifier_stats(fd_verifier_t *v, fd_verifier_stats_t *out)
{
	out->token_hits = atomic_load(&v->token_hits);
	out->token_misses = atomic_load(&v->token_misses);
	out->status_hits = atomic_load(&v->status_hits);
	out->status_misses = atomic_load(&v->status_misses);
	out->api_key_hits = atomic_load(&v->api_key_hits);
	out->api_key_misses = atomic_load(&v->api_key_misses);
	out->key_refreshes = atomic_load(&v->key_refreshes);
}

/* ---- names ---- */

/* "SCOPE_CREDITS_CHARGE" -> "credits_charge", built once from the enum
 * descriptor the API generated, so a scope added to common.proto has its name. */
static char scope_names[FD_SCOPE_MAX + 1][40];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void names_init(void)
{
	const ProtobufCEnumDescriptor *d = &frontdesk__v1__scope__descriptor;
	for (unsigned i = 0; i < d->n_values; i++) {
		int v = d->values[i].value;
		const char *n = d->values[i].name;
		if (v <= 0 || v > FD_SCOPE_MAX || strncmp(n, "SCOPE_", 6) != 0)
			continue;
		size_t j = 0;
		for (n += 6; *n && j + 1 < sizeof(scope_names[v]); n++)
			scope_names[v][j++] = (char)tolower((unsigned char)*n);
		scope_names[v][j] = '\0';
	}
}

const char *fd_scope_name(fd_scope_t s)
{
	pthread_once(&names_once, names_init);
	if ((int)s <= 0 || (int)s > FD_SCOPE_MAX || !scope_names[s][0])
		return NULL;
	return scope_names[s];
}

fd_scope_t fd_scope_parse(const char *name, size_t len)
{
	pthread_once(&names_once, names_init);
	for (int s = 1; s <= FD_SCOPE_MAX; s++)
		if (scope_names[s][0] && strlen(scope_names[s]) == len && memcmp(scope_names[s], name, len) == 0)
			return (fd_scope_t)s;
	return (fd_scope_t)0;
}

static const char *const role_names[] = {
	[FD_ROLE_PLATFORM_ADMIN] = "platform_admin",
	[FD_ROLE_TENANT_ADMIN] = "tenant_admin",
	[FD_ROLE_RESELLER] = "reseller",
	[FD_ROLE_SERVICE] = "service",
};

const char *fd_role_name(fd_role_t r)
{
	if ((int)r <= 0 || (size_t)r >= sizeof(role_names) / sizeof(role_names[0]))
		return "unspecified";
	return role_names[r];
}

fd_role_t fd_role_parse(const char *name, size_t len)
{
	for (size_t r = 1; r < sizeof(role_names) / sizeof(role_names[0]); r++)
		if (strlen(role_names[r]) == len && memcmp(role_names[r], name, len) == 0)
			return (fd_role_t)r;
	return (fd_role_t)0;
}

/* ---- base64url, hex ---- */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int fd_b64url_encode(const unsigned char *in, size_t n, char *out, size_t outsz)
{
	size_t need = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
	if (need + 1 > outsz)
		return -1;
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = B64URL[v >> 18];
		out[o++] = B64URL[v >> 12 & 63];
		out[o++] = B64URL[v >> 6 & 63];
		out[o++] = B64URL[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = B64URL[v >> 18];
		out[o++] = B64URL[v >> 12 & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = B64URL[v >> 18];
		out[o++] = B64URL[v >> 12 & 63];
		out[o++] = B64URL[v >> 6 & 63];
	}
	out[o] = '\0';
	return (int)o;
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

int fd_b64url_decode(const char *in, size_t n, unsigned char *out, size_t outsz)
{
	if (n % 4 == 1)
		return -1;
	size_t need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
	if (need > outsz)
		return -1;
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64val(in[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	/* Leftover bits must be zero: one encoding per value (no malleable tokens). */
	if (acc & ((1u << bits) - 1))
		return -1;
	return (int)o;
}

int fd_hex_key32(const char *hex, const char *var, unsigned char out[32], fd_err_t *err)
{
	size_t len;
	if (!hex || strlen(hex) != 64 ||
	    sodium_hex2bin(out, 32, hex, 64, NULL, &len, NULL) != 0 || len != 32)
		return fd_err_set(err, FD_EINVAL, "%s: must be 64 hex digits (32 random bytes; e.g. "
		                  "`openssl rand -hex 32`)", var);
	return 0;
}

/* ---- bearer credentials ---- */

int fd_verify_bearer(fd_verifier_t *v, const char *authorization, int64_t deadline_ms,
                     fd_caller_t *out, fd_err_t *err)
{
	if (!authorization)
		return auth_unauth(err, "no credential: send `authorization: Bearer <token or API key>`");
	if (strncasecmp(authorization, "Bearer ", 7) != 0)
		return auth_unauth(err, "authorization: expected `Bearer <token or API key>`");
	const char *tok = authorization + 7;
	size_t n = strnlen(tok, TOKEN_MAX + 1);
	if (n == 0 || n > TOKEN_MAX)
		return auth_unauth(err, "malformed credential");
	for (size_t i = 0; i < n; i++)
		if (!isgraph((unsigned char)tok[i]))
			return auth_unauth(err, "malformed credential");
	if (n > 4 && memcmp(tok, "fdk_", 4) == 0)
		return auth_verify_api_key(v, tok, n, deadline_ms, out, err);
	return auth_verify_jwt(v, tok, n, deadline_ms, out, err);
}

/* ---- handlers' questions ---- */

int fd_caller_need(const fd_caller_t *c, fd_scope_t s, fd_err_t *err)
{
	if (c->scopes & FD_SCOPE(s))
		return 0;
	return fd_err_set(err, FD_EPERM, "this credential lacks the scope %s", fd_scope_name(s));
}

int fd_caller_tenant(const fd_caller_t *c, int64_t requested, int64_t *tenant, fd_err_t *err)
{
	if (requested < 0)
		return fd_err_set(err, FD_EINVAL, "tenant_id: must be 0 (your own) or a tenant id");
	if (requested == 0 || requested == c->tenant_id) {
		*tenant = c->tenant_id;
		return 0;
	}
	if (c->role == FD_ROLE_PLATFORM_ADMIN || c->role == FD_ROLE_SERVICE) {
		*tenant = requested;
		return 0;
	}
	return fd_err_set(err, FD_ENOTFOUND, "tenant %" PRId64 " not found", requested);
}
