/* request.c - idempotency keys, paging, request fingerprints (fd/request.h). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "fd/request.h"

int fd_check_idem_key(const char *s, fd_err_t *err)
{
	size_t n = strlen(s);
	if (n > 128)
		return fd_err_set(err, FD_EINVAL, "idempotency_key: at most 128 bytes");
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return fd_err_set(err, FD_EINVAL, "idempotency_key: printable ASCII without spaces");
	return 0;
}

int fd_check_page(int32_t size, const char *token, int *limit, int64_t *after, fd_err_t *err)
{
	if (size < 0)
		return fd_err_set(err, FD_EINVAL, "page_size: must not be negative");
	*limit = size == 0 ? 50 : size > 1000 ? 1000 : size;
	*after = 0;
	if (!token[0])
		return 0;
	char *end;
	if (token[0] != 'a' || !token[1])
		return fd_err_set(err, FD_EINVAL, "page_token: not a token this server gave");
	long long v = strtoll(token + 1, &end, 10);
	if (*end || v <= 0)
		return fd_err_set(err, FD_EINVAL, "page_token: not a token this server gave");
	*after = v;
	return 0;
}

char *fd_page_token(fd_arena_t *arena, int64_t last_id)
{
	return fd_arena_printf(arena, "a%" PRId64, last_id);
}

static const char *hash(fd_arena_t *arena, const ProtobufCMessage *msg, const unsigned char *key)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	unsigned char *buf = fd_arena_alloc(arena, n ? n : 1), h[32];
	char *hex = fd_arena_alloc(arena, 65);
	if (!buf || !hex)
		return NULL;
	protobuf_c_message_pack(msg, buf);
	crypto_generichash(h, sizeof(h), buf, n, key, key ? 32 : 0);
	sodium_memzero(buf, n);
	sodium_bin2hex(hex, 65, h, sizeof(h));
	return hex;
}

const char *fd_request_hash(fd_arena_t *arena, const ProtobufCMessage *msg)
{
	return hash(arena, msg, NULL);
}

const char *fd_request_mac(fd_arena_t *arena, const ProtobufCMessage *msg, const unsigned char key[32])
{
	return hash(arena, msg, key);
}
