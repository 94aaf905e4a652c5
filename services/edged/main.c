/* main.c - edged: its settings, start-up in order (service channels and
 * tokens, signing keys, brands, the playback state, the HTTP daemon),
 * SIGTERM drain, and --node-secret for a streaming node's configuration. */
#include <grpc/grpc.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "brands.h"
#include "edged.h"
#include "http.h"
#include "net.h"
#include "playlist.h"
#include "state.h"
#include "token.h"
#include "fd/clock.h"
#include "fd/log.h"

#define ITEM(name, env, type, def, min, max, field, help) \
	{ name, env, type, def, min, max, offsetof(edged_config_t, field), help }

static const fd_cfg_item_t config_items[] = {
	ITEM("listen", "FRONTDESK_EDGED_LISTEN", FD_CFG_STR, "127.0.0.1:7180", 1, 255, listen,
	     "address to serve HTTP on (host:port, numeric)"),
	ITEM("threads", "FRONTDESK_EDGED_THREADS", FD_CFG_INT, "16", 1, 256, threads,
	     "workers: requests that call linesd or authd (player API, playlists, hand-off) served at once"),
	ITEM("io_threads", "FRONTDESK_EDGED_IO_THREADS", FD_CFG_INT, "2", 1, 64, io_threads,
	     "HTTP I/O threads (one epoll each); /healthz and the hooks are answered there"),
	ITEM("max_connections", "FRONTDESK_EDGED_MAX_CONNECTIONS", FD_CFG_INT, "20000", 16, 1000000, max_connections,
	     "open HTTP connections at most (idle keep-alive ones included)"),
	ITEM("connection_timeout", "FRONTDESK_EDGED_CONNECTION_TIMEOUT", FD_CFG_INT, "30", 1, 3600, connection_timeout,
	     "seconds an idle or slow connection is kept"),
	ITEM("service_secret", "FRONTDESK_EDGED_SERVICE_SECRET", FD_CFG_SECRET, "", 0, 1024, service_secret,
	     "edged's secret in authd's FRONTDESK_SERVICE_SECRETS (for its service tokens)"),
	ITEM("authd_target", "FRONTDESK_AUTHD_TARGET", FD_CFG_STR, "127.0.0.1:7101", 1, 255, authd_target,
	     "authd's address (host:port)"),
	ITEM("linesd_target", "FRONTDESK_LINESD_TARGET", FD_CFG_STR, "127.0.0.1:7103", 1, 255, linesd_target,
	     "linesd's address (host:port)"),
	ITEM("tls_ca", "FRONTDESK_TLS_CA", FD_CFG_STR, "", 0, 4096, tls_ca,
	     "PEM file of the roots trusted when calling the services; empty: plaintext"),
	ITEM("signing_keys", "FRONTDESK_EDGED_SIGNING_KEYS", FD_CFG_SECRET, "", 0, 1024, signing_keys,
	     "kid:64hex,... hand-off token keys; the first signs, all verify (rotation with an overlap)"),
	ITEM("platform_hosts", "FRONTDESK_PLATFORM_HOSTS", FD_CFG_STR, "localhost,127.0.0.1", 0, 4096, platform_hosts,
	     "the platform's own host names (comma separated); they serve brands through /t/{slug}/"),
	ITEM("trusted_proxies", "FRONTDESK_EDGED_TRUSTED_PROXIES", FD_CFG_STR, "", 0, 4096, trusted_proxies,
	     "addresses or CIDRs (comma separated) whose X-Forwarded-For and X-Forwarded-Proto are believed"),
	ITEM("token_ttl", "FRONTDESK_EDGED_TOKEN_TTL", FD_CFG_INT, "43200", 5, 7 * 86400, token_ttl,
	     "seconds a hand-off token stays valid (the session's liveness is checked on every hook call)"),
	ITEM("hosts_refresh_ms", "FRONTDESK_EDGED_HOSTS_REFRESH_MS", FD_CFG_INT, "2000", 100, 600000, hosts_refresh_ms,
	     "brand host names are re-read from authd this often"),
	ITEM("report_ms", "FRONTDESK_EDGED_REPORT_MS", FD_CFG_INT, "1000", 50, 60000, report_ms,
	     "sessions the hooks saw are reported to linesd (kept alive) this often"),
	ITEM("playlist_cache_mb", "FRONTDESK_EDGED_PLAYLIST_CACHE_MB", FD_CFG_INT, "64", 0, 65536, playlist_cache_mb,
	     "memory for cached playlists and channel lists; 0: no cache"),
	ITEM("rpc_timeout_ms", "FRONTDESK_EDGED_RPC_TIMEOUT_MS", FD_CFG_INT, "3000", 100, 60000, rpc_timeout_ms,
	     "deadline of each call to linesd or authd"),
	ITEM("timezone", "FRONTDESK_EDGED_TIMEZONE", FD_CFG_STR, "UTC", 1, 64, timezone,
	     "server_info.timezone; times are written in UTC"),
	ITEM("log_level", "FRONTDESK_LOG_LEVEL", FD_CFG_STR, "info", 1, 16, log_level, "debug, info, warn or error"),
	ITEM("shutdown_grace_ms", "FRONTDESK_SHUTDOWN_GRACE_MS", FD_CFG_INT, "10000", 0, 600000, shutdown_grace_ms,
	     "on SIGTERM, requests in flight get this long to finish"),
	ITEM("test_clock_offset_ms", "FRONTDESK_TEST_CLOCK_OFFSET_MS", FD_CFG_INT, "0", -(1LL << 40), 1LL << 40,
	     test_clock_offset_ms, "tests only: this process's clock runs this far off"),
	{ 0 },
};

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: edged [--print-config | --list-env | --node-secret NODE_ID | --help]\n"
	        "  Serves frontdesk's HTTP edge: the player API, playlists, the hand-off to\n"
	        "  streaming nodes and their auth hooks. Settings come from FRONTDESK_* variables;\n"
	        "  --print-config prints them (secrets masked), --list-env lists their names,\n"
	        "  --node-secret prints the secret a node's configuration needs (from the\n"
	        "  current signing key, FRONTDESK_EDGED_SIGNING_KEYS).\n");
}

