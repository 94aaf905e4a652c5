/* rules.c - the tenants' and lines' rules linesd keeps in memory for
 * AuthorizePlayback (the model and its guarantees: rules.h). */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "linesd.h"
#include "rules.h"
#include "store.h"
#include "fd/clock.h"
#include "fd/log.h"
#include "fd/tenant.h"

#define TENANT_BUCKETS 4096          /* generations, by tenant */
#define TENANT_MAX 65536             /* tenants kept, at most */
#define LINE_SHARDS 64
#define MAX_BLOCKS 1024              /* failure keys over the limit kept per tenant; more: not kept */

/* ---- the tenants ---- */

typedef struct block {
	bool user;                   /* 'u:' (username, source), else 'a:' (source) */
	char *username;
	int family;
	unsigned char src[16];
	int64_t until_s;
} block_t;

typedef struct tslot {
	struct tslot *next;          /* hash chain */
	int64_t tenant;
	bool active, end_oldest;
	char *paths;
	block_t *blocks;
	size_t n_blocks;
} tslot_t;

/* ---- the lines ---- */

typedef struct cidr {
	int family, bits;
	unsigned char a[16];
} cidr_t;

/* A session this replica opened or reused on the line, and the answer it
 * gave (packed, without the line): the same request again (address, user
 * agent, stream, format, client session key) is answered from memory while
 * nothing was announced for the line since and its tenant bucket's
 * generation is the one read before the database confirmed it. */
#define REOPEN_SLOTS 4

typedef struct rslot {
	int64_t session, stream;
	int format, family;
	unsigned char a[16];
	char *ua, *client_key;
	uint64_t tgen;
	int64_t live;
	unsigned char *answer;
	size_t answer_len;
} rslot_t;

typedef struct lentry {
	struct lentry *next;                 /* hash chain */
	struct lentry *older, *newer;        /* use order */
	uint64_t hash;
	int64_t tenant;
	char *username;
	unsigned char pw_hash[32];
	int64_t line_id, reseller_id, rev, expires_at, bandwidth_cap_kbps;
	int32_t max_connections;
	char *path;
	cidr_t *ips;
	size_t n_ips;
	char **uas;
	size_t n_uas;
	int *formats;
	size_t n_formats;
	char *bouquets;                      /* "{1,2}" */
	unsigned char *message;
	size_t message_len;
	rslot_t reopen[REOPEN_SLOTS];        /* sessions the same client may reopen from memory */
	unsigned next_slot;                  /* the one replaced next when all are taken */
} lentry_t;

typedef struct lshard {
	pthread_mutex_t mu;
	lentry_t **table;
	size_t cap, n;                       /* cap a power of two */
	lentry_t *oldest, *newest;
	uint64_t gen;                        /* lines dropped for a change (stale, 104), also when not held */
} lshard_t;

struct linesd_rules {
	pthread_mutex_t mu;                  /* the tenants */
	tslot_t **tenants;                   /* TENANT_BUCKETS chains */
	size_t n_tenants;
	_Atomic uint64_t gen[TENANT_BUCKETS];
	_Atomic uint64_t sgen[TENANT_BUCKETS];   /* suspensions heard, by tenant bucket */
	lshard_t shards[LINE_SHARDS];
	size_t max_per_shard;
	unsigned char hash_key[16];
	_Atomic uint64_t line_hits, line_misses, tenant_hits, tenant_reads;
	/* the preload's thread */
	pthread_t preload;
	bool preload_started;
	atomic_bool preload_stop;
	_Atomic uint64_t preloaded, reopened;
};

static size_t tbucket(int64_t tenant)
{
	return (size_t)((uint64_t)tenant * 0x9E3779B97F4A7C15ull >> 52) % TENANT_BUCKETS;
}

static void tslot_free(tslot_t *s)
{
	for (size_t i = 0; i < s->n_blocks; i++)
		free(s->blocks[i].username);
	free(s->blocks);
	free(s->paths);
	free(s);
}

static void rslot_clear(rslot_t *x)
{
	free(x->ua);
	free(x->client_key);
	free(x->answer);
	memset(x, 0, sizeof(*x));
}

static void lentry_free(lentry_t *e)
{
	if (!e)
		return;
	free(e->username);
	free(e->path);
	free(e->ips);
	for (size_t i = 0; i < e->n_uas; i++)
		free(e->uas[i]);
	free(e->uas);
	free(e->formats);
	free(e->bouquets);
	free(e->message);
	for (int i = 0; i < REOPEN_SLOTS; i++)
		rslot_clear(&e->reopen[i]);
	sodium_memzero(e->pw_hash, sizeof(e->pw_hash));
	free(e);
}

int rules_init(linesd_t *l, size_t max_lines, fd_err_t *err)
{
	struct linesd_rules *r = calloc(1, sizeof(*r));
	if (!r || !(r->tenants = calloc(TENANT_BUCKETS, sizeof(*r->tenants)))) {
		free(r);
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	}
	pthread_mutex_init(&r->mu, NULL);
	for (int i = 0; i < LINE_SHARDS; i++)
		pthread_mutex_init(&r->shards[i].mu, NULL);
	r->max_per_shard = (max_lines + LINE_SHARDS - 1) / LINE_SHARDS;
	randombytes_buf(r->hash_key, sizeof(r->hash_key));
	l->rules = r;
	return 0;
}

