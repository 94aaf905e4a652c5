/* regions.c - the region list (regions.h): parsed once at start-up, then
 * read without a lock. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include "regions.h"

int regions_parse(regions_t *r, const char *spec, fd_err_t *err)
{
	r->n = 0;
	const char *p = spec;
	while (*p) {
		const char *end = p + strcspn(p, ";");
		const char *eq = memchr(p, '=', (size_t)(end - p));
		size_t nl = eq ? (size_t)(eq - p) : 0;
		if (!eq || nl == 0 || nl >= sizeof(r->v[0].name))
			return fd_err_set(err, FD_EINVAL, "FRONTDESK_ROUTERD_REGIONS: \"name=CC CC;...\" with names of 1..31 characters");
		if (r->n == MAX_REGIONS)
			return fd_err_set(err, FD_EINVAL, "FRONTDESK_ROUTERD_REGIONS: at most %d regions", MAX_REGIONS);
		region_t *g = &r->v[r->n];
		memset(g, 0, sizeof(*g));
		memcpy(g->name, p, nl);
		for (size_t i = 0; i < nl; i++)
			if (!(islower((unsigned char)p[i]) || isdigit((unsigned char)p[i]) || p[i] == '-'))
				return fd_err_set(err, FD_EINVAL, "FRONTDESK_ROUTERD_REGIONS: region %s: a-z, 0-9 and -", g->name);
		if (region_find(r, g->name) >= 0)
			return fd_err_set(err, FD_EINVAL, "FRONTDESK_ROUTERD_REGIONS: region %s listed twice", g->name);
		for (const char *c = eq + 1; c < end;) {
			while (c < end && *c == ' ')
				c++;
			if (c == end)
				break;
			if (end - c < 2 || !isupper((unsigned char)c[0]) || !isupper((unsigned char)c[1]) ||
			    (c + 2 < end && c[2] != ' ') || g->ncountries == 256)
				return fd_err_set(err, FD_EINVAL, "FRONTDESK_ROUTERD_REGIONS: region %s: countries are "
				                  "ISO 3166-1 alpha-2 codes separated by spaces", g->name);
			memcpy(g->countries[g->ncountries++], c, 2);
			c += 2;
		}
		r->n++;
		p = *end ? end + 1 : end;
	}
	if (r->n == 0)
		return fd_err_set(err, FD_EINVAL, "FRONTDESK_ROUTERD_REGIONS: at least one region");
	/* The names for error messages, as many as fit with room for the tail. */
	char *l = r->list;
	size_t used = 0, room = sizeof(r->list) - sizeof(", ... (64 in all)");
	for (int i = 0; i < r->n; i++) {
		size_t nl = strlen(r->v[i].name) + (i ? 2 : 0);
		if (used + nl >= room) {
			snprintf(l + used, sizeof(r->list) - used, "%s... (%d in all)", i ? ", " : "", r->n);
			return 0;
		}
		used += (size_t)snprintf(l + used, sizeof(r->list) - used, "%s%s", i ? ", " : "", r->v[i].name);
	}
	return 0;
}

int region_find(const regions_t *r, const char *name)
{
	for (int i = 0; i < r->n; i++)
		if (strcmp(r->v[i].name, name) == 0)
			return i;
	return -1;
}

const char *region_name(const regions_t *r, int i)
{
	return i >= 0 && i < r->n ? r->v[i].name : "";
}

int region_of_country(const regions_t *r, const char *cc)
{
	if (!cc[0])
		return -1;
	for (int i = 0; i < r->n; i++)
		for (int j = 0; j < r->v[i].ncountries; j++)
			if (memcmp(r->v[i].countries[j], cc, 2) == 0)
				return i;
	return -1;
}

int region_unknown(fd_call_t *call, const regions_t *r, const char *field, const char *name)
{
	return fd_call_fail(call, FD_EINVAL, "%s: unknown region \"%.32s\" (regions: %s)", field, name, r->list);
}

int check_region(fd_call_t *call, const regions_t *r, const char *field, const char *region, bool required)
{
	if (!region[0] && !required)
		return 0;
	if (!region[0])
		return fd_call_fail(call, FD_EINVAL, "%s: required (regions: %s)", field, r->list);
	if (region_find(r, region) < 0)
		return region_unknown(call, r, field, region);
	return 0;
}

int check_country(fd_call_t *call, const char *field, const char *cc)
{
	if (cc[0] && !(isupper((unsigned char)cc[0]) && isupper((unsigned char)cc[1]) && !cc[2]))
		return fd_call_fail(call, FD_EINVAL, "%s: two upper-case letters (ISO 3166-1 alpha-2)", field);
	return 0;
}
