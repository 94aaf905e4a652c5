/* http.c - libmicrohttpd glue: the daemon (a few I/O threads, each with
 * its own epoll), one edge_req_t per request, the route table, the client's
 * address behind trusted proxies, the brand from the host, the replies and
 * one redacted access-log line per request.
 *
 * The I/O threads never wait on a service. A route that calls linesd or
 * authd (the player API, playlists, the hand-off) runs on a worker: its
 * connection is suspended, the request queued to the worker pool
 * (FRONTDESK_EDGED_THREADS), and the connection resumed with the reply ready,
 * so a slow linesd delays only the requests that need it. The routes that
 * answer from memory (/healthz, the streaming servers' hooks) run on the I/O
 * thread at once: a segment check never queues behind a login. */
#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <microhttpd.h>
#include "brands.h"
#include "http.h"
#include "net.h"
#include "fd/clock.h"
#include "fd/log.h"

#define REQ_ARENA_LIMIT ((size_t)64 << 20)
#define MAX_ARGS 64
#define MAX_BODY (64 * 1024)
#define MAX_HEADERS 16

typedef struct arg {
	const char *key;
	char *value;
	size_t len;
} arg_t;

/* One connection (libmicrohttpd's socket context): what the unescaping of
 * its current request found. */
typedef struct edge_conn {
	bool nul;                       /* a %00 was decoded in the path or an argument */
} edge_conn_t;

/* One request: libmicrohttpd's per-request context. */
typedef struct req_ctx {
	edge_req_t r;
	fd_arena_t arena;
	struct MHD_Connection *mc;
	struct MHD_PostProcessor *pp;
	arg_t args[MAX_ARGS];
	int nargs;
	const char *bad;                /* why the request is refused before its handler */
	unsigned bad_status;            /* its status: 400 unless set */
	size_t body;                    /* bytes of form body read */
	bool too_big;
	const char *reply_headers[MAX_HEADERS][2];
	int nheaders;
	unsigned status;
	int64_t started_ms;
	bool replied;
	bool dispatched;                /* the route was chosen (once per request) */
	bool deferred;                  /* a worker runs the handler; replies are kept */
	struct MHD_Response *pending;   /* a worker's reply, queued once resumed */
	int (*fn)(edge_req_t *);        /* the handler a worker runs */
	struct req_ctx *next;           /* in the workers' queue */
} req_ctx_t;

/* The worker pool: a bounded FIFO of suspended requests. */
#define QUEUE_MAX 4096

struct edge_workers {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	req_ctx_t *head, *tail;
	int queued;
	bool stop;
	int nthreads;
	pthread_t threads[256];
};

typedef int (*handler_fn)(edge_req_t *r);

/* Route kinds: whether the route needs a brand (tenant) found from the host. */
enum { NO_BRAND, BRAND };
/* Where its handler runs: on the I/O thread (answers from memory) or on a
 * worker (calls a service). */
enum { INLINE, WORKER };

typedef struct route {
	const char *path;     /* exact, or a prefix when it ends with '/' */
	int kind;
	int where;
	handler_fn fn;
} route_t;

static int healthz(edge_req_t *r);
static int not_yet(edge_req_t *r);

static const route_t ROUTES[] = {
	{ "/healthz", NO_BRAND, INLINE, healthz },
	/* The hooks answer from memory; the rare calls they make (a session
	 * asked of linesd while its event stream is down, an RTMP play_done's
	 * EndSession) are bounded by FRONTDESK_EDGED_RPC_TIMEOUT_MS. */
	{ "/hook/", NO_BRAND, INLINE, hooks_handle },
	{ "/player_api.php", BRAND, WORKER, player_api },
	{ "/get.php", BRAND, WORKER, playlist_get },
	{ "/xmltv.php", BRAND, WORKER, playlist_xmltv },
	{ "/live/", BRAND, WORKER, handoff_live },
	{ "/movie/", BRAND, INLINE, not_yet },
	{ "/series/", BRAND, INLINE, not_yet },
	{ "/timeshift/", BRAND, INLINE, not_yet },
	{ NULL, 0, 0, NULL },
};

