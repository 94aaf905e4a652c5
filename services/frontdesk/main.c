/* main.c - the frontdesk CLI: operator commands that are not a service
 * (`frontdesk migrate`, `frontdesk bootstrap`), one row each in a table. */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <sodium.h>
#include "fd/config.h"
#include "fd/db.h"
#include "fd/log.h"
#include "fd/migrate.h"

#ifndef FD_DEFAULT_MIGRATIONS_DIR
#define FD_DEFAULT_MIGRATIONS_DIR "migrations"
#endif

typedef struct cli_config {
	char *admin_database_url;
	char *migrations_dir;
	char *log_level;
	char *password[FD_MIGRATE_NROLES];   /* by fd_migrate_roles' order */
	char *bootstrap_username;
	char *bootstrap_password;
	int64_t pwhash_opslimit;
	int64_t pwhash_memlimit_kib;
} cli_config_t;

#define PASSWORD_ITEM(SVC, i) \
	{ #SVC "_db_password", "FRONTDESK_" #SVC "_DB_PASSWORD", FD_CFG_SECRET, "", 0, 1024, \
	  offsetof(cli_config_t, password[i]), "migrate: set as the password of its service role" }

static const fd_cfg_item_t config_items[] = {
	{ "admin_database_url", "FRONTDESK_ADMIN_DATABASE_URL", FD_CFG_DSN,
	  "dbname=frontdesk user=postgres", 1, 4096, offsetof(cli_config_t, admin_database_url),
	  "PostgreSQL conninfo or URI of a superuser (or a role that may create roles)" },
	{ "migrations_dir", "FRONTDESK_MIGRATIONS_DIR", FD_CFG_STR, FD_DEFAULT_MIGRATIONS_DIR, 1, 4096,
	  offsetof(cli_config_t, migrations_dir), "folder of NNNN_name.sql migrations" },
	{ "log_level", "FRONTDESK_LOG_LEVEL", FD_CFG_STR, "info", 1, 5,
	  offsetof(cli_config_t, log_level), "debug, info, warn or error" },
	PASSWORD_ITEM(AUTHD, 0),
	PASSWORD_ITEM(BILLINGD, 1),
	PASSWORD_ITEM(LINESD, 2),
	PASSWORD_ITEM(ROUTERD, 3),
	{ "bootstrap_username", "FRONTDESK_BOOTSTRAP_USERNAME", FD_CFG_STR, "admin", 1, 64,
	  offsetof(cli_config_t, bootstrap_username), "bootstrap: the first platform admin's login" },
	{ "bootstrap_password", "FRONTDESK_BOOTSTRAP_PASSWORD", FD_CFG_SECRET, "", 0, 1024,
	  offsetof(cli_config_t, bootstrap_password), "bootstrap: its password (asked for when unset and on a terminal)" },
	{ "pwhash_opslimit", "FRONTDESK_PWHASH_OPSLIMIT", FD_CFG_INT, "2", 1, 16,
	  offsetof(cli_config_t, pwhash_opslimit), "bootstrap: argon2id passes (as authd's)" },
	{ "pwhash_memlimit_kib", "FRONTDESK_PWHASH_MEMLIMIT_KIB", FD_CFG_INT, "65536", 8192, 4194304,
	  offsetof(cli_config_t, pwhash_memlimit_kib), "bootstrap: argon2id memory, KiB (as authd's)" },
	{ 0 },
};

typedef struct command {
	const char *name;
	const char *args;
	const char *help;
	int (*run)(const cli_config_t *cfg, int argc, char **argv);
} command_t;

