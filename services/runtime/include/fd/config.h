/* config.h - settings declared once, in a table per service.
 *
 * Each row names a setting, its FRONTDESK_* environment variable, type,
 * default and bounds, and where the value lives in the service's config
 * struct. The same table loads the values (rejecting a bad one with the
 * setting's name and the reason), prints the effective configuration
 * (--print-config, secrets masked) and lists the variables a deployment may
 * set (--list-env). */
#ifndef FD_CONFIG_H
#define FD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "fd/status.h"

typedef enum fd_cfg_type {
	FD_CFG_INT,     /* int64_t; min/max bound the value */
	FD_CFG_BOOL,    /* bool; true/false/1/0/yes/no/on/off */
	FD_CFG_STR,     /* char * (malloc'd); min/max bound the length */
	FD_CFG_SECRET,  /* like STR, printed only as "(set)" or "(unset)" */
	FD_CFG_DSN,     /* like STR, a libpq conninfo or URI: the password is masked */
} fd_cfg_type_t;

typedef struct fd_cfg_item {
	const char *name;     /* short name, shown in messages */
	const char *env;      /* FRONTDESK_... */
	fd_cfg_type_t type;
	const char *def;      /* default, as text (NULL = empty string) */
	long long min, max;
	size_t offset;        /* offsetof() the field in the config struct */
	const char *help;
} fd_cfg_item_t;

/* Settings every service has. Their variables are FRONTDESK_<SERVICE>_LISTEN,
 * _THREADS, _DB_USER, _DB_PASSWORD, _DB_POOL; the rest are shared by all. */
typedef struct fd_service_config {
	char *listen;             /* host:port to serve gRPC on */
	int64_t threads;          /* worker threads */
	char *database_url;       /* libpq conninfo or URI, without the user */
	char *db_user;            /* this service's role */
	char *db_password;
	int64_t db_pool;          /* connections */
	int64_t db_statement_timeout_ms; /* per statement; 0: the server's setting */
	bool db_prepared;         /* named prepared statements (off behind pgbouncer 1.18) */
	char *log_level;
	char *tls_cert;           /* PEM files; plaintext when tls_cert is empty */
	char *tls_key;
	char *tls_client_ca;      /* set: clients must present a certificate it signed */
	char *tls_ca;             /* roots this service trusts when it calls another */
	bool allow_plaintext;     /* plaintext on a non-loopback address (a private network) */
	int64_t shutdown_grace_ms;
	int64_t max_message_bytes;
	char *secret_hash_key;    /* 64 hex: keyed hashes of API keys and other secrets */
	char *token_issuer;       /* iss of every token */
	int64_t clock_skew;       /* seconds allowed between hosts' clocks for exp/nbf */
	int64_t auth_cache_ms;    /* how stale a credential's status may be */
	int64_t test_clock_offset_ms; /* tests: this process's clock runs this far off (fd/clock.h) */
} fd_service_config_t;

