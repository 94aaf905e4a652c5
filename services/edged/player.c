/* player.c - player_api.php, the Xtream-compatible player API: the login
 * payload (also the answer to any action edged does not know), the live
 * categories and streams of the line, and the empty shapes of VOD, series
 * and EPG until those are served. Field names and JSON types are the ones
 * players parse (shared/notes/player-protocols.md). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "channels.h"
#include "http.h"
#include "fd/clock.h"
#include "fd/log.h"

#define RTMP_PORT "1935"

typedef int (*action_fn)(edge_req_t *r, edge_line_t *l);

/* Builds JSON without checking each step: every setter notes a failure. */
typedef struct jb {
	bool oom;
} jb_t;

static json_t *set(jb_t *b, json_t *o, const char *key, json_t *v)
{
	if (!o || !v || json_object_set_new(o, key, v) < 0)
		b->oom = true;
	return o;
}

static json_t *append(jb_t *b, json_t *a, json_t *v)
{
	if (!a || !v || json_array_append_new(a, v) < 0)
		b->oom = true;
	return a;
}

static json_t *str_i64(int64_t v)
{
	char s[24];
	snprintf(s, sizeof(s), "%" PRId64, v);
	return json_string(s);
}

static int reply_json(edge_req_t *r, jb_t *b, json_t *j)
{
	if (b->oom || !j) {
		json_decref(j);
		return edge_reply_text(r, 500, "out of memory");
	}
	return edge_reply_json(r, 200, j);
}

static int reply_const(edge_req_t *r, const char *json)
{
	return edge_reply_copy(r, 200, "application/json", json, strlen(json));
}

/* Unknown user, wrong password, nothing sent: one answer, HTTP 200 (players
 * show "wrong password"; a 4xx makes some client libraries throw). */
static int reply_bad_login(edge_req_t *r)
{
	return reply_const(r, "{\"user_info\":{\"auth\":0}}");
}

/* LIMITED or UNAVAILABLE: 429 or 503 with Retry-After. */
static int reply_later(edge_req_t *r, const edge_line_t *l)
{
	char ra[16];
	snprintf(ra, sizeof(ra), "%d", l->retry_after);
	edge_reply_header(r, "Retry-After", ra);
	if (l->outcome == EDGE_LOGIN_LIMITED)
		return edge_reply_text(r, 429, "too many failed logins: try again later");
	return edge_reply_text(r, 503, "temporarily unavailable: try again");
}

static int reply_blob(edge_req_t *r, const edge_blob_t *blob)
{
	return edge_reply_copy(r, 200, "application/json", blob->data, blob->len);
}

/* ---- the login payload ---- */

static json_t *output_formats(jb_t *b, unsigned formats)
{
	json_t *a = json_array();
	/* The order classic panels list them in; clients fall back to the first. */
	if (formats & EDGE_FMT_M3U8)
		append(b, a, json_string("m3u8"));
	if (formats & EDGE_FMT_TS)
		append(b, a, json_string("ts"));
	if (formats & EDGE_FMT_RTMP)
		append(b, a, json_string("rtmp"));
	return a;
}

static json_t *user_info(jb_t *b, const edge_line_t *l)
{
	const Frontdesk__V1__Line *line = l->line;
	json_t *u = json_object();
	set(b, u, "username", json_string(l->username));
	set(b, u, "password", json_string(l->password));
	set(b, u, "message", json_string(l->outcome == EDGE_LOGIN_OK ? "" : l->why));
	set(b, u, "auth", json_integer(1));
	set(b, u, "status", json_string(l->status));
	set(b, u, "exp_date", line->expires_at > 0 ? str_i64(line->expires_at) : json_null());
	set(b, u, "is_trial", json_string(line->trial ? "1" : "0"));
	set(b, u, "active_cons", str_i64(line->active_connections));
	set(b, u, "created_at", str_i64(line->created_at));
	set(b, u, "max_connections", str_i64(line->max_connections));
	set(b, u, "allowed_output_formats", output_formats(b, l->formats));
	return u;
}

