/* upstream.h - the gRPC calls edged makes, each with the service token of
 * its audience (renewed by fd/token_source.h) and the configured deadline.
 * A call that reaches linesd, whatever it answers, marks linesd up for
 * /healthz; one that cannot (UNAVAILABLE, DEADLINE_EXCEEDED) marks it down. */
#ifndef EDGE_UPSTREAM_H
#define EDGE_UPSTREAM_H

#include <protobuf-c/protobuf-c.h>
#include "edged.h"
#include "fd/arena.h"
#include "frontdesk/v1/auth.pb-c.h"
#include "frontdesk/v1/lines.pb-c.h"

typedef enum upstream_service {
	UP_LINESD,
	UP_AUTHD,
} upstream_service_t;

/* Unary call of method ("AuthorizePlayback") of the service; *resp in
 * arena. 0, or -code with err set (the service's status message). */
int upstream_call(edged_t *e, upstream_service_t svc, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, fd_arena_t *arena, ProtobufCMessage **resp,
                  fd_err_t *err) FD_MUSTCHECK;

/* A server stream of method (WatchPlaybackEvents) with the service's token;
 * NULL with err set. Free with fd_client_stream_free. */
fd_client_stream_t *upstream_stream(edged_t *e, upstream_service_t svc, const char *method,
                                    const ProtobufCMessage *req, fd_err_t *err);

#endif
