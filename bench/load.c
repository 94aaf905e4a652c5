/* load.c - bench_load: drives one unary method with K calls in flight over C
 * connections for N seconds (closed loop, one thread; or open loop at a fixed
 * rate with --rate, a second thread starting the calls), and prints
 *   bench <case> rate=<calls>/s p50_ms=<x> p99_ms=<y> p999_ms=<z> errors=<n>
 * usage: bench_load --target H:P --method /pkg.Svc/M --case NAME --inflight K
 *        --conns C --seconds N [--warmup S] [--payload-hex HEX]
 *        [--metadata KEY=VALUE]...   (request metadata sent on every call, e.g.
 *                                     "authorization=Bearer <token>"; repeatable)
 *        [--payload-file FILE]       (hex payloads, one a line, sent in turn
 *                                     instead of --payload-hex)
 *        [--vary-key PLACEHOLDER]    (every payload holds PLACEHOLDER once; each
 *                                     call sends it replaced by the call's number,
 *                                     zero-padded to the same length, so that no
 *                                     two calls of a run share e.g. an idempotency
 *                                     key; then also prints
 *                                     calls <case> total=<n> ok=<n> failed=<n>
 *                                     counting every call, warm-up and tail too)
 *        [--rate R]                  (open loop: calls start at R a second on a
 *                                     fixed schedule, whatever the answers; at most
 *                                     --inflight outstanding, a call due while all
 *                                     are busy starts when one frees; latencies are
 *                                     measured from the scheduled start, so a
 *                                     backlog counts; the calls scheduled in the
 *                                     measured window are all waited for and make
 *                                     the percentiles; rate= is the answers that
 *                                     came in the window (below R when the server
 *                                     cannot keep up); the line ends with
 *                                     offered=<R>/s late=<n>: calls that started
 *                                     over 1 ms after their time)
 *        [--token-file FILE]         (bearer tokens, one a line: call n sends
 *                                     `authorization: Bearer <token n mod count>`
 *                                     besides any --metadata, e.g. 1,000 node keys
 *                                     taking turns)
 *        [--count-field F]...        (decode each OK reply's top level: count the
 *                                     replies whose field F is a non-zero varint
 *                                     (a bool true) or a non-empty length-delimited
 *                                     field (a message, string or bytes, e.g. a
 *                                     message field that is set with content);
 *                                     repeatable, at most 4; then
 *                                     also prints fields <case> total=<n> ok=<n>
 *                                     f<F>=<n>...
 *                                     over every call, warm-up and tail too; the
 *                                     first OK reply without the first F goes to
 *                                     stderr in hex)
 * The first failed call's status and details go to stderr. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#define MAX_US 1000000 /* latencies are counted in 1 µs buckets up to 1 s */
#define MAX_MD 8
#define MAX_PLACEHOLDER 32
#define MAX_FIELDS 4

