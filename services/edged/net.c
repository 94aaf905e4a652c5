/* net.c - addresses and names as edged meets them (net.h). */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "net.h"
#include "fd/wire.h"

#define MAX_PROXIES 64
#define MAX_HOPS 32

typedef struct cidr {
	int family;
	unsigned char addr[16];
	int bits;
} cidr_t;

struct edge_proxies {
	int n;
	cidr_t c[MAX_PROXIES];
};

bool net_utf8_valid(const char *s, size_t n)
{
	return fd_utf8_valid((const uint8_t *)s, n);
}

int net_parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	const char *colon = strrchr(listen, ':');
	if (!colon || !colon[1])
		return -1;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535)
		return -1;
	char host[64];
	size_t n = (size_t)(colon - listen);
	if (listen[0] == '[') {
		if (n < 2 || listen[n - 1] != ']' || n - 2 >= sizeof(host))
			return -1;
		memcpy(host, listen + 1, n - 2);
		host[n - 2] = '\0';
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return -1;
		*len = sizeof(*s6);
		return 0;
	}
	if (n >= sizeof(host))
		return -1;
	memcpy(host, listen, n);
	host[n] = '\0';
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
		return -1;
	*len = sizeof(*s4);
	return 0;
}

void net_sockaddr_str(const struct sockaddr *sa, char *out, size_t outsz)
{
	out[0] = '\0';
	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)outsz);
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		/* An IPv4 client on a dual-stack socket is an IPv4 client. */
		if (IN6_IS_ADDR_V4MAPPED(a))
			inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)outsz);
		else
			inet_ntop(AF_INET6, a, out, (socklen_t)outsz);
	}
}

static int parse_ip(const char *s, size_t n, unsigned char addr[16], int *family)
{
	char buf[64];
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, addr) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, addr) == 1) {
		*family = AF_INET6;
		return 0;
	}
	return -1;
}

static bool cidr_has(const cidr_t *c, int family, const unsigned char *a)
{
	if (c->family != family)
		return false;
	int full = c->bits / 8, rest = c->bits % 8;
	if (memcmp(c->addr, a, (size_t)full) != 0)
		return false;
	if (!rest)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (c->addr[full] & mask) == (a[full] & mask);
}

struct edge_proxies *net_proxies_parse(const char *spec, fd_err_t *err)
{
	struct edge_proxies *p = calloc(1, sizeof(*p));
	if (!p) {
		fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		return NULL;
	}
	for (const char *s = spec; *s;) {
		size_t n = strcspn(s, ",");
		const char *slash = memchr(s, '/', n);
		size_t an = slash ? (size_t)(slash - s) : n;
		cidr_t *c = &p->c[p->n];
		if (p->n == MAX_PROXIES) {
			fd_err_set(err, FD_EINVAL, "FRONTDESK_EDGED_TRUSTED_PROXIES: at most %d entries", MAX_PROXIES);
			goto fail;
		}
		if (parse_ip(s, an, c->addr, &c->family) < 0 || (s[n] == ',' && s[n + 1] == '\0'))
			goto bad;
		int max = c->family == AF_INET ? 32 : 128;
		c->bits = max;
		if (slash) {
			char *end;
			long bits = strtol(slash + 1, &end, 10);
			if (end != s + n || slash + 1 == end || bits < 0 || bits > max)
				goto bad;
			c->bits = (int)bits;
		}
		p->n++;
		s += n + (s[n] == ',');
		continue;
bad:
		fd_err_set(err, FD_EINVAL, "FRONTDESK_EDGED_TRUSTED_PROXIES: \"%.*s\" is not an address or CIDR",
		           (int)(n > 64 ? 64 : n), s);
		goto fail;
	}
	return p;
fail:
	free(p);
	return NULL;
}

void net_proxies_free(struct edge_proxies *p)
{
	free(p);
}

static bool trusted_bin(const struct edge_proxies *p, int family, const unsigned char *a)
{
	for (int i = 0; p && i < p->n; i++)
		if (cidr_has(&p->c[i], family, a))
			return true;
	return false;
}

bool net_proxy_trusted(const struct edge_proxies *p, const char *ip)
{
	unsigned char a[16];
	int family;
	return parse_ip(ip, strlen(ip), a, &family) == 0 && trusted_bin(p, family, a);
}

static void copy(char *out, size_t outsz, const char *s, size_t n)
{
	if (n >= outsz)
		n = outsz - 1;
	memcpy(out, s, n);
	out[n] = '\0';
}

void net_forwarded_client(const struct edge_proxies *p, const char *peer, const char *xff,
                          char *out, size_t outsz)
{
	copy(out, outsz, peer, strlen(peer));
	if (!xff || !net_proxy_trusted(p, peer))
		return;
	/* From the right: each hop is believed only while the one that wrote
	 * it (the hop to its right, first the peer) is trusted. */
	size_t end = strlen(xff);
	for (int hops = 0; hops < MAX_HOPS && end > 0; hops++) {
		size_t start = end;
		while (start > 0 && xff[start - 1] != ',')
			start--;
		size_t a = start, b = end;
		while (a < b && (xff[a] == ' ' || xff[a] == '\t'))
			a++;
		while (b > a && (xff[b - 1] == ' ' || xff[b - 1] == '\t'))
			b--;
		unsigned char bin[16];
		int family;
		if (parse_ip(xff + a, b - a, bin, &family) < 0)
			return;   /* not an address: the trusted hop before it is the client */
		char text[64];
		copy(text, sizeof(text), xff + a, b - a);
		/* Normalised text (e.g. upper-case IPv6 written by a proxy). */
		inet_ntop(family, bin, out, (socklen_t)outsz);
		if (!trusted_bin(p, family, bin))
			return;
		if (start == 0)
			return;
		end = start - 1;
	}
}

int net_host_normalize(const char *in, char *out, size_t outsz)
{
	size_t n = strlen(in);
	if (in[0] == '[') {
		const char *close = strchr(in, ']');
		if (!close)
			return -1;
		size_t an = (size_t)(close - in) + 1;
		unsigned char bin[16];
		int family;
		if (close[1] && (close[1] != ':' || !close[2] || strspn(close + 2, "0123456789") != strlen(close + 2)))
			return -1;
		if (parse_ip(in + 1, an - 2, bin, &family) < 0 || family != AF_INET6)
			return -1;
		char text[64];
		inet_ntop(AF_INET6, bin, text, sizeof(text));
		if (strlen(text) + 3 > outsz)
			return -1;
		snprintf(out, outsz, "[%s]", text);
		return 0;
	}
	const char *colon = strchr(in, ':');
	if (colon) {
		for (const char *d = colon + 1; *d; d++)
			if (!isdigit((unsigned char)*d))
				return -1;
		n = (size_t)(colon - in);
	}
	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n == 0 || n > 253 || n >= outsz)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)in[i];
		if (!(isalnum(ch) || ch == '-' || ch == '.'))
			return -1;
		out[i] = (char)tolower(ch);
	}
	out[n] = '\0';
	return 0;
}
