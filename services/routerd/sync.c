/* sync.c - this replica's table kept in agreement with the database and
 * the other replicas (sync.h): loading, the listener, sharing and
 * persisting heartbeats. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "sync.h"
#include "index.h"
#include "store.h"
#include "watch.h"
#include "fd/listen.h"
#include "fd/log.h"
#include "fd/tenant.h"

#define PAYLOAD_MAX 7800           /* NOTIFY payloads must stay under 8000 bytes */
#define MAX_CLOSED 1024

typedef struct closed_note {
	int64_t tenant, id, at;
} closed_note_t;

struct routerd_sync {
	routerd_t *rd;
	char replica[17];
	fd_listener_t *listener;
	_Atomic bool stop;

	pthread_t sharer;
	bool sharer_started;
	pthread_mutex_t qmu;
	pthread_cond_t qcv;
	bool urgent;
	closed_note_t closed[MAX_CLOSED];
	int nclosed;
};

/* ---- reading the database into the table ---- */

/* Applies row i: a new node, or newer settings (write lock held). */
static int apply_row(routerd_t *rd, const store_nodes_t *rows, int i)
{
	int64_t tenant = store_node_tenant(rows, i), id = store_node_id(rows, i);
	rnode_t *n = table_get(&rd->tbl, id);
	if (n && n->tenant != tenant)
		return 0;   /* ids are global: cannot happen */
	if (n && n->cfg->version >= store_node_version(rows, i))
		return 0;
	rcfg_t *c = store_node_cfg(rows, i, &rd->regions), *old;
	if (!c)
		return -FD_EEXHAUSTED;
	int rc = table_put(&rd->tbl, tenant, id, c, &n, &old);
	if (rc < 0)
		return rc;
	/* The last persisted heartbeat, when newer than what this replica has. */
	rlive_t live;
	store_node_live(rows, i, &live);
	node_take_live(n, &live);
	watch_emit(rd, n, cfg_change_event(old, c), c->state != (old ? old->state : STATE_ACTIVE) ? c->state_reason : "");
	cfg_free(old);
	return 0;
}

struct load_q {
	routerd_t *rd;
	int64_t tenant, id;           /* id 0: every node of the tenant; -1: its settings only */
	bool found;
};

static int load_tx(fd_tx_t *tx, void *arg)
{
	struct load_q *q = arg;
	store_nodes_t rows = { 0 };
	rtenant_t s;
	int rc = 0;
	if (q->id >= 0)
		rc = store_read_nodes(tx, q->tenant, q->id, 0, &rows);
	if (rc < 0 || (rc = store_read_tenant(tx, q->tenant, FD_TX_LAST, &s)) < 0)
		return rc;
	pthread_rwlock_wrlock(&q->rd->tbl.lock);
	rc = table_set_tenant(&q->rd->tbl, &s);
	for (int i = 0; rc == 0 && i < rows.n; i++)
		rc = apply_row(q->rd, &rows, i);
	pthread_rwlock_unlock(&q->rd->tbl.lock);
	q->found = rows.n > 0;
	return rc < 0 ? fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory loading nodes") : 0;
}

static int load(routerd_t *rd, int64_t tenant, int64_t id, bool *found, fd_err_t *err)
{
	struct load_q q = { rd, tenant, id, false };
	fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_real_ms() + 10000, .read_only = true };
	int rc = fd_tenant_run_opts(rd->db, &o, load_tx, &q, err);
	if (found)
		*found = q.found;
	return rc;
}

static int tenant_ids_tx(fd_tx_t *tx, void *arg)
{
	return store_tenant_ids(tx, FD_TX_LAST, arg);
}

int sync_load_all(routerd_t *rd, fd_err_t *err)
{
	int64_t *ids = NULL;
	fd_tx_opts_t o = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_real_ms() + 10000, .read_only = true };
	int rc = fd_db_run_opts(rd->db, &o, tenant_ids_tx, &ids, err);
	for (size_t i = 0; rc == 0 && ids[i] >= 0; i++)
		rc = load(rd, ids[i], 0, NULL, err);
	free(ids);
	return rc;
}

