/* migrate.c - applying migrations/NNNN_name.sql in order, one transaction
 * each, checked against the SHA-256 recorded when they were applied; and the
 * cluster-level setup before them (roles). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libpq-fe.h>
#include <sodium.h>
#include "fd/log.h"
#include "fd/migrate.h"

/* pg_advisory_lock key: "fdmigrat" in ASCII. */
#define LOCK_SQL "SELECT pg_advisory_lock(7378415037781647732)"
#define OWNER "frontdesk_owner"
#define SETUP_ATTEMPTS 5
#define NAME_MAX_LEN 100

const char *const fd_migrate_roles[FD_MIGRATE_NROLES] = {
	"frontdesk_authd", "frontdesk_billingd", "frontdesk_linesd", "frontdesk_routerd",
};

/* A migration file on disk. */
typedef struct mfile {
	int version;
	char *file;              /* "0001_init.sql" */
	char *name;              /* "init" */
	char *sql;
	char sum[65];            /* SHA-256, hex */
	bool applied;
} mfile_t;

/* A row of frontdesk.schema_migrations. */
typedef struct applied {
	int version;
	char *name;
	char *sum;
	char *at;
} applied_t;

typedef struct state {
	mfile_t *files;
	size_t nfiles;
	applied_t *applied;
	size_t napplied;
	PGconn *pg;
} state_t;

static void state_free(state_t *s)
{
	for (size_t i = 0; i < s->nfiles; i++) {
		free(s->files[i].file);
		free(s->files[i].name);
		free(s->files[i].sql);
	}
	free(s->files);
	for (size_t i = 0; i < s->napplied; i++) {
		free(s->applied[i].name);
		free(s->applied[i].sum);
		free(s->applied[i].at);
	}
	free(s->applied);
	if (s->pg)
		PQfinish(s->pg);
}

/* ---- files ---- */

/* "0001_init.sql" -> 1 and "init"; -1 when the name does not fit. */
static int parse_name(const char *file, char **name)
{
	size_t len = strlen(file);
	if (len < 10 || strcmp(file + len - 4, ".sql") != 0 || file[4] != '_')
		return -1;
	for (int i = 0; i < 4; i++)
		if (!isdigit((unsigned char)file[i]))
			return -1;
	size_t nlen = len - 9;
	if (nlen > NAME_MAX_LEN)
		return -1;
	for (size_t i = 5; i < len - 4; i++)
		if (!(islower((unsigned char)file[i]) || isdigit((unsigned char)file[i]) || file[i] == '_'))
			return -1;
	*name = strndup(file + 5, nlen);
	return *name ? atoi(file) : -2;
}

static int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	size_t cap = 8192, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
		if (n == cap - 1) {
			char *b = realloc(buf, cap * 2);
			if (!b) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = b;
			cap *= 2;
		}
	}
	bool bad = ferror(f) || !buf;
	fclose(f);
	if (bad) {
		free(buf);
		return -1;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

static int by_version(const void *a, const void *b)
{
	const mfile_t *x = a, *y = b;
	return (x->version > y->version) - (x->version < y->version);
}

static int load_dir(const char *dir, state_t *s, fd_err_t *err)
{
	int rc = 0;
	char path[4096];
	size_t cap = 0;
	DIR *d = opendir(dir);
	if (!d)
		return fd_err_set(err, FD_EINVAL, "migrations folder %s: %s", dir, strerror(errno));
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len < 4 || strcmp(e->d_name + len - 4, ".sql") != 0)
			continue;  /* README and the like */
		if (s->nfiles == cap) {
			cap = cap ? cap * 2 : 16;
			mfile_t *f = realloc(s->files, cap * sizeof(*f));
			if (!f) {
				rc = fd_err_set(err, FD_EEXHAUSTED, "out of memory");
				goto fail;
			}
			s->files = f;
		}
		mfile_t *f = &s->files[s->nfiles];
		memset(f, 0, sizeof(*f));
		f->version = parse_name(e->d_name, &f->name);
		if (f->version <= 0) {
			free(f->name);
			rc = fd_err_set(err, FD_EINVAL, "migration %s: the name must be NNNN_name.sql "
			                "(four digits from 0001, then a-z, 0-9, _)", e->d_name);
			goto fail;
		}
		s->nfiles++;
		f->file = strdup(e->d_name);
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		size_t n = 0;
		if (!f->file || read_file(path, &f->sql, &n) < 0) {
			rc = fd_err_set(err, FD_EINVAL, "migration %s: cannot read it: %s", path, strerror(errno));
			goto fail;
		}
		if (strlen(f->sql) != n) {
			rc = fd_err_set(err, FD_EINVAL, "migration %s holds a NUL byte", path);
			goto fail;
		}
		unsigned char h[crypto_hash_sha256_BYTES];
		crypto_hash_sha256(h, (const unsigned char *)f->sql, n);
		sodium_bin2hex(f->sum, sizeof(f->sum), h, sizeof(h));
	}
	if (s->nfiles == 0) {
		rc = fd_err_set(err, FD_EINVAL, "no migrations (NNNN_name.sql) in %s", dir);
		goto fail;
	}
	qsort(s->files, s->nfiles, sizeof(*s->files), by_version);
	for (size_t i = 1; i < s->nfiles; i++)
		if (s->files[i].version == s->files[i - 1].version) {
			rc = fd_err_set(err, FD_EINVAL, "migrations %s and %s have the same version",
			                s->files[i - 1].file, s->files[i].file);
			goto fail;
		}
