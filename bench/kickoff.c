/* kickoff.c - bench_kickoff, the driver of bench/kickoff.sh (issue 14): a
 * big match's kickoff against linesd and routerd on loopback, open loop, and
 * the busiest streaming node killed in the middle of it; prints what it saw.
 *
 * One thread, one completion queue, everything on a schedule:
 *   - the nodes (--nodes): each holds RoutingService/StreamHeartbeats open on
 *     a connection of its own with its node key, and reports every interval
 *     routerd tells it the viewers placed on it now (active_connections, the
 *     egress they make at --bitrate-kbps, per-stream viewers), so a node
 *     that gets too many viewers really reports itself over its high water;
 *   - the viewers (--plan: per tenant its lines' first username, how many
 *     lines, their password and streams): viewer i joins at t0 + i / rate
 *     (--viewers over --join-seconds) with AuthorizePlayback to linesd over
 *     gRPC with the edge's service token, each viewer a line of its own, a
 *     client address of its own and a country from a fixed mix (GB 40%, US
 *     30%, DE 20%, IN 10%); its latency counts from its scheduled start, so
 *     a backlog counts. Once allowed it is placed on the node the answer
 *     names and sends a SessionHeartbeat every interval linesd told it (at
 *     most one in flight); an answer naming another node (node_changed after
 *     a failover) moves it there; an inactive one ends it. A trickle of late
 *     joiners (--late-rate) keeps arriving after the join, on other lines;
 *   - WatchNodes (all tenants, the platform admin's token): when routerd
 *     says the killed node is DOWN (and any OVERLOADED/RECOVERED/DOWN of the
 *     others);
 *   - the kill: once every viewer of the join has been answered and has had
 *     a heartbeat answered (and not before --kill-at), the node carrying the
 *     most viewers has its heartbeat stream cancelled and its connection
 *     closed, as a process that died would leave them; it reports no more.
 *     The run ends --after-kill seconds later; the calls still out are
 *     waited for (at most 15 s).
 * What it prints (then `goal ...: met|MISSED` lines): the join (achieved
 * against offered, p50/p99/p999, errors and denials by reason), the
 * heartbeats, the failover (the dead node's viewers on a live node: 99% and
 * 100% of them, from routerd's DOWN event and from the kill; viewers sent to
 * the dead node after the DOWN event: new placements and heartbeat answers
 * still naming it), the peak load of every other node against its high
 * water (before and after the kill, the true count and the reported one),
 * and the CPU of each process named by --pids (and PostgreSQL's, from
 * --postmaster: itself, its live children and those it reaped) per phase.
 *
 * usage: bench_kickoff --linesd H:P --routerd H:P --edge-token-file F
 *        --admin-token-file F --nodes F --plan F [--viewers 50000]
 *        [--join-seconds 10] [--late-rate 100] [--kill-at 0] [--after-kill 25]
 *        [--conns 8] [--bitrate-kbps 4000] [--max-outstanding 8192]
 *        [--pids name=PID,...] [--postmaster PID]
 * --nodes: one node a line, `id region max_connections high_water_percent key`;
 * --plan: one tenant a line, `tenant_id first_username lines password stream,stream,...`. */
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include "frontdesk/v1/lines.pb-c.h"
#include "frontdesk/v1/routing.pb-c.h"

#define MAX_TENANTS 8
#define MAX_STREAMS 16          /* per tenant */
#define MAX_PROCS 8
#define HIST_US 100             /* latency buckets of 100 us ... */
#define HIST_N 600000           /* ... up to 60 s */
#define CALL_TIMEOUT_S 60
#define DRAIN_S 15

/* ---- time ---- */

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static gpr_timespec deadline_in(double s)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_micros((int64_t)(s * 1e6), GPR_TIMESPAN));
}

/* ---- what is simulated ---- */

typedef struct tenant {
	int64_t id;
	long long u0;               /* the first line's username */
	long nlines, used;          /* lines, and how many viewers took one */
	char password[80];
	int64_t streams[MAX_STREAMS];
	int nstreams;
	int slot0;                  /* its streams' index in the per-node counts */
} tenant_t;

/* Tags: every completion queue tag points at one; kind says whose. */
enum { T_UNARY = 1, T_NODE_SEND, T_NODE_RECV, T_NODE_STATUS, T_WATCH_START, T_WATCH_RECV, T_WATCH_STATUS };
typedef struct tag {
	int kind;
	int idx;
} tag_t;

typedef struct node {
	int64_t id;
	char region[32];
	int max_conn, high_water;   /* percent */
	char *key;
	grpc_channel *ch;
	grpc_call *call;
	tag_t t_send, t_recv, t_status;
	grpc_metadata md;
	grpc_metadata_array im, tm;
	grpc_byte_buffer *reply;
	grpc_status_code status;
	grpc_slice details;
	int started, sending, receiving, ended, killed, answered, up;
	int64_t seq;
	double interval;            /* seconds, from its directive */
	int cur;                    /* viewers on it now */
	int *per_stream;            /* [nslots] */
	int peak[2], rpeak[2];      /* true and reported peak: before the kill, after it */
	int received;               /* viewers moved to it from the dead node */
	int events_over, events_down;
} node_t;

/* Viewer states. */
enum {
	V_IDLE,        /* not joined yet */
	V_JOINING,     /* its AuthorizePlayback is out */
	V_PLAYING,     /* allowed, on a node (or none named) */
	V_ENDED,       /* a heartbeat said inactive */
	V_FAILED       /* denied, or the call failed */
};

typedef struct viewer {
	int tenant, stream;         /* tenant index, stream index within it */
	long line;                  /* index within the tenant's lines */
	int node;                   /* index into nodes, -1: none */
	int64_t session;
	double sched;               /* its join's schedule */
	double next_beat;
	unsigned char state, beating, victim, late, beat_done;
	double moved_at;            /* victims: when an answer first named a live node */
} viewer_t;

enum { K_AUTH, K_BEAT };
typedef struct cctx {
	tag_t tag;                  /* T_UNARY, idx = its index in calls */
	int kind, viewer;
	double sched, sent;
	grpc_call *call;
	grpc_metadata_array im, tm;
	grpc_byte_buffer *reply;
	grpc_status_code status;
	grpc_slice details;
	int next_free;
} cctx_t;

/* Heartbeats due, a binary min-heap of (time, viewer). */
typedef struct due {
	double t;
	int v;
} due_t;

typedef struct hist {
	unsigned *b;
	unsigned long n;
	double max;
} hist_t;

typedef struct procs {
	int n;
	char name[MAX_PROCS][16];
	int pid[MAX_PROCS];
	int postmaster;
} procs_t;

typedef struct cpu_mark {
	double t, v[MAX_PROCS + 2]; /* the named, PostgreSQL, the driver */
	double busy;                /* the whole machine (/proc/stat) */
} cpu_mark_t;

/* ---- the run's state (one thread: plain globals, static to this file) ---- */

static grpc_completion_queue *cq;
static tenant_t tenants[MAX_TENANTS];
static int ntenants, nslots;
static node_t *nodes;
static int nnodes;
static viewer_t *viewers;
static int nviewers, njoin;      /* all, and those of the join (the rest join late) */
static cctx_t *calls;
static int ncalls, free_call = -1, outstanding;
static due_t *heap;
static int nheap;
static grpc_channel **lch;        /* to linesd */
static void **h_auth, **h_heartbeat;
static int nconns, next_conn;
static grpc_metadata edge_md;
static char *edge_auth, *admin_auth;
static int bitrate_kbps = 4000;

/* WatchNodes */
static grpc_channel *wch;
static grpc_call *wcall;
static tag_t w_start = { T_WATCH_START, 0 }, w_recv = { T_WATCH_RECV, 0 }, w_status = { T_WATCH_STATUS, 0 };
static grpc_metadata w_md;
static grpc_metadata_array w_im, w_tm;
static grpc_byte_buffer *w_reply;
static grpc_status_code w_code;
static grpc_slice w_details;
static int w_open, w_ended;

