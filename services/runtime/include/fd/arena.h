/* arena.h - a bump allocator per call.
 *
 * Every RPC gets one arena; the request is unpacked into it (it is the call's
 * ProtobufCAllocator), handlers allocate their replies and scratch from it,
 * and everything is freed at once when the call ends. Nothing allocated from
 * an arena is freed on its own. */
#ifndef FD_ARENA_H
#define FD_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <protobuf-c/protobuf-c.h>
#include "fd/status.h"

typedef struct fd_arena_chunk fd_arena_chunk_t;
typedef struct fd_arena_wipe fd_arena_wipe_t;

typedef struct fd_arena {
	fd_arena_chunk_t *head;     /* newest chunk first */
	size_t limit;               /* bytes this arena may hold in all; 0 = no limit */
	size_t used;                /* bytes of chunks held */
	bool exhausted;             /* an allocation failed (limit or malloc) */
	ProtobufCAllocator pb;      /* allocator_data points back at the arena */
	fd_arena_wipe_t *wipes;     /* secrets to wipe when the arena is freed */
	char first[1024];           /* the first small allocations need no malloc */
	size_t first_used;
} fd_arena_t;

/* limit: upper bound on the arena's total size (a request that needs more
 * fails with RESOURCE_EXHAUSTED instead of exhausting the process). */
void fd_arena_init(fd_arena_t *a, size_t limit);
/* Wipes what fd_arena_wipe_on_free named, then frees every chunk; the
 * arena may be initialised again. */
void fd_arena_free(fd_arena_t *a);

/* Aligned to 16 bytes; NULL when out of memory or over the limit. */
void *fd_arena_alloc(fd_arena_t *a, size_t n) FD_MUSTCHECK;
void *fd_arena_zalloc(fd_arena_t *a, size_t n) FD_MUSTCHECK;
char *fd_arena_strdup(fd_arena_t *a, const char *s) FD_MUSTCHECK;
char *fd_arena_strndup(fd_arena_t *a, const char *s, size_t n) FD_MUSTCHECK;
char *fd_arena_printf(fd_arena_t *a, const char *fmt, ...) FD_PRINTF(2, 3) FD_MUSTCHECK;

/* Overwrite the n bytes at p with zeros when the arena is freed (a line's
 * opened password, a decrypted secret): every path out of a call wipes it,
 * so handlers need no cleanup of their own. p must live at least as long
 * as the arena (it is usually an allocation from it). -FD_EEXHAUSTED when
 * out of memory: then the caller wipes p itself and fails the call. */
int fd_arena_wipe_on_free(fd_arena_t *a, void *p, size_t n) FD_MUSTCHECK;
/* n bytes from the arena that are wiped when it is freed; NULL when out of
 * memory. */
void *fd_arena_secret(fd_arena_t *a, size_t n) FD_MUSTCHECK;

#endif
