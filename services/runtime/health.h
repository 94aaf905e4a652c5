/* health.h - the server's health state and the built-in services that read
 * it (health.c: grpc.health.v1.Health; reflection.c: server reflection).
 * Both are served through fd/rpc.h like any service; rpc_server.c owns one
 * fd_health_t and tells it of each service added and of every change. */
#ifndef FD_HEALTH_H
#define FD_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include "fd/rpc.h"

typedef struct fd_health fd_health_t;

/* SERVING, no service names yet. NULL when out of memory. */
fd_health_t *fd_health_new(void);
/* After the server stopped (no Watch stream left). NULL is ignored. */
void fd_health_free(fd_health_t *h);
/* Remember a service's full name (frontdesk.v1.AuthService): Check and
 * Watch answer for it, reflection lists it. 0 or -FD_EEXHAUSTED. */
int fd_health_known(fd_health_t *h, const char *service);
/* Set the status; open Watch streams hear of a change at once. Returns
 * whether it changed. */
bool fd_health_set(fd_health_t *h, bool serving);
/* A copy of the known names (malloc'd array of malloc'd strings; free
 * each, then the array); *n their count. NULL when out of memory (or none). */
char **fd_health_names(fd_health_t *h, size_t *n);

/* Serve grpc.health.v1.Health / server reflection (v1alpha and v1) on srv
 * from h, which must outlive the server. */
int fd_health_serve(fd_server_t *srv, fd_health_t *h, fd_err_t *err) FD_MUSTCHECK;
int fd_reflection_serve(fd_server_t *srv, fd_health_t *h, fd_err_t *err) FD_MUSTCHECK;

#endif
