/* services.c - the services that may get service tokens (each with its own
 * secret, FRONTDESK_SERVICE_SECRETS, of which only keyed hashes are kept)
 * and IssueServiceToken, which exchanges a secret for a short-lived token
 * whose audience and scopes name exactly the calls that service makes. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sodium.h>
#include "authd.h"
#include "fd/clock.h"
#include "fd/log.h"

#define SCOPE(x) FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_##x)

/* The scopes each kind of service may hold (DESIGN.md: exactly the calls it makes). */
static const struct {
	const char *name;
	fd_scopes_t scopes;
} SERVICE_KINDS[] = {
	{ "linesd", SCOPE(CREDITS_CHARGE) | SCOPE(CREDITS_REFUND) | SCOPE(ROUTE) | SCOPE(NODES_READ) },
	{ "edged", SCOPE(PLAYBACK_AUTHORIZE) | SCOPE(LINE_CHANNELS_READ) | SCOPE(PLAYBACK_EVENTS) |
	            SCOPE(SESSIONS_REPORT) | SCOPE(HOSTS_RESOLVE) },
};

static fd_scopes_t service_scopes(const char *name)
{
	for (size_t i = 0; i < sizeof(SERVICE_KINDS) / sizeof(SERVICE_KINDS[0]); i++)
		if (strcmp(SERVICE_KINDS[i].name, name) == 0)
			return SERVICE_KINDS[i].scopes;
	return 0;
}

int services_parse(authd_t *a, const char *spec, fd_err_t *err)
{
	const char *p = spec;
	while (*p) {
		size_t n = strcspn(p, ",");
		const char *eq = memchr(p, '=', n);
		size_t nl = eq ? (size_t)(eq - p) : 0;
		if (!eq || nl == 0 || nl >= sizeof(a->services[0].name) || n - nl - 1 < 32)
			return fd_err_set(err, FD_EINVAL, "FRONTDESK_SERVICE_SECRETS: expected name=secret,... "
			                  "with secrets of at least 32 characters");
		if (a->nservices == (int)(sizeof(a->services) / sizeof(a->services[0])))
			return fd_err_set(err, FD_EINVAL, "FRONTDESK_SERVICE_SECRETS: at most 8 services");
		service_secret_t *s = &a->services[a->nservices++];
		memcpy(s->name, p, nl);
		s->name[nl] = '\0';
		if (!(s->scopes = service_scopes(s->name)))
			return fd_err_set(err, FD_EINVAL, "FRONTDESK_SERVICE_SECRETS: unknown service \"%s\" "
			                  "(linesd, edged)", s->name);
		secret_hash(a, eq + 1, n - nl - 1, s->hash);
		p += n + (p[n] == ',');
	}
	return 0;
}

int authd_issue_service_token(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__IssueServiceTokenRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_arena_t *arena = fd_call_arena(call);
	fd_err_t *err = fd_call_err(call);
	int rc;
	if ((rc = check_service_name("service_name", req->service_name, err)) < 0 ||
	    (rc = check_password_given("secret", req->secret, false, err)) < 0 ||
	    (rc = check_audience("audience", req->audience, err)) < 0)
		return rc;
	if (req->n_scopes > 64)
		return fd_call_fail(call, FD_EINVAL, "scopes: at most 64");
	/* Every configured secret is compared, so timing says nothing of names. */
	unsigned char h[32];
	secret_hash(a, req->secret, strlen(req->secret), h);
	const service_secret_t *svc = NULL;
	for (int i = 0; i < a->nservices; i++) {
		bool name = strcmp(a->services[i].name, req->service_name) == 0;
		bool secret = sodium_memcmp(a->services[i].hash, h, 32) == 0;
		if (name && secret && req->secret[0])
			svc = &a->services[i];
	}
	if (!svc)
		return fd_call_fail(call, FD_EUNAUTH, "unknown service or wrong secret");
	fd_scopes_t want;
	if ((rc = check_scopes("scopes", req->scopes, req->n_scopes, &want, err)) < 0)
		return rc;
	if (!want)
		want = svc->scopes;
	if (want & ~svc->scopes)
		return fd_call_fail(call, FD_EPERM, "service %s may not have the scopes it asked for", svc->name);

	Frontdesk__V1__IssueServiceTokenResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	char *scopes = scopes_text(arena, want, "\"");
	r->scopes = scopes_list(arena, want, &r->n_scopes);
	int64_t now = fd_now_s(), ttl = a->cfg->access_ttl < 900 ? a->cfg->access_ttl : 900;
	char *claims = scopes ? fd_arena_printf(arena, "\"sub\":\"service:%s\",\"aud\":\"%s\",\"tenant\":0,"
	                                        "\"reseller\":0,\"role\":\"service\",\"scopes\":[%s]",
	                                        svc->name, req->audience, scopes)
	                      : NULL;
	if (!claims || !r->scopes)
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory for this request");
	r->token = keys_sign(a, arena, claims, now, now + ttl, err);
	if (!r->token)
		return -(int)err->code;
	r->expires_at = now + ttl;
	r->audience = fd_arena_strdup(arena, req->audience);
	if (!r->audience)
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory for this request");
	fd_info("service token issued to %s for %s", svc->name, req->audience);
	return 0;
}
