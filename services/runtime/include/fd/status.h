/* status.h - error codes and the error record every layer fills in.
 *
 * Codes are the gRPC status codes, so an error travels from SQL to the wire
 * without translation tables in between; rpc_status.c is the one place that
 * turns an fd_err_t into a gRPC status. Functions that can fail return 0 on
 * success or the negated code (-FD_EINVAL), and describe the failure in an
 * fd_err_t the caller passed in. */
#ifndef FD_STATUS_H
#define FD_STATUS_H

#include <stdarg.h>

#define FD_MUSTCHECK __attribute__((warn_unused_result))
#define FD_PRINTF(f, a) __attribute__((format(printf, f, a)))

typedef enum fd_code {
	FD_OK = 0,
	FD_ECANCELLED = 1,   /* the caller gave up */
	FD_EUNKNOWN = 2,
	FD_EINVAL = 3,       /* a request field is wrong; the message names it */
	FD_EDEADLINE = 4,    /* the call's deadline passed */
	FD_ENOTFOUND = 5,    /* absent, or not the caller's to see */
	FD_EEXISTS = 6,      /* unique key taken */
	FD_EPERM = 7,        /* authenticated, but not allowed */
	FD_EEXHAUSTED = 8,   /* rate limit, connection limit, out of memory */
	FD_EPRECOND = 9,     /* the state does not allow it (not enough credits) */
	FD_EABORTED = 10,    /* conflict that survived retries */
	FD_ERANGE = 11,
	FD_EUNIMPL = 12,     /* method not built yet */
	FD_EINTERNAL = 13,   /* a bug or an unexpected database error */
	FD_EUNAVAIL = 14,    /* retry: database or peer down */
	FD_EDATALOSS = 15,
	FD_EUNAUTH = 16,     /* no valid credential */
} fd_code_t;

#define FD_ERR_MSG_MAX 256

typedef struct fd_err {
	fd_code_t code;
	char msg[FD_ERR_MSG_MAX];
} fd_err_t;

/* Record an error and return -code, so a failing function ends with
 *   return fd_err_set(err, FD_EINVAL, "username: at most %d bytes", 64);
 * err may be NULL (the message is dropped). The message is for a person: say
 * what is wrong and, where it helps, what to do. Never put secrets in it. */
int fd_err_set(fd_err_t *err, fd_code_t code, const char *fmt, ...) FD_PRINTF(3, 4);
int fd_err_setv(fd_err_t *err, fd_code_t code, const char *fmt, va_list ap);

/* "INVALID_ARGUMENT", ... (static string). */
const char *fd_code_name(fd_code_t code);

#endif