static req_ctx_t *ctx_of(edge_req_t *r)
{
	return (req_ctx_t *)((char *)r - offsetof(req_ctx_t, r));
}

/* ---- arguments ---- */

static const char *arg_check(const char *key, const char *v, size_t len, fd_arena_t *a)
{
	if (len > EDGE_ARG_MAX)
		return fd_arena_printf(a, "%s: longer than %d bytes", key, EDGE_ARG_MAX);
	if (strlen(v) != len)
		return fd_arena_printf(a, "%s: contains a NUL byte", key);
	if (!net_utf8_valid(v, len))
		return fd_arena_printf(a, "%s: not valid UTF-8", key);
	return NULL;
}

static int add_arg(req_ctx_t *c, const char *key, const char *v, size_t len)
{
	if (c->bad)
		return 0;
	if (!net_utf8_valid(key, strlen(key)) || strlen(key) > 64) {
		c->bad = "an argument's name is not valid (UTF-8, at most 64 bytes)";
		return 0;
	}
	for (int i = 0; i < c->nargs; i++)
		if (strcmp(c->args[i].key, key) == 0) {
			c->bad = fd_arena_printf(&c->arena, "%s: given more than once", key);
			return 0;
		}
	if (c->nargs == MAX_ARGS) {
		c->bad = "more than 64 arguments";
		return 0;
	}
	arg_t *a = &c->args[c->nargs];
	if (!(a->key = fd_arena_strdup(&c->arena, key)) || !(a->value = fd_arena_strndup(&c->arena, v ? v : "", len))) {
		c->bad = "out of memory";
		return 0;
	}
	a->len = len;
	c->nargs++;
	const char *why = arg_check(key, v ? v : "", len, &c->arena);
	if (why)
		c->bad = why;
	return 1;
}

static enum MHD_Result on_get_arg(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                  const char *value, size_t value_size)
{
	(void)kind;
	req_ctx_t *c = cls;
	if (strlen(key) != key_size) {
		c->bad = "an argument's name contains a NUL byte";
		return MHD_NO;
	}
	add_arg(c, key, value, value ? value_size : 0);
	return c->bad ? MHD_NO : MHD_YES;
}

/* The form body arrives in pieces: a value may come in several calls. */
static enum MHD_Result on_post_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                   const char *content_type, const char *transfer_encoding,
                                   const char *data, uint64_t off, size_t size)
{
	(void)kind; (void)filename; (void)content_type; (void)transfer_encoding;
	req_ctx_t *c = cls;
	if (c->bad)
		return MHD_NO;
	if (off == 0)
		return add_arg(c, key, data, size) && !c->bad ? MHD_YES : MHD_NO;
	/* A continuation of the last value. */
	arg_t *a = c->nargs ? &c->args[c->nargs - 1] : NULL;
	if (!a || strcmp(a->key, key) != 0 || a->len + size > EDGE_ARG_MAX) {
		c->bad = fd_arena_printf(&c->arena, "%s: longer than %d bytes", key, EDGE_ARG_MAX);
		return MHD_NO;
	}
	char *v = fd_arena_alloc(&c->arena, a->len + size + 1);
	if (!v) {
		c->bad = "out of memory";
		return MHD_NO;
	}
	memcpy(v, a->value, a->len);
	memcpy(v + a->len, data, size);
	v[a->len + size] = '\0';
	a->value = v;
	a->len += size;
	const char *why = arg_check(key, v, a->len, &c->arena);
	if (why)
		c->bad = why;
	return c->bad ? MHD_NO : MHD_YES;
}

const char *edge_arg(edge_req_t *r, const char *name)
{
	req_ctx_t *c = ctx_of(r);
	for (int i = 0; i < c->nargs; i++)
		if (strcmp(c->args[i].key, name) == 0)
			return c->args[i].value;
	return NULL;
}

