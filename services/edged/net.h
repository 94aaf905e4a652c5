/* net.h - addresses and names as edged meets them: the listen address, a
 * peer's address as text, trusted proxy CIDRs and the X-Forwarded-For walk,
 * the Host header normalised, UTF-8 validity. Pure: no I/O. */
#ifndef EDGE_NET_H
#define EDGE_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include "fd/status.h"

struct edge_proxies;

/* "127.0.0.1:7180" or "[::1]:7180" into ss. 0, or -1 when not that. */
int net_parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len);
/* The numeric address of sa (no port) into out. */
void net_sockaddr_str(const struct sockaddr *sa, char *out, size_t outsz);

/* "10.0.0.0/8,::1,2001:db8::/32" (empty = none). NULL with err on a bad entry,
 * naming it. Free with net_proxies_free. */
struct edge_proxies *net_proxies_parse(const char *spec, fd_err_t *err);
void net_proxies_free(struct edge_proxies *p);
bool net_proxy_trusted(const struct edge_proxies *p, const char *ip);
/* The client's address: peer itself, unless peer is a trusted proxy and xff
 * is given; then X-Forwarded-For is walked from the right, skipping trusted
 * proxies, to the first untrusted address (or the leftmost when all are
 * trusted). An entry that is not an address ends the walk at the hop
 * before it. */
void net_forwarded_client(const struct edge_proxies *p, const char *peer, const char *xff,
                          char *out, size_t outsz);

/* A Host header's name: the port and one trailing dot dropped, lower case,
 * letters, digits, '-' and '.' only (clients send IDNs as punycode), at most
 * 253 characters; an IPv6 literal keeps its brackets. 0, or -1 when it is
 * not a host name. */
int net_host_normalize(const char *in, char *out, size_t outsz);

bool net_utf8_valid(const char *s, size_t n);   /* fd_utf8_valid on chars */

#endif
