/* enums.h - the database's words for linesd's enums, each through one
 * two-way table (text <-> number), and the outcomes of
 * frontdesk.authorize_playback with the answer each gives. Pure data;
 * unit tested (tests/unit/test_linesd_enums.c). */
#ifndef LINESD_ENUMS_H
#define LINESD_ENUMS_H

#include <stdbool.h>
#include <stddef.h>
#include "frontdesk/v1/lines.pb-c.h"

#include "fd/enums.h"

typedef fd_enum_name_t enum_name_t;   /* { value, the database's word } */

typedef struct enum_table {
	const enum_name_t *v;         /* ends with { 0, NULL } */
	size_t n;                     /* entries before the end */
	int unknown;                   /* what enum_value answers for a word not listed */
} enum_table_t;

/* The word of value (static), NULL if it has none. */
const char *enum_name(const enum_table_t *t, int value);
/* The value of name, t->unknown if it is not listed. */
int enum_value(const enum_table_t *t, const char *name);

/* lines.state (and the status columns derived from it: "expired" at the
 * second) <-> Frontdesk__V1__LineStatus; "pending" (a line being charged)
 * has no status: UNSPECIFIED. */
extern const enum_table_t LINE_STATUS;
/* lines_settings.connection_limit_policy <-> ..._CONNECTION_LIMIT_POLICY_*;
 * unknown: REFUSE_NEW (the default). */
extern const enum_table_t CONNECTION_POLICY;
#define DEFAULT_POLICY "refuse_new"

/* line_charges.kind and .state. */
typedef enum charge_kind {
	CHARGE_CREATE,                 /* CreateLine, CreateTrialLine: the line is pending until applied */
	CHARGE_EXTEND,                 /* ExtendLine */
} charge_kind_t;
extern const enum_table_t CHARGE_KIND;
typedef enum charge_state {
	CHARGE_PENDING,                /* prepared, not yet applied (the outbox) */
	CHARGE_APPLIED,                /* the line has it; charge_entry_id says what billingd made */
} charge_state_t;
extern const enum_table_t CHARGE_STATE;

/* ---- authorize_playback's outcomes ----
 * X(NAME, the function's word, DenialReason, message): the word crosses from
 * SQL as its number here (PLAYBACK_OUTCOME_SQL), so the answer is a table
 * look-up, not a chain of strcmp. */
#define PLAYBACK_OUTCOMES(X)                                                                          \
	X(ALLOWED, allowed, UNSPECIFIED, NULL)                                                            \
	X(BAD_CREDENTIALS, bad_credentials, BAD_CREDENTIALS, "unknown username or wrong password")        \
	X(RATE_LIMITED, rate_limited, RATE_LIMITED, "too many failed attempts from this address")         \
	X(BANNED, banned, BANNED, "the line is banned")                                                   \
	X(DISABLED, disabled, DISABLED, "the line is disabled")                                           \
	X(TENANT_SUSPENDED, tenant_suspended, TENANT_SUSPENDED, "the service is suspended")               \
	X(RESELLER_SUSPENDED, reseller_suspended, RESELLER_SUSPENDED, "the line's reseller is suspended") \
	X(EXPIRED, expired, EXPIRED, "the line has expired")                                              \
	X(IP_NOT_ALLOWED, ip_not_allowed, IP_NOT_ALLOWED, "the line may not be used from this address")   \
	X(UA_NOT_ALLOWED, ua_not_allowed, UA_NOT_ALLOWED, "the line may not be used with this player")    \
	X(FORMAT_NOT_ALLOWED, format_not_allowed, FORMAT_NOT_ALLOWED, "the line may not play this format") \
	X(STREAM_NOT_IN_PACKAGE, stream_not_in_package, STREAM_NOT_IN_PACKAGE,                            \
	  "the stream is not in the line's package")                                                      \
	X(MAX_CONNECTIONS, max_connections, MAX_CONNECTIONS, "the line is at its connection limit")

typedef enum playback_outcome {
	PLAYBACK_UNKNOWN = 0,          /* a word this table does not list: denied, no reason */
#define PLAYBACK_ENUM(N, word, reason, message) PLAYBACK_##N,
	PLAYBACK_OUTCOMES(PLAYBACK_ENUM)
#undef PLAYBACK_ENUM
	PLAYBACK_NOUTCOMES
} playback_outcome_t;

/* The SQL expression of the outcome's number from the function's word:
 * its place in '{_,allowed,bad_credentials,...}' less one ("_" holds
 * place 1, so "allowed" is 1 = PLAYBACK_ALLOWED), 0 when not listed. A
 * constant array, folded into the generic plan. */
#define PLAYBACK_WORD(N, word, reason, message) "," #word
#define PLAYBACK_OUTCOME_SQL(col)                                                                     \
	"coalesce(array_position('{_" PLAYBACK_OUTCOMES(PLAYBACK_WORD) "}'::text[], " col ") - 1, 0)"

typedef struct playback_answer {
	bool allowed;
	Frontdesk__V1__DenialReason reason;   /* UNSPECIFIED when allowed (or unknown) */
	const char *message;                  /* static; NULL when allowed */
} playback_answer_t;

/* The answer of outcome number n (as PLAYBACK_OUTCOME_SQL gives it; any
 * other number is PLAYBACK_UNKNOWN: denied, message "denied"). */
playback_answer_t playback_answer(int n);
/* The function's word of outcome n, NULL when not listed. */
const char *playback_word(int n);

#endif
