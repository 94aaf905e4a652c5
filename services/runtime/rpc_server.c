/* rpc_server.c - the gRPC server: method table, worker threads, the life of
 * a call (unary and streaming), graceful shutdown.
 *
 * Every call is an fd_call_t. A completion-queue tag is the call's address
 * with the operation in its low bits, so one switch in dispatch() drives
 * every call. Unary calls have one batch in flight at a time and need no
 * lock; streaming calls can have a receive, a send and the close pending at
 * once, so their state is under the call's mutex and the call is freed when
 * its reference count (pending batches + holders) reaches zero. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <grpc/grpc.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include "fd/log.h"
#include "fd/rpc_status.h"
#include "fd/wire.h"
#include "fd/clock.h"
#include "fd/api_index.h"
#include "health.h"

typedef struct fd_method {
	char *path;                              /* "/frontdesk.v1.AuthService/Login" */
	const ProtobufCMethodDescriptor *desc;   /* input and output messages */
	fd_method_kind_t kind;
	fd_unary_fn unary;                       /* NULL and stream NULL: UNIMPLEMENTED */
	const fd_stream_ops_t *stream;
	void *service_ctx;
	void *handle;                            /* from grpc_server_register_method */
} fd_method_t;

enum op {
	OP_NEW = 0,       /* a requested call arrived (or the request failed at shutdown) */
	OP_UNARY_DONE,    /* the reply batch of a unary or rejected call completed */
	OP_CLOSE,         /* RECV_CLOSE_ON_SERVER of a stream: it ended or was cancelled */
	OP_SEND,          /* a stream's SEND_MESSAGE or SEND_STATUS completed */
	OP_RECV,          /* a stream's RECV_MESSAGE completed */
	OP_MASK = 7,
};

#define POSTED_PER_METHOD 8     /* requested calls kept posted per method per queue */
#define POSTED_GENERIC 4        /* for methods not served (UNIMPLEMENTED) */
#define STREAM_QUEUE_MAX 1024   /* messages queued on a stream before it is ended */

struct fd_call {
	fd_server_t *srv;
	const fd_method_t *method;      /* NULL: a generic call for an unknown method */
	grpc_completion_queue *cq;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_byte_buffer *payload;      /* unary and server streaming: the request */
	grpc_call_details details;      /* generic calls only */
	grpc_slice status_details;
	grpc_byte_buffer *reply;        /* the message in flight */
	int close_cancelled;            /* set by RECV_CLOSE_ON_SERVER */
	char id[24];
	fd_err_t err;
	void *user;
	fd_arena_t arena;

	/* Streaming state, under mu. */
	pthread_mutex_t mu;
	int refs;
	bool streaming;
	bool initial_md_sent;
	bool send_pending;
	bool status_queued;             /* fd_stream_finish was called */
	bool status_sent;
	bool ended;                     /* no more sends possible */
	bool close_seen;
	bool cancelled;
	bool in_callback;
	bool open_called;
	bool closed_called;
	grpc_status_code final_code;
	char final_msg[FD_ERR_MSG_MAX];
	grpc_byte_buffer **queue;       /* ring of packed messages waiting to be sent */
	size_t qhead, qlen, qcap;
	grpc_byte_buffer *recv_buf;
	fd_call_t *next_stream, *prev_stream;  /* the server's list of open streams */
};

struct fd_server {
	fd_server_opts_t opts;
	char *listen, *tls_cert, *tls_key, *tls_client_ca;
	grpc_server *server;
	grpc_completion_queue **cqs;
	int ncq;
	pthread_t *threads;
	int nthreads;
	fd_method_t *methods;
	size_t nmethods, capmethods;
	int port;
	bool started;
	atomic_bool stopping;
	atomic_ulong next_id;
	unsigned id_prefix;

	pthread_mutex_t mu;             /* guards what follows */
	pthread_cond_t cv;
	long active;                    /* matched calls not yet freed */
	bool shutdown_tag_seen;
	bool shut_down;
	fd_call_t *streams;             /* open streaming calls */

	fd_health_t *health;
};

static void *tag_of(fd_call_t *c, enum op op)
{
	return (void *)((uintptr_t)c | (uintptr_t)op);
}

/* ---------------------------------------------------------------- calls */

static fd_call_t *call_new(fd_server_t *srv, const fd_method_t *m, grpc_completion_queue *cq)
{
	fd_call_t *c = aligned_alloc(16, (sizeof(*c) + 15) & ~(size_t)15);
	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->srv = srv;
	c->method = m;
	c->cq = cq;
	grpc_metadata_array_init(&c->md);
	if (!m)
		grpc_call_details_init(&c->details);
	c->status_details = grpc_empty_slice();
	fd_arena_init(&c->arena, srv->opts.max_message_bytes * 16);
	pthread_mutex_init(&c->mu, NULL);
	return c;
}

