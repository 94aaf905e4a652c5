/* rpc_status.h - the one place an fd error becomes a gRPC status. */
#ifndef FD_RPC_STATUS_H
#define FD_RPC_STATUS_H

#include <grpc/status.h>
#include "fd/status.h"

/* rc: 0 or -code from a handler; err: its record (may be NULL or empty).
 * Writes the message a client should see to msg: err's message when it has
 * one for this code, else a default for the code. INTERNAL never carries
 * details to the client (they are logged, with the call id). */
grpc_status_code fd_rpc_status(int rc, const fd_err_t *err, const char *call_id, char *msg,
                               size_t msg_size);

#endif
