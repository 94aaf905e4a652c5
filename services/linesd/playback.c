/* playback.c - AuthorizePlayback, heartbeats, sessions, and the sweep that
 * ends sessions past their timeout or of expired lines.
 *
 * AuthorizePlayback is one statement: frontdesk.authorize_playback (the
 * failure limits, the credentials, every rule of the line, and the session
 * under the connection limit, exact across replicas: see the migration)
 * joined with the line's columns for the answer. At the connection limit
 * the same client opening another stream (a player zapping: the new stream
 * opens before the old one closes) replaces its own previous session, under
 * either policy (migrations/0007_zapping.sql).
 *
 * Heartbeats are answered from a cache of live sessions kept in this
 * process and written to the database in batches (heartbeat_flush_ms): one
 * UPDATE per tenant per flush. The cache is trusted only while this
 * replica's LISTEN connection is up (events.c): a kick, a replacement, a
 * line disabled or extended on any replica reaches every cache through it;
 * when the connection drops the cache is emptied and heartbeats read the
 * database until it is back. What a crash loses: heartbeats of the last
 * flush period (the sessions look that much older; none is revived), and
 * with synchronous_commit off for session writes, PostgreSQL's last fraction
 * of a second of session starts and ends. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "linesd.h"
#include "fd/log.h"
#include "fd/text.h"
#include "fd/wire.h"

#define SHARDS 64
#define BUCKETS 4096            /* per shard */
#define SHARD_MAX 65536         /* sessions cached per shard at most; past it the database answers */

const char SESSION_COLS[] = SESSION_COLUMNS;

typedef struct sess {
	struct sess *next;
	int64_t id, tenant, line, node;
	int64_t expires_at;          /* the line's, when cached */
	int64_t last_seen;           /* Unix seconds */
} sess_t;

typedef struct beat {
	int64_t tenant, id, at;
} beat_t;

typedef struct shard {
	pthread_mutex_t mu;
	/* Bumped by every drop: an entry read from the database before a drop
	 * of its shard may be stale (the drop may have been for it), so
	 * cache_put refuses it. */
	uint64_t gen;
	sess_t *buckets[BUCKETS];
	size_t n;
	beat_t *beats;               /* heartbeats not yet written */
	size_t nbeats, capbeats;
} shard_t;

/* ---- suspended accounts, per tenant ---- */

/* The paths of a tenant's suspended accounts, as the text of a text[] of
 * LIKE prefixes ("{1.5.%}"), read at most SUSPENDED_TTL_MS ago (DESIGN.md:
 * reference data is cached at most 5 s). A handful of rows per tenant,
 * where reading the reseller tree's status for every authorization cost a
 * view with a subquery per call. */
#define SUSPENDED_SLOTS 256
#define SUSPENDED_TTL_MS 1000

typedef struct suspended_slot {
	int64_t tenant;
	int64_t read_ms;
	char *paths;                 /* malloc'd */
} suspended_slot_t;

struct linesd_sessions {
	shard_t shards[SHARDS];
	pthread_t flusher;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop, started;
	unsigned sweep_shard;        /* round robin of the stale-entry scan */
	_Atomic uint64_t drops;      /* every drop of every shard (see shard_t.gen) */
	pthread_mutex_t suspended_mu;
	suspended_slot_t suspended[SUSPENDED_SLOTS];
};

static shard_t *shard_of(struct linesd_sessions *c, int64_t id)
{
	return &c->shards[(uint64_t)id % SHARDS];
}

static sess_t **slot_of(shard_t *sh, int64_t id)
{
	uint64_t h = (uint64_t)id / SHARDS;
	h ^= h >> 17;
	h *= 0x9e3779b97f4a7c15ull;
	return &sh->buckets[(h >> 40) % BUCKETS];
}