static int print_node_secret(const edged_config_t *cfg, const char *id)
{
	char *end;
	long long node = strtoll(id, &end, 10);
	if (*end || node <= 0) {
		fprintf(stderr, "edged: --node-secret: \"%s\" is not a node id (a positive integer)\n", id);
		return 2;
	}
	fd_err_t err = { 0 };
	struct edge_keys *keys = NULL;
	if (edge_keys_parse(cfg->signing_keys, &keys, &err) < 0) {
		fprintf(stderr, "edged: bad configuration: %s\n", err.msg);
		return 2;
	}
	char hex[EDGE_NODE_SECRET_LEN + 1];
	if (edge_node_secret(keys, node, hex) < 0) {
		fprintf(stderr, "edged: --node-secret: cannot derive the secret\n");
		edge_keys_free(keys);
		return 1;
	}
	printf("%s\n", hex);
	sodium_memzero(hex, sizeof(hex));
	edge_keys_free(keys);
	return 0;
}

static int start(edged_t *e, fd_err_t *err)
{
	const edged_config_t *cfg = e->cfg;
	int rc;
	if (strlen(cfg->service_secret) < 32)
		return fd_err_set(err, FD_EINVAL, "FRONTDESK_EDGED_SERVICE_SECRET: required, at least 32 characters "
		                  "(edged's entry in authd's FRONTDESK_SERVICE_SECRETS)");
	if ((rc = edge_keys_parse(cfg->signing_keys, &e->keys, err)) < 0)
		return rc;
	if (!(e->proxies = net_proxies_parse(cfg->trusted_proxies, err)))
		return -FD_EINVAL;
	const char *ca = cfg->tls_ca[0] ? cfg->tls_ca : NULL;
	fd_channel_opts_t ao = { .target = cfg->authd_target, .tls_ca = ca };
	fd_channel_opts_t lo = { .target = cfg->linesd_target, .tls_ca = ca };
	if (!(e->authd = fd_channel_new(&ao, err)) || !(e->linesd = fd_channel_new(&lo, err)))
		return -FD_EINVAL;
	fd_token_source_opts_t lt = { .authd = e->authd, .service = "edged", .secret = cfg->service_secret,
		                          .audience = "linesd" };
	fd_token_source_opts_t at = { .authd = e->authd, .service = "edged", .secret = cfg->service_secret,
		                          .audience = "authd" };
	if (!(e->linesd_token = fd_token_source_new(&lt, err)) || !(e->authd_token = fd_token_source_new(&at, err)))
		return -FD_EINVAL;
	if ((rc = brands_start(e, err)) < 0 || (rc = playlists_init(e, err)) < 0 || (rc = state_start(e, err)) < 0)
		return rc;
	return http_start(e, err);
}