fail:
	closedir(d);
	return rc;
}

/* ---- SQL ---- */

static void notice_out(void *arg, const char *msg)
{
	fd_warn("database: %s", msg);
}

/* Describes a failed result (or a lost connection) as "what: message". */
static int sql_fail(PGconn *pg, const PGresult *res, const char *what, fd_err_t *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (PQstatus(pg) != CONNECTION_OK || !state)
		return fd_err_set(err, FD_EUNAVAIL, "%s: %s", what, PQerrorMessage(pg));
	return fd_err_set(err, FD_EINTERNAL, "%s: SQLSTATE %s: %s", what, state, msg ? msg : "");
}

/* Runs sql (no parameters); 0 when it succeeded. */
static int exec_ok(PGconn *pg, const char *sql, const char *what, fd_err_t *err)
{
	PGresult *r = PQexec(pg, sql);
	ExecStatusType st = PQresultStatus(r);
	int rc = 0;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		rc = sql_fail(pg, r, what, err);
	PQclear(r);
	return rc;
}

static int connect_admin(const char *url, PGconn **out, fd_err_t *err)
{
	const char *keys[] = { "connect_timeout", "dbname", "application_name", "client_encoding", NULL };
	const char *vals[] = { "10", url, "frontdesk-migrate", "UTF8", NULL };
	PGconn *pg = PQconnectdbParams(keys, vals, 1);
	if (!pg)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	*out = pg;
	if (PQstatus(pg) != CONNECTION_OK) {
		char msg[200];
		snprintf(msg, sizeof(msg), "%s", PQerrorMessage(pg));
		msg[strcspn(msg, "\n")] = '\0';
		return fd_err_set(err, FD_EUNAVAIL, "cannot connect to the admin database: %s", msg);
	}
	PQsetNoticeProcessor(pg, notice_out, NULL);
	return exec_ok(pg, "SET client_min_messages = warning", "session setup", err);
}

static char *dup_value(const PGresult *r, int row, int col)
{
	return strdup(PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

static int read_applied(state_t *s, fd_err_t *err)
{
	PGresult *r = PQexec(s->pg, "SELECT to_regclass('frontdesk.schema_migrations') IS NOT NULL");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		int rc = sql_fail(s->pg, r, "reading the applied migrations", err);
		PQclear(r);
		return rc;
	}
	bool exists = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	if (!exists)
		return 0;
	r = PQexec(s->pg, "SELECT version, name, checksum, "
	           "to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || 'Z' "
	           "FROM frontdesk.schema_migrations ORDER BY version");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		int rc = sql_fail(s->pg, r, "reading the applied migrations", err);
		PQclear(r);
		return rc;
	}
	int n = PQntuples(r);
	s->applied = calloc(n ? (size_t)n : 1, sizeof(*s->applied));
	if (!s->applied) {
		PQclear(r);
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	}
	for (int i = 0; i < n; i++) {
		applied_t *a = &s->applied[s->napplied++];
		a->version = atoi(PQgetvalue(r, i, 0));
		a->name = dup_value(r, i, 1);
		a->sum = dup_value(r, i, 2);
		a->at = dup_value(r, i, 3);
		if (!a->name || !a->sum || !a->at) {
			PQclear(r);
			return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
		}
	}
	PQclear(r);
	return 0;
}

