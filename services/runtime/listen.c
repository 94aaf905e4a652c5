/* listen.c - the LISTEN connection (see fd/listen.h). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libpq-fe.h>
#include "fd/listen.h"
#include "fd/log.h"
#include "fd/clock.h"

#define CONNECT_TIMEOUT_MS 3000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000

struct fd_listener {
	fd_listen_opts_t o;
	pthread_t thread;
	atomic_bool stop;
	atomic_bool up;
	char what[96];                /* "LISTEN frontdesk_nodes", for the log */
};

static bool stopping(fd_listener_t *ln)
{
	return atomic_load(&ln->stop);
}

static void tick(fd_listener_t *ln)
{
	if (ln->o.tick)
		ln->o.tick(ln->o.arg);
}

/* Sleeps ms, ticking, in steps short enough to stop promptly. */
static void nap(fd_listener_t *ln, int ms)
{
	int64_t until = fd_mono_ms() + ms;
	for (int64_t left; !stopping(ln) && (left = until - fd_mono_ms()) > 0;) {
		poll(NULL, 0, (int)(left < ln->o.poll_ms ? left : ln->o.poll_ms));
		tick(ln);
	}
}

/* Waits for the socket (POLLIN or POLLOUT) until `until` or a stop: 1 ready, 0 not. */
static int wait_socket(fd_listener_t *ln, PGconn *pg, short events, int64_t until)
{
	while (!stopping(ln)) {
		int64_t left = until - fd_mono_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = { PQsocket(pg), events, 0 };
		int n = poll(&p, 1, (int)(left < ln->o.poll_ms ? left : ln->o.poll_ms));
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return 0;
	}
	return 0;
}

/* Notices (and the FATAL of a terminated backend) to the log, not stderr. */
static void notice_rx(void *arg, const PGresult *res)
{
	const fd_listener_t *ln = arg;
	const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	fd_debug("%s: database notice: %s", ln->what, m ? m : "");
}

/* Opens the connection and runs LISTEN. On failure *why is set (it may point
 * into the returned connection: log it before PQfinish). The password is
 * passed to libpq only; libpq's messages do not hold it. */
static PGconn *listen_connect(fd_listener_t *ln, const char **why)
{
	/* Keywords before dbname are defaults the conninfo may override; those
	 * after it override it (as the pool does). */
	const char *keys[12], *vals[12];
	int k = 0;
	keys[k] = "keepalives", vals[k++] = "1";
	keys[k] = "keepalives_idle", vals[k++] = "10";
	keys[k] = "keepalives_interval", vals[k++] = "5";
	keys[k] = "keepalives_count", vals[k++] = "3";
	keys[k] = "tcp_user_timeout", vals[k++] = "20000";
	keys[k] = "dbname", vals[k++] = ln->o.database_url;
	if (ln->o.db_user && ln->o.db_user[0])
		keys[k] = "user", vals[k++] = ln->o.db_user;
	if (ln->o.db_password && ln->o.db_password[0])
		keys[k] = "password", vals[k++] = ln->o.db_password;
	keys[k] = "application_name", vals[k++] = ln->o.application_name;
	keys[k] = "client_encoding", vals[k++] = "UTF8";
	keys[k] = NULL, vals[k] = NULL;

	/* PQconnectdbParams would block for as long as the server takes; the
	 * asynchronous form (same parameters, expand_dbname = 1) lets a stop
	 * interrupt the attempt. */
	PGconn *pg = PQconnectStartParams(keys, vals, 1);
	if (!pg) {
		*why = "out of memory";
		return NULL;
	}
	PQsetNoticeReceiver(pg, notice_rx, ln);
	int64_t until = fd_mono_ms() + CONNECT_TIMEOUT_MS;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	while (PQstatus(pg) != CONNECTION_BAD && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED &&
	       wait_socket(ln, pg, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, until))
		st = PQconnectPoll(pg);
	if (st != PGRES_POLLING_OK) {
		*why = PQstatus(pg) == CONNECTION_BAD || st == PGRES_POLLING_FAILED ? PQerrorMessage(pg)
		       : stopping(ln) ? "stopping" : "connection attempt timed out";
		return pg;
	}
	if (!PQsendQuery(pg, ln->what)) {
		*why = PQerrorMessage(pg);
		return pg;
	}
	PGresult *res;
	bool ok = false, done = false;
	until = fd_mono_ms() + CONNECT_TIMEOUT_MS;
	while (!done) {
		if (PQisBusy(pg) && !(wait_socket(ln, pg, POLLIN, until) && PQconsumeInput(pg))) {
			*why = stopping(ln) ? "stopping" : PQstatus(pg) == CONNECTION_BAD ? PQerrorMessage(pg)
			       : "LISTEN timed out";
			return pg;
		}
		while (!PQisBusy(pg)) {
			if (!(res = PQgetResult(pg))) {
				done = true;
				break;
			}
			ok = PQresultStatus(res) == PGRES_COMMAND_OK;
			PQclear(res);
		}
	}
	if (!ok)
		*why = "LISTEN failed";
	return pg;
}

