/* api_index.c - indexes the compiled-in descriptor set: files, symbols, method kinds. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fd/api_index.h"
#include "fd/log.h"
#include "google/protobuf/descriptor.pb-c.h"

extern const unsigned char fd_api_descriptor_set[];
extern const size_t fd_api_descriptor_set_len;

typedef struct symbol {
	char *name;
	int file;
	int kind;       /* for methods: fd_method_kind_t; -1 otherwise */
} symbol_t;

struct fd_api_index {
	fd_api_file_t *files;
	size_t nfiles;
	symbol_t *syms;
	size_t nsyms, capsyms;
};

static struct fd_api_index *index_;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int add_symbol(struct fd_api_index *ix, const char *prefix, const char *name, int file,
                      int kind)
{
	if (ix->nsyms == ix->capsyms) {
		size_t cap = ix->capsyms ? ix->capsyms * 2 : 256;
		symbol_t *s = realloc(ix->syms, cap * sizeof(*s));
		if (!s)
			return -1;
		ix->syms = s;
		ix->capsyms = cap;
	}
	size_t lp = strlen(prefix), ln = strlen(name);
	char *full = malloc(lp + ln + 2);
	if (!full)
		return -1;
	if (lp) {
		memcpy(full, prefix, lp);
		full[lp] = '.';
		memcpy(full + lp + 1, name, ln + 1);
	} else {
		memcpy(full, name, ln + 1);
	}
	ix->syms[ix->nsyms++] = (symbol_t){ full, file, kind };
	return 0;
}

static int add_messages(struct fd_api_index *ix, const char *prefix,
                        Google__Protobuf__DescriptorProto **msgs, size_t n, int file)
{
	for (size_t i = 0; i < n; i++) {
		if (add_symbol(ix, prefix, msgs[i]->name, file, -1) < 0)
			return -1;
		/* Names are allocated one by one: a realloc of syms does not move them. */
		const char *full = ix->syms[ix->nsyms - 1].name;
		for (size_t e = 0; e < msgs[i]->n_enum_type; e++)
			if (add_symbol(ix, full, msgs[i]->enum_type[e]->name, file, -1) < 0)
				return -1;
		if (add_messages(ix, full, msgs[i]->nested_type, msgs[i]->n_nested_type, file) < 0)
			return -1;
	}
	return 0;
}

static int cmp_sym(const void *a, const void *b)
{
	return strcmp(((const symbol_t *)a)->name, ((const symbol_t *)b)->name);
}

static int index_file(struct fd_api_index *ix, int fi, Google__Protobuf__FileDescriptorProto *f)
{
	const char *pkg = f->package ? f->package : "";
	for (size_t i = 0; i < f->n_service; i++) {
		Google__Protobuf__ServiceDescriptorProto *s = f->service[i];
		if (add_symbol(ix, pkg, s->name, fi, -1) < 0)
			return -1;
		const char *sname = ix->syms[ix->nsyms - 1].name; /* the name string never moves */
		for (size_t m = 0; m < s->n_method; m++) {
			Google__Protobuf__MethodDescriptorProto *md = s->method[m];
			int kind = md->client_streaming
			                   ? (md->server_streaming ? FD_METHOD_BIDI_STREAMING
			                                           : FD_METHOD_CLIENT_STREAMING)
			                   : (md->server_streaming ? FD_METHOD_SERVER_STREAMING
			                                           : FD_METHOD_UNARY);
			if (add_symbol(ix, sname, md->name, fi, kind) < 0)
				return -1;
		}
	}
	for (size_t e = 0; e < f->n_enum_type; e++)
		if (add_symbol(ix, pkg, f->enum_type[e]->name, fi, -1) < 0)
			return -1;
	return add_messages(ix, pkg, f->message_type, f->n_message_type, fi);
}

static void build(void)
{
	struct fd_api_index *ix = calloc(1, sizeof(*ix));
	Google__Protobuf__FileDescriptorSet *set = google__protobuf__file_descriptor_set__unpack(
		NULL, fd_api_descriptor_set_len, fd_api_descriptor_set);
	if (!ix || !set)
		goto fail;
	ix->files = calloc(set->n_file, sizeof(*ix->files));
	if (!ix->files)
		goto fail;
	ix->nfiles = set->n_file;

	/* The raw bytes of each file: field 1 of FileDescriptorSet, in order. */
	const uint8_t *p = fd_api_descriptor_set, *end = p + fd_api_descriptor_set_len;
	for (size_t i = 0; i < set->n_file && p < end; i++) {
		uint64_t len = 0;
		p++; /* the key: field 1, wire type 2 (0x0a) */
		for (int shift = 0; p < end; shift += 7) {
			len |= (uint64_t)(*p & 0x7F) << shift;
			if (!(*p++ & 0x80))
				break;
		}
		ix->files[i].bytes = p;
		ix->files[i].len = len;
		p += len;
	}

	for (size_t i = 0; i < set->n_file; i++) {
		Google__Protobuf__FileDescriptorProto *f = set->file[i];
		ix->files[i].name = strdup(f->name);
		ix->files[i].deps = calloc(f->n_dependency + 1, sizeof(int));
		if (!ix->files[i].name || !ix->files[i].deps)
			goto fail;
		for (size_t d = 0; d < f->n_dependency; d++)
			for (size_t j = 0; j < set->n_file; j++)
				if (strcmp(set->file[j]->name, f->dependency[d]) == 0)
					ix->files[i].deps[ix->files[i].ndeps++] = (int)j;
		if (index_file(ix, (int)i, f) < 0)
			goto fail;
	}
	qsort(ix->syms, ix->nsyms, sizeof(symbol_t), cmp_sym);
	google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
	index_ = ix;
	return;
fail:
	fd_error("the compiled-in API descriptor set does not parse");
	if (set)
		google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
	/* Leaked on purpose: start-up fails right after this. */
}

const struct fd_api_index *fd_api_index(void)
{
	pthread_once(&once, build);
	return index_;
}

static const symbol_t *find(const char *name)
{
	const struct fd_api_index *ix = fd_api_index();
	if (!ix)
		return NULL;
	symbol_t key = { (char *)name, 0, 0 };
	return bsearch(&key, ix->syms, ix->nsyms, sizeof(symbol_t), cmp_sym);
}

int fd_api_method_kind(const char *service, const char *method, fd_method_kind_t *kind)
{
	char full[512];
	if ((size_t)snprintf(full, sizeof(full), "%s.%s", service, method) >= sizeof(full))
		return -FD_ENOTFOUND;
	const symbol_t *s = find(full);
	if (!s || s->kind < 0)
		return -FD_ENOTFOUND;
	*kind = (fd_method_kind_t)s->kind;
	return 0;
}

int fd_api_file_by_name(const char *name)
{
	const struct fd_api_index *ix = fd_api_index();
	for (size_t i = 0; ix && i < ix->nfiles; i++)
		if (strcmp(ix->files[i].name, name) == 0)
			return (int)i;
	return -1;
}

int fd_api_file_by_symbol(const char *symbol)
{
	const symbol_t *s = find(symbol);
	return s ? s->file : -1;
}

const fd_api_file_t *fd_api_file(int index)
{
	const struct fd_api_index *ix = fd_api_index();
	if (!ix || index < 0 || (size_t)index >= ix->nfiles)
		return NULL;
	return &ix->files[index];
}
