/* log.h - one-line logs: time, level, service, request id, tenant, method.
 *
 * The macros test the level before evaluating their arguments. The request
 * context is per thread: the RPC runtime sets it around each handler, so a
 * handler's log lines carry it without passing it around. Never log tokens,
 * passwords, keys or connection strings with passwords. */
#ifndef FD_LOG_H
#define FD_LOG_H

#include <stdint.h>
#include "fd/status.h"

typedef enum fd_log_level {
	FD_LOG_DEBUG = 0,
	FD_LOG_INFO = 1,
	FD_LOG_WARN = 2,
	FD_LOG_ERROR = 3,
} fd_log_level_t;

extern fd_log_level_t fd_log_min_level;

/* Set once at start-up, before threads start. service is borrowed and must
 * outlive the process (a string literal). */
void fd_log_init(const char *service, fd_log_level_t level);
/* "debug", "info", "warn", "error" -> level; -1 if unknown. */
int fd_log_level_parse(const char *s);

/* The request context of the calling thread; method is borrowed for as long
 * as it is set. fd_log_context_clear() when the request ends. */
void fd_log_context_set(const char *request_id, int64_t tenant, const char *method);
void fd_log_context_clear(void);

void fd_log_write(fd_log_level_t level, const char *fmt, ...) FD_PRINTF(2, 3);

#define FD_LOG(level, ...) \
	do { if ((level) >= fd_log_min_level) fd_log_write((level), __VA_ARGS__); } while (0)
#define fd_debug(...) FD_LOG(FD_LOG_DEBUG, __VA_ARGS__)
#define fd_info(...)  FD_LOG(FD_LOG_INFO, __VA_ARGS__)
#define fd_warn(...)  FD_LOG(FD_LOG_WARN, __VA_ARGS__)
#define fd_error(...) FD_LOG(FD_LOG_ERROR, __VA_ARGS__)

#endif
