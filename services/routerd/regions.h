/* regions.h - the regions routerd routes by (FRONTDESK_ROUTERD_REGIONS),
 * their countries, and the checks of region and country fields. */
#ifndef ROUTERD_REGIONS_H
#define ROUTERD_REGIONS_H

#include "fd/rpc.h"
#include "fd/status.h"

#define MAX_REGIONS 64
#define REGION_LIST_MAX 160       /* the list of region names in an error message */

typedef struct region {
	char name[32];
	char countries[256][3];       /* NUL-terminated alpha-2 codes */
	int ncountries;
} region_t;

typedef struct regions {
	region_t v[MAX_REGIONS];
	int n;
	/* "eu-west, us-east, ..." for error messages: the names that fit in
	 * REGION_LIST_MAX, then "... (N in all)". */
	char list[REGION_LIST_MAX];
} regions_t;

/* Reads "eu-west=GB IE;us-east=US CA" into r (start-up; -FD_EINVAL naming
 * the setting). */
int regions_parse(regions_t *r, const char *spec, fd_err_t *err) FD_MUSTCHECK;
/* The region index of name, -1 if unknown. */
int region_find(const regions_t *r, const char *name);
/* The name of region i; "" for -1. Static for the process's life. */
const char *region_name(const regions_t *r, int i);
/* The region of an alpha-2 country, -1 if none. */
int region_of_country(const regions_t *r, const char *cc);

/* Fails the call with INVALID_ARGUMENT: field names an unknown region; the
 * message lists the configured ones (bounded: REGION_LIST_MAX). */
int region_unknown(fd_call_t *call, const regions_t *r, const char *field, const char *name);
/* A known region, or "" when !required (-FD_EINVAL naming field). */
int check_region(fd_call_t *call, const regions_t *r, const char *field, const char *region, bool required) FD_MUSTCHECK;
/* An alpha-2 country or "" (-FD_EINVAL naming field). */
int check_country(fd_call_t *call, const char *field, const char *cc) FD_MUSTCHECK;

#endif
