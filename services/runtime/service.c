/* service.c - the shared main(): flags, config, pool, server, health ticker, signals. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <grpc/grpc.h>
#include <sodium.h>
#include "fd/auth.h"
#include "fd/clock.h"
#include "fd/db.h"
#include "fd/log.h"
#include "fd/service.h"

#define HEALTH_INTERVAL_MS 1000

struct fd_service {
	const fd_service_spec_t *spec;
	void *config;                  /* the service's config struct */
	fd_service_config_t *common;   /* inside config */
	fd_db_t *db;
	fd_verifier_t *verifier;
	fd_server_t *server;
	void *state;
	unsigned char hash_key[32];    /* FRONTDESK_SECRET_HASH_KEY; wiped at exit */

	pthread_t ticker;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping;
};

const void *fd_service_config(const fd_service_t *svc)
{
	return svc->config;
}

struct fd_db *fd_service_db(fd_service_t *svc)
{
	return svc->db;
}

void *fd_service_state(fd_service_t *svc)
{
	return svc->state;
}

const unsigned char *fd_service_hash_key(const fd_service_t *svc)
{
	return svc->hash_key;
}

fd_verifier_t *fd_service_verifier(fd_service_t *svc)
{
	return svc->verifier;
}

int fd_call_caller(fd_call_t *call, fd_caller_t *out)
{
	fd_service_t *svc = fd_call_service(call);
	int rc = fd_verify_bearer(svc->verifier, fd_call_metadata(call, "authorization"),
	                          fd_call_deadline_ms(call), out, fd_call_err(call));
	if (rc == 0)
		fd_call_set_log_tenant(call, out->tenant_id);
	return rc;
}

int fd_call_tenant(fd_call_t *call, const fd_caller_t *c, int64_t requested, int64_t *tenant)
{
	fd_service_t *svc = fd_call_service(call);
	int rc = fd_caller_tenant(c, requested, tenant, fd_call_err(call));
	if (rc < 0 || *tenant == c->tenant_id)
		return rc;
	bool active;
	if ((rc = fd_verifier_tenant(svc->verifier, *tenant, fd_call_deadline_ms(call), &active,
	                             fd_call_err(call))) < 0)
		return rc;
	if (!active && c->role == FD_ROLE_SERVICE)
		return fd_call_fail(call, FD_EPRECOND, "tenant %lld is suspended", (long long)*tenant);
	fd_call_set_log_tenant(call, *tenant);
	return 0;
}

/* Every second: is the database reachable? Health follows. */
static void *health_ticker(void *arg)
{
	fd_service_t *svc = arg;
	pthread_mutex_lock(&svc->mu);
	while (!svc->stopping) {
		pthread_mutex_unlock(&svc->mu);
		bool ok = fd_db_ping(svc->db);
		fd_server_set_serving(svc->server, ok);
		pthread_mutex_lock(&svc->mu);
		struct timespec ts = fd_real_after(HEALTH_INTERVAL_MS);
		if (!svc->stopping)
			pthread_cond_timedwait(&svc->cv, &svc->mu, &ts);
	}
	pthread_mutex_unlock(&svc->mu);
	return NULL;
}

/* Is the host part of "host:port" a loopback address? */
static bool listen_is_loopback(const char *listen)
{
	const char *colon = strrchr(listen, ':');
	size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
	if (n == 9 && strncmp(listen, "localhost", 9) == 0)
		return true;
	if (n == 5 && strncmp(listen, "[::1]", 5) == 0)
		return true;
	return n > 4 && strncmp(listen, "127.", 4) == 0;
}

static void usage(const char *name, FILE *out)
{
	fprintf(out,
	        "usage: %s [--print-config | --list-env | --help]\n"
	        "  Serves frontdesk's %s over gRPC. Settings come from FRONTDESK_* variables;\n"
	        "  --print-config prints them (secrets masked), --list-env lists their names.\n",
	        name, name);
}