/* Trims libpq's trailing newline for the log (into buf). */
static const char *one_line(const char *msg, char *buf, size_t n)
{
	snprintf(buf, n, "%s", msg);
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf;
}

static void *listen_main(void *arg)
{
	fd_listener_t *ln = arg;
	PGconn *pg = NULL;
	int backoff = BACKOFF_MIN_MS;
	bool down_logged = false;
	char buf[512];
	while (!stopping(ln)) {
		if (!pg) {
			const char *why = NULL;
			PGconn *c = listen_connect(ln, &why);
			if (why) {
				if (!down_logged && !stopping(ln))
					fd_warn("%s: cannot connect (%s); retrying", ln->what, one_line(why, buf, sizeof(buf)));
				down_logged = true;
				PQfinish(c);
				nap(ln, backoff);
				backoff = backoff * 2 < BACKOFF_MAX_MS ? backoff * 2 : BACKOFF_MAX_MS;
				continue;
			}
			pg = c;
			backoff = BACKOFF_MIN_MS;
			down_logged = false;
			atomic_store(&ln->up, true);
			fd_info("%s: listening", ln->what);
			if (ln->o.up)
				ln->o.up(ln->o.arg);
		}
		struct pollfd p = { PQsocket(pg), POLLIN, 0 };
		int n = poll(&p, 1, ln->o.poll_ms);
		const char *why = NULL;
		if (n < 0 && errno != EINTR)
			why = "poll failed";
		else if (n > 0 && !PQconsumeInput(pg))
			why = one_line(PQerrorMessage(pg), buf, sizeof(buf));
		PGnotify *nt;
		while ((nt = PQnotifies(pg))) {
			if (ln->o.notify)
				ln->o.notify(ln->o.arg, nt->extra);
			PQfreemem(nt);
		}
		if (!why && PQstatus(pg) != CONNECTION_OK)
			why = "connection closed";
		if (why) {
			atomic_store(&ln->up, false);
			fd_warn("%s: connection lost (%s); reconnecting", ln->what, why);
			if (ln->o.lost)
				ln->o.lost(ln->o.arg, why);
			PQfinish(pg);
			pg = NULL;
		}
		tick(ln);
	}
	PQfinish(pg);
	atomic_store(&ln->up, false);
	return NULL;
}

fd_listener_t *fd_listener_start(const fd_listen_opts_t *opts, fd_err_t *err)
{
	size_t cl = strlen(opts->channel);
	if (cl == 0 || cl > 63 || strspn(opts->channel, "abcdefghijklmnopqrstuvwxyz0123456789_") != cl) {
		fd_err_set(err, FD_EINVAL, "LISTEN channel: lower-case letters, digits and _ (1..63)");
		return NULL;
	}
	fd_listener_t *ln = calloc(1, sizeof(*ln));
	if (!ln) {
		fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		return NULL;
	}
	ln->o = *opts;
	if (ln->o.poll_ms <= 0)
		ln->o.poll_ms = FD_LISTEN_POLL_MS;
	snprintf(ln->what, sizeof(ln->what), "LISTEN %s", opts->channel);
	atomic_init(&ln->stop, false);
	atomic_init(&ln->up, false);
	if (pthread_create(&ln->thread, NULL, listen_main, ln) != 0) {
		free(ln);
		fd_err_set(err, FD_EINTERNAL, "cannot start the %s thread", opts->channel);
		return NULL;
	}
	return ln;
}

void fd_listener_stop(fd_listener_t *ln)
{
	if (!ln)
		return;
	atomic_store(&ln->stop, true);
	pthread_join(ln->thread, NULL);
	free(ln);
}

bool fd_listener_up(const fd_listener_t *ln)
{
	return ln && atomic_load(&ln->up);
}
