/* text.c - the check of caller-given text (fd/text.h). */
#include <stddef.h>
#include "fd/text.h"

bool fd_text_blank(uint32_t c)
{
	return c == 0x20 || (c >= 0x09 && c <= 0x0d) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
	       c == 0x180e || (c >= 0x2000 && c <= 0x200d) || c == 0x2028 || c == 0x2029 ||
	       c == 0x202f || c == 0x205f || c == 0x2060 || c == 0x3000 || c == 0xfeff;
}

/* The code point at *p (UTF-8, already validated), advancing *p; 0xfffd on
 * a malformed byte (one byte consumed). */
static uint32_t next_cp(const unsigned char **p)
{
	const unsigned char *s = *p;
	uint32_t c = s[0];
	int n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
	if (n < 0) {
		*p = s + 1;
		return 0xfffd;
	}
	if (n)
		c &= 0x3f >> n;
	for (int i = 1; i <= n; i++) {
		if ((s[i] & 0xc0) != 0x80) {
			*p = s + 1;
			return 0xfffd;
		}
		c = (c << 6) | (s[i] & 0x3f);
	}
	*p = s + n + 1;
	return c;
}

static int check(const char *field, const char *s, int min, int max, bool name, fd_err_t *err)
{
	int chars = 0;
	bool all_blank = true, last_blank = false;
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		uint32_t c = next_cp(&p);
		if (c < 0x20 || c == 0x7f)
			return fd_err_set(err, FD_EINVAL, "%s: control characters are not allowed", field);
		if (c >= 0x80 && c <= 0x9f)
			return fd_err_set(err, FD_EINVAL, "%s: C1 control characters (U+0080-U+009F) are not allowed",
			                  field);
		if ((c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069))
			return fd_err_set(err, FD_EINVAL,
			                  "%s: bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069)"
			                  " are not allowed", field);
		bool blank = fd_text_blank(c);
		if (name && blank && chars == 0)
			return fd_err_set(err, FD_EINVAL, "%s: must not start with a space", field);
		all_blank &= blank;
		last_blank = blank;
		if (++chars > max)
			return fd_err_set(err, FD_EINVAL, "%s: at most %d characters", field, max);
	}
	if (chars < min)
		return fd_err_set(err, FD_EINVAL, "%s: required", field);
	if (chars && all_blank)
		return fd_err_set(err, FD_EINVAL, "%s: only spaces; leave it empty or write something", field);
	if (name && last_blank)
		return fd_err_set(err, FD_EINVAL, "%s: must not end with a space", field);
	return 0;
}

int fd_check_text(const char *field, const char *s, int min, int max, fd_err_t *err)
{
	return check(field, s, min, max, false, err);
}

int fd_check_name(const char *field, const char *s, int min, int max, fd_err_t *err)
{
	return check(field, s, min, max, true, err);
}
