/* token_source.h - a service's own credential for the calls it makes: a
 * service token from authd's IssueServiceToken, kept and renewed before it
 * expires (when a third of its life is left), shared by every thread.
 *
 *   fd_token_source_t *ts = fd_token_source_new(&(fd_token_source_opts_t){
 *       .authd = ch, .service = "linesd", .secret = cfg->service_secret,
 *       .audience = "billingd" }, &err);
 *   char auth[FD_BEARER_MAX];
 *   if (fd_token_source_get(ts, auth, sizeof(auth), &err) == 0)
 *       ... fd_call_opts_t o = { .authorization = auth }; ...
 */
#ifndef FD_TOKEN_SOURCE_H
#define FD_TOKEN_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include "fd/rpc_client.h"
#include "fd/status.h"

#define FD_BEARER_MAX 2048

typedef struct fd_token_source fd_token_source_t;

typedef struct fd_token_source_opts {
	fd_channel_t *authd;          /* borrowed; outlives the source */
	const char *service;          /* this service's name, as authd knows it */
	const char *secret;           /* its configured secret (copied, wiped on free) */
	const char *audience;         /* the service it will call: "billingd" */
	int64_t timeout_ms;           /* per IssueServiceToken call; 0: 3000 */
	int64_t renew_before_s;       /* renew this long before expiry; 0: a third of its life */
} fd_token_source_opts_t;

fd_token_source_t *fd_token_source_new(const fd_token_source_opts_t *opts, fd_err_t *err) FD_MUSTCHECK;
void fd_token_source_free(fd_token_source_t *ts);

/* "Bearer <token>" into out. Asks authd only when there is no token yet or
 * a third of its lifetime (or renew_before_s) is left; if renewing fails while the old token is
 * still valid for 10 s more, the old one is given (and renewal retried on
 * the next call). Returns 0, or -code with err set. */
int fd_token_source_get(fd_token_source_t *ts, char *out, size_t outsz, fd_err_t *err) FD_MUSTCHECK;

/* When the token held now expires (Unix seconds; 0 when none). */
int64_t fd_token_source_expires_at(fd_token_source_t *ts);

#endif