/* Under sh->mu. */
static sess_t *find(shard_t *sh, int64_t id)
{
	for (sess_t *s = *slot_of(sh, id); s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static void drop(struct linesd_sessions *c, shard_t *sh, int64_t id)
{
	sh->gen++;
	atomic_fetch_add(&c->drops, 1);
	for (sess_t **p = slot_of(sh, id); *p; p = &(*p)->next)
		if ((*p)->id == id) {
			sess_t *s = *p;
			*p = s->next;
			free(s);
			sh->n--;
			return;
		}
}

/* The shard's generation, read before the database is asked about session id. */
static uint64_t cache_gen(linesd_t *l, int64_t id)
{
	shard_t *sh = shard_of(l->sessions, id);
	pthread_mutex_lock(&sh->mu);
	uint64_t g = sh->gen;
	pthread_mutex_unlock(&sh->mu);
	return g;
}

/* Caches what the database said of a live session, unless something was
 * dropped since the database was asked (its end may have been heard between
 * our read and now): gen is its shard's generation then, or with global the
 * count of all drops. */
static void cache_put(linesd_t *l, bool global, uint64_t gen, int64_t tenant, int64_t id, int64_t line,
                      int64_t node, int64_t expires_at, int64_t last_seen)
{
	if (!events_listening(l))
		return;
	shard_t *sh = shard_of(l->sessions, id);
	pthread_mutex_lock(&sh->mu);
	if ((global ? atomic_load(&l->sessions->drops) : sh->gen) != gen) {
		pthread_mutex_unlock(&sh->mu);
		return;
	}
	sess_t *s = find(sh, id);
	if (!s && sh->n < SHARD_MAX && (s = calloc(1, sizeof(*s)))) {
		sess_t **slot = slot_of(sh, id);
		s->next = *slot;
		*slot = s;
		sh->n++;
	}
	if (s) {
		s->id = id;
		s->tenant = tenant;
		s->line = line;
		s->node = node;
		s->expires_at = expires_at;
		s->last_seen = last_seen;
	}
	pthread_mutex_unlock(&sh->mu);
}

static void cache_drop(linesd_t *l, int64_t id)
{
	shard_t *sh = shard_of(l->sessions, id);
	pthread_mutex_lock(&sh->mu);
	drop(l->sessions, sh, id);
	pthread_mutex_unlock(&sh->mu);
}

/* A cached session moved to another node. */
static void cache_set_node(linesd_t *l, int64_t id, int64_t node)
{
	shard_t *sh = shard_of(l->sessions, id);
	pthread_mutex_lock(&sh->mu);
	sess_t *s = find(sh, id);
	if (s)
		s->node = node;
	pthread_mutex_unlock(&sh->mu);
}

void sessions_on_event(linesd_t *l, int64_t tenant, int type, int64_t line_id, int64_t session_id)
{
	(void)tenant;
	if (!l->sessions)
		return;
	if (type == FRONTDESK__V1__LINE_EVENT_TYPE__LINE_EVENT_TYPE_SESSION_ENDED && session_id) {
		cache_drop(l, session_id);
		return;
	}
	if (type == FRONTDESK__V1__LINE_EVENT_TYPE__LINE_EVENT_TYPE_SESSION_STARTED || !line_id)
		return;
	/* A line changed (extended, disabled, deleted, ...): its sessions are read again. */
	for (int i = 0; i < SHARDS; i++) {
		shard_t *sh = &l->sessions->shards[i];
		pthread_mutex_lock(&sh->mu);
		sh->gen++;
		atomic_fetch_add(&l->sessions->drops, 1);
		for (int b = 0; b < BUCKETS; b++)
			for (sess_t **p = &sh->buckets[b]; *p;) {
				if ((*p)->line == line_id) {
					sess_t *s = *p;
					*p = s->next;
					free(s);
					sh->n--;
				} else {
					p = &(*p)->next;
				}
			}
		pthread_mutex_unlock(&sh->mu);
	}
}

static void shard_clear(struct linesd_sessions *c, shard_t *sh, int64_t older_than)
{
	sh->gen++;
	atomic_fetch_add(&c->drops, 1);
	for (int b = 0; b < BUCKETS; b++)
		for (sess_t **p = &sh->buckets[b]; *p;) {
			if ((*p)->last_seen < older_than) {
				sess_t *s = *p;
				*p = s->next;
				free(s);
				sh->n--;
			} else {
				p = &(*p)->next;
			}
		}
}

void sessions_forget_all(linesd_t *l)
{
	if (!l->sessions)
		return;
	for (int i = 0; i < SHARDS; i++) {
		shard_t *sh = &l->sessions->shards[i];
		pthread_mutex_lock(&sh->mu);
		shard_clear(l->sessions, sh, INT64_MAX);
		pthread_mutex_unlock(&sh->mu);
	}
}

/* ---- heartbeats written in batches ---- */

static void note_beat(linesd_t *l, int64_t tenant, int64_t id, int64_t at)
{
	shard_t *sh = shard_of(l->sessions, id);
	pthread_mutex_lock(&sh->mu);
	if (sh->nbeats == sh->capbeats) {
		size_t cap = sh->capbeats ? 2 * sh->capbeats : 256;
		beat_t *b = realloc(sh->beats, cap * sizeof(*b));
		if (!b) {
			pthread_mutex_unlock(&sh->mu);
			return;      /* the heartbeat is answered; only its write is lost */
		}
		sh->beats = b;
		sh->capbeats = cap;
	}
	sh->beats[sh->nbeats++] = (beat_t){ tenant, id, at };
	pthread_mutex_unlock(&sh->mu);
}

static int beat_order(const void *a, const void *b)
{
	const beat_t *x = a, *y = b;
	if (x->tenant != y->tenant)
		return x->tenant < y->tenant ? -1 : 1;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->at < y->at ? -1 : x->at > y->at;
}

static const fd_sql_t SQL_ASYNC = {
	"linesd_async_commit", "SELECT set_config('synchronous_commit', 'off', true)", 0,
};
static const fd_sql_t SQL_BEATS = {
	"linesd_beats",
	"UPDATE frontdesk.sessions s SET last_seen_at = to_timestamp(v.at)"
	"  FROM unnest($2::bigint[], $3::bigint[]) AS v(id, at)"
	" WHERE s.tenant_id = $1 AND s.id = v.id AND s.ended_at IS NULL AND s.last_seen_at < to_timestamp(v.at)",
	3,
};

typedef struct beats_q {
	const char *params[3];
} beats_q_t;

static int beats_tx(fd_tx_t *tx, void *arg)
{
	beats_q_t *q = arg;
	int rc = fd_tx_exec(tx, &SQL_ASYNC, NULL, 0, NULL);
	if (rc < 0)
		return rc;
	return fd_tx_exec(tx, &SQL_BEATS, q->params, FD_TX_LAST, NULL);
}

static void flush_beats(linesd_t *l)
{
	struct linesd_sessions *c = l->sessions;
	size_t total = 0;
	beat_t *all = NULL;
	for (int i = 0; i < SHARDS; i++) {
		shard_t *sh = &c->shards[i];
		pthread_mutex_lock(&sh->mu);
		if (sh->nbeats) {
			beat_t *grown = realloc(all, (total + sh->nbeats) * sizeof(*all));
			if (grown) {
				all = grown;
				memcpy(all + total, sh->beats, sh->nbeats * sizeof(*all));
				total += sh->nbeats;
			}
			sh->nbeats = 0;
		}
		pthread_mutex_unlock(&sh->mu);
	}
	if (!total) {
		free(all);
		return;
	}
	qsort(all, total, sizeof(*all), beat_order);
	/* One statement per tenant, the latest beat of each session. */
	char *ids = malloc(total * 21 + 3), *ats = malloc(total * 21 + 3), tenant_s[24];
	for (size_t i = 0; ids && ats && i < total;) {
		size_t j = i;
		char *pi = ids, *pa = ats;
		*pi++ = '{';
		*pa++ = '{';
		for (; j < total && all[j].tenant == all[i].tenant; j++) {
			if (j + 1 < total && all[j + 1].tenant == all[j].tenant && all[j + 1].id == all[j].id)
				continue;
			pi += sprintf(pi, "%s%" PRId64, pi[-1] == '{' ? "" : ",", all[j].id);
			pa += sprintf(pa, "%s%" PRId64, pa[-1] == '{' ? "" : ",", all[j].at);
		}
		strcpy(pi, "}");
		strcpy(pa, "}");
		snprintf(tenant_s, sizeof(tenant_s), "%" PRId64, all[i].tenant);
		beats_q_t q = { { tenant_s, ids, ats } };
		fd_err_t err = { 0 };
		if (fd_db_run(l->db, all[i].tenant, beats_tx, &q, &err) < 0)
			fd_warn("tenant %" PRId64 ": %zu heartbeats not written: %s", all[i].tenant, j - i, err.msg);
		i = j;
	}
	free(ids);
	free(ats);
	free(all);
}

static void *flusher_main(void *arg)
{
	linesd_t *l = arg;
	struct linesd_sessions *c = l->sessions;
	pthread_mutex_lock(&c->mu);
	while (!c->stop) {
		struct timespec until = fd_real_after(l->cfg->heartbeat_flush_ms);
		while (!c->stop && pthread_cond_timedwait(&c->cv, &c->mu, &until) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&c->mu);
		flush_beats(l);
		/* Forget, one shard per flush, sessions nobody heartbeats any more. */
		shard_t *sh = &c->shards[c->sweep_shard++ % SHARDS];
		pthread_mutex_lock(&sh->mu);
		shard_clear(c, sh, fd_now_s() - l->cfg->session_timeout - 10);
		pthread_mutex_unlock(&sh->mu);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	flush_beats(l);      /* what is left, at a clean stop */
	return NULL;
}

int sessions_init(linesd_t *l, fd_err_t *err)
{
	struct linesd_sessions *c = calloc(1, sizeof(*c));
	if (!c)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	for (int i = 0; i < SHARDS; i++)
		pthread_mutex_init(&c->shards[i].mu, NULL);
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->suspended_mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	l->sessions = c;
	if (pthread_create(&c->flusher, NULL, flusher_main, l) != 0)
		return fd_err_set(err, FD_EINTERNAL, "cannot start the heartbeat flusher");
	c->started = true;
	return 0;
}

void sessions_fini(linesd_t *l)
{
	struct linesd_sessions *c = l->sessions;
	if (!c)
		return;
	if (c->started) {
		pthread_mutex_lock(&c->mu);
		c->stop = true;
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->flusher, NULL);
	}
	for (int i = 0; i < SUSPENDED_SLOTS; i++)
		free(c->suspended[i].paths);
	pthread_mutex_destroy(&c->suspended_mu);
	for (int i = 0; i < SHARDS; i++) {
		shard_clear(c, &c->shards[i], INT64_MAX);
		free(c->shards[i].beats);
		pthread_mutex_destroy(&c->shards[i].mu);
	}
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
	l->sessions = NULL;
}

/* ---- messages ---- */

Frontdesk__V1__Session *session_message(fd_arena_t *a, int64_t tenant, PGresult *res, int row, int col)
{
	Frontdesk__V1__Session *m = fd_arena_zalloc(a, sizeof(*m));
	if (!m)
		return NULL;
	frontdesk__v1__session__init(m);
	m->id = col_i64(res, row, col + 0);
	m->tenant_id = tenant;
	m->line_id = col_i64(res, row, col + 1);
	m->username = fd_arena_strdup(a, PQgetvalue(res, row, col + 2));
	m->reseller_id = col_i64(res, row, col + 3);
	m->stream_id = col_i64(res, row, col + 4);
	m->node_id = col_i64(res, row, col + 5);
	m->client_ip = fd_arena_strdup(a, PQgetvalue(res, row, col + 6));
	m->user_agent = fd_arena_strdup(a, PQgetvalue(res, row, col + 7));
	m->output_format = (Frontdesk__V1__OutputFormat)col_i64(res, row, col + 8);
	m->started_at = col_i64(res, row, col + 9);
	m->last_seen_at = col_i64(res, row, col + 10);
	m->ended_at = col_i64(res, row, col + 11);
	m->end_reason = (Frontdesk__V1__SessionEndReason)col_i64(res, row, col + 12);
	return m->username && m->client_ip && m->user_agent ? m : NULL;
}

static Frontdesk__V1__RoutedNode *node_message(fd_arena_t *a, int64_t node)
{
	if (!node)
		return NULL;
	Frontdesk__V1__RoutedNode *n = fd_arena_zalloc(a, sizeof(*n));
	if (n) {
		frontdesk__v1__routed_node__init(n);
		n->node_id = node;
	}
	return n;
}

/* ---- AuthorizePlayback ---- */

#define DENY(x) FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_##x

static const struct {
	const char *outcome;
	Frontdesk__V1__DenialReason reason;
	const char *message;
} outcomes[] = {
	{ "bad_credentials", DENY(BAD_CREDENTIALS), "unknown username or wrong password" },
	{ "rate_limited", DENY(RATE_LIMITED), "too many failed attempts from this address" },
	{ "banned", DENY(BANNED), "the line is banned" },
	{ "disabled", DENY(DISABLED), "the line is disabled" },
	{ "tenant_suspended", DENY(TENANT_SUSPENDED), "the service is suspended" },
	{ "reseller_suspended", DENY(RESELLER_SUSPENDED), "the line's reseller is suspended" },
	{ "expired", DENY(EXPIRED), "the line has expired" },
	{ "ip_not_allowed", DENY(IP_NOT_ALLOWED), "the line may not be used from this address" },
	{ "ua_not_allowed", DENY(UA_NOT_ALLOWED), "the line may not be used with this player" },
	{ "format_not_allowed", DENY(FORMAT_NOT_ALLOWED), "the line may not play this format" },
	{ "stream_not_in_package", DENY(STREAM_NOT_IN_PACKAGE), "the stream is not in the line's package" },
	{ "max_connections", DENY(MAX_CONNECTIONS), "the line is at its connection limit" },
};

static const fd_sql_t SQL_AUTHORIZE = {
	"linesd_authorize",
	"SELECT d.outcome, d.retry_after, d.session_id, d.reused, d.replaced_id, d.line_id, "
	LINE_COLUMNS_WITH("coalesce(d.live, (SELECT count(*) FROM frontdesk.sessions s WHERE s.tenant_id = $1"
	                  " AND s.line_id = l.id AND s.ended_at IS NULL))",
	                  "CASE WHEN d.session_id > 0 THEN " EPOCH("now()") " ELSE coalesce((SELECT "
	                  EPOCH("max(s.last_seen_at)") " FROM frontdesk.sessions s WHERE s.tenant_id = $1"
	                  " AND s.line_id = l.id), 0) END")
	"  FROM frontdesk.authorize_playback($1, $2, decode($3, 'hex'), $4, $5::inet, $6, $7::smallint, $8, $9, $10,"
	"       $16::text[], $11, $12, $13, $14, coalesce((SELECT connection_limit_policy = 'end_oldest'"
	"                                        FROM frontdesk.lines_settings WHERE tenant_id = $1), false), $15) d"
	"  LEFT JOIN LATERAL (SELECT (d.line).*) l ON true",
	16,
};

static const fd_sql_t SQL_SUSPENDED = {
	"linesd_suspended",
	"SELECT coalesce(array_agg(path || '%' ORDER BY path), '{}') FROM frontdesk.account_refs"
	" WHERE tenant_id = $1 AND status = 'suspended'",
	1,
};

typedef struct suspended_q {
	const char *params[1];
	char *paths;
} suspended_q_t;

static int suspended_tx(fd_tx_t *tx, void *arg)
{
	suspended_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_SUSPENDED, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	free(q->paths);
	if (!(q->paths = strdup(PQgetvalue(res, 0, 0))))
		return TX_OOM(tx);
	return 0;
}

/* Into the arena; NULL with err set when the database cannot say. */
static const char *suspended_paths(linesd_t *l, fd_arena_t *a, int64_t tenant, int64_t deadline_ms, fd_err_t *err)
{
	struct linesd_sessions *c = l->sessions;
	suspended_slot_t *slot = &c->suspended[(uint64_t)tenant % SUSPENDED_SLOTS];
	int64_t now = fd_mono_ms();
	const char *out = NULL;
	pthread_mutex_lock(&c->suspended_mu);
	if (slot->paths && slot->tenant == tenant && now - slot->read_ms < SUSPENDED_TTL_MS)
		out = fd_arena_strdup(a, slot->paths);
	pthread_mutex_unlock(&c->suspended_mu);
	if (out)
		return out;
	char tenant_s[24];
	snprintf(tenant_s, sizeof(tenant_s), "%" PRId64, tenant);
	suspended_q_t q = { { tenant_s }, NULL };
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = deadline_ms, .read_only = true };
	if (fd_db_run_opts(l->db, &o, suspended_tx, &q, err) < 0) {
		free(q.paths);
		return NULL;
	}
	out = fd_arena_strdup(a, q.paths);
	pthread_mutex_lock(&c->suspended_mu);
	free(slot->paths);
	slot->tenant = tenant;
	slot->read_ms = now;
	slot->paths = q.paths;
	pthread_mutex_unlock(&c->suspended_mu);
	if (!out)
		fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	return out;
}

typedef struct auth_q {
	linesd_t *l;
	fd_arena_t *arena;
	int64_t tenant;
	const char *params[16];
	const char *outcome;
	int32_t retry_after;
	int64_t session, replaced, line_id;
	bool reused;
	Frontdesk__V1__Line *line;
} auth_q_t;

static int authorize_tx(fd_tx_t *tx, void *arg)
{
	auth_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_AUTHORIZE, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	if (PQntuples(res) != 1)
		return fd_err_set(fd_tx_err(tx), FD_EINTERNAL, "authorize_playback answered no row");
	q->outcome = fd_arena_strdup(q->arena, PQgetvalue(res, 0, 0));
	q->retry_after = (int32_t)col_i64(res, 0, 1);
	q->session = col_i64(res, 0, 2);
	q->reused = col_bool(res, 0, 3);
	q->replaced = col_i64(res, 0, 4);
	q->line_id = col_i64(res, 0, 5);
	q->line = NULL;
	if (!q->outcome)
		return TX_OOM(tx);
	if (!PQgetisnull(res, 0, 6) && !(q->line = line_message(q->l, q->arena, q->tenant, res, 0, 6)))
		return TX_OOM(tx);
	return 0;
}

static int check_ip(fd_call_t *call, const char *field, const char *s)
{
	unsigned char bin[16];
	if (!s[0])
		return fd_call_fail(call, FD_EINVAL, "%s: required", field);
	if (strlen(s) > 45 || inet_pton(strchr(s, ':') ? AF_INET6 : AF_INET, s, bin) != 1)
		return fd_call_fail(call, FD_EINVAL, "%s: not an IPv4 or IPv6 address", field);
	return 0;
}

/* The edge's tenant context: fd_tctx_begin's (the verified caller, its
 * scope, the tenant it names), except that a suspended tenant is an answer
 * (TENANT_SUSPENDED, *active false), not the error fd_call_tenant makes of
 * it for a service. The edge always names the tenant (of the host name). */
static int playback_begin(fd_tctx_t *t, fd_call_t *call, int64_t tenant_id, bool *active)
{
	memset(t, 0, sizeof(*t));
	t->call = call;
	t->arena = fd_call_arena(call);
	int rc = fd_call_caller(call, &t->c);
	if (rc < 0 || (rc = fd_caller_need(&t->c, FRONTDESK__V1__SCOPE__SCOPE_PLAYBACK_AUTHORIZE, fd_call_err(call))) < 0)
		return rc;
	if (tenant_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "tenant_id: required (the tenant of the host name the player used)");
	linesd_t *l = linesd_of(call);
	if ((rc = fd_verifier_tenant(l->verifier, tenant_id, fd_call_deadline_ms(call), active, fd_call_err(call))) < 0)
		return rc;
	fd_call_set_log_tenant(call, tenant_id);
	t->tenant = tenant_id;
	snprintf(t->tenant_s, sizeof(t->tenant_s), "%" PRId64, tenant_id);
	return 0;
}

/* The lower of two caps, 0 meaning none. */
static int64_t lower_cap(int64_t a, int64_t b)
{
	return !a ? b : !b ? a : a < b ? a : b;
}

/* Denied before anything is read: no node can take the viewer (routerd's
 * RESOURCE_EXHAUSTED: all down, full or excluded, or the tenant's bandwidth
 * cap), or routerd could not be asked. Nothing is written. */
static int no_node(fd_call_t *call, ProtobufCMessage **resp, int rc, const char *why)
{
	Frontdesk__V1__AuthorizePlaybackResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->allowed = false;
	m->denial_reason = DENY(NO_NODE_AVAILABLE);
	m->message = rc == -FD_EEXHAUSTED ? fd_arena_strdup(fd_call_arena(call), why)
	                                  : fd_arena_printf(fd_call_arena(call), "routing is unavailable: %s", why);
	if (!m->message)
		return OOM(call);
	return 0;
}

int linesd_authorize_playback(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__AuthorizePlaybackRequest *req = (const void *)msg;
	linesd_t *l = linesd_of(call);
	fd_arena_t *a = fd_call_arena(call);
	fd_tctx_t t;
	bool active;
	int rc = playback_begin(&t, call, req->tenant_id, &active);
	if (rc < 0)
		return rc;
	size_t un = strlen(req->username);
	if (un == 0 || un > 64)
		return fd_call_fail(call, FD_EINVAL, "username: 1 to 64 characters");
	if (strlen(req->password) > 64)
		return fd_call_fail(call, FD_EINVAL, "password: at most 64 characters");
	if ((rc = check_ip(call, "client_ip", req->client_ip)) < 0 ||
	    (rc = fd_check_text("user_agent", req->user_agent, 0, 512, fd_call_err(call))) < 0 ||
	    (rc = fd_check_text("client_session_key", req->client_session_key, 0, 128, fd_call_err(call))) < 0)
		return rc;
	if (req->stream_id < 0 || req->node_id < 0)
		return fd_call_fail(call, FD_EINVAL, "stream_id, node_id: must not be negative");
	if (req->output_format < 0 || req->output_format > FRONTDESK__V1__OUTPUT_FORMAT__OUTPUT_FORMAT_RTMP)
		return fd_call_fail(call, FD_EINVAL, "output_format: not an OutputFormat");
	/* The node first: Route answers from memory, and the session is
	 * written with its node in the same statement. When no node can take
	 * the viewer, the line is still checked (without a session): a denial
	 * of the line itself (credentials, expiry, ...) is the answer, and only
	 * an allowed line is told NO_NODE_AVAILABLE. A suspended tenant is
	 * denied by the checks, Route is not asked. */
	Frontdesk__V1__RouteResponse *route = NULL;
	int64_t node = req->node_id, stream = req->stream_id;
	int route_rc = 0;
	fd_err_t rerr;
	if (!node && stream && active && routing_enabled(l)) {
		Frontdesk__V1__RouteRequest rr = FRONTDESK__V1__ROUTE_REQUEST__INIT;
		rr.tenant_id = req->tenant_id;
		rr.stream_id = req->stream_id;
		rr.client_ip = req->client_ip;
		rr.client_country = req->client_country;
		rr.client_region = req->client_region;
		rr.output_format = req->output_format;
		if ((route_rc = routing_route(l, &rr, a, &route, &rerr)) == -FD_EINVAL)
			return fd_call_fail(call, FD_EINVAL, "%s", rerr.msg);   /* client_country, client_region */
		if (route_rc == 0 && !route->node)
			route_rc = fd_err_set(&rerr, FD_EINTERNAL, "routerd answered without a node");
		if (route_rc < 0)
			stream = 0;   /* check the line only */
		else
			node = route->node->node_id;
	}
	char pwh[65];
	line_password_hash(l, req->tenant_id, req->password, pwh);
	auth_q_t q = { .l = l, .arena = a, .tenant = req->tenant_id };
	const char *paths = suspended_paths(l, a, req->tenant_id, fd_call_deadline_ms(call), fd_call_err(call));
	if (!paths)
		return -(int)fd_call_err(call)->code;
	const char *params[16] = {
		t.tenant_s, req->username, pwh,
		fd_arena_printf(a, "%" PRId64, stream), req->client_ip, req->user_agent,
		fd_arena_printf(a, "%d", (int)req->output_format), fd_arena_printf(a, "%" PRId64, node),
		req->client_session_key, active ? "true" : "false",
		fd_arena_printf(a, "%" PRId64, l->cfg->session_timeout), fd_arena_printf(a, "%" PRId64, l->cfg->fail_window),
		fd_arena_printf(a, "%" PRId64, l->cfg->fail_max_user), fd_arena_printf(a, "%" PRId64, l->cfg->fail_max_ip),
		stream && events_watched(l, req->tenant_id) ? "true" : "false", paths,
	};
	memcpy(q.params, params, sizeof(params));
	for (int i = 0; i < 16; i++)
		if (!q.params[i])
			return OOM(call);
	/* The session's id (and so its shard) is known only after: every drop counts. */
	uint64_t drops = atomic_load(&l->sessions->drops);
	fd_tx_opts_t o = { .generic_plans = true };
	if ((rc = fd_tctx_run(&t, l->db, &o, authorize_tx, &q)) < 0)
		return rc;
	if (route_rc < 0 && strcmp(q.outcome, "allowed") == 0)
		return no_node(call, resp, route_rc, rerr.msg);

	Frontdesk__V1__AuthorizePlaybackResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->line = q.line;
	if (m->line)
		m->line->password = req->password;   /* the player's own; not opened again */
	if (strcmp(q.outcome, "allowed") == 0) {
		m->allowed = true;
		m->session_id = q.session;
		m->session_reused = q.reused;
		m->replaced_session_id = q.replaced;
		m->bandwidth_cap_kbps = lower_cap(q.line ? q.line->bandwidth_cap_kbps : 0, route ? route->bitrate_cap_kbps : 0);
		m->recheck_after_seconds = (int32_t)l->cfg->heartbeat_interval;
		if (route) {
			m->node = route->node;
			m->backups = route->backups;
			m->n_backups = route->n_backups;
		} else if (req->node_id) {
			m->node = node_message(a, req->node_id);
		} else if (req->stream_id) {
			m->note = "routing is not configured (FRONTDESK_ROUTERD_TARGET): no node is named";
		}
		if (q.session && q.line)
			cache_put(l, true, drops, req->tenant_id, q.session, q.line_id, node, q.line->expires_at, fd_now_s());
		/* The one it names; any other it ended (a line over a lowered
		 * limit) leaves this cache through its announced end. */
		if (q.replaced)
			cache_drop(l, q.replaced);
	} else {
		m->allowed = false;
		m->message = "denied";
		for (size_t i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++)
			if (strcmp(outcomes[i].outcome, q.outcome) == 0) {
				m->denial_reason = outcomes[i].reason;
				m->message = (char *)outcomes[i].message;
			}
		if (m->denial_reason == DENY(BAD_CREDENTIALS))
			m->line = NULL;
		m->retry_after_seconds = q.retry_after;
	}
	return 0;
}

/* ---- SessionHeartbeat ---- */

static const fd_sql_t SQL_SESSION_STATE = {
	"linesd_session_state",
	"SELECT s.line_id, s.node_id, s.ended_at IS NOT NULL, s.end_reason, " EPOCH("s.last_seen_at") ","
	"       coalesce(" EPOCH("l.expires_at") ", 0), coalesce(l.state, 'deleted')"
	"  FROM frontdesk.sessions s LEFT JOIN frontdesk.lines l ON l.tenant_id = s.tenant_id AND l.id = s.line_id"
	" WHERE s.tenant_id = $1 AND s.id = $2",
	2,
};
/* Ends one live session with a reason, announcing it. */
static const fd_sql_t SQL_END_SESSION = {
	"linesd_end_session",
	"WITH e AS (UPDATE frontdesk.sessions s SET ended_at = now(), end_reason = $3"
	"            WHERE s.tenant_id = $1 AND s.id = $2 AND s.ended_at IS NULL RETURNING s.id, s.line_id)"
	" SELECT frontdesk.line_event($1, 6, e.line_id, coalesce(l.reseller_id, 0), e.id, 0)"
	"   FROM e LEFT JOIN frontdesk.lines l ON l.tenant_id = $1 AND l.id = e.line_id",
	3,
};

typedef struct beat_q {
	const char *params[3];
	bool found, ended;
	int64_t line, node, last_seen, expires_at, reason;
	char state[16];
} beat_q_t;

static int session_state_tx(fd_tx_t *tx, void *arg)
{
	beat_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_SESSION_STATE, q->params, FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	if (!(q->found = PQntuples(res) == 1))
		return 0;
	q->line = col_i64(res, 0, 0);
	q->node = col_i64(res, 0, 1);
	q->ended = col_bool(res, 0, 2);
	q->reason = col_i64(res, 0, 3);
	q->last_seen = col_i64(res, 0, 4);
	q->expires_at = col_i64(res, 0, 5);
	snprintf(q->state, sizeof(q->state), "%s", PQgetvalue(res, 0, 6));
	return 0;
}

static int end_session_tx(fd_tx_t *tx, void *arg)
{
	beat_q_t *q = arg;
	int rc = fd_tx_exec(tx, &SQL_ASYNC, NULL, 0, NULL);
	if (rc < 0)
		return rc;
	return fd_tx_exec(tx, &SQL_END_SESSION, q->params, FD_TX_LAST, NULL);
}

/* ---- failover ---- */

static const fd_sql_t SQL_SESSION_ROUTE = {
	"linesd_session_route",
	"SELECT stream_id, host(client_ip), output_format FROM frontdesk.sessions"
	" WHERE tenant_id = $1 AND id = $2 AND ended_at IS NULL",
	2,
};
static const fd_sql_t SQL_SESSION_MOVE = {
	"linesd_session_move",
	"UPDATE frontdesk.sessions SET node_id = $4"
	" WHERE tenant_id = $1 AND id = $2 AND node_id = $3 AND ended_at IS NULL",
	4,
};

typedef struct move_q {
	fd_arena_t *arena;
	const char *params[4];
	bool found;
	int64_t stream, format;
	char *ip;
} move_q_t;

static int session_route_tx(fd_tx_t *tx, void *arg)
{
	move_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_SESSION_ROUTE, q->params, FD_TX_LAST, &res);
	if (rc < 0 || !(q->found = PQntuples(res) == 1))
		return rc;
	q->stream = col_i64(res, 0, 0);
	q->format = col_i64(res, 0, 2);
	return (q->ip = fd_arena_strdup(q->arena, PQgetvalue(res, 0, 1))) ? 0 : TX_OOM(tx);
}

