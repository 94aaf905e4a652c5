/* enums.h - billingd's enums as the ledger stores them
 * (migrations/0003_billing.sql): one two-way table per enum, read both ways
 * by enum_text and enum_value. */
#ifndef BILLINGD_ENUMS_H
#define BILLINGD_ENUMS_H

#include "fd/enums.h"

typedef fd_enum_name_t enum_name_t;   /* { value, name }, ending with { 0, NULL } */

/* LedgerEntryKind <-> ledger_entries.kind: "mint", "transfer", "charge",
 * "refund" (UNSPECIFIED is not stored). */
extern const enum_name_t ENTRY_KIND_NAMES[];
/* ChargeReason <-> ledger_entries.charge_reason: "line_created",
 * "line_extended" (UNSPECIFIED is not stored: NULL in the row). */
extern const enum_name_t CHARGE_REASON_NAMES[];

/* The word of value in t (static), NULL when t does not list it; the value
 * of a word, otherwise when t does not list it (fd/enums.h). */
static inline const char *enum_text(const enum_name_t *t, int value)
{
	return fd_enum_name(t, value);
}
static inline int enum_value(const enum_name_t *t, const char *text, int otherwise)
{
	return fd_enum_value(t, text, otherwise);
}

#endif
