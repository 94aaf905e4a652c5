/* enums.c - linesd's enum tables (enums.h). */
#include <string.h>
#include "enums.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]) - 1)   /* entries before { 0, NULL } */

const char *enum_name(const enum_table_t *t, int value)
{
	return fd_enum_name(t->v, value);
}

int enum_value(const enum_table_t *t, const char *name)
{
	return fd_enum_value(t->v, name, t->unknown);
}

#define STATUS(x) FRONTDESK__V1__LINE_STATUS__LINE_STATUS_##x
static const enum_name_t line_status[] = {
	{ STATUS(ACTIVE), "active" },
	{ STATUS(DISABLED), "disabled" },
	{ STATUS(BANNED), "banned" },
	{ STATUS(EXPIRED), "expired" },
	{ 0, NULL },
};
const enum_table_t LINE_STATUS = { line_status, COUNT(line_status), STATUS(UNSPECIFIED) };

#define POLICY(x) FRONTDESK__V1__CONNECTION_LIMIT_POLICY__CONNECTION_LIMIT_POLICY_##x
static const enum_name_t policy[] = {
	{ POLICY(REFUSE_NEW), "refuse_new" },
	{ POLICY(END_OLDEST), "end_oldest" },
	{ 0, NULL },
};
const enum_table_t CONNECTION_POLICY = { policy, COUNT(policy), POLICY(REFUSE_NEW) };

static const enum_name_t charge_kind[] = {
	{ CHARGE_CREATE, "create" },
	{ CHARGE_EXTEND, "extend" },
	{ 0, NULL },
};
const enum_table_t CHARGE_KIND = { charge_kind, COUNT(charge_kind), -1 };

static const enum_name_t charge_state[] = {
	{ CHARGE_PENDING, "pending" },
	{ CHARGE_APPLIED, "applied" },
	{ 0, NULL },
};
const enum_table_t CHARGE_STATE = { charge_state, COUNT(charge_state), -1 };

#define DENY(x) FRONTDESK__V1__DENIAL_REASON__DENIAL_REASON_##x
static const struct {
	const char *word;
	playback_answer_t answer;
} outcomes[PLAYBACK_NOUTCOMES] = {
	[PLAYBACK_UNKNOWN] = { NULL, { false, DENY(UNSPECIFIED), "denied" } },
#define PLAYBACK_ROW(N, w, reason, message) \
	[PLAYBACK_##N] = { #w, { PLAYBACK_##N == PLAYBACK_ALLOWED, DENY(reason), message } },
	PLAYBACK_OUTCOMES(PLAYBACK_ROW)
#undef PLAYBACK_ROW
};

playback_answer_t playback_answer(int n)
{
	return outcomes[n > 0 && n < PLAYBACK_NOUTCOMES ? n : PLAYBACK_UNKNOWN].answer;
}

const char *playback_word(int n)
{
	return n > 0 && n < PLAYBACK_NOUTCOMES ? outcomes[n].word : NULL;
}