int sync_reload_node(routerd_t *rd, int64_t tenant, int64_t id, fd_err_t *err)
{
	bool found;
	int rc = load(rd, tenant, id, &found, err);
	if (rc == 0 && !found)
		return fd_err_set(err, FD_ENOTFOUND, "node %" PRId64 " not found", id);
	return rc;
}

int sync_reload_tenant(routerd_t *rd, int64_t tenant, fd_err_t *err)
{
	return load(rd, tenant, -1, NULL, err);
}

/* ---- sharing heartbeats ---- */

struct notify_q {
	char **payloads;
	size_t n;
};

static int notify_tx(fd_tx_t *tx, void *arg)
{
	struct notify_q *q = arg;
	for (size_t i = 0; i < q->n; i++) {
		int rc = store_notify(tx, q->payloads[i], i + 1 == q->n ? FD_TX_LAST : 0);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void notify_all(struct routerd_sync *s, char **payloads, size_t n)
{
	if (n == 0)
		return;
	struct notify_q q = { payloads, n };
	fd_err_t err;
	fd_tx_opts_t o = { .tenant_id = FD_NO_TENANT, .deadline_ms = fd_real_ms() + 2000 };
	if (fd_db_run_opts(s->rd->db, &o, notify_tx, &q, &err) < 0)
		fd_warn("routerd: cannot share heartbeats with the other replicas: %s", err.msg);
}

/* Appends to a growing list of payloads; starts a new one when full. */
typedef struct payloads {
	char **v;
	size_t n, cap;
	size_t len;                   /* of v[n-1] */
	const char *head;
} payloads_t;

static bool pl_add(payloads_t *p, const char *rec)
{
	size_t rl = strlen(rec);
	if (!p->n || p->len + 1 + rl > PAYLOAD_MAX) {
		if (p->n == p->cap) {
			size_t cap = p->cap ? p->cap * 2 : 8;
			char **v = realloc(p->v, cap * sizeof(*v));
			if (!v)
				return false;
			p->v = v;
			p->cap = cap;
		}
		if (!(p->v[p->n] = malloc(PAYLOAD_MAX + 64)))
			return false;
		p->len = (size_t)snprintf(p->v[p->n], PAYLOAD_MAX + 64, "%s", p->head);
		p->n++;
	}
	char *cur = p->v[p->n - 1];
	cur[p->len++] = ' ';
	memcpy(cur + p->len, rec, rl + 1);
	p->len += rl;
	return true;
}

static void pl_free(payloads_t *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i]);
	free(p->v);
}