static void forget_tenants_locked(struct linesd_rules *r)
{
	for (size_t b = 0; b < TENANT_BUCKETS; b++) {
		while (r->tenants[b]) {
			tslot_t *s = r->tenants[b];
			r->tenants[b] = s->next;
			tslot_free(s);
		}
		atomic_fetch_add(&r->gen[b], 1);
	}
	r->n_tenants = 0;
}

void rules_fini(linesd_t *l)
{
	struct linesd_rules *r = l ? l->rules : NULL;
	if (!r)
		return;
	forget_tenants_locked(r);
	free(r->tenants);
	for (int i = 0; i < LINE_SHARDS; i++) {
		lshard_t *sh = &r->shards[i];
		for (lentry_t *e = sh->oldest, *n; e; e = n) {
			n = e->newer;
			lentry_free(e);
		}
		free(sh->table);
		pthread_mutex_destroy(&sh->mu);
	}
	pthread_mutex_destroy(&r->mu);
	free(r);
	l->rules = NULL;
}

/* ---- addresses ---- */

void rules_addr_parse(const char *ip, rules_addr_t *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, ip, out->a) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, ip, out->a) == 1)
		out->family = AF_INET6;
	else
		return;
	/* The failure key's source (0017_edge_lines.sql): IPv4 as it is, also
	 * written IPv4-mapped; an IPv6 address's /64. */
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (out->family == AF_INET) {
		out->src_family = AF_INET;
		memcpy(out->src, out->a, 4);
	} else if (memcmp(out->a, mapped, 12) == 0) {
		out->src_family = AF_INET;
		memcpy(out->src, out->a + 12, 4);
	} else {
		out->src_family = AF_INET6;
		memcpy(out->src, out->a, 8);
	}
}

/* A failure key's source as PostgreSQL wrote it ("1.2.3.4", "2001:db8::/64"). */
static bool parse_source(const char *s, size_t n, int *family, unsigned char out[16])
{
	char buf[64];
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	char *slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	memset(out, 0, 16);
	if (inet_pton(AF_INET, buf, out) == 1) {
		*family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, buf, out) == 1) {
		*family = AF_INET6;
		memset(out + 8, 0, 8);
		return true;
	}
	return false;
}

/* key: "u:<username>|<source>" or "a:<source>" (0017_edge_lines.sql). */
static bool parse_key(const char *key, block_t *b)
{
	memset(b, 0, sizeof(*b));
	if (strncmp(key, "a:", 2) == 0)
		return parse_source(key + 2, strlen(key + 2), &b->family, b->src);
	if (strncmp(key, "u:", 2) != 0)
		return false;
	const char *bar = strrchr(key, '|');
	if (!bar || bar < key + 2)
		return false;
	if (!parse_source(bar + 1, strlen(bar + 1), &b->family, b->src))
		return false;
	b->user = true;
	return (b->username = strndup(key + 2, (size_t)(bar - key - 2))) != NULL;
}

static bool block_matches(const block_t *b, const char *username, const rules_addr_t *addr, int64_t now_s)
{
	if (b->until_s <= now_s || b->family != addr->src_family ||
	    memcmp(b->src, addr->src, b->family == AF_INET ? 4 : 8) != 0)
		return false;
	return !b->user || (username && strcmp(b->username, username) == 0);
}

/* ---- the tenants ---- */

static tslot_t *tslot_find_locked(struct linesd_rules *r, int64_t tenant)
{
	for (tslot_t *s = r->tenants[tbucket(tenant)]; s; s = s->next)
		if (s->tenant == tenant)
			return s;
	return NULL;
}

static void tslot_drop_locked(struct linesd_rules *r, int64_t tenant)
{
	tslot_t **p = &r->tenants[tbucket(tenant)];
	while (*p) {
		if ((*p)->tenant == tenant) {
			tslot_t *s = *p;
			*p = s->next;
			tslot_free(s);
			r->n_tenants--;
			return;
		}
		p = &(*p)->next;
	}
}

/* Whether the key (failures in the window starting at start_s) is over its limit. */
static int64_t block_until(const linesd_t *l, bool user, int64_t start_s, int64_t failures)
{
	int64_t max = user ? l->cfg->fail_max_user : l->cfg->fail_max_ip;
	return failures >= max ? start_s + l->cfg->fail_window : 0;
}

static bool slot_add_block(tslot_t *s, block_t *b)
{
	for (size_t i = 0; i < s->n_blocks; i++) {
		block_t *o = &s->blocks[i];
		if (o->user == b->user && o->family == b->family && memcmp(o->src, b->src, 16) == 0 &&
		    (!b->user || strcmp(o->username, b->username) == 0)) {
			if (b->until_s > o->until_s)
				o->until_s = b->until_s;
			free(b->username);
			return true;
		}
	}
	if (s->n_blocks >= MAX_BLOCKS)
		return false;
	block_t *nb = realloc(s->blocks, (s->n_blocks + 1) * sizeof(*nb));
	if (!nb)
		return false;
	s->blocks = nb;
	s->blocks[s->n_blocks++] = *b;
	return true;
}

