/* rpc_client.c - channels, blocking unary calls with retries, and streams,
 * each call on a completion queue of its own (pluck). */
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
#include "fd/log.h"
#include "fd/rpc_client.h"
#include "fd/wire.h"
#include "fd/clock.h"

#define DEFAULT_UNARY_TIMEOUT_MS 5000

typedef struct registered {
	char *path;
	void *handle;
} registered_t;

struct fd_channel {
	grpc_channel *channel;
	pthread_mutex_t mu;
	registered_t *methods;
	size_t nmethods, cap;
};

struct fd_client_stream {
	grpc_completion_queue *cq;
	grpc_call *call;
	grpc_metadata md_auth;
	bool has_auth;
	grpc_metadata_array initial_md, trailing_md;
	grpc_status_code status;
	grpc_slice details;
	grpc_byte_buffer *recv;
	bool recv_pending;
	bool initial_md_asked;
	bool finished;       /* the status arrived */
	char tag_status, tag_recv, tag_send;
};

static gpr_timespec at_ms(int64_t ms)
{
	if (ms == INT64_MAX)
		return gpr_inf_future(GPR_CLOCK_REALTIME);
	gpr_timespec t = { .tv_sec = ms / 1000, .tv_nsec = (int32_t)(ms % 1000) * 1000000,
	                   .clock_type = GPR_CLOCK_REALTIME };
	return t;
}

static char *slurp(const char *path, fd_err_t *err, const char *what)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fd_err_set(err, FD_EINVAL, "%s: cannot open %s", what, path);
		return NULL;
	}
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (!buf) {
		fd_err_set(err, FD_EINVAL, "%s: cannot read %s", what, path);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

fd_channel_t *fd_channel_new(const fd_channel_opts_t *o, fd_err_t *err)
{
	fd_channel_t *ch = calloc(1, sizeof(*ch));
	if (!ch) {
		fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&ch->mu, NULL);
	grpc_channel_credentials *creds = NULL;
	char *ca = NULL, *cert = NULL, *key = NULL;
	if (o->tls_ca && *o->tls_ca) {
		ca = slurp(o->tls_ca, err, "FRONTDESK_TLS_CA");
		if (!ca)
			goto fail;
		if (o->tls_cert && *o->tls_cert) {
			cert = slurp(o->tls_cert, err, "client certificate");
			key = cert ? slurp(o->tls_key ? o->tls_key : "", err, "client key") : NULL;
			if (!key)
				goto fail;
		}
		grpc_ssl_pem_key_cert_pair pair = { key, cert };
		creds = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
	} else {
		creds = grpc_insecure_credentials_create();
	}
	grpc_arg args[3];
	size_t nargs = 0;
	args[nargs++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIME_MS,
	                            .value.integer = 20000 };
	args[nargs++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
	                            .key = GRPC_ARG_ENABLE_RETRIES, .value.integer = 0 };
	if (o->tls_server_name && *o->tls_server_name)
		args[nargs++] = (grpc_arg){ .type = GRPC_ARG_STRING,
		                            .key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
		                            .value.string = (char *)o->tls_server_name };
	grpc_channel_args cargs = { nargs, args };
	ch->channel = grpc_channel_create(o->target, creds, &cargs);
	grpc_channel_credentials_release(creds);
	if (key)
		memset(key, 0, strlen(key));
	free(ca);
	free(cert);
	free(key);
	return ch;
fail:
	free(ca);
	free(cert);
	free(key);
	fd_channel_free(ch);
	return NULL;
}

void fd_channel_free(fd_channel_t *ch)
{
	if (!ch)
		return;
	if (ch->channel)
		grpc_channel_destroy(ch->channel);
	for (size_t i = 0; i < ch->nmethods; i++)
		free(ch->methods[i].path);
	free(ch->methods);
	pthread_mutex_destroy(&ch->mu);
	free(ch);
}

static void *registered_handle(fd_channel_t *ch, const char *path)
{
	void *h = NULL;
	pthread_mutex_lock(&ch->mu);
	for (size_t i = 0; i < ch->nmethods && !h; i++)
		if (strcmp(ch->methods[i].path, path) == 0)
			h = ch->methods[i].handle;
	if (!h && ch->nmethods == ch->cap) {
		size_t cap = ch->cap ? ch->cap * 2 : 16;
		registered_t *m = realloc(ch->methods, cap * sizeof(*m));
		if (m) {
			ch->methods = m;
			ch->cap = cap;
		}
	}
	if (!h && ch->nmethods < ch->cap) {
		char *p = strdup(path);
		if (p) {
			h = grpc_channel_register_call(ch->channel, p, NULL, NULL);
			ch->methods[ch->nmethods++] = (registered_t){ p, h };
		}
	}
	pthread_mutex_unlock(&ch->mu);
	return h;
}

static grpc_byte_buffer *pack(const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	grpc_slice s = grpc_slice_malloc(n);
	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

static int unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d, fd_arena_t *arena,
                  ProtobufCMessage **out, fd_err_t *err)
{
	grpc_byte_buffer_reader r;
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return fd_err_set(err, FD_EINTERNAL, "reply: unreadable");
	grpc_slice s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	int rc = fd_wire_check(d, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), err);
	if (rc == 0) {
		*out = protobuf_c_message_unpack(d, &arena->pb, GRPC_SLICE_LENGTH(s),
		                                 GRPC_SLICE_START_PTR(s));
		if (!*out)
			rc = fd_err_set(err, FD_EINTERNAL, "reply: does not decode as %s", d->name);
	}
	grpc_slice_unref(s);
	return rc;
}