static void share(struct routerd_sync *s)
{
	routerd_t *rd = s->rd;
	char head[40];
	snprintf(head, sizeof(head), "hb %s", s->replica);
	payloads_t p = { .head = head };
	char rec[96 + MAX_SHARES * 32];
	pthread_rwlock_rdlock(&rd->tbl.lock);
	for (size_t i = 0; i < rd->tbl.n; i++) {
		rnode_t *n = rd->tbl.nodes[i];
		if (!atomic_exchange(&n->share_dirty, false))
			continue;
		pthread_mutex_lock(&n->mu);
		int len = snprintf(rec, sizeof(rec), "%" PRId64 ",%" PRId64 ",%" PRId64 ",%d,%.3f,%.1f,%d", n->tenant, n->id,
		                   atomic_load(&n->hb_ms), atomic_load(&n->conn), atomic_load(&n->egress),
		                   atomic_load(&n->cpu), atomic_load(&n->overloaded) ? 1 : 0);
		for (int k = 0; k < n->nshares && len < (int)sizeof(rec) - 32; k++)
			len += snprintf(rec + len, sizeof(rec) - (size_t)len, ",%" PRId64 ":%d", n->shares[k].tenant,
			                n->shares[k].viewers);
		pthread_mutex_unlock(&n->mu);
		if (!pl_add(&p, rec))
			break;
	}
	pthread_rwlock_unlock(&rd->tbl.lock);
	/* Closed streams. */
	pthread_mutex_lock(&s->qmu);
	closed_note_t notes[MAX_CLOSED];
	int nn = s->nclosed;
	memcpy(notes, s->closed, sizeof(*notes) * (size_t)nn);
	s->nclosed = 0;
	pthread_mutex_unlock(&s->qmu);
	/* Closed streams first, in payloads of their own: the others mark the
	 * nodes DOWN without waiting for anything else. */
	char chead[40];
	snprintf(chead, sizeof(chead), "closed %s", s->replica);
	payloads_t c = { .head = chead };
	for (int i = 0; i < nn; i++) {
		snprintf(rec, sizeof(rec), "%" PRId64 ",%" PRId64 ",%" PRId64, notes[i].tenant, notes[i].id, notes[i].at);
		if (!pl_add(&c, rec))
			break;
	}
	notify_all(s, c.v, c.n);
	pl_free(&c);
	notify_all(s, p.v, p.n);
	pl_free(&p);
}

/* ---- persisting heartbeats ---- */

struct persist_q {
	fd_arena_t *arena;
	int64_t tenant;
	const store_live_t *v;
	size_t n;
};

static int persist_tx(fd_tx_t *tx, void *arg)
{
	struct persist_q *q = arg;
	return store_persist_live(tx, q->arena, q->tenant, q->v, q->n, FD_TX_LAST);
}

/* Writes the dirty nodes of each tenant, one transaction per tenant. */
static void persist(struct routerd_sync *s)
{
	routerd_t *rd = s->rd;
	fd_arena_t arena, *a = &arena;
	size_t i = 0;
	for (;;) {
		fd_arena_init(a, (size_t)256 << 20);
		pthread_rwlock_rdlock(&rd->tbl.lock);
		/* The next tenant with dirty nodes, from position i. */
		while (i < rd->tbl.n && !atomic_load(&rd->tbl.nodes[i]->persist_dirty))
			i++;
		if (i >= rd->tbl.n) {
			pthread_rwlock_unlock(&rd->tbl.lock);
			fd_arena_free(a);
			break;
		}
		int64_t tenant = rd->tbl.nodes[i]->tenant;
		size_t lo, hi;
		table_range(&rd->tbl, tenant, &lo, &hi);
		store_live_t *v = fd_arena_alloc(a, sizeof(*v) * (hi - i));
		size_t k = 0;
		for (size_t j = i; v && j < hi; j++) {
			rnode_t *n = rd->tbl.nodes[j];
			if (!atomic_exchange(&n->persist_dirty, false))
				continue;
			v[k].id = n->id;
			v[k].l = (rlive_t){
				.hb_ms = atomic_load(&n->hb_ms), .closed_ms = atomic_load(&n->closed_ms),
				.conn = atomic_load(&n->conn), .egress = atomic_load(&n->egress), .cpu = atomic_load(&n->cpu),
				.overloaded = atomic_load(&n->overloaded),
			};
			k++;
		}
		i = hi;
		pthread_rwlock_unlock(&rd->tbl.lock);
		struct persist_q q = { a, tenant, v, k };
		fd_err_t err;
		fd_tx_opts_t o = { .tenant_id = tenant, .deadline_ms = fd_real_ms() + 5000 };
		if (k > 0 && fd_tenant_run_opts(rd->db, &o, persist_tx, &q, &err) < 0)
			fd_warn("routerd: cannot write the last heartbeats of tenant %" PRId64 ": %s", tenant, err.msg);
		fd_arena_free(a);
	}
}

