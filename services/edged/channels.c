/* channels.c - a player's line (AuthorizePlayback, stream 0), its live
 * channels (GetLineChannels) and the bounded cache of both and of what is
 * made from them (channels.h). */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "channels.h"
#include "upstream.h"
#include "fd/log.h"

#define USER_MAX 64            /* linesd's bounds of a line's username and password */
#define PASSWORD_MAX 64
#define UA_MAX 512             /* linesd's bound of a user agent */
#define RETRY_UNAVAILABLE 5    /* s: Retry-After while linesd cannot be asked */

/* ---- the cache ---- */

typedef struct centry {
	char *key;
	uint64_t hash;
	size_t bytes;               /* value, key and entry */
	edge_cval_t *v;
	struct centry *hnext;       /* bucket chain */
	struct centry *prev, *next; /* recency: head.next is the most recent */
} centry_t;

typedef struct tversion {
	int64_t tenant;             /* 0: free slot */
	int64_t version;
} tversion_t;

struct edge_playlists {
	pthread_mutex_t mu;
	size_t limit, used;
	centry_t **buckets;
	size_t nbuckets, count;
	centry_t head;              /* recency ring sentinel */
	uint64_t gen;               /* bumped when the event stream comes back or goes */
	bool live;                  /* the event stream is live: values may be used */
	tversion_t *tv;             /* last announced catalog version per tenant (open addressing) */
	size_t ntv, captv;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static size_t tv_slot(const struct edge_playlists *c, int64_t tenant)
{
	size_t i = (size_t)((uint64_t)tenant * 11400714819323198485ull) & (c->captv - 1);
	while (c->tv[i].tenant && c->tv[i].tenant != tenant)
		i = (i + 1) & (c->captv - 1);
	return i;
}

static int64_t tv_get(const struct edge_playlists *c, int64_t tenant)
{
	if (!c->captv)
		return 0;
	size_t i = tv_slot(c, tenant);
	return c->tv[i].tenant ? c->tv[i].version : 0;
}

/* Remembers the tenant's newest version; false when out of memory. */
static bool tv_set(struct edge_playlists *c, int64_t tenant, int64_t version)
{
	if ((c->ntv + 1) * 2 > c->captv) {
		size_t cap = c->captv ? c->captv * 2 : 64;
		tversion_t *old = c->tv;
		size_t oldcap = c->captv;
		if (!(c->tv = calloc(cap, sizeof(*c->tv)))) {
			c->tv = old;
			return false;
		}
		c->captv = cap;
		for (size_t i = 0; i < oldcap; i++)
			if (old[i].tenant)
				c->tv[tv_slot(c, old[i].tenant)] = old[i];
		free(old);
	}
	size_t i = tv_slot(c, tenant);
	if (!c->tv[i].tenant) {
		c->tv[i].tenant = tenant;
		c->ntv++;
	}
	if (version > c->tv[i].version)
		c->tv[i].version = version;
	return true;
}

static void unlink_lru(centry_t *x)
{
	x->prev->next = x->next;
	x->next->prev = x->prev;
}

static void push_front(struct edge_playlists *c, centry_t *x)
{
	x->next = c->head.next;
	x->prev = &c->head;
	c->head.next->prev = x;
	c->head.next = x;
}

/* Unlinks x from its bucket and the ring and frees it (under the lock). */
static void drop(struct edge_playlists *c, centry_t *x)
{
	centry_t **p = &c->buckets[x->hash & (c->nbuckets - 1)];
	while (*p != x)
		p = &(*p)->hnext;
	*p = x->hnext;
	unlink_lru(x);
	c->used -= x->bytes;
	c->count--;
	cache_release(x->v);
	free(x->key);
	free(x);
}

static void drop_all(struct edge_playlists *c)
{
	while (c->head.next != &c->head)
		drop(c, c->head.next);
}

static void grow(struct edge_playlists *c)
{
	size_t n = c->nbuckets * 2;
	centry_t **b = calloc(n, sizeof(*b));
	if (!b)
		return;   /* longer chains, still correct */
	for (size_t i = 0; i < c->nbuckets; i++)
		for (centry_t *x = c->buckets[i], *next; x; x = next) {
			next = x->hnext;
			x->hnext = b[x->hash & (n - 1)];
			b[x->hash & (n - 1)] = x;
		}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = n;
}

struct edge_playlists *cache_new(size_t limit_bytes)
{
	struct edge_playlists *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->nbuckets = 256;
	if (!(c->buckets = calloc(c->nbuckets, sizeof(*c->buckets)))) {
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->mu, NULL);
	c->limit = limit_bytes;
	c->head.next = c->head.prev = &c->head;
	c->gen = 1;
	return c;
}

void cache_free(struct edge_playlists *c)
{
	if (!c)
		return;
	drop_all(c);
	pthread_mutex_destroy(&c->mu);
	free(c->buckets);
	free(c->tv);
	free(c);
}

void cache_catalog_changed(struct edge_playlists *c, int64_t tenant, int64_t version)
{
	pthread_mutex_lock(&c->mu);
	if (!tv_set(c, tenant, version)) {
		/* Cannot remember the version: nothing of any tenant is trusted. */
		drop_all(c);
		c->gen++;
	} else {
		for (centry_t *x = c->head.next, *next; x != &c->head; x = next) {
			next = x->next;
			if (x->v->tenant == tenant && x->v->version < version)
				drop(c, x);
		}
	}
	pthread_mutex_unlock(&c->mu);
}

void cache_events_down(struct edge_playlists *c)
{
	pthread_mutex_lock(&c->mu);
	bool was = c->live;
	c->live = false;
	c->gen++;
	drop_all(c);
	pthread_mutex_unlock(&c->mu);
	if (was)
		fd_info("playlist cache: bypassed while linesd's event stream is down");
}

void cache_events_up(struct edge_playlists *c)
{
	pthread_mutex_lock(&c->mu);
	bool was = c->live;
	/* Whatever was read before now may have missed a change: a new
	 * generation, so no read begun earlier is stored. */
	c->gen++;
	c->live = c->limit > 0;
	drop_all(c);
	pthread_mutex_unlock(&c->mu);
	if (!was && c->limit > 0)
		fd_info("playlist cache: in use (linesd's event stream is live)");
}

uint64_t cache_ticket(edged_t *e)
{
	struct edge_playlists *c = e->playlists;
	if (!c || !c->limit)
		return 0;
	pthread_mutex_lock(&c->mu);
	uint64_t t = c->live ? c->gen : 0;
	pthread_mutex_unlock(&c->mu);
	return t;
}

edge_cval_t *cache_get(edged_t *e, uint64_t ticket, const char *key)
{
	struct edge_playlists *c = e->playlists;
	if (!c || !ticket)
		return NULL;
	uint64_t h = hash_str(key);
	edge_cval_t *v = NULL;
	pthread_mutex_lock(&c->mu);
	if (c->live && c->gen == ticket) {
		for (centry_t *x = c->buckets[h & (c->nbuckets - 1)]; x; x = x->hnext)
			if (x->hash == h && strcmp(x->key, key) == 0) {
				v = x->v;
				atomic_fetch_add(&v->refs, 1);
				unlink_lru(x);
				push_front(c, x);
				break;
			}
	}
	pthread_mutex_unlock(&c->mu);
	return v;
}

void cache_put(edged_t *e, uint64_t ticket, const char *key, edge_cval_t *v)
{
	struct edge_playlists *c = e->playlists;
	if (!c || !ticket || !v)
		return;
	size_t klen = strlen(key);
	size_t bytes = v->bytes + klen + 1 + sizeof(centry_t);
	if (bytes > c->limit / 4)
		return;
	centry_t *x = calloc(1, sizeof(*x));
	char *k = malloc(klen + 1);
	if (!x || !k) {
		free(x);
		free(k);
		return;
	}
	memcpy(k, key, klen + 1);
	x->key = k;
	x->hash = hash_str(key);
	x->bytes = bytes;
	x->v = v;
	pthread_mutex_lock(&c->mu);
	if (!c->live || c->gen != ticket || v->version < tv_get(c, v->tenant)) {
		pthread_mutex_unlock(&c->mu);
		free(k);
		free(x);
		return;
	}
	/* The same key again (two requests missed at once): the newer wins. */
	for (centry_t *o = c->buckets[x->hash & (c->nbuckets - 1)]; o; o = o->hnext)
		if (o->hash == x->hash && strcmp(o->key, key) == 0) {
			drop(c, o);
			break;
		}
	while (c->used + bytes > c->limit && c->head.prev != &c->head)
		drop(c, c->head.prev);
	if (c->count + 1 > c->nbuckets)
		grow(c);
	atomic_fetch_add(&v->refs, 1);
	x->hnext = c->buckets[x->hash & (c->nbuckets - 1)];
	c->buckets[x->hash & (c->nbuckets - 1)] = x;
	push_front(c, x);
	c->used += bytes;
	c->count++;
	pthread_mutex_unlock(&c->mu);
}

void cache_release(edge_cval_t *v)
{
	if (v && atomic_fetch_sub(&v->refs, 1) == 1)
		v->destroy(v);
}

static void blob_destroy(edge_cval_t *v)
{
	free(v);
}

edge_blob_t *cache_blob_new(int64_t tenant, int64_t version, const char *data, size_t len)
{
	edge_blob_t *b = malloc(sizeof(*b) + len + 1);
	if (!b)
		return NULL;
	atomic_init(&b->cv.refs, 1);
	b->cv.bytes = sizeof(*b) + len + 1;
	b->cv.tenant = tenant;
	b->cv.version = version;
	b->cv.destroy = blob_destroy;
	b->len = len;
	memcpy(b->data, data, len);
	b->data[len] = '\0';
	return b;
}

/* ---- the line ---- */

/* What linesd accepts as a user agent: printable ASCII (a header may carry
 * tabs or bytes that are not UTF-8, which linesd refuses), at most 512
 * bytes; "" when only blanks remain. */
static const char *clean_user_agent(edge_req_t *r)
{
	const char *ua = r->user_agent;
	size_t n = strlen(ua);
	if (n > UA_MAX)
		n = UA_MAX;
	char *out = fd_arena_alloc(r->arena, n + 1);
	if (!out)
		return "";
	bool blank = true;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)ua[i];
		out[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
		blank = blank && out[i] == ' ';
	}
	out[n] = '\0';
	return blank ? "" : out;
}

