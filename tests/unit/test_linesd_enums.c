/* test_linesd_enums.c - linesd's enum tables (services/linesd/enums.h): the
 * playback outcomes as a table (the number authorize_playback's word
 * crosses as -> allowed, denial reason, message), the SQL array that makes
 * the number agreeing with that table, and every text <-> enum table both
 * ways. */
#include <stdlib.h>
#include <string.h>
#include "enums.h"
#include "test.h"

#define DENY(x) FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_##x

/* The function's word (migrations/0007_zapping.sql), and the answer. */
static const struct {
	const char *word;
	int n;
	bool allowed;
	Frontdesk__V1__DenialReason reason;
	const char *message;
} outcomes[] = {
	{ "allowed", PLAYBACK_ALLOWED, true, DENY(UNSPECIFIED), NULL },
	{ "bad_credentials", PLAYBACK_BAD_CREDENTIALS, false, DENY(BAD_CREDENTIALS), "unknown username or wrong password" },
	{ "rate_limited", PLAYBACK_RATE_LIMITED, false, DENY(RATE_LIMITED), "too many failed attempts from this address" },
	{ "banned", PLAYBACK_BANNED, false, DENY(BANNED), "the line is banned" },
	{ "disabled", PLAYBACK_DISABLED, false, DENY(DISABLED), "the line is disabled" },
	{ "tenant_suspended", PLAYBACK_TENANT_SUSPENDED, false, DENY(TENANT_SUSPENDED), "the service is suspended" },
	{ "reseller_suspended", PLAYBACK_RESELLER_SUSPENDED, false, DENY(RESELLER_SUSPENDED),
	  "the line's reseller is suspended" },
	{ "expired", PLAYBACK_EXPIRED, false, DENY(EXPIRED), "the line has expired" },
	{ "ip_not_allowed", PLAYBACK_IP_NOT_ALLOWED, false, DENY(IP_NOT_ALLOWED),
	  "the line may not be used from this address" },
	{ "ua_not_allowed", PLAYBACK_UA_NOT_ALLOWED, false, DENY(UA_NOT_ALLOWED),
	  "the line may not be used with this player" },
	{ "format_not_allowed", PLAYBACK_FORMAT_NOT_ALLOWED, false, DENY(FORMAT_NOT_ALLOWED),
	  "the line may not play this format" },
	{ "stream_not_in_package", PLAYBACK_STREAM_NOT_IN_PACKAGE, false, DENY(STREAM_NOT_IN_PACKAGE),
	  "the stream is not in the line's package" },
	{ "max_connections", PLAYBACK_MAX_CONNECTIONS, false, DENY(MAX_CONNECTIONS), "the line is at its connection limit" },
};
#define NOUT (sizeof(outcomes) / sizeof(outcomes[0]))

static bool same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* The position (from 1) of word in the '{...}' literal of PLAYBACK_OUTCOME_SQL,
 * as array_position finds it; 0 when absent. */
static int position(const char *word)
{
	const char *sql = PLAYBACK_OUTCOME_SQL("d.outcome");
	const char *a = strstr(sql, "'{"), *z = a ? strstr(a, "}'") : NULL;
	if (!a || !z)
		return -1;
	char list[1024];
	size_t n = (size_t)(z - a - 2);
	memcpy(list, a + 2, n);
	list[n] = '\0';
	int pos = 0;
	for (char *save, *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		pos++;
		if (strcmp(w, word) == 0)
			return pos;
	}
	return 0;
}

