/* test_token_source.c - a service's token source against a real authd: it
 * gets a service token, keeps it while it is fresh, renews it when asked to,
 * keeps serving the old one while authd is down, refuses a wrong secret; and
 * the token it gets is what the verifier of its audience accepts, with
 * exactly the service's scopes. */
#include <grpc/grpc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "dbtest.h"
#include "fd/auth.h"
#include "fd/token_source.h"
#include "test.h"

#define HASH_HEX "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
#define SECRET "linesd-secret-0123456789-abcdefghij"

static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t n = sizeof(a);
	bind(s, (struct sockaddr *)&a, n);
	getsockname(s, (struct sockaddr *)&a, &n);
	close(s);
	return ntohs(a.sin_port);
}

static pid_t start_authd(const dbtest_t *t, const char *listen)
{
	char bin[1200], url[800];
	snprintf(bin, sizeof(bin), "%s/services/authd/authd", getenv("FD_BUILD_DIR") ? getenv("FD_BUILD_DIR") : "build");
	snprintf(url, sizeof(url), "%s", dbtest_url(t, "frontdesk_authd"));
	pid_t pid = fork();
	if (pid == 0) {
		setenv("FRONTDESK_DATABASE_URL", url, 1);
		setenv("FRONTDESK_AUTHD_LISTEN", listen, 1);
		setenv("FRONTDESK_AUTHD_THREADS", "2", 1);
		setenv("FRONTDESK_AUTHD_DB_POOL", "2", 1);
		setenv("FRONTDESK_SECRET_HASH_KEY", HASH_HEX, 1);
		setenv("FRONTDESK_KEY_ENCRYPTION_KEY", "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3", 1);
		setenv("FRONTDESK_SERVICE_SECRETS", "linesd=" SECRET, 1);
		setenv("FRONTDESK_ACCESS_TOKEN_TTL", "60", 1);
		setenv("FRONTDESK_PWHASH_OPSLIMIT", "1", 1);
		setenv("FRONTDESK_PWHASH_MEMLIMIT_KIB", "8192", 1);
		setenv("FRONTDESK_LOG_LEVEL", "warn", 1);
		execl(bin, bin, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static int stop(pid_t pid)
{
	int st = 0;
	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void)
{
	dbtest_t t;
	int rc = dbtest_init(&t, "tokensrc");
	if (rc)
		return rc == DBTEST_SKIP ? DBTEST_SKIP : 1;
	if (dbtest_migrate(&t) < 0) {
		dbtest_done(&t);
		return 1;
	}
	grpc_init();
	char listen[64];
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", free_port());
	pid_t authd = start_authd(&t, listen);
	fd_err_t err = { 0 };
	fd_channel_t *ch = fd_channel_new(&(fd_channel_opts_t){ .target = listen }, &err);
	fd_token_source_t *ts = fd_token_source_new(&(fd_token_source_opts_t){
		.authd = ch, .service = "linesd", .secret = SECRET, .audience = "billingd" }, &err);
	fd_token_source_t *renewing = fd_token_source_new(&(fd_token_source_opts_t){
		.authd = ch, .service = "linesd", .secret = SECRET, .audience = "billingd", .renew_before_s = 60 }, &err);
	fd_token_source_t *wrong = fd_token_source_new(&(fd_token_source_opts_t){
		.authd = ch, .service = "linesd", .secret = SECRET "x", .audience = "billingd" }, &err);
	CHECK(ch && ts && renewing && wrong, "setup: %s", err.msg);

	char a[FD_BEARER_MAX], b[FD_BEARER_MAX];
	rc = -1;
	for (int i = 0; i < 100 && rc < 0; i++) {   /* authd starting */
		rc = fd_token_source_get(ts, a, sizeof(a), &err);
		if (rc < 0)
			usleep(100 * 1000);
	}
	CHECK(rc == 0 && strncmp(a, "Bearer ey", 9) == 0, "first token: %d %s", rc, err.msg);
	int64_t now = time(NULL), exp = fd_token_source_expires_at(ts);
	CHECK(exp > now + 50 && exp <= now + 61, "expires in about 60 s: %lld", (long long)(exp - now));
	CHECK(fd_token_source_get(ts, b, sizeof(b), &err) == 0 && strcmp(a, b) == 0, "fresh token kept");

	/* The token is what billingd's verifier accepts: linesd's scopes only. */
	fd_db_opts_t dbo = { .conninfo = dbtest_url(&t, "frontdesk_billingd"), .pool_size = 1, .prepared = true };
	fd_db_t *db = fd_db_open(&dbo, &err);
	unsigned char hk[32];
	CHECK(fd_hex_key32(HASH_HEX, "k", hk, &err) == 0, "hash key");
	fd_verifier_t *v = fd_verifier_new(&(fd_verifier_opts_t){ .db = db, .hash_key = hk, .issuer = "frontdesk",
		.audience = "billingd", .skew_seconds = 5, .status_ttl_ms = 1000 }, &err);
	fd_caller_t c;
	CHECK(v && fd_verify_bearer(v, a, 0, &c, &err) == 0, "billingd accepts it: %s", err.msg);
	CHECK(c.kind == FD_CRED_SERVICE_TOKEN && strcmp(c.service, "linesd") == 0 &&
	      c.scopes == (FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_CREDITS_CHARGE) |
	                   FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_CREDITS_REFUND) | FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_ROUTE) |
	                   FD_SCOPE(FRONTDESK__V1__SCOPE__SCOPE_NODES_READ)),
	      "linesd's scopes");
	fd_verifier_t *other = fd_verifier_new(&(fd_verifier_opts_t){ .db = db, .hash_key = hk, .issuer = "frontdesk",
		.audience = "routerd", .skew_seconds = 5, .status_ttl_ms = 1000 }, &err);
	CHECK(other && fd_verify_bearer(other, a, 0, &c, &err) == -FD_EUNAUTH, "routerd does not");

	/* Renewal; and the old token is kept while authd is away. */
	CHECK(fd_token_source_get(renewing, a, sizeof(a), &err) == 0, "renewing 1: %s", err.msg);
	CHECK(fd_token_source_get(renewing, b, sizeof(b), &err) == 0 && strcmp(a, b) != 0, "renewed: a new token");
	CHECK(fd_token_source_get(wrong, a, sizeof(a), &err) == -FD_EUNAUTH, "wrong secret: %s", err.msg);
	CHECK(stop(authd) == 0, "authd stopped cleanly");
	CHECK(fd_token_source_get(renewing, a, sizeof(a), &err) == 0 && strcmp(a, b) == 0,
	      "authd down: the still-valid token is kept (%s)", err.msg);

	fd_verifier_free(v);
	fd_verifier_free(other);
	fd_db_close(db);
	fd_token_source_free(ts);
	fd_token_source_free(renewing);
	fd_token_source_free(wrong);
	fd_channel_free(ch);
	grpc_shutdown();
	dbtest_done(&t);
	return test_summary();
}
