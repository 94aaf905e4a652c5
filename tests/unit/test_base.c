/* test_base.c - arena, config table, status mapping. */
#include <stdlib.h>
#include <string.h>
#include "fd/arena.h"
#include "fd/config.h"
#include "fd/rpc_status.h"
#include "test.h"

static void test_arena(void)
{
	fd_arena_t a;
	fd_arena_init(&a, 64 * 1024);
	char *p = fd_arena_alloc(&a, 10);
	CHECK(p && ((uintptr_t)p & 15) == 0, "aligned small allocation");
	for (int i = 0; i < 100; i++) {
		void *q = fd_arena_alloc(&a, 300);
		CHECK(q && ((uintptr_t)q & 15) == 0, "allocation %d", i);
		memset(q, 0xab, 300);
	}
	CHECK(!a.exhausted, "within the limit");
	CHECK(fd_arena_alloc(&a, 128 * 1024) == NULL && a.exhausted, "over the limit fails");
	char *s = fd_arena_printf(&a, "%s-%d", "call", 42);
	CHECK(s && strcmp(s, "call-42") == 0, "printf: %s", s ? s : "(null)");
	char *d = fd_arena_strndup(&a, "abcdef", 3);
	CHECK(d && strcmp(d, "abc") == 0, "strndup");
	fd_arena_free(&a);

	/* Secrets named to the arena are wiped when it is freed, whatever the
	 * path out of the call; what was not named is left alone. */
	static char opened[32], other[32];
	fd_arena_init(&a, 64 * 1024);
	strcpy(opened, "line-password-1234");
	strcpy(other, "not a secret");
	CHECK(fd_arena_wipe_on_free(&a, opened, sizeof(opened)) == 0, "wipe registered");
	char *sec = fd_arena_secret(&a, 64);
	CHECK(sec != NULL, "secret allocated");
	if (sec)
		strcpy(sec, "another secret");
	for (int i = 0; i < 50; i++)   /* more chunks after the registrations */
		CHECK(fd_arena_alloc(&a, 1000) != NULL, "filler %d", i);
	CHECK(strcmp(opened, "line-password-1234") == 0, "intact while the arena lives");
	fd_arena_free(&a);
	static const char zeros[32];
	CHECK(memcmp(opened, zeros, sizeof(opened)) == 0, "wiped when the arena is freed");
	CHECK(strcmp(other, "not a secret") == 0, "the rest untouched");
	fd_arena_init(&a, 64);
	CHECK(fd_arena_alloc(&a, 2000) == NULL, "exhaust a tiny arena");
	CHECK(fd_arena_secret(&a, 4000) == NULL, "a secret that does not fit: NULL");
	fd_arena_free(&a);
}

typedef struct test_config {
	fd_service_config_t common;
	int64_t ttl;
} test_config_t;

static const fd_cfg_item_t items[] = {
	FD_SERVICE_CONFIG_ITEMS("TESTD", "testd", "127.0.0.1:7999", test_config_t, common),
	{ "ttl", "FRONTDESK_TEST_TTL", FD_CFG_INT, "900", 60, 900, offsetof(test_config_t, ttl), "" },
	{ 0 },
};

static void clear_env(void)
{
	for (const fd_cfg_item_t *it = items; it->name; it++)
		unsetenv(it->env);
}

