/* request.h - what every service checks of a request the same way:
 * idempotency keys, paging, and a request's fingerprint. */
#ifndef FD_REQUEST_H
#define FD_REQUEST_H

#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "fd/arena.h"
#include "fd/status.h"

/* An idempotency_key: at most 128 printable ASCII characters without spaces
 * ("" passes: the caller decides whether one is required). -FD_EINVAL
 * naming the field otherwise. */
int fd_check_idem_key(const char *key, fd_err_t *err) FD_MUSTCHECK;

/* page_size: 0 -> 50, capped at 1000, negative refused; page_token: "" or
 * one fd_page_token gave ("a<id>": rows after that id). */
int fd_check_page(int32_t size, const char *token, int *limit, int64_t *after, fd_err_t *err) FD_MUSTCHECK;
char *fd_page_token(fd_arena_t *arena, int64_t last_id);

/* BLAKE2b-256 of the packed message, as 64 hex digits in the arena (NULL
 * when out of memory): tells a replay from another request under the same
 * idempotency key. */
const char *fd_request_hash(fd_arena_t *arena, const ProtobufCMessage *msg);
/* The same keyed with key (32 bytes: the service's secret hash key), and the
 * packed copy wiped: for requests that carry a secret (a line's password),
 * whose plain hash, stored, would let a reader of the table test guesses of
 * the secret offline. NULL when out of memory. */
const char *fd_request_mac(fd_arena_t *arena, const ProtobufCMessage *msg, const unsigned char key[32]);

#endif
