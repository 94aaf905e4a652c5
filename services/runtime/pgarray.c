/* pgarray.c - PostgreSQL array literals (see fd/pgarray.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fd/pgarray.h"

const char *pg_int_array(fd_arena_t *a, const int64_t *v, size_t n)
{
	char *s = fd_arena_alloc(a, n * 21 + 3), *p = s;
	if (!s)
		return NULL;
	*p++ = '{';
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s%" PRId64, i ? "," : "", v[i]);
	*p++ = '}';
	*p = '\0';
	return s;
}

const char *pg_format_array(fd_arena_t *a, const Frontdesk__V1__OutputFormat *v, size_t n)
{
	int64_t *w = fd_arena_alloc(a, (n ? n : 1) * sizeof(*w));
	if (!w)
		return NULL;
	for (size_t i = 0; i < n; i++)
		w[i] = v[i];
	return pg_int_array(a, w, n);
}

/* Each element quoted, with " and \ escaped. */
const char *pg_text_array(fd_arena_t *a, char *const *v, size_t n)
{
	size_t len = 3;
	for (size_t i = 0; i < n; i++)
		len += 2 * strlen(v[i]) + 3;
	char *s = fd_arena_alloc(a, len), *p = s;
	if (!s)
		return NULL;
	*p++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i)
			*p++ = ',';
		*p++ = '"';
		for (const char *c = v[i]; *c; c++) {
			if (*c == '"' || *c == '\\')
				*p++ = '\\';
			*p++ = *c;
		}
		*p++ = '"';
	}
	*p++ = '}';
	*p = '\0';
	return s;
}

int pg_parse_ints(fd_arena_t *a, const char *text, int64_t **out, size_t *n)
{
	size_t cap = 1;
	for (const char *c = text; *c; c++)
		cap += *c == ',';
	int64_t *v = fd_arena_alloc(a, cap * sizeof(*v));
	if (!v)
		return -FD_EEXHAUSTED;
	size_t k = 0;
	const char *p = text[0] == '{' ? text + 1 : text;
	while (*p && *p != '}') {
		char *end;
		long long x = strtoll(p, &end, 10);
		if (end == p)
			break;
		v[k++] = x;
		p = *end == ',' ? end + 1 : end;
	}
	*out = v;
	*n = k;
	return 0;
}

int pg_parse_formats(fd_arena_t *a, const char *text, Frontdesk__V1__OutputFormat **out, size_t *n)
{
	int64_t *v;
	int rc = pg_parse_ints(a, text, &v, n);
	if (rc < 0)
		return rc;
	Frontdesk__V1__OutputFormat *f = fd_arena_alloc(a, (*n ? *n : 1) * sizeof(*f));
	if (!f)
		return -FD_EEXHAUSTED;
	for (size_t i = 0; i < *n; i++)
		f[i] = (Frontdesk__V1__OutputFormat)v[i];
	*out = f;
	return 0;
}

/* Postgres writes an element in quotes when it needs them (with \ escapes),
 * bare otherwise; NULL elements never occur in these columns. */
int pg_parse_texts(fd_arena_t *a, const char *text, char ***out, size_t *n)
{
	size_t len = strlen(text), cap = 1;
	for (const char *c = text; *c; c++)
		cap += *c == ',';
	char **v = fd_arena_alloc(a, cap * sizeof(*v));
	char *buf = fd_arena_alloc(a, len + 1);
	if (!v || !buf)
		return -FD_EEXHAUSTED;
	size_t k = 0;
	const char *p = text[0] == '{' ? text + 1 : text;
	while (*p && *p != '}') {
		char *start = buf;
		if (*p == '"') {
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				*buf++ = *p;
			}
			if (*p == '"')
				p++;
		} else {
			while (*p && *p != ',' && *p != '}')
				*buf++ = *p++;
		}
		*buf++ = '\0';
		v[k++] = start;
		if (*p == ',')
			p++;
	}
	*out = v;
	*n = k;
	return 0;
}

