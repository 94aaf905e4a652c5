/* enums.h - routerd's enums and their names (audit details, logs): one
 * two-way table per enum, read by enum_name and enum_value. */
#ifndef ROUTERD_ENUMS_H
#define ROUTERD_ENUMS_H

#include "fd/enums.h"

typedef fd_enum_name_t enum_name_t;   /* { value, name }, ending with { 0, NULL } */

extern const enum_name_t NODE_STATE_NAMES[];        /* NodeState: "active", "draining", "disabled" */
extern const enum_name_t NODE_HEALTH_NAMES[];       /* NodeHealth: "up", "down", "overloaded" */
extern const enum_name_t BANDWIDTH_POLICY_NAMES[];  /* BandwidthPolicy: "refuse", "lower_bitrate" */

/* The name of value in t; "unknown" when t does not list it (static). */
static inline const char *enum_name(const enum_name_t *t, int value)
{
	const char *n = fd_enum_name(t, value);
	return n ? n : "unknown";
}
/* The value named name in t; -1 when t does not list it. */
static inline int enum_value(const enum_name_t *t, const char *name)
{
	return fd_enum_value(t, name, -1);
}

#endif
