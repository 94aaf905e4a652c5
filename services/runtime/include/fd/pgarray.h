/* pgarray.h - PostgreSQL array literals, both ways: parameters built as
 * text ("{1,2}", quoted texts) and array columns read back from their text
 * form, into an arena. */
#ifndef FD_PGARRAY_H
#define FD_PGARRAY_H

#include <stddef.h>
#include <stdint.h>
#include "fd/arena.h"
#include "fd/status.h"
#include "frontdesk/v1/common.pb-c.h"

/* Postgres array literals. */
const char *pg_int_array(fd_arena_t *a, const int64_t *v, size_t n);         /* "{1,2}" */
const char *pg_text_array(fd_arena_t *a, char *const *v, size_t n);          /* quoted */
const char *pg_format_array(fd_arena_t *a, const Frontdesk__V1__OutputFormat *v, size_t n);
/* Parse an int8[] / int2[] / text[] / cidr[] column's text into the arena. */
int pg_parse_ints(fd_arena_t *a, const char *text, int64_t **out, size_t *n) FD_MUSTCHECK;
int pg_parse_texts(fd_arena_t *a, const char *text, char ***out, size_t *n) FD_MUSTCHECK;
int pg_parse_formats(fd_arena_t *a, const char *text, Frontdesk__V1__OutputFormat **out, size_t *n) FD_MUSTCHECK;

#endif