static void test_config(void)
{
	clear_env();
	test_config_t c = { 0 };
	fd_err_t err = { 0 };
	CHECK(fd_config_load(items, &c, &err) == 0, "defaults load: %s", err.msg);
	CHECK(strcmp(c.common.listen, "127.0.0.1:7999") == 0, "default listen");
	CHECK(strcmp(c.common.db_user, "frontdesk_testd") == 0, "default role: %s", c.common.db_user);
	CHECK(c.ttl == 900 && c.common.db_prepared, "default values");
	fd_config_free(items, &c);

	static const struct { const char *env, *value, *want; } bad[] = {
		{ "FRONTDESK_TEST_TTL", "30", "FRONTDESK_TEST_TTL: 30 is outside 60..900" },
		{ "FRONTDESK_TEST_TTL", "12x", "FRONTDESK_TEST_TTL: \"12x\" is not an integer" },
		{ "FRONTDESK_TESTD_THREADS", "0", "FRONTDESK_TESTD_THREADS: 0 is outside 1..256" },
		{ "FRONTDESK_DB_PREPARED", "maybe", "FRONTDESK_DB_PREPARED: \"maybe\" is not a boolean" },
		{ "FRONTDESK_TESTD_LISTEN", "", "FRONTDESK_TESTD_LISTEN: must not be empty" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		clear_env();
		setenv(bad[i].env, bad[i].value, 1);
		test_config_t b = { 0 };
		int rc = fd_config_load(items, &b, &err);
		CHECK(rc == -FD_EINVAL && strncmp(err.msg, bad[i].want, strlen(bad[i].want)) == 0,
		      "%s=%s: rc %d \"%s\"", bad[i].env, bad[i].value, rc, err.msg);
		fd_config_free(items, &b);
	}

	/* --print-config masks secrets and database passwords. */
	clear_env();
	setenv("FRONTDESK_TESTD_DB_PASSWORD", "hunter2", 1);
	setenv("FRONTDESK_DATABASE_URL", "host=db password=s3cret dbname=x", 1);
	test_config_t p = { 0 };
	CHECK(fd_config_load(items, &p, &err) == 0, "load: %s", err.msg);
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	fd_config_print(items, &p, f);
	fclose(f);
	CHECK(!strstr(out, "hunter2") && !strstr(out, "s3cret"), "secrets printed:\n%s", out);
	CHECK(strstr(out, "FRONTDESK_TESTD_DB_PASSWORD=(set)") != NULL, "secret shown as set");
	CHECK(strstr(out, "FRONTDESK_DATABASE_URL=host=db password=*** dbname=x") != NULL,
	      "dsn masked:\n%s", out);
	free(out);
	fd_config_free(items, &p);

	setenv("FRONTDESK_DATABASE_URL", "postgresql://u:pw@db:5432/x?sslmode=require", 1);
	test_config_t u = { 0 };
	CHECK(fd_config_load(items, &u, &err) == 0, "load: %s", err.msg);
	f = open_memstream(&out, &outlen);
	fd_config_print(items, &u, f);
	fclose(f);
	CHECK(strstr(out, "postgresql://u:***@db:5432/x?sslmode=require") != NULL, "uri masked:\n%s",
	      out);
	free(out);
	fd_config_free(items, &u);
	clear_env();
}

static void test_status(void)
{
	char msg[300];
	fd_err_t err = { 0 };
	fd_err_set(&err, FD_EINVAL, "username: at most %d bytes", 64);
	CHECK(fd_rpc_status(-FD_EINVAL, &err, "c1", msg, sizeof(msg)) == GRPC_STATUS_INVALID_ARGUMENT &&
	              strcmp(msg, "username: at most 64 bytes") == 0,
	      "invalid argument carries its message: %s", msg);
	fd_err_set(&err, FD_EINTERNAL, "relation \"x\" does not exist");
	CHECK(fd_rpc_status(-FD_EINTERNAL, &err, "c2", msg, sizeof(msg)) == GRPC_STATUS_INTERNAL &&
	              !strstr(msg, "relation") && strstr(msg, "c2"),
	      "internal errors hide details: %s", msg);
	CHECK(fd_rpc_status(-FD_EUNAVAIL, NULL, "c3", msg, sizeof(msg)) == GRPC_STATUS_UNAVAILABLE &&
	              strstr(msg, "retry"),
	      "default message: %s", msg);
	CHECK(fd_rpc_status(-99, NULL, "c4", msg, sizeof(msg)) == GRPC_STATUS_INTERNAL, "unknown code");
	CHECK(fd_rpc_status(0, NULL, "c5", msg, sizeof(msg)) == GRPC_STATUS_OK && !msg[0], "ok");
}

int main(void)
{
	test_arena();
	test_config();
	test_status();
	return test_summary();
}
