/* channels.h - a player's line and its live channels, shared by player.c
 * and playlist.c: the credentials checked on every request
 * (AuthorizePlayback with stream 0, which also counts failures), the
 * channel list (GetLineChannels) cached by what it is made of (tenant,
 * bouquets, formats), and the bounded cache of what handlers make from it.
 *
 * The cache (FRONTDESK_EDGED_PLAYLIST_CACHE_MB, least recently used out
 * first) holds immutable, reference-counted values, each tagged with the
 * tenant and the catalog version it was read at. A value is used only while
 * linesd's event stream is live (playlists_events_ready .. forget_all, see
 * playlist.h): a tenant's CATALOG_CHANGED drops its older values, and a read
 * that began before the stream came back, or that is older than the last
 * version announced, is not stored. Never a line's password in it: what
 * handlers cache carries slots where the credentials go. */
#ifndef EDGE_CHANNELS_H
#define EDGE_CHANNELS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "http.h"
#include "frontdesk/v1/lines.pb-c.h"

/* ---- the line ---- */

typedef enum edge_login {
	EDGE_LOGIN_OK,          /* credentials right, the line may play */
	EDGE_LOGIN_DENIED,      /* credentials right, the line may not play now (status says why) */
	EDGE_LOGIN_BAD,         /* credentials missing or wrong, or no such user: one answer */
	EDGE_LOGIN_LIMITED,     /* too many failures from this client: retry_after */
	EDGE_LOGIN_UNAVAILABLE, /* linesd could not be asked or failed: retry_after */
} edge_login_t;

/* Bits of allowed output formats (1 << Frontdesk__V1__OutputFormat). */
#define EDGE_FMT_TS (1u << FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_TS)
#define EDGE_FMT_M3U8 (1u << FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_M3U8)
#define EDGE_FMT_RTMP (1u << FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_RTMP)
#define EDGE_FMT_ALL (EDGE_FMT_TS | EDGE_FMT_M3U8 | EDGE_FMT_RTMP)

typedef struct edge_line {
	edge_login_t outcome;
	const char *username, *password;   /* as the player sent them (the request's) */
	/* Set for OK and DENIED (in the request's arena): */
	const Frontdesk__V1__Line *line;
	const char *status;                /* "Active", "Expired", "Banned", "Disabled" */
	const char *why;                   /* DENIED: a short reason for people ("line expired") */
	unsigned formats;                  /* EDGE_FMT_* the line may play (all when it lists none) */
	const char *key;                   /* "tenant|bouquets|formats": what its channels are made of */
	int retry_after;                   /* LIMITED, UNAVAILABLE: seconds */
	uint64_t ticket;                   /* the cache's generation when the request began (0: bypass) */
} edge_line_t;

/* Checks the username and password arguments of r with AuthorizePlayback
 * (stream 0) and fills *l. Never fails: every outcome is in l->outcome. */
void channels_login(edge_req_t *r, edge_line_t *l);

/* ---- the cache ---- */

/* The head of every cached value (the first member of its struct). */
typedef struct edge_cval {
	atomic_int refs;
	size_t bytes;                /* what it holds, for the bound */
	int64_t tenant, version;     /* the catalog version it was made from */
	void (*destroy)(struct edge_cval *v);
} edge_cval_t;

/* A value made of bytes (a rendered answer without credentials). */
typedef struct edge_blob {
	edge_cval_t cv;
	size_t len;
	char data[];
} edge_blob_t;

/* A new blob of len bytes copied from data (refs 1), or NULL. */
edge_blob_t *cache_blob_new(int64_t tenant, int64_t version, const char *data, size_t len);

/* The value stored under key, with a reference the caller releases; NULL
 * when absent or when the cache is bypassed (ticket 0). */
edge_cval_t *cache_get(edged_t *e, uint64_t ticket, const char *key);
/* Stores v under key (taking a reference of its own) unless the cache was
 * bypassed or reset since ticket, v is older than its tenant's last
 * announced catalog version, or it is larger than a quarter of the bound.
 * The caller keeps its own reference. */
void cache_put(edged_t *e, uint64_t ticket, const char *key, edge_cval_t *v);
void cache_release(edge_cval_t *v);
/* The current generation, 0 when the cache is bypassed (no cache, or the
 * event stream is not live). */
uint64_t cache_ticket(edged_t *e);

/* The cache's life and its three inputs (playlist.h's functions call
 * these). limit_bytes 0: no cache. */
struct edge_playlists *cache_new(size_t limit_bytes);
void cache_free(struct edge_playlists *c);
void cache_catalog_changed(struct edge_playlists *c, int64_t tenant, int64_t version);
void cache_events_down(struct edge_playlists *c);
void cache_events_up(struct edge_playlists *c);

/* ---- the channels of a line ---- */

typedef struct edge_channel {
	int64_t stream_id;
	int64_t category_id;         /* 0: none */
	int64_t added_at;
	int32_t number;              /* 0: none */
	const char *name, *logo, *epg;
	const char *category;        /* its category's name; "" for none */
	const char *epg_id;          /* epg, or the stream id when it has none: tvg-id, <channel id>, epg_channel_id */
} edge_channel_t;

typedef struct edge_category {
	int64_t id;
	const char *name;
} edge_category_t;

typedef struct edge_chlist {
	edge_cval_t cv;
	size_t n, ncat;
	edge_channel_t *ch;          /* in playlist order */
	edge_category_t *cat;        /* in order of first appearance */
	char *key;                   /* "tenant|bouquets|formats" of the line it was read for */
} edge_chlist_t;

/* The live channels of line l (an OK login): from the cache, or read with
 * GetLineChannels and cached. 0 with *out (release it with cache_release).
 * When linesd now refuses the line (it changed meanwhile) or cannot be
 * asked, l->outcome (and status, retry_after) says so and -1 is returned. */
int channels_get(edge_req_t *r, edge_line_t *l, edge_chlist_t **out);

#endif