static int session_move_tx(fd_tx_t *tx, void *arg)
{
	move_q_t *q = arg;
	return fd_tx_exec(tx, &SQL_SESSION_MOVE, q->params, FD_TX_LAST, NULL);
}

/* The session's node is down, overloaded, draining or disabled (or its
 * state is not known): ask Route again with it as the current node (kept if
 * it is in fact fit), move the session when Route names another, and tell
 * the player. Failing that, the session keeps its node: a heartbeat is
 * never refused for want of routing. */
static void failover(linesd_t *l, fd_call_t *call, int64_t tenant, int64_t session, int64_t line, int64_t node,
                     Frontdesk__V1__SessionHeartbeatResponse *m)
{
	fd_arena_t *a = fd_call_arena(call);
	move_q_t q = { .arena = a, .params = { fd_arena_printf(a, "%" PRId64, tenant),
		                                   fd_arena_printf(a, "%" PRId64, session),
		                                   fd_arena_printf(a, "%" PRId64, node), NULL } };
	fd_err_t err;
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_call_deadline_ms(call), .read_only = true };
	if (!q.params[0] || !q.params[1] || !q.params[2] || fd_db_run_opts(l->db, &o, session_route_tx, &q, &err) < 0 ||
	    !q.found)
		return;
	Frontdesk__V1__RouteRequest rr = FRONTDESK__V1__ROUTE_REQUEST__INIT;
	rr.tenant_id = tenant;
	rr.line_id = line;
	rr.session_id = session;
	rr.stream_id = q.stream;
	rr.client_ip = q.ip;
	rr.output_format = (Frontdesk__V1__OutputFormat)q.format;
	rr.current_node_id = node;
	Frontdesk__V1__RouteResponse *route;
	if (routing_route(l, &rr, a, &route, &err) < 0 || !route->node) {
		fd_debug("session %" PRId64 " stays on node %" PRId64 ": %s", session, node, err.msg);
		return;
	}
	int64_t to = route->node->node_id;
	if (to != node) {
		o.read_only = false;
		if (!(q.params[3] = fd_arena_printf(a, "%" PRId64, to)) || fd_db_run_opts(l->db, &o, session_move_tx, &q, &err) < 0)
			return;
		cache_set_node(l, session, to);
		m->node_changed = true;
		fd_info("session %" PRId64 " of tenant %" PRId64 " moved from node %" PRId64 " to node %" PRId64, session,
		        tenant, node, to);
	}
	m->node = route->node;
	m->backups = route->backups;
	m->n_backups = route->n_backups;
}

