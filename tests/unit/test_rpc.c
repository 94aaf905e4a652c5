/* test_rpc.c - the runtime's server and client together, in one process over
 * loopback: unary, server streaming (Health/Watch), bidirectional streaming
 * (reflection), retries of UNAVAILABLE, and ending open streams at shutdown. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <grpc/grpc.h>
#include "fd/log.h"
#include "fd/rpc.h"
#include "fd/rpc_client.h"
#include "frontdesk/bench/v1/bench.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "test.h"

static int noop(fd_call_t *call, const ProtobufCMessage *req_, ProtobufCMessage **resp)
{
	const Frontdesk__Bench__V1__NoopRequest *req = (const void *)req_;
	if (strcmp(req->text, "fail") == 0)
		return fd_call_fail(call, FD_EPRECOND, "text: asked to fail");
	Frontdesk__Bench__V1__NoopResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->text = fd_arena_printf(fd_call_arena(call), "echo:%s", req->text);
	return r->text ? 0 : -FD_EEXHAUSTED;
}

static const fd_method_impl_t methods[] = { { .name = "Noop", .unary = noop }, { 0 } };

static fd_server_t *start_server(const char *listen)
{
	fd_err_t err = { 0 };
	fd_server_opts_t o = { .listen = listen, .threads = 2, .shutdown_grace_ms = 2000 };
	fd_server_t *srv = fd_server_new(&o, &err);
	if (!srv || fd_server_add_service(srv, &frontdesk__bench__v1__bench_service__descriptor,
	                                  methods, NULL, &err) < 0 ||
	    fd_server_start(srv, &err) < 0) {
		fprintf(stderr, "server: %s\n", err.msg);
		fd_server_free(srv);
		return NULL;
	}
	return srv;
}

static int unary_noop(fd_channel_t *ch, const char *text, bool idempotent, int64_t timeout_ms,
                      char *out, size_t outlen, fd_err_t *err)
{
	Frontdesk__Bench__V1__NoopRequest req = FRONTDESK__BENCH__V1__NOOP_REQUEST__INIT;
	req.text = (char *)text;
	fd_arena_t a;
	fd_arena_init(&a, 1 << 20);
	ProtobufCMessage *resp = NULL;
	fd_call_opts_t o = { .timeout_ms = timeout_ms, .idempotent = idempotent };
	int rc = fd_channel_unary(ch, "/frontdesk.bench.v1.BenchService/Noop", &req.base,
	                          &frontdesk__bench__v1__noop_response__descriptor, &a, &resp, &o, err);
	if (rc == 0)
		snprintf(out, outlen, "%s", ((Frontdesk__Bench__V1__NoopResponse *)resp)->text);
	fd_arena_free(&a);
	return rc;
}

static void test_unary(fd_channel_t *ch)
{
	char out[64] = "";
	fd_err_t err = { 0 };
	int rc = unary_noop(ch, "hello", false, 2000, out, sizeof(out), &err);
	CHECK(rc == 0 && strcmp(out, "echo:hello") == 0, "unary: rc %d %s (%s)", rc, out, err.msg);
	rc = unary_noop(ch, "fail", false, 2000, out, sizeof(out), &err);
	CHECK(rc == -FD_EPRECOND && strcmp(err.msg, "text: asked to fail") == 0,
	      "error status and message travel: rc %d %s", rc, err.msg);
}

static int recv_health(fd_client_stream_t *s, int64_t timeout_ms)
{
	fd_arena_t a;
	fd_arena_init(&a, 1 << 16);
	ProtobufCMessage *m = NULL;
	fd_err_t err = { 0 };
	int rc = fd_client_stream_recv(s, &grpc__health__v1__health_check_response__descriptor, &a, &m,
	                               timeout_ms, &err);
	int st = rc == 1 ? (int)((Grpc__Health__V1__HealthCheckResponse *)m)->status : -100 + rc;
	fd_arena_free(&a);
	return st;
}

static void test_server_streaming(fd_server_t *srv, fd_channel_t *ch)
{
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	fd_err_t err = { 0 };
	fd_client_stream_t *s = fd_channel_stream(ch, "/grpc.health.v1.Health/Watch", &req.base,
	                                          NULL, &err);
	CHECK(s != NULL, "open watch: %s", err.msg);
	if (!s)
		return;
	CHECK(recv_health(s, 2000) == 1, "first status SERVING");
	fd_server_set_serving(srv, false);
	CHECK(recv_health(s, 2000) == 2, "then NOT_SERVING");
	fd_server_set_serving(srv, true);
	CHECK(recv_health(s, 2000) == 1, "then SERVING again");
	CHECK(recv_health(s, 100) == -100 - FD_EDEADLINE, "nothing more without a change");
	fd_client_stream_free(s); /* cancels: the server's closed() drops the watcher */
}

