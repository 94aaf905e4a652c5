/* check.c - authd's input rules (check.h). */
#include <inttypes.h>
#include <string.h>
#include "check.h"

int check_username(const char *field, const char *s, fd_err_t *err)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return fd_err_set(err, FD_EINVAL, "%s: 1 to 64 characters", field);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '@' || c == '-'))
			return fd_err_set(err, FD_EINVAL, "%s: only letters, digits and . _ @ - are allowed", field);
	}
	return 0;
}

int check_password(const char *field, const char *s, fd_err_t *err)
{
	size_t n = strlen(s);
	if (n < 8)
		return fd_err_set(err, FD_EINVAL, "%s: at least 8 characters", field);
	if (n > 1024)
		return fd_err_set(err, FD_EINVAL, "%s: at most 1024 bytes", field);
	return 0;
}

int check_password_given(const char *field, const char *s, bool required, fd_err_t *err)
{
	size_t n = strlen(s);
	if (required && (n == 0 || n > 1024))
		return fd_err_set(err, FD_EINVAL, "%s: 1 to 1024 bytes", field);
	if (n > 1024)
		return fd_err_set(err, FD_EINVAL, "%s: at most 1024 bytes", field);
	return 0;
}

int check_slug(const char *field, const char *s, fd_err_t *err)
{
	size_t n = strlen(s);
	if (n < 2 || n > 63)
		return fd_err_set(err, FD_EINVAL, "%s: 2 to 63 characters of a-z, 0-9 and -", field);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0 && i + 1 < n);
		if (!ok)
			return fd_err_set(err, FD_EINVAL, "%s: only a-z, 0-9 and - (not first or last)", field);
	}
	return 0;
}

int check_login_slug(const char *field, const char *s, fd_err_t *err)
{
	return strcmp(s, "platform") == 0 ? 0 : check_slug(field, s, err);
}

int check_client_address(const char *field, const char *s, fd_err_t *err)
{
	if (strlen(s) > 64)
		return fd_err_set(err, FD_EINVAL, "%s: at most 64 characters", field);
	for (const char *p = s; *p; p++)
		if (!strchr("0123456789abcdefABCDEF.:[]", *p))
			return fd_err_set(err, FD_EINVAL, "%s: an IPv4 or IPv6 address", field);
	return 0;
}

int check_action_filter(const char *field, const char *s, fd_err_t *err)
{
	size_t n = strlen(s);
	if (n > 100)
		return fd_err_set(err, FD_EINVAL, "%s: at most 100 characters", field);
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.'))
			return fd_err_set(err, FD_EINVAL, "%s: only a-z, 0-9, _ and . (\"tenant.suspend\", or \"login.\" "
			                  "for every login action)", field);
	return 0;
}

int check_scopes(const char *field, const Frontdesk__V1__Scope *v, size_t n, fd_scopes_t *out, fd_err_t *err)
{
	*out = 0;
	if (n > 64)
		return fd_err_set(err, FD_EINVAL, "%s: at most 64", field);
	for (size_t i = 0; i < n; i++) {
		if (!fd_scope_name((fd_scope_t)v[i]))
			return fd_err_set(err, FD_EINVAL, "%s[%zu]: unknown scope %d", field, i, v[i]);
		*out |= FD_SCOPE(v[i]);
	}
	return 0;
}

int check_expires_at(const char *field, int64_t v, int64_t now, fd_err_t *err)
{
	if (v < 0 || (v && v <= now))
		return fd_err_set(err, FD_EINVAL, "%s: must be in the future (or 0 for never)", field);
	return 0;
}

int check_service_name(const char *field, const char *s, fd_err_t *err)
{
	if (!s[0] || strlen(s) >= 32)
		return fd_err_set(err, FD_EINVAL, "%s: 1 to 31 characters", field);
	return 0;
}

int check_audience(const char *field, const char *s, fd_err_t *err)
{
	static const char *const services[] = { "authd", "billingd", "linesd", "routerd" };
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++)
		if (strcmp(s, services[i]) == 0)
			return 0;
	return fd_err_set(err, FD_EINVAL, "%s: one of authd, billingd, linesd, routerd", field);
}

/* Decimal digits at *p up to the next '_', at most 18 (no sign, no blanks,
 * which strtoll would take): the value, and *p past them; -1 if none. */
static int64_t id_part(const char **p)
{
	int64_t v = 0;
	size_t n = 0;
	for (; **p >= '0' && **p <= '9'; (*p)++, n++) {
		if (n == 18)
			return -1;
		v = v * 10 + (**p - '0');
	}
	return n && **p == '_' ? v : -1;
}

int parse_refresh_token(const char *tok, int64_t *tenant, int64_t *id)
{
	size_t n = strlen(tok);
	if (n < 8 || n > 100 || strncmp(tok, "fdr_", 4) != 0)
		return -1;
	const char *p = tok + 4;
	int64_t t = id_part(&p);          /* tenant 0: platform admins */
	if (t < 0)
		return -1;
	p++;
	int64_t i = id_part(&p);
	if (i <= 0 || strlen(p + 1) != 43)
		return -1;
	*tenant = t;
	*id = i;
	return 0;
}
