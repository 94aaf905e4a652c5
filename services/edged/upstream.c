/* upstream.c - the gRPC calls edged makes (upstream.h). */
#include <stdio.h>
#include <string.h>
#include "upstream.h"
#include "fd/log.h"

static const char *service_path(upstream_service_t svc)
{
	return svc == UP_LINESD ? "frontdesk.v1.LinesService" : "frontdesk.v1.AuthService";
}

static void note_reach(edged_t *e, upstream_service_t svc, int rc)
{
	if (svc != UP_LINESD)
		return;
	bool up = !(rc == -FD_EUNAVAIL || rc == -FD_EDEADLINE);
	bool was = atomic_exchange(&e->linesd_up, up);
	if (was != up)
		fd_warn("linesd %s", up ? "reachable again" : "unreachable");
}

int upstream_call(edged_t *e, upstream_service_t svc, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, fd_arena_t *arena, ProtobufCMessage **resp,
                  fd_err_t *err)
{
	char auth[FD_BEARER_MAX];
	char path[128];
	snprintf(path, sizeof(path), "/%s/%s", service_path(svc), method);
	int rc = fd_token_source_get(svc == UP_LINESD ? e->linesd_token : e->authd_token, auth, sizeof(auth), err);
	if (rc < 0) {
		/* authd unreachable or refusing edged: no call can be made. */
		if (svc == UP_LINESD)
			note_reach(e, svc, -FD_EUNAVAIL);
		return rc;
	}
	fd_call_opts_t o = { .timeout_ms = e->cfg->rpc_timeout_ms, .authorization = auth };
	rc = fd_channel_unary(svc == UP_LINESD ? e->linesd : e->authd, path, req, resp_desc, arena, resp, &o, err);
	note_reach(e, svc, rc);
	return rc;
}

fd_client_stream_t *upstream_stream(edged_t *e, upstream_service_t svc, const char *method,
                                    const ProtobufCMessage *req, fd_err_t *err)
{
	char auth[FD_BEARER_MAX];
	char path[128];
	snprintf(path, sizeof(path), "/%s/%s", service_path(svc), method);
	if (fd_token_source_get(svc == UP_LINESD ? e->linesd_token : e->authd_token, auth, sizeof(auth), err) < 0)
		return NULL;
	fd_call_opts_t o = { .authorization = auth };
	return fd_channel_stream(svc == UP_LINESD ? e->linesd : e->authd, path, req, &o, err);
}
