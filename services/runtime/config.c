/* config.c - loading, printing and listing the settings of a config table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "fd/config.h"

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static bool is_string(fd_cfg_type_t t)
{
	return t == FD_CFG_STR || t == FD_CFG_SECRET || t == FD_CFG_DSN;
}

static int load_item(const fd_cfg_item_t *it, char *base, fd_err_t *err)
{
	const char *env = getenv(it->env);
	const char *raw = env ? env : (it->def ? it->def : "");
	const char *from = env ? "" : " (the default)";

	switch (it->type) {
	case FD_CFG_INT: {
		errno = 0;
		char *end;
		long long v = strtoll(raw, &end, 10);
		if (errno || end == raw || *end != '\0')
			return fd_err_set(err, FD_EINVAL, "%s%s: \"%.40s\" is not an integer", it->env,
			                  from, raw);
		if (v < it->min || v > it->max)
			return fd_err_set(err, FD_EINVAL, "%s%s: %lld is outside %lld..%lld", it->env,
			                  from, v, it->min, it->max);
		*(int64_t *)(base + it->offset) = v;
		return 0;
	}
	case FD_CFG_BOOL:
		if (parse_bool(raw, (bool *)(base + it->offset)) < 0)
			return fd_err_set(err, FD_EINVAL, "%s%s: \"%.40s\" is not a boolean (true/false)",
			                  it->env, from, raw);
		return 0;
	case FD_CFG_STR:
	case FD_CFG_SECRET:
	case FD_CFG_DSN: {
		size_t len = strlen(raw);
		if ((long long)len < it->min || (long long)len > it->max) {
			if (len == 0)
				return fd_err_set(err, FD_EINVAL, "%s%s: must not be empty", it->env, from);
			return fd_err_set(err, FD_EINVAL, "%s%s: length %zu is outside %lld..%lld",
			                  it->env, from, len, it->min, it->max);
		}
		char **slot = (char **)(base + it->offset);
		free(*slot);
		*slot = strdup(raw);
		if (!*slot)
			return fd_err_set(err, FD_EEXHAUSTED, "%s: out of memory", it->env);
		return 0;
	}
	}
	return fd_err_set(err, FD_EINTERNAL, "%s: unknown setting type", it->env);
}

int fd_config_load(const fd_cfg_item_t *items, void *cfg, fd_err_t *err)
{
	for (const fd_cfg_item_t *it = items; it->name; it++) {
		int rc = load_item(it, cfg, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Print a conninfo or URI with any password replaced by "***". */
static void print_dsn(const char *s, FILE *out)
{
	const char *p;
	if (strncmp(s, "postgres://", 11) == 0 || strncmp(s, "postgresql://", 13) == 0) {
		const char *auth = strstr(s, "://") + 3;
		const char *at = strchr(auth, '@');
		const char *colon = memchr(auth, ':', at ? (size_t)(at - auth) : 0);
		if (at && colon) {
			fprintf(out, "%.*s:***%s", (int)(colon - s), s, at);
			s = NULL;
		}
		if (s && (p = strstr(s, "password=")) != NULL) {
			fprintf(out, "%.*spassword=***", (int)(p - s), s);
			p += 9;
			while (*p && *p != '&')
				p++;
			fputs(p, out);
			return;
		}
		if (s)
			fputs(s, out);
		return;
	}
	while ((p = strstr(s, "password")) != NULL) {
		const char *q = p + 8;
		while (*q == ' ')
			q++;
		if (*q != '=') {
			fprintf(out, "%.*s", (int)(q - s), s);
			s = q;
			continue;
		}
		q++;
		while (*q == ' ')
			q++;
		fprintf(out, "%.*s***", (int)(q - s), s);
		if (*q == '\'') {
			for (q++; *q && *q != '\''; q++)
				if (*q == '\\' && q[1])
					q++;
			if (*q)
				q++;
		} else {
			while (*q && *q != ' ')
				q++;
		}
		s = q;
	}
	fputs(s, out);
}

void fd_config_print(const fd_cfg_item_t *items, const void *cfg, FILE *out)
{
	const char *base = cfg;
	for (const fd_cfg_item_t *it = items; it->name; it++) {
		fprintf(out, "%s=", it->env);
		switch (it->type) {
		case FD_CFG_INT:
			fprintf(out, "%lld", (long long)*(const int64_t *)(base + it->offset));
			break;
		case FD_CFG_BOOL:
			fputs(*(const bool *)(base + it->offset) ? "true" : "false", out);
			break;
		case FD_CFG_STR:
			fputs(*(char *const *)(base + it->offset), out);
			break;
		case FD_CFG_SECRET:
			fputs(**(char *const *)(base + it->offset) ? "(set)" : "(unset)", out);
			break;
		case FD_CFG_DSN:
			print_dsn(*(char *const *)(base + it->offset), out);
			break;
		}
		fputc('\n', out);
	}
}

void fd_config_list_env(const fd_cfg_item_t *items, FILE *out)
{
	for (const fd_cfg_item_t *it = items; it->name; it++)
		fprintf(out, "%s\n", it->env);
}

void fd_config_free(const fd_cfg_item_t *items, void *cfg)
{
	char *base = cfg;
	for (const fd_cfg_item_t *it = items; it->name; it++) {
		if (is_string(it->type)) {
			char **slot = (char **)(base + it->offset);
			if (*slot && it->type == FD_CFG_SECRET)
				memset(*slot, 0, strlen(*slot));
			free(*slot);
			*slot = NULL;
		}
	}
}