typedef struct tenant_q {
	linesd_t *l;
	const char *params[4];
	tslot_t *slot;               /* malloc'd */
	bool keep;                   /* every block fitted */
} tenant_q_t;

static int tenant_tx(fd_tx_t *tx, void *arg)
{
	tenant_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_TENANT_RULES, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	tslot_t *s = q->slot;
	if (PQntuples(res) < 1 || PQgetisnull(res, 0, 0))
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "tenant %" PRId64 " not found", s->tenant);
	s->active = strcmp(PQgetvalue(res, 0, 0), "active") == 0;
	s->end_oldest = col_bool(res, 0, 1);
	free(s->paths);
	if (!(s->paths = strdup(PQgetvalue(res, 0, 2))))
		return TX_OOM(tx);
	q->keep = true;
	int64_t now = fd_now_s();
	for (int i = 0; i < PQntuples(res); i++) {
		if (PQgetisnull(res, i, 3))
			continue;
		block_t b;
		if (!parse_key(PQgetvalue(res, i, 3), &b)) {
			q->keep = false;      /* a key this code cannot read: ask every time */
			continue;
		}
		b.until_s = block_until(q->l, b.user, col_i64(res, i, 4), col_i64(res, i, 5));
		if (b.until_s <= now || !slot_add_block(s, &b)) {
			q->keep = q->keep && b.until_s <= now;
			free(b.username);
		}
	}
	return 0;
}

static bool tslot_blocked(const tslot_t *s, const char *username, const rules_addr_t *addr, int64_t now_s)
{
	for (size_t i = 0; i < s->n_blocks; i++)
		if (block_matches(&s->blocks[i], username, addr, now_s))
			return true;
	return false;
}

int rules_tenant(const fd_tctx_t *t, linesd_t *l, const char *username, const rules_addr_t *addr,
                 rules_tenant_t *out)
{
	struct linesd_rules *r = l->rules;
	fd_arena_t *a = t->arena;
	int64_t now = fd_now_s();
	memset(out, 0, sizeof(*out));
	bool listening = events_listening(l);
	if (listening) {
		pthread_mutex_lock(&r->mu);
		tslot_t *s = tslot_find_locked(r, t->tenant);
		if (s) {
			out->active = s->active;
			out->end_oldest = s->end_oldest;
			out->paths = fd_arena_strdup(a, s->paths);
			out->blocked = addr && tslot_blocked(s, username, addr, now);
			out->cached = true;
		}
		pthread_mutex_unlock(&r->mu);
		if (out->cached) {
			atomic_fetch_add(&r->tenant_hits, 1);
			return out->paths ? 0 : OOM(t->call);
		}
	}
	atomic_fetch_add(&r->tenant_reads, 1);
	size_t b = tbucket(t->tenant);
	uint64_t gen = atomic_load(&r->gen[b]);
	char window[24], max_user[24], max_ip[24];
	snprintf(window, sizeof(window), "%" PRId64, l->cfg->fail_window);
	snprintf(max_user, sizeof(max_user), "%" PRId64, l->cfg->fail_max_user);
	snprintf(max_ip, sizeof(max_ip), "%" PRId64, l->cfg->fail_max_ip);
	tenant_q_t q = { .l = l, .params = { t->tenant_s, window, max_user, max_ip } };
	if (!(q.slot = calloc(1, sizeof(*q.slot))))
		return OOM(t->call);
	q.slot->tenant = t->tenant;
	static const fd_tx_opts_t ro = { .read_only = true };
	int rc = fd_tctx_run(t, l->db, &ro, tenant_tx, &q);
	if (rc < 0) {
		tslot_free(q.slot);
		return rc;
	}
	tslot_t *s = q.slot;
	out->active = s->active;
	out->end_oldest = s->end_oldest;
	out->paths = fd_arena_strdup(a, s->paths);
	out->blocked = addr && tslot_blocked(s, username, addr, now);
	/* Kept only if no notification of its bucket came meanwhile (it may
	 * have been about what was just read, before or after the read). */
	bool kept = false;
	if (q.keep && listening) {
		pthread_mutex_lock(&r->mu);
		if (atomic_load(&r->gen[b]) == gen && events_listening(l) && r->n_tenants < TENANT_MAX) {
			tslot_drop_locked(r, t->tenant);
			s->next = r->tenants[b];
			r->tenants[b] = s;
			r->n_tenants++;
			kept = true;
		}
		pthread_mutex_unlock(&r->mu);
	}
	if (!kept)
		tslot_free(s);
	return out->paths ? 0 : OOM(t->call);
}

/* ---- the lines ---- */

