/* dbtest.h - what the database tests share: a database of their own in the
 * fixture cluster (FD_TEST_PGHOST, FD_TEST_PGPORT), dropped at the end, and a
 * few helpers to run SQL as its superuser. */
#ifndef FD_DBTEST_H
#define FD_DBTEST_H

#include <stdbool.h>
#include <libpq-fe.h>
#include "fd/db.h"

#define DBTEST_SKIP 77   /* ctest SKIP_RETURN_CODE: no cluster to test against */

typedef struct dbtest {
	char host[512];
	char port[16];
	char name[64];          /* t_<test>_<pid> */
	char source_dir[1024];  /* FD_SOURCE_DIR */
	char migrations[1100];  /* <source>/migrations */
	PGconn *admin;          /* the test database, as postgres */
} dbtest_t;

/* Creates t_<test>_<pid> (TEMPLATE template0) and connects to it as postgres.
 * 0, or DBTEST_SKIP without a cluster, or -1 (printed why). */
int dbtest_init(dbtest_t *t, const char *test);
/* Closes the admin connection and drops the database. */
void dbtest_done(dbtest_t *t);
/* A conninfo for the test database as user (static buffer, one per call site
 * is enough: copy it if you need two). */
const char *dbtest_url(const dbtest_t *t, const char *user);
/* Applies the migrations of the source tree as postgres; 0 or -1. */
int dbtest_migrate(dbtest_t *t);

/* SQL on a connection: 0 when it succeeded (else prints the error). */
int dbtest_exec(PGconn *pg, const char *sql);
/* The first column of the first row, malloc'd; NULL on error or no row. */
char *dbtest_value(PGconn *pg, const char *sql);
/* dbtest_value compared with want. */
bool dbtest_is(PGconn *pg, const char *sql, const char *want);

/* One statement as a whole transaction (FD_TX_LAST), for fd_db_run: keeps
 * the first value of the first row and the affected-row count. */
typedef struct dbtest_q {
	const fd_sql_t *sql;
	const char *params[4];
	bool not_last;          /* send no COMMIT with it (fd_db_run commits after) */
	char value[256];        /* "" when no row */
	char affected[32];      /* PQcmdTuples */
	int calls;              /* how many times the transaction ran */
} dbtest_q_t;
int dbtest_q_fn(fd_tx_t *tx, void *arg);

/* Milliseconds of CLOCK_MONOTONIC / CLOCK_REALTIME. */
long long dbtest_now_ms(void);
long long dbtest_wall_ms(void);

#endif
