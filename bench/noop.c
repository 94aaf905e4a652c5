/* noop.c - bench_noop: the frontdesk runtime serving one no-op method, so the
 * benchmark measures the runtime's whole path against a bare gRPC core echo.
 *   bench_noop --listen 127.0.0.1:PORT --threads N [--queues Q] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grpc/grpc.h>
#include "fd/log.h"
#include "fd/rpc.h"
#include "frontdesk/bench/v1/bench.pb-c.h"

static int noop(fd_call_t *call, const ProtobufCMessage *req_, ProtobufCMessage **resp)
{
	const Frontdesk__Bench__V1__NoopRequest *req = (const void *)req_;
	Frontdesk__Bench__V1__NoopResponse *r = fd_arena_alloc(fd_call_arena(call), sizeof(*r));
	if (!r)
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory");
	frontdesk__bench__v1__noop_response__init(r);
	r->text = req->text;
	*resp = &r->base;
	return 0;
}

static const fd_method_impl_t methods[] = {
	{ .name = "Noop", .unary = noop },
	{ 0 },
};

int main(int argc, char **argv)
{
	const char *listen = "127.0.0.1:0";
	int threads = 2, queues = 0;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--listen") == 0)
			listen = argv[i + 1];
		else if (strcmp(argv[i], "--threads") == 0)
			threads = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--queues") == 0)
			queues = atoi(argv[i + 1]);
	}
	fd_log_init("bench_noop", FD_LOG_WARN);
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	grpc_init();
	fd_err_t err = { 0 };
	fd_server_opts_t o = { .listen = listen, .threads = threads, .queues = queues, .shutdown_grace_ms = 1000 };
	fd_server_t *srv = fd_server_new(&o, &err);
	if (!srv || fd_server_add_service(srv, &frontdesk__bench__v1__bench_service__descriptor,
	                                  methods, NULL, &err) < 0 ||
	    fd_server_start(srv, &err) < 0) {
		fprintf(stderr, "bench_noop: %s\n", err.msg);
		fd_server_free(srv);
		grpc_shutdown();
		return 1;
	}
	fprintf(stderr, "listening on port %d\n", fd_server_port(srv));
	int sig;
	sigwait(&sigs, &sig);
	fd_server_free(srv);
	grpc_shutdown();
	return 0;
}