static int status_to_rc(grpc_status_code st, grpc_slice details, fd_err_t *err)
{
	if (st == GRPC_STATUS_OK)
		return 0;
	char *msg = grpc_slice_to_c_string(details);
	int rc = fd_err_set(err, st > 0 && st <= 16 ? (fd_code_t)st : FD_EUNKNOWN, "%s", msg);
	gpr_free(msg);
	return rc;
}

static void set_auth(grpc_metadata *md, const char *authorization)
{
	memset(md, 0, sizeof(*md));
	md->key = grpc_slice_from_static_string("authorization");
	md->value = grpc_slice_from_copied_string(authorization);
}

/* One attempt of a unary call. */
static int unary_once(fd_channel_t *ch, void *handle, grpc_byte_buffer *req,
                      const ProtobufCMessageDescriptor *resp_desc, fd_arena_t *arena,
                      ProtobufCMessage **resp, const char *authorization, int64_t deadline,
                      fd_err_t *err)
{
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_call *call = grpc_channel_create_registered_call(ch->channel, NULL,
	                                                      GRPC_PROPAGATE_DEFAULTS, cq, handle,
	                                                      at_ms(deadline), NULL);
	grpc_metadata md;
	grpc_metadata_array initial, trailing;
	grpc_metadata_array_init(&initial);
	grpc_metadata_array_init(&trailing);
	grpc_byte_buffer *reply = NULL;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	if (authorization)
		set_auth(&md, authorization);

	grpc_op ops[6];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = authorization ? 1 : 0;
	ops[0].data.send_initial_metadata.metadata = authorization ? &md : NULL;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = req;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &reply;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
	ops[5].data.recv_status_on_client.status = &status;
	ops[5].data.recv_status_on_client.status_details = &details;
	int rc;
	if (grpc_call_start_batch(call, ops, 6, (void *)1, NULL) != GRPC_CALL_OK) {
		rc = fd_err_set(err, FD_EINTERNAL, "cannot start the call");
	} else {
		grpc_completion_queue_pluck(cq, (void *)1, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		rc = status_to_rc(status, details, err);
		if (rc == 0 && !reply)
			rc = fd_err_set(err, FD_EINTERNAL, "the server sent no reply");
		if (rc == 0)
			rc = unpack(reply, resp_desc, arena, resp, err);
	}
	if (reply)
		grpc_byte_buffer_destroy(reply);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&initial);
	grpc_metadata_array_destroy(&trailing);
	if (authorization)
		grpc_slice_unref(md.value);
	grpc_call_unref(call);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	return rc;
}

int fd_channel_unary(fd_channel_t *ch, const char *path, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_desc, fd_arena_t *arena,
                     ProtobufCMessage **resp, const fd_call_opts_t *opts, fd_err_t *err)
{
	static const fd_call_opts_t none = { 0 };
	if (!opts)
		opts = &none;
	void *handle = registered_handle(ch, path);
	if (!handle)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	int64_t deadline = fd_real_ms() + (opts->timeout_ms > 0 ? opts->timeout_ms
	                                                    : DEFAULT_UNARY_TIMEOUT_MS);
	int64_t backoff = 25;
	for (;;) {
		grpc_byte_buffer *bb = pack(req);
		int rc = unary_once(ch, handle, bb, resp_desc, arena, resp, opts->authorization,
		                    deadline, err);
		grpc_byte_buffer_destroy(bb);
		if (rc != -FD_EUNAVAIL || !opts->idempotent)
			return rc;
		int64_t left = deadline - fd_real_ms();
		if (left <= backoff)
			return rc;
		fd_debug("%s: unavailable, retrying in %lld ms", path, (long long)backoff);
		struct timespec ts = { backoff / 1000, (backoff % 1000) * 1000000 };
		nanosleep(&ts, NULL);
		backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
	}
}

/* ---------------------------------------------------------------- streams */

static grpc_event pluck(fd_client_stream_t *s, void *tag, int64_t until_ms)
{
	return grpc_completion_queue_pluck(s->cq, tag, at_ms(until_ms), NULL);
}

