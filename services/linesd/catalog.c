/* catalog.c - not built yet: answers UNIMPLEMENTED. */
#include "linesd.h"

int linesd_create_package(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_list_packages(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_update_package(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_create_bouquet(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_list_bouquets(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_update_bouquet(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_create_stream(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_list_streams(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_update_stream(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_get_settings(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

int linesd_update_settings(fd_call_t *call, const ProtobufCMessage *req, ProtobufCMessage **resp)
{
	(void)req;
	(void)resp;
	return fd_call_fail(call, FD_EUNIMPL, "not built yet");
}