int linesd_session_heartbeat(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__SessionHeartbeatRequest *req = (const void *)msg;
	linesd_t *l = linesd_of(call);
	fd_arena_t *a = fd_call_arena(call);
	fd_tctx_t t;
	bool active;
	int rc = playback_begin(&t, call, req->tenant_id, &active);
	if (rc < 0)
		return rc;
	if (req->session_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "session_id: required");
	Frontdesk__V1__SessionHeartbeatResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->next_heartbeat_seconds = (int32_t)l->cfg->heartbeat_interval;
	int64_t now = fd_now_s(), timeout = l->cfg->session_timeout;

	/* The cache: a live session of this tenant, its line unchanged since cached. */
	shard_t *sh = shard_of(l->sessions, req->session_id);
	bool hit = false;
	int64_t node = 0, expires_at = 0, line = 0;
	if (active && events_listening(l)) {
		pthread_mutex_lock(&sh->mu);
		sess_t *s = find(sh, req->session_id);
		if (s && s->tenant == req->tenant_id && now < s->expires_at && now - s->last_seen <= timeout) {
			hit = true;
			s->last_seen = now;
			node = s->node;
			line = s->line;
			expires_at = s->expires_at;
		}
		pthread_mutex_unlock(&sh->mu);
	}
	if (!hit) {
		uint64_t gen = cache_gen(l, req->session_id);
		beat_q_t q = { .params = { t.tenant_s,
			                       fd_arena_printf(a, "%" PRId64, req->session_id), NULL } };
		if (!q.params[0] || !q.params[1])
			return OOM(call);
		fd_tx_opts_t o = { .read_only = true };
		if ((rc = fd_tctx_run(&t, l->db, &o, session_state_tx, &q)) < 0)
			return rc;
		if (!q.found)
			return fd_call_fail(call, FD_ENOTFOUND, "session %" PRId64 " not found", req->session_id);
		m->expires_at = q.expires_at;
		int64_t end = 0;
		if (q.ended)
			end = q.reason;
		else if (now - q.last_seen > timeout)
			end = FRONTDESK__V1__SESSION_END_REASON__SESSION_END_REASON_TIMED_OUT;
		else if (strcmp(q.state, "active") != 0 || !active)
			end = FRONTDESK__V1__SESSION_END_REASON__SESSION_END_REASON_LINE_REVOKED;
		else if (now >= q.expires_at)
			end = FRONTDESK__V1__SESSION_END_REASON__SESSION_END_REASON_LINE_EXPIRED;
		if (end) {
			if (!q.ended) {
				q.params[2] = fd_arena_printf(a, "%" PRId64, end);
				o.read_only = false;
				if (!q.params[2])
					return OOM(call);
				if ((rc = fd_tctx_run(&t, l->db, &o, end_session_tx, &q)) < 0)
					return rc;
			}
			m->active = false;
			m->end_reason = (Frontdesk__V1__SessionEndReason)end;
			return 0;
		}
		node = q.node;
		line = q.line;
		expires_at = q.expires_at;
		cache_put(l, false, gen, req->tenant_id, req->session_id, q.line, q.node, q.expires_at, now);
	}
	note_beat(l, req->tenant_id, req->session_id, now);
	m->active = true;
	m->expires_at = expires_at;
	m->node = node_message(a, node);
	if (node && routing_node_unfit(l, node))
		failover(l, call, req->tenant_id, req->session_id, line, node, m);
	return 0;
}