/* Post a request for the next call of method m (NULL: any unknown method). */
static void post(fd_server_t *srv, const fd_method_t *m, grpc_completion_queue *cq)
{
	if (atomic_load(&srv->stopping))
		return;
	fd_call_t *c = call_new(srv, m, cq);
	if (!c) {
		fd_error("out of memory posting a call request");
		return;
	}
	grpc_call_error e;
	if (m)
		e = grpc_server_request_registered_call(
			srv->server, m->handle, &c->call, &c->deadline, &c->md,
			m->kind == FD_METHOD_UNARY || m->kind == FD_METHOD_SERVER_STREAMING ? &c->payload
			                                                                    : NULL,
			cq, cq, tag_of(c, OP_NEW));
	else
		e = grpc_server_request_call(srv->server, &c->call, &c->details, &c->md, cq, cq,
		                             tag_of(c, OP_NEW));
	if (e != GRPC_CALL_OK) {
		fd_error("request call failed: %d", (int)e);
		pthread_mutex_destroy(&c->mu);
		grpc_metadata_array_destroy(&c->md);
		if (!m)
			grpc_call_details_destroy(&c->details);
		free(c);
	}
}

static void call_free(fd_call_t *c, bool was_live)
{
	fd_server_t *srv = c->srv;
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	if (c->reply)
		grpc_byte_buffer_destroy(c->reply);
	if (c->recv_buf)
		grpc_byte_buffer_destroy(c->recv_buf);
	for (size_t i = 0; i < c->qlen; i++)
		grpc_byte_buffer_destroy(c->queue[(c->qhead + i) % c->qcap]);
	free(c->queue);
	grpc_slice_unref(c->status_details);
	grpc_metadata_array_destroy(&c->md);
	if (!c->method)
		grpc_call_details_destroy(&c->details);
	if (c->call)
		grpc_call_unref(c->call);
	fd_arena_free(&c->arena);
	pthread_mutex_destroy(&c->mu);
	free(c);
	if (was_live) {
		pthread_mutex_lock(&srv->mu);
		if (--srv->active == 0)
			pthread_cond_broadcast(&srv->cv);
		pthread_mutex_unlock(&srv->mu);
	}
}

/* Read a received byte buffer into one contiguous slice. */
static grpc_slice read_all(grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader r;
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return grpc_empty_slice();
	grpc_slice s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	return s;
}

/* Check and unpack a request into arena. Returns the message or NULL with
 * c->err set. */
static ProtobufCMessage *decode(fd_call_t *c, grpc_byte_buffer *bb, fd_arena_t *arena)
{
	const ProtobufCMessageDescriptor *d = c->method->desc->input;
	grpc_slice s = read_all(bb);
	const uint8_t *p = GRPC_SLICE_START_PTR(s);
	size_t len = GRPC_SLICE_LENGTH(s);
	ProtobufCMessage *msg = NULL;
	if (fd_wire_check(d, p, len, &c->err) == 0) {
		msg = protobuf_c_message_unpack(d, &arena->pb, len, p);
		if (!msg && arena->exhausted)
			fd_err_set(&c->err, FD_EEXHAUSTED, "request: too large once decoded");
		else if (!msg)
			fd_err_set(&c->err, FD_EINVAL, "request: does not decode as %s", d->name);
	}
	grpc_slice_unref(s);
	return msg;
}

/* Pack a reply into a fresh byte buffer (NULL when out of memory). */
static grpc_byte_buffer *encode(const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	grpc_slice s = grpc_slice_malloc(n);
	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

static void set_log_context(fd_call_t *c)
{
	fd_log_context_set(c->id, -1, c->method ? c->method->path : NULL);
}

/* Send the reply (or the error) of a unary call, or a rejection, in one batch. */
static void unary_reply(fd_call_t *c, int rc)
{
	char msg[FD_ERR_MSG_MAX + 64];
	grpc_status_code code = fd_rpc_status(rc, &c->err, c->id, msg, sizeof(msg));
	if (code != GRPC_STATUS_OK && c->reply) {
		grpc_byte_buffer_destroy(c->reply);
		c->reply = NULL;
	}
	c->status_details = grpc_slice_from_copied_string(msg);

	grpc_op ops[4];
	int n = 0;
	memset(ops, 0, sizeof(ops));
	ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (c->reply) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = c->reply;
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	ops[n++].data.send_status_from_server.status_details = &c->status_details;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n++].data.recv_close_on_server.cancelled = &c->close_cancelled;
	grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag_of(c, OP_UNARY_DONE), NULL);
	if (e != GRPC_CALL_OK) {
		fd_error("reply batch failed: %d", (int)e);
		call_free(c, true);
	}
}

static void run_unary(fd_call_t *c)
{
	int rc;
	ProtobufCMessage *resp = NULL;
	/* The request is checked even for a method not built yet: bad input is
	 * INVALID_ARGUMENT whatever the method. */
	if (!c->payload) {
		rc = fd_err_set(&c->err, FD_EINVAL, "request: no message received");
	} else {
		ProtobufCMessage *req = decode(c, c->payload, &c->arena);
		if (!req)
			rc = -(int)c->err.code;
		else if (!c->method->unary)
			rc = fd_err_set(&c->err, FD_EUNIMPL, "%s is not implemented yet", c->method->path);
		else if (fd_call_done(c))
			rc = fd_err_set(&c->err, FD_EDEADLINE, "the deadline passed before the call started");
		else
			rc = c->method->unary(c, req, &resp);
		if (rc == 0 && !resp)
			rc = fd_err_set(&c->err, FD_EINTERNAL, "%s returned no reply", c->method->path);
	}
	if (rc == 0) {
		c->reply = encode(resp);
		if (!c->reply)
			rc = fd_err_set(&c->err, FD_EEXHAUSTED, "out of memory");
	}
	if (rc < 0)
		fd_debug("failed: %s: %s", fd_code_name((fd_code_t)-rc), c->err.msg);
	unary_reply(c, rc);
}

