/* dbtest.c - a database of its own for each database test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "dbtest.h"
#include "fd/migrate.h"

static int server_exec(const dbtest_t *t, const char *sql)
{
	char ci[700];
	snprintf(ci, sizeof(ci), "host=%s port=%s dbname=postgres user=postgres", t->host, t->port);
	PGconn *pg = PQconnectdb(ci);
	int rc = PQstatus(pg) == CONNECTION_OK ? dbtest_exec(pg, "SET client_min_messages = warning") : -1;
	if (rc == 0)
		rc = dbtest_exec(pg, sql);
	if (PQstatus(pg) != CONNECTION_OK)
		fprintf(stderr, "dbtest: cannot connect: %s", PQerrorMessage(pg));
	PQfinish(pg);
	return rc;
}

int dbtest_init(dbtest_t *t, const char *test)
{
	memset(t, 0, sizeof(*t));
	const char *host = getenv("FD_TEST_PGHOST"), *port = getenv("FD_TEST_PGPORT");
	const char *src = getenv("FD_SOURCE_DIR");
	if (!host || !*host || !port || !src) {
		fprintf(stderr, "dbtest: FD_TEST_PGHOST, FD_TEST_PGPORT and FD_SOURCE_DIR are needed "
		        "(run through ctest)\n");
		return DBTEST_SKIP;
	}
	snprintf(t->host, sizeof(t->host), "%s", host);
	snprintf(t->port, sizeof(t->port), "%s", port);
	snprintf(t->source_dir, sizeof(t->source_dir), "%s", src);
	snprintf(t->migrations, sizeof(t->migrations), "%s/migrations", src);
	snprintf(t->name, sizeof(t->name), "t_%s_%d", test, (int)getpid());
	char sql[200];
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", t->name);
	server_exec(t, sql);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE template0", t->name);
	if (server_exec(t, sql) < 0)
		return -1;
	t->admin = PQconnectdb(dbtest_url(t, "postgres"));
	if (PQstatus(t->admin) != CONNECTION_OK) {
		fprintf(stderr, "dbtest: cannot connect to %s: %s", t->name, PQerrorMessage(t->admin));
		return -1;
	}
	dbtest_exec(t->admin, "SET client_min_messages = warning");
	return 0;
}

void dbtest_done(dbtest_t *t)
{
	if (t->admin)
		PQfinish(t->admin);
	t->admin = NULL;
	if (t->name[0]) {
		char sql[200];
		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", t->name);
		server_exec(t, sql);
	}
}

const char *dbtest_url(const dbtest_t *t, const char *user)
{
	static _Thread_local char buf[4][800];
	static _Thread_local int next;
	char *b = buf[next++ % 4];
	snprintf(b, sizeof(buf[0]), "host=%s port=%s dbname=%s user=%s", t->host, t->port, t->name,
	         user);
	return b;
}

int dbtest_migrate(dbtest_t *t)
{
	fd_migrate_opts_t o = { .admin_url = dbtest_url(t, "postgres"), .dir = t->migrations };
	fd_err_t err = { 0 };
	int n = 0;
	if (fd_migrate_apply(&o, &n, &err) < 0) {
		fprintf(stderr, "dbtest: migrate: %s\n", err.msg);
		return -1;
	}
	return 0;
}

int dbtest_exec(PGconn *pg, const char *sql)
{
	PGresult *r = PQexec(pg, sql);
	ExecStatusType st = PQresultStatus(r);
	int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
	if (rc < 0)
		fprintf(stderr, "dbtest: %s: %s", sql, PQerrorMessage(pg));
	PQclear(r);
	return rc;
}

char *dbtest_value(PGconn *pg, const char *sql)
{
	PGresult *r = PQexec(pg, sql);
	char *v = NULL;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
		v = strdup(PQgetisnull(r, 0, 0) ? "(null)" : PQgetvalue(r, 0, 0));
	else if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fprintf(stderr, "dbtest: %s: %s", sql, PQerrorMessage(pg));
	PQclear(r);
	return v;
}

bool dbtest_is(PGconn *pg, const char *sql, const char *want)
{
	char *v = dbtest_value(pg, sql);
	bool ok = v && strcmp(v, want) == 0;
	if (!ok)
		fprintf(stderr, "dbtest: %s: got \"%s\", want \"%s\"\n", sql, v ? v : "(none)", want);
	free(v);
	return ok;
}

static long long ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long dbtest_now_ms(void)
{
	return ms(CLOCK_MONOTONIC);
}

long long dbtest_wall_ms(void)
{
	return ms(CLOCK_REALTIME);
}

int dbtest_q_fn(fd_tx_t *tx, void *arg)
{
	dbtest_q_t *q = arg;
	q->calls++;
	q->value[0] = q->affected[0] = '\0';
	PGresult *res;
	int rc = fd_tx_exec(tx, q->sql, q->params, q->not_last ? 0 : FD_TX_LAST, &res);
	if (rc < 0)
		return rc;
	snprintf(q->affected, sizeof(q->affected), "%s", PQcmdTuples(res));
	if (PQntuples(res) > 0 && PQnfields(res) > 0)
		snprintf(q->value, sizeof(q->value), "%s", PQgetvalue(res, 0, 0));
	return 0;
}