static void *sharer_main(void *arg)
{
	struct routerd_sync *s = arg;
	const routerd_config_t *cfg = s->rd->cfg;
	int64_t next_share = fd_mono_ms() + cfg->share_ms, next_persist = fd_mono_ms() + cfg->persist_ms;
	pthread_mutex_lock(&s->qmu);
	while (!atomic_load(&s->stop)) {
		int64_t now = fd_mono_ms();
		if (!s->urgent && now < next_share) {
			int64_t wait = next_share - now;
			struct timespec until = fd_real_after(wait);
			pthread_cond_timedwait(&s->qcv, &s->qmu, &until);
			continue;
		}
		s->urgent = false;
		pthread_mutex_unlock(&s->qmu);
		share(s);
		next_share = fd_mono_ms() + cfg->share_ms;
		if (fd_mono_ms() >= next_persist) {
			persist(s);
			next_persist = fd_mono_ms() + cfg->persist_ms;
		}
		pthread_mutex_lock(&s->qmu);
	}
	pthread_mutex_unlock(&s->qmu);
	return NULL;
}

void sync_urgent(routerd_t *rd)
{
	struct routerd_sync *s = rd->sync;
	if (!s)
		return;
	pthread_mutex_lock(&s->qmu);
	s->urgent = true;
	pthread_cond_signal(&s->qcv);
	pthread_mutex_unlock(&s->qmu);
}

void sync_stream_closed(routerd_t *rd, int64_t tenant, int64_t id, int64_t at_ms)
{
	struct routerd_sync *s = rd->sync;
	if (!s)
		return;
	pthread_mutex_lock(&s->qmu);
	if (s->nclosed < MAX_CLOSED)
		s->closed[s->nclosed++] = (closed_note_t){ tenant, id, at_ms };
	s->urgent = true;
	pthread_cond_signal(&s->qcv);
	pthread_mutex_unlock(&s->qmu);
}

/* ---- notifications ---- */

/* One "tenant,id,at,conn,egress,cpu,over[,t:v...]" record of another replica. */
static void apply_record(routerd_t *rd, char *rec)
{
	int64_t tenant, id, at;
	int conn, over, used = 0;
	double egress, cpu;
	if (sscanf(rec, "%" SCNd64 ",%" SCNd64 ",%" SCNd64 ",%d,%lf,%lf,%d%n", &tenant, &id, &at, &conn, &egress, &cpu,
	           &over, &used) != 7)
		return;
	pthread_rwlock_rdlock(&rd->tbl.lock);
	rnode_t *n = table_get(&rd->tbl, id);
	if (n && n->tenant == tenant) {
		pthread_mutex_lock(&n->mu);
		if (at > atomic_load(&n->hb_ms)) {
			atomic_store(&n->conn, conn);
			atomic_store(&n->egress, egress);
			atomic_store(&n->cpu, cpu);
			atomic_store(&n->overloaded, over != 0);
			atomic_store(&n->pend_conn, 0);
			atomic_store(&n->pend_kbps, 0);
			n->nshares = 0;
			n->viewers_total = 0;
			for (char *p = rec + used; *p == ',' && n->nshares < MAX_SHARES;) {
				int64_t t;
				int v, u = 0;
				if (sscanf(p, ",%" SCNd64 ":%d%n", &t, &v, &u) != 2 || u == 0)
					break;
				n->shares[n->nshares++] = (rshare_t){ t, v };
				n->viewers_total += v;
				p += u;
			}
			atomic_store(&n->hb_ms, at);
		}
		pthread_mutex_unlock(&n->mu);
		index_touch(n);
	}
	pthread_rwlock_unlock(&rd->tbl.lock);
}