/* ------------------------------------------------------------ streaming */

static void stream_release_locked(fd_call_t *c, bool *free_it)
{
	if (--c->refs == 0)
		*free_it = true;
}

static void unlock_maybe_free(fd_call_t *c, bool free_it)
{
	pthread_mutex_unlock(&c->mu);
	if (free_it) {
		fd_server_t *srv = c->srv;
		pthread_mutex_lock(&srv->mu);
		if (c->prev_stream)
			c->prev_stream->next_stream = c->next_stream;
		else if (srv->streams == c)
			srv->streams = c->next_stream;
		if (c->next_stream)
			c->next_stream->prev_stream = c->prev_stream;
		pthread_mutex_unlock(&srv->mu);
		call_free(c, true);
	}
}

/* Start the next send of a stream if none is in flight: a queued message,
 * or the status once the queue is empty. */
static void stream_pump_locked(fd_call_t *c)
{
	if (c->send_pending || c->status_sent || c->ended || (!c->qlen && !c->status_queued))
		return;
	grpc_op ops[2];
	int n = 0;
	memset(ops, 0, sizeof(ops));
	if (!c->initial_md_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->initial_md_sent = true;
	}
	if (c->qlen) {
		c->reply = c->queue[c->qhead];
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = c->reply;
	} else {
		grpc_slice_unref(c->status_details);
		c->status_details = grpc_slice_from_copied_string(c->final_msg);
		ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
		ops[n].data.send_status_from_server.status = c->final_code;
		ops[n++].data.send_status_from_server.status_details = &c->status_details;
		c->status_sent = true;
	}
	c->send_pending = true;
	c->refs++;
	if (grpc_call_start_batch(c->call, ops, n, tag_of(c, OP_SEND), NULL) != GRPC_CALL_OK) {
		fd_error("stream send batch failed");
		c->send_pending = false;
		c->refs--;
		c->ended = true;
	}
}

static void stream_post_recv_locked(fd_call_t *c)
{
	if (c->ended || c->status_queued)
		return;
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &c->recv_buf;
	c->refs++;
	if (grpc_call_start_batch(c->call, &op, 1, tag_of(c, OP_RECV), NULL) != GRPC_CALL_OK) {
		c->refs--;
		c->ended = true;
	}
}

/* Deliver closed() once the stream is over and no callback is running. */
static void stream_deliver_closed_locked(fd_call_t *c, bool *free_it)
{
	if (!c->close_seen || c->in_callback || c->closed_called)
		return;
	c->closed_called = true;
	if (c->open_called && c->method->stream->closed) {
		bool cancelled = c->cancelled;
		pthread_mutex_unlock(&c->mu);
		set_log_context(c);
		c->method->stream->closed(c, cancelled);
		fd_log_context_clear();
		pthread_mutex_lock(&c->mu);
	}
	stream_release_locked(c, free_it); /* the runtime's own reference */
}

static void stream_begin(fd_call_t *c)
{
	fd_server_t *srv = c->srv;
	const fd_stream_ops_t *ops = c->method->stream;
	c->streaming = true;
	c->refs = 1; /* the runtime's own, dropped once closed() is delivered */

	pthread_mutex_lock(&srv->mu);
	c->next_stream = srv->streams;
	if (srv->streams)
		srv->streams->prev_stream = c;
	srv->streams = c;
	pthread_mutex_unlock(&srv->mu);

	pthread_mutex_lock(&c->mu);
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &c->close_cancelled;
	c->refs++;
	if (grpc_call_start_batch(c->call, &op, 1, tag_of(c, OP_CLOSE), NULL) != GRPC_CALL_OK) {
		/* Cannot happen on a fresh call; treat the stream as closed. */
		c->refs--;
		c->close_seen = c->ended = true;
	}

	int rc = 0;
	ProtobufCMessage *req = NULL;
	if (!ops) {
		rc = fd_err_set(&c->err, FD_EUNIMPL, "%s is not implemented yet", c->method->path);
	} else if (c->method->kind == FD_METHOD_SERVER_STREAMING &&
	           (!c->payload || !(req = decode(c, c->payload, &c->arena)))) {
		rc = c->payload ? -(int)c->err.code
		                : fd_err_set(&c->err, FD_EINVAL, "request: no message received");
	} else {
		c->open_called = true;
	}
	/* Until the end of this function no other thread may deliver closed()
	 * (and free the call): the close can complete on another worker as soon
	 * as the status below is sent. */
	c->in_callback = true;
	pthread_mutex_unlock(&c->mu);
	if (c->open_called)
		rc = ops->open(c, req);
	if (rc < 0)
		fd_stream_finish(c, rc, NULL);

	bool free_it = false;
	pthread_mutex_lock(&c->mu);
	c->in_callback = false;
	if (ops && (c->method->kind == FD_METHOD_BIDI_STREAMING ||
	            c->method->kind == FD_METHOD_CLIENT_STREAMING))
		stream_post_recv_locked(c);
	stream_deliver_closed_locked(c, &free_it);
	unlock_maybe_free(c, free_it);
}

