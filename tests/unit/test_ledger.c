/* test_ledger.c - billingd's pure rules, from tables: each enum's text both
 * ways (and that every value the contract defines is listed), the kind of an
 * account id, and the checks of amounts and notes with the messages a caller
 * gets. Through billingd's internal headers (enums.h, money.h). */
#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>
#include "enums.h"
#include "money.h"
#include "test.h"

/* ---- enums both ways ---- */

typedef struct {
	const char *what;
	const enum_name_t *table;
	const ProtobufCEnumDescriptor *desc;
	const char *prefix;        /* of the contract's names: LEDGER_ENTRY_KIND_MINT -> "mint" */
} enum_case_t;

static const enum_case_t enums[] = {
	{ "entry kind", ENTRY_KIND_NAMES, &frontdesk__v1__ledger_entry_kind__descriptor, "LEDGER_ENTRY_KIND_" },
	{ "charge reason", CHARGE_REASON_NAMES, &frontdesk__v1__charge_reason__descriptor, "CHARGE_REASON_" },
};

/* Texts no table may match: the stored texts are lower case, exact. */
static const char *const strangers[] = { "", "MINT", "Mint", "mint ", " mint", "min", "mints", "unspecified",
	                                      "LINE_CREATED", "line created", "line_created\n" };

/* The contract's name for a value, as the database spells it. */
static void stored_text(const char *name, const char *prefix, char *out, size_t n)
{
	size_t i = 0;
	for (const char *p = name + strlen(prefix); *p && i + 1 < n; p++)
		out[i++] = (char)tolower((unsigned char)*p);
	out[i] = '\0';
}

static void test_enums(void)
{
	for (size_t k = 0; k < sizeof(enums) / sizeof(enums[0]); k++) {
		const enum_case_t *e = &enums[k];
		size_t listed = 0;
		for (const enum_name_t *t = e->table; t->name; t++, listed++) {
			CHECK(enum_value(e->table, t->name, -7) == t->value, "%s '%s' -> %d", e->what, t->name,
			      enum_value(e->table, t->name, -7));
			CHECK(enum_text(e->table, t->value) == t->name, "%s %d -> '%s'", e->what, t->value, t->name);
		}
		/* Every value of the contract but UNSPECIFIED, with the text the
		 * database stores (its CHECK constraints spell them the same way). */
		for (unsigned i = 0; i < e->desc->n_values; i++) {
			const ProtobufCEnumValue *v = &e->desc->values[i];
			const char *text = enum_text(e->table, v->value);
			if (v->value == 0) {
				CHECK(text == NULL, "%s: UNSPECIFIED is not stored, got '%s'", e->what, text);
				continue;
			}
			char want[64];
			stored_text(v->name, e->prefix, want, sizeof(want));
			CHECK(text && strcmp(text, want) == 0, "%s %s: '%s', want '%s'", e->what, v->name, text ? text : "(none)",
			      want);
		}
		CHECK(listed == e->desc->n_values - 1, "%s: %zu listed, the contract has %u values", e->what, listed,
		      e->desc->n_values);
		/* Values out of range are not listed; texts not listed give the fallback. */
		const int outside[] = { -1, 0, (int)e->desc->n_values, 1000 };
		for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++)
			CHECK(enum_text(e->table, outside[i]) == NULL, "%s %d: listed", e->what, outside[i]);
		for (size_t i = 0; i < sizeof(strangers) / sizeof(strangers[0]); i++)
			CHECK(enum_value(e->table, strangers[i], -7) == -7, "%s '%s': matched", e->what, strangers[i]);
	}
}

/* ---- account ids ---- */

static void test_accounts(void)
{
	static const struct {
		int64_t id;
		Frontdesk__V1__AccountKind want;
	} cases[] = {
		{ 1, FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_RESELLER },
		{ INT64_MAX, FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_RESELLER },
		{ ACCOUNT_ISSUANCE, FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_ISSUANCE },
		{ ACCOUNT_CONSUMPTION, FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_CONSUMPTION },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK(account_kind(cases[i].id) == cases[i].want, "account %" PRId64 ": kind %d", cases[i].id,
		      account_kind(cases[i].id));
}

/* ---- amounts and notes ---- */

enum check { AMOUNT, REFUND_AMOUNT };

typedef struct {
	enum check check;
	int64_t amount, max;
	const char *msg;           /* NULL: accepted; else the whole message (INVALID_ARGUMENT) */
} amount_case_t;

static const amount_case_t amounts[] = {
	{ AMOUNT, 1, 10, NULL },
	{ AMOUNT, 10, 10, NULL },
	{ AMOUNT, 1000000000, 1000000000, NULL },
	{ AMOUNT, 0, 10, "amount: must be more than 0" },
	{ AMOUNT, -1, 10, "amount: must be more than 0" },
	{ AMOUNT, INT64_MIN, 10, "amount: must be more than 0" },
	{ AMOUNT, 11, 10, "amount: at most 10 per call" },
	{ AMOUNT, INT64_MAX, 1000000000, "amount: at most 1000000000 per call" },
	{ REFUND_AMOUNT, 0, 10, NULL },          /* the whole charge */
	{ REFUND_AMOUNT, 1, 10, NULL },
	{ REFUND_AMOUNT, 10, 10, NULL },
	{ REFUND_AMOUNT, -1, 10, "amount: 0 (the whole charge) to 10" },
	{ REFUND_AMOUNT, INT64_MIN, 10, "amount: 0 (the whole charge) to 10" },
	{ REFUND_AMOUNT, 11, 10, "amount: 0 (the whole charge) to 10" },
	{ REFUND_AMOUNT, INT64_MAX, 1000000000, "amount: 0 (the whole charge) to 1000000000" },
};

static void test_amounts(void)
{
	for (size_t i = 0; i < sizeof(amounts) / sizeof(amounts[0]); i++) {
		const amount_case_t *k = &amounts[i];
		fd_err_t err = { 0 };
		int rc = k->check == AMOUNT ? check_amount(k->amount, k->max, &err)
		                            : check_refund_amount(k->amount, k->max, &err);
		CHECK(rc == (k->msg ? -FD_EINVAL : 0), "amount case %zu: rc %d", i, rc);
		if (k->msg)
			CHECK(err.code == FD_EINVAL && strcmp(err.msg, k->msg) == 0, "amount case %zu: '%s'", i, err.msg);
	}
}

static void test_notes(void)
{
	char longest[501], too_long[502];
	memset(longest, 'n', 500), longest[500] = '\0';
	memset(too_long, 'n', 501), too_long[501] = '\0';
	static const char *const refused[] = {
		"\xe2\x80\xae" "reversed",           /* U+202E: a bidi override */
		"csi\xc2\x9b" "31m",                 /* U+009B: a C1 control */
		"   ",                               /* blanks only */
		"line\nbreak",
	};
	const char *accepted[] = { "", "created line 12", "Zoë's line", " padded note ", longest };
	for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		fd_err_t err = { 0 };
		CHECK(check_note(accepted[i], &err) == 0, "note %zu refused: %s", i, err.msg);
	}
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		fd_err_t err = { 0 };
		CHECK(check_note(refused[i], &err) == -FD_EINVAL && strncmp(err.msg, "note: ", 6) == 0,
		      "note %zu: '%s'", i, err.msg);
	}
	fd_err_t err = { 0 };
	CHECK(check_note(too_long, &err) == -FD_EINVAL && strcmp(err.msg, "note: at most 500 characters") == 0,
	      "501 characters: '%s'", err.msg);
}

int main(void)
{
	test_enums();
	test_accounts();
	test_amounts();
	test_notes();
	return test_summary();
}
