/* listen.h - a LISTEN connection of its own: one thread, one libpq session
 * (not the pool's: a pooled connection runs other transactions, and LISTEN
 * belongs to a session), for a service that follows NOTIFYs of its channel.
 *
 * The thread polls the socket at most every FD_LISTEN_POLL_MS so that it
 * stops promptly, reconnects with a backoff (100 ms doubling to 1 s) when
 * the connection is lost, and never holds up start-up. Callbacks run on the
 * thread, one at a time:
 *   up:     listening (again). Anything cached while not listening may be
 *           stale: notifications were missed.
 *   lost:   the connection is gone (why: for the log); until up again,
 *           notifications are missed.
 *   notify: one notification's payload.
 *   tick:   after every poll (at most FD_LISTEN_POLL_MS apart), connected or
 *           not: the service's periodic work may ride on it.
 * Any callback may be NULL. */
#ifndef FD_LISTEN_H
#define FD_LISTEN_H

#include <stdbool.h>
#include "fd/status.h"

#define FD_LISTEN_POLL_MS 250

typedef struct fd_listener fd_listener_t;

typedef struct fd_listen_opts {
	const char *channel;          /* an SQL identifier: "frontdesk_nodes" */
	const char *application_name; /* shown in pg_stat_activity: "routerd-listen" */
	const char *database_url;     /* as the pool's: conninfo or URL */
	const char *db_user;          /* NULL or "": from the URL */
	const char *db_password;
	int poll_ms;                  /* 0: FD_LISTEN_POLL_MS; shorter for a faster tick */
	void (*up)(void *arg);
	void (*lost)(void *arg, const char *why);
	void (*notify)(void *arg, const char *payload);
	void (*tick)(void *arg);
	void *arg;
} fd_listen_opts_t;

/* Starts the thread (opts is copied; the strings must outlive the listener). */
fd_listener_t *fd_listener_start(const fd_listen_opts_t *opts, fd_err_t *err) FD_MUSTCHECK;
/* Stops and joins the thread, closes the connection, frees. NULL is ignored. */
void fd_listener_stop(fd_listener_t *ln);
/* Whether the connection is listening now. */
bool fd_listener_up(const fd_listener_t *ln);

#endif
