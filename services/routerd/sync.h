/* sync.h - what keeps this replica's table in agreement with the database
 * and the other replicas (sync.c).
 *
 * Writes go to PostgreSQL first, in the tenant's transaction, with a NOTIFY
 * of the change (store.c); then the writing replica reads the row back into
 * its table (sync_reload_node), and every other replica does the same when
 * the NOTIFY reaches it. A row is applied only when its version is newer
 * than the table's, so the echo of one's own NOTIFY changes nothing; each
 * applied change is sent to the watchers (watch.h).
 *
 * Channel frontdesk_nodes (one NOTIFY per message):
 *   "node <tenant> <id>"      a node's settings changed: every replica reads it
 *   "tenant <tenant>"         a tenant's routing settings changed
 *   "hb <replica> <records>"  heartbeats a replica received since its last
 *                             share: "tenant,id,at_ms,conn,egress,cpu,over
 *                             [,tenant:viewers...]" separated by spaces
 *   "closed <replica> <records>"  nodes whose heartbeat stream ended:
 *                             "tenant,id,at_ms" separated by spaces
 * A replica skips its own "hb" and "closed". Heartbeat records are applied
 * only when newer than what the replica has.
 *
 * Threads: the listener (fd/listen.h) applies notifications; on
 * (re)connecting it reads every node again (notifications may have been
 * missed). The sharer sends "hb" every share_ms (at once after a health
 * change or a closed stream), and writes node_live every persist_ms. */
#ifndef ROUTERD_SYNC_H
#define ROUTERD_SYNC_H

#include "routerd.h"

/* Reads every tenant's nodes and settings into the table (start-up, and
 * after the LISTEN connection was lost). */
int sync_load_all(routerd_t *rd, fd_err_t *err) FD_MUSTCHECK;
/* Reads one node again (after a NOTIFY, a write, or a miss); -FD_ENOTFOUND
 * if it does not exist. Applies only a newer version. */
int sync_reload_node(routerd_t *rd, int64_t tenant, int64_t id, fd_err_t *err) FD_MUSTCHECK;
/* Reads a tenant's routing settings again. */
int sync_reload_tenant(routerd_t *rd, int64_t tenant, fd_err_t *err) FD_MUSTCHECK;

/* Starts the listener and the sharer; rd->sync is set (sync_fini frees it,
 * also after a failure here). */
int sync_init(routerd_t *rd, fd_err_t *err) FD_MUSTCHECK;
/* After the server stopped: every stream's closed() has run. */
void sync_fini(routerd_t *rd);

/* A node's heartbeat changed its health or it is new: share it at once. */
void sync_urgent(routerd_t *rd);
/* A node's heartbeat stream ended: tell the other replicas now. */
void sync_stream_closed(routerd_t *rd, int64_t tenant, int64_t id, int64_t at_ms);

#endif