const char *edge_header(edge_req_t *r, const char *name)
{
	return MHD_lookup_connection_value(ctx_of(r)->mc, MHD_HEADER_KIND, name);
}

/* ---- URLs edged writes ---- */

void edge_host_port(edge_req_t *r, const char **host, const char **port)
{
	const char *def = r->https ? "443" : "80";
	*host = r->host;
	*port = def;
	const char *h = r->host_header;
	const char *colon = NULL;
	if (h[0] == '[') {
		const char *end = strchr(h, ']');
		if (end && end[1] == ':')
			colon = end + 1;
		if (end && (*host = fd_arena_strndup(r->arena, h, (size_t)(end - h + 1))) == NULL)
			*host = r->host;
	} else {
		colon = strrchr(h, ':');
	}
	/* The port as sent, digits only (the Host was checked, but the part
	 * after an IPv6 literal's bracket is not the name). */
	if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1) && strlen(colon + 1) <= 5) {
		const char *p = fd_arena_strdup(r->arena, colon + 1);
		if (p)
			*port = p;
	}
}

const char *edge_base_url(edge_req_t *r)
{
	const char *host, *port;
	edge_host_port(r, &host, &port);
	bool def = strcmp(port, r->https ? "443" : "80") == 0;
	const char *url = fd_arena_printf(r->arena, "%s://%s%s%s%s", r->https ? "https" : "http", host,
	                                  def ? "" : ":", def ? "" : port, r->prefix);
	return url ? url : "";
}

/* ---- replies ---- */

void edge_reply_header(edge_req_t *r, const char *name, const char *value)
{
	req_ctx_t *c = ctx_of(r);
	if (c->nheaders == MAX_HEADERS)
		return;
	const char *n = fd_arena_strdup(r->arena, name), *v = fd_arena_strdup(r->arena, value);
	if (!n || !v)
		return;
	c->reply_headers[c->nheaders][0] = n;
	c->reply_headers[c->nheaders][1] = v;
	c->nheaders++;
}

static int queue(req_ctx_t *c, unsigned status, struct MHD_Response *resp, const char *content_type)
{
	if (!resp)
		return -1;
	if (content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	for (int i = 0; i < c->nheaders; i++)
		MHD_add_response_header(resp, c->reply_headers[i][0], c->reply_headers[i][1]);
	if (atomic_load(&c->r.e->stopping))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	if (c->deferred) {
		/* A worker's: queued by the I/O thread once the connection resumes. */
		c->pending = resp;
		c->status = status;
		c->replied = true;
		return 0;
	}
	enum MHD_Result ok = MHD_queue_response(c->mc, status, resp);
	MHD_destroy_response(resp);
	c->status = status;
	c->replied = true;
	return ok == MHD_YES ? 0 : -1;
}

int edge_reply_owned(edge_req_t *r, unsigned status, const char *content_type, char *body, size_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, body, free);
	if (!resp)
		free(body);
	return queue(ctx_of(r), status, resp, content_type);
}

int edge_reply_copy(edge_req_t *r, unsigned status, const char *content_type, const char *body, size_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	return queue(ctx_of(r), status, resp, content_type);
}

int edge_reply_text(edge_req_t *r, unsigned status, const char *text)
{
	size_t n = strlen(text);
	char *body = malloc(n + 1);
	if (!body)
		return -1;
	memcpy(body, text, n);
	body[n] = '\n';
	return edge_reply_owned(r, status, "text/plain; charset=utf-8", body, n + 1);
}

int edge_reply_json(edge_req_t *r, unsigned status, json_t *j)
{
	char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!body)
		return edge_reply_text(r, 500, "out of memory");
	/* json_dumps allocates with malloc (jansson's default allocator). */
	return edge_reply_owned(r, status, "application/json", body, strlen(body));
}

int edge_reply_redirect(edge_req_t *r, const char *location)
{
	edge_reply_header(r, MHD_HTTP_HEADER_LOCATION, location);
	edge_reply_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	return queue(ctx_of(r), 302, resp, NULL);
}