/* ---- EndSession, KickSession, ListSessions ---- */

typedef struct sess_q {
	fd_tctx_t *r;                   /* portals; NULL for the edge */
	const char *reason;          /* KickSession's (audited); NULL: EndSession */
	fd_arena_t *arena;
	int64_t tenant;
	const char *params[9];
	int limit;
	Frontdesk__V1__Session **out;
	size_t n;
} sess_q_t;

/* $3 end reason; $4 subtree pattern of the caller ('%' for the edge). */
static const fd_sql_t SQL_CLOSE_SESSION = {
	"linesd_close_session",
	"WITH t AS (SELECT s.id FROM frontdesk.sessions s JOIN frontdesk.lines l"
	"             ON l.tenant_id = s.tenant_id AND l.id = s.line_id"
	"           WHERE s.tenant_id = $1 AND s.id = $2 AND l.reseller_path LIKE $4::text || '%'),"
	" e AS (UPDATE frontdesk.sessions s SET ended_at = now(), end_reason = $3"
	"        FROM t WHERE s.tenant_id = $1 AND s.id = t.id AND s.ended_at IS NULL RETURNING s.id, s.line_id),"
	" n AS (SELECT frontdesk.line_event($1, 6, e.line_id, coalesce(l.reseller_id, 0), e.id, 0) FROM e"
	"        LEFT JOIN frontdesk.lines l ON l.tenant_id = $1 AND l.id = e.line_id WHERE $5)"
	" SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM n), (SELECT count(*) FROM e)",
	5,
};
static const fd_sql_t SQL_SESSION = {
	"linesd_session",
	"SELECT " SESSION_COLUMNS " FROM " SESSION_FROM " WHERE s.tenant_id = $1 AND s.id = $2",
	2,
};

