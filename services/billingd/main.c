/* main.c - billingd: credits on a double-entry ledger.
 * Every method of the service is served; those without a handler answer
 * UNIMPLEMENTED until issue 4 builds them. */
#include <stddef.h>
#include "fd/service.h"
#include "frontdesk/v1/billing.pb-c.h"

typedef struct billingd_config {
	fd_service_config_t common;
} billingd_config_t;

static const fd_cfg_item_t config_items[] = {
	FD_SERVICE_CONFIG_ITEMS("BILLINGD", "billingd", "127.0.0.1:7102", billingd_config_t, common),
	{ 0 },
};

static const fd_method_impl_t methods[] = {
	{ 0 },
};

int main(int argc, char **argv)
{
	const fd_service_spec_t spec = {
		.name = "billingd",
		.config = config_items,
		.config_size = sizeof(billingd_config_t),
		.common_offset = offsetof(billingd_config_t, common),
		.desc = &frontdesk__v1__billing_service__descriptor,
		.methods = methods,
	};
	return fd_service_main(argc, argv, &spec);
}