static void on_notify(void *arg, const char *payload)
{
	struct routerd_sync *s = arg;
	routerd_t *rd = s->rd;
	fd_err_t err;
	int64_t tenant, id, at;
	char replica[17];
	int used = 0;
	if (sscanf(payload, "node %" SCNd64 " %" SCNd64, &tenant, &id) == 2) {
		if (sync_reload_node(rd, tenant, id, &err) < 0)
			fd_warn("routerd: cannot read node %" PRId64 " after its change: %s", id, err.msg);
	} else if (sscanf(payload, "tenant %" SCNd64, &tenant) == 1) {
		if (sync_reload_tenant(rd, tenant, &err) < 0)
			fd_warn("routerd: cannot read tenant %" PRId64 "'s routing settings: %s", tenant, err.msg);
	} else if (sscanf(payload, "closed %16s%n", replica, &used) == 1 && used > 0) {
		if (strcmp(replica, s->replica) == 0)
			return;
		char *copy = strdup(payload + used);
		for (char *save = NULL, *rec = copy ? strtok_r(copy, " ", &save) : NULL; rec; rec = strtok_r(NULL, " ", &save)) {
			if (sscanf(rec, "%" SCNd64 ",%" SCNd64 ",%" SCNd64, &tenant, &id, &at) != 3)
				continue;
			pthread_rwlock_rdlock(&rd->tbl.lock);
			rnode_t *n = table_get(&rd->tbl, id);
			if (n && n->tenant == tenant && at > atomic_load(&n->closed_ms)) {
				atomic_store(&n->closed_ms, at);
				index_touch(n);
			}
			pthread_rwlock_unlock(&rd->tbl.lock);
		}
		free(copy);
	} else if (sscanf(payload, "hb %16s%n", replica, &used) == 1 && used > 0) {
		if (strcmp(replica, s->replica) == 0)
			return;
		char *copy = strdup(payload + used);
		for (char *save = NULL, *rec = copy ? strtok_r(copy, " ", &save) : NULL; rec; rec = strtok_r(NULL, " ", &save))
			apply_record(rd, rec);
		free(copy);
	}
}

static void on_up(void *arg)
{
	struct routerd_sync *s = arg;
	fd_err_t err;
	if (sync_load_all(s->rd, &err) < 0)
		fd_warn("routerd: cannot read the nodes again after reconnecting: %s", err.msg);
}

/* ---- life ---- */

int sync_init(routerd_t *rd, fd_err_t *err)
{
	struct routerd_sync *s = calloc(1, sizeof(*s));
	if (!s)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	s->rd = rd;
	unsigned char rnd[8];
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(s->replica, sizeof(s->replica), rnd, sizeof(rnd));
	atomic_init(&s->stop, false);
	pthread_mutex_init(&s->qmu, NULL);
	pthread_cond_init(&s->qcv, NULL);
	rd->sync = s;   /* sync_fini frees it from here on */
	const fd_service_config_t *cfg = &rd->cfg->common;
	fd_listen_opts_t lo = {
		.channel = "frontdesk_nodes", .application_name = "routerd-listen",
		.database_url = cfg->database_url, .db_user = cfg->db_user, .db_password = cfg->db_password,
		.up = on_up, .notify = on_notify, .arg = s,
	};
	if (!(s->listener = fd_listener_start(&lo, err)))
		return -FD_EINTERNAL;
	if (pthread_create(&s->sharer, NULL, sharer_main, s) != 0)
		return fd_err_set(err, FD_EINTERNAL, "cannot start the heartbeat sharing thread");
	s->sharer_started = true;
	return 0;
}

/* After the server stopped: every stream's closed() has run. */
void sync_fini(routerd_t *rd)
{
	struct routerd_sync *s = rd ? rd->sync : NULL;
	if (!s)
		return;
	pthread_mutex_lock(&s->qmu);
	atomic_store(&s->stop, true);
	pthread_cond_broadcast(&s->qcv);
	pthread_mutex_unlock(&s->qmu);
	if (s->sharer_started)
		pthread_join(s->sharer, NULL);
	fd_listener_stop(s->listener);
	pthread_mutex_destroy(&s->qmu);
	pthread_cond_destroy(&s->qcv);
	rd->sync = NULL;
	free(s);
}
