/* test_idem.c - the one idempotency scheme (tenants/fd/idem.h) as a service
 * role sees it: a replay answers the first result, another request under
 * the key is refused, six identical calls at once do the work once and all
 * answer it, a first that rolls back leaves the key to the next, a stored
 * answer comes back byte for byte, and each service sees its own keys only. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "dbtest.h"
#include "fd/idem.h"
#include "fd/tenant.h"
#include "test.h"

static dbtest_t T;
static int64_t tenant;
static _Atomic int work_done;

static const char H1[] = "1111111111111111111111111111111111111111111111111111111111111111";
static const char H2[] = "2222222222222222222222222222222222222222222222222222222222222222";

typedef struct call {
	fd_idem_t k;
	fd_arena_t arena;
	int64_t new_id;               /* what the work "creates" */
	bool fail_after_claim;        /* roll back after claiming (a first that fails) */
	int hold_ms;                  /* how long the work holds the claim */
	const ProtobufCBinaryData *response;
	int rc;                       /* fd_idem_claim's */
	fd_idem_replay_t first;
	int64_t answer;               /* the id this call answers with */
} call_t;

static int call_tx(fd_tx_t *tx, void *arg)
{
	call_t *c = arg;
	c->rc = fd_idem_claim(tx, &c->k, &c->first);
	if (c->rc < 0)
		return c->rc;
	if (c->rc == 1) {
		c->answer = c->first.result_id;
		return 0;
	}
	if (c->hold_ms)
		usleep((useconds_t)c->hold_ms * 1000);
	if (c->fail_after_claim)
		return fd_err_set(fd_tx_err(tx), FD_EPRECOND, "test: the first fails");
	atomic_fetch_add(&work_done, 1);
	c->answer = c->new_id;
	return fd_idem_done(tx, &c->k, c->new_id, c->response, 0);
}

static void setup_call(call_t *c, const char *service, const char *key, const char *hash, int64_t id)
{
	memset(c, 0, sizeof(*c));
	fd_arena_init(&c->arena, 1 << 20);
	c->k = (fd_idem_t){ .service = service, .key = key, .hash = hash, .arena = &c->arena };
	c->new_id = id;
}

typedef struct runner {
	fd_db_t *db;
	call_t *c;
	pthread_barrier_t *go;
	int rc;
	fd_err_t err;
} runner_t;

static void *run(void *arg)
{
	runner_t *r = arg;
	if (r->go)
		pthread_barrier_wait(r->go);
	r->rc = fd_tenant_run(r->db, tenant, call_tx, r->c, &r->err);
	return NULL;
}

