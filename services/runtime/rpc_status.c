/* rpc_status.c - maps handler results to gRPC status codes and messages. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include "fd/log.h"
#include "fd/rpc_status.h"

static const char *default_message(fd_code_t code)
{
	switch (code) {
	case FD_EINVAL: return "the request is invalid";
	case FD_EDEADLINE: return "the deadline passed before the call completed";
	case FD_ENOTFOUND: return "not found";
	case FD_EEXISTS: return "already exists";
	case FD_EPERM: return "not allowed for this caller";
	case FD_EEXHAUSTED: return "resource exhausted; retry later";
	case FD_EPRECOND: return "the current state does not allow this";
	case FD_EABORTED: return "conflict with a concurrent change; retry";
	case FD_EUNIMPL: return "not implemented";
	case FD_EUNAVAIL: return "temporarily unavailable; retry";
	case FD_EUNAUTH: return "missing or invalid credentials";
	case FD_ECANCELLED: return "cancelled";
	default: return "internal error";
	}
}

grpc_status_code fd_rpc_status(int rc, const fd_err_t *err, const char *call_id, char *msg,
                               size_t msg_size)
{
	if (rc == 0) {
		msg[0] = '\0';
		return GRPC_STATUS_OK;
	}
	fd_code_t code = (fd_code_t)-rc;
	if (code <= FD_OK || code > FD_EUNAUTH)
		code = FD_EINTERNAL;
	bool has_msg = err && err->code == code && err->msg[0];

	if (code == FD_EINTERNAL || code == FD_EUNKNOWN || code == FD_EDATALOSS) {
		fd_error("internal error: %s", has_msg ? err->msg : "(no detail)");
		snprintf(msg, msg_size, "internal error (call %s); the server log has the details",
		         call_id ? call_id : "?");
		return (grpc_status_code)code;
	}
	snprintf(msg, msg_size, "%s", has_msg ? err->msg : default_message(code));
	return (grpc_status_code)code;
}
