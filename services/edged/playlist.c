/* playlist.c - get.php (M3U playlists of a line's live channels) and
 * xmltv.php (their XMLTV channel list), and the cache's life (playlist.h).
 *
 * A playlist is cached as a template: the text between the places where
 * the line's credentials go, keyed by what it is made of (the line's
 * channels' key, type, output, and the scheme, host, port and prefix the
 * player used: one brand's URLs are never handed to another). A request
 * fills the line's username and password in (one copy of the text). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libxml/parser.h>
#include <libxml/xmlwriter.h>
#include "channels.h"
#include "http.h"
#include "playlist.h"
#include "fd/clock.h"
#include "fd/log.h"

#define M3U_TYPE "audio/x-mpegurl"
#define XML_TYPE "application/xml; charset=utf-8"

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- the cache's life ---- */

int playlists_init(edged_t *e, fd_err_t *err)
{
	xmlInitParser();   /* once, before threads use libxml2 */
	e->playlists = cache_new((size_t)e->cfg->playlist_cache_mb << 20);
	if (!e->playlists)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory for the playlist cache");
	return 0;
}

void playlists_fini(edged_t *e)
{
	cache_free(e->playlists);
	e->playlists = NULL;
}

void playlists_catalog_changed(edged_t *e, int64_t tenant, int64_t version)
{
	if (e->playlists)
		cache_catalog_changed(e->playlists, tenant, version);
}

void playlists_forget_all(edged_t *e)
{
	if (e->playlists)
		cache_events_down(e->playlists);
}

void playlists_events_ready(edged_t *e)
{
	if (e->playlists)
		cache_events_up(e->playlists);
}

/* ---- refusals: a short text, as players log it ---- */

static int reply_refused(edge_req_t *r, const edge_line_t *l)
{
	char ra[16];
	switch (l->outcome) {
	case EDGE_LOGIN_BAD:
		/* One answer for an unknown user and a wrong password. */
		return edge_reply_text(r, 403, "forbidden: wrong username or password");
	case EDGE_LOGIN_DENIED: {
		const char *t = fd_arena_printf(r->arena, "forbidden: %s", l->why);
		return edge_reply_text(r, 403, t ? t : "forbidden");
	}
	case EDGE_LOGIN_LIMITED:
		snprintf(ra, sizeof(ra), "%d", l->retry_after);
		edge_reply_header(r, "Retry-After", ra);
		return edge_reply_text(r, 429, "too many failed logins: try again later");
	default:
		snprintf(ra, sizeof(ra), "%d", l->retry_after);
		edge_reply_header(r, "Retry-After", ra);
		return edge_reply_text(r, 503, "temporarily unavailable: try again");
	}
}

/* ---- a growing buffer ---- */

typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
} sbuf_t;

