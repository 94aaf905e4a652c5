/* migrate.h - versioned SQL migrations: migrations/NNNN_name.sql applied in
 * order, each in its own transaction as frontdesk_owner, recorded with its
 * SHA-256 in frontdesk.schema_migrations.
 *
 * Before the first migration a setup step does what belongs to the cluster
 * rather than the database: the roles. frontdesk_owner (NOLOGIN) owns the
 * schema and every object in it; each service logs in as its own role
 * (frontdesk_authd, _billingd, _linesd, _routerd), which owns nothing and
 * is neither superuser nor BYPASSRLS. The migrator connects with an admin
 * URL: a superuser, or a role with CREATEROLE and the right to create in
 * the database. A session advisory lock serialises concurrent migrators. */
#ifndef FD_MIGRATE_H
#define FD_MIGRATE_H

#include <stdio.h>
#include "fd/status.h"

#define FD_MIGRATE_NROLES 4

/* The service roles, in the order of fd_migrate_opts_t.password. */
extern const char *const fd_migrate_roles[FD_MIGRATE_NROLES];

typedef struct fd_migrate_opts {
	const char *admin_url;   /* libpq conninfo or URI of the admin role */
	const char *dir;         /* folder holding NNNN_name.sql */
	/* Passwords for the service roles, by fd_migrate_roles' order (NULL or
	 * "": leave as it is). Sent as a SCRAM verifier computed here, so the
	 * server never sees nor logs the password; never logged here either. */
	const char *password[FD_MIGRATE_NROLES];
} fd_migrate_opts_t;

/* Sets up the roles and applies every pending migration in version order;
 * logs one line per migration applied. *applied (may be NULL) receives how
 * many were. Refuses (-FD_EPRECOND, err naming the file) when an applied
 * migration's file was edited (both checksums given), renamed, or is missing
 * from dir, or when a pending one is older than the newest applied; nothing
 * is applied then. A migration that fails is rolled back and named with the
 * line and the server's message (-FD_EINTERNAL); those before it stay
 * applied. -FD_EUNAVAIL when the database cannot be reached; -FD_EINVAL for
 * a badly named or unreadable file in dir. */
int fd_migrate_apply(const fd_migrate_opts_t *opts, int *applied, fd_err_t *err) FD_MUSTCHECK;

/* Prints one line per migration, on disk or applied:
 *   0001 init        applied  2024-05-01 10:00:00+00  3f1c2a9b07de
 *   0002 auth        pending                          9a0b3c4d5e6f
 * with "edited", "renamed" or "missing" where disk and database disagree
 * (then returns -FD_EPRECOND, after printing everything). Changes nothing and
 * takes no lock; the roles are not checked. */
int fd_migrate_status(const fd_migrate_opts_t *opts, FILE *out, fd_err_t *err) FD_MUSTCHECK;

#endif