static void stream_on_recv(fd_call_t *c, bool ok)
{
	bool free_it = false;
	pthread_mutex_lock(&c->mu);
	grpc_byte_buffer *bb = c->recv_buf;
	c->recv_buf = NULL;
	if (!ok || c->ended || c->status_queued) {
		if (bb)
			grpc_byte_buffer_destroy(bb);
		stream_release_locked(c, &free_it);
		stream_deliver_closed_locked(c, &free_it);
		unlock_maybe_free(c, free_it);
		return;
	}
	c->in_callback = true;
	pthread_mutex_unlock(&c->mu);

	const fd_stream_ops_t *ops = c->method->stream;
	int rc = 0;
	bool more = bb != NULL;
	if (!bb) {
		/* The client half-closed. */
		rc = ops->half_close ? ops->half_close(c) : 0;
		if (rc == 0 && !ops->half_close)
			fd_stream_finish(c, 0, NULL);
	} else {
		fd_arena_t scratch; /* one arena per message: a long stream must not grow */
		fd_arena_init(&scratch, c->srv->opts.max_message_bytes * 16);
		ProtobufCMessage *msg = decode(c, bb, &scratch);
		grpc_byte_buffer_destroy(bb);
		if (!msg)
			rc = -(int)c->err.code;
		else if (ops->message)
			rc = ops->message(c, msg);
		else
			rc = fd_err_set(&c->err, FD_EUNIMPL, "%s takes no messages", c->method->path);
		fd_arena_free(&scratch);
	}
	if (rc < 0)
		fd_stream_finish(c, rc, NULL);

	pthread_mutex_lock(&c->mu);
	c->in_callback = false;
	if (more)
		stream_post_recv_locked(c);
	stream_release_locked(c, &free_it);
	stream_deliver_closed_locked(c, &free_it);
	unlock_maybe_free(c, free_it);
}

static void stream_on_send(fd_call_t *c, bool ok)
{
	bool free_it = false;
	pthread_mutex_lock(&c->mu);
	c->send_pending = false;
	if (c->reply) {
		grpc_byte_buffer_destroy(c->reply);
		c->reply = NULL;
	}
	if (!ok)
		c->ended = true;
	stream_pump_locked(c);
	stream_release_locked(c, &free_it);
	unlock_maybe_free(c, free_it);
}

static void stream_on_close(fd_call_t *c)
{
	bool free_it = false;
	pthread_mutex_lock(&c->mu);
	c->close_seen = true;
	c->cancelled = c->close_cancelled != 0;
	if (c->cancelled)
		c->ended = true;
	stream_release_locked(c, &free_it);
	stream_deliver_closed_locked(c, &free_it);
	unlock_maybe_free(c, free_it);
}

int fd_stream_send(fd_call_t *c, const ProtobufCMessage *msg)
{
	grpc_byte_buffer *bb = encode(msg);
	if (!bb)
		return -FD_EEXHAUSTED;
	pthread_mutex_lock(&c->mu);
	if (c->ended || c->status_queued) {
		pthread_mutex_unlock(&c->mu);
		grpc_byte_buffer_destroy(bb);
		return -FD_ECANCELLED;
	}
	if (c->qlen == c->qcap) {
		size_t cap = c->qcap ? c->qcap * 2 : 8;
		grpc_byte_buffer **q = cap <= STREAM_QUEUE_MAX ? malloc(cap * sizeof(*q)) : NULL;
		if (!q) {
			pthread_mutex_unlock(&c->mu);
			grpc_byte_buffer_destroy(bb);
			fd_stream_finish(c, -FD_EEXHAUSTED, "the client reads too slowly; stream ended");
			return -FD_EEXHAUSTED;
		}
		for (size_t i = 0; i < c->qlen; i++)
			q[i] = c->queue[(c->qhead + i) % c->qcap];
		free(c->queue);
		c->queue = q;
		c->qcap = cap;
		c->qhead = 0;
	}
	c->queue[(c->qhead + c->qlen) % c->qcap] = bb;
	c->qlen++;
	stream_pump_locked(c);
	pthread_mutex_unlock(&c->mu);
	return 0;
}