static void sb_grow(sbuf_t *b, size_t more)
{
	if (b->oom || b->len + more <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
	sb_grow(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void sb_str(sbuf_t *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_i64(sbuf_t *b, int64_t v)
{
	char s[24];
	int n = snprintf(s, sizeof(s), "%" PRId64, v);
	sb_add(b, s, (size_t)n);
}

/* An M3U attribute's value: a '"' would end it, so it becomes '\'' (M3U
 * has no escape); control characters never reach here (the catalog
 * refuses them). */
static void sb_attr(sbuf_t *b, const char *s)
{
	size_t n = strlen(s);
	sb_grow(b, n);
	if (b->oom)
		return;
	for (size_t i = 0; i < n; i++)
		b->p[b->len + i] = s[i] == '"' ? '\'' : s[i];
	b->len += n;
}

/* A URL inside an attribute: '"' percent-encoded, which keeps it a URL. */
static void sb_attr_url(sbuf_t *b, const char *s)
{
	for (const char *p = s; *p;) {
		size_t n = strcspn(p, "\"");
		sb_add(b, p, n);
		p += n;
		if (*p == '"') {
			sb_add(b, "%22", 3);
			p++;
		}
	}
}

/* Percent-encodes all but RFC 3986's unreserved characters. */
static char *url_encode(fd_arena_t *a, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = fd_arena_alloc(a, n * 3 + 1), *o = out;
	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		    *p == '.' || *p == '_' || *p == '~') {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

/* The start of every URL written, checked: the port comes from the Host
 * header as sent, and nothing that could break a line or an attribute may
 * go into a playlist. NULL when it is not usable. */
static const char *checked_base(edge_req_t *r)
{
	const char *base = edge_base_url(r);
	if (!base[0])
		return NULL;
	for (const char *p = base; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		      strchr(":/.-_~[]", *p)))
			return NULL;
	return base;
}

/* ---- playlist templates ---- */

enum {
	SLOT_NONE,      /* the last part */
	SLOT_PATH,      /* "U/P" of /live/U/P/ID.ext */
	SLOT_QUERY,     /* "username=U&password=P" */
};

typedef struct part {
	uint32_t off, len;          /* of the text before the slot */
	uint8_t slot;
} part_t;

typedef struct tpl {
	edge_cval_t cv;
	char *text;
	size_t text_len;
	part_t *parts;
	size_t nparts, cap;
	size_t nslot[3];
} tpl_t;

static void tpl_destroy(edge_cval_t *v)
{
	tpl_t *t = (tpl_t *)v;
	free(t->text);
	free(t->parts);
	free(t);
}

typedef struct tpl_builder {
	sbuf_t sb;
	part_t *parts;
	size_t nparts, cap;
	size_t start;               /* of the part being written */
	size_t nslot[3];
	bool oom;
} tb_t;

static void tb_slot(tb_t *b, uint8_t slot)
{
	if (b->nparts == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		part_t *p = realloc(b->parts, cap * sizeof(*p));
		if (!p) {
			b->oom = true;
			return;
		}
		b->parts = p;
		b->cap = cap;
	}
	if (b->sb.len > UINT32_MAX) {
		b->oom = true;
		return;
	}
	b->parts[b->nparts++] = (part_t){ .off = (uint32_t)b->start, .len = (uint32_t)(b->sb.len - b->start), .slot = slot };
	b->start = b->sb.len;
	b->nslot[slot]++;
}

/* The playlist of cl for base URL and options, with slots for the line's
 * credentials. */
static tpl_t *render_m3u(const edge_chlist_t *cl, const char *base, bool plus, const char *ext)
{
	tb_t b = { 0 };
	sbuf_t *s = &b.sb;
	/* The guide of this brand, for players that read it from the header
	 * (Kodi reads both names). */
	sb_str(s, "#EXTM3U x-tvg-url=\"");
	sb_str(s, base);
	sb_str(s, "/xmltv.php?");
	tb_slot(&b, SLOT_QUERY);
	sb_str(s, "\" url-tvg=\"");
	sb_str(s, base);
	sb_str(s, "/xmltv.php?");
	tb_slot(&b, SLOT_QUERY);
	sb_str(s, "\"\r\n");
	for (size_t i = 0; i < cl->n && !s->oom && !b.oom; i++) {
		const edge_channel_t *ch = &cl->ch[i];
		if (plus) {
			sb_str(s, "#EXTINF:-1 tvg-id=\"");
			sb_attr(s, ch->epg_id);
			sb_str(s, "\" tvg-name=\"");
			sb_attr(s, ch->name);
			sb_str(s, "\" tvg-logo=\"");
			sb_attr_url(s, ch->logo);
			sb_str(s, "\" group-title=\"");
			sb_attr(s, ch->category);
			sb_str(s, "\",");
		} else {
			sb_str(s, "#EXTINF:-1,");
		}
		sb_str(s, ch->name);
		sb_str(s, "\r\n");
		sb_str(s, base);
		sb_str(s, "/live/");
		tb_slot(&b, SLOT_PATH);
		sb_str(s, "/");
		sb_i64(s, ch->stream_id);
		sb_str(s, ".");
		sb_str(s, ext);
		sb_str(s, "\r\n");
	}
	tb_slot(&b, SLOT_NONE);
	tpl_t *t = s->oom || b.oom ? NULL : calloc(1, sizeof(*t));
	if (!t) {
		free(s->p);
		free(b.parts);
		return NULL;
	}
	char *text = realloc(s->p, s->len ? s->len : 1);   /* kept for long: no slack */
	if (text)
		s->p = text;
	atomic_init(&t->cv.refs, 1);
	t->cv.tenant = cl->cv.tenant;
	t->cv.version = cl->cv.version;
	t->cv.destroy = tpl_destroy;
	t->cv.bytes = sizeof(*t) + s->len + b.cap * sizeof(part_t);
	t->text = s->p;
	t->text_len = s->len;
	t->parts = b.parts;
	t->nparts = b.nparts;
	memcpy(t->nslot, b.nslot, sizeof(t->nslot));
	return t;
}

/* The template with the credentials in its slots: malloc'd, *len set. */
static char *fill(const tpl_t *t, const char *u, const char *p, size_t *len)
{
	size_t un = strlen(u), pn = strlen(p);
	size_t path = un + 1 + pn, query = 9 + un + 10 + pn;   /* "username=" U "&password=" P */
	size_t total = t->text_len + t->nslot[SLOT_PATH] * path + t->nslot[SLOT_QUERY] * query;
	char *out = malloc(total ? total : 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < t->nparts; i++) {
		const part_t *pt = &t->parts[i];
		memcpy(o, t->text + pt->off, pt->len);
		o += pt->len;
		if (pt->slot == SLOT_PATH) {
			memcpy(o, u, un);
			o[un] = '/';
			memcpy(o + un + 1, p, pn);
			o += path;
		} else if (pt->slot == SLOT_QUERY) {
			memcpy(o, "username=", 9);
			memcpy(o + 9, u, un);
			memcpy(o + 9 + un, "&password=", 10);
			memcpy(o + 19 + un, p, pn);
			o += query;
		}
	}
	*len = (size_t)(o - out);
	return out;
}

int playlist_get(edge_req_t *r)
{
	const char *type = edge_arg(r, "type");
	const char *output = edge_arg(r, "output");
	bool plus;
	if (!type || !type[0] || strcmp(type, "m3u_plus") == 0) {
		plus = true;
	} else if (strcmp(type, "m3u") == 0) {
		plus = false;
	} else {
		const char *t = fd_arena_printf(r->arena, "type: \"%.64s\" is not m3u or m3u_plus", type);
		return edge_reply_text(r, 400, t ? t : "type: not m3u or m3u_plus");
	}
	const char *ext;
	unsigned need;
	if (!output || !output[0] || strcmp(output, "ts") == 0) {
		ext = "ts", need = EDGE_FMT_TS;
	} else if (strcmp(output, "m3u8") == 0 || strcmp(output, "hls") == 0) {
		ext = "m3u8", need = EDGE_FMT_M3U8;
	} else {
		const char *t = fd_arena_printf(r->arena, "output: \"%.64s\" is not ts, m3u8 or hls", output);
		return edge_reply_text(r, 400, t ? t : "output: not ts, m3u8 or hls");
	}
	const char *base = checked_base(r);
	if (!base)
		return edge_reply_text(r, 400, "Host: not usable in the playlist's URLs");
	edge_line_t l;
	channels_login(r, &l);
	if (l.outcome != EDGE_LOGIN_OK)
		return reply_refused(r, &l);
	if (!(l.formats & need)) {
		const char *t = fd_arena_printf(r->arena, "forbidden: output %s is not allowed for this line", output);
		return edge_reply_text(r, 403, t ? t : "forbidden: output not allowed for this line");
	}
	const char *u = url_encode(r->arena, l.username), *p = url_encode(r->arena, l.password);
	const char *key = fd_arena_printf(r->arena, "m|%d|%s|%s|%s", plus, ext, base, l.key);
	if (!u || !p || !key)
		return edge_reply_text(r, 500, "out of memory");
	tpl_t *t = (tpl_t *)cache_get(r->e, l.ticket, key);
	if (!t) {
		edge_chlist_t *cl;
		if (channels_get(r, &l, &cl) < 0)
			return reply_refused(r, &l);
		int64_t t0 = mono_us();
		t = render_m3u(cl, base, plus, ext);
		if (t) {
			fd_debug("playlist of %zu channels rendered in %" PRId64 " us", cl->n, mono_us() - t0);
			const char *k = fd_arena_printf(r->arena, "m|%d|%s|%s|%s", plus, ext, base, cl->key);
			if (k)
				cache_put(r->e, l.ticket, k, &t->cv);
		}
		cache_release(&cl->cv);
		if (!t)
			return edge_reply_text(r, 500, "out of memory");
	}
	size_t len = 0;
	int64_t t0 = mono_us();
	char *body = fill(t, u, p, &len);
	fd_debug("playlist of %zu bytes filled in %" PRId64 " us", len, mono_us() - t0);
	cache_release(&t->cv);
	if (!body)
		return edge_reply_text(r, 500, "out of memory");
	/* It carries the line's password: no shared cache may keep it. */
	edge_reply_header(r, "Cache-Control", "no-store");
	edge_reply_header(r, "Content-Disposition", "attachment; filename=\"playlist.m3u\"");
	return edge_reply_owned(r, 200, M3U_TYPE, body, len);
}

/* ---- XMLTV ---- */

/* A set of strings (channel ids already written), in the request's arena. */
typedef struct strset {
	const char **v;
	size_t cap;
} strset_t;

static bool strset_add(strset_t *s, const char *k)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *p = k; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		if (!s->v[i]) {
			s->v[i] = k;
			return true;
		}
		if (strcmp(s->v[i], k) == 0)
			return false;
	}
}

/* The XMLTV document of cl's channels (no programmes yet): one <channel>
 * per id (the first stream that has it names it). */
static edge_blob_t *render_xmltv(edge_req_t *r, const edge_chlist_t *cl)
{
	strset_t seen = { .cap = 16 };
	while (seen.cap < cl->n * 2)
		seen.cap *= 2;
	if (!(seen.v = fd_arena_zalloc(r->arena, seen.cap * sizeof(*seen.v))))
		return NULL;
	xmlBufferPtr buf = xmlBufferCreate();
	xmlTextWriterPtr w = buf ? xmlNewTextWriterMemory(buf, 0) : NULL;
	edge_blob_t *out = NULL;
	if (!w)
		goto done;
	int rc = 0;
	rc |= xmlTextWriterSetIndent(w, 1) < 0;
	rc |= xmlTextWriterSetIndentString(w, BAD_CAST "  ") < 0;
	rc |= xmlTextWriterStartDocument(w, "1.0", "UTF-8", NULL) < 0;
	rc |= xmlTextWriterStartElement(w, BAD_CAST "tv") < 0;
	rc |= xmlTextWriterWriteAttribute(w, BAD_CAST "generator-info-name", BAD_CAST "frontdesk") < 0;
	for (size_t i = 0; i < cl->n && !rc; i++) {
		const edge_channel_t *ch = &cl->ch[i];
		if (!strset_add(&seen, ch->epg_id))
			continue;
		rc |= xmlTextWriterStartElement(w, BAD_CAST "channel") < 0;
		rc |= xmlTextWriterWriteAttribute(w, BAD_CAST "id", BAD_CAST ch->epg_id) < 0;
		rc |= xmlTextWriterWriteElement(w, BAD_CAST "display-name", BAD_CAST ch->name) < 0;
		if (ch->logo[0]) {
			rc |= xmlTextWriterStartElement(w, BAD_CAST "icon") < 0;
			rc |= xmlTextWriterWriteAttribute(w, BAD_CAST "src", BAD_CAST ch->logo) < 0;
			rc |= xmlTextWriterEndElement(w) < 0;
		}
		rc |= xmlTextWriterEndElement(w) < 0;
	}
	rc |= xmlTextWriterEndDocument(w) < 0;
	xmlFreeTextWriter(w);   /* flushes into buf */
	if (!rc)
		out = cache_blob_new(cl->cv.tenant, cl->cv.version, (const char *)xmlBufferContent(buf),
		                     (size_t)xmlBufferLength(buf));
done:
	if (buf)
		xmlBufferFree(buf);
	return out;
}

int playlist_xmltv(edge_req_t *r)
{
	edge_line_t l;
	channels_login(r, &l);
	if (l.outcome != EDGE_LOGIN_OK)
		return reply_refused(r, &l);
	const char *key = fd_arena_printf(r->arena, "x|%s", l.key);
	if (!key)
		return edge_reply_text(r, 500, "out of memory");
	edge_blob_t *doc = (edge_blob_t *)cache_get(r->e, l.ticket, key);
	if (!doc) {
		edge_chlist_t *cl;
		if (channels_get(r, &l, &cl) < 0)
			return reply_refused(r, &l);
		doc = render_xmltv(r, cl);
		if (doc) {
			const char *k = fd_arena_printf(r->arena, "x|%s", cl->key);
			if (k)
				cache_put(r->e, l.ticket, k, &doc->cv);
		}
		cache_release(&cl->cv);
		if (!doc)
			return edge_reply_text(r, 500, "out of memory");
	}
	int rc = edge_reply_copy(r, 200, XML_TYPE, doc->data, doc->len);
	cache_release(&doc->cv);
	return rc;
}
