/* test_hostname.c - fd/hostname.h from tables of cases: what a host name
 * becomes (case, port, trailing dot, IDN to punycode), what is refused and
 * the message naming why (IP literals, lengths, labels, characters, bytes
 * that are not UTF-8), fd_hostname_ip, fd_hostname_within and the list of
 * the platform's own names. */
#include <stdlib.h>
#include <string.h>
#include "fd/hostname.h"
#include "test.h"

#define BAD (-FD_EINVAL)

typedef struct {
	const char *in;
	int want;                /* 0 or -FD_EINVAL */
	const char *out;         /* the name when 0; a part of the message when refused */
} host_case_t;

/* 63 and 64 characters. */
#define L63 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define L64 L63 "a"
/* 4 labels of 63 and dots: 255; 3 of 63, one of 61: 253; one of 62: 254. */
#define N253 L63 "." L63 "." L63 ".aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define N254 L63 "." L63 "." L63 ".aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static const host_case_t cases[] = {
	/* What it becomes. */
	{ "example.com", 0, "example.com" },
	{ "Example.COM.", 0, "example.com" },
	{ "example.com:8443", 0, "example.com" },
	{ "EXAMPLE.com.:80", 0, "example.com" },
	{ "example.com:", 0, "example.com" },          /* RFC 3986: an empty port */
	{ "example.com:65535", 0, "example.com" },
	{ "localhost", 0, "localhost" },                /* one label: a host name (authd asks brands for a dot) */
	{ "localhost.", 0, "localhost" },
	{ "a-b.c-d.example", 0, "a-b.c-d.example" },
	{ "ab--cd.example", 0, "ab--cd.example" },      /* an LDH label, as DNS has them */
	{ "123.example", 0, "123.example" },            /* only the last label may not be a number */
	{ "x.0y", 0, "x.0y" },
	{ "bücher.example", 0, "xn--bcher-kva.example" },
	{ "BÜCHER.Example", 0, "xn--bcher-kva.example" },
	{ "Bücher.example.:443", 0, "xn--bcher-kva.example" },
	{ "b\xc3\xbc" "cher.example", 0, "xn--bcher-kva.example" },
	{ "bu\xcc\x88" "cher.example", 0, "xn--bcher-kva.example" },   /* NFC: u + combining diaeresis */
	{ "xn--bcher-kva.example", 0, "xn--bcher-kva.example" },
	{ "XN--BCHER-KVA.example", 0, "xn--bcher-kva.example" },
	{ "straße.de", 0, "xn--strae-oqa.de" },         /* non-transitional: ß stays */
	{ "日本語.jp", 0, "xn--wgv71a119e.jp" },
	{ "ｅｘａｍｐｌｅ.com", 0, "example.com" },      /* fullwidth letters map to ASCII */
	{ "a" "\xe3\x80\x82" "example", 0, "a.example" },   /* U+3002, an ideographic full stop */
	{ L63 ".example", 0, L63 ".example" },
	{ N253, 0, N253 },

	/* Empty. */
	{ "", BAD, "required" },
	{ ".", BAD, "no name" },
	{ ":80", BAD, "no name" },
	{ "example.com..", BAD, "empty label" },
	{ "a..b", BAD, "empty label" },
	{ ".a.com", BAD, "empty label" },
	{ "a" "\xe3\x80\x82\xe3\x80\x82" "b", BAD, "empty label" },

	/* IP literals. */
	{ "127.0.0.1", BAD, "IP address (127.0.0.1)" },
	{ "127.0.0.1:8080", BAD, "IP address (127.0.0.1)" },
	{ "127.0.0.1.", BAD, "IP address (127.0.0.1)" },
	{ "127.1", BAD, "IP address (127.0.0.1)" },
	{ "0x7f.1", BAD, "IP address (127.0.0.1)" },
	{ "2130706433", BAD, "IP address (127.0.0.1)" },
	{ "0177.0.0.1", BAD, "IP address (127.0.0.1)" },
	{ "0x7F000001", BAD, "IP address (127.0.0.1)" },
	{ "1.2.3.256", BAD, "is a number" },
	{ "example.123", BAD, "is a number" },
	{ "example.0x1f", BAD, "is a number" },
	{ "１２７．０．０．１", BAD, "IP address (127.0.0.1)" },   /* fullwidth, mapped */
	{ "[::1]", BAD, "IP address (::1)" },
	{ "[::1]:8080", BAD, "IP address (::1)" },
	{ "[2001:DB8::1]:443", BAD, "IP address (2001:db8::1)" },
	{ "::1", BAD, "IP address (::1)" },
	{ "2001:db8::1", BAD, "IP address (2001:db8::1)" },
	{ "[::1", BAD, "brackets" },
	{ "[example.com]", BAD, "brackets" },
	{ "a:b:c", BAD, "':' may appear once" },

	/* Ports. */
	{ "example.com:65536", BAD, "port \"65536\"" },
	{ "example.com:123456", BAD, "port" },
	{ "example.com:http", BAD, "port \"http\"" },
	{ "example.com:-1", BAD, "port" },
	{ "example.com: 80", BAD, "port" },

	/* Lengths. */
	{ L64 ".example", BAD, "has 64 characters; at most 63" },
	{ N254, BAD, "254 characters; a host name has at most 253" },
	{ L63 "." L63 "." L63 "." L63, BAD, "at most 253" },
	{ "bücher" L63 ".example", BAD, "longer than 63" },

	/* Labels and characters. */
	{ "-a.com", BAD, "must not start or end with '-'" },
	{ "a-.com", BAD, "must not start or end with '-'" },
	{ "a.-com", BAD, "must not start or end with '-'" },
	{ "%", BAD, "'%' is not allowed" },
	{ "ex%41mple.com", BAD, "'%' is not allowed" },
	{ "a_b.com", BAD, "'_' is not allowed" },
	{ "a b.com", BAD, "spaces are not allowed" },
	{ " example.com", BAD, "spaces are not allowed" },
	{ "example.com ", BAD, "spaces are not allowed" },
	{ "exa\tmple.com", BAD, "0x09" },
	{ "exa\x7fmple.com", BAD, "0x7f" },
	{ "a/b.com", BAD, "'/' is not allowed" },
	{ "user@example.com", BAD, "'@' is not allowed" },
	{ "a\"b.com", BAD, "'\"' is not allowed" },
	{ "xn--zz.example", BAD, "not a valid internationalised name" },
	{ "xn--abc.example", BAD, "not a valid internationalised name" },
	{ "a\xc2\x85" "b.com", BAD, "not a valid internationalised name" },   /* U+0085, C1 */
	{ "a\xe2\x80\xae" "b.com", BAD, "\\u{202e}" },                        /* quoted escaped */
	{ "a\xe2\x80\x8b" "b.com", 0, "ab.com" },      /* UTS #46 drops a zero-width space, as browsers do */

	/* Not UTF-8. */
	{ "b\xfc" "cher.example", BAD, "not valid UTF-8 (at byte 1)" },
	{ "\xc0\xaf.com", BAD, "not valid UTF-8" },                /* overlong '/' */
	{ "\xed\xa0\x80.com", BAD, "not valid UTF-8" },            /* a surrogate */
	{ "\xf4\x90\x80\x80.com", BAD, "not valid UTF-8" },        /* above U+10FFFF */
	{ "a\xe3\x80", BAD, "not valid UTF-8 (at byte 1)" },       /* cut short */
	{ "\xff", BAD, "not valid UTF-8" },
};

