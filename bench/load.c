/* load.c - bench_load: drives one unary method with K calls in flight over C
 * connections for N seconds (closed loop, one thread), and prints
 *   bench <case> rate=<calls>/s p50_ms=<x> p99_ms=<y> p999_ms=<z> errors=<n>
 * usage: bench_load --target H:P --method /pkg.Svc/M --case NAME --inflight K
 *        --conns C --seconds N [--warmup S] [--payload-hex HEX]
 *        [--metadata KEY=VALUE]...   (request metadata sent on every call, e.g.
 *                                     "authorization=Bearer <token>"; repeatable)
 * The first failed call's status and details go to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#define MAX_US 1000000 /* latencies are counted in 1 µs buckets up to 1 s */
#define MAX_MD 8

typedef struct slot {
	grpc_call *call;
	int conn;
	double start;
	grpc_metadata_array im, tm;
	grpc_byte_buffer *reply;
	grpc_status_code status;
	grpc_slice details;
} slot_t;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static grpc_channel **chans;
static void **handles;
static grpc_completion_queue *cq;
static grpc_slice payload;
static grpc_metadata md[MAX_MD]; /* sent with every call; live for the whole run */
static size_t nmd;

static void start(slot_t *s)
{
	s->call = grpc_channel_create_registered_call(chans[s->conn], NULL, GRPC_PROPAGATE_DEFAULTS,
	                                              cq, handles[s->conn],
	                                              gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_metadata_array_init(&s->im);
	grpc_metadata_array_init(&s->tm);
	s->reply = NULL;
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&payload, 1);
	grpc_op ops[6];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = nmd;
	ops[0].data.send_initial_metadata.metadata = nmd ? md : NULL;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->im;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &s->reply;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &s->tm;
	ops[5].data.recv_status_on_client.status = &s->status;
	ops[5].data.recv_status_on_client.status_details = &s->details;
	s->start = now();
	grpc_call_start_batch(s->call, ops, 6, s, NULL);
	grpc_byte_buffer_destroy(bb); /* the batch holds its own reference */
}

static double pct(const unsigned *h, unsigned long n, double q)
{
	unsigned long want = (unsigned long)(q * n), seen = 0;
	for (int i = 0; i < MAX_US; i++)
		if ((seen += h[i]) > want)
			return i / 1000.0;
	return MAX_US / 1000.0;
}

int main(int argc, char **argv)
{
	const char *target = "127.0.0.1:50051", *method = "/frontdesk.bench.v1.BenchService/Noop";
	const char *name = "case", *hex = "";
	int inflight = 64, conns = 8;
	double seconds = 5, warmup = 1;
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (!strcmp(k, "--target")) target = v;
		else if (!strcmp(k, "--method")) method = v;
		else if (!strcmp(k, "--case")) name = v;
		else if (!strcmp(k, "--inflight")) inflight = atoi(v);
		else if (!strcmp(k, "--conns")) conns = atoi(v);
		else if (!strcmp(k, "--seconds")) seconds = atof(v);
		else if (!strcmp(k, "--warmup")) warmup = atof(v);
		else if (!strcmp(k, "--payload-hex")) hex = v;
		else if (!strcmp(k, "--metadata")) {
			const char *eq = strchr(v, '=');
			if (!eq || eq == v || nmd == MAX_MD) {
				fprintf(stderr, "bench_load: --metadata KEY=VALUE (at most %d)\n", MAX_MD);
				return 2;
			}
			md[nmd].key = grpc_slice_from_copied_buffer(v, (size_t)(eq - v));
			md[nmd++].value = grpc_slice_from_copied_string(eq + 1);
		} else { fprintf(stderr, "bench_load: unknown option %s\n", k); return 2; }
	}
	if (inflight < 1 || conns < 1 || conns > inflight) {
		fprintf(stderr, "bench_load: need 1 <= conns <= inflight\n");
		return 2;
	}
	size_t plen = strlen(hex) / 2;
	payload = grpc_slice_malloc(plen);
	for (size_t i = 0; i < plen; i++)
		sscanf(hex + 2 * i, "%2hhx", GRPC_SLICE_START_PTR(payload) + i);

	grpc_init();
	cq = grpc_completion_queue_create_for_next(NULL);
	chans = calloc(conns, sizeof(*chans));
	handles = calloc(conns, sizeof(*handles));
	grpc_arg a = { .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
	               .value.integer = 1 };
	grpc_channel_args args = { 1, &a };
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	for (int i = 0; i < conns; i++) {
		chans[i] = grpc_channel_create(target, creds, &args);
		handles[i] = grpc_channel_register_call(chans[i], method, NULL, NULL);
	}
	grpc_channel_credentials_release(creds);

	unsigned *hist = calloc(MAX_US, sizeof(unsigned));
	slot_t *slots = calloc(inflight, sizeof(*slots));
	for (int i = 0; i < inflight; i++) {
		slots[i].conn = i % conns;
		start(&slots[i]);
	}
	double t0 = now(), measure_from = t0 + warmup, end = measure_from + seconds;
	unsigned long done = 0, errors = 0;
	int first_error = 0;
	int outstanding = inflight;
	while (outstanding > 0) {
		grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		slot_t *s = ev.tag;
		double t = now();
		if (t >= measure_from && s->start >= measure_from && t < end) {
			long us = (long)((t - s->start) * 1e6);
			hist[us < MAX_US ? us : MAX_US - 1]++;
			done++;
			if (s->status != GRPC_STATUS_OK)
				errors++;
		}
		if (s->status != GRPC_STATUS_OK && !first_error) {
			char *d = grpc_slice_to_c_string(s->details);
			fprintf(stderr, "bench_load: %s: first failed call: status %d: %s\n", name,
			        (int)s->status, d);
			gpr_free(d);
			first_error = 1;
		}
		if (s->reply)
			grpc_byte_buffer_destroy(s->reply);
		grpc_slice_unref(s->details);
		grpc_metadata_array_destroy(&s->im);
		grpc_metadata_array_destroy(&s->tm);
		grpc_call_unref(s->call);
		if (t < end)
			start(s);
		else
			outstanding--;
	}
	printf("bench %s rate=%.0f/s p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f errors=%lu\n", name,
	       done / seconds, pct(hist, done, 0.5), pct(hist, done, 0.99), pct(hist, done, 0.999),
	       errors);
	for (int i = 0; i < conns; i++)
		grpc_channel_destroy(chans[i]);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	grpc_slice_unref(payload);
	for (size_t i = 0; i < nmd; i++) {
		grpc_slice_unref(md[i].key);
		grpc_slice_unref(md[i].value);
	}
	free(hist);
	free(slots);
	free(chans);
	free(handles);
	grpc_shutdown();
	return errors ? 1 : 0;
}
