/* hostname.c - host names into the one form the platform stores and
 * compares (fd/hostname.h): ports, trailing dots, case, IDN (libidn2), IP
 * literals and the LDH rules. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <idn2.h>
#include "fd/hostname.h"

#define EXCERPT_MAX 40                 /* input bytes quoted in a message */
#define IDN_FLAGS (IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL)

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(int c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Length of the UTF-8 sequence at s (n bytes left), 0 when it is not one:
 * no overlong forms, no surrogates, nothing above U+10FFFF. *cp its code
 * point. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t v, min;
	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if (c >= 0xc2 && c <= 0xdf) {
		len = 2, v = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3, v = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4, v = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

/* The byte offset of the first byte that is not UTF-8, or n when all are. */
static size_t utf8_bad_at(const unsigned char *s, size_t n)
{
	uint32_t cp;
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(s + i, n - i, &cp);
		if (!k)
			return i;
		i += k;
	}
	return n;
}

/* At most EXCERPT_MAX bytes of s (n bytes, UTF-8), quotable in a message:
 * '"', '\\' and controls escaped, C1 controls and bidirectional overrides
 * written as \u{...} so a message cannot reorder or hide text; "..." when
 * cut. */
static const char *excerpt(const char *s, size_t n, char *buf, size_t bufsz)
{
	size_t o = 0;
	size_t i = 0;
	while (i < n && i < EXCERPT_MAX && o + 12 < bufsz) {
		uint32_t cp;
		size_t k = utf8_seq((const unsigned char *)s + i, n - i, &cp);
		if (!k) {
			o += (size_t)snprintf(buf + o, bufsz - o, "\\x%02x", (unsigned char)s[i]);
			i++;
			continue;
		}
		if (cp == '"' || cp == '\\')
			o += (size_t)snprintf(buf + o, bufsz - o, "\\%c", (char)cp);
		else if (cp < 0x20 || cp == 0x7f)
			o += (size_t)snprintf(buf + o, bufsz - o, "\\x%02x", (unsigned)cp);
		else if ((cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
			o += (size_t)snprintf(buf + o, bufsz - o, "\\u{%04x}", (unsigned)cp);
		else {
			memcpy(buf + o, s + i, k);
			o += k;
		}
		i += k;
	}
	buf[o] = '\0';
	if (i < n && o + 4 <= bufsz)
		memcpy(buf + o, "...", 4);
	return buf;
}

/* ---- IP literals ---- */

/* ":digits" at most 5 of them, at most 65535, or "" (RFC 3986's empty port). */
static bool port_ok(const char *p)
{
	size_t n = strlen(p);
	if (n > 5)
		return false;
	long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(p[i]))
			return false;
		v = v * 10 + (p[i] - '0');
	}
	return v <= 65535;
}

int fd_hostname_ip(const char *in, char *out, size_t outsz)
{
	char buf[300];
	if (outsz)
		out[0] = '\0';
	if (!in)
		return 0;
	size_t n = strnlen(in, sizeof(buf));
	if (n == sizeof(buf))
		return 0;
	memcpy(buf, in, n + 1);
	struct in6_addr a6;
	struct in_addr a4;
	if (buf[0] == '[') {
		char *end = strchr(buf, ']');
		if (!end || (end[1] && (end[1] != ':' || !port_ok(end + 2))))
			return 0;
		*end = '\0';
		if (inet_pton(AF_INET6, buf + 1, &a6) != 1)
			return 0;
		return inet_ntop(AF_INET6, &a6, out, (socklen_t)outsz) ? 1 : 0;
	}
	char *colon = strchr(buf, ':');
	if (colon && strchr(colon + 1, ':')) {
		if (inet_pton(AF_INET6, buf, &a6) != 1)
			return 0;
		return inet_ntop(AF_INET6, &a6, out, (socklen_t)outsz) ? 1 : 0;
	}
	if (colon) {
		if (!port_ok(colon + 1))
			return 0;
		*colon = '\0';
		n = (size_t)(colon - buf);
	}
	if (n > 0 && buf[n - 1] == '.')
		buf[--n] = '\0';
	/* inet_aton stops at a space and takes the rest for trailing text:
	 * only what its numbers are made of is let through. */
	if (n == 0 || strspn(buf, "0123456789abcdefABCDEFxX.") != n || inet_aton(buf, &a4) == 0)
		return 0;
	return inet_ntop(AF_INET, &a4, out, (socklen_t)outsz) ? 1 : 0;
}

/* WHATWG's "ends in a number": a last label of digits only, or "0x" and hex
 * digits, makes a browser read the name as an IPv4 address. */
static bool ends_in_number(const char *label, size_t n)
{
	if (n >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X')) {
		for (size_t i = 2; i < n; i++)
			if (!is_hex(label[i]))
				return false;
		return true;
	}
	for (size_t i = 0; i < n; i++)
		if (!is_digit(label[i]))
			return false;
	return n > 0;
}

/* ---- the name ---- */

/* Appends label (n bytes, not NUL-terminated) to w (*len of wsz), as an
 * A-label through libidn2, or lower-cased when it is plain ASCII. */
static int add_label(const char *field, const char *label, size_t n, char *w, size_t *len, size_t wsz,
                     fd_err_t *err)
{
	bool ascii = true;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)label[i] >= 0x80)
			ascii = false;
	bool alabel = n >= 4 && lower(label[0]) == 'x' && lower(label[1]) == 'n' && label[2] == '-' && label[3] == '-';
	char q[EXCERPT_MAX * 8];
	if (ascii && !alabel) {
		if (*len + n + 1 >= wsz)
			return fd_err_set(err, FD_EINVAL, "%s: longer than %d characters", field, FD_HOSTNAME_MAX);
		for (size_t i = 0; i < n; i++)
			w[(*len)++] = (char)lower(label[i]);
		w[*len] = '\0';
		return 0;
	}
	char one[FD_HOSTNAME_INPUT_MAX + 1];
	memcpy(one, label, n);
	one[n] = '\0';
	char *a = NULL;
	int rc = idn2_lookup_u8((const uint8_t *)one, (uint8_t **)&a, IDN_FLAGS);
	if (rc == IDN2_MALLOC)
		return fd_err_set(err, FD_EEXHAUSTED, "%s: out of memory", field);
	if (rc == IDN2_TOO_BIG_LABEL || rc == IDN2_TOO_BIG_DOMAIN || rc == IDN2_PUNYCODE_BIG_OUTPUT)
		return fd_err_set(err, FD_EINVAL, "%s: label \"%s\" is longer than 63 characters as punycode", field,
		                  excerpt(label, n, q, sizeof(q)));
	if (rc != IDN2_OK)
		return fd_err_set(err, FD_EINVAL, "%s: label \"%s\" is not a valid internationalised name (%s)", field,
		                  excerpt(label, n, q, sizeof(q)), idn2_strerror(rc));
	size_t an = strlen(a);
	if (*len + an + 1 >= wsz) {
		idn2_free(a);
		return fd_err_set(err, FD_EINVAL, "%s: longer than %d characters", field, FD_HOSTNAME_MAX);
	}
	memcpy(w + *len, a, an + 1);
	*len += an;
	idn2_free(a);
	return 0;
}