static void normalize_cases(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const host_case_t *c = &cases[i];
		char out[FD_HOSTNAME_SIZE];
		fd_err_t err = { 0 };
		memset(out, 'z', sizeof(out));
		int rc = fd_hostname_normalize("host_name", c->in, out, sizeof(out), &err);
		CHECK(rc == c->want, "case %zu (%s): got %d want %d (%s)", i, c->in, rc, c->want, err.msg);
		if (rc == 0) {
			CHECK(c->out && strcmp(out, c->out) == 0, "case %zu (%s): got \"%s\" want \"%s\"", i, c->in, out,
			      c->out);
		} else {
			CHECK(out[0] == '\0', "case %zu: out is empty on a refusal", i);
			CHECK(strncmp(err.msg, "host_name: ", 11) == 0, "case %zu: message names the field: %s", i, err.msg);
			if (c->out)
				CHECK(strstr(err.msg, c->out) != NULL, "case %zu (%s): '%s' lacks '%s'", i, c->in, err.msg,
				      c->out);
		}
	}
}

/* Any bytes: long input, every byte value, never a crash nor an
 * unterminated answer; messages stay short. */
static void any_bytes(void)
{
	size_t big = 64 * 1024;
	char *s = malloc(big + 1);
	CHECK(s != NULL, "malloc");
	if (!s)
		return;
	memset(s, 'a', big);
	s[big] = '\0';
	char out[FD_HOSTNAME_SIZE];
	fd_err_t err = { 0 };
	CHECK(fd_hostname_normalize("h", s, out, sizeof(out), &err) == BAD && strstr(err.msg, "longer than 1024"),
	      "64 KB: %s", err.msg);
	for (size_t i = 0; i < big; i++)
		s[i] = (char)(1 + (i * 131) % 255);
	CHECK(fd_hostname_normalize("h", s, out, sizeof(out), &err) == BAD, "64 KB of bytes");
	/* 1024 bytes exactly: looked at; refused for its length. */
	memset(s, 'a', 1024);
	s[1024] = '\0';
	CHECK(fd_hostname_normalize("h", s, out, sizeof(out), &err) == BAD && strstr(err.msg, "at most 253"), "1024: %s",
	      err.msg);
	/* Every single byte, and every byte in a name. */
	for (int b = 1; b < 256; b++) {
		char one[2] = { (char)b, 0 };
		char name[16];
		snprintf(name, sizeof(name), "a%cb.com", b);
		int rc1 = fd_hostname_normalize("h", one, out, sizeof(out), &err);
		CHECK(rc1 == 0 || rc1 == BAD, "byte 0x%02x alone: %d", b, rc1);
		CHECK(strlen(err.msg) < FD_ERR_MSG_MAX, "message ends");
		int rc2 = fd_hostname_normalize("h", name, out, sizeof(out), &err);
		bool ok = (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '-' ||
		          b == '.' || b == ':';
		if (b == ':')
			CHECK(rc2 == BAD, "a:b.com: the port is not a number");
		else
			CHECK((rc2 == 0) == ok, "a\\x%02xb.com: %d (%s)", b, rc2, err.msg);
	}
	/* Many labels of non-ASCII, over the input bound after escaping. */
	size_t o = 0;
	while (o + 4 < 1000) {
		memcpy(s + o, "\xc3\xbc.", 3);
		o += 3;
	}
	memcpy(s + o, "de", 3);
	CHECK(fd_hostname_normalize("h", s, out, sizeof(out), &err) == BAD && strstr(err.msg, "253"),
	      "many IDN labels: %s", err.msg);
	free(s);
	/* NULL and a small buffer. */
	CHECK(fd_hostname_normalize("h", NULL, out, sizeof(out), &err) == BAD, "NULL");
	char tiny[5];
	CHECK(fd_hostname_normalize("h", "example.com", tiny, sizeof(tiny), &err) == -FD_ERANGE, "small buffer");
	CHECK(fd_hostname_normalize("h", "abcd", tiny, sizeof(tiny), &err) == 0 && strcmp(tiny, "abcd") == 0,
	      "fits exactly");
}

static void ip_literals(void)
{
	static const struct {
		const char *in;
		const char *out;     /* NULL: not an IP literal */
	} ips[] = {
		{ "127.0.0.1", "127.0.0.1" }, { "127.1", "127.0.0.1" }, { "10.0.0.1:80", "10.0.0.1" },
		{ "10.0.0.1.", "10.0.0.1" }, { "[::1]", "::1" }, { "[::1]:80", "::1" }, { "::1", "::1" },
		{ "[2001:DB8:0::1]", "2001:db8::1" }, { "0x7f000001", "127.0.0.1" },
		{ "127.0.0.1 x", NULL }, { "1.2.3.4:99999", NULL }, { "[::1]x", NULL }, { "[::1", NULL },
		{ "example.com", NULL }, { "", NULL }, { "256.1.1.1", NULL }, { "[1.2.3.4]", NULL }, { "::g", NULL },
	};
	for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
		char out[64];
		int rc = fd_hostname_ip(ips[i].in, out, sizeof(out));
		CHECK(rc == (ips[i].out != NULL), "ip %s: %d", ips[i].in, rc);
		if (ips[i].out)
			CHECK(strcmp(out, ips[i].out) == 0, "ip %s: %s", ips[i].in, out);
		else
			CHECK(out[0] == '\0', "ip %s: out empty", ips[i].in);
	}
}