void fd_stream_finish(fd_call_t *c, int rc, const char *msg)
{
	pthread_mutex_lock(&c->mu);
	if (c->status_queued || c->ended) {
		pthread_mutex_unlock(&c->mu);
		return;
	}
	c->status_queued = true;
	if (msg && rc < 0) {
		fd_err_t e = { .code = (fd_code_t)-rc };
		snprintf(e.msg, sizeof(e.msg), "%s", msg);
		c->final_code = fd_rpc_status(rc, &e, c->id, c->final_msg, sizeof(c->final_msg));
	} else {
		c->final_code = fd_rpc_status(rc, &c->err, c->id, c->final_msg, sizeof(c->final_msg));
	}
	stream_pump_locked(c);
	pthread_mutex_unlock(&c->mu);
}

void fd_call_ref(fd_call_t *c)
{
	pthread_mutex_lock(&c->mu);
	c->refs++;
	pthread_mutex_unlock(&c->mu);
}

void fd_call_unref(fd_call_t *c)
{
	bool free_it = false;
	pthread_mutex_lock(&c->mu);
	stream_release_locked(c, &free_it);
	unlock_maybe_free(c, free_it);
}

/* ------------------------------------------------------------- dispatch */

static void on_new(fd_call_t *c, bool ok)
{
	fd_server_t *srv = c->srv;
	if (!ok) {
		/* The server is shutting down: the request was never matched. */
		call_free(c, false);
		return;
	}
	pthread_mutex_lock(&srv->mu);
	srv->active++;
	pthread_mutex_unlock(&srv->mu);
	post(srv, c->method, c->cq); /* keep the same number of requests posted */

	snprintf(c->id, sizeof(c->id), "%08x-%lu", srv->id_prefix,
	         (unsigned long)atomic_fetch_add(&srv->next_id, 1));
	set_log_context(c);
	if (!c->method) {
		char *path = grpc_slice_to_c_string(c->details.method);
		fd_err_set(&c->err, FD_EUNIMPL, "unknown method %.120s", path);
		gpr_free(path);
		unary_reply(c, -FD_EUNIMPL);
	} else if (c->method->kind == FD_METHOD_UNARY) {
		run_unary(c);
	} else {
		stream_begin(c);
	}
	fd_log_context_clear();
}

static void dispatch(void *tag, bool ok)
{
	fd_call_t *c = (fd_call_t *)((uintptr_t)tag & ~(uintptr_t)OP_MASK);
	switch ((enum op)((uintptr_t)tag & OP_MASK)) {
	case OP_NEW:
		on_new(c, ok);
		break;
	case OP_UNARY_DONE:
		call_free(c, true);
		break;
	case OP_CLOSE:
		stream_on_close(c);
		break;
	case OP_SEND:
		stream_on_send(c, ok);
		break;
	case OP_RECV:
		stream_on_recv(c, ok);
		break;
	default:
		fd_error("unknown completion tag %p", tag);
	}
}

/* The shutdown notification's tag: a static object, never a call. */
static char shutdown_tag_obj[16] __attribute__((aligned(16)));

typedef struct worker_arg {
	fd_server_t *srv;
	grpc_completion_queue *cq;
} worker_arg_t;

static void *worker(void *arg)
{
	worker_arg_t *w = arg;
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		if (ev.tag == shutdown_tag_obj) {
			pthread_mutex_lock(&w->srv->mu);
			w->srv->shutdown_tag_seen = true;
			pthread_cond_broadcast(&w->srv->cv);
			pthread_mutex_unlock(&w->srv->mu);
			continue;
		}
		dispatch(ev.tag, ev.success != 0);
	}
	free(w);
	return NULL;
}

/* ---------------------------------------------------------------- setup */

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

fd_server_t *fd_server_new(const fd_server_opts_t *opts, fd_err_t *err)
{
	fd_server_t *srv = calloc(1, sizeof(*srv));
	if (!srv) {
		fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		return NULL;
	}
	srv->opts = *opts;
	srv->listen = strdup(opts->listen);
	srv->tls_cert = dup_or_null(opts->tls_cert);
	srv->tls_key = dup_or_null(opts->tls_key);
	srv->tls_client_ca = dup_or_null(opts->tls_client_ca);
	srv->opts.listen = srv->listen;
	if (srv->opts.threads < 1)
		srv->opts.threads = 1;
	if (!srv->opts.max_message_bytes)
		srv->opts.max_message_bytes = 4 << 20;
	pthread_mutex_init(&srv->mu, NULL);
	pthread_cond_init(&srv->cv, NULL);
	srv->health = fd_health_new();
	srv->id_prefix = (unsigned)getpid() ^ (unsigned)time(NULL) * 2654435761u;
	if (!srv->listen || !srv->health || (opts->tls_cert && *opts->tls_cert && !srv->tls_cert)) {
		fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		goto fail;
	}
	if (!fd_api_index()) {
		fd_err_set(err, FD_EINTERNAL, "the compiled-in API descriptors do not parse");
		goto fail;
	}
	if (fd_health_serve(srv, srv->health, err) < 0 || fd_reflection_serve(srv, srv->health, err) < 0)
		goto fail;
	return srv;
fail:
	fd_server_free(srv);
	return NULL;
}

