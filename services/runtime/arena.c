/* arena.c - bump allocation in chunks, freed all at once. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fd/arena.h"

struct fd_arena_chunk {
	fd_arena_chunk_t *next;
	size_t size;    /* usable bytes in data */
	size_t used;
	_Alignas(16) unsigned char data[];
};

struct fd_arena_wipe {
	fd_arena_wipe_t *next;
	void *p;
	size_t n;
};

#define ALIGN 16
#define CHUNK_MIN 8192

static void *pb_alloc(void *data, size_t size)
{
	return fd_arena_alloc(data, size);
}

static void pb_free(void *data, void *ptr)
{
	(void)data;
	(void)ptr; /* freed with the arena */
}

void fd_arena_init(fd_arena_t *a, size_t limit)
{
	a->head = NULL;
	a->limit = limit;
	a->used = 0;
	a->exhausted = false;
	a->first_used = 0;
	a->wipes = NULL;
	a->pb.alloc = pb_alloc;
	a->pb.free = pb_free;
	a->pb.allocator_data = a;
}

void fd_arena_free(fd_arena_t *a)
{
	for (fd_arena_wipe_t *w = a->wipes; w; w = w->next)
		explicit_bzero(w->p, w->n);
	a->wipes = NULL;
	fd_arena_chunk_t *c = a->head;
	while (c) {
		fd_arena_chunk_t *next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
	a->used = 0;
	a->exhausted = false;
	a->first_used = 0;
}

void *fd_arena_alloc(fd_arena_t *a, size_t n)
{
	if (n == 0)
		n = 1;
	if (n > SIZE_MAX / 2)
		goto exhausted;
	size_t need = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);

	_Static_assert(sizeof(a->first) % ALIGN == 0, "first block keeps alignment");
	if (a->first_used + need <= sizeof(a->first)) {
		/* first[] sits at an offset that is a multiple of 16 only if the
		 * struct is; align the pointer itself to be safe. */
		uintptr_t base = (uintptr_t)a->first;
		uintptr_t p = (base + a->first_used + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1);
		if (p + need <= base + sizeof(a->first)) {
			a->first_used = p + need - base;
			return (void *)p;
		}
	}
	fd_arena_chunk_t *c = a->head;
	if (!c || c->used + need > c->size) {
		size_t size = need > CHUNK_MIN ? need : CHUNK_MIN;
		if (c && c->size * 2 > size && c->size < (1u << 20))
			size = c->size * 2; /* grow geometrically up to 1 MiB chunks */
		if (a->limit && a->used + size > a->limit) {
			if (a->used + need > a->limit)
				goto exhausted;
			size = need;
		}
		c = malloc(sizeof(*c) + size);
		if (!c)
			goto exhausted;
		c->size = size;
		c->used = 0;
		c->next = a->head;
		a->head = c;
		a->used += size;
	}
	void *p = c->data + c->used;
	c->used += need;
	return p;
exhausted:
	a->exhausted = true;
	return NULL;
}

void *fd_arena_zalloc(fd_arena_t *a, size_t n)
{
	void *p = fd_arena_alloc(a, n);
	if (p)
		memset(p, 0, n);
	return p;
}

static char *copy_string(fd_arena_t *a, const char *s, size_t len)
{
	char *p = fd_arena_alloc(a, len + 1);
	if (p) {
		memcpy(p, s, len);
		p[len] = '\0';
	}
	return p;
}

char *fd_arena_strndup(fd_arena_t *a, const char *s, size_t n)
{
	return copy_string(a, s, strnlen(s, n));
}

char *fd_arena_strdup(fd_arena_t *a, const char *s)
{
	return copy_string(a, s, strlen(s));
}

char *fd_arena_printf(fd_arena_t *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	char *p = fd_arena_alloc(a, (size_t)n + 1);
	if (!p)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

int fd_arena_wipe_on_free(fd_arena_t *a, void *p, size_t n)
{
	fd_arena_wipe_t *w = fd_arena_alloc(a, sizeof(*w));
	if (!w)
		return -FD_EEXHAUSTED;
	w->p = p;
	w->n = n;
	w->next = a->wipes;
	a->wipes = w;
	return 0;
}

void *fd_arena_secret(fd_arena_t *a, size_t n)
{
	void *p = fd_arena_alloc(a, n);
	if (p && fd_arena_wipe_on_free(a, p, n) < 0)
		return NULL;
	return p;
}