int fd_service_main(int argc, char **argv, const fd_service_spec_t *spec)
{
	const fd_cfg_item_t *items = spec->config;
	bool print_config = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--print-config") == 0) {
			print_config = true;
		} else if (strcmp(argv[i], "--list-env") == 0) {
			fd_config_list_env(items, stdout);
			return 0;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(spec->name, stdout);
			return 0;
		} else {
			fprintf(stderr, "%s: unknown argument \"%s\"\n", spec->name, argv[i]);
			usage(spec->name, stderr);
			return 2;
		}
	}

	fd_service_t svc = { .spec = spec };
	fd_err_t err = { 0 };
	int status = 1;
	svc.config = calloc(1, spec->config_size);
	if (!svc.config)
		return 1;
	svc.common = (fd_service_config_t *)((char *)svc.config + spec->common_offset);
	if (fd_config_load(items, svc.config, &err) < 0) {
		fprintf(stderr, "%s: bad configuration: %s\n", spec->name, err.msg);
		status = 2;
		goto out_config;
	}
	fd_clock_set_offset_ms(svc.common->test_clock_offset_ms);
	int level = fd_log_level_parse(svc.common->log_level);
	if (level < 0) {
		fprintf(stderr, "%s: bad configuration: FRONTDESK_LOG_LEVEL: \"%s\" is not one of "
		        "debug, info, warn, error\n", spec->name, svc.common->log_level);
		status = 2;
		goto out_config;
	}
	if (!svc.common->tls_cert[0] && !svc.common->allow_plaintext &&
	    !listen_is_loopback(svc.common->listen)) {
		const char *var = "the listen address";
		for (const fd_cfg_item_t *it = items; it->name; it++)
			if (it->offset == spec->common_offset + offsetof(fd_service_config_t, listen))
				var = it->env;
		fprintf(stderr, "%s: bad configuration: %s: \"%s\" is not a loopback "
		        "address and FRONTDESK_TLS_CERT is empty; set TLS, or FRONTDESK_ALLOW_PLAINTEXT=true "
		        "on a private network\n", spec->name, var, svc.common->listen);
		status = 2;
		goto out_config;
	}
	unsigned char hash_key[32];
	if (!print_config &&
	    fd_hex_key32(svc.common->secret_hash_key, "FRONTDESK_SECRET_HASH_KEY", hash_key, &err) < 0) {
		fprintf(stderr, "%s: bad configuration: %s\n", spec->name, err.msg);
		status = 2;
		goto out_config;
	}
	if (print_config) {
		fd_config_print(items, svc.config, stdout);
		status = 0;
		goto out_config;
	}
	fd_log_init(spec->name, (fd_log_level_t)level);

	/* Signals are taken by sigwait below, never by a handler in another thread:
	 * block them before any thread (gRPC's included) starts. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	grpc_init();

	fd_db_opts_t dbo = {
		.conninfo = svc.common->database_url,
		.user = svc.common->db_user,
		.password = svc.common->db_password,
		.application_name = spec->name,
		.pool_size = (int)svc.common->db_pool,
		.prepared = svc.common->db_prepared,
		.statement_timeout_ms = (int)svc.common->db_statement_timeout_ms,
	};
	svc.db = fd_db_open(&dbo, &err);
	if (!svc.db) {
		fd_error("database: %s", err.msg);
		goto out_grpc;
	}
	pthread_mutex_init(&svc.mu, NULL);
	pthread_cond_init(&svc.cv, NULL);
	fd_verifier_opts_t vo = {
		.db = svc.db,
		.hash_key = hash_key,
		.issuer = svc.common->token_issuer,
		.audience = spec->name,
		.skew_seconds = svc.common->clock_skew,
		.status_ttl_ms = svc.common->auth_cache_ms,
	};
	svc.verifier = fd_verifier_new(&vo, &err);
	memcpy(svc.hash_key, hash_key, sizeof(hash_key));
	sodium_memzero(hash_key, sizeof(hash_key));
	if (!svc.verifier) {
		fd_error("start-up failed: %s", err.msg);
		goto out_db;
	}
	if (spec->init && spec->init(&svc, &svc.state, &err) < 0) {
		fd_error("start-up failed: %s", err.msg);
		goto out_db;
	}

	fd_server_opts_t so = {
		.listen = svc.common->listen,
		.threads = (int)svc.common->threads,
		.max_message_bytes = (size_t)svc.common->max_message_bytes,
		.shutdown_grace_ms = svc.common->shutdown_grace_ms,
		.tls_cert = svc.common->tls_cert,
		.tls_key = svc.common->tls_key,
		.tls_client_ca = svc.common->tls_client_ca,
	};
	svc.server = fd_server_new(&so, &err);
	if (!svc.server || fd_server_add_service(svc.server, spec->desc, spec->methods, &svc, &err) < 0 ||
	    fd_server_start(svc.server, &err) < 0) {
		fd_error("start-up failed: %s", err.msg);
		goto out_server;
	}
	fd_server_set_serving(svc.server, fd_db_ping(svc.db));
	if (pthread_create(&svc.ticker, NULL, health_ticker, &svc) != 0) {
		fd_error("start-up failed: cannot start the health thread");
		goto out_server;
	}

	int sig = 0;
	sigwait(&sigs, &sig);
	fd_info("%s received: stopping (grace %lld ms)", sig == SIGINT ? "SIGINT" : "SIGTERM",
	        (long long)svc.common->shutdown_grace_ms);
	pthread_mutex_lock(&svc.mu);
	svc.stopping = true;
	pthread_cond_broadcast(&svc.cv);
	pthread_mutex_unlock(&svc.mu);
	pthread_join(svc.ticker, NULL);
	status = 0;

out_server:
	fd_server_free(svc.server); /* graceful: in-flight calls finish first */
	if (spec->fini && svc.state)
		spec->fini(&svc, svc.state);
out_db:
	fd_verifier_free(svc.verifier);
	fd_db_close(svc.db);
	pthread_mutex_destroy(&svc.mu);
	pthread_cond_destroy(&svc.cv);
out_grpc:
	grpc_shutdown();
out_config:
	sodium_memzero(svc.hash_key, sizeof(svc.hash_key));
	fd_config_free(items, svc.config);
	free(svc.config);
	return status;
}
