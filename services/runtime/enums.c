/* enums.c - two-way enum tables (fd/enums.h). */
#include <string.h>
#include "fd/enums.h"

const char *fd_enum_name(const fd_enum_name_t *t, int value)
{
	for (; t->name; t++)
		if (t->value == value)
			return t->name;
	return NULL;
}

int fd_enum_value(const fd_enum_name_t *t, const char *name, int otherwise)
{
	for (; t->name; t++)
		if (strcmp(t->name, name) == 0)
			return t->value;
	return otherwise;
}