static mfile_t *find_file(state_t *s, int version)
{
	for (size_t i = 0; i < s->nfiles; i++)
		if (s->files[i].version == version)
			return &s->files[i];
	return NULL;
}

/* Compares disk and database; every disagreement is logged, the first goes
 * in err. Marks the files already applied. */
static int verify(state_t *s, const char *dir, fd_err_t *err)
{
	int problems = 0, newest = 0;
	fd_err_t first = { 0 };
	fd_err_t e;
	for (size_t i = 0; i < s->napplied; i++) {
		applied_t *a = &s->applied[i];
		mfile_t *f = find_file(s, a->version);
		if (a->version > newest)
			newest = a->version;
		if (!f)
			fd_err_set(&e, FD_EPRECOND, "%04d_%s.sql was applied (%s) but is missing from %s",
			           a->version, a->name, a->at, dir);
		else if (strcmp(f->sum, a->sum) != 0)
			fd_err_set(&e, FD_EPRECOND, "%s was edited after it was applied (sha256 now %s, "
			           "applied %s): restore it; changes go in a new migration",
			           f->file, f->sum, a->sum);
		else if (strcmp(f->name, a->name) != 0)
			fd_err_set(&e, FD_EPRECOND, "%s was applied as %04d_%s.sql: restore its name",
			           f->file, a->version, a->name);
		else {
			f->applied = true;
			continue;
		}
		fd_error("migration check: %s", e.msg);
		if (problems++ == 0)
			first = e;
	}
	for (size_t i = 0; i < s->nfiles; i++) {
		mfile_t *f = &s->files[i];
		if (f->applied || f->version > newest)
			continue;
		bool known = false;
		for (size_t j = 0; j < s->napplied; j++)
			known |= s->applied[j].version == f->version;
		if (known)
			continue;
		fd_err_set(&e, FD_EPRECOND, "%s is older than the newest applied migration (%04d) but "
		           "was never applied: give it a number after %04d", f->file, newest, newest);
		fd_error("migration check: %s", e.msg);
		if (problems++ == 0)
			first = e;
	}
	if (problems) {
		if (err)
			*err = first;
		return -(int)FD_EPRECOND;
	}
	return 0;
}

/* ---- roles ---- */

/* Creates the role if missing, or puts its attributes right. name is one of
 * ours (a constant), never caller data. */
static int ensure_role(PGconn *pg, const char *name, bool login, fd_err_t *err)
{
	const char *attrs = "NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION";
	const char *params[] = { name };
	PGresult *r = PQexecParams(pg, "SELECT rolcanlogin, rolsuper OR rolbypassrls OR rolcreatedb "
	                           "OR rolcreaterole OR rolreplication FROM pg_roles WHERE rolname = $1",
	                           1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		int rc = sql_fail(pg, r, "reading the roles", err);
		PQclear(r);
		return rc;
	}
	char sql[256];
	sql[0] = '\0';
	if (PQntuples(r) == 0)
		snprintf(sql, sizeof(sql), "CREATE ROLE %s %s %s", name, login ? "LOGIN" : "NOLOGIN", attrs);
	else if ((strcmp(PQgetvalue(r, 0, 0), "t") == 0) != login || strcmp(PQgetvalue(r, 0, 1), "t") == 0)
		snprintf(sql, sizeof(sql), "ALTER ROLE %s %s %s", name, login ? "LOGIN" : "NOLOGIN", attrs);
	PQclear(r);
	if (!sql[0])
		return 0;
	fd_info("role %s: %s", name, sql[0] == 'C' ? "created" : "attributes corrected");
	return exec_ok(pg, sql, name, err);
}

