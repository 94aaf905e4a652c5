/* check.h - linesd's input checks: pure functions of a request's fields
 * (no call, no database), each -FD_EINVAL with err naming the field, or 0.
 * Unit tested (tests/unit/test_linesd_check.c). Free text and names go
 * through fd_check_text / fd_check_name (fd/text.h). */
#ifndef LINESD_CHECK_H
#define LINESD_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "fd/status.h"
#include "frontdesk/v1/lines.pb-c.h"

#define CHECK_MAX_CONNECTIONS 1000
#define CHECK_MAX_PERIODS 120
#define CHECK_MAX_DURATION_DAYS 3660
#define CHECK_MAX_CREDIT_COST 1000000000
#define CHECK_MAX_ALLOWED 100          /* allowed_ips, allowed_user_agents */
#define CHECK_USER_AGENT_MAX 512

/* Distinct positive ids, at most max of them. */
int check_ids(fd_err_t *err, const char *field, const int64_t *v, size_t n, size_t max) FD_MUSTCHECK;
/* Distinct OutputFormats (TS, M3U8, RTMP), at most 3. */
int check_formats(fd_err_t *err, const char *field, const Frontdesk__V1__OutputFormat *v, size_t n) FD_MUSTCHECK;
/* A line's username: 1 to 64 of letters, digits and . _ - @. */
int check_line_username(fd_err_t *err, const char *field, const char *s) FD_MUSTCHECK;
/* A line's password: 4 to 64 of letters, digits and . _ - ~ (players put it
 * in URLs: the characters URLs carry unescaped). */
int check_line_password(fd_err_t *err, const char *field, const char *s) FD_MUSTCHECK;
/* "203.0.113.0/24", "2001:db8::/32" or a single address; no host bits set
 * past the prefix. i: its index in field (named in the message). */
int check_cidr(fd_err_t *err, const char *field, size_t i, const char *s) FD_MUSTCHECK;
/* A line's locks: at most 100 CIDRs (allowed_ips) and 100 user agents
 * (allowed_user_agents, free text of 1 to 512 characters). */
int check_locks(fd_err_t *err, char *const *ips, size_t nips, char *const *uas, size_t nuas) FD_MUSTCHECK;
/* A client's address: IPv4 or IPv6, required. */
int check_ip(fd_err_t *err, const char *field, const char *s) FD_MUSTCHECK;
/* ExtendLine's periods: 0 (one) to 120. */
int check_periods(fd_err_t *err, int64_t v) FD_MUSTCHECK;
/* A line's max_connections: 1 to 1000, or with zero_is_package 0 too (the
 * package's). */
int check_line_connections(fd_err_t *err, int64_t v, bool zero_is_package) FD_MUSTCHECK;

/* The catalog's numbers. */
int check_days(fd_err_t *err, int64_t v) FD_MUSTCHECK;          /* duration_days: 0 to 3660 */
int check_hours(fd_err_t *err, int64_t v) FD_MUSTCHECK;         /* duration_hours: 0 to 23 */
int check_cost(fd_err_t *err, int64_t v) FD_MUSTCHECK;          /* credit_cost: 0 to 1e9 */
int check_connections(fd_err_t *err, int64_t v) FD_MUSTCHECK;   /* a package's max_connections: 1 to 1000 */
int check_bandwidth(fd_err_t *err, int64_t v) FD_MUSTCHECK;     /* bandwidth_cap_kbps: >= 0 */
int check_kind(fd_err_t *err, int kind, bool required) FD_MUSTCHECK;   /* LIVE, MOVIE, SERIES (0 unless required) */
int check_number(fd_err_t *err, int64_t v) FD_MUSTCHECK;        /* a stream's number: >= 0 */

#endif
