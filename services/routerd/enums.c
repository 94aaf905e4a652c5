/* enums.c - the names of routerd's enums (enums.h). */
#include <string.h>
#include "enums.h"
#include "table.h"

const enum_name_t NODE_STATE_NAMES[] = {
	{ STATE_ACTIVE, "active" },
	{ STATE_DRAINING, "draining" },
	{ STATE_DISABLED, "disabled" },
	{ 0, NULL },
};

const enum_name_t NODE_HEALTH_NAMES[] = {
	{ HEALTH_UP, "up" },
	{ HEALTH_DOWN, "down" },
	{ HEALTH_OVERLOADED, "overloaded" },
	{ 0, NULL },
};

const enum_name_t BANDWIDTH_POLICY_NAMES[] = {
	{ POLICY_REFUSE, "refuse" },
	{ POLICY_LOWER_BITRATE, "lower_bitrate" },
	{ 0, NULL },
};

