/* billingd.h - billingd's settings, state and handlers: moves.c (Mint,
 * Transfer), charges.c (Charge, Refund), balances.c (GetBalance), entries.c
 * (ListLedger); money.h, store.h and enums.h hold what they share. */
#ifndef BILLINGD_H
#define BILLINGD_H

#include <stdint.h>
#include "fd/auth.h"
#include "fd/db.h"
#include "fd/service.h"
#include "frontdesk/v1/billing.pb-c.h"

typedef struct billingd_config {
	fd_service_config_t common;
	int64_t max_per_call;          /* largest amount one call may move */
} billingd_config_t;

typedef struct billingd {
	const billingd_config_t *cfg;
	fd_db_t *db;
} billingd_t;

static inline billingd_t *billingd_of(fd_call_t *call)
{
	return fd_service_state(fd_call_service(call));
}

#define OOM(call) fd_call_fail((call), FD_EEXHAUSTED, "out of memory for this request")

int billingd_get_balance(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int billingd_mint(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int billingd_transfer(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int billingd_charge(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int billingd_refund(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);
int billingd_list_ledger(fd_call_t *, const ProtobufCMessage *, ProtobufCMessage **);

#endif