/* The rules of the result (ASCII by now): LDH labels of 1 to 63, at most
 * 253 in all, not an IPv4 address. */
static int check_result(const char *field, const char *w, size_t len, fd_err_t *err)
{
	char q[EXCERPT_MAX * 8];
	if (len > FD_HOSTNAME_MAX)
		return fd_err_set(err, FD_EINVAL, "%s: %zu characters; a host name has at most %d", field, len,
		                  FD_HOSTNAME_MAX);
	char ip[INET6_ADDRSTRLEN];
	if (fd_hostname_ip(w, ip, sizeof(ip)))
		return fd_err_set(err, FD_EINVAL, "%s: an IP address (%s) is not a host name", field, ip);
	const char *label = w;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && w[i] != '.') {
			unsigned char c = (unsigned char)w[i];
			if ((c >= 'a' && c <= 'z') || is_digit(c) || c == '-')
				continue;
			if (c == ' ')
				return fd_err_set(err, FD_EINVAL, "%s: spaces are not allowed in a host name", field);
			if (c < 0x20 || c >= 0x7f)
				return fd_err_set(err, FD_EINVAL, "%s: the byte 0x%02x is not allowed in a host name", field, c);
			return fd_err_set(err, FD_EINVAL, "%s: '%c' is not allowed in a host name (letters, digits, '-' "
			                  "and '.' only)", field, c);
		}
		size_t n = (size_t)(w + i - label);
		if (n == 0)
			return fd_err_set(err, FD_EINVAL, "%s: empty label (two dots in a row, or a leading dot)", field);
		if (n > 63)
			return fd_err_set(err, FD_EINVAL, "%s: label \"%s\" has %zu characters; at most 63", field,
			                  excerpt(label, n, q, sizeof(q)), n);
		if (label[0] == '-' || label[n - 1] == '-')
			return fd_err_set(err, FD_EINVAL, "%s: label \"%s\" must not start or end with '-'", field,
			                  excerpt(label, n, q, sizeof(q)));
		if (i == len && ends_in_number(label, n))
			return fd_err_set(err, FD_EINVAL, "%s: the last label \"%s\" is a number, which makes it an IP "
			                  "address, not a host name", field, excerpt(label, n, q, sizeof(q)));
		label = w + i + 1;
	}
	return 0;
}

