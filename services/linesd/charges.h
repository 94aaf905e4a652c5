/* charges.h - settling the charges of lines (charges.c): the outbox row's
 * steps, and Refund. */
#ifndef LINESD_CHARGES_H
#define LINESD_CHARGES_H

#include "linesd.h"

/* One settlement of a charge row: what the caller gives (the first block),
 * the row as read, the steps taken, and the results. */
typedef struct settle {
	linesd_t *l;
	fd_arena_t *arena;
	int64_t tenant;
	const char *tenant_s, *charge_s;
	int64_t charge_id;
	int64_t deadline_ms;
	bool reconcile;              /* the reconciliation job: leave rows a settler holds or has claimed */
	bool claimed;                /* the row is claimed and the fields below are read (a fresh prepare) */
	/* the row */
	int64_t line_id, reseller, package, amount;
	int32_t periods;
	bool extend;
	/* steps */
	bool drop;                   /* finish: billingd refused for good, drop the pending rows */
	bool give_back;              /* finish found nothing to apply a charge made to: refund it */
	bool vanished;               /* finish found the line deleted and nothing charged: drop the row */
	/* results */
	bool busy;                   /* reconcile: another settler holds or has claimed it */
	bool gone;                   /* no such charge (refused earlier: nothing was charged) */
	bool refused;                /* refused for good: pending rows removed, refusal says why */
	fd_err_t refusal;
	int64_t entry_id, balance_after;
	int32_t trials_left;
	Frontdesk__V1__Line *line;
} settle_t;

/* Settles charge s->charge_id of s->tenant in steps, with no transaction
 * open while billingd is asked (see charges.c). 0 with s's results, or
 * -code in err. */
int charges_settle(settle_t *s, fd_err_t *err) FD_MUSTCHECK;
/* The same for the call r (its deadline, arena and tenant) and its error:
 * -code when not settled now or refused (the refusal as the call's error). */
int charges_settle_for_call(const fd_tctx_t *r, settle_t *s) FD_MUSTCHECK;
/* billingd's Refund of charge entry `entry` (of line charge charge_id) under
 * the key "lr-<charge id>": a charge is refunded at most once, so one key
 * per charge serves every path that gives it back. Never called inside a
 * transaction. *refund_entry: the refund's entry (0: none). */
int charges_refund(linesd_t *l, fd_arena_t *arena, int64_t tenant, int64_t charge_id, int64_t entry,
                   int64_t amount, const char *why, int64_t *refund_entry, fd_err_t *err) FD_MUSTCHECK;

/* Settles the charges of tenant left pending longer than reconcile_after
 * (the reconciliation job). A charge that cannot be settled now is logged
 * and left pending; -code only when the pending ones could not be read. */
int charges_reconcile(linesd_t *l, int64_t tenant, fd_err_t *err) FD_MUSTCHECK;

#endif
