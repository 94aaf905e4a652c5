/* enums.h - two-way tables between an API enum's values and the words the
 * database stores for them ("active", "line_created"), read both ways
 * instead of strcmp chains (pgbouncer's cf_set_lookup). A table is an
 * array of { value, word } ending with { 0, NULL }; each service declares
 * its tables in its enums.c. */
#ifndef FD_ENUMS_H
#define FD_ENUMS_H

typedef struct fd_enum_name {
	int value;
	const char *name;            /* the word; NULL ends the table */
} fd_enum_name_t;

/* The word of value (static); NULL when the table does not list it. */
const char *fd_enum_name(const fd_enum_name_t *t, int value);
/* The value of the word name; otherwise when the table does not list it. */
int fd_enum_value(const fd_enum_name_t *t, const char *name, int otherwise);

#endif
