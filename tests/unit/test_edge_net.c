/* test_edge_net.c - edged's address rules from tables: the client address
 * behind trusted proxies (X-Forwarded-For walked from the right to the first
 * untrusted hop), the proxy list's parsing, Host header normalisation and
 * the listen address. */
#include <string.h>
#include <sys/socket.h>
#include "net.h"
#include "test.h"

typedef struct {
	const char *proxies, *peer, *xff, *want;
} xff_case_t;

static const xff_case_t xff_cases[] = {
	/* No trusted proxy: the header is never believed. */
	{ "", "203.0.113.9", "198.51.100.1", "203.0.113.9" },
	{ "", "127.0.0.1", "198.51.100.1", "127.0.0.1" },
	/* The peer is trusted: the rightmost entry is the client. */
	{ "127.0.0.1", "127.0.0.1", "198.51.100.1", "198.51.100.1" },
	{ "127.0.0.1", "127.0.0.1", NULL, "127.0.0.1" },
	/* A client writing its own X-Forwarded-For cannot choose its address:
	 * the entries left of the first untrusted one are ignored. */
	{ "127.0.0.1", "127.0.0.1", "6.6.6.6, 198.51.100.1", "198.51.100.1" },
	{ "127.0.0.1,10.0.0.0/8", "127.0.0.1", "6.6.6.6, 198.51.100.1, 10.1.2.3", "198.51.100.1" },
	{ "127.0.0.1,10.0.0.0/8", "127.0.0.1", "10.9.9.9,10.1.2.3", "10.9.9.9" },   /* all trusted: leftmost */
	/* An untrusted peer's header is ignored even if it names trusted hops. */
	{ "10.0.0.0/8", "203.0.113.9", "10.1.1.1", "203.0.113.9" },
	/* Garbage ends the walk at the trusted hop before it. */
	{ "127.0.0.1", "127.0.0.1", "198.51.100.1, bogus", "127.0.0.1" },
	{ "127.0.0.1,10.0.0.0/8", "127.0.0.1", "bogus, 10.1.2.3", "10.1.2.3" },
	{ "127.0.0.1", "127.0.0.1", "", "127.0.0.1" },
	{ "127.0.0.1", "127.0.0.1", " , ", "127.0.0.1" },
	/* IPv6, written in any case, comes back normalised. */
	{ "::1", "::1", "2001:DB8::1", "2001:db8::1" },
	{ "::1,2001:db8::/32", "::1", "2001:db9::5, 2001:db8:1::1", "2001:db9::5" },
	/* /8 and /31 boundaries. */
	{ "127.0.0.1,10.0.0.0/31", "127.0.0.1", "198.51.100.7,10.0.0.1", "198.51.100.7" },
	{ "127.0.0.1,10.0.0.0/31", "127.0.0.1", "198.51.100.7,10.0.0.2", "10.0.0.2" },
};

typedef struct {
	const char *in, *want;   /* want NULL: refused */
} host_case_t;

static const host_case_t host_cases[] = {
	{ "Example.COM", "example.com" },
	{ "example.com.", "example.com" },
	{ "example.com:8443", "example.com" },
	{ "example.com.:80", "example.com" },
	{ "127.0.0.1:7180", "127.0.0.1" },
	{ "[::1]:7180", "[::1]" },
	{ "[2001:DB8::1]", "[2001:db8::1]" },
	{ "xn--bcher-kva.example", "xn--bcher-kva.example" },
	{ "localhost", "localhost" },
	{ "", NULL },
	{ ".", NULL },
	{ "exa mple.com", NULL },
	{ "example.com:80x", NULL },
	{ "ex%61mple.com", NULL },
	{ "b\xc3\xbc" "cher.example", NULL },   /* raw UTF-8: clients send punycode */
	{ "[::1", NULL },
	{ "[1.2.3.4]", NULL },
	{ "[::1]x", NULL },
	{ "[::1]:80\"x", NULL },
	{ "[::1]:", NULL },
	{ "a/b", NULL },
};

