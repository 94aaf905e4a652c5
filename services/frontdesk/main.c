/* main.c - the frontdesk CLI: operator commands that are not a service
 * (`frontdesk migrate`, later `frontdesk bootstrap`), one row each in a table. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "fd/config.h"
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

static const command_t commands[] = {
	{ "migrate", "[--status]",
	  "set up the roles and apply pending migrations; --status lists applied and pending ones",
	  cmd_migrate },
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