/* timeline */
static double t0, join_end_sched, t_join_done, t_beaten, t_kill, t_seen, t_end;
static double t_kill_real;       /* the kill by CLOCK_REALTIME, to place routerd's log line */
/* Answers naming the dead node to requests sent after the kill: when the
 * request was sent, and whether it placed the viewer there (new). */
typedef struct dead_ans {
	double sent;
	int is_new;
} dead_ans_t;
static dead_ans_t *dead_ans;
static size_t ndead_ans, cap_dead_ans;
static double max_gap[2];       /* the longest pass of the driver's loop, before and after the kill */
static int victim = -1, nvictims, beat_s = 0;
static double hb_s = 10;

/* counts */
static hist_t h_join, h_late, h_beat, h_beat_fo;
static unsigned long join_ok, join_in_window, join_denied, join_failed, late_ok, late_failed,
	late_denied;
static unsigned long denials[32], statuses[20], beats_sent, beats_ok, beats_failed, beats_skipped, beats_inactive,
	changed, changed_victims, changed_others, changed_silent, no_node_answers, start_delayed;
static unsigned long dead_changed_to, dead_new_after_kill, dead_beat_after_kill, down_others, over_events, recovered_events, victims_ended;
static double dead_last_named;
static int other_down_node = -1;
static int stopping;            /* the end: streams are cancelled on purpose */
static long beaten;             /* viewers of the join with a heartbeat answered */
static unsigned long end_reasons[16];

static void die(const char *what)
{
	fprintf(stderr, "bench_kickoff: %s\n", what);
	exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p)
		die("out of memory");
	return p;
}

/* ---- histograms ---- */

static void hist_init(hist_t *h)
{
	h->b = xcalloc(HIST_N, sizeof(unsigned));
}

static void hist_add(hist_t *h, double s)
{
	long i = (long)(s * 1e6 / HIST_US);
	h->b[i < 0 ? 0 : i < HIST_N ? i : HIST_N - 1]++;
	h->n++;
	if (s > h->max)
		h->max = s;
}

static double hist_pct(const hist_t *h, double q)
{
	unsigned long want = (unsigned long)(q * (double)h->n), seen = 0;
	for (long i = 0; i < HIST_N; i++)
		if ((seen += h->b[i]) > want)
			return (double)(i + 1) * HIST_US / 1000.0;
	return h->n ? (double)HIST_N * HIST_US / 1000.0 : 0;
}

/* ---- the heap ---- */

static void heap_push(double t, int v)
{
	int i = nheap++;
	while (i > 0) {
		int p = (i - 1) / 2;
		if (heap[p].t <= t)
			break;
		heap[i] = heap[p];
		i = p;
	}
	heap[i] = (due_t){ t, v };
}

static void heap_pop(void)
{
	due_t last = heap[--nheap];
	int i = 0;
	for (;;) {
		int c = 2 * i + 1;
		if (c >= nheap)
			break;
		if (c + 1 < nheap && heap[c + 1].t < heap[c].t)
			c++;
		if (heap[c].t >= last.t)
			break;
		heap[i] = heap[c];
		i = c;
	}
	if (nheap > 0)
		heap[i] = last;
}

/* ---- CPU from /proc ---- */

static int stat_of(int pid, double *own, double *reaped, int *ppid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	/* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime */
	char st;
	int pp;
	unsigned long long skip, ut, stt, cut, cst;
	if (sscanf(p + 2, "%c %d %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &st, &pp, &skip, &skip,
	           &skip, &skip, &skip, &skip, &skip, &skip, &skip, &ut, &stt, &cut, &cst) != 15)
		return -1;
	double tick = (double)sysconf(_SC_CLK_TCK);
	if (own)
		*own = (double)(ut + stt) / tick;
	if (reaped)
		*reaped = (double)(cut + cst) / tick;
	if (ppid)
		*ppid = pp;
	return 0;
}

/* PostgreSQL: the postmaster, what it reaped, its live children. */
static double pg_cpu(int postmaster)
{
	double own = 0, reaped = 0, sum = 0;
	if (postmaster <= 0 || stat_of(postmaster, &own, &reaped, NULL) < 0)
		return 0;
	sum = own + reaped;
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		int pid = atoi(e->d_name), pp = 0;
		double c = 0;
		if (pid > 0 && stat_of(pid, &c, NULL, &pp) == 0 && pp == postmaster)
			sum += c;
	}
	if (d)
		closedir(d);
	return sum;
}

/* The machine's busy CPU seconds: /proc/stat's first line less idle,
 * iowait and steal. */
static double machine_busy(void)
{
	FILE *f = fopen("/proc/stat", "r");
	unsigned long long v[8] = { 0 };
	if (!f)
		return 0;
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
	               &v[7]);
	fclose(f);
	if (n != 8)
		return 0;
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / (double)sysconf(_SC_CLK_TCK);
}

static void cpu_mark(const procs_t *p, cpu_mark_t *m)
{
	m->t = mono();
	m->busy = machine_busy();
	for (int i = 0; i < p->n; i++) {
		m->v[i] = 0;
		stat_of(p->pid[i], &m->v[i], NULL, NULL);
	}
	m->v[p->n] = pg_cpu(p->postmaster);
	m->v[p->n + 1] = 0;
	stat_of((int)getpid(), &m->v[p->n + 1], NULL, NULL);
}

/* One line per phase: each process's cores, and its CPU per call of `calls`. */
static void cpu_print(const procs_t *p, const char *phase, const cpu_mark_t *a, const cpu_mark_t *b, double ncall,
                      const char *per)
{
	double w = b->t - a->t, total = 0;
	if (w <= 0)
		return;
	printf("cpu phase=%s seconds=%.1f", phase, w);
	for (int i = 0; i < p->n + 2; i++) {
		double c = b->v[i] - a->v[i];
		total += c;
		printf(" %s_cores=%.2f", i < p->n ? p->name[i] : i == p->n ? "postgres" : "driver", c / w);
	}
	printf(" total_cores=%.2f others_cores=%.2f (the rest of the machine: neighbours)", total / w,
	       (b->busy - a->busy - total) / w);
	if (ncall > 0) {
		printf(" | us per %s:", per);
		for (int i = 0; i < p->n + 2; i++)
			printf(" %s=%.0f", i < p->n ? p->name[i] : i == p->n ? "postgres" : "driver",
			       (b->v[i] - a->v[i]) / ncall * 1e6);
		printf(" total=%.0f", total / ncall * 1e6);
	}
	printf("\n");
}

/* ---- nodes: look-up, load ---- */