static int set_password(PGconn *pg, const char *role, const char *password, fd_err_t *err)
{
	/* A verifier computed here: the password itself never leaves the process. */
	char *verifier = PQencryptPasswordConn(pg, password, role, NULL);
	if (!verifier)
		return sql_fail(pg, NULL, "computing a password verifier", err);
	char *lit = PQescapeLiteral(pg, verifier, strlen(verifier));
	PQfreemem(verifier);
	if (!lit)
		return sql_fail(pg, NULL, "escaping a password verifier", err);
	size_t n = strlen(role) + strlen(lit) + 32;
	char *sql = malloc(n);
	int rc;
	if (!sql) {
		rc = fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	} else {
		snprintf(sql, n, "ALTER ROLE %s PASSWORD %s", role, lit);
		rc = exec_ok(pg, sql, "setting a role's password", err);
		sodium_memzero(sql, n);
		free(sql);
	}
	sodium_memzero(lit, strlen(lit));
	PQfreemem(lit);
	if (rc == 0)
		fd_info("role %s: password set", role);
	return rc;
}

static int setup_once(PGconn *pg, const fd_migrate_opts_t *o, bool *granted, fd_err_t *err)
{
	*granted = false;
	int rc = exec_ok(pg, "BEGIN", "setup", err);
	if (rc < 0)
		return rc;
	rc = ensure_role(pg, OWNER, false, err);
	for (int i = 0; rc == 0 && i < FD_MIGRATE_NROLES; i++)
		rc = ensure_role(pg, fd_migrate_roles[i], true, err);
	for (int i = 0; rc == 0 && i < FD_MIGRATE_NROLES; i++)
		if (o->password[i] && o->password[i][0])
			rc = set_password(pg, fd_migrate_roles[i], o->password[i], err);
	/* The owner creates the schema; the services may connect. */
	if (rc == 0)
		rc = exec_ok(pg, "DO $$ BEGIN "
		             "EXECUTE format('GRANT CREATE, CONNECT ON DATABASE %I TO " OWNER "', current_database()); "
		             "EXECUTE format('GRANT CONNECT ON DATABASE %I TO frontdesk_authd, frontdesk_billingd, "
		             "frontdesk_linesd, frontdesk_routerd', current_database()); "
		             "END $$", "granting the owner its rights", err);
	/* The migrations run as the owner: the admin must be able to SET ROLE
	 * to it. A superuser always can; a CREATEROLE admin is made a member
	 * for the run and no longer (a login role holding the owner's rights
	 * would be one more way around RLS: schema-lint reports it). */
	if (rc == 0) {
		PGresult *r = PQexec(pg, "SELECT pg_has_role(current_user, '" OWNER "', 'MEMBER')");
		bool member = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
		PQclear(r);
		if (!member) {
			rc = exec_ok(pg, "GRANT " OWNER " TO CURRENT_USER", "joining " OWNER, err);
			*granted = rc == 0;
		}
	}
	if (rc == 0)
		rc = exec_ok(pg, "COMMIT", "setup", err);
	if (rc == 0)
		return 0;
	*granted = false;
	if (PQtransactionStatus(pg) != PQTRANS_IDLE)
		PQclear(PQexec(pg, "ROLLBACK"));
	return rc;
}

/* Roles are shared by every database of the cluster, and the advisory lock
 * is per database: migrators of two databases may race to create them. The
 * loser's transaction fails (duplicate key, concurrent update) and runs
 * again, by then finding them made. */
static bool setup_conflict(const char *msg)
{
	static const char *const states[] = { "SQLSTATE 23505", "SQLSTATE 42710", "SQLSTATE XX000",
		                                   "SQLSTATE 40001", "SQLSTATE 40P01" };
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		if (strstr(msg, states[i]))
			return true;
	return false;
}