int fd_server_add_service(fd_server_t *srv, const ProtobufCServiceDescriptor *desc,
                          const fd_method_impl_t *impls, void *service_ctx, fd_err_t *err)
{
	if (srv->started)
		return fd_err_set(err, FD_EINTERNAL, "add services before the server starts");
	/* Every handler must name a method of the descriptor. */
	for (const fd_method_impl_t *im = impls; im && im->name; im++) {
		if (!protobuf_c_service_descriptor_get_method_by_name(desc, im->name))
			return fd_err_set(err, FD_EINTERNAL, "%s has no method %s", desc->name,
			                  im->name);
	}
	for (unsigned i = 0; i < desc->n_methods; i++) {
		const ProtobufCMethodDescriptor *md = &desc->methods[i];
		fd_method_kind_t kind;
		if (fd_api_method_kind(desc->name, md->name, &kind) < 0)
			return fd_err_set(err, FD_EINTERNAL, "%s.%s is missing from the descriptor set",
			                  desc->name, md->name);
		const fd_method_impl_t *impl = NULL;
		for (const fd_method_impl_t *im = impls; im && im->name; im++)
			if (strcmp(im->name, md->name) == 0)
				impl = im;
		if (impl && (kind == FD_METHOD_UNARY) != (impl->unary != NULL))
			return fd_err_set(err, FD_EINTERNAL, "%s.%s is %s in the .proto", desc->name,
			                  md->name, kind == FD_METHOD_UNARY ? "unary" : "streaming");
		if (srv->nmethods == srv->capmethods) {
			size_t cap = srv->capmethods ? srv->capmethods * 2 : 32;
			fd_method_t *m = realloc(srv->methods, cap * sizeof(*m));
			if (!m)
				return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
			srv->methods = m;
			srv->capmethods = cap;
		}
		fd_method_t *m = &srv->methods[srv->nmethods];
		memset(m, 0, sizeof(*m));
		if (asprintf(&m->path, "/%s/%s", desc->name, md->name) < 0)
			return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		m->desc = md;
		m->kind = kind;
		m->unary = impl ? impl->unary : NULL;
		m->stream = impl ? impl->stream : NULL;
		m->service_ctx = service_ctx;
		srv->nmethods++;
	}
	/* Health knows each service by its full name. */
	if (fd_health_known(srv->health, desc->name) < 0)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	return 0;
}

static char *read_file(const char *path, fd_err_t *err, const char *what)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fd_err_set(err, FD_EINVAL, "%s: cannot open %s", what, path);
		return NULL;
	}
	char *buf = NULL;
	size_t len = 0, cap = 0, n;
	char chunk[4096];
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			char *b = realloc(buf, cap);
			if (!b) {
				free(buf);
				fclose(f);
				fd_err_set(err, FD_EEXHAUSTED, "out of memory");
				return NULL;
			}
			buf = b;
		}
		memcpy(buf + len, chunk, n);
		len += n;
	}
	fclose(f);
	if (!buf) {
		fd_err_set(err, FD_EINVAL, "%s: %s is empty", what, path);
		return NULL;
	}
	buf[len] = '\0';
	return buf;
}

static grpc_server_credentials *server_credentials(fd_server_t *srv, fd_err_t *err)
{
	if (!srv->tls_cert)
		return grpc_insecure_server_credentials_create();
	grpc_server_credentials *creds = NULL;
	char *cert = read_file(srv->tls_cert, err, "FRONTDESK_TLS_CERT");
	char *key = cert && srv->tls_key ? read_file(srv->tls_key, err, "FRONTDESK_TLS_KEY") : NULL;
	char *ca = key && srv->tls_client_ca
	                   ? read_file(srv->tls_client_ca, err, "FRONTDESK_TLS_CLIENT_CA")
	                   : NULL;
	if (cert && !srv->tls_key)
		fd_err_set(err, FD_EINVAL, "FRONTDESK_TLS_KEY: required with FRONTDESK_TLS_CERT");
	if (cert && key && (ca || !srv->tls_client_ca)) {
		grpc_ssl_pem_key_cert_pair pair = { key, cert };
		creds = grpc_ssl_server_credentials_create_ex(
			ca, &pair, 1,
			ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
			   : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
			NULL);
		if (!creds)
			fd_err_set(err, FD_EINVAL, "TLS: the certificate or key does not load");
	}
	if (key)
		memset(key, 0, strlen(key));
	free(cert);
	free(key);
	free(ca);
	return creds;
}

