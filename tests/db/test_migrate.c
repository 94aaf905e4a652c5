/* test_migrate.c - migrations: a fresh apply creates everything, a re-run
 * applies nothing, files run in version order, an edited, missing or
 * out-of-order migration is refused naming the file, a failing one is rolled
 * back, and two migrators at once apply each migration once. */
#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>
#include "dbtest.h"
#include "fd/migrate.h"
#include "test.h"

static char tmpdir[] = "/tmp/fdmigXXXXXX";

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[1200];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	CHECK(f != NULL, "cannot write %s", path);
}

static void remove_file(const char *dir, const char *name)
{
	char path[1200];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
}

static void sha256_file(const char *dir, const char *name, char hex[65])
{
	char path[1200];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	unsigned char buf[4096];
	size_t n;
	while (f && (n = fread(buf, 1, sizeof(buf), f)) > 0)
		crypto_hash_sha256_update(&st, buf, n);
	if (f)
		fclose(f);
	unsigned char h[32];
	crypto_hash_sha256_final(&st, h);
	sodium_bin2hex(hex, 65, h, 32);
}

/* Copies the source tree's migrations into dir; returns how many. */
static int copy_migrations(const char *from, const char *to)
{
	int n = 0;
	DIR *d = opendir(from);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len < 4 || strcmp(e->d_name + len - 4, ".sql") != 0)
			continue;
		char src[1200], dst[1200];
		snprintf(src, sizeof(src), "%s/%s", from, e->d_name);
		snprintf(dst, sizeof(dst), "%s/%s", to, e->d_name);
		FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
		char buf[4096];
		size_t r;
		while (in && out && (r = fread(buf, 1, sizeof(buf), in)) > 0)
			fwrite(buf, 1, r, out);
		if (in)
			fclose(in);
		if (out)
			fclose(out);
		n++;
	}
	if (d)
		closedir(d);
	return n;
}

static int apply(dbtest_t *t, const char *dir, int *applied, fd_err_t *err)
{
	fd_migrate_opts_t o = { .admin_url = dbtest_url(t, "postgres"), .dir = dir };
	memset(err, 0, sizeof(*err));
	return fd_migrate_apply(&o, applied, err);
}

static void fresh_apply(dbtest_t *t, int nsource)
{
	PGconn *a = t->admin;
	int n = -1;
	fd_err_t err;
	fd_migrate_opts_t o = { .admin_url = dbtest_url(t, "postgres"), .dir = t->migrations };
	o.password[2] = "linesd-pw";   /* frontdesk_linesd */
	int rc = fd_migrate_apply(&o, &n, &err);
	CHECK(rc == 0, "fresh apply: %s", err.msg);
	CHECK(n == nsource, "fresh apply applied %d of %d", n, nsource);

	char want[16], sum[65];
	snprintf(want, sizeof(want), "%d", nsource);
	CHECK(dbtest_is(a, "SELECT count(*) FROM frontdesk.schema_migrations", want), "recorded");
	sha256_file(t->migrations, "0001_init.sql", sum);
	char sql[300];
	snprintf(sql, sizeof(sql), "SELECT checksum = '%s' AND name = 'init' "
	         "FROM frontdesk.schema_migrations WHERE version = 1", sum);
	CHECK(dbtest_is(a, sql, "t"), "0001 recorded with its sha256");

	/* The owner owns the schema and everything in it; the service roles
	 * log in, bypass nothing and own nothing. */
	CHECK(dbtest_is(a, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'frontdesk'",
	                "frontdesk_owner"), "schema owner");
	CHECK(dbtest_is(a, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
	                "WHERE n.nspname = 'frontdesk' AND pg_get_userbyid(c.relowner) <> 'frontdesk_owner'", "0"),
	      "every relation owned by frontdesk_owner");
	CHECK(dbtest_is(a, "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
	                "WHERE n.nspname = 'frontdesk' AND pg_get_userbyid(p.proowner) <> 'frontdesk_owner'", "0"),
	      "every function owned by frontdesk_owner");
	CHECK(dbtest_is(a, "SELECT string_agg(rolname || ':' || rolcanlogin || rolsuper || rolbypassrls || "
	                "rolcreatedb || rolcreaterole, ',' ORDER BY rolname) FROM pg_roles "
	                "WHERE rolname LIKE 'frontdesk\\_%'",
	                "frontdesk_authd:truefalsefalsefalsefalse,frontdesk_billingd:truefalsefalsefalsefalse,"
	                "frontdesk_linesd:truefalsefalsefalsefalse,frontdesk_owner:falsefalsefalsefalsefalse,"
	                "frontdesk_routerd:truefalsefalsefalsefalse"), "role attributes");
	CHECK(dbtest_is(a, "SELECT count(*) FROM pg_class WHERE pg_get_userbyid(relowner) IN "
	                "('frontdesk_authd','frontdesk_billingd','frontdesk_linesd','frontdesk_routerd')", "0"),
	      "service roles own nothing");
	CHECK(dbtest_is(a, "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid "
	                "WHERE rolname = 'frontdesk_linesd'", "t"), "linesd password set as a SCRAM verifier");

	/* What 0001 makes. */
	CHECK(dbtest_is(a, "SELECT slug || '/' || status FROM frontdesk.tenants WHERE id = 0",
	                "platform/active"), "tenant 0 is the platform");
	CHECK(dbtest_is(a, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'frontdesk.audit_events'::regclass",
	                "8"), "audit_events has 8 hash partitions");
	CHECK(dbtest_is(a, "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class "
	                "WHERE oid = 'frontdesk.audit_events'::regclass", "t"), "audit_events RLS forced");
	CHECK(dbtest_is(a, "SELECT has_schema_privilege('public', 'frontdesk', 'CREATE')", "f"),
	      "PUBLIC may not create in the schema");
	PGresult *r = PQexec(a, "SELECT frontdesk.current_tenant()");
	const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	CHECK(st && strcmp(st, "FD000") == 0, "current_tenant() unset raises FD000, got %s", st ? st : "ok");
	PQclear(r);
	r = PQexec(a, "BEGIN; SELECT set_config('frontdesk.tenant_id', '', true); "
	           "SELECT frontdesk.current_tenant()");
	st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	CHECK(st && strcmp(st, "FD000") == 0, "current_tenant() of '' raises FD000, got %s", st ? st : "ok");
	PQclear(r);
	dbtest_exec(a, "ROLLBACK");
	CHECK(dbtest_is(a, "BEGIN; SELECT set_config('frontdesk.tenant_id', '42', true); "
	                "SELECT frontdesk.current_tenant()", "42"), "current_tenant() reads the setting");
	dbtest_exec(a, "ROLLBACK");

	/* Again: nothing to do, nothing touched. */
	char *at = dbtest_value(a, "SELECT applied_at FROM frontdesk.schema_migrations WHERE version = 1");
	rc = apply(t, t->migrations, &n, &err);
	CHECK(rc == 0 && n == 0, "re-run: rc %d, applied %d (%s)", rc, n, err.msg);
	char *at2 = dbtest_value(a, "SELECT applied_at FROM frontdesk.schema_migrations WHERE version = 1");
	CHECK(at && at2 && strcmp(at, at2) == 0, "re-run left applied_at alone");
	free(at);
	free(at2);

	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	o.password[2] = NULL;
	rc = fd_migrate_status(&o, f, &err);
	fclose(f);
	CHECK(rc == 0 && out && strstr(out, "0001 init") && strstr(out, "applied") && !strstr(out, "pending"),
	      "status: rc %d:\n%s", rc, out ? out : "");
	free(out);
}