static unsigned format_bits(const Frontdesk__V1__OutputFormat *f, size_t n)
{
	unsigned bits = 0;
	for (size_t i = 0; i < n; i++)
		if (f[i] >= FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_TS &&
		    f[i] <= FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_RTMP)
			bits |= 1u << f[i];
	return bits ? bits : EDGE_FMT_ALL;
}

/* "tenant|b1,b2,...|formats": what a line's channel list is made of. */
static char *line_key(fd_arena_t *a, int64_t tenant, const int64_t *bq, size_t nbq, unsigned formats)
{
	size_t cap = 48 + nbq * 21;
	char *k = fd_arena_alloc(a, cap);
	if (!k)
		return NULL;
	size_t n = (size_t)snprintf(k, cap, "%" PRId64 "|", tenant);
	for (size_t i = 0; i < nbq; i++)
		n += (size_t)snprintf(k + n, cap - n, i ? ",%" PRId64 : "%" PRId64, bq[i]);
	snprintf(k + n, cap - n, "|%u", formats);
	return k;
}

/* A denial of a line whose credentials were right: the status players
 * show, and why in words. A suspended tenant or reseller, and a line locked
 * to other addresses or players, read "Disabled": the line cannot be used
 * and the viewer has nothing to renew (the players' statuses are Active,
 * Banned, Disabled and Expired only). */