static int setup_roles(PGconn *pg, const fd_migrate_opts_t *o, bool *granted, fd_err_t *err)
{
	fd_err_t e = { 0 };
	int rc = 0;
	for (int attempt = 1; attempt <= SETUP_ATTEMPTS; attempt++) {
		rc = setup_once(pg, o, granted, &e);
		if (rc == 0 || PQstatus(pg) != CONNECTION_OK || !setup_conflict(e.msg))
			break;
		fd_debug("role setup met another migrator (%s): trying again", e.msg);
		struct timespec ts = { 0, 20000000L * attempt };
		nanosleep(&ts, NULL);
	}
	if (rc < 0 && err)
		*err = e;
	return rc;
}

/* ---- applying ---- */

/* The line of a 1-based character position in sql. */
static int line_of(const char *sql, long pos)
{
	int line = 1;
	for (long chars = 1; *sql && chars < pos; sql++) {
		if ((*sql & 0xC0) != 0x80)
			chars++;
		if (*sql == '\n')
			line++;
	}
	return line;
}

static int migration_failed(PGconn *pg, const mfile_t *f, PGresult *r, fd_err_t *err)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *pos = r ? PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION) : NULL;
	const char *detail = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;
	if (!state)
		return fd_err_set(err, FD_EUNAVAIL, "migration %s: %s", f->file, PQerrorMessage(pg));
	char where[32] = "";
	if (pos)
		snprintf(where, sizeof(where), " at line %d", line_of(f->sql, atol(pos)));
	if (detail)
		fd_error("migration %s: %s (%s)", f->file, msg ? msg : "", detail);
	return fd_err_set(err, FD_EINTERNAL, "migration %s failed%s: SQLSTATE %s: %s", f->file, where,
	                  state, msg ? msg : "");
}

static int apply_one(PGconn *pg, const mfile_t *f, fd_err_t *err)
{
	int rc = exec_ok(pg, "BEGIN", f->file, err);
	if (rc < 0)
		return rc;
	rc = exec_ok(pg, "SET LOCAL ROLE " OWNER, f->file, err);
	if (rc < 0)
		goto fail;

	PGresult *r = PQexec(pg, f->sql);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
		rc = migration_failed(pg, f, r, err);
		PQclear(r);
		goto fail;
	}
	PQclear(r);
	if (PQtransactionStatus(pg) != PQTRANS_INTRANS) {
		rc = fd_err_set(err, FD_EINTERNAL, "migration %s ended the transaction itself "
		                "(COMMIT or ROLLBACK in the file); the migrator makes one per file",
		                f->file);
		goto fail;
	}

	rc = exec_ok(pg, "CREATE TABLE IF NOT EXISTS frontdesk.schema_migrations ("
	             " version integer PRIMARY KEY CHECK (version > 0),"
	             " name text NOT NULL,"
	             " checksum text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),"
	             " applied_at timestamptz NOT NULL DEFAULT now())",
	             "creating frontdesk.schema_migrations", err);
	if (rc < 0)
		goto fail;
	char version[16];
	snprintf(version, sizeof(version), "%d", f->version);
	const char *params[] = { version, f->name, f->sum };
	r = PQexecParams(pg, "INSERT INTO frontdesk.schema_migrations (version, name, checksum) "
	                 "VALUES ($1, $2, $3)", 3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		rc = sql_fail(pg, r, "recording the migration", err);
		PQclear(r);
		goto fail;
	}
	PQclear(r);
	rc = exec_ok(pg, "COMMIT", f->file, err);
	if (rc == 0 && PQtransactionStatus(pg) != PQTRANS_IDLE)
		rc = fd_err_set(err, FD_EINTERNAL, "migration %s: COMMIT did not end the transaction", f->file);
	return rc;

fail:
	if (PQstatus(pg) == CONNECTION_OK && PQtransactionStatus(pg) != PQTRANS_IDLE)
		PQclear(PQexec(pg, "ROLLBACK"));
	return rc;
}