static int node_index(int64_t id)
{
	int lo = 0, hi = nnodes - 1;   /* nodes are sorted by id */
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		if (nodes[mid].id == id)
			return mid;
		if (nodes[mid].id < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

static int cmp_node(const void *a, const void *b)
{
	const node_t *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* A viewer placed on (or taken off) node n. */
static void place(viewer_t *v, int n, int delta)
{
	if (n < 0)
		return;
	node_t *x = &nodes[n];
	x->cur += delta;
	x->per_stream[tenants[v->tenant].slot0 + v->stream] += delta;
	int phase = t_kill > 0;
	if (x->cur > x->peak[phase])
		x->peak[phase] = x->cur;
}

/* ---- node streams ---- */

static void node_recv(node_t *n)
{
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &n->reply;
	n->receiving = 1;
	if (grpc_call_start_batch(n->call, &op, 1, &n->t_recv, NULL) != GRPC_CALL_OK)
		die("node: RECV_MESSAGE refused");
}

static void node_open(node_t *n)
{
	n->call = grpc_channel_create_call(n->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
	                                   grpc_slice_from_static_string("/frontdesk.v1.RoutingService/StreamHeartbeats"),
	                                   NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_metadata_array_init(&n->im);
	grpc_metadata_array_init(&n->tm);
	grpc_op ops[2];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &n->tm;
	ops[0].data.recv_status_on_client.status = &n->status;
	ops[0].data.recv_status_on_client.status_details = &n->details;
	if (grpc_call_start_batch(n->call, ops, 1, &n->t_status, NULL) != GRPC_CALL_OK)
		die("node: RECV_STATUS refused");
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[0].data.recv_initial_metadata.recv_initial_metadata = &n->im;
	ops[1].op = GRPC_OP_RECV_MESSAGE;
	ops[1].data.recv_message.recv_message = &n->reply;
	n->receiving = 1;
	if (grpc_call_start_batch(n->call, ops, 2, &n->t_recv, NULL) != GRPC_CALL_OK)
		die("node: RECV refused");
	n->started = 1;
}

/* Sends the node's load now: the viewers placed on it. */
static void node_report(node_t *n)
{
	if (n->killed || n->ended || n->sending || !n->call || stopping)
		return;
	Frontdesk__V1__StreamViewers sv[MAX_TENANTS * MAX_STREAMS], *psv[MAX_TENANTS * MAX_STREAMS];
	size_t nsv = 0;
	for (int t = 0; t < ntenants; t++)
		for (int s = 0; s < tenants[t].nstreams; s++) {
			int c = n->per_stream[tenants[t].slot0 + s];
			if (c <= 0)
				continue;
			frontdesk__v1__stream_viewers__init(&sv[nsv]);
			sv[nsv].tenant_id = tenants[t].id;
			sv[nsv].stream_id = tenants[t].streams[s];
			sv[nsv].viewers = c;
			psv[nsv] = &sv[nsv];
			nsv++;
		}
	Frontdesk__V1__NodeLoad load = FRONTDESK__V1__NODE_LOAD__INIT;
	load.active_connections = n->cur;
	load.egress_mbps = (double)n->cur * bitrate_kbps / 1000.0;
	load.cpu_percent = n->max_conn ? 80.0 * n->cur / n->max_conn : 0;
	if (load.cpu_percent > 100)
		load.cpu_percent = 100;
	load.n_stream_viewers = nsv;
	load.stream_viewers = psv;
	load.measured_at = (int64_t)time(NULL);
	Frontdesk__V1__StreamHeartbeatsRequest req = FRONTDESK__V1__STREAM_HEARTBEATS_REQUEST__INIT;
	req.load = &load;
	req.sequence = ++n->seq;
	size_t len = protobuf_c_message_get_packed_size(&req.base);
	grpc_slice s = grpc_slice_malloc(len);
	protobuf_c_message_pack(&req.base, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	grpc_op ops[2];
	memset(ops, 0, sizeof(ops));
	int nops = 0;
	if (n->seq == 1) {
		ops[nops].op = GRPC_OP_SEND_INITIAL_METADATA;
		ops[nops].data.send_initial_metadata.count = 1;
		ops[nops].data.send_initial_metadata.metadata = &n->md;
		nops++;
	}
	ops[nops].op = GRPC_OP_SEND_MESSAGE;
	ops[nops].data.send_message.send_message = bb;
	nops++;
	n->sending = 1;
	if (grpc_call_start_batch(n->call, ops, (size_t)nops, &n->t_send, NULL) != GRPC_CALL_OK)
		die("node: SEND refused");
	grpc_byte_buffer_destroy(bb);
	int phase = t_kill > 0;
	if (n->cur > n->rpeak[phase])
		n->rpeak[phase] = n->cur;
}

static grpc_slice read_all(grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader r;
	grpc_slice all = grpc_empty_slice();
	if (bb && grpc_byte_buffer_reader_init(&r, bb)) {
		all = grpc_byte_buffer_reader_readall(&r);
		grpc_byte_buffer_reader_destroy(&r);
	}
	return all;
}

/* Once its status is in and no batch is out, the call is released (and a
 * killed node's channel, which closes its connection). */
static void node_release(node_t *n)
{
	if (!n->ended || n->sending || n->receiving || !n->call)
		return;
	grpc_slice_unref(n->details);
	grpc_metadata_array_destroy(&n->im);
	grpc_metadata_array_destroy(&n->tm);
	grpc_call_unref(n->call);
	n->call = NULL;
	if (n->killed) {
		grpc_channel_destroy(n->ch);
		n->ch = NULL;
	}
}

static void node_event(tag_t *t, int ok)
{
	node_t *n = &nodes[t->idx];
	if (t->kind == T_NODE_SEND) {
		n->sending = 0;
		node_release(n);
		return;
	}
	if (t->kind == T_NODE_STATUS) {
		n->ended = 1;
		if (!n->killed && !stopping && n->status != GRPC_STATUS_OK) {
			char *d = grpc_slice_to_c_string(n->details);
			fprintf(stderr, "bench_kickoff: node %" PRId64 ": heartbeat stream ended: status %d: %s\n", n->id,
			        (int)n->status, d);
			gpr_free(d);
		}
		node_release(n);
		return;
	}
	/* T_NODE_RECV */
	n->receiving = 0;
	if (!ok || !n->reply) {
		if (n->reply)
			grpc_byte_buffer_destroy(n->reply);
		n->reply = NULL;
		node_release(n);
		return;   /* the stream ended: its status follows (or came) */
	}
	grpc_slice all = read_all(n->reply);
	grpc_byte_buffer_destroy(n->reply);
	n->reply = NULL;
	Frontdesk__V1__StreamHeartbeatsResponse *r = frontdesk__v1__stream_heartbeats_response__unpack(
		NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
	grpc_slice_unref(all);
	if (r && r->directive) {
		n->answered++;
		n->up = r->directive->health == FRONTDESK__V1__NODE_HEALTH__NODE_HEALTH_UP;
		if (r->directive->heartbeat_interval_ms > 0)
			n->interval = r->directive->heartbeat_interval_ms / 1000.0;
	}
	if (r)
		frontdesk__v1__stream_heartbeats_response__free_unpacked(r, NULL);
	if (!n->killed && !n->ended && !stopping)
		node_recv(n);
	node_release(n);
}

/* The node dies: its stream cancelled (routerd sees it broken) and its
 * connection closed once the call is released, as a killed process's. */
static void node_kill(node_t *n)
{
	n->killed = 1;
	if (n->call)
		grpc_call_cancel(n->call, NULL);
}

/* ---- WatchNodes ---- */

static void watch_recv(void)
{
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &w_reply;
	if (grpc_call_start_batch(wcall, &op, 1, &w_recv, NULL) != GRPC_CALL_OK)
		die("watch: RECV refused");
}

static void watch_open(const char *target)
{
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	wch = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	wcall = grpc_channel_create_call(wch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
	                                 grpc_slice_from_static_string("/frontdesk.v1.RoutingService/WatchNodes"), NULL,
	                                 gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_metadata_array_init(&w_im);
	grpc_metadata_array_init(&w_tm);
	w_md.key = grpc_slice_from_static_string("authorization");
	w_md.value = grpc_slice_from_copied_string(admin_auth);
	Frontdesk__V1__WatchNodesRequest req = FRONTDESK__V1__WATCH_NODES_REQUEST__INIT;
	req.all_tenants = 1;
	req.snapshot_interval_seconds = -1;
	size_t len = protobuf_c_message_get_packed_size(&req.base);
	grpc_slice s = grpc_slice_malloc(len);
	protobuf_c_message_pack(&req.base, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	grpc_op ops[4];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = 1;
	ops[0].data.send_initial_metadata.metadata = &w_md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &w_im;
	if (grpc_call_start_batch(wcall, ops, 4, &w_start, NULL) != GRPC_CALL_OK)
		die("watch: start refused");
	grpc_byte_buffer_destroy(bb);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &w_tm;
	ops[0].data.recv_status_on_client.status = &w_code;
	ops[0].data.recv_status_on_client.status_details = &w_details;
	if (grpc_call_start_batch(wcall, ops, 1, &w_status, NULL) != GRPC_CALL_OK)
		die("watch: status refused");
	watch_recv();
}

static void watch_event(tag_t *t, int ok)
{
	if (t->kind == T_WATCH_START)
		return;
	if (t->kind == T_WATCH_STATUS) {
		w_ended = 1;
		if (!stopping && w_code != GRPC_STATUS_OK) {
			char *d = grpc_slice_to_c_string(w_details);
			fprintf(stderr, "bench_kickoff: WatchNodes ended: status %d: %s\n", (int)w_code, d);
			gpr_free(d);
		}
		return;
	}
	if (!ok || !w_reply)
		return;
	w_open = 1;
	grpc_slice all = read_all(w_reply);
	grpc_byte_buffer_destroy(w_reply);
	w_reply = NULL;
	Frontdesk__V1__WatchNodesResponse *r =
		frontdesk__v1__watch_nodes_response__unpack(NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
	grpc_slice_unref(all);
	if (r && r->payload_case == FRONTDESK__V1__WATCH_NODES_RESPONSE__PAYLOAD_EVENT && r->event && r->event->node) {
		int i = node_index(r->event->node->id);
		double now = mono();
		switch (r->event->type) {
		case FRONTDESK__V1__NODE_EVENT_TYPE__NODE_EVENT_TYPE_DOWN:
			if (i >= 0 && i == victim && t_kill > 0 && !t_seen)
				t_seen = now;
			else if (i >= 0 && i != victim && t0 > 0) {
				down_others++;
				other_down_node = i;
				nodes[i].events_down++;
			}
			break;
		case FRONTDESK__V1__NODE_EVENT_TYPE__NODE_EVENT_TYPE_OVERLOADED:
			if (i >= 0)
				nodes[i].events_over++;
			over_events++;
			break;
		case FRONTDESK__V1__NODE_EVENT_TYPE__NODE_EVENT_TYPE_RECOVERED:
			recovered_events++;
			break;
		default:
			break;
		}
	}
	if (r)
		frontdesk__v1__watch_nodes_response__free_unpacked(r, NULL);
	if (!w_ended && !stopping)
		watch_recv();
}

/* ---- viewers: AuthorizePlayback and SessionHeartbeat ---- */

static const char *COUNTRIES[10] = { "GB", "GB", "GB", "GB", "US", "US", "US", "DE", "DE", "IN" };

static int get_call(void)
{
	if (free_call < 0)
		return -1;
	int i = free_call;
	free_call = calls[i].next_free;
	outstanding++;
	return i;
}

static void put_call(int i)
{
	calls[i].next_free = free_call;
	free_call = i;
	outstanding--;
}

static void start_unary(int ci, int conn, int auth, grpc_slice payload)
{
	cctx_t *c = &calls[ci];
	c->call = grpc_channel_create_registered_call(lch[conn], NULL, GRPC_PROPAGATE_DEFAULTS, cq,
	                                              auth ? h_auth[conn] : h_heartbeat[conn],
	                                              gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
	                                                           gpr_time_from_seconds(CALL_TIMEOUT_S, GPR_TIMESPAN)),
	                                              NULL);
	grpc_metadata_array_init(&c->im);
	grpc_metadata_array_init(&c->tm);
	c->reply = NULL;
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&payload, 1);
	grpc_op ops[6];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = 1;
	ops[0].data.send_initial_metadata.metadata = &edge_md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->im;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &c->reply;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &c->tm;
	ops[5].data.recv_status_on_client.status = &c->status;
	ops[5].data.recv_status_on_client.status_details = &c->details;
	c->sent = mono();
	if (grpc_call_start_batch(c->call, ops, 6, &c->tag, NULL) != GRPC_CALL_OK)
		die("unary: start refused");
	grpc_byte_buffer_destroy(bb);
}

/* Viewer v's AuthorizePlayback, due at sched. 0, or -1 with no call free. */
static int start_auth(int vi, double sched)
{
	int ci = get_call();
	if (ci < 0)
		return -1;
	viewer_t *v = &viewers[vi];
	tenant_t *t = &tenants[v->tenant];
	char user[32], ip[32];
	snprintf(user, sizeof(user), "%lld", t->u0 + v->line);
	snprintf(ip, sizeof(ip), "198.%d.%d.%d", 18 + (vi >> 16), (vi >> 8) & 255, vi & 255);
	Frontdesk__V1__AuthorizePlaybackRequest req = FRONTDESK__V1__AUTHORIZE_PLAYBACK_REQUEST__INIT;
	req.tenant_id = t->id;
	req.username = user;
	req.password = t->password;
	req.stream_id = t->streams[v->stream];
	req.client_ip = ip;
	req.user_agent = "kickoff-player/1.0";
	req.output_format = FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_TS;
	/* a fixed mix, spread over the viewers by a multiplicative hash */
	req.client_country = (char *)COUNTRIES[(unsigned)((uint32_t)vi * 2654435761u >> 16) % 10];
	size_t len = protobuf_c_message_get_packed_size(&req.base);
	grpc_slice s = grpc_slice_malloc(len);
	protobuf_c_message_pack(&req.base, GRPC_SLICE_START_PTR(s));
	cctx_t *c = &calls[ci];
	c->kind = K_AUTH;
	c->viewer = vi;
	c->sched = sched;
	v->state = V_JOINING;
	start_unary(ci, next_conn++ % nconns, 1, s);
	grpc_slice_unref(s);
	return 0;
}

static int start_beat(int vi, double sched)
{
	int ci = get_call();
	if (ci < 0)
		return -1;
	viewer_t *v = &viewers[vi];
	Frontdesk__V1__SessionHeartbeatRequest req = FRONTDESK__V1__SESSION_HEARTBEAT_REQUEST__INIT;
	req.tenant_id = tenants[v->tenant].id;
	req.session_id = v->session;
	size_t len = protobuf_c_message_get_packed_size(&req.base);
	grpc_slice s = grpc_slice_malloc(len);
	protobuf_c_message_pack(&req.base, GRPC_SLICE_START_PTR(s));
	cctx_t *c = &calls[ci];
	c->kind = K_BEAT;
	c->viewer = vi;
	c->sched = sched;
	v->beating = 1;
	beats_sent++;
	start_unary(ci, next_conn++ % nconns, 0, s);
	grpc_slice_unref(s);
	return 0;
}

/* An answer named node index n for viewer v (its request sent at `sent`):
 * the failover's accounting, then the viewer moves there. */
static void named(viewer_t *v, int n, double sent, double now, int is_auth, int node_changed)
{
	if (victim >= 0 && n == victim) {
		dead_last_named = now;
		if (sent >= t_kill) {
			int is_new = is_auth || v->node != victim;
			if (is_new)
				dead_new_after_kill++;
			else
				dead_beat_after_kill++;
			if (ndead_ans == cap_dead_ans) {
				cap_dead_ans = cap_dead_ans ? cap_dead_ans * 2 : 1024;
				dead_ans_t *more = realloc(dead_ans, cap_dead_ans * sizeof(*more));
				if (!more)
					die("out of memory");
				dead_ans = more;
			}
			dead_ans[ndead_ans++] = (dead_ans_t){ sent, is_new };
		}
		if (!is_auth && node_changed)
			dead_changed_to++;
	}
	if (v->victim && !v->moved_at && n >= 0 && n != victim) {
		v->moved_at = now;
		nodes[n].received++;
	}
	if (n != v->node) {
		if (!is_auth) {
			changed++;
			if (v->victim && v->node == victim)
				changed_victims++;
			else
				changed_others++;
			if (!node_changed)
				changed_silent++;
		}
		place(v, v->node, -1);
		v->node = n;
		place(v, n, +1);
	}
}

static void unary_done(cctx_t *c, double now)
{
	viewer_t *v = &viewers[c->viewer];
	double lat = now - c->sched;
	grpc_slice all = grpc_empty_slice();
	if (c->status == GRPC_STATUS_OK)
		all = read_all(c->reply);
	else
		statuses[c->status < 20 ? c->status : 19]++;
	if (c->kind == K_AUTH) {
		hist_add(v->late ? &h_late : &h_join, lat);
		Frontdesk__V1__AuthorizePlaybackResponse *r = c->status == GRPC_STATUS_OK
			? frontdesk__v1__authorize_playback_response__unpack(NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all))
			: NULL;
		if (!v->late && c->status == GRPC_STATUS_OK && now <= join_end_sched)
			join_in_window++;
		if (!r) {
			v->state = V_FAILED;
			if (v->late)
				late_failed++;
			else
				join_failed++;
		} else if (!r->allowed) {
			v->state = V_FAILED;
			denials[r->denial_reason < 32 ? r->denial_reason : 31]++;
			if (v->late)
				late_denied++;
			else
				join_denied++;
		} else {
			if (v->late)
				late_ok++;
			else
				join_ok++;
			if (!beat_s && r->recheck_after_seconds > 0)
				hb_s = beat_s = r->recheck_after_seconds;
			v->state = V_PLAYING;
			v->session = r->session_id;
			int n = r->node ? node_index(r->node->node_id) : -1;
			if (n < 0)
				no_node_answers++;
			named(v, n, c->sent, now, 1, 0);
			v->next_beat = now + hb_s;
			heap_push(v->next_beat, c->viewer);
		}
		if (r)
			frontdesk__v1__authorize_playback_response__free_unpacked(r, NULL);
		if (!v->late && (join_ok + join_denied + join_failed) == (unsigned long)njoin)
			t_join_done = now;
	} else {
		hist_add(&h_beat, lat);
		if (t_kill > 0 && c->sched >= t_kill)
			hist_add(&h_beat_fo, lat);
		v->beating = 0;
		Frontdesk__V1__SessionHeartbeatResponse *r = c->status == GRPC_STATUS_OK
			? frontdesk__v1__session_heartbeat_response__unpack(NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all))
			: NULL;
		if (!r) {
			beats_failed++;
		} else if (!r->active) {
			beats_inactive++;
			end_reasons[r->end_reason < 16 ? r->end_reason : 15]++;
			if (v->victim && !v->moved_at)
				victims_ended++;
			place(v, v->node, -1);
			v->node = -1;
			v->state = V_ENDED;
		} else {
			beats_ok++;
			int n = r->node ? node_index(r->node->node_id) : -1;
			if (n < 0)
				no_node_answers++;
			else
				named(v, n, c->sent, now, 0, r->node_changed);
		}
		if (!v->beat_done && !v->late) {   /* answered, whatever the answer */
			v->beat_done = 1;
			beaten++;
		}
		if (r)
			frontdesk__v1__session_heartbeat_response__free_unpacked(r, NULL);
	}
	grpc_slice_unref(all);
	if (c->reply)
		grpc_byte_buffer_destroy(c->reply);
	grpc_slice_unref(c->details);
	grpc_metadata_array_destroy(&c->im);
	grpc_metadata_array_destroy(&c->tm);
	grpc_call_unref(c->call);
}

/* ---- the inputs ---- */

static char *read_token(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die("cannot open a token file");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len = getline(&line, &cap, f);
	fclose(f);
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
		line[--len] = '\0';
	if (len <= 0)
		die("an empty token file");
	char *v = xcalloc((size_t)len + 8, 1);
	snprintf(v, (size_t)len + 8, "Bearer %s", line);
	free(line);
	return v;
}

static void read_plan(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die("--plan: cannot open");
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '\n' || line[0] == '#')
			continue;
		if (ntenants == MAX_TENANTS)
			die("--plan: too many tenants");
		tenant_t *t = &tenants[ntenants];
		char streams[512];
		if (sscanf(line, "%" SCNd64 " %lld %ld %79s %511s", &t->id, &t->u0, &t->nlines, t->password, streams) != 5)
			die("--plan: a line is not `tenant u0 lines password streams`");
		for (char *tok = strtok(streams, ","); tok && t->nstreams < MAX_STREAMS; tok = strtok(NULL, ","))
			t->streams[t->nstreams++] = strtoll(tok, NULL, 10);
		if (t->nstreams == 0 || t->nlines <= 0)
			die("--plan: a tenant without lines or streams");
		t->slot0 = nslots;
		nslots += t->nstreams;
		ntenants++;
	}
	fclose(f);
	if (!ntenants)
		die("--plan: no tenant");
}

static void read_nodes(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die("--nodes: cannot open");
	char line[1024], key[512];
	int cap = 0;
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '\n' || line[0] == '#')
			continue;
		if (nnodes == cap) {
			cap = cap ? cap * 2 : 256;
			node_t *more = realloc(nodes, (size_t)cap * sizeof(*more));
			if (!more)
				die("out of memory");
			nodes = more;
		}
		node_t *n = &nodes[nnodes];
		memset(n, 0, sizeof(*n));
		if (sscanf(line, "%" SCNd64 " %31s %d %d %511s", &n->id, n->region, &n->max_conn, &n->high_water, key) != 5)
			die("--nodes: a line is not `id region max_connections high_water key`");
		n->key = strdup(key);
		nnodes++;
	}
	fclose(f);
	if (!nnodes)
		die("--nodes: no node");
	qsort(nodes, (size_t)nnodes, sizeof(*nodes), cmp_node);
}

/* Viewer i's tenant: the one furthest behind its share of the lines (an
 * even interleave, in proportion to each tenant's lines). */
static void assign(viewer_t *v, long total_lines)
{
	int best = -1;
	double best_r = 0;
	for (int t = 0; t < ntenants; t++) {
		if (tenants[t].used >= tenants[t].nlines)
			continue;
		double r = (double)(tenants[t].used + 1) / (double)tenants[t].nlines;
		if (best < 0 || r < best_r)
			best = t, best_r = r;
	}
	(void)total_lines;
	if (best < 0)
		die("more viewers than lines");
	v->tenant = best;
	v->line = tenants[best].used++;
	v->stream = (int)(v->line % tenants[best].nstreams);
	v->node = -1;
}

static void parse_pids(const char *arg, procs_t *p)
{
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", arg);
	for (char *tok = strtok(buf, ","); tok && p->n < MAX_PROCS; tok = strtok(NULL, ",")) {
		char *eq = strchr(tok, '=');
		if (!eq)
			die("--pids: name=PID,...");
		*eq = '\0';
		snprintf(p->name[p->n], sizeof(p->name[p->n]), "%s", tok);
		p->pid[p->n++] = atoi(eq + 1);
	}
}

/* routerd's log line `node ID: heartbeat stream broken|closed` after the
 * kill (its time is UTC to the millisecond), on the monotonic clock; 0 if
 * none. */
static double routerd_saw(const char *path, int64_t id)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char line[2048], want[64];
	snprintf(want, sizeof(want), "node %" PRId64 ": heartbeat stream ", id);
	double found = 0;
	while (!found && fgets(line, sizeof(line), f)) {
		struct tm tm;
		int ms = 0;
		memset(&tm, 0, sizeof(tm));
		if (!strstr(line, want) ||
		    sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
		           &tm.tm_sec, &ms) != 7)
			continue;
		tm.tm_year -= 1900;
		tm.tm_mon -= 1;
		double real = (double)timegm(&tm) + ms / 1000.0;
		if (real >= t_kill_real - 0.002)
			found = t_kill + (real - t_kill_real);
	}
	fclose(f);
	return found;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v)
{
	const ProtobufCEnumValue *e = protobuf_c_enum_descriptor_get_value(d, v);
	return e ? e->name : "?";
}

