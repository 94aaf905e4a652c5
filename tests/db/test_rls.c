/* test_rls.c - row-level security as a service sees it: through
 * fd_tenant_run as frontdesk_linesd with tenant A, tenant B's rows are
 * invisible and unwritable; with no tenant set a tenant query fails (not an
 * empty result); a partition cannot be queried directly. */
#include <stdlib.h>
#include <string.h>
#include "dbtest.h"
#include "fd/tenant.h"
#include "test.h"

static const fd_sql_t SQL_COUNT_EVENTS = { "t_count_events",
	"SELECT count(*) FROM frontdesk.audit_events", 0 };
/* The same statement wrongly marked platform-level: it reaches PostgreSQL
 * without a tenant, which must still refuse it (the second wall). */
static const fd_sql_t SQL_COUNT_EVENTS_MISMARKED = { "t_count_events_mismarked",
	"SELECT count(*) FROM frontdesk.audit_events", 0, FD_SQL_PLATFORM };
static const fd_sql_t SQL_COUNT_EVENTS_OF = { "t_count_events_of",
	"SELECT count(*) FROM frontdesk.audit_events WHERE tenant_id = $1", 1 };
static const fd_sql_t SQL_ADD_EVENT = { "t_add_event",
	"INSERT INTO frontdesk.audit_events (tenant_id, actor, action) VALUES ($1, 'service:linesd', $2)", 2 };
static const fd_sql_t SQL_UPDATE_NOTES_OF = { "t_update_notes_of",
	"UPDATE frontdesk.notes SET body = 'hacked' WHERE tenant_id = $1", 1 };
static const fd_sql_t SQL_DELETE_NOTES_OF = { "t_delete_notes_of",
	"DELETE FROM frontdesk.notes WHERE tenant_id = $1", 1 };
static const fd_sql_t SQL_UPDATE_ALL_NOTES = { "t_update_all_notes",
	"UPDATE frontdesk.notes SET body = body || '!'", 0 };
static const fd_sql_t SQL_MOVE_NOTES = { "t_move_notes",
	"UPDATE frontdesk.notes SET tenant_id = $1", 1 };
static const fd_sql_t SQL_PARTITION = { "t_partition",
	"SELECT count(*) FROM frontdesk.audit_events_p0", 0 };
static const fd_sql_t SQL_PLATFORM = { "t_platform",
	"SELECT slug FROM frontdesk.tenants WHERE id = 0", 0, FD_SQL_PLATFORM };
static const fd_sql_t SQL_SET_TENANT_UPDATE = { "t_tenant_update",
	"UPDATE frontdesk.tenants SET status = 'suspended'", 0, FD_SQL_PLATFORM };

static char ta[24], tb[24];
static int64_t tenant_a, tenant_b;

static int setup(dbtest_t *t)
{
	PGconn *a = t->admin;
	if (dbtest_migrate(t) < 0 ||
	    dbtest_exec(a, "INSERT INTO frontdesk.tenants (slug, name) VALUES ('alpha', 'A'), ('beta', 'B')") < 0)
		return -1;
	char *x = dbtest_value(a, "SELECT id FROM frontdesk.tenants WHERE slug = 'alpha'");
	char *y = dbtest_value(a, "SELECT id FROM frontdesk.tenants WHERE slug = 'beta'");
	if (!x || !y)
		return -1;
	snprintf(ta, sizeof(ta), "%s", x);
	snprintf(tb, sizeof(tb), "%s", y);
	tenant_a = atoll(x);
	tenant_b = atoll(y);
	free(x);
	free(y);
	char sql[1024];
	snprintf(sql, sizeof(sql),
	         "INSERT INTO frontdesk.audit_events (tenant_id, actor, action) VALUES "
	         "(%s, 'admin:1', 'a.one'), (%s, 'admin:1', 'a.two'), "
	         "(%s, 'admin:2', 'b.one'), (%s, 'admin:2', 'b.two'), (%s, 'admin:2', 'b.three')",
	         ta, ta, tb, tb, tb);
	if (dbtest_exec(a, sql) < 0)
		return -1;
	/* A tenant table made the way migrations make them, which the service
	 * role may also update and delete. */
	if (dbtest_exec(a, "SET ROLE frontdesk_owner") < 0 ||
	    dbtest_exec(a, "CREATE TABLE frontdesk.notes (tenant_id bigint NOT NULL, id bigint NOT NULL, "
	                   "body text NOT NULL, PRIMARY KEY (tenant_id, id))") < 0 ||
	    dbtest_exec(a, "CALL frontdesk.enable_tenant_rls('frontdesk.notes')") < 0 ||
	    dbtest_exec(a, "GRANT SELECT, INSERT, UPDATE, DELETE ON frontdesk.notes TO frontdesk_linesd") < 0 ||
	    dbtest_exec(a, "RESET ROLE") < 0)
		return -1;
	snprintf(sql, sizeof(sql), "INSERT INTO frontdesk.notes VALUES (%s, 1, 'a1'), (%s, 1, 'b1'), "
	         "(%s, 2, 'b2')", ta, tb, tb);
	return dbtest_exec(a, sql);
}

