/* events.c - not built yet. */
#include "linesd.h"

static int watch_open(fd_call_t *call, const ProtobufCMessage *req)
{
	(void)req;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

static void watch_closed(fd_call_t *call, bool cancelled)
{
	(void)call;
	(void)cancelled;
}

const fd_stream_ops_t linesd_watch_line_events = { .open = watch_open, .closed = watch_closed };

int events_init(linesd_t *l, fd_err_t *err)
{
	(void)l;
	(void)err;
	return 0;
}

void events_fini(linesd_t *l)
{
	(void)l;
}

bool events_listening(linesd_t *l)
{
	(void)l;
	return false;
}

bool events_watched(linesd_t *l, int64_t tenant)
{
	(void)l;
	(void)tenant;
	return false;
}
