/* status.c - recording errors as (code, message). */
#include <stdio.h>
#include "fd/status.h"

int fd_err_setv(fd_err_t *err, fd_code_t code, const char *fmt, va_list ap)
{
	if (err) {
		err->code = code;
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	}
	return -(int)code;
}

int fd_err_set(fd_err_t *err, fd_code_t code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = fd_err_setv(err, code, fmt, ap);
	va_end(ap);
	return rc;
}

const char *fd_code_name(fd_code_t code)
{
	static const char *const names[] = {
		"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
		"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
		"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
		"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
	};
	if ((unsigned)code < sizeof(names) / sizeof(names[0]))
		return names[code];
	return "UNKNOWN";
}