static void rules(dbtest_t *t)
{
	PGconn *a = t->admin;
	int n = -1;
	fd_err_t err;
	char *dir = tmpdir;
	CHECK(mkdtemp(tmpdir) != NULL, "mkdtemp");
	copy_migrations(t->migrations, dir);
	/* 0003 needs 0002's table: run out of order, it fails. */
	write_file(dir, "9003_probe_more.sql", "INSERT INTO frontdesk.probe SELECT 3 FROM frontdesk.probe WHERE step = 2;\n");
	write_file(dir, "9002_probe.sql", "CREATE TABLE frontdesk.probe (step int);\nINSERT INTO frontdesk.probe VALUES (2);\n");
	int rc = apply(t, dir, &n, &err);
	CHECK(rc == 0 && n == 2, "applying 9002 and 9003: rc %d, %d applied (%s)", rc, n, err.msg);
	CHECK(dbtest_is(a, "SELECT string_agg(step::text, ',' ORDER BY step) FROM frontdesk.probe", "2,3"),
	      "migrations ran in version order");

	/* Edited after it was applied: refused, naming the file and both sums;
	 * the pending 0005 is not applied either. */
	char before[65], after[65];
	sha256_file(dir, "9002_probe.sql", before);
	write_file(dir, "9002_probe.sql", "CREATE TABLE frontdesk.probe (step int);\nINSERT INTO frontdesk.probe VALUES (2); -- edited\n");
	sha256_file(dir, "9002_probe.sql", after);
	write_file(dir, "9005_after.sql", "CREATE TABLE frontdesk.after (x int);\n");
	rc = apply(t, dir, &n, &err);
	CHECK(rc == -FD_EPRECOND && n == 0, "edited migration: rc %d, %d applied", rc, n);
	CHECK(strstr(err.msg, "9002_probe.sql") && strstr(err.msg, before) && strstr(err.msg, after),
	      "the error names the file and both checksums: %s", err.msg);
	CHECK(dbtest_is(a, "SELECT to_regclass('frontdesk.after') IS NULL", "t"), "0005 not applied");
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	fd_migrate_opts_t o = { .admin_url = dbtest_url(t, "postgres"), .dir = dir };
	rc = fd_migrate_status(&o, f, &err);
	fclose(f);
	CHECK(rc == -FD_EPRECOND && out && strstr(out, "edited") && strstr(out, "pending"),
	      "status shows edited and pending: rc %d\n%s", rc, out ? out : "");
	free(out);

	/* Restored: 0005 applies. */
	write_file(dir, "9002_probe.sql", "CREATE TABLE frontdesk.probe (step int);\nINSERT INTO frontdesk.probe VALUES (2);\n");
	rc = apply(t, dir, &n, &err);
	CHECK(rc == 0 && n == 1, "after restoring 9002: rc %d, %d applied (%s)", rc, n, err.msg);

	/* Applied but gone from disk: reported. */
	remove_file(dir, "9003_probe_more.sql");
	rc = apply(t, dir, &n, &err);
	CHECK(rc == -FD_EPRECOND && strstr(err.msg, "9003_probe_more.sql") && strstr(err.msg, "missing"),
	      "missing migration: rc %d: %s", rc, err.msg);
	write_file(dir, "9003_probe_more.sql", "INSERT INTO frontdesk.probe SELECT 3 FROM frontdesk.probe WHERE step = 2;\n");

	/* Older than the newest applied, never applied: refused. */
	write_file(dir, "9004_late.sql", "SELECT 1;\n");
	rc = apply(t, dir, &n, &err);
	CHECK(rc == -FD_EPRECOND && strstr(err.msg, "9004_late.sql"), "out of order: rc %d: %s", rc, err.msg);
	remove_file(dir, "9004_late.sql");

	/* A badly named file: refused before anything runs. */
	write_file(dir, "6_oops.sql", "SELECT 1;\n");
	rc = apply(t, dir, &n, &err);
	CHECK(rc == -FD_EINVAL && strstr(err.msg, "6_oops.sql"), "bad name: rc %d: %s", rc, err.msg);
	remove_file(dir, "6_oops.sql");

	/* A failing migration: rolled back whole, named with its line. */
	write_file(dir, "9006_bad.sql", "CREATE TABLE frontdesk.partial (x int);\nSELEC 1;\n");
	rc = apply(t, dir, &n, &err);
	CHECK(rc == -FD_EINTERNAL && strstr(err.msg, "9006_bad.sql") && strstr(err.msg, "line 2"),
	      "failing migration: rc %d: %s", rc, err.msg);
	CHECK(dbtest_is(a, "SELECT to_regclass('frontdesk.partial') IS NULL", "t"), "9006 rolled back");
	CHECK(dbtest_is(a, "SELECT count(*) FROM frontdesk.schema_migrations WHERE version = 9006", "0"),
	      "9006 not recorded");
	remove_file(dir, "9006_bad.sql");

	/* A file that commits on its own breaks the one-transaction rule. */
	write_file(dir, "9006_commits.sql", "CREATE TABLE frontdesk.c1 (x int);\nCOMMIT;\n");
	rc = apply(t, dir, &n, &err);
	CHECK(rc < 0 && strstr(err.msg, "9006_commits.sql"), "COMMIT in a file: rc %d: %s", rc, err.msg);
	remove_file(dir, "9006_commits.sql");
	dbtest_exec(a, "DROP TABLE IF EXISTS frontdesk.c1");

	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			remove_file(dir, e->d_name);
	if (d)
		closedir(d);
	rmdir(dir);
}