static uint64_t line_hash(const struct linesd_rules *r, int64_t tenant, const char *username)
{
	unsigned char buf[8 + 65];
	size_t n = strlen(username);
	if (n > 64)
		n = 64;
	memcpy(buf, &tenant, 8);
	memcpy(buf + 8, username, n);
	unsigned char out[crypto_shorthash_BYTES];
	crypto_shorthash(out, buf, 8 + n, r->hash_key);
	uint64_t h;
	memcpy(&h, out, sizeof(h));
	return h;
}

static lshard_t *shard_of(struct linesd_rules *r, uint64_t h)
{
	return &r->shards[h % LINE_SHARDS];
}

static lentry_t **slot_of(lshard_t *sh, uint64_t h)
{
	return &sh->table[(h / LINE_SHARDS) & (sh->cap - 1)];
}

static lentry_t *find_locked(lshard_t *sh, uint64_t h, int64_t tenant, const char *username)
{
	if (!sh->cap)
		return NULL;
	for (lentry_t *e = *slot_of(sh, h); e; e = e->next)
		if (e->hash == h && e->tenant == tenant && strcmp(e->username, username) == 0)
			return e;
	return NULL;
}

static void unlink_use(lshard_t *sh, lentry_t *e)
{
	if (e->older)
		e->older->newer = e->newer;
	else
		sh->oldest = e->newer;
	if (e->newer)
		e->newer->older = e->older;
	else
		sh->newest = e->older;
	e->older = e->newer = NULL;
}

static void link_newest(lshard_t *sh, lentry_t *e)
{
	e->older = sh->newest;
	e->newer = NULL;
	if (sh->newest)
		sh->newest->newer = e;
	else
		sh->oldest = e;
	sh->newest = e;
}

static void remove_locked(lshard_t *sh, lentry_t *e)
{
	for (lentry_t **p = slot_of(sh, e->hash); *p; p = &(*p)->next) {
		if (*p == e) {
			*p = e->next;
			break;
		}
	}
	unlink_use(sh, e);
	sh->n--;
	lentry_free(e);
}

static bool grow_locked(lshard_t *sh)
{
	size_t cap = sh->cap ? sh->cap * 2 : 64;
	lentry_t **t = calloc(cap, sizeof(*t));
	if (!t)
		return false;
	lentry_t **old = sh->table;
	size_t ocap = sh->cap;
	sh->table = t;
	sh->cap = cap;
	for (size_t i = 0; i < ocap; i++) {
		for (lentry_t *e = old[i], *n; e; e = n) {
			n = e->next;
			lentry_t **s = slot_of(sh, e->hash);
			e->next = *s;
			*s = e;
		}
	}
	free(old);
	return true;
}

static bool cidr_contains(const cidr_t *c, const rules_addr_t *addr)
{
	if (c->family != addr->family)
		return false;
	int full = c->bits / 8, rest = c->bits % 8;
	if (memcmp(c->a, addr->a, (size_t)full) != 0)
		return false;
	if (!rest)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (c->a[full] & mask) == (addr->a[full] & mask);
}

/* paths: a text[] of LIKE prefixes without quoting ("{1.5.%,2.%}"). */
static bool path_suspended(const char *paths, const char *path)
{
	const char *p = paths;
	if (*p == '{')
		p++;
	while (*p && *p != '}') {
		const char *end = p + strcspn(p, ",}");
		size_t n = (size_t)(end - p);
		if (n && p[n - 1] == '%')
			n--;
		if (memchr(p, '"', (size_t)(end - p)) || memchr(p, '_', n) || memchr(p, '%', n))
			return true;          /* not the plain form it is made in: let SQL decide */
		if (strncmp(path, p, n) == 0)
			return true;
		p = *end == ',' ? end + 1 : end;
	}
	return false;
}

/* The entry of (tenant, username) when its rules allow this request (shard
 * lock held); it becomes the most recently used. */
static lentry_t *allowed_locked(lshard_t *sh, uint64_t h, int64_t tenant, const char *username,
                                const unsigned char pw_hash[32], const rules_addr_t *addr, const char *ua,
                                int format, int64_t now_s, const char *paths)
{
	lentry_t *e = find_locked(sh, h, tenant, username);
	if (!e)
		return NULL;
	unlink_use(sh, e);
	link_newest(sh, e);
	if (sodium_memcmp(e->pw_hash, pw_hash, 32) != 0 || e->expires_at <= now_s || path_suspended(paths, e->path))
		return NULL;
	if (e->n_ips) {
		bool in = false;
		for (size_t i = 0; i < e->n_ips && !in; i++)
			in = cidr_contains(&e->ips[i], addr);
		if (!in)
			return NULL;
	}
	if (e->n_uas) {
		bool in = false;
		for (size_t i = 0; i < e->n_uas && !in; i++)
			in = strcmp(e->uas[i], ua) == 0;
		if (!in)
			return NULL;
	}
	if (format && e->n_formats) {
		bool in = false;
		for (size_t i = 0; i < e->n_formats && !in; i++)
			in = e->formats[i] == format;
		if (!in)
			return NULL;
	}
	return e;
}