int fd_migrate_apply(const fd_migrate_opts_t *opts, int *applied, fd_err_t *err)
{
	state_t s = { 0 };
	int count = 0;
	bool granted = false;   /* the admin joined the owner role for this run */
	int rc;
	if (applied)
		*applied = 0;
	if (sodium_init() < 0)
		return fd_err_set(err, FD_EINTERNAL, "libsodium failed to initialise");
	rc = load_dir(opts->dir, &s, err);
	if (rc < 0)
		goto fail;
	rc = connect_admin(opts->admin_url, &s.pg, err);
	if (rc < 0)
		goto fail;
	rc = exec_ok(s.pg, LOCK_SQL, "taking the migration lock", err);
	if (rc < 0)
		goto fail;
	rc = setup_roles(s.pg, opts, &granted, err);
	if (rc < 0)
		goto fail;
	rc = read_applied(&s, err);
	if (rc < 0)
		goto fail;
	rc = verify(&s, opts->dir, err);
	if (rc < 0)
		goto fail;
	for (size_t i = 0; i < s.nfiles; i++) {
		mfile_t *f = &s.files[i];
		if (f->applied)
			continue;
		rc = apply_one(s.pg, f, err);
		if (rc < 0)
			goto fail;
		count++;
		fd_info("applied migration %s (sha256 %.12s)", f->file, f->sum);
	}
	if (count == 0)
		fd_info("migrations: nothing to apply (%zu applied, newest %s)", s.napplied,
		        s.nfiles ? s.files[s.nfiles - 1].file : "-");
fail:
	if (granted && PQstatus(s.pg) == CONNECTION_OK)
		PQclear(PQexec(s.pg, "REVOKE " OWNER " FROM CURRENT_USER"));
	if (applied)
		*applied = count;
	state_free(&s);
	return rc;
}

int fd_migrate_status(const fd_migrate_opts_t *opts, FILE *out, fd_err_t *err)
{
	state_t s = { 0 };
	int rc;
	if (sodium_init() < 0)
		return fd_err_set(err, FD_EINTERNAL, "libsodium failed to initialise");
	rc = load_dir(opts->dir, &s, err);
	if (rc < 0)
		goto fail;
	rc = connect_admin(opts->admin_url, &s.pg, err);
	if (rc < 0)
		goto fail;
	/* Reading the owner's table: a CREATEROLE admin joins the owner role in
	 * a transaction that is rolled back, so nothing changes. */
	rc = exec_ok(s.pg, "BEGIN; SAVEPOINT join_owner", "status", err);
	if (rc < 0)
		goto fail;
	fd_err_t ignored;
	if (exec_ok(s.pg, "DO $$ BEGIN IF NOT pg_has_role(current_user, '" OWNER "', 'MEMBER') THEN "
	                  "GRANT " OWNER " TO CURRENT_USER; END IF; END $$", "status", &ignored) < 0)
		PQclear(PQexec(s.pg, "ROLLBACK TO SAVEPOINT join_owner"));  /* then the read says why */
	rc = read_applied(&s, err);
	PQclear(PQexec(s.pg, "ROLLBACK"));
	if (rc < 0)
		goto fail;
	rc = verify(&s, opts->dir, err);

	/* Merge disk and database by version. */
	size_t i = 0, j = 0;
	while (i < s.nfiles || j < s.napplied) {
		mfile_t *f = i < s.nfiles ? &s.files[i] : NULL;
		applied_t *a = j < s.napplied ? &s.applied[j] : NULL;
		if (f && (!a || f->version < a->version)) {
			fprintf(out, "%04d %-28s %-8s %-21s %.12s\n", f->version, f->name, "pending", "",
			        f->sum);
			i++;
		} else if (!f || a->version < f->version) {
			fprintf(out, "%04d %-28s %-8s %-21s %.12s\n", a->version, a->name, "missing", a->at,
			        a->sum);
			j++;
		} else {
			const char *st = strcmp(f->sum, a->sum) != 0 ? "edited"
			                 : strcmp(f->name, a->name) != 0 ? "renamed" : "applied";
			fprintf(out, "%04d %-28s %-8s %-21s %.12s\n", f->version, f->name, st, a->at, a->sum);
			i++;
			j++;
		}
	}
fail:
	state_free(&s);
	return rc;
}
