/* enums.c - billingd's enums as the ledger stores them (enums.h). */
#include <string.h>
#include "enums.h"
#include "frontdesk/v1/billing.pb-c.h"

const enum_name_t ENTRY_KIND_NAMES[] = {
	{ FRONTDESK__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_MINT, "mint" },
	{ FRONTDESK__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_TRANSFER, "transfer" },
	{ FRONTDESK__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_CHARGE, "charge" },
	{ FRONTDESK__V1__LEDGER_ENTRY_KIND__LEDGER_ENTRY_KIND_REFUND, "refund" },
	{ 0, NULL },
};

const enum_name_t CHARGE_REASON_NAMES[] = {
	{ FRONTDESK__V1__CHARGE_REASON__CHARGE_REASON_LINE_CREATED, "line_created" },
	{ FRONTDESK__V1__CHARGE_REASON__CHARGE_REASON_LINE_EXTENDED, "line_extended" },
	{ 0, NULL },
};

