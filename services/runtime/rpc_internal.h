/* rpc_internal.h - what the server's own parts (rpc_server.c, health.c,
 * reflection.c) share. Services use fd/rpc.h only. */
#ifndef FD_RPC_INTERNAL_H
#define FD_RPC_INTERNAL_H

#include <pthread.h>
#include <grpc/grpc.h>
#include "fd/api_index.h"
#include "fd/rpc.h"

typedef struct fd_method {
	char *path;                              /* "/frontdesk.v1.AuthService/Login" */
	const ProtobufCMethodDescriptor *desc;   /* input and output messages */
	fd_method_kind_t kind;
	fd_unary_fn unary;                       /* NULL and stream NULL: UNIMPLEMENTED */
	const fd_stream_ops_t *stream;
	void *service_ctx;
	void *handle;                            /* from grpc_server_register_method */
} fd_method_t;

/* Health state: lives in the server, served by health.c. */
typedef struct fd_health {
	pthread_mutex_t mu;
	bool serving;
	char **services;        /* full names of the services added, plus "" */
	size_t nservices;
	fd_call_t **watchers;   /* open Watch streams, each holding a reference */
	size_t nwatchers, capwatchers;
} fd_health_t;

/* Built-in services, added by fd_server_new. */
int fd_health_add(fd_server_t *srv, fd_err_t *err);
int fd_reflection_add(fd_server_t *srv, fd_err_t *err);
fd_health_t *fd_server_health(fd_server_t *srv);
/* Tell health watchers the current status (after a change). */
void fd_health_broadcast(fd_health_t *h);
void fd_health_free(fd_health_t *h);

#endif
