/* channels.c - GetLineChannels: the live channels a line may play, given
 * its credentials, for the HTTP edge's playlists. One statement decides (the
 * same frontdesk.authorize_playback as AuthorizePlayback with stream 0: the
 * credentials, every rule of the line, the failure limits and their
 * counting) and, when allowed, reads the channels and the catalog version. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "enums.h"
#include "linesd.h"
#include "store.h"
#include "fd/text.h"

typedef struct channels_q {
	fd_arena_t *arena;
	const char *params[11];
	int outcome;                 /* playback_outcome_t */
	int32_t retry_after;
	Frontdesk__V1__GetLineChannelsResponse *m;
} channels_q_t;

/* The channels of res's rows into q->m (allowed only). */
static int channels_read(fd_tx_t *tx, channels_q_t *q, PGresult *res)
{
	Frontdesk__V1__GetLineChannelsResponse *m = q->m;
	fd_arena_t *a = q->arena;
	int n = PQntuples(res);
	m->catalog_version = col_i64(res, 0, CHAN_COL_VERSION);
	if (pg_parse_ints(a, PQgetvalue(res, 0, CHAN_COL_BOUQUETS), &m->bouquet_ids, &m->n_bouquet_ids) < 0 ||
	    pg_parse_formats(a, PQgetvalue(res, 0, CHAN_COL_FORMATS), &m->allowed_output_formats,
	                     &m->n_allowed_output_formats) < 0)
		return TX_OOM(tx);
	if (n == 1 && PQgetisnull(res, 0, CHAN_COL_STREAM))
		n = 0;   /* allowed, no channel */
	Frontdesk__V1__Channel *ch = n ? fd_arena_zalloc(a, (size_t)n * sizeof(*ch)) : NULL;
	Frontdesk__V1__Channel **chp = n ? fd_arena_alloc(a, (size_t)n * sizeof(*chp)) : NULL;
	Frontdesk__V1__ChannelCategory *cat = n ? fd_arena_zalloc(a, (size_t)n * sizeof(*cat)) : NULL;
	Frontdesk__V1__ChannelCategory **catp = n ? fd_arena_alloc(a, (size_t)n * sizeof(*catp)) : NULL;
	if (n && (!ch || !chp || !cat || !catp))
		return TX_OOM(tx);
	size_t ncat = 0;
	for (int i = 0; i < n; i++) {
		Frontdesk__V1__Channel *c = &ch[i];
		frontdesk__v1__channel__init(c);
		c->stream_id = col_i64(res, i, CHAN_COL_STREAM);
		c->number = (int32_t)col_i64(res, i, CHAN_COL_NUMBER);
		c->category_id = col_i64(res, i, CHAN_COL_CATEGORY_ID);
		c->added_at = col_i64(res, i, CHAN_COL_ADDED);
		if (!(c->name = fd_arena_strdup(a, PQgetvalue(res, i, CHAN_COL_NAME))) ||
		    !(c->logo_url = fd_arena_strdup(a, PQgetvalue(res, i, CHAN_COL_LOGO))) ||
		    !(c->epg_channel = fd_arena_strdup(a, PQgetvalue(res, i, CHAN_COL_EPG))))
			return TX_OOM(tx);
		chp[i] = c;
		/* Categories in the order of their first channel (0: none, not listed). */
		if (c->category_id && col_bool(res, i, CHAN_COL_CATEGORY_FIRST)) {
			Frontdesk__V1__ChannelCategory *k = &cat[ncat];
			frontdesk__v1__channel_category__init(k);
			k->id = c->category_id;
			if (!(k->name = fd_arena_strdup(a, PQgetvalue(res, i, CHAN_COL_CATEGORY))))
				return TX_OOM(tx);
			catp[ncat++] = k;
		}
	}
	m->channels = chp;
	m->n_channels = (size_t)n;
	m->categories = catp;
	m->n_categories = ncat;
	return 0;
}

static int channels_tx(fd_tx_t *tx, void *arg)
{
	channels_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_LINE_CHANNELS, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) < 1)
		return fd_err_set(fd_tx_err(tx), FD_EINTERNAL, "line channels: no decision");
	q->outcome = (int)col_i64(res, 0, CHAN_COL_OUTCOME);
	q->retry_after = (int32_t)col_i64(res, 0, CHAN_COL_RETRY_AFTER);
	if (!playback_answer(q->outcome).allowed)
		return 0;
	return channels_read(tx, q, res);
}

int linesd_get_line_channels(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__GetLineChannelsRequest *req = (const void *)msg;
	linesd_t *l = linesd_of(call);
	fd_arena_t *a = fd_call_arena(call);
	fd_err_t *err = fd_call_err(call);
	fd_tctx_t t;
	bool active;
	int rc = lines_edge_service_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_LINE_CHANNELS_READ, req->tenant_id,
	                                  &active);
	if (rc < 0)
		return rc;
	size_t un = strlen(req->username);
	if (un == 0 || un > 64)
		return fd_call_fail(call, FD_EINVAL, "username: 1 to 64 characters");
	if (strlen(req->password) > 64)
		return fd_call_fail(call, FD_EINVAL, "password: at most 64 characters");
	if ((rc = check_ip(err, "client_ip", req->client_ip)) < 0 ||
	    (rc = fd_check_text("user_agent", req->user_agent, 0, CHECK_USER_AGENT_MAX, err)) < 0)
		return rc;
	Frontdesk__V1__GetLineChannelsResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	const char *paths = authorize_suspended_paths(&t, l);
	if (!paths)
		return -(int)err->code;
	char pwh[65];
	line_password_hash(l, req->tenant_id, req->password, pwh);
	channels_q_t q = { .arena = a, .m = m };
	const char *params[11] = {
		t.tenant_s, req->username, pwh, req->client_ip, req->user_agent, active ? "true" : "false", paths,
		lines_i64(&t, l->cfg->session_timeout), lines_i64(&t, l->cfg->fail_window),
		lines_i64(&t, l->cfg->fail_max_user), lines_i64(&t, l->cfg->fail_max_ip),
	};
	memcpy(q.params, params, sizeof(params));
	for (int i = 0; i < 11; i++)
		if (!q.params[i])
			return OOM(call);
	fd_tx_opts_t o = { .generic_plans = true };
	if ((rc = fd_tctx_run(&t, l->db, &o, channels_tx, &q)) < 0)
		return rc;
	playback_answer_t answer = playback_answer(q.outcome);
	if (!answer.allowed) {
		/* Nothing of the line: not even that it exists. */
		*m = (Frontdesk__V1__GetLineChannelsResponse)FRONTDESK__V1__GET_LINE_CHANNELS_RESPONSE__INIT;
		m->authorized = false;
		m->denial_reason = answer.reason ? answer.reason : FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_UNSPECIFIED;
		m->retry_after_seconds = q.retry_after;
		return 0;
	}
	m->authorized = true;
	return 0;
}
