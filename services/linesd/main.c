/* main.c - linesd: lines, catalog, playback authorization, live sessions.
 * Every method of the service is served; those without a handler answer
 * UNIMPLEMENTED until issue 5 builds them. */
#include <stddef.h>
#include "fd/service.h"
#include "frontdesk/v1/lines.pb-c.h"

typedef struct linesd_config {
	fd_service_config_t common;
} linesd_config_t;

static const fd_cfg_item_t config_items[] = {
	FD_SERVICE_CONFIG_ITEMS("LINESD", "linesd", "127.0.0.1:7103", linesd_config_t, common),
	{ 0 },
};

static const fd_method_impl_t methods[] = {
	{ 0 },
};

int main(int argc, char **argv)
{
	const fd_service_spec_t spec = {
		.name = "linesd",
		.config = config_items,
		.config_size = sizeof(linesd_config_t),
		.common_offset = offsetof(linesd_config_t, common),
		.desc = &frontdesk__v1__lines_service__descriptor,
		.methods = methods,
	};
	return fd_service_main(argc, argv, &spec);
}
