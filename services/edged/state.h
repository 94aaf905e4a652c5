/* state.h - sessions and lines as linesd last announced them, for the
 * hooks to answer from memory: a watch of WatchPlaybackEvents (sessions
 * ended, lines revoked), and the batched session report (ReportSessions)
 * that keeps alive the sessions the hooks see. */
#ifndef EDGE_STATE_H
#define EDGE_STATE_H

#include "edged.h"

int state_start(edged_t *e, fd_err_t *err) FD_MUSTCHECK;
void state_stop(edged_t *e);

#endif