static void denied(edge_line_t *l, Frontdesk__V1__DenialReason why)
{
	l->outcome = EDGE_LOGIN_DENIED;
	switch (why) {
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_EXPIRED:
		l->status = "Expired", l->why = "line expired";
		break;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_BANNED:
		l->status = "Banned", l->why = "line banned";
		break;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_DISABLED:
		l->status = "Disabled", l->why = "line disabled";
		break;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_TENANT_SUSPENDED:
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_RESELLER_SUSPENDED:
		l->status = "Disabled", l->why = "service suspended";
		break;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_IP_NOT_ALLOWED:
		l->status = "Disabled", l->why = "line not allowed from this address";
		break;
	case FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_UA_NOT_ALLOWED:
		l->status = "Disabled", l->why = "line not allowed with this player";
		break;
	default:
		l->status = "Disabled", l->why = "line not allowed";
		break;
	}
}

/* A refused or failed call to linesd as an outcome (rc < 0). */
static void call_failed(edge_req_t *r, edge_line_t *l, const char *method, int rc, const fd_err_t *err)
{
	if (rc == -FD_EINVAL) {
		/* What the player sent cannot be a line's credentials. */
		l->outcome = EDGE_LOGIN_BAD;
		return;
	}
	l->outcome = EDGE_LOGIN_UNAVAILABLE;
	l->retry_after = RETRY_UNAVAILABLE;
	fd_warn("%s for tenant %" PRId64 ": %s: %s", method, r->tenant_id, fd_code_name((fd_code_t)-rc), err->msg);
}