static int cmd_migrate(const cli_config_t *cfg, int argc, char **argv)
{
	bool status = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--status") == 0) {
			status = true;
		} else {
			fprintf(stderr, "frontdesk migrate: unknown argument \"%s\"\n", argv[i]);
			return 2;
		}
	}
	fd_migrate_opts_t o = { .admin_url = cfg->admin_database_url, .dir = cfg->migrations_dir };
	for (int i = 0; i < FD_MIGRATE_NROLES; i++)
		o.password[i] = cfg->password[i];
	fd_err_t err = { 0 };
	if (status) {
		if (fd_migrate_status(&o, stdout, &err) < 0) {
			fprintf(stderr, "frontdesk migrate --status: %s\n", err.msg);
			return 1;
		}
		return 0;
	}
	int applied = 0;
	if (fd_migrate_apply(&o, &applied, &err) < 0) {
		fprintf(stderr, "frontdesk migrate: %s (%d applied before it)\n", err.msg, applied);
		return 1;
	}
	printf("%d migration%s applied\n", applied, applied == 1 ? "" : "s");
	return 0;
}

/* ---- bootstrap: the first platform admin ---- */

static const fd_sql_t SQL_ADMIN_EXISTS = {
	"cli_admin_exists", "SELECT 1 FROM frontdesk.accounts WHERE tenant_id = 0 AND username = $1", 1,
};
static const fd_sql_t SQL_INSERT_ADMIN = {
	"cli_insert_admin",
	"WITH n AS (SELECT nextval('frontdesk.accounts_id_seq') AS id)"
	" INSERT INTO frontdesk.accounts (tenant_id, id, path, role, username, display_name, password_hash)"
	" SELECT 0, n.id, n.id || '.', 'platform_admin', $1, 'Platform admin', $2 FROM n RETURNING id",
	2,
};

struct bootstrap {
	const char *username, *hash;
	bool existed;
	int64_t id;
};

static int bootstrap_tx(fd_tx_t *tx, void *arg)
{
	struct bootstrap *b = arg;
	const char *p1[] = { b->username };
	PGresult *res;
	int rc = fd_tx_exec(tx, &SQL_ADMIN_EXISTS, p1, 0, &res);
	if (rc < 0)
		return rc;
	if ((b->existed = PQntuples(res) > 0) || !b->hash)
		return 0;        /* exists, or only asked whether it does */
	const char *p2[] = { b->username, b->hash };
	if ((rc = fd_tx_exec(tx, &SQL_INSERT_ADMIN, p2, 0, &res)) < 0)
		return rc;
	b->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	return 0;
}

/* Reads a password from the terminal without echo. */
static int prompt_password(char *buf, size_t size)
{
	struct termios old, quiet;
	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &old) != 0)
		return -1;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	fprintf(stderr, "password for the platform admin: ");
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	char *got = fgets(buf, (int)size, stdin);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	fprintf(stderr, "\n");
	if (!got)
		return -1;
	buf[strcspn(buf, "\r\n")] = '\0';
	return 0;
}

/* The admin does not exist yet: its password (the setting, or asked on a
 * terminal), hashed, then the account (bootstrap_tx again: b->hash set, so
 * it inserts unless another bootstrap made it meanwhile). -2: a bad or
 * missing password (said on stderr). */
static int make_admin(const cli_config_t *cfg, fd_db_t *db, struct bootstrap *b, fd_err_t *err)
{
	char typed[1025] = "";
	const char *password = cfg->bootstrap_password;
	if (!password[0]) {
		if (prompt_password(typed, sizeof(typed)) < 0) {
			fprintf(stderr, "frontdesk bootstrap: set FRONTDESK_BOOTSTRAP_PASSWORD (there is no default "
			        "password), or run it on a terminal to be asked\n");
			return -2;
		}
		password = typed;
	}
	if (strlen(password) < 12) {
		sodium_memzero(typed, sizeof(typed));
		fprintf(stderr, "frontdesk bootstrap: the password needs at least 12 characters\n");
		return -2;
	}
	char hash[crypto_pwhash_STRBYTES];
	int bad = sodium_init() < 0 ||
	          crypto_pwhash_str(hash, password, strlen(password), (unsigned long long)cfg->pwhash_opslimit,
	                            (size_t)cfg->pwhash_memlimit_kib * 1024) != 0;
	sodium_memzero(typed, sizeof(typed));
	if (bad)
		return fd_err_set(err, FD_EEXHAUSTED, "password hashing failed (out of memory?)");
	b->hash = hash;
	int rc = fd_db_run(db, 0, bootstrap_tx, b, err);
	b->hash = NULL;
	return rc;
}

