/* rpc.h - the gRPC server every service runs on.
 *
 * A service hands the server its protobuf-c service descriptor and a table of
 * handlers by method name. The server registers every method the descriptor
 * lists (a method without a handler answers UNIMPLEMENTED), learns which
 * methods stream from the descriptor set compiled in from api/, decodes each
 * request into the call's arena after checking its strings, runs the handler
 * and sends its reply or error. Health and reflection are served by every
 * server.
 *
 * Threads: `threads` workers poll one completion queue (by default), so a
 * handler that blocks (on the database, on another service) holds up only
 * its own thread. gRPC core binds each client connection's calls to one
 * queue: with several queues, a connection whose queue's workers are all
 * blocked waits even while other queues' workers are idle. */
#ifndef FD_RPC_H
#define FD_RPC_H

#include <stdbool.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "fd/arena.h"
#include "fd/status.h"

typedef struct fd_server fd_server_t;
typedef struct fd_call fd_call_t;

/* A unary handler. req is unpacked into the call's arena; on success it sets
 * *resp to a message allocated from fd_call_arena(call) (or static) and
 * returns 0. On failure it returns -code, having described the error with
 * fd_call_fail() (or into fd_call_err(call)); nothing is sent but the status. */
typedef int (*fd_unary_fn)(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp);

/* A streaming handler. The runtime calls these on its worker threads, never
 * two at once for one call.
 *   open:    once, when the call arrives. Server streaming: req is the request
 *            (lives as long as the call). Client or bidirectional streaming:
 *            req is NULL. Return 0 to keep the stream open (send with
 *            fd_stream_send, end with fd_stream_finish, from any thread), or
 *            -code to end it at once with that status.
 *   message: client or bidirectional streaming: one request message, valid
 *            only during the callback. Return -code to end the stream.
 *   half_close: the client will send no more (NULL: finish with OK).
 *   closed:  exactly once when the stream is over, after open was called:
 *            finished, cancelled by the client, or its deadline passed.
 *            Drop every reference the service kept (fd_call_unref). */
typedef struct fd_stream_ops {
	int (*open)(fd_call_t *call, const ProtobufCMessage *req);
	int (*message)(fd_call_t *call, const ProtobufCMessage *msg);
	int (*half_close)(fd_call_t *call);
	void (*closed)(fd_call_t *call, bool cancelled);
} fd_stream_ops_t;

/* One row of a service's handler table; the table ends with a NULL name.
 * Exactly one of unary / stream is set, matching the method's kind in the
 * .proto (checked when the service is added). */
typedef struct fd_method_impl {
	const char *name;              /* as in the .proto: "CreateLine" */
	fd_unary_fn unary;
	const fd_stream_ops_t *stream;
} fd_method_impl_t;

typedef struct fd_server_opts {
	const char *listen;            /* host:port */
	int threads;
	int queues;                    /* completion queues (at most threads); 0: one, shared by all */
	size_t max_message_bytes;      /* larger requests: RESOURCE_EXHAUSTED */
	int64_t shutdown_grace_ms;     /* in-flight calls may finish within this */
	const char *tls_cert;          /* PEM file names; NULL or "" = plaintext */
	const char *tls_key;
	const char *tls_client_ca;     /* set: require client certificates it signed */
} fd_server_opts_t;

/* Creates a server with grpc.health.v1.Health and server reflection (v1alpha
 * and v1) already added. Call grpc_init() first. Free with fd_server_free. */
fd_server_t *fd_server_new(const fd_server_opts_t *opts, fd_err_t *err) FD_MUSTCHECK;

/* Serve every method of desc. impls is borrowed for the server's life;
 * service_ctx is what fd_call_service() returns in its handlers. Fails if a
 * handler names a method desc lacks, or its kind (unary or streaming) differs
 * from the .proto. Before fd_server_start only. */
int fd_server_add_service(fd_server_t *srv, const ProtobufCServiceDescriptor *desc,
                          const fd_method_impl_t *impls, void *service_ctx,
                          fd_err_t *err) FD_MUSTCHECK;