/* hit from e, in a. */
static bool hit_of(fd_arena_t *a, const lentry_t *e, rules_hit_t *hit)
{
	unsigned char *msg = fd_arena_alloc(a, e->message_len ? e->message_len : 1);
	const char *bq = fd_arena_strdup(a, e->bouquets);
	if (!msg || !bq)
		return false;
	memcpy(msg, e->message, e->message_len);
	*hit = (rules_hit_t){ .line_id = e->line_id, .reseller_id = e->reseller_id, .rev = e->rev,
		                  .expires_at = e->expires_at, .bandwidth_cap_kbps = e->bandwidth_cap_kbps,
		                  .max_connections = e->max_connections, .bouquets = bq, .message = msg,
		                  .message_len = e->message_len };
	return true;
}

bool rules_line(linesd_t *l, fd_arena_t *a, int64_t tenant, const char *username, const unsigned char pw_hash[32],
                const rules_addr_t *addr, const char *ua, int format, int64_t now_s, const char *paths,
                rules_hit_t *hit)
{
	struct linesd_rules *r = l->rules;
	if (!r->max_per_shard || !addr->family)
		return false;
	uint64_t h = line_hash(r, tenant, username);
	lshard_t *sh = shard_of(r, h);
	pthread_mutex_lock(&sh->mu);
	lentry_t *e = allowed_locked(sh, h, tenant, username, pw_hash, addr, ua, format, now_s, paths);
	bool ok = e && hit_of(a, e, hit);
	pthread_mutex_unlock(&sh->mu);
	atomic_fetch_add(ok ? &r->line_hits : &r->line_misses, 1);
	return ok;
}

/* ---- sessions reopened from memory ---- */

uint64_t rules_suspensions(linesd_t *l, int64_t tenant)
{
	return atomic_load(&l->rules->sgen[tbucket(tenant)]);
}

rules_gen_t rules_gen(linesd_t *l, int64_t tenant, const char *username)
{
	struct linesd_rules *r = l->rules;
	rules_gen_t g = { .tenant = atomic_load(&r->gen[tbucket(tenant)]) };
	if (!r->max_per_shard)
		return g;
	lshard_t *sh = shard_of(r, line_hash(r, tenant, username));
	pthread_mutex_lock(&sh->mu);
	g.line = sh->gen;
	pthread_mutex_unlock(&sh->mu);
	return g;
}

static bool slot_matches(const rslot_t *x, const rules_reopen_t *k)
{
	return x->session && x->stream == k->stream && x->format == k->format && x->family == k->addr->family &&
	       memcmp(x->a, k->addr->a, sizeof(x->a)) == 0 && strcmp(x->ua, k->ua) == 0 &&
	       strcmp(x->client_key, k->client_key) == 0;
}

/* Keeps k in e (shard lock held): its own slot when the request is there,
 * else a free one, else the next in turn. */
static void slot_keep_locked(lentry_t *e, uint64_t tgen, const rules_reopen_t *k)
{
	rslot_t *x = NULL;
	for (int i = 0; i < REOPEN_SLOTS && !x; i++)
		if (slot_matches(&e->reopen[i], k))
			x = &e->reopen[i];
	for (int i = 0; i < REOPEN_SLOTS && !x; i++)
		if (!e->reopen[i].session)
			x = &e->reopen[i];
	if (!x)
		x = &e->reopen[e->next_slot++ % REOPEN_SLOTS];
	rslot_clear(x);
	rslot_t v = { .session = k->session, .stream = k->stream, .format = k->format, .family = k->addr->family,
		          .tgen = tgen, .live = k->live, .ua = strdup(k->ua), .client_key = strdup(k->client_key),
		          .answer = malloc(k->answer_len ? k->answer_len : 1), .answer_len = k->answer_len };
	memcpy(v.a, k->addr->a, sizeof(v.a));
	if (!v.ua || !v.client_key || !v.answer) {
		rslot_clear(&v);
		return;
	}
	memcpy(v.answer, k->answer, k->answer_len);
	*x = v;
}

void rules_reopen_put(linesd_t *l, int64_t tenant, const char *username, int64_t rev, rules_gen_t gen,
                      const rules_reopen_t *k)
{
	struct linesd_rules *r = l->rules;
	if (!r->max_per_shard || !k->addr->family)
		return;
	uint64_t h = line_hash(r, tenant, username);
	lshard_t *sh = shard_of(r, h);
	pthread_mutex_lock(&sh->mu);
	lentry_t *e = find_locked(sh, h, tenant, username);
	if (e && e->rev == rev && sh->gen == gen.line)
		slot_keep_locked(e, gen.tenant, k);
	pthread_mutex_unlock(&sh->mu);
}

