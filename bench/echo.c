/* echo.c - bench_echo: the baseline, a bare echo server straight on gRPC core
 * (no runtime, no decoding). One completion queue per thread.
 *   bench_echo --listen 127.0.0.1:PORT --threads N */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#define POSTED 64

typedef struct call {
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_byte_buffer *payload;
	int cancelled;
	int phase; /* 0 = waiting for a call, 1 = replying */
	grpc_completion_queue *cq;
} call_t;

static grpc_server *server;
static void *method;

static void post(grpc_completion_queue *cq)
{
	call_t *c = calloc(1, sizeof(*c));
	c->cq = cq;
	grpc_metadata_array_init(&c->md);
	grpc_server_request_registered_call(server, method, &c->call, &c->deadline, &c->md,
	                                    &c->payload, cq, cq, c);
}

static void *worker(void *arg)
{
	grpc_completion_queue *cq = arg;
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		call_t *c = ev.tag;
		if (!c)
			continue;
		if (c->phase == 0 && ev.success) {
			post(cq);
			grpc_slice details = grpc_empty_slice();
			grpc_op ops[4];
			memset(ops, 0, sizeof(ops));
			ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
			ops[1].op = GRPC_OP_SEND_MESSAGE;
			ops[1].data.send_message.send_message = c->payload;
			ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
			ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
			ops[2].data.send_status_from_server.status_details = &details;
			ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
			ops[3].data.recv_close_on_server.cancelled = &c->cancelled;
			c->phase = 1;
			grpc_call_start_batch(c->call, ops, c->payload ? 4 : 3, c, NULL);
			continue;
		}
		if (c->payload)
			grpc_byte_buffer_destroy(c->payload);
		if (c->call)
			grpc_call_unref(c->call);
		grpc_metadata_array_destroy(&c->md);
		free(c);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const char *listen = "127.0.0.1:0", *path = "/frontdesk.bench.v1.BenchService/Noop";
	int threads = 2;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--listen")) listen = argv[i + 1];
		else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--method")) path = argv[i + 1];
	}
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	grpc_init();
	grpc_arg a = { .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0 };
	grpc_channel_args args = { 1, &a };
	server = grpc_server_create(&args, NULL);
	method = grpc_server_register_method(server, path, NULL,
	                                     GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	grpc_completion_queue *cqs[64];
	pthread_t th[64];
	if (threads < 1 || threads > 64)
		threads = 2;
	for (int i = 0; i < threads; i++) {
		cqs[i] = grpc_completion_queue_create_for_next(NULL);
		grpc_server_register_completion_queue(server, cqs[i], NULL);
	}
	grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
	int port = grpc_server_add_http2_port(server, listen, creds);
	grpc_server_credentials_release(creds);
	if (port <= 0) {
		fprintf(stderr, "bench_echo: cannot listen on %s\n", listen);
		return 1;
	}
	grpc_server_start(server);
	for (int i = 0; i < threads; i++) {
		for (int k = 0; k < POSTED; k++)
			post(cqs[i]);
		pthread_create(&th[i], NULL, worker, cqs[i]);
	}
	fprintf(stderr, "listening on port %d\n", port);
	int sig;
	sigwait(&sigs, &sig);
	/* A baseline needs no graceful stop. */
	_exit(0);
}
