/* api_index.h - the descriptor set of api/, compiled in, indexed once.
 *
 * protobuf-c's service descriptors do not say which methods stream, and
 * reflection needs the serialized .proto files: both come from this index,
 * so neither drifts from the .proto files. */
#ifndef FD_API_INDEX_H
#define FD_API_INDEX_H

#include <stddef.h>
#include <stdint.h>
#include "fd/status.h"

typedef enum fd_method_kind {
	FD_METHOD_UNARY,
	FD_METHOD_SERVER_STREAMING,
	FD_METHOD_CLIENT_STREAMING,
	FD_METHOD_BIDI_STREAMING,
} fd_method_kind_t;

typedef struct fd_api_file {
	const char *name;          /* "frontdesk/v1/auth.proto" */
	const uint8_t *bytes;      /* the serialized FileDescriptorProto */
	size_t len;
	int *deps;                 /* indexes of the files it imports */
	size_t ndeps;
} fd_api_file_t;

/* Parsed on first use (thread-safe); lives as long as the process. NULL only
 * if the compiled-in set does not parse (a build error). */
const struct fd_api_index *fd_api_index(void);

/* 0 and *kind, or -FD_ENOTFOUND. service is the full name ("frontdesk.v1.AuthService"). */
int fd_api_method_kind(const char *service, const char *method, fd_method_kind_t *kind);

/* Reflection look-ups: a file's index, or -1. */
int fd_api_file_by_name(const char *name);
int fd_api_file_by_symbol(const char *symbol);
const fd_api_file_t *fd_api_file(int index);

#endif