bool rules_reopen(linesd_t *l, fd_arena_t *a, int64_t tenant, const char *username, const unsigned char pw_hash[32],
                  const rules_reopen_t *k, int64_t now_s, const char *paths, rules_hit_t *hit,
                  rules_reopened_t *out)
{
	struct linesd_rules *r = l->rules;
	if (!r->max_per_shard || !k->addr->family)
		return false;
	uint64_t tgen = atomic_load(&r->gen[tbucket(tenant)]);
	uint64_t h = line_hash(r, tenant, username);
	lshard_t *sh = shard_of(r, h);
	bool ok = false;
	pthread_mutex_lock(&sh->mu);
	lentry_t *e = allowed_locked(sh, h, tenant, username, pw_hash, k->addr, k->ua, k->format, now_s, paths);
	for (int i = 0; e && !ok && i < REOPEN_SLOTS; i++) {
		const rslot_t *x = &e->reopen[i];
		if (!slot_matches(x, k) || x->tgen != tgen || !hit_of(a, e, hit))
			continue;
		unsigned char *ans = fd_arena_alloc(a, x->answer_len ? x->answer_len : 1);
		if (!ans)
			break;
		memcpy(ans, x->answer, x->answer_len);
		*out = (rules_reopened_t){ .session = x->session, .live = x->live, .answer = ans,
			                       .answer_len = x->answer_len };
		ok = true;
	}
	pthread_mutex_unlock(&sh->mu);
	if (ok)
		atomic_fetch_add(&r->reopened, 1);
	return ok;
}

static bool parse_cidr(const char *s, cidr_t *c)
{
	char buf[64];
	size_t n = strlen(s);
	if (n >= sizeof(buf))
		return false;
	memcpy(buf, s, n + 1);
	char *slash = strchr(buf, '/');
	int bits = -1;
	if (slash) {
		*slash = '\0';
		char *end;
		long v = strtol(slash + 1, &end, 10);
		if (*end || v < 0 || v > 128)
			return false;
		bits = (int)v;
	}
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, buf, c->a) == 1)
		c->family = AF_INET;
	else if (inet_pton(AF_INET6, buf, c->a) == 1)
		c->family = AF_INET6;
	else
		return false;
	int max = c->family == AF_INET ? 32 : 128;
	c->bits = bits < 0 ? max : bits;
	return c->bits <= max;
}

/* The entry of m, or NULL (out of memory, or a rule this code cannot hold). */
static lentry_t *entry_of(int64_t tenant, const Frontdesk__V1__Line *m, int64_t rev, const char *path,
                          const unsigned char pw_hash[32])
{
	lentry_t *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->tenant = tenant;
	e->line_id = m->id;
	e->reseller_id = m->reseller_id;
	e->rev = rev;
	e->expires_at = m->expires_at;
	e->bandwidth_cap_kbps = m->bandwidth_cap_kbps;
	e->max_connections = m->max_connections;
	memcpy(e->pw_hash, pw_hash, 32);
	if (!(e->username = strdup(m->username)) || !(e->path = strdup(path)))
		goto fail;
	if (m->n_allowed_ips && !(e->ips = calloc(m->n_allowed_ips, sizeof(*e->ips))))
		goto fail;
	for (size_t i = 0; i < m->n_allowed_ips; i++)
		if (!parse_cidr(m->allowed_ips[i], &e->ips[e->n_ips++]))
			goto fail;
	if (m->n_allowed_user_agents && !(e->uas = calloc(m->n_allowed_user_agents, sizeof(*e->uas))))
		goto fail;
	for (size_t i = 0; i < m->n_allowed_user_agents; i++)
		if (!(e->uas[e->n_uas++] = strdup(m->allowed_user_agents[i])))
			goto fail;
	if (m->n_allowed_output_formats && !(e->formats = calloc(m->n_allowed_output_formats, sizeof(int))))
		goto fail;
	for (size_t i = 0; i < m->n_allowed_output_formats; i++)
		e->formats[e->n_formats++] = (int)m->allowed_output_formats[i];
	size_t cap = 3 + m->n_bouquet_ids * 21;
	if (!(e->bouquets = malloc(cap)))
		goto fail;
	size_t off = 0;
	e->bouquets[off++] = '{';
	for (size_t i = 0; i < m->n_bouquet_ids; i++)
		off += (size_t)snprintf(e->bouquets + off, cap - off, "%s%" PRId64, i ? "," : "", m->bouquet_ids[i]);
	e->bouquets[off++] = '}';
	e->bouquets[off] = '\0';
	e->message_len = protobuf_c_message_get_packed_size(&m->base);
	if (!(e->message = malloc(e->message_len ? e->message_len : 1)))
		goto fail;
	protobuf_c_message_pack(&m->base, e->message);
	return e;
fail:
	lentry_free(e);
	return NULL;
}

void rules_line_put(linesd_t *l, int64_t tenant, const Frontdesk__V1__Line *m, int64_t rev, const char *path,
                    const unsigned char pw_hash[32])
{
	struct linesd_rules *r = l->rules;
	if (!r->max_per_shard)
		return;
	lentry_t *e = entry_of(tenant, m, rev, path, pw_hash);
	if (!e)
		return;
	e->hash = line_hash(r, tenant, e->username);
	lshard_t *sh = shard_of(r, e->hash);
	pthread_mutex_lock(&sh->mu);
	lentry_t *old = find_locked(sh, e->hash, tenant, e->username);
	if (old && old->rev > rev) {
		/* A newer rev is held already: this read is the older one. */
		pthread_mutex_unlock(&sh->mu);
		lentry_free(e);
		return;
	}
	if (old)
		remove_locked(sh, old);
	while (sh->n >= r->max_per_shard && sh->oldest)
		remove_locked(sh, sh->oldest);
	if ((sh->n + 1) * 4 > sh->cap * 3 && !grow_locked(sh)) {
		pthread_mutex_unlock(&sh->mu);
		lentry_free(e);
		return;
	}
	lentry_t **s = slot_of(sh, e->hash);
	e->next = *s;
	*s = e;
	link_newest(sh, e);
	sh->n++;
	pthread_mutex_unlock(&sh->mu);
}