int fd_server_start(fd_server_t *srv, fd_err_t *err)
{
	grpc_arg args[] = {
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0 },
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
		  .value.integer = (int)srv->opts.max_message_bytes },
		/* Streams from nodes and dashboards: notice a peer that vanished. */
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIME_MS, .value.integer = 20000 },
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS, .value.integer = 10000 },
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
		  .value.integer = 5000 },
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, .value.integer = 1 },
	};
	grpc_channel_args ca = { sizeof(args) / sizeof(args[0]), args };
	srv->server = grpc_server_create(&ca, NULL);

	srv->nthreads = srv->opts.threads;
	srv->ncq = srv->opts.queues < 1 ? 1 : srv->opts.queues < srv->nthreads ? srv->opts.queues : srv->nthreads;
	srv->cqs = calloc(srv->ncq, sizeof(*srv->cqs));
	srv->threads = calloc(srv->nthreads, sizeof(*srv->threads));
	if (!srv->cqs || !srv->threads)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	for (int i = 0; i < srv->ncq; i++) {
		srv->cqs[i] = grpc_completion_queue_create_for_next(NULL);
		grpc_server_register_completion_queue(srv->server, srv->cqs[i], NULL);
	}
	for (size_t i = 0; i < srv->nmethods; i++) {
		fd_method_t *m = &srv->methods[i];
		bool payload = m->kind == FD_METHOD_UNARY || m->kind == FD_METHOD_SERVER_STREAMING;
		m->handle = grpc_server_register_method(
			srv->server, m->path, NULL,
			payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
		if (!m->handle)
			return fd_err_set(err, FD_EINTERNAL, "cannot register %s", m->path);
	}

	grpc_server_credentials *creds = server_credentials(srv, err);
	if (!creds)
		return -(int)err->code;
	srv->port = grpc_server_add_http2_port(srv->server, srv->listen, creds);
	grpc_server_credentials_release(creds);
	if (srv->port <= 0)
		return fd_err_set(err, FD_EUNAVAIL, "cannot listen on %s (in use, or not an address)",
		                  srv->listen);
	grpc_server_start(srv->server);
	srv->started = true;

	for (int q = 0; q < srv->ncq; q++) {
		for (size_t i = 0; i < srv->nmethods; i++)
			for (int k = 0; k < POSTED_PER_METHOD; k++)
				post(srv, &srv->methods[i], srv->cqs[q]);
		for (int k = 0; k < POSTED_GENERIC; k++)
			post(srv, NULL, srv->cqs[q]);
	}
	for (int t = 0; t < srv->nthreads; t++) {
		worker_arg_t *w = malloc(sizeof(*w));
		if (!w)
			return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		*w = (worker_arg_t){ srv, srv->cqs[t % srv->ncq] };
		if (pthread_create(&srv->threads[t], NULL, worker, w) != 0) {
			free(w);
			return fd_err_set(err, FD_EEXHAUSTED, "cannot start worker threads");
		}
	}
	fd_info("serving on %s (port %d, %d threads, %d queues, %s)", srv->listen, srv->port,
	        srv->nthreads, srv->ncq, srv->tls_cert ? (srv->tls_client_ca ? "mutual TLS" : "TLS")
	                                               : "plaintext");
	return 0;
}

int fd_server_port(const fd_server_t *srv)
{
	return srv->port;
}

static bool wait_until(fd_server_t *srv, bool (*cond)(fd_server_t *), int64_t deadline_ms)
{
	pthread_mutex_lock(&srv->mu);
	while (!cond(srv)) {
		if (deadline_ms == INT64_MAX) {
			pthread_cond_wait(&srv->cv, &srv->mu);
			continue;
		}
		int64_t left = deadline_ms - fd_real_ms();
		if (left <= 0)
			break;
		struct timespec ts = fd_real_after(left);
		pthread_cond_timedwait(&srv->cv, &srv->mu, &ts);
	}
	bool ok = cond(srv);
	pthread_mutex_unlock(&srv->mu);
	return ok;
}

static bool unary_drained(fd_server_t *srv)
{
	/* Open streams are ended by the runtime; only unary calls get the grace. */
	long streams = 0;
	for (fd_call_t *c = srv->streams; c; c = c->next_stream)
		streams++;
	return srv->active <= streams;
}

static bool tag_seen(fd_server_t *srv)
{
	return srv->shutdown_tag_seen;
}

static bool all_released(fd_server_t *srv)
{
	return srv->active == 0;
}

void fd_server_shutdown(fd_server_t *srv)
{
	if (!srv->started || srv->shut_down)
		return;
	srv->shut_down = true;
	int64_t deadline = fd_real_ms() + srv->opts.shutdown_grace_ms;
	atomic_store(&srv->stopping, true);
	grpc_server_shutdown_and_notify(srv->server, srv->cqs[0], shutdown_tag_obj);

	/* Long-lived streams would hold shutdown to the end of the grace period:
	 * end them now, telling clients to come back (to another replica). */
	pthread_mutex_lock(&srv->mu);
	for (fd_call_t *c = srv->streams; c; c = c->next_stream)
		fd_stream_finish(c, -FD_EUNAVAIL, "the server is shutting down; reconnect");
	pthread_mutex_unlock(&srv->mu);

	if (!wait_until(srv, unary_drained, deadline)) {
		fd_warn("grace period over: cancelling %ld calls", srv->active);
	}
	/* With no call left, what can still hold the notification back is an idle
	 * client connection (a portal keeps its channel open): gRPC core waits
	 * for the client to go. Give it a moment, then disconnect what is left;
	 * there is nothing in flight to lose. */
	int64_t soon = fd_real_ms() + 200;
	if (!wait_until(srv, tag_seen, soon < deadline ? soon : deadline))
		grpc_server_cancel_all_calls(srv->server);
	wait_until(srv, tag_seen, INT64_MAX);
	wait_until(srv, all_released, INT64_MAX);
	grpc_server_destroy(srv->server);
	srv->server = NULL;
	for (int i = 0; i < srv->ncq; i++)
		grpc_completion_queue_shutdown(srv->cqs[i]);
	for (int t = 0; t < srv->nthreads; t++)
		if (srv->threads[t])
			pthread_join(srv->threads[t], NULL);
	for (int i = 0; i < srv->ncq; i++)
		grpc_completion_queue_destroy(srv->cqs[i]);
	fd_info("stopped");
}

