/* rpc_client.h - calling another service: channels, unary calls with
 * deadlines and retries, and streams.
 *
 * A channel is thread-safe and shared by every thread of a service; each call
 * blocks its thread until it completes or its deadline passes. */
#ifndef FD_RPC_CLIENT_H
#define FD_RPC_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "fd/arena.h"
#include "fd/status.h"

typedef struct fd_channel fd_channel_t;
typedef struct fd_client_stream fd_client_stream_t;

typedef struct fd_channel_opts {
	const char *target;        /* host:port */
	const char *tls_ca;        /* PEM file of the roots to trust; NULL or "" = plaintext */
	const char *tls_cert;      /* client certificate and key (PEM files), for mutual TLS */
	const char *tls_key;
	const char *tls_server_name; /* expected name in the server's certificate, if not the host */
} fd_channel_opts_t;

typedef struct fd_call_opts {
	int64_t timeout_ms;        /* the whole call, retries included; 0 = 5000 (unary) or none (streams) */
	bool idempotent;           /* unary: retry UNAVAILABLE while the deadline allows */
	const char *authorization; /* sent as the authorization metadata ("Bearer ..."), or NULL */
} fd_call_opts_t;

fd_channel_t *fd_channel_new(const fd_channel_opts_t *opts, fd_err_t *err) FD_MUSTCHECK;
void fd_channel_free(fd_channel_t *ch);

/* Unary call to path ("/frontdesk.v1.BillingService/Charge"). On success *resp
 * is unpacked into arena (freed with it). On failure returns -code with the
 * server's status message in err (UNAVAILABLE when the peer is unreachable,
 * DEADLINE_EXCEEDED when the deadline passed). */
int fd_channel_unary(fd_channel_t *ch, const char *path, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_desc, fd_arena_t *arena,
                     ProtobufCMessage **resp, const fd_call_opts_t *opts,
                     fd_err_t *err) FD_MUSTCHECK;

/* Open a stream. Server streaming: pass the request as first (the send side
 * is then closed). Client or bidirectional streaming: first = NULL. One
 * thread uses a stream at a time. Free with fd_client_stream_free. */
fd_client_stream_t *fd_channel_stream(fd_channel_t *ch, const char *path,
                                      const ProtobufCMessage *first, const fd_call_opts_t *opts,
                                      fd_err_t *err) FD_MUSTCHECK;
int fd_client_stream_send(fd_client_stream_t *s, const ProtobufCMessage *msg,
                          fd_err_t *err) FD_MUSTCHECK;
/* No more messages from this side. */
int fd_client_stream_close_send(fd_client_stream_t *s, fd_err_t *err) FD_MUSTCHECK;
/* Wait up to timeout_ms (-1: until the stream's deadline) for the next message.
 * Returns 1 with *msg (in arena), 0 when the server ended the stream with OK,
 * -FD_EDEADLINE when timeout_ms passed with nothing (the stream stays usable),
 * or -code with err set when the stream failed. */
int fd_client_stream_recv(fd_client_stream_t *s, const ProtobufCMessageDescriptor *desc,
                          fd_arena_t *arena, ProtobufCMessage **msg, int64_t timeout_ms,
                          fd_err_t *err) FD_MUSTCHECK;
/* Cancels the stream if it is still open, and frees it. */
void fd_client_stream_free(fd_client_stream_t *s);

#endif