/* KickSession's audit row (session.kick), the transaction's last statement. */
static int audit_kick(fd_tx_t *tx, sess_q_t *q, const Frontdesk__V1__Session *s)
{
	const char *line = lines_i64(q->r, s->line_id);
	const char *target = fd_arena_printf(q->arena, "session:%" PRId64, s->id);
	const char *detail[] = { "line", line, q->reason[0] ? "reason" : NULL, q->reason, NULL };
	if (!line || !target)
		return TX_OOM(tx);
	return fd_tctx_audit(tx, q->r, "session.kick", target, detail, FD_TX_LAST);
}

static int close_session_tx(fd_tx_t *tx, void *arg)
{
	sess_q_t *q = arg;
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_ASYNC, NULL, 0, NULL);
	if (rc < 0 || (rc = fd_tx_exec(tx, &SQL_CLOSE_SESSION, q->params, 0, &res)) < 0)
		return rc;
	if (col_i64(res, 0, 0) == 0)
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "session %s not found", q->params[1]);
	/* Only a kick that ended a live session is audited: kicking an ended
	 * one again changes nothing (and answers the same). */
	bool audited = q->reason && col_i64(res, 0, 2) > 0;
	if ((rc = fd_tx_exec(tx, &SQL_SESSION, q->params, audited ? 0 : FD_TX_LAST, &res)) < 0)
		return rc;
	q->n = 1;
	if (!(q->out = fd_arena_alloc(q->arena, sizeof(*q->out))) ||
	    !(q->out[0] = session_message(q->arena, q->tenant, res, 0, 0)))
		return TX_OOM(tx);
	return audited ? audit_kick(tx, q, q->out[0]) : 0;
}

