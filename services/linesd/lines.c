/* lines.c - not built yet: answers UNIMPLEMENTED. */
#include "linesd.h"

int linesd_create_line(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_get_line(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_list_lines(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_update_line(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_extend_line(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_set_line_status(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_delete_line(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_create_trial_line(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

const char LINE_COLS[] = "l.id";
Frontdesk__V1__Line *line_message(const linesd_t *l, fd_arena_t *a, int64_t tenant, PGresult *res, int row, int col)
{
	(void)l; (void)a; (void)tenant; (void)res; (void)row; (void)col;
	return NULL;
}
void lines_reconcile(linesd_t *l)
{
	(void)l;
}
