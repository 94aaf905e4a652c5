/* brands.h - which tenant (brand) a request is for: the approved host
 * names of every active tenant and the tenants' slugs, read from authd's
 * ListBrandHosts and re-read every FRONTDESK_EDGED_HOSTS_REFRESH_MS (the
 * last good table is kept while authd cannot be reached), and the
 * platform's own host names (FRONTDESK_PLATFORM_HOSTS). */
#ifndef EDGE_BRANDS_H
#define EDGE_BRANDS_H

#include <stdbool.h>
#include <stdint.h>
#include "edged.h"
#include "fd/arena.h"

/* Parses the platform's host names and starts the refresh thread (the first
 * read is awaited for up to a second, so a fresh edge knows its brands). */
int brands_start(edged_t *e, fd_err_t *err) FD_MUSTCHECK;
void brands_stop(edged_t *e);

/* host is normalised (net_host_normalize). */
bool brands_is_platform_host(edged_t *e, const char *host);
/* true with *tenant and *slug (copied into arena) when host is an approved
 * brand host of an active tenant. */
bool brands_by_host(edged_t *e, const char *host, int64_t *tenant, const char **slug, fd_arena_t *arena);
/* true with *tenant when slug is an active tenant's. */
bool brands_by_slug(edged_t *e, const char *slug, int64_t *tenant, fd_arena_t *arena);

#endif