/* Where the player reached this edge: host, port and scheme it used (never
 * a configured address: behind a proxy on another port that would break
 * players that rebuild URLs from it). */
static json_t *server_info(jb_t *b, edge_req_t *r)
{
	const char *host, *port;
	edge_host_port(r, &host, &port);
	int64_t now = fd_now_s();
	time_t t = (time_t)now;
	struct tm tm;
	char when[32];
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	json_t *s = json_object();
	set(b, s, "url", json_string(host));
	set(b, s, "port", json_string(port));
	set(b, s, "https_port", json_string(r->https ? port : "443"));
	set(b, s, "server_protocol", json_string(r->https ? "https" : "http"));
	set(b, s, "rtmp_port", json_string(RTMP_PORT));
	set(b, s, "timezone", json_string(r->e->cfg->timezone));
	set(b, s, "timestamp_now", json_integer(now));
	set(b, s, "time_now", json_string(when));
	return s;
}

static int login_payload(edge_req_t *r, edge_line_t *l)
{
	jb_t b = { 0 };
	json_t *j = json_object();
	set(&b, j, "user_info", user_info(&b, l));
	set(&b, j, "server_info", server_info(&b, r));
	/* It carries the password: no shared cache may keep it. */
	edge_reply_header(r, "Cache-Control", "no-store");
	return reply_json(r, &b, j);
}

/* ---- live categories and streams ---- */

static json_t *categories_json(jb_t *b, const edge_chlist_t *cl)
{
	json_t *a = json_array();
	for (size_t i = 0; i < cl->ncat; i++) {
		json_t *c = json_object();
		set(b, c, "category_id", str_i64(cl->cat[i].id));
		set(b, c, "category_name", json_string(cl->cat[i].name));
		set(b, c, "parent_id", json_integer(0));
		append(b, a, c);
	}
	return a;
}

static json_t *streams_json(jb_t *b, const edge_chlist_t *cl, bool filter, int64_t category)
{
	json_t *a = json_array();
	for (size_t i = 0; i < cl->n && !b->oom; i++) {
		const edge_channel_t *ch = &cl->ch[i];
		if (filter && ch->category_id != category)
			continue;
		json_t *s = json_object();
		set(b, s, "num", json_integer(ch->number ? ch->number : (json_int_t)(i + 1)));
		set(b, s, "name", json_string(ch->name));
		set(b, s, "stream_type", json_string("live"));
		set(b, s, "stream_id", json_integer(ch->stream_id));
		set(b, s, "stream_icon", json_string(ch->logo));
		set(b, s, "epg_channel_id", json_string(ch->epg_id));
		set(b, s, "added", str_i64(ch->added_at));
		set(b, s, "category_id", str_i64(ch->category_id));
		json_t *ids = json_array();
		if (ch->category_id)
			append(b, ids, json_integer(ch->category_id));
		set(b, s, "category_ids", ids);
		set(b, s, "custom_sid", json_string(""));
		set(b, s, "tv_archive", json_integer(0));
		/* Empty: a player plays direct_source instead of the edge's URL,
		 * and every play must go through the hand-off. */
		set(b, s, "direct_source", json_string(""));
		set(b, s, "tv_archive_duration", json_integer(0));
		set(b, s, "thumbnail", json_string(""));
		append(b, a, s);
	}
	return a;
}

/* category_id as players send it: digits; false for anything else. */
static bool parse_id(const char *s, int64_t *out)
{
	if (!s[0] || strlen(s) > 18)
		return false;
	int64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
	}
	*out = v;
	return true;
}

/* A live list: from the cache of rendered answers, or made from the line's
 * channels and cached (it holds no credentials). what: "cats" or
 * "streams". */
