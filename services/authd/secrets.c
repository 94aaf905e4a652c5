/* secrets.c - authd's secrets: keyed hashes of high-entropy secrets, new
 * random ones, and the idempotency keys and fingerprints of its creates
 * (over tenants/fd/idem.h). */
#include <inttypes.h>
#include <string.h>
#include <sodium.h>
#include "authd.h"

void secret_hash(const authd_t *a, const char *s, size_t n, unsigned char out[32])
{
	crypto_generichash(out, 32, (const unsigned char *)s, n, a->hash_key, 32);
}

void secret_hash_hex(const authd_t *a, const char *s, size_t n, char out[65])
{
	unsigned char h[32];
	secret_hash(a, s, n, h);
	sodium_bin2hex(out, 65, h, 32);
}

void new_secret(char out[44])
{
	unsigned char raw[32];
	randombytes_buf(raw, sizeof(raw));
	(void)fd_b64url_encode(raw, sizeof(raw), out, 44);
	sodium_memzero(raw, sizeof(raw));
}

const char *id_str(fd_arena_t *arena, int64_t v)
{
	return fd_arena_printf(arena, "%" PRId64, v);
}

/* The keyed BLAKE2b of the packed request, as hex in the arena; the packed
 * copy (it may hold a password) is wiped. NULL when out of memory: never a
 * made-up hash, which two different requests could share. */
static const char *fingerprint(const authd_t *a, fd_arena_t *arena, const ProtobufCMessage *req)
{
	size_t n = protobuf_c_message_get_packed_size(req);
	unsigned char *buf = fd_arena_alloc(arena, n ? n : 1), h[32];
	char *hex = fd_arena_alloc(arena, 65);
	if (!buf || !hex)
		return NULL;
	protobuf_c_message_pack(req, buf);
	crypto_generichash(h, sizeof(h), buf, n, a->hash_key, 32);
	sodium_memzero(buf, n);
	sodium_bin2hex(hex, 65, h, sizeof(h));
	return hex;
}

int authd_idem_make(const fd_tctx_t *t, const char *method, const char *client_key, const ProtobufCMessage *req,
                    fd_idem_t *k)
{
	/* fd_idem_make makes the key (scoped by method and actor) and would
	 * fingerprint what it is given without a key: it is given an empty
	 * request of the same type, so no copy of a password is packed there. */
	const ProtobufCMessageDescriptor *desc = req->descriptor;
	ProtobufCMessage *blank = fd_arena_alloc(t->arena, desc->sizeof_message);
	if (!blank)
		return fd_call_fail(t->call, FD_EEXHAUSTED, "out of memory");
	protobuf_c_message_init(desc, blank);
	int rc = fd_idem_make(t, "authd", method, client_key, false, blank, k);
	if (rc < 0 || !k->key)
		return rc;
	if (!(k->hash = fingerprint(authd_of(t->call), t->arena, req))) {
		k->key = NULL;
		return fd_call_fail(t->call, FD_EEXHAUSTED, "out of memory");
	}
	return 0;
}

ProtobufCMessage *authd_idem_answer(fd_tx_t *tx, const fd_idem_t *k, const fd_idem_replay_t *first,
                                    const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m = first->response.data
	                          ? protobuf_c_message_unpack(desc, &k->arena->pb, first->response.len, first->response.data)
	                          : NULL;
	if (!m)
		fd_err_set(fd_tx_err(tx), FD_EINTERNAL, "stored answer for this idempotency_key is unreadable");
	return m;
}

ProtobufCBinaryData authd_idem_pack(fd_arena_t *arena, const ProtobufCMessage *resp)
{
	size_t n = protobuf_c_message_get_packed_size(resp);
	ProtobufCBinaryData b = { n, fd_arena_alloc(arena, n ? n : 1) };
	if (b.data)
		protobuf_c_message_pack(resp, b.data);
	return b;
}
