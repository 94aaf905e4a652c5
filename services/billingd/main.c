/* main.c - billingd: reseller credits on a double-entry ledger (billingd.h
 * lists its parts): settings, methods, start-up. */
#include <stddef.h>
#include <stdlib.h>
#include "billingd.h"

static const fd_cfg_item_t config_items[] = {
	FD_SERVICE_CONFIG_ITEMS("BILLINGD", "billingd", "127.0.0.1:7102", billingd_config_t, common),
	{ "max_credits_per_call", "FRONTDESK_MAX_CREDITS_PER_CALL", FD_CFG_INT, "1000000000", 1,
	  1000000000000LL, offsetof(billingd_config_t, max_per_call),
	  "largest amount a Mint, Transfer, Charge or Refund may move" },
	{ 0 },
};

static const fd_method_impl_t methods[] = {
	{ "GetBalance", billingd_get_balance, NULL },
	{ "MintCredits", billingd_mint, NULL },
	{ "TransferCredits", billingd_transfer, NULL },
	{ "Charge", billingd_charge, NULL },
	{ "Refund", billingd_refund, NULL },
	{ "ListLedger", billingd_list_ledger, NULL },
	{ 0 },
};

static int billingd_init(fd_service_t *svc, void **state, fd_err_t *err)
{
	billingd_t *b = calloc(1, sizeof(*b));
	if (!b)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	b->cfg = fd_service_config(svc);
	b->db = fd_service_db(svc);
	*state = b;
	return 0;
}

static void billingd_fini(fd_service_t *svc, void *state)
{
	(void)svc;
	free(state);
}

int main(int argc, char **argv)
{
	const fd_service_spec_t spec = {
		.name = "billingd",
		.config = config_items,
		.config_size = sizeof(billingd_config_t),
		.common_offset = offsetof(billingd_config_t, common),
		.desc = &frontdesk__v1__billing_service__descriptor,
		.methods = methods,
		.init = billingd_init,
		.fini = billingd_fini,
	};
	return fd_service_main(argc, argv, &spec);
}
