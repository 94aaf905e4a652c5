/* state.h - sessions and lines as linesd last announced them, for the
 * hooks to answer from memory: a watch of WatchPlaybackEvents (sessions
 * ended, lines revoked), and the batched session report (ReportSessions)
 * that keeps alive the sessions the hooks see.
 *
 * What the memory holds (state.c):
 *   - ended sessions: (tenant, session) -> why, from SESSION_ENDED events,
 *     from ReportSessions' answers and from the hooks themselves (an RTMP
 *     play that ended); kept for the life of a token (FRONTDESK_EDGED_TOKEN_TTL
 *     and a margin), at most STATE_ENDED_MAX, the oldest dropped first;
 *   - revoked lines: (tenant, line) -> when edged heard of it; a token issued
 *     before is refused. Line 0 is the whole tenant (a tenant or reseller
 *     suspension); kept as long, at most STATE_REVOKED_MAX;
 *   - the report queue: every session a hook served since the last report,
 *     once, at most STATE_QUEUE_MAX.
 * An entry dropped early (the bound) costs at most one report period: the
 * session is reported, and linesd's answer lists it as ended again.
 *
 * While the watch is not live (not yet ready, or broken and reconnecting)
 * events may be missed, so the memory alone is not trusted: a session not
 * known as ended is asked of linesd at once (ReportSessions with that one
 * session, which also keeps it alive), and the answer trusted for one report
 * period. When linesd cannot be asked either, sessions are served for a
 * grace (10 report periods, 5 s to 60 s) counted from when the watch was
 * last live, then refused (STATE_UNKNOWN) until linesd answers again. */
#ifndef EDGE_STATE_H
#define EDGE_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include "edged.h"

#define STATE_ENDED_MAX ((size_t)1 << 20)
#define STATE_REVOKED_MAX ((size_t)1 << 18)
#define STATE_QUEUE_MAX ((size_t)1 << 20)
#define STATE_REPORT_CHUNK 10000     /* sessions per ReportSessions call (the contract's bound) */

int state_start(edged_t *e, fd_err_t *err) FD_MUSTCHECK;
void state_stop(edged_t *e);

/* What the state says of a session a hook is about to serve. */
typedef enum state_verdict {
	STATE_LIVE = 0,      /* serve it; it is queued for the next report */
	STATE_ENDED,         /* the session ended (closed, timed out, kicked, replaced, line revoked) */
	STATE_REVOKED,       /* the line's (or tenant's) authorizations before the token's issue are void */
	STATE_UNKNOWN,       /* the memory cannot be trusted and linesd cannot be asked, past the grace */
} state_verdict_t;

/* The session of a token (tenant, line, session) issued at issued_at_ms
 * (edged's wall clock, ms). Thread-safe; may call linesd (see above) while
 * the watch is not live. */
state_verdict_t state_check(edged_t *e, int64_t tenant, int64_t line, int64_t session, int64_t issued_at_ms);
/* "session ended", ... (static), for the hooks' X-Frontdesk-Denied. */
const char *state_verdict_text(state_verdict_t v);

/* A session edged itself saw end (nginx-rtmp's play_done): ended at once
 * here; reason is a SessionEndReason. */
void state_mark_ended(edged_t *e, int64_t tenant, int64_t session, int reason);

/* A line's connection limit as the hand-off last saw it (AuthorizePlayback's
 * line), kept beside the session for the Flussonic hook's X-Max-Sessions:
 * remembered by this replica only; 0 when unknown. */
void state_note_session(edged_t *e, int64_t tenant, int64_t session, int32_t max_connections);
int32_t state_session_max(edged_t *e, int64_t tenant, int64_t session);

/* Whether the watch is live (ready received, stream open). */
bool state_ready(edged_t *e);

#endif
