/* token_source.c - service tokens kept and renewed before they expire. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>
#include "fd/log.h"
#include "fd/token_source.h"
#include "frontdesk/v1/auth.pb-c.h"

struct fd_token_source {
	fd_channel_t *authd;
	char service[32], audience[32];
	char *secret;                 /* sodium_malloc'd */
	int64_t timeout_ms, renew_before_s;
	pthread_mutex_t mu;           /* held while renewing: one request at a time */
	char bearer[FD_BEARER_MAX];
	int64_t issued_at, expires_at;
};

fd_token_source_t *fd_token_source_new(const fd_token_source_opts_t *o, fd_err_t *err)
{
	if (!o->authd || !o->service || !o->secret || !o->audience || !o->service[0] || !o->secret[0] ||
	    strlen(o->service) >= 32 || strlen(o->audience) >= 32) {
		fd_err_set(err, FD_EINVAL, "token source: authd channel, service name, secret and audience are required");
		return NULL;
	}
	fd_token_source_t *ts = calloc(1, sizeof(*ts));
	size_t n = strlen(o->secret);
	if (!ts || sodium_init() < 0 || !(ts->secret = sodium_malloc(n + 1))) {
		free(ts);
		fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		return NULL;
	}
	memcpy(ts->secret, o->secret, n + 1);
	ts->authd = o->authd;
	snprintf(ts->service, sizeof(ts->service), "%s", o->service);
	snprintf(ts->audience, sizeof(ts->audience), "%s", o->audience);
	ts->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 3000;
	ts->renew_before_s = o->renew_before_s;
	pthread_mutex_init(&ts->mu, NULL);
	return ts;
}

void fd_token_source_free(fd_token_source_t *ts)
{
	if (!ts)
		return;
	sodium_free(ts->secret);
	sodium_memzero(ts->bearer, sizeof(ts->bearer));
	pthread_mutex_destroy(&ts->mu);
	free(ts);
}

static int renew(fd_token_source_t *ts, int64_t now, fd_err_t *err)
{
	Frontdesk__V1__IssueServiceTokenRequest req = FRONTDESK__V1__ISSUE_SERVICE_TOKEN_REQUEST__INIT;
	req.service_name = ts->service;
	req.secret = ts->secret;
	req.audience = ts->audience;
	fd_arena_t arena;
	fd_arena_init(&arena, 64 * 1024);
	ProtobufCMessage *out = NULL;
	fd_call_opts_t co = { .timeout_ms = ts->timeout_ms, .idempotent = true };
	int rc = fd_channel_unary(ts->authd, "/frontdesk.v1.AuthService/IssueServiceToken", &req.base,
	                          &frontdesk__v1__issue_service_token_response__descriptor, &arena, &out, &co, err);
	if (rc == 0) {
		const Frontdesk__V1__IssueServiceTokenResponse *r = (const void *)out;
		if ((size_t)snprintf(ts->bearer, sizeof(ts->bearer), "Bearer %s", r->token) >= sizeof(ts->bearer) ||
		    r->expires_at <= now) {
			rc = fd_err_set(err, FD_EINTERNAL, "authd gave an unusable service token");
		} else {
			ts->issued_at = now;
			ts->expires_at = r->expires_at;
			fd_debug("service token for %s renewed; expires in %lld s", ts->audience,
			         (long long)(r->expires_at - now));
		}
	}
	fd_arena_free(&arena);
	return rc;
}

int fd_token_source_get(fd_token_source_t *ts, char *out, size_t outsz, fd_err_t *err)
{
	int64_t now = time(NULL);
	pthread_mutex_lock(&ts->mu);
	int rc = 0;
	int64_t before = ts->renew_before_s ? ts->renew_before_s : (ts->expires_at - ts->issued_at) / 3;
	if (!ts->expires_at || now >= ts->expires_at - before) {
		fd_err_t e2 = { 0 };
		rc = renew(ts, now, &e2);
		if (rc < 0 && ts->expires_at - now > 10) {
			fd_warn("service token renewal for %s failed (%s); the current one has %lld s left",
			        ts->audience, e2.msg, (long long)(ts->expires_at - now));
			rc = 0;
		} else if (rc < 0 && err) {
			*err = e2;
		}
	}
	if (rc == 0 && (size_t)snprintf(out, outsz, "%s", ts->bearer) >= outsz)
		rc = fd_err_set(err, FD_EINVAL, "token source: output buffer too small");
	pthread_mutex_unlock(&ts->mu);
	return rc;
}

int64_t fd_token_source_expires_at(fd_token_source_t *ts)
{
	pthread_mutex_lock(&ts->mu);
	int64_t e = ts->expires_at;
	pthread_mutex_unlock(&ts->mu);
	return e;
}