static void stop(edged_t *e)
{
	http_stop(e, e->cfg->shutdown_grace_ms);
	state_stop(e);
	playlists_fini(e);
	brands_stop(e);
	fd_token_source_free(e->authd_token);
	fd_token_source_free(e->linesd_token);
	fd_channel_free(e->linesd);
	fd_channel_free(e->authd);
	net_proxies_free(e->proxies);
	edge_keys_free(e->keys);
}

int main(int argc, char **argv)
{
	bool print_config = false;
	const char *node_secret = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--print-config") == 0) {
			print_config = true;
		} else if (strcmp(argv[i], "--list-env") == 0) {
			fd_config_list_env(config_items, stdout);
			return 0;
		} else if (strcmp(argv[i], "--node-secret") == 0 && i + 1 < argc) {
			node_secret = argv[++i];
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "edged: unknown argument \"%s\"\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "edged: libsodium failed to start\n");
		return 1;
	}
	edged_config_t cfg = { 0 };
	edged_t e = { .cfg = &cfg };
	fd_err_t err = { 0 };
	int status = 2;
	if (fd_config_load(config_items, &cfg, &err) < 0) {
		fprintf(stderr, "edged: bad configuration: %s\n", err.msg);
		goto out;
	}
	fd_clock_set_offset_ms(cfg.test_clock_offset_ms);
	int level = fd_log_level_parse(cfg.log_level);
	if (level < 0) {
		fprintf(stderr, "edged: bad configuration: FRONTDESK_LOG_LEVEL: \"%s\" is not one of "
		        "debug, info, warn, error\n", cfg.log_level);
		goto out;
	}
	if (print_config) {
		fd_config_print(config_items, &cfg, stdout);
		status = 0;
		goto out;
	}
	if (node_secret) {
		status = print_node_secret(&cfg, node_secret);
		goto out;
	}
	fd_log_init("edged", (fd_log_level_t)level);

	/* Signals are taken by sigwait below: block them before any thread starts. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	grpc_init();
	atomic_store(&e.linesd_up, true);
	status = 1;
	if (start(&e, &err) < 0) {
		fd_error("start-up failed: %s", err.msg);
		goto stop;
	}
	fd_info("serving HTTP on %s (%" PRId64 " I/O threads, %" PRId64 " workers)", cfg.listen, cfg.io_threads,
	        cfg.threads);
	int sig = 0;
	sigwait(&sigs, &sig);
	fd_info("%s received: stopping (grace %" PRId64 " ms)", sig == SIGINT ? "SIGINT" : "SIGTERM",
	        cfg.shutdown_grace_ms);
	status = 0;
stop:
	stop(&e);
	grpc_shutdown();
out:
	fd_config_free(config_items, &cfg);
	return status;
}