int edge_reply_empty(edge_req_t *r, unsigned status)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	return queue(ctx_of(r), status, resp, NULL);
}

/* ---- the few handlers that live here ---- */

static int healthz(edge_req_t *r)
{
	if (!atomic_load(&r->e->linesd_up))
		return edge_reply_text(r, 503, "linesd unreachable");
	if (atomic_load(&r->e->stopping))
		return edge_reply_text(r, 503, "stopping");
	return edge_reply_text(r, 200, "ok");
}

static int not_yet(edge_req_t *r)
{
	return edge_reply_text(r, 404, "video on demand, series and catch-up are not served yet");
}

/* ---- the access log ---- */

/* The path as it may be logged: a line's password (the second segment of
 * /live/U/P/..., /movie/, /series/, /timeshift/ and of the bare /U/P/ID)
 * and a node's secret (/hook/KIND/ID/SECRET) become "***". Queries are
 * never logged: get.php and player_api.php carry passwords there. */
static const char *redacted_path(req_ctx_t *c, const char *path)
{
	static const char *const creds[] = { "/live/", "/movie/", "/series/", "/timeshift/", NULL };
	size_t skip = 0;   /* segments kept before the secret */
	const char *p = path;
	for (int i = 0; creds[i]; i++)
		if (strncmp(path, creds[i], strlen(creds[i])) == 0)
			skip = 2;   /* "/live/U/" */
	if (strncmp(path, "/hook/", 6) == 0)
		skip = 3;       /* "/hook/KIND/ID/" */
	if (!skip) {
		/* The bare /U/P/ID: three segments, the last a stream id. */
		int segs = 0;
		for (const char *s = path; *s; s++)
			segs += *s == '/';
		const char *last = strrchr(path, '/');
		if (segs != 3 || strncmp(path, "/t/", 3) == 0 || !isdigit((unsigned char)last[1]))
			return path;
		skip = 1;
	}
	for (size_t n = 0; n < skip && p; n++)
		p = strchr(p + 1, '/');
	if (!p)
		return path;
	const char *end = strchr(p + 1, '/');
	const char *out = fd_arena_printf(&c->arena, "%.*s/***%s", (int)(p - path), path, end ? end : "");
	return out ? out : "(path)";
}

static void access_log(req_ctx_t *c, const char *path)
{
	if (fd_log_min_level > FD_LOG_INFO)
		return;
	int64_t ms = fd_mono_ms() - c->started_ms;
	fd_info("http %s %s %u %" PRId64 " ms client %s host %s tenant %" PRId64, c->r.method,
	        redacted_path(c, path), c->status, ms, c->r.client_ip, c->r.host[0] ? c->r.host : "-",
	        c->r.tenant_id);
}

/* ---- finding the brand ---- */

/* Sets r->tenant_id, tenant_slug, prefix and path, or answers 404. Returns
 * 1 when a brand was found, 0 when a reply was queued. */
static int find_brand(edge_req_t *r, const char *path, const char **rest)
{
	edged_t *e = r->e;
	*rest = path;
	if (!r->host[0]) {
		edge_reply_text(r, 400, "Host header missing or not a valid host name");
		return 0;
	}
	bool platform = brands_is_platform_host(e, r->host);
	if (!platform) {
		if (!brands_by_host(e, r->host, &r->tenant_id, &r->tenant_slug, r->arena)) {
			edge_reply_text(r, 404, "unknown host: no brand is reached by this host name (a brand's host "
			                        "serves players once a platform admin approved it)");
			return 0;
		}
		if (strncmp(path, "/t/", 3) == 0) {
			r->tenant_id = 0;
			edge_reply_text(r, 404, "the /t/{tenant}/ prefix is served on the platform's own host names only, "
			                        "not on a brand's");
			return 0;
		}
		return 1;
	}
	if (strncmp(path, "/t/", 3) != 0) {
		edge_reply_text(r, 404, "this is the platform's own host name: reach a brand by its host name, "
		                        "or by /t/{tenant}/ followed by the path (for example /t/acme/player_api.php)");
		return 0;
	}
	const char *slug = path + 3;
	const char *end = strchr(slug, '/');
	size_t n = end ? (size_t)(end - slug) : strlen(slug);
	char s[64];
	if (!end || n == 0 || n >= sizeof(s)) {
		edge_reply_text(r, 404, "unknown tenant in the /t/{tenant}/ prefix");
		return 0;
	}
	memcpy(s, slug, n);
	s[n] = '\0';
	if (!brands_by_slug(e, s, &r->tenant_id, r->arena)) {
		edge_reply_text(r, 404, "unknown tenant in the /t/{tenant}/ prefix");
		return 0;
	}
	r->tenant_slug = fd_arena_strdup(r->arena, s);
	r->prefix = fd_arena_strndup(r->arena, path, (size_t)(end - path));
	if (!r->tenant_slug || !r->prefix) {
		edge_reply_text(r, 500, "out of memory");
		return 0;
	}
	*rest = end;
	return 1;
}