struct racer {
	dbtest_t *t;
	int rc, applied;
	fd_err_t err;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	fd_migrate_opts_t o = { .admin_url = dbtest_url(r->t, "postgres"), .dir = r->t->migrations };
	r->rc = fd_migrate_apply(&o, &r->applied, &r->err);
	return NULL;
}

static void concurrent(int nsource)
{
	dbtest_t t2;
	if (dbtest_init(&t2, "migrate2") != 0) {
		CHECK(false, "second database");
		return;
	}
	struct racer r[2] = { { .t = &t2 }, { .t = &t2 } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, race, &r[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK(r[0].rc == 0 && r[1].rc == 0, "two migrators: %s / %s", r[0].err.msg, r[1].err.msg);
	CHECK(r[0].applied + r[1].applied == nsource, "each migration applied once: %d + %d",
	      r[0].applied, r[1].applied);
	dbtest_done(&t2);
}

int main(void)
{
	dbtest_t t;
	int rc = dbtest_init(&t, "migrate");
	if (rc != 0)
		return rc == DBTEST_SKIP ? DBTEST_SKIP : 1;
	if (sodium_init() < 0)
		return 1;
	int nsource = 0;
	DIR *d = opendir(t.migrations);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		nsource += len > 4 && strcmp(e->d_name + len - 4, ".sql") == 0;
	}
	if (d)
		closedir(d);
	CHECK(nsource >= 1, "migrations in the source tree");

	fresh_apply(&t, nsource);
	rules(&t);
	concurrent(nsource);
	dbtest_done(&t);
	return test_summary();
}