void channels_login(edge_req_t *r, edge_line_t *l)
{
	memset(l, 0, sizeof(*l));
	l->ticket = cache_ticket(r->e);
	l->username = edge_arg(r, "username");
	l->password = edge_arg(r, "password");
	l->outcome = EDGE_LOGIN_BAD;
	if (!l->username || !l->password || !l->username[0] || !l->password[0] ||
	    strlen(l->username) > USER_MAX || strlen(l->password) > PASSWORD_MAX)
		return;
	Frontdesk__V1__AuthorizePlaybackRequest req = FRONTDESK__V1__AUTHORIZE_PLAYBACK_REQUEST__INIT;
	req.tenant_id = r->tenant_id;
	req.username = (char *)l->username;
	req.password = (char *)l->password;
	req.stream_id = 0;
	req.client_ip = r->client_ip;
	req.user_agent = (char *)clean_user_agent(r);
	Frontdesk__V1__AuthorizePlaybackResponse *resp = NULL;
	fd_err_t err = { 0 };
	int rc = upstream_call(r->e, UP_LINESD, "AuthorizePlayback", &req.base,
	                       &frontdesk__v1__authorize_playback_response__descriptor, r->arena,
	                       (ProtobufCMessage **)&resp, &err);
	if (rc < 0) {
		call_failed(r, l, "AuthorizePlayback", rc, &err);
		return;
	}
	if (!resp->allowed && resp->denial_reason == FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_RATE_LIMITED) {
		l->outcome = EDGE_LOGIN_LIMITED;
		l->retry_after = resp->retry_after_seconds > 0 ? resp->retry_after_seconds : 1;
		return;
	}
	if (!resp->line || resp->denial_reason == FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_BAD_CREDENTIALS)
		return;   /* EDGE_LOGIN_BAD */
	const Frontdesk__V1__Line *line = resp->line;
	l->line = line;
	l->formats = format_bits(line->allowed_output_formats, line->n_allowed_output_formats);
	l->key = line_key(r->arena, r->tenant_id, line->bouquet_ids, line->n_bouquet_ids, l->formats);
	if (!l->key) {
		l->outcome = EDGE_LOGIN_UNAVAILABLE;
		l->retry_after = RETRY_UNAVAILABLE;
		return;
	}
	if (resp->allowed) {
		l->outcome = EDGE_LOGIN_OK;
		l->status = "Active";
		return;
	}
	denied(l, resp->denial_reason);
}

/* ---- the channels of a line ---- */

static void chlist_destroy(edge_cval_t *v)
{
	free(v);   /* one block: the struct, its arrays and its strings */
}

static size_t slen(const char *s)
{
	return s ? strlen(s) + 1 : 1;
}

static char *put_str(char **pool, const char *s)
{
	char *out = *pool;
	size_t n = s ? strlen(s) : 0;
	memcpy(out, s ? s : "", n);
	out[n] = '\0';
	*pool += n + 1;
	return out;
}