fd_client_stream_t *fd_channel_stream(fd_channel_t *ch, const char *path,
                                      const ProtobufCMessage *first, const fd_call_opts_t *opts,
                                      fd_err_t *err)
{
	static const fd_call_opts_t none = { 0 };
	if (!opts)
		opts = &none;
	void *handle = registered_handle(ch, path);
	fd_client_stream_t *s = calloc(1, sizeof(*s));
	if (!handle || !s) {
		free(s);
		fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		return NULL;
	}
	int64_t deadline = opts->timeout_ms > 0 ? fd_real_ms() + opts->timeout_ms : INT64_MAX;
	s->cq = grpc_completion_queue_create_for_pluck(NULL);
	s->call = grpc_channel_create_registered_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS,
	                                              s->cq, handle, at_ms(deadline), NULL);
	grpc_metadata_array_init(&s->initial_md);
	grpc_metadata_array_init(&s->trailing_md);
	s->details = grpc_empty_slice();
	if (opts->authorization) {
		set_auth(&s->md_auth, opts->authorization);
		s->has_auth = true;
	}

	/* The status arrives whenever the stream ends. */
	grpc_op st;
	memset(&st, 0, sizeof(st));
	st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	st.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
	st.data.recv_status_on_client.status = &s->status;
	st.data.recv_status_on_client.status_details = &s->details;
	grpc_call_start_batch(s->call, &st, 1, &s->tag_status, NULL);

	grpc_op ops[3];
	int n = 0;
	memset(ops, 0, sizeof(ops));
	ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].data.send_initial_metadata.count = opts->authorization ? 1 : 0;
	ops[n++].data.send_initial_metadata.metadata = opts->authorization ? &s->md_auth : NULL;
	grpc_byte_buffer *bb = first ? pack(first) : NULL;
	if (bb) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = bb;
		ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	}
	grpc_call_start_batch(s->call, ops, n, &s->tag_send, NULL);
	pluck(s, &s->tag_send, INT64_MAX);
	if (bb)
		grpc_byte_buffer_destroy(bb);
	return s;
}

int fd_client_stream_send(fd_client_stream_t *s, const ProtobufCMessage *msg, fd_err_t *err)
{
	grpc_byte_buffer *bb = pack(msg);
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = bb;
	int rc = 0;
	if (grpc_call_start_batch(s->call, &op, 1, &s->tag_send, NULL) != GRPC_CALL_OK)
		rc = fd_err_set(err, FD_EINTERNAL, "cannot send on this stream");
	else if (!pluck(s, &s->tag_send, INT64_MAX).success)
		rc = fd_err_set(err, FD_EUNAVAIL, "the stream is closed");
	grpc_byte_buffer_destroy(bb);
	return rc;
}

int fd_client_stream_close_send(fd_client_stream_t *s, fd_err_t *err)
{
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	if (grpc_call_start_batch(s->call, &op, 1, &s->tag_send, NULL) != GRPC_CALL_OK)
		return fd_err_set(err, FD_EINTERNAL, "cannot close this stream");
	pluck(s, &s->tag_send, INT64_MAX);
	return 0;
}

int fd_client_stream_recv(fd_client_stream_t *s, const ProtobufCMessageDescriptor *desc,
                          fd_arena_t *arena, ProtobufCMessage **msg, int64_t timeout_ms,
                          fd_err_t *err)
{
	if (!s->recv_pending) {
		grpc_op ops[2];
		int n = 0;
		memset(ops, 0, sizeof(ops));
		if (!s->initial_md_asked) {
			/* The server's initial metadata comes before its first message. */
			ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
			ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
			s->initial_md_asked = true;
		}
		ops[n].op = GRPC_OP_RECV_MESSAGE;
		ops[n++].data.recv_message.recv_message = &s->recv;
		if (grpc_call_start_batch(s->call, ops, n, &s->tag_recv, NULL) != GRPC_CALL_OK)
			return fd_err_set(err, FD_EINTERNAL, "cannot receive on this stream");
		s->recv_pending = true;
	}
	int64_t until = timeout_ms < 0 ? INT64_MAX : fd_real_ms() + timeout_ms;
	grpc_event ev = pluck(s, &s->tag_recv, until);
	if (ev.type == GRPC_QUEUE_TIMEOUT)
		return fd_err_set(err, FD_EDEADLINE, "no message within %lld ms", (long long)timeout_ms);
	s->recv_pending = false;
	if (s->recv) {
		int rc = unpack(s->recv, desc, arena, msg, err);
		grpc_byte_buffer_destroy(s->recv);
		s->recv = NULL;
		return rc < 0 ? rc : 1;
	}
	/* No message: the stream ended; its status says how. */
	if (!s->finished) {
		pluck(s, &s->tag_status, INT64_MAX);
		s->finished = true;
	}
	return status_to_rc(s->status, s->details, err);
}

void fd_client_stream_free(fd_client_stream_t *s)
{
	if (!s)
		return;
	if (!s->finished)
		grpc_call_cancel(s->call, NULL);
	if (s->recv_pending)
		pluck(s, &s->tag_recv, INT64_MAX);
	if (!s->finished)
		pluck(s, &s->tag_status, INT64_MAX);
	if (s->recv)
		grpc_byte_buffer_destroy(s->recv);
	grpc_call_unref(s->call);
	grpc_completion_queue_shutdown(s->cq);
	while (grpc_completion_queue_pluck(s->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
	               .type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(s->cq);
	grpc_metadata_array_destroy(&s->initial_md);
	grpc_metadata_array_destroy(&s->trailing_md);
	grpc_slice_unref(s->details);
	if (s->has_auth)
		grpc_slice_unref(s->md_auth.value);
	free(s);
}