typedef struct slot {
	grpc_call *call;
	int conn;
	double start;            /* closed loop: when sent; open loop: when scheduled */
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
static grpc_slice *payloads;       /* sent in turn, one per call */
static size_t npayloads, next_payload;
static size_t *key_at;             /* --vary-key: the placeholder's offset in each payload */
static size_t key_len;             /* 0: payloads are sent as they are */
static unsigned long long next_key, key_limit; /* 10^key_len, when below 2^64 */
static grpc_metadata md[MAX_MD]; /* sent with every call; live for the whole run */
static size_t nmd;
static grpc_metadata *tok_md;      /* --token-file: per token, md then its authorization */
static size_t ntokens, next_token;
static int fields[MAX_FIELDS];     /* --count-field */
static size_t nfields;
static unsigned long field_count[MAX_FIELDS], field_ok;
static int field_shown;

/* Starts a call in slot s; its latency counts from sched (< 0: from now). */
static void start_at(slot_t *s, double sched)
{
	s->call = grpc_channel_create_registered_call(chans[s->conn], NULL, GRPC_PROPAGATE_DEFAULTS,
	                                              cq, handles[s->conn],
	                                              gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_metadata_array_init(&s->im);
	grpc_metadata_array_init(&s->tm);
	s->reply = NULL;
	size_t p = next_payload++ % npayloads;
	grpc_byte_buffer *bb;
	if (key_len) {
		grpc_slice one = grpc_slice_malloc(GRPC_SLICE_LENGTH(payloads[p]));
		unsigned char *b = GRPC_SLICE_START_PTR(one);
		memcpy(b, GRPC_SLICE_START_PTR(payloads[p]), GRPC_SLICE_LENGTH(one));
		unsigned long long k = next_key++;
		if (key_len < 20 && k >= key_limit) {
			fprintf(stderr, "bench_load: --vary-key: more calls than %zu digits can number\n", key_len);
			exit(1);
		}
		for (size_t i = key_len; i-- > 0; k /= 10)
			b[key_at[p] + i] = (unsigned char)('0' + k % 10);
		bb = grpc_raw_byte_buffer_create(&one, 1);
		grpc_slice_unref(one);
	} else {
		bb = grpc_raw_byte_buffer_create(&payloads[p], 1);
	}
	grpc_op ops[6];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (ntokens) {
		ops[0].data.send_initial_metadata.count = nmd + 1;
		ops[0].data.send_initial_metadata.metadata = tok_md + (next_token++ % ntokens) * (nmd + 1);
	} else {
		ops[0].data.send_initial_metadata.count = nmd;
		ops[0].data.send_initial_metadata.metadata = nmd ? md : NULL;
	}
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
	s->start = sched < 0 ? now() : sched;
	grpc_call_start_batch(s->call, ops, 6, s, NULL);
	grpc_byte_buffer_destroy(bb); /* the batch holds its own reference */
}

static void start(slot_t *s)
{
	start_at(s, -1);
}

/* HEX as a new slice; -1 if it is not hex. */
static int from_hex(const char *hex, size_t n, grpc_slice *out)
{
	if (n % 2)
		return -1;
	*out = grpc_slice_malloc(n / 2);
	unsigned char *b = GRPC_SLICE_START_PTR(*out);
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v = 0;
		for (int j = 0; j < 2; j++) {
			char c = hex[2 * i + (size_t)j];
			unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
			             : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
			             : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16;
			if (d == 16) {
				grpc_slice_unref(*out);
				return -1;
			}
			v = v * 16 + d;
		}
		b[i] = (unsigned char)v;
	}
	return 0;
}

/* The payloads of --payload-file: one hex payload a line (blank lines skipped). */
static int read_payloads(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "bench_load: --payload-file %s: cannot open\n", path);
		return -1;
	}
	char *line = NULL;
	size_t cap = 0, n = 0;
	ssize_t len;
	int rc = 0;
	while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
		n++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0)
			continue;
		grpc_slice *more = realloc(payloads, (npayloads + 1) * sizeof(*more));
		if (!more) {
			rc = -1;
			break;
		}
		payloads = more;
		if (from_hex(line, (size_t)len, &payloads[npayloads]) < 0) {
			fprintf(stderr, "bench_load: --payload-file %s: line %zu is not hex\n", path, n);
			rc = -1;
		} else {
			npayloads++;
		}
	}
	free(line);
	fclose(f);
	if (rc == 0 && npayloads == 0) {
		fprintf(stderr, "bench_load: --payload-file %s: no payload\n", path);
		rc = -1;
	}
	return rc;
}

/* --token-file: one bearer token a line (blank lines skipped); each token's
 * metadata is md (the --metadata pairs) followed by its authorization. */
static int read_tokens(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "bench_load: --token-file %s: cannot open\n", path);
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;
	while ((len = getline(&line, &cap, f)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
			line[--len] = '\0';
		if (len == 0)
			continue;
		grpc_metadata *more = realloc(tok_md, (ntokens + 1) * (nmd + 1) * sizeof(*more));
		if (!more) {
			rc = -1;
			break;
		}
		tok_md = more;
		grpc_metadata *m = tok_md + ntokens * (nmd + 1);
		for (size_t i = 0; i < nmd; i++)
			m[i] = md[i];
		char *value = malloc((size_t)len + 8);
		if (!value) {
			rc = -1;
			break;
		}
		snprintf(value, (size_t)len + 8, "Bearer %s", line);
		memset(&m[nmd], 0, sizeof(m[nmd]));
		m[nmd].key = grpc_slice_from_static_string("authorization");
		m[nmd].value = grpc_slice_from_copied_string(value);
		free(value);
		ntokens++;
	}
	free(line);
	fclose(f);
	if (rc == 0 && ntokens == 0) {
		fprintf(stderr, "bench_load: --token-file %s: no token\n", path);
		rc = -1;
	}
	return rc;
}