/* The response's channels copied into one malloc'd block. */
static edge_chlist_t *chlist_new(int64_t tenant, const Frontdesk__V1__GetLineChannelsResponse *m, const char *key)
{
	size_t strings = slen(key);
	for (size_t i = 0; i < m->n_categories; i++)
		strings += slen(m->categories[i]->name);
	for (size_t i = 0; i < m->n_channels; i++) {
		const Frontdesk__V1__Channel *c = m->channels[i];
		strings += slen(c->name) + slen(c->logo_url) + slen(c->epg_channel) + 21;
	}
	size_t head = sizeof(edge_chlist_t);
	head = (head + 15) & ~(size_t)15;
	size_t chs = m->n_channels * sizeof(edge_channel_t), cats = m->n_categories * sizeof(edge_category_t);
	size_t total = head + chs + cats + strings;
	char *block = malloc(total);
	if (!block)
		return NULL;
	edge_chlist_t *l = (edge_chlist_t *)block;
	memset(l, 0, sizeof(*l));
	atomic_init(&l->cv.refs, 1);
	l->cv.bytes = total;
	l->cv.tenant = tenant;
	l->cv.version = m->catalog_version;
	l->cv.destroy = chlist_destroy;
	l->ch = (edge_channel_t *)(block + head);
	l->cat = (edge_category_t *)(block + head + chs);
	l->n = m->n_channels;
	l->ncat = m->n_categories;
	char *pool = block + head + chs + cats;
	l->key = put_str(&pool, key);
	for (size_t i = 0; i < m->n_categories; i++) {
		l->cat[i].id = m->categories[i]->id;
		l->cat[i].name = put_str(&pool, m->categories[i]->name);
	}
	for (size_t i = 0; i < m->n_channels; i++) {
		const Frontdesk__V1__Channel *c = m->channels[i];
		edge_channel_t *o = &l->ch[i];
		o->stream_id = c->stream_id;
		o->category_id = c->category_id;
		o->added_at = c->added_at;
		o->number = c->number;
		o->name = put_str(&pool, c->name);
		o->logo = put_str(&pool, c->logo_url);
		o->epg = put_str(&pool, c->epg_channel);
		o->category = "";
		for (size_t j = 0; j < l->ncat; j++)
			if (l->cat[j].id == c->category_id && c->category_id) {
				o->category = l->cat[j].name;
				break;
			}
		if (o->epg[0]) {
			o->epg_id = o->epg;
		} else {
			int n = snprintf(pool, 21, "%" PRId64, c->stream_id);
			o->epg_id = pool;
			pool += n + 1;
		}
	}
	return l;
}

int channels_get(edge_req_t *r, edge_line_t *l, edge_chlist_t **out)
{
	*out = NULL;
	edge_cval_t *v = cache_get(r->e, l->ticket, l->key);
	if (v) {
		*out = (edge_chlist_t *)v;
		return 0;
	}
	Frontdesk__V1__GetLineChannelsRequest req = FRONTDESK__V1__GET_LINE_CHANNELS_REQUEST__INIT;
	req.tenant_id = r->tenant_id;
	req.username = (char *)l->username;
	req.password = (char *)l->password;
	req.client_ip = r->client_ip;
	req.user_agent = (char *)clean_user_agent(r);
	Frontdesk__V1__GetLineChannelsResponse *resp = NULL;
	fd_err_t err = { 0 };
	int rc = upstream_call(r->e, UP_LINESD, "GetLineChannels", &req.base,
	                       &frontdesk__v1__get_line_channels_response__descriptor, r->arena,
	                       (ProtobufCMessage **)&resp, &err);
	if (rc < 0) {
		call_failed(r, l, "GetLineChannels", rc, &err);
		return -1;
	}
	if (!resp->authorized) {
		if (resp->denial_reason == FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_RATE_LIMITED) {
			l->outcome = EDGE_LOGIN_LIMITED;
			l->retry_after = resp->retry_after_seconds > 0 ? resp->retry_after_seconds : 1;
		} else if (resp->denial_reason == FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_BAD_CREDENTIALS) {
			l->outcome = EDGE_LOGIN_BAD;
		} else {
			denied(l, resp->denial_reason);
		}
		return -1;
	}
	unsigned formats = format_bits(resp->allowed_output_formats, resp->n_allowed_output_formats);
	const char *key = line_key(r->arena, r->tenant_id, resp->bouquet_ids, resp->n_bouquet_ids, formats);
	edge_chlist_t *list = key ? chlist_new(r->tenant_id, resp, key) : NULL;
	if (!list) {
		l->outcome = EDGE_LOGIN_UNAVAILABLE;
		l->retry_after = RETRY_UNAVAILABLE;
		fd_error("GetLineChannels: out of memory for %zu channels", resp->n_channels);
		return -1;
	}
	cache_put(r->e, l->ticket, key, &list->cv);
	*out = list;
	return 0;
}