static int live_list(edge_req_t *r, edge_line_t *l, bool streams)
{
	if (l->outcome != EDGE_LOGIN_OK)
		return reply_const(r, "[]");
	const char *cat = streams ? edge_arg(r, "category_id") : NULL;
	bool filter = cat && cat[0];
	int64_t category = 0;
	if (filter && !parse_id(cat, &category))
		return reply_const(r, "[]");   /* no category has that id */
	const char *what = !streams ? "cats" : filter ? fd_arena_printf(r->arena, "streams=%" PRId64, category) : "streams";
	const char *key = what ? fd_arena_printf(r->arena, "j|%s|%s", what, l->key) : NULL;
	if (!key)
		return edge_reply_text(r, 500, "out of memory");
	edge_cval_t *hit = cache_get(r->e, l->ticket, key);
	if (hit) {
		int rc = reply_blob(r, (edge_blob_t *)hit);
		cache_release(hit);
		return rc;
	}
	edge_chlist_t *cl;
	if (channels_get(r, l, &cl) < 0) {
		if (l->outcome == EDGE_LOGIN_BAD)
			return reply_bad_login(r);
		if (l->outcome == EDGE_LOGIN_DENIED)
			return reply_const(r, "[]");
		return reply_later(r, l);
	}
	jb_t b = { 0 };
	json_t *j = streams ? streams_json(&b, cl, filter, category) : categories_json(&b, cl);
	char *text = !b.oom && j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	int rc;
	if (!text) {
		rc = edge_reply_text(r, 500, "out of memory");
	} else {
		edge_blob_t *blob = cache_blob_new(cl->cv.tenant, cl->cv.version, text, strlen(text));
		if (blob) {
			const char *k = fd_arena_printf(r->arena, "j|%s|%s", what, cl->key);
			if (k)
				cache_put(r->e, l->ticket, k, &blob->cv);
			cache_release(&blob->cv);
		}
		rc = edge_reply_owned(r, 200, "application/json", text, strlen(text));
	}
	cache_release(&cl->cv);
	return rc;
}

static int live_categories(edge_req_t *r, edge_line_t *l)
{
	return live_list(r, l, false);
}

static int live_streams(edge_req_t *r, edge_line_t *l)
{
	return live_list(r, l, true);
}

/* ---- what is not served yet: the shapes players expect when empty ---- */

static int empty_list(edge_req_t *r, edge_line_t *l)
{
	(void)l;
	return reply_const(r, "[]");
}

static int vod_info(edge_req_t *r, edge_line_t *l)
{
	(void)l;
	return reply_const(r, "{\"info\":[]}");   /* an unknown movie */
}

static int series_info(edge_req_t *r, edge_line_t *l)
{
	(void)l;
	/* All three keys: some players crash without seasons; an empty
	 * episodes is an object, never []. */
	return reply_const(r, "{\"seasons\":[],\"info\":{},\"episodes\":{}}");
}

static int epg(edge_req_t *r, edge_line_t *l)
{
	(void)l;
	return reply_const(r, "{\"epg_listings\":[]}");
}

static const struct {
	const char *name;
	action_fn fn;
} ACTIONS[] = {
	{ "get_live_categories", live_categories },
	{ "get_live_streams", live_streams },
	{ "get_vod_categories", empty_list },
	{ "get_vod_streams", empty_list },
	{ "get_series_categories", empty_list },
	{ "get_series", empty_list },
	{ "get_vod_info", vod_info },
	{ "get_series_info", series_info },
	{ "get_short_epg", epg },
	{ "get_simple_data_table", epg },
	{ NULL, NULL },
};

int player_api(edge_req_t *r)
{
	edge_line_t l;
	channels_login(r, &l);
	switch (l.outcome) {
	case EDGE_LOGIN_BAD:
		return reply_bad_login(r);
	case EDGE_LOGIN_LIMITED:
	case EDGE_LOGIN_UNAVAILABLE:
		return reply_later(r, &l);
	case EDGE_LOGIN_OK:
	case EDGE_LOGIN_DENIED:
		break;
	}
	const char *action = edge_arg(r, "action");
	if (action)
		for (int i = 0; ACTIONS[i].name; i++)
			if (strcmp(ACTIONS[i].name, action) == 0)
				return ACTIONS[i].fn(r, &l);
	/* No action, or one edged does not know (get_profile, get_server_info,
	 * ...): clients rely on panels answering those with the login payload. */
	return login_payload(r, &l);
}
