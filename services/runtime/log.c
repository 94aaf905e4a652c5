/* log.c - one line per event on stderr, with the request context of the thread. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "fd/log.h"

fd_log_level_t fd_log_min_level = FD_LOG_INFO;
static const char *log_service = "frontdesk";

static _Thread_local struct {
	char request_id[40];
	int64_t tenant;     /* -1: none */
	const char *method;
} ctx = { "", -1, NULL };

void fd_log_init(const char *service, fd_log_level_t level)
{
	log_service = service;
	fd_log_min_level = level;
}

int fd_log_level_parse(const char *s)
{
	static const char *const names[] = { "debug", "info", "warn", "error" };
	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, names[i]) == 0)
			return i;
	return -1;
}

void fd_log_context_set(const char *request_id, int64_t tenant, const char *method)
{
	snprintf(ctx.request_id, sizeof(ctx.request_id), "%s", request_id ? request_id : "");
	ctx.tenant = tenant;
	ctx.method = method;
}

void fd_log_context_clear(void)
{
	ctx.request_id[0] = '\0';
	ctx.tenant = -1;
	ctx.method = NULL;
}

void fd_log_write(fd_log_level_t level, const char *fmt, ...)
{
	static const char *const names[] = { "DEBUG", "INFO", "WARN", "ERROR" };
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);

	int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s",
	                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	                 tm.tm_sec, ts.tv_nsec / 1000000, names[level & 3], log_service);
	if (ctx.request_id[0] && n < (int)sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, " req=%s", ctx.request_id);
	if (ctx.tenant >= 0 && n < (int)sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, " tenant=%lld", (long long)ctx.tenant);
	if (ctx.method && n < (int)sizeof(line))
		n += snprintf(line + n, sizeof(line) - n, " method=%s", ctx.method);
	if (n < (int)sizeof(line) - 1) {
		line[n++] = ' ';
		va_list ap;
		va_start(ap, fmt);
		int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		va_end(ap);
		n = m < 0 ? n : n + m;
	}
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	/* One line per event: a newline inside a message would forge a log line. */
	for (int i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
}