int main(void)
{
	int rc = dbtest_init(&T, "idem");
	if (rc != 0)
		return rc == DBTEST_SKIP ? DBTEST_SKIP : 1;
	if (dbtest_migrate(&T) < 0 || dbtest_exec(T.admin, "INSERT INTO frontdesk.tenants (slug, name) VALUES ('it', 'I')") < 0) {
		CHECK(false, "setup");
		dbtest_done(&T);
		return test_summary();
	}
	char *tv = dbtest_value(T.admin, "SELECT id FROM frontdesk.tenants WHERE slug = 'it'");
	tenant = tv ? atoll(tv) : 1;
	free(tv);
	fd_err_t err = { 0 };
	fd_db_opts_t o = { .conninfo = dbtest_url(&T, "frontdesk_linesd"), .pool_size = 8, .prepared = true };
	fd_db_t *db = fd_db_open(&o, &err);
	CHECK(db != NULL, "open: %s", err.msg);
	if (!db)
		goto out;

	/* First call, replay, another request under the key. */
	call_t c;
	setup_call(&c, "linesd", "CreateStream/acct:7/k1", H1, 101);
	rc = fd_tenant_run(db, tenant, call_tx, &c, &err);
	CHECK(rc == 0 && c.rc == 0 && c.answer == 101, "first call claims and works: rc %d/%d (%s)", rc, c.rc, err.msg);
	fd_arena_free(&c.arena);
	setup_call(&c, "linesd", "CreateStream/acct:7/k1", H1, 999);
	rc = fd_tenant_run(db, tenant, call_tx, &c, &err);
	CHECK(rc == 0 && c.rc == 1 && c.answer == 101, "replay answers the first id: rc %d/%d answer %" PRId64, rc,
	      c.rc, c.answer);
	fd_arena_free(&c.arena);
	setup_call(&c, "linesd", "CreateStream/acct:7/k1", H2, 999);
	rc = fd_tenant_run(db, tenant, call_tx, &c, &err);
	CHECK(rc == -FD_EPRECOND && strstr(err.msg, "different request"), "another request: rc %d (%s)", rc, err.msg);
	fd_arena_free(&c.arena);
	CHECK(atomic_load(&work_done) == 1, "the work ran once: %d", atomic_load(&work_done));

	/* Six identical calls at once: one does the work, all answer it. */
	enum { N = 6 };
	call_t calls[N];
	runner_t runners[N];
	pthread_t th[N];
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, N);
	atomic_store(&work_done, 0);
	for (int i = 0; i < N; i++) {
		setup_call(&calls[i], "linesd", "CreateLine/acct:7/burst", H1, 200 + i);
		calls[i].hold_ms = 300;       /* the winner holds its claim while the others arrive */
		runners[i] = (runner_t){ .db = db, .c = &calls[i], .go = &go };
		pthread_create(&th[i], NULL, run, &runners[i]);
	}
	int64_t answer = -1;
	bool same = true;
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		CHECK(runners[i].rc == 0, "burst call %d: rc %d (%s)", i, runners[i].rc, runners[i].err.msg);
		if (answer < 0)
			answer = calls[i].answer;
		same &= calls[i].answer == answer;
		fd_arena_free(&calls[i].arena);
	}
	pthread_barrier_destroy(&go);
	CHECK(atomic_load(&work_done) == 1 && same && answer >= 200,
	      "6 at once: work once (%d), one answer for all (%s, %" PRId64 ")", atomic_load(&work_done),
	      same ? "same" : "differ", answer);

	/* A first that rolls back leaves the key to the next one, which waited. */
	atomic_store(&work_done, 0);
	call_t a, b;
	setup_call(&a, "linesd", "ExtendLine/acct:7/rb", H1, 301);
	a.hold_ms = 300;
	a.fail_after_claim = true;
	setup_call(&b, "linesd", "ExtendLine/acct:7/rb", H1, 302);
	runner_t ra = { .db = db, .c = &a }, rb = { .db = db, .c = &b };
	pthread_t ta, tb;
	pthread_create(&ta, NULL, run, &ra);
	usleep(100 * 1000);
	pthread_create(&tb, NULL, run, &rb);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	CHECK(ra.rc == -FD_EPRECOND && rb.rc == 0 && b.rc == 0 && b.answer == 302 && atomic_load(&work_done) == 1,
	      "after the first rolled back the second worked: %d, %d/%d answer %" PRId64, ra.rc, rb.rc, b.rc, b.answer);
	fd_arena_free(&a.arena);
	fd_arena_free(&b.arena);

	/* A stored answer comes back byte for byte. */
	static const uint8_t bytes[] = { 0x0a, 0x00, 0xff, 0x5c, 0x78, 0x27 };
	ProtobufCBinaryData resp = { sizeof(bytes), (uint8_t *)bytes };
	setup_call(&c, "linesd", "CreateApiKey/acct:7/r", H1, 0);
	c.response = &resp;
	rc = fd_tenant_run(db, tenant, call_tx, &c, &err);
	CHECK(rc == 0 && c.rc == 0, "answer stored: rc %d (%s)", rc, err.msg);
	fd_arena_free(&c.arena);
	setup_call(&c, "linesd", "CreateApiKey/acct:7/r", H1, 0);
	rc = fd_tenant_run(db, tenant, call_tx, &c, &err);
	CHECK(rc == 0 && c.rc == 1 && c.first.response.len == sizeof(bytes) &&
	      memcmp(c.first.response.data, bytes, sizeof(bytes)) == 0, "stored answer replayed: rc %d/%d len %zu", rc,
	      c.rc, c.first.response.len);
	fd_arena_free(&c.arena);

	/* No key: nothing claimed, the work just runs. */
	setup_call(&c, "linesd", NULL, NULL, 5);
	rc = fd_tenant_run(db, tenant, call_tx, &c, &err);
	CHECK(rc == 0 && c.rc == 0 && c.answer == 5, "no key: rc %d", rc);
	fd_arena_free(&c.arena);

	/* Outside a tenant transaction: refused. */
	setup_call(&c, "linesd", "X/acct:1/k", H1, 1);
	rc = fd_db_run(db, FD_NO_TENANT, call_tx, &c, &err);
	CHECK(rc == -FD_EINTERNAL, "no tenant: rc %d (%s)", rc, err.msg);
	fd_arena_free(&c.arena);

	/* Each service its own keys: routerd neither reads nor writes linesd's. */
	fd_db_opts_t ro = { .conninfo = dbtest_url(&T, "frontdesk_routerd"), .pool_size = 1, .prepared = true };
	fd_db_t *rdb = fd_db_open(&ro, &err);
	if (rdb) {
		setup_call(&c, "linesd", "CreateStream/acct:7/k1", H2, 9);
		rc = fd_tenant_run(rdb, tenant, call_tx, &c, &err);
		CHECK(rc == -FD_EPERM, "routerd claiming in linesd's name is refused: rc %d (%s)", rc, err.msg);
		fd_arena_free(&c.arena);
		setup_call(&c, "routerd", "CreateStream/acct:7/k1", H2, 9);
		rc = fd_tenant_run(rdb, tenant, call_tx, &c, &err);
		CHECK(rc == 0 && c.rc == 0, "the same key is routerd's own, unrelated: rc %d/%d (%s)", rc, c.rc, err.msg);
		fd_arena_free(&c.arena);
		fd_db_close(rdb);
	}
	char *n = dbtest_value(T.admin, "SELECT count(*) FROM frontdesk.idempotency");
	CHECK(n && strcmp(n, "5") == 0, "five keys stored (the no-key call and the refused ones store none): %s", n ? n : "?");
	free(n);
out:
	fd_db_close(db);
	dbtest_done(&T);
	return test_summary();
}