int linesd_end_session(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__EndSessionRequest *req = (const void *)msg;
	linesd_t *l = linesd_of(call);
	fd_arena_t *a = fd_call_arena(call);
	fd_tctx_t t;
	bool active;
	int rc = playback_begin(&t, call, req->tenant_id, &active);
	if (rc < 0)
		return rc;
	if (req->session_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "session_id: required");
	/* Always announced: another replica's cache may hold it (and would keep
	 * answering its heartbeats). */
	sess_q_t q = { .arena = a, .tenant = req->tenant_id,
		           .params = { t.tenant_s,
		                       fd_arena_printf(a, "%" PRId64, req->session_id), "1", "", "true" } };
	if (!q.params[0] || !q.params[1])
		return OOM(call);
	fd_tx_opts_t o = { 0 };
	if ((rc = fd_tctx_run(&t, l->db, &o, close_session_tx, &q)) < 0)
		return rc;
	cache_drop(l, req->session_id);
	Frontdesk__V1__EndSessionResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->session = q.out[0];
	return 0;
}

int linesd_kick_session(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__KickSessionRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_SESSIONS_WRITE, req->tenant_id, "lines");
	if (rc < 0)
		return rc;
	if (req->session_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "session_id: required");
	if ((rc = fd_check_text("reason", req->reason, 0, 500, fd_call_err(call))) < 0)
		return rc;
	/* Always announced: every replica's heartbeat cache must hear of it. */
	sess_q_t q = { .r = &r, .reason = req->reason, .arena = r.arena, .tenant = r.tenant,
		           .params = { r.tenant_s, lines_i64(&r, req->session_id), "3", fd_subtree_prefix(&r.c), "true" } };
	if (!q.params[1] || !q.params[3])
		return OOM(call);
	if ((rc = lines_run(&r, close_session_tx, &q)) < 0)
		return rc;
	cache_drop(linesd_of(r.call), req->session_id);
	Frontdesk__V1__KickSessionResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->session = q.out[0];
	return 0;
}

/* Live sessions of the caller's subtree: $4 subtree pattern, $5 line,
 * $6 reseller subtree pattern, $7 stream, $8 node (NULL = any), $9 timeout. */
static const fd_sql_t SQL_LIST_SESSIONS = {
	"linesd_list_sessions",
	"SELECT " SESSION_COLUMNS " FROM " SESSION_FROM
	" WHERE s.tenant_id = $1 AND s.id > $2 AND s.ended_at IS NULL"
	"   AND s.last_seen_at > now() - make_interval(secs => $9) AND l.reseller_path LIKE $4::text || '%'"
	"   AND ($5::bigint IS NULL OR s.line_id = $5) AND ($6::text IS NULL OR l.reseller_path LIKE $6)"
	"   AND ($7::bigint IS NULL OR s.stream_id = $7) AND ($8::bigint IS NULL OR s.node_id = $8)"
	" ORDER BY s.id LIMIT $3",
	9,
};

static int list_sessions_tx(fd_tx_t *tx, void *arg)
{
	sess_q_t *q = arg;
	int rc;
	if (q->params[5]) {     /* a reseller id: its subtree, if the caller may see it */
		const char *path;
		if ((rc = lines_reseller(tx, q->r, strtoll(q->params[5], NULL, 10), &path, NULL)) < 0)
			return rc;
		if (!(q->params[5] = fd_arena_printf(q->arena, "%s%%", path)))
			return TX_OOM(tx);
	}
	PGresult *res;
	if ((rc = fd_tx_exec(tx, &SQL_LIST_SESSIONS, q->params, FD_TX_LAST, &res)) < 0)
		return rc;
	q->n = (size_t)PQntuples(res);
	if (!(q->out = fd_arena_alloc(q->arena, (q->n + 1) * sizeof(*q->out))))
		return TX_OOM(tx);
	for (size_t i = 0; i < q->n; i++)
		if (!(q->out[i] = session_message(q->arena, q->tenant, res, (int)i, 0)))
			return TX_OOM(tx);
	return 0;
}

