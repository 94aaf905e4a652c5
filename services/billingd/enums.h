/* enums.h - billingd's enums as the ledger stores them
 * (migrations/0003_billing.sql): one two-way table per enum, read both ways
 * by enum_text and enum_value. */
#ifndef BILLINGD_ENUMS_H
#define BILLINGD_ENUMS_H

typedef struct enum_name {
	int value;
	const char *text;            /* NULL ends a table */
} enum_name_t;

/* LedgerEntryKind <-> ledger_entries.kind: "mint", "transfer", "charge",
 * "refund" (UNSPECIFIED is not stored). */
extern const enum_name_t ENTRY_KIND_NAMES[];
/* ChargeReason <-> ledger_entries.charge_reason: "line_created",
 * "line_extended" (UNSPECIFIED is not stored: NULL in the row). */
extern const enum_name_t CHARGE_REASON_NAMES[];

/* The text of value in t (static); NULL when t does not list it. */
const char *enum_text(const enum_name_t *t, int value);
/* The value whose text is text in t; otherwise when t does not list it. */
int enum_value(const enum_name_t *t, const char *text, int otherwise);

#endif
