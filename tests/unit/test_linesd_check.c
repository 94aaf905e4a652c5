/* test_linesd_check.c - linesd's input checks (services/linesd/check.h) as a
 * table: each input, whether it passes, and what the refusal names. */
#include <stdint.h>
#include <string.h>
#include "check.h"
#include "test.h"

typedef enum { CIDR, USERNAME, PASSWORD, IP, PERIODS, LINE_CONN, LINE_CONN0, DAYS, HOURS, COST, KIND } what_t;

typedef struct {
	what_t what;
	const char *s;             /* text inputs */
	int64_t v;                 /* number inputs */
	const char *want;          /* NULL: passes; else a piece of the message */
} case_t;

static const case_t cases[] = {
	/* allowed_ips: addresses and CIDRs, no host bits past the prefix */
	{ CIDR, "203.0.113.0/24", 0, NULL },
	{ CIDR, "203.0.113.7", 0, NULL },
	{ CIDR, "0.0.0.0/0", 0, NULL },
	{ CIDR, "203.0.113.7/32", 0, NULL },
	{ CIDR, "2001:db8::/32", 0, NULL },
	{ CIDR, "::/0", 0, NULL },
	{ CIDR, "2001:db8::1", 0, NULL },
	{ CIDR, "203.0.113.1/24", 0, "allowed_ips[3]: 203.0.113.1/24 has bits set past its /24 prefix" },
	{ CIDR, "2001:db8::1/32", 0, "has bits set past its /32 prefix" },
	{ CIDR, "10.0.0.0/33", 0, "not an IP address or CIDR" },
	{ CIDR, "2001:db8::/129", 0, "not an IP address or CIDR" },
	{ CIDR, "10.0.0.0/", 0, "not an IP address or CIDR" },
	{ CIDR, "10.0.0.0/2a", 0, "not an IP address or CIDR" },
	{ CIDR, "10.0.0.0/0024", 0, "not an IP address or CIDR" },
	{ CIDR, "", 0, "not an IP address or CIDR" },
	{ CIDR, "/8", 0, "not an IP address or CIDR" },
	{ CIDR, "256.0.0.0/8", 0, "not an IP address or CIDR" },
	{ CIDR, "example.com", 0, "not an IP address or CIDR" },
	{ CIDR, "10.0.0.0 /8", 0, "not an IP address or CIDR" },
	/* usernames: 1 to 64 of letters, digits and . _ - @ */
	{ USERNAME, "alice", 0, NULL },
	{ USERNAME, "a.b_c-d@e", 0, NULL },
	{ USERNAME, "x", 0, NULL },
	{ USERNAME, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0, NULL },   /* 64 */
	{ USERNAME, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0, "username: 1 to 64" },
	{ USERNAME, "", 0, "username: 1 to 64" },
	{ USERNAME, "al ice", 0, "username: only letters, digits" },
	{ USERNAME, "al/ice", 0, "only letters" },
	{ USERNAME, "ali\xc3\xa7" "e", 0, "only letters" },
	{ USERNAME, "al~ice", 0, "only letters" },
	/* passwords: 4 to 64 of letters, digits and . _ - ~ */
	{ PASSWORD, "abcd", 0, NULL },
	{ PASSWORD, "Ab.9_-~x", 0, NULL },
	{ PASSWORD, "abc", 0, "password: 4 to 64" },
	{ PASSWORD, "ab cd", 0, "password: only letters, digits and . _ - ~" },
	{ PASSWORD, "abc@d", 0, "only letters" },
	{ PASSWORD, "abc%2F", 0, "only letters" },
	/* client addresses */
	{ IP, "198.51.100.4", 0, NULL },
	{ IP, "2001:db8::4", 0, NULL },
	{ IP, "", 0, "client_ip: required" },
	{ IP, "198.51.100.0/24", 0, "client_ip: not an IPv4 or IPv6 address" },
	{ IP, "198.51.100", 0, "not an IPv4 or IPv6 address" },
	{ IP, "localhost", 0, "not an IPv4 or IPv6 address" },
	/* ExtendLine's periods */
	{ PERIODS, NULL, 0, NULL },
	{ PERIODS, NULL, 1, NULL },
	{ PERIODS, NULL, 120, NULL },
	{ PERIODS, NULL, 121, "periods: 0 (one) to 120" },
	{ PERIODS, NULL, -1, "periods: 0 (one) to 120" },
	/* a line's max_connections: UpdateLine's, CreateLine's (0: the package's) */
	{ LINE_CONN, NULL, 1, NULL },
	{ LINE_CONN, NULL, 1000, NULL },
	{ LINE_CONN, NULL, 0, "max_connections: 1 to 1000" },
	{ LINE_CONN, NULL, 1001, "max_connections: 1 to 1000" },
	{ LINE_CONN0, NULL, 0, NULL },
	{ LINE_CONN0, NULL, 1000, NULL },
	{ LINE_CONN0, NULL, -1, "max_connections: 0 (the package's) to 1000" },
	{ LINE_CONN0, NULL, 1001, "max_connections: 0 (the package's) to 1000" },
	/* the catalog's numbers */
	{ DAYS, NULL, 0, NULL },
	{ DAYS, NULL, 3660, NULL },
	{ DAYS, NULL, 3661, "duration_days: 0 to 3660" },
	{ DAYS, NULL, -1, "duration_days" },
	{ HOURS, NULL, 23, NULL },
	{ HOURS, NULL, 24, "duration_hours: 0 to 23" },
	{ COST, NULL, 0, NULL },
	{ COST, NULL, 1000000000, NULL },
	{ COST, NULL, 1000000001, "credit_cost: 0 to 1000000000" },
	{ KIND, NULL, FRONTDESK__V1__STREAM_KIND__STREAM_KIND_LIVE, NULL },
	{ KIND, NULL, FRONTDESK__V1__STREAM_KIND__STREAM_KIND_SERIES, NULL },
	{ KIND, NULL, FRONTDESK__V1__STREAM_KIND__STREAM_KIND_UNSPECIFIED, "kind: LIVE, MOVIE or SERIES" },
	{ KIND, NULL, 99, "kind: LIVE, MOVIE or SERIES" },
	{ KIND, NULL, -1, "kind" },
};

