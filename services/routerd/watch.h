/* watch.h - what watchers see (watch.c): WatchNodes streams, the node
 * events sent to them, and the monitor thread that turns health changes
 * into events (UP, DOWN, OVERLOADED, RECOVERED) and sends the periodic
 * snapshots. Route never waits for it.
 *
 * Locks: the table lock, then the watchers' own. */
#ifndef ROUTERD_WATCH_H
#define ROUTERD_WATCH_H

#include "routerd.h"

/* Starts the monitor; rd->watch is set (watch_fini frees it, also after a
 * failure here). */
int watch_init(routerd_t *rd, fd_err_t *err) FD_MUSTCHECK;
/* Stops the monitor and ends every watch (after the server stopped and
 * after sync_fini: nothing emits any more). */
void watch_fini(routerd_t *rd);

/* Sends a node event to this replica's watchers that may see n (under the
 * table lock, either mode). reason is borrowed. Nothing before watch_init. */
void watch_emit(routerd_t *rd, const rnode_t *n, int type, const char *reason);

#endif
