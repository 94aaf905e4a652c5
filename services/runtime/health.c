/* health.c - grpc.health.v1.Health: Check and Watch, per service name.
 *
 * Every service is SERVING while its dependencies are (the database, for
 * most): fd_server_set_serving flips them all, and open Watch streams hear
 * of it at once. "" names the server as a whole. */
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include "grpc/health/v1/health.pb-c.h"
#include "health.h"

struct fd_health {
	pthread_mutex_t mu;
	bool serving;
	char **services;        /* full names of the services added */
	size_t nservices;
	fd_call_t **watchers;   /* open Watch streams, each holding a reference */
	size_t nwatchers, capwatchers;
};

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus status_t;

static status_t status_of(fd_health_t *h, const char *service)
{
	status_t st = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
	pthread_mutex_lock(&h->mu);
	bool known = service[0] == '\0';
	for (size_t i = 0; !known && i < h->nservices; i++)
		known = strcmp(h->services[i], service) == 0;
	if (known)
		st = h->serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
		                : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
	pthread_mutex_unlock(&h->mu);
	return st;
}

static int check(fd_call_t *call, const ProtobufCMessage *req_, ProtobufCMessage **resp)
{
	const Grpc__Health__V1__HealthCheckRequest *req = (const void *)req_;
	fd_health_t *h = fd_call_service(call);
	status_t st = status_of(h, req->service);
	if (st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN)
		return fd_call_fail(call, FD_ENOTFOUND, "unknown service \"%.100s\"", req->service);
	Grpc__Health__V1__HealthCheckResponse *r = fd_arena_alloc(fd_call_arena(call), sizeof(*r));
	if (!r)
		return fd_call_fail(call, FD_EEXHAUSTED, "out of memory");
	grpc__health__v1__health_check_response__init(r);
	r->status = st;
	*resp = &r->base;
	return 0;
}

static int send_status(fd_call_t *call, status_t st)
{
	Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	r.status = st;
	return fd_stream_send(call, &r.base);
}

static int watch_open(fd_call_t *call, const ProtobufCMessage *req_)
{
	const Grpc__Health__V1__HealthCheckRequest *req = (const void *)req_;
	fd_health_t *h = fd_call_service(call);
	fd_call_set_user(call, req->service); /* lives in the call's arena */

	pthread_mutex_lock(&h->mu);
	if (h->nwatchers == h->capwatchers) {
		size_t cap = h->capwatchers ? h->capwatchers * 2 : 16;
		fd_call_t **w = realloc(h->watchers, cap * sizeof(*w));
		if (!w) {
			pthread_mutex_unlock(&h->mu);
			return fd_call_fail(call, FD_EEXHAUSTED, "out of memory");
		}
		h->watchers = w;
		h->capwatchers = cap;
	}
	fd_call_ref(call);
	h->watchers[h->nwatchers++] = call;
	pthread_mutex_unlock(&h->mu);
	send_status(call, status_of(h, req->service));
	return 0;
}

static void watch_closed(fd_call_t *call, bool cancelled)
{
	fd_health_t *h = fd_call_service(call);
	bool found = false;
	pthread_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->nwatchers; i++) {
		if (h->watchers[i] == call) {
			h->watchers[i] = h->watchers[--h->nwatchers];
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&h->mu);
	if (found)
		fd_call_unref(call);
}

static void broadcast(fd_health_t *h)
{
	/* Send outside the lock: take references to a snapshot of the list. */
	pthread_mutex_lock(&h->mu);
	size_t n = h->nwatchers;
	fd_call_t **snap = n ? malloc(n * sizeof(*snap)) : NULL;
	if (snap) {
		memcpy(snap, h->watchers, n * sizeof(*snap));
		for (size_t i = 0; i < n; i++)
			fd_call_ref(snap[i]);
	}
	pthread_mutex_unlock(&h->mu);
	for (size_t i = 0; snap && i < n; i++) {
		send_status(snap[i], status_of(h, fd_call_user(snap[i])));
		fd_call_unref(snap[i]);
	}
	free(snap);
}

fd_health_t *fd_health_new(void)
{
	fd_health_t *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	pthread_mutex_init(&h->mu, NULL);
	h->serving = true;
	return h;
}

int fd_health_known(fd_health_t *h, const char *service)
{
	char *name = strdup(service);
	pthread_mutex_lock(&h->mu);
	char **names = name ? realloc(h->services, (h->nservices + 1) * sizeof(char *)) : NULL;
	if (names) {
		h->services = names;
		names[h->nservices++] = name;
	}
	pthread_mutex_unlock(&h->mu);
	if (!names) {
		free(name);
		return -FD_EEXHAUSTED;
	}
	return 0;
}

bool fd_health_set(fd_health_t *h, bool serving)
{
	pthread_mutex_lock(&h->mu);
	bool changed = h->serving != serving;
	h->serving = serving;
	pthread_mutex_unlock(&h->mu);
	if (changed)
		broadcast(h);
	return changed;
}

char **fd_health_names(fd_health_t *h, size_t *n)
{
	pthread_mutex_lock(&h->mu);
	*n = h->nservices;
	char **out = calloc(*n ? *n : 1, sizeof(*out));
	for (size_t i = 0; out && i < *n; i++) {
		if (!(out[i] = strdup(h->services[i]))) {
			while (i--)
				free(out[i]);
			free(out);
			out = NULL;
		}
	}
	pthread_mutex_unlock(&h->mu);
	if (!out)
		*n = 0;
	return out;
}

void fd_health_free(fd_health_t *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->nservices; i++)
		free(h->services[i]);
	free(h->services);
	free(h->watchers);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

static const fd_stream_ops_t watch_ops = { .open = watch_open, .closed = watch_closed };

static const fd_method_impl_t health_methods[] = {
	{ .name = "Check", .unary = check },
	{ .name = "Watch", .stream = &watch_ops },
	{ 0 },
};

int fd_health_serve(fd_server_t *srv, fd_health_t *h, fd_err_t *err)
{
	return fd_server_add_service(srv, &grpc__health__v1__health__descriptor, health_methods, h,
	                             err);
}
