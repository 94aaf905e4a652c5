/* check.c - the checks of a node's settings (check.h). */
#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "fd/text.h"

static int check_url(fd_call_t *call, size_t i, int format, const char *u)
{
	size_t len = strlen(u);
	if (len == 0 || len > MAX_URL)
		return fd_call_fail(call, FD_EINVAL, "urls[%zu].base_url: 1..%d characters", i, MAX_URL);
	bool rtmp = format == FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_RTMP;
	const char *host;
	if (rtmp ? (strncmp(u, "rtmp://", 7) == 0 ? (host = u + 7) : strncmp(u, "rtmps://", 8) == 0 ? (host = u + 8) : NULL) == NULL
	         : (strncmp(u, "http://", 7) == 0 ? (host = u + 7) : strncmp(u, "https://", 8) == 0 ? (host = u + 8) : NULL) == NULL)
		return fd_call_fail(call, FD_EINVAL, "urls[%zu].base_url: an absolute %s URL", i,
		                    rtmp ? "rtmp:// or rtmps://" : "http:// or https://");
	for (const char *p = u; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || *p == '?' || *p == '#' || *p == '@' || *p == '\\')
			return fd_call_fail(call, FD_EINVAL, "urls[%zu].base_url: no spaces, query, fragment, "
			                    "user info or non-ASCII characters", i);
	size_t hl = strcspn(host, ":/");
	if (hl == 0 && host[0] == '[') {
		const char *close = strchr(host, ']');
		if (!close)
			return fd_call_fail(call, FD_EINVAL, "urls[%zu].base_url: unterminated [IPv6] host", i);
		hl = (size_t)(close - host) + 1;
	} else if (hl == 0) {
		return fd_call_fail(call, FD_EINVAL, "urls[%zu].base_url: a host is required", i);
	} else {
		for (size_t k = 0; k < hl; k++)
			if (!(isalnum((unsigned char)host[k]) || host[k] == '.' || host[k] == '-'))
				return fd_call_fail(call, FD_EINVAL, "urls[%zu].base_url: bad host", i);
	}
	const char *rest = host + hl;
	if (*rest == ':') {
		char *end;
		long port = strtol(rest + 1, &end, 10);
		if (end == rest + 1 || port < 1 || port > 65535 || (*end && *end != '/'))
			return fd_call_fail(call, FD_EINVAL, "urls[%zu].base_url: port 1..65535", i);
	}
	return 0;
}

static int check_urls(fd_call_t *call, Frontdesk__V1__NodeUrl **v, size_t n)
{
	if (n == 0 || n > 3)
		return fd_call_fail(call, FD_EINVAL, "urls: 1..3 entries, one per output format");
	for (size_t i = 0; i < n; i++) {
		int f = v[i]->format;
		if (f < FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_TS || f > FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_RTMP)
			return fd_call_fail(call, FD_EINVAL, "urls[%zu].format: TS, M3U8 or RTMP", i);
		for (size_t j = 0; j < i; j++)
			if (v[j]->format == v[i]->format)
				return fd_call_fail(call, FD_EINVAL, "urls[%zu].format: a format is listed twice", i);
		int rc = check_url(call, i, f, v[i]->base_url);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int check_tags(fd_call_t *call, char **v, size_t n)
{
	if (n > MAX_TAGS)
		return fd_call_fail(call, FD_EINVAL, "tags: at most %d", MAX_TAGS);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(v[i]);
		if (len == 0 || len > MAX_TAG || strspn(v[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		                                              "0123456789._:/=-") != len)
			return fd_call_fail(call, FD_EINVAL, "tags[%zu]: 1..%d of A-Z a-z 0-9 . _ : / = -", i, MAX_TAG);
		for (size_t j = 0; j < i; j++)
			if (strcmp(v[i], v[j]) == 0)
				return fd_call_fail(call, FD_EINVAL, "tags[%zu]: \"%s\" is listed twice", i, v[i]);
	}
	return 0;
}

int check_node(fd_call_t *call, const regions_t *regions, const node_settings_t *in)
{
	int rc;
	/* The name and the failure domain are labels (a portal shows them; Route
	 * compares domains byte for byte): fd_check_name. Tags are a restricted
	 * alphabet already (check_tags). */
	if ((rc = fd_check_name("name", in->name, 1, MAX_NAME, fd_call_err(call))) < 0 ||
	    (rc = check_urls(call, in->urls, in->nurls)) < 0 ||
	    (rc = check_region(call, regions, "region", in->region, true)) < 0 ||
	    (rc = check_country(call, "country", in->country)) < 0 ||
	    (rc = fd_check_name("failure_domain", in->failure_domain, 0, MAX_DOMAIN, fd_call_err(call))) < 0 ||
	    (rc = check_tags(call, in->tags, in->ntags)) < 0)
		return rc;
	if (in->max_connections < 1 || in->max_connections > MAX_CAPACITY)
		return fd_call_fail(call, FD_EINVAL, "max_connections: 1..%d", MAX_CAPACITY);
	if (in->max_egress_mbps < 1 || in->max_egress_mbps > MAX_CAPACITY)
		return fd_call_fail(call, FD_EINVAL, "max_egress_mbps: 1..%d", MAX_CAPACITY);
	if (in->weight < 0 || in->weight > MAX_WEIGHT)
		return fd_call_fail(call, FD_EINVAL, "weight: 0..%d", MAX_WEIGHT);
	if (in->high < 1 || in->high > 100)
		return fd_call_fail(call, FD_EINVAL, "high_water_percent: 1..100");
	if (in->low < 1 || in->low >= in->high)
		return fd_call_fail(call, FD_EINVAL, "low_water_percent: 1..%" PRId64 " (below high_water_percent)",
		                    in->high - 1);
	return 0;
}
