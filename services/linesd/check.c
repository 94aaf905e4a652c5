/* check.c - linesd's input checks (check.h): pure functions of a request's
 * fields, each naming the field it refuses. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <string.h>
#include "check.h"
#include "fd/text.h"

int check_ids(fd_err_t *err, const char *field, const int64_t *v, size_t n, size_t max)
{
	if (n > max)
		return fd_err_set(err, FD_EINVAL, "%s: at most %zu entries", field, max);
	for (size_t i = 0; i < n; i++) {
		if (v[i] <= 0)
			return fd_err_set(err, FD_EINVAL, "%s: ids are positive", field);
		for (size_t j = 0; j < i; j++)
			if (v[j] == v[i])
				return fd_err_set(err, FD_EINVAL, "%s: %" PRId64 " is listed twice", field, v[i]);
	}
	return 0;
}

int check_formats(fd_err_t *err, const char *field, const Frontdesk__V1__OutputFormat *v, size_t n)
{
	if (n > 3)
		return fd_err_set(err, FD_EINVAL, "%s: at most 3 formats", field);
	for (size_t i = 0; i < n; i++) {
		if (v[i] < FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_TS || v[i] > FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_RTMP)
			return fd_err_set(err, FD_EINVAL, "%s: TS, M3U8 or RTMP", field);
		for (size_t j = 0; j < i; j++)
			if (v[j] == v[i])
				return fd_err_set(err, FD_EINVAL, "%s: a format is listed twice", field);
	}
	return 0;
}

static bool alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int check_line_username(fd_err_t *err, const char *field, const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return fd_err_set(err, FD_EINVAL, "%s: 1 to 64 characters", field);
	for (size_t i = 0; i < n; i++)
		if (!alnum(s[i]) && !strchr("._-@", s[i]))
			return fd_err_set(err, FD_EINVAL, "%s: only letters, digits and . _ - @ are allowed", field);
	return 0;
}

int check_line_password(fd_err_t *err, const char *field, const char *s)
{
	size_t n = strlen(s);
	if (n < 4 || n > 64)
		return fd_err_set(err, FD_EINVAL, "%s: 4 to 64 characters", field);
	for (size_t i = 0; i < n; i++)
		if (!alnum(s[i]) && !strchr("._-~", s[i]))
			return fd_err_set(err, FD_EINVAL, "%s: only letters, digits and . _ - ~ are allowed", field);
	return 0;
}

int check_cidr(fd_err_t *err, const char *field, size_t i, const char *s)
{
	char addr[64];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	unsigned char bin[16];
	int family = strchr(s, ':') ? AF_INET6 : AF_INET, bits = family == AF_INET6 ? 128 : 32, prefix = bits;
	if (n == 0 || n >= sizeof(addr))
		goto bad;
	memcpy(addr, s, n);
	addr[n] = '\0';
	if (inet_pton(family, addr, bin) != 1)
		goto bad;
	if (slash) {
		long p = 0;
		const char *d = slash + 1;
		if (!*d || strlen(d) > 3)
			goto bad;
		for (; *d; d++) {
			if (*d < '0' || *d > '9')
				goto bad;
			p = p * 10 + (*d - '0');
		}
		if (p > bits)
			goto bad;
		prefix = (int)p;
	}
	for (int b = prefix; b < bits; b++)
		if (bin[b / 8] & (0x80 >> (b % 8)))
			return fd_err_set(err, FD_EINVAL, "%s[%zu]: %s has bits set past its /%d prefix", field, i, s, prefix);
	return 0;
bad:
	return fd_err_set(err, FD_EINVAL, "%s[%zu]: not an IP address or CIDR (e.g. 203.0.113.0/24)", field, i);
}

int check_locks(fd_err_t *err, char *const *ips, size_t nips, char *const *uas, size_t nuas)
{
	if (nips > CHECK_MAX_ALLOWED)
		return fd_err_set(err, FD_EINVAL, "allowed_ips: at most %d entries", CHECK_MAX_ALLOWED);
	for (size_t i = 0; i < nips; i++) {
		int rc = check_cidr(err, "allowed_ips", i, ips[i]);
		if (rc < 0)
			return rc;
	}
	if (nuas > CHECK_MAX_ALLOWED)
		return fd_err_set(err, FD_EINVAL, "allowed_user_agents: at most %d entries", CHECK_MAX_ALLOWED);
	for (size_t i = 0; i < nuas; i++) {
		int rc = fd_check_text("allowed_user_agents", uas[i], 1, CHECK_USER_AGENT_MAX, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int check_ip(fd_err_t *err, const char *field, const char *s)
{
	unsigned char bin[16];
	if (!s[0])
		return fd_err_set(err, FD_EINVAL, "%s: required", field);
	if (strlen(s) > 45 || inet_pton(strchr(s, ':') ? AF_INET6 : AF_INET, s, bin) != 1)
		return fd_err_set(err, FD_EINVAL, "%s: not an IPv4 or IPv6 address", field);
	return 0;
}

int check_periods(fd_err_t *err, int64_t v)
{
	if (v < 0 || v > CHECK_MAX_PERIODS)
		return fd_err_set(err, FD_EINVAL, "periods: 0 (one) to %d", CHECK_MAX_PERIODS);
	return 0;
}

int check_line_connections(fd_err_t *err, int64_t v, bool zero_is_package)
{
	if (zero_is_package && (v < 0 || v > CHECK_MAX_CONNECTIONS))
		return fd_err_set(err, FD_EINVAL, "max_connections: 0 (the package's) to %d", CHECK_MAX_CONNECTIONS);
	if (!zero_is_package && (v < 1 || v > CHECK_MAX_CONNECTIONS))
		return fd_err_set(err, FD_EINVAL, "max_connections: 1 to %d", CHECK_MAX_CONNECTIONS);
	return 0;
}

int check_days(fd_err_t *err, int64_t v)
{
	if (v < 0 || v > CHECK_MAX_DURATION_DAYS)
		return fd_err_set(err, FD_EINVAL, "duration_days: 0 to %d", CHECK_MAX_DURATION_DAYS);
	return 0;
}

int check_hours(fd_err_t *err, int64_t v)
{
	if (v < 0 || v > 23)
		return fd_err_set(err, FD_EINVAL, "duration_hours: 0 to 23");
	return 0;
}

int check_cost(fd_err_t *err, int64_t v)
{
	if (v < 0 || v > CHECK_MAX_CREDIT_COST)
		return fd_err_set(err, FD_EINVAL, "credit_cost: 0 to %d", CHECK_MAX_CREDIT_COST);
	return 0;
}

int check_connections(fd_err_t *err, int64_t v)
{
	if (v < 1 || v > CHECK_MAX_CONNECTIONS)
		return fd_err_set(err, FD_EINVAL, "max_connections: 1 to %d", CHECK_MAX_CONNECTIONS);
	return 0;
}

int check_bandwidth(fd_err_t *err, int64_t v)
{
	if (v < 0)
		return fd_err_set(err, FD_EINVAL, "bandwidth_cap_kbps: must not be negative (0 = none)");
	return 0;
}

int check_kind(fd_err_t *err, int kind, bool required)
{
	if ((kind == FRONTDESK__V1__STREAM_KIND__STREAM_KIND_UNSPECIFIED && required) || kind < 0 ||
	    kind > FRONTDESK__V1__STREAM_KIND__STREAM_KIND_SERIES)
		return fd_err_set(err, FD_EINVAL, "kind: LIVE, MOVIE or SERIES");
	return 0;
}

int check_number(fd_err_t *err, int64_t v)
{
	if (v < 0)
		return fd_err_set(err, FD_EINVAL, "number: must not be negative (0 = none)");
	return 0;
}