static void within(void)
{
	CHECK(fd_hostname_within("panel.example", "panel.example"), "itself");
	CHECK(fd_hostname_within("a.panel.example", "panel.example"), "below");
	CHECK(fd_hostname_within("x.y.panel.example", "panel.example"), "two below");
	CHECK(!fd_hostname_within("apanel.example", "panel.example"), "not a label boundary");
	CHECK(!fd_hostname_within("panel.example.com", "panel.example"), "above");
	CHECK(!fd_hostname_within("example", "panel.example"), "shorter");
	CHECK(!fd_hostname_within("example", ""), "empty name");
	CHECK(fd_hostname_within("a.localhost", "localhost"), "below a single label");
}

static void lists(void)
{
	const char *p = " localhost, Panel.Example.:8443 ,,127.0.0.1, [::1] ,bücher.example,";
	const char *want[] = { "localhost", "panel.example", "127.0.0.1", "::1", "xn--bcher-kva.example" };
	const bool ip[] = { false, false, true, true, false };
	char out[FD_HOSTNAME_SIZE];
	bool is_ip;
	fd_err_t err = { 0 };
	for (size_t i = 0; i < 5; i++) {
		int rc = fd_hostname_list_next(&p, "FRONTDESK_PLATFORM_HOSTS", out, sizeof(out), &is_ip, &err);
		CHECK(rc == 1 && strcmp(out, want[i]) == 0 && is_ip == ip[i], "entry %zu: %d %s (%s)", i, rc, out, err.msg);
	}
	CHECK(fd_hostname_list_next(&p, "V", out, sizeof(out), &is_ip, &err) == 0, "end");
	CHECK(fd_hostname_list_next(&p, "V", out, sizeof(out), &is_ip, &err) == 0, "still the end");
	p = "";
	CHECK(fd_hostname_list_next(&p, "V", out, sizeof(out), &is_ip, &err) == 0, "empty list");
	p = "good.example,bad_name.example";
	CHECK(fd_hostname_list_next(&p, "V", out, sizeof(out), &is_ip, &err) == 1, "first");
	int rc = fd_hostname_list_next(&p, "V", out, sizeof(out), &is_ip, &err);
	CHECK(rc == BAD && strstr(err.msg, "V (entry \"bad_name.example\"): '_' is not allowed"), "bad entry: %s",
	      err.msg);
}

int main(void)
{
	normalize_cases();
	any_bytes();
	ip_literals();
	within();
	lists();
	return test_summary();
}
