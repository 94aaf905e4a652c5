/* main.c - authd: identity: tenants, resellers, logins, tokens, API keys.
 * Every method of the service is served; those without a handler answer
 * UNIMPLEMENTED until issue 3 builds them. */
#include <stddef.h>
#include "fd/service.h"
#include "frontdesk/v1/auth.pb-c.h"

typedef struct authd_config {
	fd_service_config_t common;
} authd_config_t;

static const fd_cfg_item_t config_items[] = {
	FD_SERVICE_CONFIG_ITEMS("AUTHD", "authd", "127.0.0.1:7101", authd_config_t, common),
	{ 0 },
};

static const fd_method_impl_t methods[] = {
	{ 0 },
};

int main(int argc, char **argv)
{
	const fd_service_spec_t spec = {
		.name = "authd",
		.config = config_items,
		.config_size = sizeof(authd_config_t),
		.common_offset = offsetof(authd_config_t, common),
		.desc = &frontdesk__v1__auth_service__descriptor,
		.methods = methods,
	};
	return fd_service_main(argc, argv, &spec);
}