/* Forgets (tenant, username) when held at a rev below rev (-1: whatever it
 * is held at); a read of the line in flight is not kept for reopens in any
 * case (the shard's generation). */
static void line_drop_below(linesd_t *l, int64_t tenant, const char *username, int64_t rev)
{
	struct linesd_rules *r = l->rules;
	if (!r->max_per_shard)
		return;
	uint64_t h = line_hash(r, tenant, username);
	lshard_t *sh = shard_of(r, h);
	pthread_mutex_lock(&sh->mu);
	lentry_t *e = find_locked(sh, h, tenant, username);
	if (e && (rev < 0 || e->rev < rev))
		remove_locked(sh, e);
	sh->gen++;
	pthread_mutex_unlock(&sh->mu);
}

void rules_line_drop(linesd_t *l, int64_t tenant, const char *username)
{
	line_drop_below(l, tenant, username, -1);
}

/* ---- notifications ---- */

void rules_on_event(linesd_t *l, const events_notice_t *n)
{
	struct linesd_rules *r = l->rules;
	if (!r)
		return;
	switch (n->type) {
	case NOTIFY_FAILURE_COUNTED: {
		size_t b = tbucket(n->tenant);
		pthread_mutex_lock(&r->mu);
		atomic_fetch_add(&r->gen[b], 1);
		tslot_t *s = tslot_find_locked(r, n->tenant);
		block_t blk;
		if (s && n->key && parse_key(n->key, &blk)) {
			blk.until_s = block_until(l, blk.user, n->session_id, n->last);
			if (blk.until_s > fd_now_s()) {
				if (!slot_add_block(s, &blk))
					tslot_drop_locked(r, n->tenant);   /* too many to keep: read every time */
			} else {
				free(blk.username);
			}
		} else if (s) {
			tslot_drop_locked(r, n->tenant);
		}
		pthread_mutex_unlock(&r->mu);
		return;
	}
	case NOTIFY_LINE_REV:
		/* Changed (to rev n->session_id) or deleted (-1): forgotten when
		 * held at an older rev (its reopened sessions too), so that the
		 * next authorization asks PostgreSQL. A notice of the change the
		 * held rev already has (a line cached just after its change) keeps
		 * it. */
		if (n->key)
			line_drop_below(l, n->tenant, n->key, n->session_id);
		return;
	case NOTIFY_CATALOG_CHANGED:
		/* A stream left a bouquet or was disabled: no session of the
		 * tenant is reopened from memory until the database says again. */
		atomic_fetch_add(&r->gen[tbucket(n->tenant)], 1);
		return;
	case NOTIFY_TENANT_SUSPENDED:
	case NOTIFY_ACCOUNT_SUSPENDED:
		atomic_fetch_add(&r->sgen[tbucket(n->tenant)], 1);
		/* fall through */
	case NOTIFY_TENANT_REACTIVATED:
	case NOTIFY_ACCOUNT_REACTIVATED:
	case NOTIFY_LINES_SETTINGS: {
		pthread_mutex_lock(&r->mu);
		atomic_fetch_add(&r->gen[tbucket(n->tenant)], 1);
		tslot_drop_locked(r, n->tenant);
		pthread_mutex_unlock(&r->mu);
		return;
	}
	default:
		return;
	}
}

void rules_forget_all(linesd_t *l)
{
	struct linesd_rules *r = l->rules;
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	forget_tenants_locked(r);
	pthread_mutex_unlock(&r->mu);
}

void rules_stats(linesd_t *l, rules_stats_t *out)
{
	struct linesd_rules *r = l->rules;
	memset(out, 0, sizeof(*out));
	out->line_hits = atomic_load(&r->line_hits);
	out->line_misses = atomic_load(&r->line_misses);
	out->tenant_hits = atomic_load(&r->tenant_hits);
	out->tenant_reads = atomic_load(&r->tenant_reads);
	out->preloaded = atomic_load(&r->preloaded);
	out->reopened = atomic_load(&r->reopened);
	for (int i = 0; i < LINE_SHARDS; i++) {
		pthread_mutex_lock(&r->shards[i].mu);
		out->lines += r->shards[i].n;
		pthread_mutex_unlock(&r->shards[i].mu);
	}
}

/* ---- the preload ---- */

/* At start, the lines that can be allowed now (active, not expired) of
 * every active tenant are read into memory, in order of tenant and line id,
 * PRELOAD_BATCH at a time, until the bound is reached, on a thread of their
 * own: calls are served meanwhile, a line not read yet going to PostgreSQL
 * as any miss does. So the first kickoff after a restart finds its lines'
 * rules in memory. A preloaded line is no less exact than one kept after an
 * allowed call: open_session checks its rev. */