/* Bind and start the worker threads. */
int fd_server_start(fd_server_t *srv, fd_err_t *err) FD_MUSTCHECK;

/* The port actually bound (useful with port 0). */
int fd_server_port(const fd_server_t *srv);

/* Health: service "" is the whole server; each added service is known by its
 * full name (frontdesk.v1.AuthService). Watchers are told of every change. */
void fd_server_set_serving(fd_server_t *srv, bool serving);

/* Graceful stop: refuse new calls, let in-flight ones finish within the grace
 * period, cancel what is left, and join the workers. Idempotent. */
void fd_server_shutdown(fd_server_t *srv);
/* Shuts down if still running, then frees everything. */
void fd_server_free(fd_server_t *srv);

/* ---- inside a handler ---- */

/* The call's arena: allocations live until the call ends. */
fd_arena_t *fd_call_arena(fd_call_t *call);
/* The error record the status is made from. */
fd_err_t *fd_call_err(fd_call_t *call);
/* The reply of a unary handler, in one call: the method's response message
 * allocated from the call's arena, initialised, and set as *resp. The
 * handler fills in its fields and returns 0:
 *     Frontdesk__V1__GetLineResponse *r = fd_reply(call, resp);
 *     if (!r)
 *         return -FD_EEXHAUSTED;
 *     r->line = line;
 *     return 0;
 * NULL when out of memory, with the call's error set (RESOURCE_EXHAUSTED). */
void *fd_reply(fd_call_t *call, ProtobufCMessage **resp) FD_MUSTCHECK;
/* Records the error and returns -code: `return fd_call_fail(c, FD_EINVAL, "x: ...");` */
int fd_call_fail(fd_call_t *call, fd_code_t code, const char *fmt, ...) FD_PRINTF(3, 4);
/* The service_ctx given to fd_server_add_service. */
void *fd_call_service(fd_call_t *call);
/* A request metadata value (key in lower case), NUL-terminated, copied into
 * the call's arena; NULL if absent (or if it holds a NUL byte). */
const char *fd_call_metadata(fd_call_t *call, const char *key);
/* The peer address ("ipv4:127.0.0.1:5000"), in the call's arena. */
const char *fd_call_peer(fd_call_t *call);
/* "/frontdesk.v1.AuthService/Login" (static). */
const char *fd_call_method(const fd_call_t *call);
/* The call's id for logs (static for the call's life). */
const char *fd_call_id(const fd_call_t *call);
/* Absolute deadline in CLOCK_REALTIME milliseconds; INT64_MAX if none. */
int64_t fd_call_deadline_ms(const fd_call_t *call);
/* True once the deadline has passed or the client cancelled. */
bool fd_call_done(const fd_call_t *call);
/* Set the tenant shown in this call's log lines (once it is known). */
void fd_call_set_log_tenant(fd_call_t *call, int64_t tenant);

/* ---- streaming ---- */

/* Queue one message on a streaming call; thread-safe. The message is packed
 * before returning (the caller keeps ownership). -FD_ECANCELLED if the stream
 * has ended; -FD_EEXHAUSTED if the client reads too slowly (more than 1024
 * queued; the stream is then ended with RESOURCE_EXHAUSTED). */
int fd_stream_send(fd_call_t *call, const ProtobufCMessage *msg);
/* End the stream after the queued messages: rc 0 for OK, or -code with msg
 * (NULL: the call's fd_err_t or the code's default). Thread-safe; later
 * calls are ignored. */
void fd_stream_finish(fd_call_t *call, int rc, const char *msg);
/* Keep a call alive beyond its callbacks (e.g. in a watcher list). */
void fd_call_ref(fd_call_t *call);
void fd_call_unref(fd_call_t *call);
/* Service-owned pointer, for streaming handlers' own state. */
void fd_call_set_user(fd_call_t *call, void *user);
void *fd_call_user(const fd_call_t *call);

#endif