static void test_outcomes(void)
{
	CHECK(NOUT == PLAYBACK_NOUTCOMES - 1, "every outcome is in this table (%zu, enum %d)", NOUT, PLAYBACK_NOUTCOMES);
	for (size_t i = 0; i < NOUT; i++) {
		playback_answer_t a = playback_answer(outcomes[i].n);
		CHECK(a.allowed == outcomes[i].allowed, "%s: allowed %d", outcomes[i].word, a.allowed);
		CHECK(a.reason == outcomes[i].reason, "%s: reason %d", outcomes[i].word, a.reason);
		CHECK(same(a.message, outcomes[i].message), "%s: message %s", outcomes[i].word, a.message);
		CHECK(same(playback_word(outcomes[i].n), outcomes[i].word), "%d: word %s", outcomes[i].n,
		      playback_word(outcomes[i].n));
		/* SQL's number of the word is the enum's. */
		CHECK(position(outcomes[i].word) - 1 == outcomes[i].n, "%s: SQL gives %d, the table %d", outcomes[i].word,
		      position(outcomes[i].word) - 1, outcomes[i].n);
	}
	/* Unknown (a word the table lacks: coalesce(...) 0), and numbers out of range. */
	const int unknown[] = { PLAYBACK_UNKNOWN, -1, PLAYBACK_NOUTCOMES, 1000 };
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		playback_answer_t a = playback_answer(unknown[i]);
		CHECK(!a.allowed && a.reason == DENY(UNSPECIFIED) && same(a.message, "denied"), "unknown %d", unknown[i]);
		CHECK(playback_word(unknown[i]) == NULL, "unknown %d has no word", unknown[i]);
	}
	CHECK(position("_") == 1 && position("no_such_word") == 0, "the placeholder holds place 1");
	CHECK(strstr(PLAYBACK_OUTCOME_SQL("x"), "::text[], x) - 1, 0)") != NULL, "%s", PLAYBACK_OUTCOME_SQL("x"));
}

static void both_ways(const char *what, const enum_table_t *t, const char *const *names, const int *values, size_t n)
{
	CHECK(t->n == n, "%s: %zu entries, the test knows %zu", what, t->n, n);
	for (size_t i = 0; i < n; i++) {
		CHECK(same(enum_name(t, values[i]), names[i]), "%s: %d -> %s", what, values[i], enum_name(t, values[i]));
		CHECK(enum_value(t, names[i]) == values[i], "%s: %s -> %d", what, names[i], enum_value(t, names[i]));
	}
	CHECK(enum_value(t, "no such word") == t->unknown && enum_value(t, "") == t->unknown, "%s: unknown word", what);
	CHECK(enum_name(t, 12345) == NULL && enum_name(t, -7) == NULL, "%s: unknown value", what);
}

static void test_tables(void)
{
	const char *status[] = { "active", "disabled", "banned", "expired" };
	const int status_v[] = { FRONTDESK__V1__LINE_STATUS__LINE_STATUS_ACTIVE, FRONTDESK__V1__LINE_STATUS__LINE_STATUS_DISABLED,
		                     FRONTDESK__V1__LINE_STATUS__LINE_STATUS_BANNED, FRONTDESK__V1__LINE_STATUS__LINE_STATUS_EXPIRED };
	both_ways("line status", &LINE_STATUS, status, status_v, 4);
	CHECK(enum_value(&LINE_STATUS, "pending") == FRONTDESK__V1__LINE_STATUS__LINE_STATUS_UNSPECIFIED,
	      "a pending line has no status");
	CHECK(enum_name(&LINE_STATUS, FRONTDESK__V1__LINE_STATUS__LINE_STATUS_UNSPECIFIED) == NULL,
	      "UNSPECIFIED has no word (ListLines: any status)");

	const char *policy[] = { "refuse_new", "end_oldest" };
	const int policy_v[] = { FRONTDESK__V1__CONNECTION_LIMIT_POLICY__CONNECTION_LIMIT_POLICY_REFUSE_NEW,
		                     FRONTDESK__V1__CONNECTION_LIMIT_POLICY__CONNECTION_LIMIT_POLICY_END_OLDEST };
	both_ways("policy", &CONNECTION_POLICY, policy, policy_v, 2);
	CHECK(enum_value(&CONNECTION_POLICY, DEFAULT_POLICY) == policy_v[0], "the default is REFUSE_NEW");

	const char *kind[] = { "create", "extend" };
	const int kind_v[] = { CHARGE_CREATE, CHARGE_EXTEND };
	both_ways("charge kind", &CHARGE_KIND, kind, kind_v, 2);
	const char *state[] = { "pending", "applied" };
	const int state_v[] = { CHARGE_PENDING, CHARGE_APPLIED };
	both_ways("charge state", &CHARGE_STATE, state, state_v, 2);
}

int main(void)
{
	test_outcomes();
	test_tables();
	return test_summary();
}