/* SVC: "AUTHD"; svc: "authd" (both literals). */
#define FD_SERVICE_CONFIG_ITEMS(SVC, svc, DEFAULT_LISTEN, TYPE, MEMBER) \
	{ "listen", "FRONTDESK_" SVC "_LISTEN", FD_CFG_STR, DEFAULT_LISTEN, 1, 255, \
	  offsetof(TYPE, MEMBER.listen), "address to serve gRPC on (host:port)" }, \
	{ "threads", "FRONTDESK_" SVC "_THREADS", FD_CFG_INT, "8", 1, 256, \
	  offsetof(TYPE, MEMBER.threads), "worker threads" }, \
	{ "database_url", "FRONTDESK_DATABASE_URL", FD_CFG_DSN, "dbname=frontdesk", 1, 4096, \
	  offsetof(TYPE, MEMBER.database_url), "PostgreSQL conninfo or URI; the user comes from db_user" }, \
	{ "db_user", "FRONTDESK_" SVC "_DB_USER", FD_CFG_STR, "frontdesk_" svc, 1, 63, \
	  offsetof(TYPE, MEMBER.db_user), "this service's database role" }, \
	{ "db_password", "FRONTDESK_" SVC "_DB_PASSWORD", FD_CFG_SECRET, "", 0, 1024, \
	  offsetof(TYPE, MEMBER.db_password), "password of db_user (empty: none, or from ~/.pgpass)" }, \
	{ "db_pool", "FRONTDESK_" SVC "_DB_POOL", FD_CFG_INT, "8", 1, 1000, \
	  offsetof(TYPE, MEMBER.db_pool), "database connections" }, \
	{ "db_statement_timeout_ms", "FRONTDESK_DB_STATEMENT_TIMEOUT_MS", FD_CFG_INT, "10000", 0, 3600000, \
	  offsetof(TYPE, MEMBER.db_statement_timeout_ms), "a statement running longer is cancelled (0: the server's setting)" }, \
	{ "db_prepared", "FRONTDESK_DB_PREPARED", FD_CFG_BOOL, "true", 0, 1, \
	  offsetof(TYPE, MEMBER.db_prepared), "named prepared statements; false behind pgbouncer in transaction mode" }, \
	{ "log_level", "FRONTDESK_LOG_LEVEL", FD_CFG_STR, "info", 1, 16, \
	  offsetof(TYPE, MEMBER.log_level), "debug, info, warn or error" }, \
	{ "tls_cert", "FRONTDESK_TLS_CERT", FD_CFG_STR, "", 0, 4096, \
	  offsetof(TYPE, MEMBER.tls_cert), "server certificate (PEM file); empty: plaintext" }, \
	{ "tls_key", "FRONTDESK_TLS_KEY", FD_CFG_STR, "", 0, 4096, \
	  offsetof(TYPE, MEMBER.tls_key), "server private key (PEM file)" }, \
	{ "tls_client_ca", "FRONTDESK_TLS_CLIENT_CA", FD_CFG_STR, "", 0, 4096, \
	  offsetof(TYPE, MEMBER.tls_client_ca), "CA of client certificates; set: mutual TLS required" }, \
	{ "tls_ca", "FRONTDESK_TLS_CA", FD_CFG_STR, "", 0, 4096, \
	  offsetof(TYPE, MEMBER.tls_ca), "CA this service trusts when calling other services" }, \
	{ "allow_plaintext", "FRONTDESK_ALLOW_PLAINTEXT", FD_CFG_BOOL, "false", 0, 1, \
	  offsetof(TYPE, MEMBER.allow_plaintext), "serve without TLS on a non-loopback address (a private network only)" }, \
	{ "shutdown_grace_ms", "FRONTDESK_SHUTDOWN_GRACE_MS", FD_CFG_INT, "10000", 0, 600000, \
	  offsetof(TYPE, MEMBER.shutdown_grace_ms), "how long in-flight calls may finish after SIGTERM" }, \
	{ "max_message_bytes", "FRONTDESK_MAX_MESSAGE_BYTES", FD_CFG_INT, "4194304", 1024, 67108864, \
	  offsetof(TYPE, MEMBER.max_message_bytes), "largest request accepted" }, \
	{ "secret_hash_key", "FRONTDESK_SECRET_HASH_KEY", FD_CFG_SECRET, "", 0, 64, \
	  offsetof(TYPE, MEMBER.secret_hash_key), "64 hex digits, the same for every service: keyed hash of API keys (openssl rand -hex 32)" }, \
	{ "token_issuer", "FRONTDESK_TOKEN_ISSUER", FD_CFG_STR, "frontdesk", 1, 100, \
	  offsetof(TYPE, MEMBER.token_issuer), "iss of the tokens authd signs and the others accept" }, \
	{ "clock_skew", "FRONTDESK_CLOCK_SKEW", FD_CFG_INT, "30", 0, 300, \
	  offsetof(TYPE, MEMBER.clock_skew), "seconds of clock difference allowed when checking exp and nbf" }, \
	{ "auth_cache_ms", "FRONTDESK_AUTH_CACHE_MS", FD_CFG_INT, "4000", 1, 5000, \
	  offsetof(TYPE, MEMBER.auth_cache_ms), "how long a credential's status, revocation or suspension may be cached" }, \
	{ "test_clock_offset_ms", "FRONTDESK_TEST_CLOCK_OFFSET_MS", FD_CFG_INT, "0", -3600000, 3600000, \
	  offsetof(TYPE, MEMBER.test_clock_offset_ms), "tests only: shift this process's clock (clock-skew tests); 0 in production" }

/* Read every item from the environment (or its default) into cfg, which must
 * be zeroed. On a bad value: -FD_EINVAL and err names the variable and why;
 * cfg is then partly filled and must still be released with fd_config_free.
 * items ends with a row whose name is NULL. */
int fd_config_load(const fd_cfg_item_t *items, void *cfg, fd_err_t *err) FD_MUSTCHECK;
/* One line per item: VARIABLE=value (secrets and DSN passwords masked). */
void fd_config_print(const fd_cfg_item_t *items, const void *cfg, FILE *out);
/* The variable names, one per line. */
void fd_config_list_env(const fd_cfg_item_t *items, FILE *out);
void fd_config_free(const fd_cfg_item_t *items, void *cfg);

#endif
