/* playback.c - not built yet: answers UNIMPLEMENTED. */
#include "linesd.h"

int linesd_authorize_playback(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_session_heartbeat(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_end_session(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_list_sessions(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_kick_session(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

const char SESSION_COLS[] = "s.id";
int sessions_init(linesd_t *l, fd_err_t *err)
{
	(void)l; (void)err;
	return 0;
}
void sessions_fini(linesd_t *l)
{
	(void)l;
}
Frontdesk__V1__Session *session_message(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int col)
{
	(void)a; (void)tenant; (void)res; (void)row; (void)col;
	return NULL;
}
void sessions_sweep(linesd_t *l)
{
	(void)l;
}
void sessions_on_event(linesd_t *l, int64_t tenant, int type, int64_t line_id, int64_t session_id)
{
	(void)l; (void)tenant; (void)type; (void)line_id; (void)session_id;
}
void sessions_forget_all(linesd_t *l)
{
	(void)l;
}