/* Is path the bare /U/P/ID a player may build (three segments)? */
static bool bare_stream_path(const char *path)
{
	int segs = 0;
	for (const char *s = path; *s; s++)
		segs += *s == '/';
	return segs == 3 && path[1] != '/';
}

/* ---- the workers ---- */

static void *worker_main(void *arg)
{
	struct edge_workers *w = arg;
	for (;;) {
		pthread_mutex_lock(&w->mu);
		while (!w->head && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		req_ctx_t *c = w->head;
		if (!c) {   /* stopping, and nothing left */
			pthread_mutex_unlock(&w->mu);
			return NULL;
		}
		w->head = c->next;
		if (!w->head)
			w->tail = NULL;
		w->queued--;
		pthread_mutex_unlock(&w->mu);
		c->fn(&c->r);
		if (!c->replied)
			edge_reply_text(&c->r, 500, "internal error: no reply");
		MHD_resume_connection(c->mc);
	}
}

/* Runs fn now (INLINE) or hands the request to a worker; a full queue is
 * answered 503 at once. */
static void run(req_ctx_t *c, int where, handler_fn fn)
{
	struct edge_workers *w = c->r.e->workers;
	if (where == INLINE) {
		fn(&c->r);
		return;
	}
	pthread_mutex_lock(&w->mu);
	if (w->queued >= QUEUE_MAX || w->stop) {
		pthread_mutex_unlock(&w->mu);
		edge_reply_header(&c->r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
		edge_reply_text(&c->r, 503, "busy: too many requests waiting; retry");
		return;
	}
	c->fn = fn;
	c->deferred = true;
	c->next = NULL;
	MHD_suspend_connection(c->mc);
	if (w->tail)
		w->tail->next = c;
	else
		w->head = c;
	w->tail = c;
	w->queued++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static int workers_start(edged_t *e, fd_err_t *err)
{
	struct edge_workers *w = calloc(1, sizeof(*w));
	if (!w)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	e->workers = w;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	int n = (int)e->cfg->threads;
	for (int i = 0; i < n && i < 256; i++) {
		if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0)
			return fd_err_set(err, FD_EUNAVAIL, "cannot start worker thread %d", i);
		w->nthreads++;
	}
	return 0;
}

/* Lets the workers finish what is queued, then joins them. */
static void workers_stop(edged_t *e)
{
	struct edge_workers *w = e->workers;
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	for (int i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
	e->workers = NULL;
}

static const route_t *find_route(const char *path)
{
	for (const route_t *rt = ROUTES; rt->path; rt++) {
		size_t n = strlen(rt->path);
		bool prefix = rt->path[n - 1] == '/';
		if (prefix ? strncmp(path, rt->path, n) == 0 : strcmp(path, rt->path) == 0)
			return rt;
	}
	return NULL;
}

static bool dot_segment(const char *path)
{
	for (const char *s = path; (s = strchr(s, '/')) != NULL; s++) {
		if (s[1] == '.' && (s[2] == '/' || s[2] == '\0'))
			return true;
		if (s[1] == '.' && s[2] == '.' && (s[3] == '/' || s[3] == '\0'))
			return true;
	}
	return false;
}

static void dispatch(req_ctx_t *c, const char *url)
{
	edge_req_t *r = &c->r;
	if (c->bad) {
		if (c->bad_status == 405)
			edge_reply_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD, POST");
		edge_reply_text(r, c->bad_status ? c->bad_status : 400, c->bad);
		return;
	}
	if (c->too_big) {
		edge_reply_text(r, 413, "request body larger than 64 KiB");
		return;
	}
	if (url[0] != '/' || dot_segment(url) || strchr(url, '\\')) {
		edge_reply_text(r, 400, "path: must start with / and have no . or .. segments");
		return;
	}
	const route_t *route = find_route(url);
	if (route && route->kind == NO_BRAND) {
		run(c, route->where, route->fn);
		return;
	}
	const char *path;
	if (!find_brand(r, url, &path))
		return;
	r->path = path;
	route = find_route(path);
	if (route && route->kind == BRAND) {
		run(c, route->where, route->fn);
		return;
	}
	if (!route && bare_stream_path(path)) {
		run(c, WORKER, handoff_live);
		return;
	}
	edge_reply_text(r, 404, "not found");
}

/* ---- libmicrohttpd callbacks ---- */

static void client_address(req_ctx_t *c)
{
	edge_req_t *r = &c->r;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	r->peer_ip[0] = '\0';
	if (ci && ci->client_addr)
		net_sockaddr_str(ci->client_addr, r->peer_ip, sizeof(r->peer_ip));
	const char *xff = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, "X-Forwarded-For");
	const char *proto = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, "X-Forwarded-Proto");
	bool trusted = net_proxy_trusted(r->e->proxies, r->peer_ip);
	net_forwarded_client(r->e->proxies, r->peer_ip, trusted ? xff : NULL, r->client_ip, sizeof(r->client_ip));
	r->https = false;
	if (trusted && proto)
		r->https = strcasecmp(proto, "https") == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **req_cls)
{
	(void)version;
	edged_t *e = cls;
	req_ctx_t *c = *req_cls;
	if (!c) {
		if (!(c = calloc(1, sizeof(*c))))
			return MHD_NO;
		fd_arena_init(&c->arena, REQ_ARENA_LIMIT);
		c->mc = mc;
		c->started_ms = fd_mono_ms();
		c->r.e = e;
		c->r.arena = &c->arena;
		c->r.method = method;
		c->r.prefix = "";
		c->r.tenant_slug = "";
		c->r.path = url;
		atomic_fetch_add(&e->inflight, 1);
		const union MHD_ConnectionInfo *si = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		c->r.conn = si ? si->socket_context : NULL;
		if (c->r.conn && c->r.conn->nul) {
			c->bad = "the path or an argument contains a NUL byte (%00)";
			c->r.conn->nul = false;
		}
		*req_cls = c;
		client_address(c);
		const char *host = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
		c->r.host_header = host ? host : "";
		if (host && net_host_normalize(host, c->r.host, sizeof(c->r.host)) < 0)
			c->r.host[0] = '\0';
		const char *ua = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_USER_AGENT);
		c->r.user_agent = ua ? ua : "";
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && strcmp(method, "POST") != 0) {
			c->bad = "method not allowed: GET, HEAD or POST";
			c->bad_status = 405;
		}
		if (!c->bad)
			MHD_get_connection_values_n(mc, MHD_GET_ARGUMENT_KIND, on_get_arg, c);
		if (!c->bad && strcmp(method, "POST") == 0) {
			const char *ct = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
			if (ct && strncasecmp(ct, MHD_HTTP_POST_ENCODING_FORM_URLENCODED,
			                      strlen(MHD_HTTP_POST_ENCODING_FORM_URLENCODED)) == 0)
				c->pp = MHD_create_post_processor(mc, 16 * 1024, on_post_arg, c);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		c->body += *upload_size;
		if (c->body > MAX_BODY)
			c->too_big = true;
		else if (c->pp && !c->bad)
			MHD_post_process(c->pp, upload_data, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (c->pending) {
		/* Resumed: a worker's reply is ready. */
		struct MHD_Response *resp = c->pending;
		c->pending = NULL;
		enum MHD_Result ok = MHD_queue_response(mc, c->status, resp);
		MHD_destroy_response(resp);
		access_log(c, url);
		return ok;
	}
	if (c->dispatched)
		return MHD_YES;
	c->dispatched = true;
	dispatch(c, url);
	if (c->deferred)
		return MHD_YES;
	if (!c->replied)
		edge_reply_text(&c->r, 500, "internal error: no reply");
	access_log(c, url);
	return c->replied && c->status ? MHD_YES : MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **req_cls, enum MHD_RequestTerminationCode toe)
{
	(void)mc; (void)toe;
	edged_t *e = cls;
	req_ctx_t *c = *req_cls;
	if (!c)
		return;
	atomic_fetch_sub(&e->inflight, 1);
	if (c->pp)
		MHD_destroy_post_processor(c->pp);
	if (c->pending)
		MHD_destroy_response(c->pending);
	fd_arena_free(&c->arena);
	free(c);
	*req_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
	(void)cls; (void)mc;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		*socket_context = calloc(1, sizeof(edge_conn_t));
	} else {
		free(*socket_context);
		*socket_context = NULL;
	}
}

/* libmicrohttpd's own decoding, noting a decoded NUL (which would cut the
 * string short unseen) so that the request is refused. */
static size_t unescape(void *cls, struct MHD_Connection *mc, char *s)
{
	(void)cls;
	size_t n = MHD_http_unescape(s);
	if (strlen(s) != n) {
		const union MHD_ConnectionInfo *si = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		if (si && si->socket_context)
			((edge_conn_t *)si->socket_context)->nul = true;
	}
	return n;
}

int http_start(edged_t *e, fd_err_t *err)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (net_parse_listen(e->cfg->listen, &ss, &sl) < 0)
		return fd_err_set(err, FD_EINVAL, "FRONTDESK_EDGED_LISTEN: \"%s\" is not host:port with a numeric "
		                  "IPv4 or [IPv6] address", e->cfg->listen);
	int rc = workers_start(e, err);
	if (rc < 0)
		return rc;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	e->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, e,
	                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	                             MHD_OPTION_THREAD_POOL_SIZE, (unsigned)e->cfg->io_threads,
	                             MHD_OPTION_CONNECTION_LIMIT, (unsigned)e->cfg->max_connections,
	                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)e->cfg->connection_timeout,
	                             MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
	                             MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
	                             MHD_OPTION_NOTIFY_COMPLETED, on_completed, e,
	                             MHD_OPTION_NOTIFY_CONNECTION, on_connection, e,
	                             MHD_OPTION_UNESCAPE_CALLBACK, unescape, e,
	                             MHD_OPTION_END);
	if (!e->daemon)
		return fd_err_set(err, FD_EUNAVAIL, "cannot listen on %s (in use, or not an address of this host)",
		                  e->cfg->listen);
	return 0;
}

void http_stop(edged_t *e, int64_t grace_ms)
{
	if (!e->daemon) {
		workers_stop(e);
		return;
	}
	atomic_store(&e->stopping, true);
	MHD_socket s = MHD_quiesce_daemon(e->daemon);
	if (s != MHD_INVALID_SOCKET)
		close(s);
	/* Requests in flight get their answer (with Connection: close); idle
	 * keep-alive connections are closed by the stop. */
	int64_t deadline = fd_mono_ms() + grace_ms;
	while (fd_mono_ms() < deadline && atomic_load(&e->inflight) > 0) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	/* Past the grace, what workers still hold ends within the calls'
	 * deadline; every suspended connection is resumed before the stop. */
	workers_stop(e);
	MHD_stop_daemon(e->daemon);
	e->daemon = NULL;
}