static void test_xff(void)
{
	for (size_t i = 0; i < sizeof(xff_cases) / sizeof(xff_cases[0]); i++) {
		const xff_case_t *c = &xff_cases[i];
		fd_err_t err = { 0 };
		struct edge_proxies *p = net_proxies_parse(c->proxies, &err);
		CHECK(p != NULL, "case %zu: %s", i, err.msg);
		if (!p)
			continue;
		char out[64];
		net_forwarded_client(p, c->peer, c->xff, out, sizeof(out));
		CHECK(strcmp(out, c->want) == 0, "case %zu: got %s, want %s", i, out, c->want);
		net_proxies_free(p);
	}
}

static void test_proxies_parse(void)
{
	static const char *const bad[] = { "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0/8", "foo", "10.0.0.1,",
		                               "/8", "10.0.0.0/8x", "1.2.3.4/-1", NULL };
	for (int i = 0; bad[i]; i++) {
		fd_err_t err = { 0 };
		struct edge_proxies *p = net_proxies_parse(bad[i], &err);
		CHECK(p == NULL, "\"%s\" accepted", bad[i]);
		CHECK(strstr(err.msg, "FRONTDESK_EDGED_TRUSTED_PROXIES") != NULL, "\"%s\": message %s", bad[i], err.msg);
		net_proxies_free(p);
	}
	fd_err_t err = { 0 };
	struct edge_proxies *p = net_proxies_parse("10.0.0.0/8,::1,2001:db8::/32,0.0.0.0/0", &err);
	CHECK(p && net_proxy_trusted(p, "10.200.0.1") && net_proxy_trusted(p, "::1") &&
	      net_proxy_trusted(p, "2001:db8:ffff::1") && net_proxy_trusted(p, "8.8.8.8") &&
	      !net_proxy_trusted(p, "2001:db9::1") && !net_proxy_trusted(p, "bogus"), "membership");
	net_proxies_free(p);
}

static void test_hosts(void)
{
	for (size_t i = 0; i < sizeof(host_cases) / sizeof(host_cases[0]); i++) {
		const host_case_t *c = &host_cases[i];
		char out[256];
		int rc = net_host_normalize(c->in, out, sizeof(out));
		if (c->want)
			CHECK(rc == 0 && strcmp(out, c->want) == 0, "\"%s\": rc %d, got %s", c->in, rc, rc ? "" : out);
		else
			CHECK(rc < 0, "\"%s\" accepted as %s", c->in, out);
	}
	char longname[300];
	memset(longname, 'a', sizeof(longname));
	longname[253] = '\0';
	char out[256];
	CHECK(net_host_normalize(longname, out, sizeof(out)) == 0, "253 characters refused");
	longname[253] = 'a';
	longname[254] = '\0';
	CHECK(net_host_normalize(longname, out, sizeof(out)) < 0, "254 characters accepted");
}

static void test_listen(void)
{
	struct sockaddr_storage ss;
	socklen_t len;
	CHECK(net_parse_listen("127.0.0.1:7180", &ss, &len) == 0 && ss.ss_family == AF_INET, "v4");
	CHECK(net_parse_listen("[::1]:7180", &ss, &len) == 0 && ss.ss_family == AF_INET6, "v6");
	CHECK(net_parse_listen("localhost:7180", &ss, &len) == 0, "localhost");
	static const char *const bad[] = { "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "host.example:80",
		                               "[::1:80", "127.0.0.1:8x", NULL };
	for (int i = 0; bad[i]; i++)
		CHECK(net_parse_listen(bad[i], &ss, &len) < 0, "\"%s\" accepted", bad[i]);
}

int main(void)
{
	test_xff();
	test_proxies_parse();
	test_hosts();
	test_listen();
	return test_summary();
}