static void as_service(dbtest_t *t, bool prepared)
{
	const char *mode = prepared ? "prepared" : "unprepared";
	fd_err_t err = { 0 };
	fd_db_opts_t o = { .conninfo = dbtest_url(t, "frontdesk_linesd"), .pool_size = 1,
	                   .prepared = prepared, .application_name = "test_rls" };
	fd_db_t *db = fd_db_open(&o, &err);
	CHECK(db != NULL, "%s: open: %s", mode, err.msg);
	if (!db)
		return;

	/* A tenant statement in a transaction without a tenant is refused
	 * before it is sent, naming it. */
	dbtest_q_t q = { .sql = &SQL_COUNT_EVENTS };
	int rc = fd_db_run(db, FD_NO_TENANT, dbtest_q_fn, &q, &err);
	CHECK(rc == -FD_EINTERNAL && strstr(err.msg, "t_count_events needs a tenant"),
	      "%s: refused before it is sent: rc %d (%s)", mode, rc, err.msg);

	/* First thing on a fresh session, a statement that got past the first
	 * wall: the setting was never defined, PostgreSQL refuses. */
	q = (dbtest_q_t){ .sql = &SQL_COUNT_EVENTS_MISMARKED };
	rc = fd_db_run(db, FD_NO_TENANT, dbtest_q_fn, &q, &err);
	CHECK(rc == -FD_EINTERNAL && err.code == FD_EINTERNAL,
	      "%s: no tenant on a fresh session: rc %d value \"%s\" (%s)", mode, rc, q.value, err.msg);

	/* Tenant A sees its own rows only, without naming a tenant in the query. */
	char sql[200];
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM frontdesk.audit_events WHERE tenant_id = %s", ta);
	char *of_a = dbtest_value(t->admin, sql);
	q = (dbtest_q_t){ .sql = &SQL_COUNT_EVENTS };
	rc = fd_tenant_run(db, tenant_a, dbtest_q_fn, &q, &err);
	CHECK(rc == 0 && of_a && strcmp(q.value, of_a) == 0 && strcmp(of_a, "5") != 0,
	      "%s: A counts its own %s events of 5: rc %d, %s (%s)", mode, of_a ? of_a : "?", rc, q.value,
	      err.msg);
	free(of_a);
	q = (dbtest_q_t){ .sql = &SQL_COUNT_EVENTS_OF, .params = { tb } };
	rc = fd_tenant_run(db, tenant_a, dbtest_q_fn, &q, &err);
	CHECK(rc == 0 && strcmp(q.value, "0") == 0, "%s: B's events invisible to A: rc %d, %s", mode, rc,
	      q.value);

	/* The same pooled connection now holds '' for the setting: still an error. */
	q = (dbtest_q_t){ .sql = &SQL_COUNT_EVENTS_MISMARKED };
	rc = fd_db_run(db, FD_NO_TENANT, dbtest_q_fn, &q, &err);
	CHECK(rc == -FD_EINTERNAL, "%s: no tenant after a tenant transaction: rc %d value \"%s\"", mode, rc,
	      q.value);
	CHECK(strstr(err.msg, "no tenant") != NULL, "%s: the error says why: %s", mode, err.msg);

	/* Platform-level tables need no tenant. */
	q = (dbtest_q_t){ .sql = &SQL_PLATFORM };
	rc = fd_db_run(db, FD_NO_TENANT, dbtest_q_fn, &q, &err);
	CHECK(rc == 0 && strcmp(q.value, "platform") == 0, "%s: tenants readable: rc %d (%s)", mode, rc,
	      err.msg);

	/* Writes to B's rows touch nothing. */
	q = (dbtest_q_t){ .sql = &SQL_UPDATE_NOTES_OF, .params = { tb } };
	rc = fd_tenant_run(db, tenant_a, dbtest_q_fn, &q, &err);
	CHECK(rc == 0 && strcmp(q.affected, "0") == 0, "%s: UPDATE of B's rows: rc %d, %s rows", mode, rc,
	      q.affected);
	q = (dbtest_q_t){ .sql = &SQL_DELETE_NOTES_OF, .params = { tb } };
	rc = fd_tenant_run(db, tenant_a, dbtest_q_fn, &q, &err);
	CHECK(rc == 0 && strcmp(q.affected, "0") == 0, "%s: DELETE of B's rows: rc %d, %s rows", mode, rc,
	      q.affected);
	q = (dbtest_q_t){ .sql = &SQL_UPDATE_ALL_NOTES };
	rc = fd_tenant_run(db, tenant_a, dbtest_q_fn, &q, &err);
	CHECK(rc == 0 && strcmp(q.affected, "1") == 0, "%s: UPDATE of every row reaches A's only: %s rows",
	      mode, q.affected);
	snprintf(sql, sizeof(sql), "SELECT string_agg(body, ',' ORDER BY id) FROM frontdesk.notes "
	         "WHERE tenant_id = %s", tb);
	CHECK(dbtest_is(t->admin, sql, "b1,b2"), "%s: B's notes unchanged", mode);

	/* Rows may not be written into, or moved to, another tenant. */
	q = (dbtest_q_t){ .sql = &SQL_ADD_EVENT, .params = { tb, "sneaky" } };
	rc = fd_tenant_run(db, tenant_a, dbtest_q_fn, &q, &err);
	CHECK(rc == -FD_EPERM && err.code == FD_EPERM, "%s: INSERT as B: rc %d (%s)", mode, rc, err.msg);
	q = (dbtest_q_t){ .sql = &SQL_MOVE_NOTES, .params = { tb } };
	rc = fd_tenant_run(db, tenant_a, dbtest_q_fn, &q, &err);
	CHECK(rc == -FD_EPERM, "%s: moving A's row to B: rc %d (%s)", mode, rc, err.msg);
	q = (dbtest_q_t){ .sql = &SQL_ADD_EVENT, .params = { ta, mode } };
	rc = fd_tenant_run(db, tenant_a, dbtest_q_fn, &q, &err);
	CHECK(rc == 0 && strcmp(q.affected, "1") == 0, "%s: INSERT as A: rc %d (%s)", mode, rc, err.msg);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM frontdesk.audit_events WHERE action = 'sneaky'");
	CHECK(dbtest_is(t->admin, sql, "0"), "%s: nothing written for B", mode);

	/* A partition directly: no privilege (it would skip the policy). */
	q = (dbtest_q_t){ .sql = &SQL_PARTITION };
	rc = fd_tenant_run(db, tenant_a, dbtest_q_fn, &q, &err);
	CHECK(rc == -FD_EPERM, "%s: SELECT on a partition: rc %d value \"%s\"", mode, rc, q.value);

	/* linesd reads tenants but does not change them (authd does). */
	q = (dbtest_q_t){ .sql = &SQL_SET_TENANT_UPDATE };
	rc = fd_db_run(db, FD_NO_TENANT, dbtest_q_fn, &q, &err);
	CHECK(rc == -FD_EPERM, "%s: linesd updating tenants: rc %d", mode, rc);

	/* Not a tenant: refused before anything runs. */
	q = (dbtest_q_t){ .sql = &SQL_COUNT_EVENTS };
	rc = fd_tenant_run(db, -1, dbtest_q_fn, &q, &err);
	CHECK(rc == -FD_EINVAL && q.calls == 0, "%s: tenant -1: rc %d, %d calls", mode, rc, q.calls);

	fd_db_close(db);
}

int main(void)
{
	dbtest_t t;
	int rc = dbtest_init(&t, "rls");
	if (rc != 0)
		return rc == DBTEST_SKIP ? DBTEST_SKIP : 1;
	rc = setup(&t);
	CHECK(rc == 0, "setup");
	if (rc == 0) {
		as_service(&t, true);
		as_service(&t, false);
	}
	dbtest_done(&t);
	return test_summary();
}