static void test_bidi(fd_channel_t *ch)
{
	fd_err_t err = { 0 };
	fd_client_stream_t *s = fd_channel_stream(
		ch, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", NULL, NULL, &err);
	CHECK(s != NULL, "open reflection: %s", err.msg);
	if (!s)
		return;
	for (int round = 0; round < 3; round++) {
		Grpc__Reflection__V1__ServerReflectionRequest req =
			GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
		req.message_request_case =
			GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
		req.file_containing_symbol = "frontdesk.bench.v1.NoopRequest";
		CHECK(fd_client_stream_send(s, &req.base, &err) == 0, "send: %s", err.msg);
		fd_arena_t a;
		fd_arena_init(&a, 1 << 20);
		ProtobufCMessage *m = NULL;
		int rc = fd_client_stream_recv(
			s, &grpc__reflection__v1__server_reflection_response__descriptor, &a, &m, 2000, &err);
		CHECK(rc == 1, "recv %d: rc %d %s", round, rc, err.msg);
		if (rc == 1) {
			Grpc__Reflection__V1__ServerReflectionResponse *r = (void *)m;
			CHECK(r->message_response_case ==
			              GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE &&
			              r->file_descriptor_response->n_file_descriptor_proto == 1,
			      "one file for the bench proto");
		}
		fd_arena_free(&a);
	}
	CHECK(fd_client_stream_close_send(s, &err) == 0, "close send");
	fd_arena_t a;
	fd_arena_init(&a, 1 << 16);
	ProtobufCMessage *m = NULL;
	int rc = fd_client_stream_recv(s, &grpc__reflection__v1__server_reflection_response__descriptor,
	                               &a, &m, 2000, &err);
	CHECK(rc == 0, "half-close ends the stream with OK: rc %d %s", rc, err.msg);
	fd_arena_free(&a);
	fd_client_stream_free(s);
}

typedef struct late {
	char listen[64];
	fd_server_t *srv;
} late_t;

static void *start_late(void *arg)
{
	late_t *l = arg;
	struct timespec ts = { 0, 400 * 1000000 };
	nanosleep(&ts, NULL);
	l->srv = start_server(l->listen);
	return NULL;
}

static void test_retry(int port)
{
	char target[64], out[64] = "";
	snprintf(target, sizeof(target), "127.0.0.1:%d", port);
	fd_err_t err = { 0 };
	fd_channel_opts_t co = { .target = target };
	fd_channel_t *ch = fd_channel_new(&co, &err);

	/* Not idempotent: no retry, UNAVAILABLE at once. */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = unary_noop(ch, "x", false, 3000, out, sizeof(out), &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	CHECK(rc == -FD_EUNAVAIL && ms < 1500, "no server: rc %d after %.0f ms", rc, ms);

	/* Idempotent: retried until the server appears. */
	late_t l = { .srv = NULL };
	snprintf(l.listen, sizeof(l.listen), "%s", target);
	pthread_t th;
	pthread_create(&th, NULL, start_late, &l);
	rc = unary_noop(ch, "again", true, 5000, out, sizeof(out), &err);
	pthread_join(th, NULL);
	CHECK(rc == 0 && strcmp(out, "echo:again") == 0, "retried until served: rc %d %s", rc, err.msg);

	/* A stream open at shutdown ends with UNAVAILABLE, and shutdown is prompt. */
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	fd_client_stream_t *s = fd_channel_stream(ch, "/grpc.health.v1.Health/Watch", &req.base,
	                                          NULL, &err);
	CHECK(s && recv_health(s, 2000) == 1, "watch before shutdown");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	fd_server_free(l.srv);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	CHECK(ms < 1000, "shutdown with an open stream took %.0f ms", ms);
	CHECK(s && recv_health(s, 2000) == -100 - FD_EUNAVAIL, "stream ended with UNAVAILABLE");
	fd_client_stream_free(s);
	fd_channel_free(ch);
}

int main(void)
{
	fd_log_init("test_rpc", FD_LOG_WARN);
	grpc_init();
	fd_server_t *srv = start_server("127.0.0.1:0");
	CHECK(srv != NULL, "server starts");
	if (srv) {
		char target[64];
		snprintf(target, sizeof(target), "127.0.0.1:%d", fd_server_port(srv));
		fd_err_t err = { 0 };
		fd_channel_opts_t co = { .target = target };
		fd_channel_t *ch = fd_channel_new(&co, &err);
		test_unary(ch);
		test_server_streaming(srv, ch);
		test_bidi(ch);
		fd_channel_free(ch);
		fd_server_free(srv);
	}
	/* A port that was free a moment ago. */
	fd_server_t *probe = start_server("127.0.0.1:0");
	int port = probe ? fd_server_port(probe) : 0;
	fd_server_free(probe);
	if (port)
		test_retry(port);
	grpc_shutdown();
	return test_summary();
}
