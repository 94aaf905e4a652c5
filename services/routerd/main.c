/* main.c - routerd: streaming nodes, heartbeats, routing and failover.
 * Every method of the service is served; those without a handler answer
 * UNIMPLEMENTED until issue 6 builds them. */
#include <stddef.h>
#include "fd/service.h"
#include "frontdesk/v1/routing.pb-c.h"

typedef struct routerd_config {
	fd_service_config_t common;
} routerd_config_t;

static const fd_cfg_item_t config_items[] = {
	FD_SERVICE_CONFIG_ITEMS("ROUTERD", "routerd", "127.0.0.1:7104", routerd_config_t, common),
	{ 0 },
};

static const fd_method_impl_t methods[] = {
	{ 0 },
};

int main(int argc, char **argv)
{
	const fd_service_spec_t spec = {
		.name = "routerd",
		.config = config_items,
		.config_size = sizeof(routerd_config_t),
		.common_offset = offsetof(routerd_config_t, common),
		.desc = &frontdesk__v1__routing_service__descriptor,
		.methods = methods,
	};
	return fd_service_main(argc, argv, &spec);
}