/* The time by which a fraction q of the n victims had moved (delays sorted,
 * m of them moved): -1 if fewer moved. */
static double moved_by(const double *d, int m, int n, double q)
{
	int need = (int)ceil(q * n);
	if (need < 1)
		need = 1;
	return m >= need ? d[need - 1] : -1;
}

static void fmt_s(char *buf, size_t len, double s)
{
	if (s < 0)
		snprintf(buf, len, "not reached");
	else
		snprintf(buf, len, "%.3f s", s);
}

int main(int argc, char **argv)
{
	const char *linesd = NULL, *routerd = NULL, *edge_file = NULL, *admin_file = NULL, *nodes_file = NULL,
		   *plan_file = NULL, *pids = "", *routerd_log = NULL;
	double join_s = 10, late_rate = 100, kill_at = 0, after_kill = 25;
	int nview = 50000, max_out = 8192;
	procs_t procs = { 0 };
	nconns = 8;
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (!strcmp(k, "--linesd")) linesd = v;
		else if (!strcmp(k, "--routerd")) routerd = v;
		else if (!strcmp(k, "--edge-token-file")) edge_file = v;
		else if (!strcmp(k, "--admin-token-file")) admin_file = v;
		else if (!strcmp(k, "--nodes")) nodes_file = v;
		else if (!strcmp(k, "--plan")) plan_file = v;
		else if (!strcmp(k, "--viewers")) nview = atoi(v);
		else if (!strcmp(k, "--join-seconds")) join_s = atof(v);
		else if (!strcmp(k, "--late-rate")) late_rate = atof(v);
		else if (!strcmp(k, "--kill-at")) kill_at = atof(v);
		else if (!strcmp(k, "--after-kill")) after_kill = atof(v);
		else if (!strcmp(k, "--conns")) nconns = atoi(v);
		else if (!strcmp(k, "--bitrate-kbps")) bitrate_kbps = atoi(v);
		else if (!strcmp(k, "--max-outstanding")) max_out = atoi(v);
		else if (!strcmp(k, "--pids")) pids = v;
		else if (!strcmp(k, "--postmaster")) procs.postmaster = atoi(v);
		else if (!strcmp(k, "--routerd-log")) routerd_log = v;
		else { fprintf(stderr, "bench_kickoff: unknown option %s\n", k); return 2; }
	}
	if (!linesd || !routerd || !edge_file || !admin_file || !nodes_file || !plan_file || nview < 1 || join_s <= 0 ||
	    nconns < 1 || max_out < 16 || late_rate < 0 || after_kill <= 0) {
		fprintf(stderr, "bench_kickoff: see the usage in bench/kickoff.c's header\n");
		return 2;
	}
	parse_pids(pids, &procs);
	edge_auth = read_token(edge_file);
	admin_auth = read_token(admin_file);
	read_plan(plan_file);
	read_nodes(nodes_file);
	long total_lines = 0;
	for (int t = 0; t < ntenants; t++)
		total_lines += tenants[t].nlines;
	if (nview > total_lines)
		die("--viewers: more than the plan's lines");
	/* the late joiners: as many as the run can take, on the lines left */
	double run_after_join = kill_at > join_s ? kill_at - join_s + after_kill : 15 + after_kill;
	long nlate = (long)(late_rate * (run_after_join + 30));
	if (nlate > total_lines - nview)
		nlate = total_lines - nview;
	njoin = nview;
	nviewers = nview + (int)nlate;
	viewers = xcalloc((size_t)nviewers, sizeof(*viewers));
	for (int i = 0; i < nviewers; i++) {
		assign(&viewers[i], total_lines);
		viewers[i].late = i >= njoin;
	}
	heap = xcalloc((size_t)nviewers + 1, sizeof(*heap));
	calls = xcalloc((size_t)max_out, sizeof(*calls));
	ncalls = max_out;
	for (int i = ncalls - 1; i >= 0; i--) {
		calls[i].tag = (tag_t){ T_UNARY, i };
		calls[i].next_free = free_call;
		free_call = i;
	}
	hist_init(&h_join);
	hist_init(&h_late);
	hist_init(&h_beat);
	hist_init(&h_beat_fo);

	grpc_init();
	cq = grpc_completion_queue_create_for_next(NULL);
	grpc_arg a = { .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .value.integer = 1 };
	grpc_channel_args args = { 1, &a };
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	lch = xcalloc((size_t)nconns, sizeof(*lch));
	h_auth = xcalloc((size_t)nconns, sizeof(*h_auth));
	h_heartbeat = xcalloc((size_t)nconns, sizeof(*h_heartbeat));
	for (int i = 0; i < nconns; i++) {
		lch[i] = grpc_channel_create(linesd, creds, &args);
		h_auth[i] = grpc_channel_register_call(lch[i], "/frontdesk.v1.LinesService/AuthorizePlayback", NULL, NULL);
		h_heartbeat[i] = grpc_channel_register_call(lch[i], "/frontdesk.v1.LinesService/SessionHeartbeat", NULL, NULL);
	}
	edge_md.key = grpc_slice_from_static_string("authorization");
	edge_md.value = grpc_slice_from_copied_string(edge_auth);
	for (int i = 0; i < nnodes; i++) {
		node_t *n = &nodes[i];
		n->t_send = (tag_t){ T_NODE_SEND, i };
		n->t_recv = (tag_t){ T_NODE_RECV, i };
		n->t_status = (tag_t){ T_NODE_STATUS, i };
		n->per_stream = xcalloc((size_t)nslots, sizeof(int));
		n->interval = 1.0;
		char *bearer = xcalloc(strlen(n->key) + 8, 1);
		sprintf(bearer, "Bearer %s", n->key);
		n->md.key = grpc_slice_from_static_string("authorization");
		n->md.value = grpc_slice_from_copied_string(bearer);
		free(bearer);
		n->ch = grpc_channel_create(routerd, creds, &args);   /* a connection of its own */
	}
	grpc_channel_credentials_release(creds);
	watch_open(routerd);

	/* ---- the fleet comes up: every node's first report answered UP ---- */
	double *next_report = xcalloc((size_t)nnodes, sizeof(double));
	double start = mono();
	for (int i = 0; i < nnodes; i++) {
		node_open(&nodes[i]);
		node_report(&nodes[i]);
		next_report[i] = start + nodes[i].interval * (1.0 + (double)i / nnodes);  /* spread over an interval */
	}
	double last_scan = 0, settle_until = 0;
	for (;;) {
		double now = mono();
		int up = 0;
		for (int i = 0; i < nnodes; i++)
			up += nodes[i].up;
		if (up == nnodes && !settle_until)
			settle_until = now + 2.0;   /* linesd's follower sees them UP too */
		if (settle_until && now >= settle_until)
			break;
		if (now - start > 20)
			die("the nodes did not all come up within 20 s (see routerd's log)");
		for (int i = 0; i < nnodes; i++)
			if (next_report[i] <= now) {
				node_report(&nodes[i]);
				next_report[i] += nodes[i].interval;
			}
		grpc_event ev = grpc_completion_queue_next(cq, deadline_in(0.005), NULL);
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		tag_t *t = ev.tag;
		if (t->kind >= T_WATCH_START)
			watch_event(t, ev.success);
		else if (t->kind != T_UNARY)
			node_event(t, ev.success);
	}
	printf("kickoff %d nodes UP in %.2f s (report interval %.1f s); %d tenants, %ld lines; %d viewers over %.0f s "
	       "(%.0f/s offered), late joiners %.0f/s (%ld at most); %d connections to linesd\n",
	       nnodes, mono() - start, nodes[0].interval, ntenants, total_lines, njoin, join_s, njoin / join_s, late_rate,
	       nlate, nconns);
	fflush(stdout);

	/* ---- the kickoff ---- */
	cpu_mark_t m_start, m_join, m_kill, m_end;
	cpu_mark(&procs, &m_start);
	t0 = mono();
	join_end_sched = t0 + join_s;
	double rate = njoin / join_s, late_t0 = 0;
	int next_join = 0, next_late = njoin, ending = 0, join_marked = 0;
	unsigned long auth_at_join_mark = 0;
	double last_pass = mono();
	for (;;) {
		double now = mono();
		if (now - last_pass > max_gap[t_kill > 0])
			max_gap[t_kill > 0] = now - last_pass;
		last_pass = now;
		int budget = 256;   /* calls started a pass, so answers are taken in between */
		while (!ending && budget > 0 && next_join < njoin && t0 + next_join / rate <= now) {
			if (start_auth(next_join, t0 + next_join / rate) < 0) {
				start_delayed++;
				break;
			}
			next_join++;
			budget--;
		}
		if (!late_t0 && next_join == njoin)
			late_t0 = join_end_sched;
		while (!ending && budget > 0 && late_rate > 0 && late_t0 && next_late < nviewers &&
		       late_t0 + (next_late - njoin) / late_rate <= now) {
			if (start_auth(next_late, late_t0 + (next_late - njoin) / late_rate) < 0) {
				start_delayed++;
				break;
			}
			next_late++;
			budget--;
		}
		while (!ending && budget > 0 && nheap && heap[0].t <= now) {
			due_t d = heap[0];
			viewer_t *v = &viewers[d.v];
			if (v->state != V_PLAYING) {
				heap_pop();
				continue;
			}
			if (v->beating) {   /* the last one is still out: this one is skipped */
				beats_skipped++;
				heap_pop();
				heap_push(d.t + hb_s, d.v);
				continue;
			}
			if (start_beat(d.v, d.t) < 0) {
				start_delayed++;
				break;
			}
			heap_pop();
			heap_push(d.t + hb_s, d.v);
			budget--;
		}
		if (now - last_scan >= 0.005) {
			last_scan = now;
			for (int i = 0; i < nnodes; i++)
				if (next_report[i] <= now) {
					node_report(&nodes[i]);
					next_report[i] += nodes[i].interval;
					if (next_report[i] < now)
						next_report[i] = now + nodes[i].interval;
				}
		}
		if (!join_marked && t_join_done > 0) {
			join_marked = 1;
			cpu_mark(&procs, &m_join);
			auth_at_join_mark = join_ok + join_denied + join_failed + late_ok + late_denied + late_failed;
		}
		if (!t_beaten && t_join_done > 0 && beaten >= (long)join_ok)
			t_beaten = now;
		if (victim < 0 && ((t_beaten > 0 && now >= t_beaten + 1.0 && now >= t0 + kill_at) ||
		                   now >= t0 + join_s + 180)) {
			int best = 0;
			for (int i = 1; i < nnodes; i++)
				if (nodes[i].cur > nodes[best].cur)
					best = i;
			victim = best;
			for (int i = 0; i < nviewers; i++)
				if (viewers[i].state == V_PLAYING && viewers[i].node == victim) {
					viewers[i].victim = 1;
					nvictims++;
				}
			if (!join_marked) {
				join_marked = 1;
				cpu_mark(&procs, &m_join);
			}
			/* each region's load at the kill */
			printf("at the kill (t=%.1f s):", now - t0);
			for (int i = 0; i < nnodes; i++) {
				int seen = 0;
				for (int j = 0; j < i; j++)
					seen |= !strcmp(nodes[j].region, nodes[i].region);
				if (seen)
					continue;
				long cur = 0, cap = 0;
				int cnt = 0;
				for (int j = i; j < nnodes; j++)
					if (!strcmp(nodes[j].region, nodes[i].region)) {
						cur += nodes[j].cur;
						cap += nodes[j].max_conn;
						cnt++;
					}
				printf(" %s %ld viewers on %d nodes (%.0f%% of %ld)", nodes[i].region, cur, cnt,
				       cap ? 100.0 * cur / cap : 0, cap);
			}
			printf("\n");
			cpu_mark(&procs, &m_kill);
			struct timespec rt;
			clock_gettime(CLOCK_REALTIME, &rt);
			t_kill = mono();
			t_kill_real = (double)rt.tv_sec + (double)rt.tv_nsec / 1e9;
			node_kill(&nodes[victim]);
			fflush(stdout);
		}
		if (t_kill > 0 && !ending && now >= t_kill + after_kill) {
			ending = 1;
			t_end = now;
			cpu_mark(&procs, &m_end);
		}
		if (ending && (outstanding == 0 || now > t_end + DRAIN_S))
			break;
		/* The answers and events in: at most 128 a pass, so the calls due
		 * start on time while answers keep coming. */
		grpc_event ev = grpc_completion_queue_next(cq, budget == 0 ? gpr_time_0(GPR_CLOCK_MONOTONIC)
		                                                           : deadline_in(0.002), NULL);
		for (int taken = 0; ev.type == GRPC_OP_COMPLETE; taken++) {
			tag_t *t = ev.tag;
			if (t->kind == T_UNARY) {
				cctx_t *c = &calls[t->idx];
				unary_done(c, mono());
				put_call(t->idx);
			} else if (t->kind >= T_WATCH_START) {
				watch_event(t, ev.success);
			} else {
				node_event(t, ev.success);
			}
			if (taken == 127)
				break;
			ev = grpc_completion_queue_next(cq, gpr_time_0(GPR_CLOCK_MONOTONIC), NULL);
		}
	}
	int left = outstanding;

	/* ---- the nodes and the watch stop; everything is released ---- */
	stopping = 1;
	for (int i = 0; i < nnodes; i++)
		if (nodes[i].call)
			grpc_call_cancel(nodes[i].call, NULL);
	if (wcall)
		grpc_call_cancel(wcall, NULL);
	double stop = mono();
	for (;;) {
		int busy = outstanding > 0 || (wcall && !w_ended);
		for (int i = 0; i < nnodes; i++)
			busy |= nodes[i].call != NULL;
		if (!busy || mono() - stop > 10)
			break;
		grpc_event ev = grpc_completion_queue_next(cq, deadline_in(0.05), NULL);
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		tag_t *t = ev.tag;
		if (t->kind == T_UNARY) {
			unary_done(&calls[t->idx], mono());
			put_call(t->idx);
		} else if (t->kind >= T_WATCH_START) {
			watch_event(t, ev.success);
		} else {
			node_event(t, ev.success);
		}
	}

	/* ---- what it came to ---- */
	double offered = njoin / join_s, took = t_join_done > 0 ? t_join_done - t0 : mono() - t0;
	unsigned long answered = join_ok + join_denied + join_failed;
	printf("join offered=%.0f/s achieved=%.0f/s (answered OK within the %.0f s window: %lu of %d) "
	       "all_answered_in=%.2f s (%.0f/s) allowed=%lu denied=%lu failed=%lu p50_ms=%.1f p99_ms=%.1f "
	       "p999_ms=%.1f max_ms=%.1f starts_delayed_by_the_outstanding_cap=%lu\n",
	       offered, join_in_window / join_s, join_s, join_in_window, njoin, took, answered / took, join_ok, join_denied,
	       join_failed, hist_pct(&h_join, 0.5), hist_pct(&h_join, 0.99), hist_pct(&h_join, 0.999), h_join.max * 1e3,
	       start_delayed);
	for (int i = 0; i < 32; i++)
		if (denials[i])
			printf("denied reason=%s n=%lu\n", enum_name(&frontdesk__v1__denial_reason__descriptor, i), denials[i]);
	for (int i = 0; i < 20; i++)
		if (statuses[i])
			printf("failed grpc_status=%d n=%lu\n", i, statuses[i]);
	printf("late_joins allowed=%lu denied=%lu failed=%lu p50_ms=%.1f p99_ms=%.1f\n", late_ok, late_denied,
	       late_failed, hist_pct(&h_late, 0.5), hist_pct(&h_late, 0.99));
	printf("heartbeats interval=%.0f s sent=%lu ok=%lu failed=%lu inactive=%lu skipped_still_out=%lu p50_ms=%.1f "
	       "p99_ms=%.1f max_ms=%.1f node_changed=%lu (dead node's viewers %lu, others %lu; without node_changed %lu) "
	       "answers_without_a_node=%lu; scheduled after the kill: p50_ms=%.1f p99_ms=%.1f\n",
	       hb_s, beats_sent, beats_ok, beats_failed, beats_inactive, beats_skipped, hist_pct(&h_beat, 0.5),
	       hist_pct(&h_beat, 0.99), h_beat.max * 1e3, changed, changed_victims, changed_others, changed_silent,
	       no_node_answers, hist_pct(&h_beat_fo, 0.5), hist_pct(&h_beat_fo, 0.99));
	printf("driver longest_loop_pass_ms before_kill=%.1f after_kill=%.1f (how late it could have seen an answer or "
	       "an event)\n", max_gap[0] * 1e3, max_gap[1] * 1e3);
	for (int i = 0; i < 16; i++)
		if (end_reasons[i])
			printf("ended reason=%s n=%lu\n", enum_name(&frontdesk__v1__session_end_reason__descriptor, i),
			       end_reasons[i]);

	node_t *dv = victim >= 0 ? &nodes[victim] : NULL;
	/* When routerd itself saw the death: its log line for the victim's
	 * stream, placed on this clock through the kill's two clocks; else the
	 * DOWN event as received here. */
	double t_log = 0;
	if (dv && routerd_log)
		t_log = routerd_saw(routerd_log, dv->id);
	double t_death = t_log > 0 ? t_log : t_seen;
	unsigned long dead_new_after_seen = 0, dead_beat_after_seen = 0;
	for (size_t i = 0; i < ndead_ans; i++)
		if (t_death > 0 && dead_ans[i].sent >= t_death)
			(void)(dead_ans[i].is_new ? dead_new_after_seen++ : dead_beat_after_seen++);
	double *d_seen = xcalloc((size_t)nvictims + 1, sizeof(double)), *d_kill = xcalloc((size_t)nvictims + 1, sizeof(double));
	int moved = 0;
	for (int i = 0; i < nviewers; i++)
		if (viewers[i].victim && viewers[i].moved_at > 0) {
			d_seen[moved] = t_death > 0 ? viewers[i].moved_at - t_death : -1;
			d_kill[moved] = viewers[i].moved_at - t_kill;
			moved++;
		}
	qsort(d_seen, (size_t)moved, sizeof(double), cmp_double);
	qsort(d_kill, (size_t)moved, sizeof(double), cmp_double);
	char s99[32], s100[32], k99[32], k100[32];
	double p99_seen = t_death > 0 ? moved_by(d_seen, moved, nvictims, 0.99) : -1;
	fmt_s(s99, sizeof(s99), p99_seen);
	fmt_s(s100, sizeof(s100), t_death > 0 ? moved_by(d_seen, moved, nvictims, 1.0) : -1);
	fmt_s(k99, sizeof(k99), moved_by(d_kill, moved, nvictims, 0.99));
	fmt_s(k100, sizeof(k100), moved_by(d_kill, moved, nvictims, 1.0));
	if (dv) {
		printf("kill node %" PRId64 " (%s, max_connections %d) at t=%.1f s carrying %d viewers\n", dv->id, dv->region,
		       dv->max_conn, t_kill - t0, nvictims);
		printf("death routerd_saw_it_ms_after_kill=%s down_event_received_ms_after_kill=%s (routerd's own time: its "
		       "log line for the stream, to the millisecond; the DOWN event: WatchNodes as this driver received it)\n",
		       t_log > 0 ? (snprintf(s99, sizeof(s99), "%.1f", (t_log - t_kill) * 1e3), s99) : "unknown",
		       t_seen > 0 ? (snprintf(s100, sizeof(s100), "%.1f", (t_seen - t_kill) * 1e3), s100) : "never");
		fmt_s(s99, sizeof(s99), p99_seen);
		fmt_s(s100, sizeof(s100), t_death > 0 ? moved_by(d_seen, moved, nvictims, 1.0) : -1);
		if (t_death <= 0)
			printf("death: routerd's time unknown: the times below are from the kill only\n");
		printf("failover moved=%d of %d (ended %lu, never moved %d) 99%%: %s after routerd saw the death, %s after "
		       "the kill; 100%%: %s after routerd saw it, %s after the kill; the first moved %.3f s after the kill\n",
		       moved, nvictims, victims_ended, nvictims - moved - (int)victims_ended, s99, k99, s100, k100,
		       moved ? d_kill[0] : -1.0);
		printf("sent_to_dead_after_routerd_saw_it new_placements=%lu heartbeat_answers_still_naming_it=%lu "
		       "(sent after the kill: %lu and %lu; node_changed to it: %lu; the last answer naming it came %.3f s "
		       "after the kill)\n",
		       dead_new_after_seen, dead_beat_after_seen, dead_new_after_kill, dead_beat_after_kill, dead_changed_to,
		       dead_last_named > 0 ? dead_last_named - t_kill : -1.0);
	}
	/* peaks of the other nodes against their high water */
	double worst[2] = { 0, 0 }, rworst[2] = { 0, 0 };
	int worst_i[2] = { -1, -1 }, above[2] = { 0, 0 }, rabove[2] = { 0, 0 }, receivers = 0, most = 0, most_i = -1;
	for (int i = 0; i < nnodes; i++) {
		if (i == victim)
			continue;
		node_t *n = &nodes[i];
		double hw = n->max_conn * n->high_water / 100.0;
		for (int ph = 0; ph < 2; ph++) {
			double r = hw > 0 ? n->peak[ph] / hw : 0, rr = hw > 0 ? n->rpeak[ph] / hw : 0;
			if (r > worst[ph])
				worst[ph] = r, worst_i[ph] = i;
			if (rr > rworst[ph])
				rworst[ph] = rr;
			above[ph] += r > 1.0;
			rabove[ph] += rr > 1.0;
		}
		receivers += n->received > 0;
		if (n->received > most)
			most = n->received, most_i = i;
	}
	for (int ph = 0; ph < 2; ph++) {
		node_t *w = worst_i[ph] >= 0 ? &nodes[worst_i[ph]] : NULL;
		printf("peak_vs_high_water phase=%s max=%.3f (node %" PRId64 " %s: %d viewers, high water %.0f of %d) "
		       "nodes_above=%d reported_max=%.3f reported_above=%d\n",
		       ph ? "after_kill" : "before_kill", worst[ph], w ? w->id : 0, w ? w->region : "-", w ? w->peak[ph] : 0,
		       w ? w->max_conn * w->high_water / 100.0 : 0, w ? w->max_conn : 0, above[ph], rworst[ph], rabove[ph]);
	}
	if (dv) {
		int same = 0, other = 0, rsame = 0;
		for (int i = 0; i < nnodes; i++) {
			if (i == victim || !nodes[i].received)
				continue;
			int in = !strcmp(nodes[i].region, dv->region);
			if (in)
				same += nodes[i].received, rsame++;
			else
				other += nodes[i].received;
		}
		printf("spread the dead node's viewers went to %d nodes, at most %d to one (node %" PRId64 "); %d of them to "
		       "%d nodes in its region (%s), %d to %d nodes elsewhere\n",
		       receivers, most, most_i >= 0 ? nodes[most_i].id : 0, same, rsame, dv->region, other, receivers - rsame);
	}
	printf("routerd_events overloaded=%lu recovered=%lu down_of_other_nodes=%lu%s\n", over_events, recovered_events,
	       down_others, down_others ? " (a node the driver kept reporting went DOWN)" : "");
	if (left)
		printf("calls still out at the end: %d (not counted)\n", left);
	(void)other_down_node;
	/* CPU */
	unsigned long auth_all = join_ok + join_denied + join_failed;
	cpu_print(&procs, "join", &m_start, &m_join, (double)(auth_at_join_mark ? auth_at_join_mark : auth_all),
	          "authorization");
	cpu_print(&procs, "steady", &m_join, &m_kill, 0, "");
	cpu_print(&procs, "failover", &m_kill, &m_end, 0, "");
	cpu_print(&procs, "run", &m_start, &m_end, 0, "");

	/* goals */
	printf("check busiest node carried >= 5000 viewers at the kill: %d: %s\n", nvictims,
	       nvictims >= 5000 ? "ok" : "TOO FEW (the fleet's capacities do not make one node that big)");
	printf("goal 99%% of the dead node's viewers on a live node within one heartbeat interval (%.0f s) after "
	       "routerd saw the death: %s: %s\n",
	       hb_s, s99, p99_seen >= 0 && p99_seen <= hb_s ? "met" : "MISSED");
	printf("goal no other node above its high water (whole run, true load): max %.3f of high water, %d nodes above: "
	       "%s\n",
	       worst[0] > worst[1] ? worst[0] : worst[1], above[0] > above[1] ? above[0] : above[1],
	       worst[0] <= 1.0 && worst[1] <= 1.0 ? "met" : "MISSED");
	printf("goal no viewer sent to the dead node after routerd saw it die: %lu new, %lu heartbeat answers: %s\n",
	       dead_new_after_seen, dead_beat_after_seen,
	       t_death > 0 && dead_new_after_seen + dead_beat_after_seen == 0 ? "met" : "MISSED");
	printf("goal join: every viewer allowed, achieved >= 98%% of offered within the window: %lu of %d allowed, "
	       "%.0f/s of %.0f/s: %s\n",
	       join_ok, njoin, join_in_window / join_s, offered,
	       join_ok == (unsigned long)njoin && join_in_window / join_s >= 0.98 * offered ? "met" : "MISSED");
	fflush(stdout);
	free(d_seen);
	free(d_kill);
	free(next_report);

	for (int i = 0; i < nconns; i++)
		grpc_channel_destroy(lch[i]);
	for (int i = 0; i < nnodes; i++)
		if (nodes[i].ch)
			grpc_channel_destroy(nodes[i].ch);
	if (wcall)
		grpc_call_unref(wcall);
	grpc_channel_destroy(wch);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	grpc_shutdown();
	return 0;
}