#define PRELOAD_BATCH 2000

typedef struct preload_q {
	linesd_t *l;
	fd_arena_t arena;
	int64_t tenant, after;
	char tenant_s[24], after_s[24], limit_s[24];
	int64_t ids[PRELOAD_BATCH];
	size_t n;
} preload_q_t;

static int preload_tenants_tx(fd_tx_t *tx, void *arg)
{
	preload_q_t *q = arg;
	const char *p[] = { q->after_s, q->limit_s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_PRELOAD_TENANTS, p, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	q->n = 0;
	for (int i = 0; i < PQntuples(res) && q->n < PRELOAD_BATCH; i++)
		q->ids[q->n++] = col_i64(res, i, 0);
	return 0;
}

/* The lines are kept as they are read (a retried transaction only keeps
 * them again: rules_line_put keeps the newer rev). */
static int preload_lines_tx(fd_tx_t *tx, void *arg)
{
	preload_q_t *q = arg;
	const char *p[] = { q->tenant_s, q->after_s, q->limit_s };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_PRELOAD_LINES, p, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	q->n = (size_t)PQntuples(res);
	for (int i = 0; i < PQntuples(res); i++) {
		unsigned char pw[32];
		const char *hex = PQgetvalue(res, i, PRELOAD_COL_PW_HASH);
		Frontdesk__V1__Line *m = line_message_sealed(q->l, &q->arena, q->tenant, res, i, 0);
		if (!m)
			return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
		if (strlen(hex) == 64 && sodium_hex2bin(pw, sizeof(pw), hex, 64, NULL, NULL, NULL) == 0)
			rules_line_put(q->l, q->tenant, m, col_i64(res, i, PRELOAD_COL_REV),
			               PQgetvalue(res, i, LINE_COL_PATH), pw);
		q->after = m->id;
	}
	return 0;
}

static void *preload_main(void *arg)
{
	linesd_t *l = arg;
	struct linesd_rules *r = l->rules;
	size_t max = r->max_per_shard * LINE_SHARDS, tenants = 0;
	int64_t start = fd_mono_ms(), after_tenant = 0;
	preload_q_t *q = calloc(1, sizeof(*q));
	fd_err_t err = { 0 };
	int rc = q ? 0 : fd_err_set(&err, FD_EEXHAUSTED, "out of memory");
	if (q) {
		q->l = l;
		snprintf(q->limit_s, sizeof(q->limit_s), "%d", PRELOAD_BATCH);
	}
	while (rc == 0 && !atomic_load(&r->preload_stop)) {
		snprintf(q->after_s, sizeof(q->after_s), "%" PRId64, after_tenant);
		if ((rc = fd_db_run(l->db, FD_NO_TENANT, preload_tenants_tx, q, &err)) < 0 || q->n == 0)
			break;
		size_t n = q->n;
		int64_t ids[PRELOAD_BATCH];
		memcpy(ids, q->ids, n * sizeof(*ids));
		after_tenant = ids[n - 1];
		for (size_t i = 0; rc == 0 && i < n && !atomic_load(&r->preload_stop); i++) {
			tenants++;
			q->tenant = ids[i];
			q->after = 0;
			snprintf(q->tenant_s, sizeof(q->tenant_s), "%" PRId64, ids[i]);
			do {
				if (atomic_load(&r->preloaded) >= max || atomic_load(&r->preload_stop))
					goto done;
				snprintf(q->after_s, sizeof(q->after_s), "%" PRId64, q->after);
				fd_arena_init(&q->arena, (size_t)64 << 20);
				rc = fd_tenant_run(l->db, q->tenant, preload_lines_tx, q, &err);
				fd_arena_free(&q->arena);
				atomic_fetch_add(&r->preloaded, q->n);
			} while (rc == 0 && q->n == PRELOAD_BATCH);
		}
	}
done:
	if (rc < 0)
		fd_warn("linesd: the preload of lines' rules stopped: %s (lines not read are read at their first "
		        "authorization)", err.msg);
	else
		fd_info("linesd: %" PRIu64 " lines' rules of %zu tenants read into memory in %" PRId64 " ms%s",
		        atomic_load(&r->preloaded), tenants, fd_mono_ms() - start,
		        atomic_load(&r->preloaded) >= max ? " (FRONTDESK_LINESD_LINE_CACHE reached)" : "");
	free(q);
	return NULL;
}

int rules_preload_start(linesd_t *l, fd_err_t *err)
{
	struct linesd_rules *r = l->rules;
	if (!r->max_per_shard)
		return 0;
	if (pthread_create(&r->preload, NULL, preload_main, l) != 0)
		return fd_err_set(err, FD_EEXHAUSTED, "cannot start the preload thread");
	r->preload_started = true;
	return 0;
}

void rules_preload_stop(linesd_t *l)
{
	struct linesd_rules *r = l ? l->rules : NULL;
	if (!r || !r->preload_started)
		return;
	atomic_store(&r->preload_stop, true);
	pthread_join(r->preload, NULL);
	r->preload_started = false;
}