/* --vary-key: where PLACEHOLDER is in each payload (exactly once). */
static int find_keys(const char *placeholder)
{
	key_len = strlen(placeholder);
	if (key_len == 0 || key_len > MAX_PLACEHOLDER) {
		fprintf(stderr, "bench_load: --vary-key: 1 to %d characters\n", MAX_PLACEHOLDER);
		return -1;
	}
	key_limit = 1;
	for (size_t i = 0; i < key_len && i < 19; i++)
		key_limit *= 10;
	key_at = calloc(npayloads, sizeof(*key_at));
	if (!key_at)
		return -1;
	for (size_t p = 0; p < npayloads; p++) {
		const unsigned char *b = GRPC_SLICE_START_PTR(payloads[p]);
		size_t n = GRPC_SLICE_LENGTH(payloads[p]), found = 0;
		for (size_t i = 0; i + key_len <= n; i++)
			if (memcmp(b + i, placeholder, key_len) == 0)
				key_at[p] = i, found++;
		if (found != 1) {
			fprintf(stderr, "bench_load: --vary-key: payload %zu holds the placeholder %zu times, "
			        "not once\n", p + 1, found);
			return -1;
		}
	}
	return 0;
}

/* Reads a varint at *p (< end); -1 if truncated. */
static int varint(const unsigned char **p, const unsigned char *end, unsigned long long *v)
{
	*v = 0;
	for (int shift = 0; *p < end && shift < 64; shift += 7) {
		unsigned char b = *(*p)++;
		*v |= (unsigned long long)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -1;
}

/* --count-field: which of the fields are non-zero varints at the top level
 * of the reply (the last occurrence wins, as protobuf's). */
static void count_fields(grpc_byte_buffer *reply)
{
	grpc_slice all = grpc_empty_slice();
	if (reply) {
		grpc_byte_buffer_reader r;
		if (grpc_byte_buffer_reader_init(&r, reply)) {
			all = grpc_byte_buffer_reader_readall(&r);
			grpc_byte_buffer_reader_destroy(&r);
		}
	}
	const unsigned char *b = GRPC_SLICE_START_PTR(all), *p = b, *end = b + GRPC_SLICE_LENGTH(all);
	int set[MAX_FIELDS] = { 0 };
	while (p < end) {
		unsigned long long key, v;
		if (varint(&p, end, &key) < 0)
			break;
		unsigned wt = (unsigned)(key & 7);
		unsigned long long f = key >> 3;
		if (wt == 0) {
			if (varint(&p, end, &v) < 0)
				break;
			for (size_t i = 0; i < nfields; i++)
				if ((unsigned long long)fields[i] == f)
					set[i] = v != 0;
		} else if (wt == 2) {
			if (varint(&p, end, &v) < 0 || v > (unsigned long long)(end - p))
				break;
			p += v;
			for (size_t i = 0; i < nfields; i++)
				if ((unsigned long long)fields[i] == f)
					set[i] = v != 0;
		} else if (wt == 1 || wt == 5) {
			if ((size_t)(end - p) < (wt == 1 ? 8u : 4u))
				break;
			p += wt == 1 ? 8 : 4;
		} else {
			break;
		}
	}
	field_ok++;
	for (size_t i = 0; i < nfields; i++)
		field_count[i] += (unsigned long)set[i];
	if (!set[0] && !field_shown) {
		field_shown = 1;
		fprintf(stderr, "bench_load: first OK reply without field %d (%zu bytes): ", fields[0],
		        (size_t)(end - b));
		for (const unsigned char *q = b; q < end && q < b + 512; q++)
			fprintf(stderr, "%02x", *q);
		fprintf(stderr, "\n");
	}
	grpc_slice_unref(all);
}

/* What the answers came to. */
static unsigned *hist;             /* latencies in the window, 1 µs buckets */
static unsigned long done, errors, total, total_failed;
static int first_error;

/* One answer: counted, measured when in the window (closed loop: sent after
 * the warm-up and answered before the end; open loop: scheduled in the
 * window, answered whenever), its slot cleared. */
static void finish(slot_t *s, double t, int in_window, const char *name)
{
	total++;
	total_failed += s->status != GRPC_STATUS_OK;
	if (in_window) {
		long us = (long)((t - s->start) * 1e6);
		hist[us < 0 ? 0 : us < MAX_US ? us : MAX_US - 1]++;
		done++;
		if (s->status != GRPC_STATUS_OK)
			errors++;
	}
	if (s->status != GRPC_STATUS_OK && !first_error) {
		char *d = grpc_slice_to_c_string(s->details);
		fprintf(stderr, "bench_load: %s: first failed call: status %d: %s\n", name, (int)s->status, d);
		gpr_free(d);
		first_error = 1;
	}
	if (nfields && s->status == GRPC_STATUS_OK)
		count_fields(s->reply);
	if (s->reply)
		grpc_byte_buffer_destroy(s->reply);
	grpc_slice_unref(s->details);
	grpc_metadata_array_destroy(&s->im);
	grpc_metadata_array_destroy(&s->tm);
	grpc_call_unref(s->call);
}

/* --rate: the thread that starts the calls on schedule. */
typedef struct sched {
	pthread_mutex_t mu;
	pthread_cond_t cv;           /* a slot was freed */
	slot_t *slots, **free_slots;
	int inflight, nfree, outstanding, finished;
	double rate, t0, end;
	unsigned long late;
} sched_t;

static void *scheduler(void *arg)
{
	sched_t *sc = arg;
	for (unsigned long long n = 0;; n++) {
		double due = sc->t0 + (double)n / sc->rate;
		if (due >= sc->end)
			break;
		struct timespec ts = { (time_t)due, (long)((due - (double)(time_t)due) * 1e9) };
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
			;
		pthread_mutex_lock(&sc->mu);
		while (sc->nfree == 0)
			pthread_cond_wait(&sc->cv, &sc->mu);
		slot_t *s = sc->free_slots[--sc->nfree];
		sc->outstanding++;
		pthread_mutex_unlock(&sc->mu);
		if (now() - due > 0.001)
			sc->late++;
		start_at(s, due);            /* latency from the schedule */
	}
	pthread_mutex_lock(&sc->mu);
	sc->finished = 1;
	pthread_mutex_unlock(&sc->mu);
	return NULL;
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
	const char *name = "case", *hex = "", *payload_file = NULL, *vary_key = NULL, *token_file = NULL;
	int inflight = 64, conns = 8;
	double seconds = 5, warmup = 1, rate = 0;
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
		else if (!strcmp(k, "--payload-file")) payload_file = v;
		else if (!strcmp(k, "--vary-key")) vary_key = v;
		else if (!strcmp(k, "--token-file")) token_file = v;
		else if (!strcmp(k, "--rate")) rate = atof(v);
		else if (!strcmp(k, "--count-field")) {
			if (nfields == MAX_FIELDS || atoi(v) < 1) {
				fprintf(stderr, "bench_load: --count-field F (F >= 1, at most %d)\n", MAX_FIELDS);
				return 2;
			}
			fields[nfields++] = atoi(v);
		}
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
	if (payload_file) {
		if (read_payloads(payload_file) < 0)
			return 2;
	} else {
		size_t plen = strlen(hex) / 2;
		payloads = calloc(1, sizeof(*payloads));
		npayloads = 1;
		payloads[0] = grpc_slice_malloc(plen);
		for (size_t i = 0; i < plen; i++)
			sscanf(hex + 2 * i, "%2hhx", GRPC_SLICE_START_PTR(payloads[0]) + i);
	}
	if (vary_key && find_keys(vary_key) < 0)
		return 2;
	for (size_t i = 0; token_file && i < nmd; i++) {
		if (grpc_slice_str_cmp(md[i].key, "authorization") == 0) {
			fprintf(stderr, "bench_load: --token-file and --metadata authorization=...: one or the other\n");
			return 2;
		}
	}
	if (token_file && read_tokens(token_file) < 0)
		return 2;

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

	hist = calloc(MAX_US, sizeof(unsigned));
	slot_t *slots = calloc(inflight, sizeof(*slots));
	for (int i = 0; i < inflight; i++)
		slots[i].conn = i % conns;
	unsigned long late = 0;
	unsigned long answered = 0;      /* open loop: answers in the window, whichever call's */
	double t0 = now(), measure_from = t0 + warmup, end = measure_from + seconds;
	if (rate <= 0) {
		/* Closed loop: K calls in flight, each answer starts the next. */
		for (int i = 0; i < inflight; i++)
			start(&slots[i]);
		t0 = now(), measure_from = t0 + warmup, end = measure_from + seconds;
		int outstanding = inflight;
		while (outstanding > 0) {
			grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
			if (ev.type != GRPC_OP_COMPLETE)
				continue;
			slot_t *s = ev.tag;
			double t = now();
			finish(s, t, t >= measure_from && s->start >= measure_from && t < end, name);
			if (t < end)
				start(s);
			else
				outstanding--;
		}
	} else {
		/* Open loop: call i is due at t0 + i / rate, whatever the answers. A
		 * thread of its own starts the calls on time (clock_nanosleep: the
		 * completion queue's own timeouts are whole milliseconds); this one
		 * takes the answers. */
		sched_t sc = { .slots = slots, .inflight = inflight, .rate = rate, .t0 = t0, .end = end };
		sc.free_slots = calloc(inflight, sizeof(*sc.free_slots));
		for (int i = 0; i < inflight; i++)
			sc.free_slots[sc.nfree++] = &slots[inflight - 1 - i];
		pthread_mutex_init(&sc.mu, NULL);
		pthread_cond_init(&sc.cv, NULL);
		pthread_t th;
		if (pthread_create(&th, NULL, scheduler, &sc) != 0) {
			fprintf(stderr, "bench_load: cannot start the scheduler thread\n");
			return 1;
		}
		for (;;) {
			pthread_mutex_lock(&sc.mu);
			int over = sc.finished && sc.outstanding == 0;
			pthread_mutex_unlock(&sc.mu);
			if (over)
				break;
			gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
			                                  gpr_time_from_millis(10, GPR_TIMESPAN));
			grpc_event ev = grpc_completion_queue_next(cq, until, NULL);
			if (ev.type != GRPC_OP_COMPLETE)
				continue;
			slot_t *s = ev.tag;
			double tc = now();
			finish(s, tc, s->start >= measure_from && s->start < end, name);
			answered += tc >= measure_from && tc < end;
			pthread_mutex_lock(&sc.mu);
			sc.free_slots[sc.nfree++] = s;
			sc.outstanding--;
			pthread_cond_signal(&sc.cv);
			pthread_mutex_unlock(&sc.mu);
		}
		pthread_join(th, NULL);
		late = sc.late;
		pthread_mutex_destroy(&sc.mu);
		pthread_cond_destroy(&sc.cv);
		free(sc.free_slots);
	}
	if (rate <= 0)
		printf("bench %s rate=%.0f/s p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f errors=%lu\n", name,
		       done / seconds, pct(hist, done, 0.5), pct(hist, done, 0.99), pct(hist, done, 0.999),
		       errors);
	else
		printf("bench %s rate=%.0f/s p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f errors=%lu offered=%.0f/s "
		       "late=%lu\n", name, answered / seconds, pct(hist, done, 0.5), pct(hist, done, 0.99),
		       pct(hist, done, 0.999), errors, rate, late);
	if (key_len)
		printf("calls %s total=%lu ok=%lu failed=%lu\n", name, total, total - total_failed,
		       total_failed);
	if (nfields) {
		printf("fields %s total=%lu ok=%lu", name, total, field_ok);
		for (size_t i = 0; i < nfields; i++)
			printf(" f%d=%lu", fields[i], field_count[i]);
		printf("\n");
	}
	for (int i = 0; i < conns; i++)
		grpc_channel_destroy(chans[i]);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	for (size_t p = 0; p < npayloads; p++)
		grpc_slice_unref(payloads[p]);
	free(payloads);
	free(key_at);
	for (size_t t = 0; t < ntokens; t++)
		grpc_slice_unref(tok_md[t * (nmd + 1) + nmd].value);
	free(tok_md);
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