static int run(const case_t *k, fd_err_t *err)
{
	switch (k->what) {
	case CIDR: return check_cidr(err, "allowed_ips", 3, k->s);
	case USERNAME: return check_line_username(err, "username", k->s);
	case PASSWORD: return check_line_password(err, "password", k->s);
	case IP: return check_ip(err, "client_ip", k->s);
	case PERIODS: return check_periods(err, k->v);
	case LINE_CONN: return check_line_connections(err, k->v, false);
	case LINE_CONN0: return check_line_connections(err, k->v, true);
	case DAYS: return check_days(err, k->v);
	case HOURS: return check_hours(err, k->v);
	case COST: return check_cost(err, k->v);
	case KIND: return check_kind(err, (int)k->v, true);
	}
	return 0;
}

static void test_table(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const case_t *k = &cases[i];
		fd_err_t err = { 0 };
		int rc = run(k, &err);
		if (!k->want)
			CHECK(rc == 0, "case %zu (%s / %lld): refused: %s", i, k->s ? k->s : "", (long long)k->v, err.msg);
		else
			CHECK(rc == -FD_EINVAL && strstr(err.msg, k->want), "case %zu (%s / %lld): rc %d, '%s', want '%s'", i,
			      k->s ? k->s : "", (long long)k->v, rc, err.msg, k->want);
	}
}

static void test_lists(void)
{
	fd_err_t err = { 0 };
	const int64_t ok[] = { 1, 2, 3 }, dup[] = { 4, 5, 4 }, neg[] = { 1, 0 };
	CHECK(check_ids(&err, "bouquet_ids", ok, 3, 3) == 0, "%s", err.msg);
	CHECK(check_ids(&err, "bouquet_ids", ok, 3, 2) == -FD_EINVAL && strstr(err.msg, "bouquet_ids: at most 2"), "%s",
	      err.msg);
	CHECK(check_ids(&err, "stream_ids", dup, 3, 10) == -FD_EINVAL && strstr(err.msg, "stream_ids: 4 is listed twice"),
	      "%s", err.msg);
	CHECK(check_ids(&err, "ids", neg, 2, 10) == -FD_EINVAL && strstr(err.msg, "ids: ids are positive"), "%s", err.msg);

	const Frontdesk__V1__OutputFormat fmt_ok[] = { FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_TS,
		                                           FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_RTMP };
	const Frontdesk__V1__OutputFormat fmt_dup[] = { FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_M3U8,
		                                            FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_M3U8 };
	const Frontdesk__V1__OutputFormat fmt_bad[] = { FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_UNSPECIFIED };
	CHECK(check_formats(&err, "f", fmt_ok, 2) == 0, "%s", err.msg);
	CHECK(check_formats(&err, "f", fmt_dup, 2) == -FD_EINVAL && strstr(err.msg, "f: a format is listed twice"), "%s",
	      err.msg);
	CHECK(check_formats(&err, "f", fmt_bad, 1) == -FD_EINVAL && strstr(err.msg, "f: TS, M3U8 or RTMP"), "%s", err.msg);

	/* Locks: CIDRs named by index, user agents free text (1..512, no bidi). */
	char *ips[] = { "10.0.0.0/8", "192.0.2.1/24" };
	CHECK(check_locks(&err, ips, 1, NULL, 0) == 0, "%s", err.msg);
	CHECK(check_locks(&err, ips, 2, NULL, 0) == -FD_EINVAL && strstr(err.msg, "allowed_ips[1]"), "%s", err.msg);
	char *uas[] = { "VLC/3.0", "evil\xe2\x80\xae" "gpj", "   ", "" };
	CHECK(check_locks(&err, NULL, 0, uas, 1) == 0, "%s", err.msg);
	CHECK(check_locks(&err, NULL, 0, uas + 1, 1) == -FD_EINVAL && strstr(err.msg, "allowed_user_agents"), "bidi: %s",
	      err.msg);
	CHECK(check_locks(&err, NULL, 0, uas + 2, 1) == -FD_EINVAL && strstr(err.msg, "allowed_user_agents"), "blank: %s",
	      err.msg);
	CHECK(check_locks(&err, NULL, 0, uas + 3, 1) == -FD_EINVAL && strstr(err.msg, "allowed_user_agents"), "empty: %s",
	      err.msg);
	char *many[101];
	for (int i = 0; i < 101; i++)
		many[i] = "VLC";
	CHECK(check_locks(&err, NULL, 0, many, 100) == 0, "%s", err.msg);
	CHECK(check_locks(&err, NULL, 0, many, 101) == -FD_EINVAL && strstr(err.msg, "allowed_user_agents: at most 100"),
	      "%s", err.msg);
	CHECK(check_locks(&err, many, 101, NULL, 0) == -FD_EINVAL && strstr(err.msg, "allowed_ips: at most 100"), "%s",
	      err.msg);
}

int main(void)
{
	test_table();
	test_lists();
	return test_summary();
}