int fd_hostname_normalize(const char *field, const char *in, char *out, size_t outsz, fd_err_t *err)
{
	if (outsz)
		out[0] = '\0';
	if (!in || !in[0])
		return fd_err_set(err, FD_EINVAL, "%s: required (a host name such as tv.example.com)", field);
	size_t n = strnlen(in, FD_HOSTNAME_INPUT_MAX + 1);
	if (n > FD_HOSTNAME_INPUT_MAX)
		return fd_err_set(err, FD_EINVAL, "%s: longer than %d bytes; a host name has at most %d characters",
		                  field, FD_HOSTNAME_INPUT_MAX, FD_HOSTNAME_MAX);
	size_t bad = utf8_bad_at((const unsigned char *)in, n);
	if (bad < n)
		return fd_err_set(err, FD_EINVAL, "%s: not valid UTF-8 (at byte %zu)", field, bad);
	char ip[INET6_ADDRSTRLEN];
	if (fd_hostname_ip(in, ip, sizeof(ip)))
		return fd_err_set(err, FD_EINVAL, "%s: an IP address (%s) is not a host name", field, ip);
	if (in[0] == '[')
		return fd_err_set(err, FD_EINVAL, "%s: brackets hold IPv6 addresses, and an IP address is not a host "
		                  "name", field);

	/* The port: after the one colon. */
	const char *colon = memchr(in, ':', n);
	if (colon && memchr(colon + 1, ':', n - (size_t)(colon - in) - 1))
		return fd_err_set(err, FD_EINVAL, "%s: ':' may appear once, before a port (an IPv6 address is not a "
		                  "host name)", field);
	if (colon) {
		if (!port_ok(colon + 1)) {
			char q[EXCERPT_MAX * 8];
			return fd_err_set(err, FD_EINVAL, "%s: the port \"%s\" is not a number from 0 to 65535", field,
			                  excerpt(colon + 1, n - (size_t)(colon - in) - 1, q, sizeof(q)));
		}
		n = (size_t)(colon - in);
	}
	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n == 0)
		return fd_err_set(err, FD_EINVAL, "%s: no name before the port or the dot", field);

	char w[FD_HOSTNAME_INPUT_MAX + 64];
	size_t len = 0;
	w[0] = '\0';
	const char *label = in;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && in[i] != '.')
			continue;
		size_t ln = (size_t)(in + i - label);
		if (ln == 0)
			return fd_err_set(err, FD_EINVAL, "%s: empty label (two dots in a row, or a leading dot)", field);
		int rc = add_label(field, label, ln, w, &len, sizeof(w), err);
		if (rc < 0)
			return rc;
		if (i < n) {
			if (len + 2 >= sizeof(w))
				return fd_err_set(err, FD_EINVAL, "%s: longer than %d characters", field, FD_HOSTNAME_MAX);
			w[len++] = '.';
			w[len] = '\0';
		}
		label = in + i + 1;
	}
	int rc = check_result(field, w, len, err);
	if (rc < 0)
		return rc;
	if (len + 1 > outsz)
		return fd_err_set(err, FD_ERANGE, "%s: no room for the normalised name (%zu bytes)", field, len + 1);
	memcpy(out, w, len + 1);
	return 0;
}

bool fd_hostname_within(const char *host, const char *name)
{
	size_t hl = strlen(host), nl = strlen(name);
	if (nl == 0 || hl < nl)
		return false;
	if (hl == nl)
		return strcmp(host, name) == 0;
	return host[hl - nl - 1] == '.' && strcmp(host + hl - nl, name) == 0;
}

int fd_hostname_list_next(const char **cursor, const char *var, char *out, size_t outsz, bool *is_ip,
                          fd_err_t *err)
{
	const char *p = *cursor;
	*is_ip = false;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p) {
			*cursor = p;
			return 0;
		}
		size_t n = strcspn(p, ",");
		const char *entry = p;
		p += n + (p[n] == ',');
		while (n > 0 && (entry[n - 1] == ' ' || entry[n - 1] == '\t'))
			n--;
		if (n == 0)
			continue;
		*cursor = p;
		char q[EXCERPT_MAX * 8];
		if (n > FD_HOSTNAME_INPUT_MAX)
			return fd_err_set(err, FD_EINVAL, "%s: the entry \"%s\" is too long for a host name", var,
			                  excerpt(entry, n, q, sizeof(q)));
		char one[FD_HOSTNAME_INPUT_MAX + 1];
		memcpy(one, entry, n);
		one[n] = '\0';
		if (outsz < FD_HOSTNAME_SIZE)
			return fd_err_set(err, FD_ERANGE, "%s: no room for an entry", var);
		if (fd_hostname_ip(one, out, outsz)) {
			*is_ip = true;
			return 1;
		}
		char field[EXCERPT_MAX * 8 + 64];
		snprintf(field, sizeof(field), "%s (entry \"%s\")", var, excerpt(entry, n, q, sizeof(q)));
		int rc = fd_hostname_normalize(field, one, out, outsz, err);
		return rc < 0 ? rc : 1;
	}
}