static int cmd_bootstrap(const cli_config_t *cfg, int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "frontdesk bootstrap: unknown argument \"%s\"\n", argv[1]);
		return 2;
	}
	const char *user = cfg->bootstrap_username;
	for (const char *p = user; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-", *p)) {
			fprintf(stderr, "frontdesk bootstrap: FRONTDESK_BOOTSTRAP_USERNAME: only letters, digits and . _ @ -\n");
			return 2;
		}
	fd_err_t err = { 0 };
	fd_db_opts_t o = { .conninfo = cfg->admin_database_url, .application_name = "frontdesk bootstrap",
		               .pool_size = 1 };
	fd_db_t *db = fd_db_open(&o, &err);
	if (!db) {
		fprintf(stderr, "frontdesk bootstrap: %s\n", err.msg);
		return 1;
	}
	/* An admin that exists is left as it is, before any password is asked
	 * for or checked: a rerun (up.sh after a restart) needs none. */
	struct bootstrap b = { .username = user };
	int rc = fd_db_run(db, 0, bootstrap_tx, &b, &err);
	if (rc == 0 && !b.existed)
		rc = make_admin(cfg, db, &b, &err);
	fd_db_close(db);
	if (rc == -2)
		return 2;
	if (rc < 0) {
		fprintf(stderr, "frontdesk bootstrap: %s\n", err.msg);
		return 1;
	}
	if (b.existed)
		printf("platform admin \"%s\" already exists; unchanged\n", user);
	else
		printf("platform admin \"%s\" created (account %" PRId64 "); log in with tenant slug \"platform\"\n",
		       user, b.id);
	return 0;
}

static const command_t commands[] = {
	{ "migrate", "[--status]",
	  "set up the roles and apply pending migrations; --status lists applied and pending ones",
	  cmd_migrate },
	{ "bootstrap", "",
	  "create the first platform admin (FRONTDESK_BOOTSTRAP_USERNAME, _PASSWORD); unchanged if it exists",
	  cmd_bootstrap },
	{ 0 },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: frontdesk [--print-config | --list-env | --help] <command> [args]\n"
	             "commands:\n");
	for (const command_t *c = commands; c->name; c++)
		fprintf(out, "  %s %-12s %s\n", c->name, c->args, c->help);
	fprintf(out, "Settings come from FRONTDESK_* variables: --list-env names them, "
	             "--print-config shows their values (secrets masked).\n");
}

int main(int argc, char **argv)
{
	bool print_config = false, list_env = false;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--print-config") == 0) {
			print_config = true;
		} else if (strcmp(argv[i], "--list-env") == 0) {
			list_env = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "frontdesk: unknown option \"%s\"\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (list_env) {
		fd_config_list_env(config_items, stdout);
		return 0;
	}

	cli_config_t cfg = { 0 };
	fd_err_t err = { 0 };
	int status = 2;
	if (fd_config_load(config_items, &cfg, &err) < 0) {
		fprintf(stderr, "frontdesk: bad configuration: %s\n", err.msg);
		goto out;
	}
	int level = fd_log_level_parse(cfg.log_level);
	if (level < 0) {
		fprintf(stderr, "frontdesk: bad configuration: FRONTDESK_LOG_LEVEL: \"%s\" is not one of "
		        "debug, info, warn, error\n", cfg.log_level);
		goto out;
	}
	if (print_config) {
		fd_config_print(config_items, &cfg, stdout);
		status = 0;
		goto out;
	}
	if (i == argc) {
		usage(stderr);
		goto out;
	}
	fd_log_init("frontdesk", (fd_log_level_t)level);
	const command_t *c = commands;
	while (c->name && strcmp(c->name, argv[i]) != 0)
		c++;
	if (!c->name) {
		fprintf(stderr, "frontdesk: unknown command \"%s\"\n", argv[i]);
		usage(stderr);
		goto out;
	}
	status = c->run(&cfg, argc - i, argv + i);
out:
	fd_config_free(config_items, &cfg);
	return status;
}