void fd_server_free(fd_server_t *srv)
{
	if (!srv)
		return;
	fd_server_shutdown(srv);
	if (srv->server && !srv->started) {
		/* Start failed: nothing was posted and no worker runs. */
		grpc_server_destroy(srv->server);
		for (int i = 0; i < srv->ncq; i++) {
			grpc_completion_queue_shutdown(srv->cqs[i]);
			while (grpc_completion_queue_next(srv->cqs[i], gpr_inf_future(GPR_CLOCK_REALTIME),
			                                  NULL).type != GRPC_QUEUE_SHUTDOWN)
				;
			grpc_completion_queue_destroy(srv->cqs[i]);
		}
	}
	for (size_t i = 0; i < srv->nmethods; i++)
		free(srv->methods[i].path);
	free(srv->methods);
	free(srv->cqs);
	free(srv->threads);
	fd_health_free(srv->health);
	free(srv->listen);
	free(srv->tls_cert);
	free(srv->tls_key);
	free(srv->tls_client_ca);
	pthread_mutex_destroy(&srv->mu);
	pthread_cond_destroy(&srv->cv);
	free(srv);
}

void fd_server_set_serving(fd_server_t *srv, bool serving)
{
	if (fd_health_set(srv->health, serving))
		fd_info("health: %s", serving ? "SERVING" : "NOT_SERVING");
}

/* ------------------------------------------------------------ accessors */

fd_arena_t *fd_call_arena(fd_call_t *c)
{
	return &c->arena;
}

void *fd_reply(fd_call_t *c, ProtobufCMessage **resp)
{
	const ProtobufCMessageDescriptor *d = c->method ? c->method->desc->output : NULL;
	void *m = d ? fd_arena_alloc(&c->arena, d->sizeof_message) : NULL;
	if (!m) {
		fd_err_set(&c->err, FD_EEXHAUSTED, d ? "out of memory" : "no reply for this call");
		return NULL;
	}
	protobuf_c_message_init(d, m);
	*resp = m;
	return m;
}

fd_err_t *fd_call_err(fd_call_t *c)
{
	return &c->err;
}

int fd_call_fail(fd_call_t *c, fd_code_t code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = fd_err_setv(&c->err, code, fmt, ap);
	va_end(ap);
	return rc;
}

void *fd_call_service(fd_call_t *c)
{
	return c->method ? c->method->service_ctx : NULL;
}

const char *fd_call_metadata(fd_call_t *c, const char *key)
{
	for (size_t i = 0; i < c->md.count; i++) {
		if (grpc_slice_str_cmp(c->md.metadata[i].key, key) != 0)
			continue;
		grpc_slice v = c->md.metadata[i].value;
		const char *p = (const char *)GRPC_SLICE_START_PTR(v);
		size_t n = GRPC_SLICE_LENGTH(v);
		if (memchr(p, 0, n))
			return NULL;
		return fd_arena_strndup(&c->arena, p, n);
	}
	return NULL;
}

const char *fd_call_peer(fd_call_t *c)
{
	char *p = grpc_call_get_peer(c->call);
	const char *s = p ? fd_arena_strdup(&c->arena, p) : NULL;
	gpr_free(p);
	return s;
}

const char *fd_call_method(const fd_call_t *c)
{
	return c->method ? c->method->path : "";
}

const char *fd_call_id(const fd_call_t *c)
{
	return c->id;
}

int64_t fd_call_deadline_ms(const fd_call_t *c)
{
	gpr_timespec d = gpr_convert_clock_type(c->deadline, GPR_CLOCK_REALTIME);
	if (gpr_time_cmp(d, gpr_inf_future(GPR_CLOCK_REALTIME)) >= 0 || d.tv_sec > INT64_MAX / 2000)
		return INT64_MAX;
	return (int64_t)d.tv_sec * 1000 + d.tv_nsec / 1000000;
}

bool fd_call_done(const fd_call_t *c)
{
	if (fd_real_ms() >= fd_call_deadline_ms(c))
		return true;
	if (!c->streaming)
		return false;
	fd_call_t *mc = (fd_call_t *)c; /* the lock is not part of the call's value */
	pthread_mutex_lock(&mc->mu);
	bool ended = c->ended;
	pthread_mutex_unlock(&mc->mu);
	return ended;
}

void fd_call_set_log_tenant(fd_call_t *c, int64_t tenant)
{
	fd_log_context_set(c->id, tenant, fd_call_method(c));
}

void fd_call_set_user(fd_call_t *c, void *user)
{
	c->user = user;
}

void *fd_call_user(const fd_call_t *c)
{
	return c->user;
}