int linesd_list_sessions(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListSessionsRequest *req = (const void *)msg;
	fd_tctx_t r;
	int rc = fd_tctx_begin(&r, call, FRONTDESK__V1__SCOPE__SCOPE_SESSIONS_READ, req->tenant_id, "lines");
	if (rc < 0)
		return rc;
	int limit;
	int64_t after;
	if ((rc = fd_check_page(req->page_size, req->page_token, &limit, &after, fd_call_err(call))) < 0)
		return rc;
	if (req->line_id < 0 || req->reseller_id < 0 || req->stream_id < 0 || req->node_id < 0)
		return fd_call_fail(call, FD_EINVAL, "line_id, reseller_id, stream_id, node_id: must not be negative");
	sess_q_t q = { .r = &r, .arena = r.arena, .tenant = r.tenant, .limit = limit,
		           .params = { r.tenant_s, lines_i64(&r, after), lines_i64(&r, limit + 1), fd_subtree_prefix(&r.c),
		                       req->line_id ? lines_i64(&r, req->line_id) : NULL,
		                       req->reseller_id ? lines_i64(&r, req->reseller_id) : NULL,
		                       req->stream_id ? lines_i64(&r, req->stream_id) : NULL,
		                       req->node_id ? lines_i64(&r, req->node_id) : NULL,
		                       lines_i64(&r, linesd_of(r.call)->cfg->session_timeout) } };
	if (!q.params[1] || !q.params[2] || !q.params[3] || !q.params[8])
		return OOM(call);
	if ((rc = lines_run_ro(&r, list_sessions_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__ListSessionsResponse *m = fd_reply(call, resp);
	if (!m)
		return -FD_EEXHAUSTED;
	m->sessions = q.out;
	m->n_sessions = q.n > (size_t)limit ? (size_t)limit : q.n;
	if (q.n > (size_t)limit && !(m->next_page_token = fd_page_token(r.arena, q.out[limit - 1]->id)))
		return OOM(call);
	return 0;
}

/* ---- the sweep ---- */

/* In one tenant: sessions past the timeout end (TIMED_OUT = 2, at their
 * last heartbeat + timeout); lines past their expiry are announced once
 * (line.expired) and their sessions end (LINE_EXPIRED = 5); sessions ended
 * over an hour ago and old failure counters are deleted. */
static const fd_sql_t SQL_SWEEP_TIMEOUTS = {
	"linesd_sweep_timeouts",
	"WITH e AS (UPDATE frontdesk.sessions s SET ended_at = s.last_seen_at + make_interval(secs => $2), end_reason = 2"
	"            WHERE s.tenant_id = $1 AND s.ended_at IS NULL"
	"              AND s.last_seen_at < now() - make_interval(secs => $2) RETURNING s.id, s.line_id)"
	" SELECT count(frontdesk.line_event($1, 6, e.line_id, coalesce(l.reseller_id, 0), e.id, 0))"
	"   FROM e LEFT JOIN frontdesk.lines l ON l.tenant_id = $1 AND l.id = e.line_id",
	2,
};
static const fd_sql_t SQL_SWEEP_EXPIRED = {
	"linesd_sweep_expired",
	"WITH x AS (UPDATE frontdesk.lines l SET expiry_announced = l.expires_at"
	"            WHERE l.tenant_id = $1 AND l.expiry_announced IS NULL AND l.expires_at <= now()"
	"              AND l.state <> 'pending' RETURNING l.id, l.reseller_id, l.state),"
	" n AS (SELECT frontdesk.line_event($1, 3, x.id, x.reseller_id, 0, 1) FROM x WHERE x.state = 'active'),"
	" e AS (UPDATE frontdesk.sessions s SET ended_at = now(), end_reason = 5 FROM x"
	"        WHERE s.tenant_id = $1 AND s.line_id = x.id AND s.ended_at IS NULL RETURNING s.id, x.id AS line_id, x.reseller_id)"
	" SELECT (SELECT count(*) FROM n), (SELECT count(frontdesk.line_event($1, 6, e.line_id, e.reseller_id, e.id, 0)) FROM e)",
	1,
};
/* Sessions of lines whose reseller (or one above it) is suspended end
 * (LINE_REVOKED = 6): suspended accounts are few, their paths cover the rest. */
static const fd_sql_t SQL_SWEEP_SUSPENDED = {
	"linesd_sweep_suspended",
	"WITH sp AS (SELECT path || '%' AS p FROM frontdesk.account_refs WHERE tenant_id = $1 AND status = 'suspended'),"
	" e AS (UPDATE frontdesk.sessions s SET ended_at = now(), end_reason = 6 FROM frontdesk.lines l"
	"        WHERE s.tenant_id = $1 AND s.ended_at IS NULL AND l.tenant_id = $1 AND l.id = s.line_id"
	"          AND l.reseller_path LIKE ANY (ARRAY(SELECT p FROM sp)) RETURNING s.id, s.line_id, l.reseller_id)"
	" SELECT count(frontdesk.line_event($1, 6, e.line_id, e.reseller_id, e.id, 0)) FROM e",
	1,
};
static const fd_sql_t SQL_SWEEP_OLD = {
	"linesd_sweep_old",
	"WITH a AS (DELETE FROM frontdesk.sessions WHERE tenant_id = $1 AND ended_at < now() - interval '1 hour'),"
	" b AS (DELETE FROM frontdesk.playback_failures WHERE tenant_id = $1"
	"        AND window_start < now() - interval '1 day')"
	" SELECT 1",
	1,
};

typedef struct sweep_q {
	const char *params[2];
} sweep_q_t;

static int sweep_tx(fd_tx_t *tx, void *arg)
{
	sweep_q_t *q = arg;
	int rc;
	if ((rc = fd_tx_exec(tx, &SQL_SWEEP_TIMEOUTS, q->params, 0, NULL)) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_SWEEP_EXPIRED, q->params, 0, NULL)) < 0 ||
	    (rc = fd_tx_exec(tx, &SQL_SWEEP_SUSPENDED, q->params, 0, NULL)) < 0)
		return rc;
	return fd_tx_exec(tx, &SQL_SWEEP_OLD, q->params, FD_TX_LAST, NULL);
}

void sessions_sweep(linesd_t *l)
{
	fd_arena_t arena;
	fd_arena_init(&arena, 0);
	int64_t *tenants;
	int nt;
	if (linesd_tenant_ids(l, &arena, &tenants, &nt) == 0) {
		char timeout[24];
		snprintf(timeout, sizeof(timeout), "%" PRId64, l->cfg->session_timeout);
		for (int t = 0; t < nt && !l->stopping; t++) {
			sweep_q_t q = { { fd_arena_printf(&arena, "%" PRId64, tenants[t]), timeout } };
			fd_err_t err = { 0 };
			if (q.params[0] && fd_db_run(l->db, tenants[t], sweep_tx, &q, &err) < 0)
				fd_warn("tenant %" PRId64 ": sweep failed: %s", tenants[t], err.msg);
		}
	}
	fd_arena_free(&arena);
}
