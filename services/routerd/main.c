/* main.c - routerd: streaming nodes, heartbeats, routing and failover.
 * Its settings, start-up and shutdown, and the method table (routerd.h
 * lists the parts). */
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "routerd.h"
#include "index.h"
#include "sync.h"
#include "watch.h"
#include "fd/log.h"

/* Regions and their countries, unless FRONTDESK_ROUTERD_REGIONS says otherwise. */
#define DEFAULT_REGIONS \
	"eu-west=GB IE FR ES PT NL BE LU IS;" \
	"eu-central=DE AT CH PL CZ SK HU IT SI HR DK SE NO FI EE LV LT;" \
	"eu-east=RO BG GR RS BA ME MK AL MD UA TR CY MT;" \
	"us-east=US CA PR;" \
	"us-west=MX;" \
	"sa-east=BR AR CL CO PE UY PY BO EC VE;" \
	"me-central=AE SA QA KW BH OM IL JO LB IQ IR EG;" \
	"af-south=ZA NG KE GH MA TN DZ ET TZ UG;" \
	"ap-south=IN PK BD LK NP;" \
	"ap-east=JP KR CN HK TW;" \
	"ap-southeast=SG MY TH VN ID PH;" \
	"oc=AU NZ"

static const fd_cfg_item_t config_items[] = {
	FD_SERVICE_CONFIG_ITEMS("ROUTERD", "routerd", "127.0.0.1:7104", routerd_config_t, common),
	{ "heartbeat_ms", "FRONTDESK_NODE_HEARTBEAT_MS", FD_CFG_INT, "1000", 100, 60000,
	  offsetof(routerd_config_t, heartbeat_ms), "milliseconds between a node's heartbeats (told to nodes)" },
	{ "miss_after_ms", "FRONTDESK_NODE_MISS_AFTER_MS", FD_CFG_INT, "0", 0, 600000,
	  offsetof(routerd_config_t, miss_after_ms),
	  "a node without a heartbeat for this long is DOWN (0: twice FRONTDESK_NODE_HEARTBEAT_MS)" },
	{ "share_ms", "FRONTDESK_ROUTERD_SHARE_MS", FD_CFG_INT, "100", 10, 10000,
	  offsetof(routerd_config_t, share_ms),
	  "how often a replica passes the heartbeats it received to the other replicas" },
	{ "persist_ms", "FRONTDESK_ROUTERD_PERSIST_MS", FD_CFG_INT, "1000", 100, 60000,
	  offsetof(routerd_config_t, persist_ms), "how often nodes' last heartbeats are written to the database" },
	{ "regions", "FRONTDESK_ROUTERD_REGIONS", FD_CFG_STR, DEFAULT_REGIONS, 1, 8192,
	  offsetof(routerd_config_t, regions), "regions and their countries: \"name=CC CC;name2=CC\"" },
	{ 0 },
};

static const fd_method_impl_t methods[] = {
	{ "RegisterNode", rd_register_node, NULL },
	{ "GetNode", rd_get_node, NULL },
	{ "ListNodes", rd_list_nodes, NULL },
	{ "UpdateNode", rd_update_node, NULL },
	{ "SetNodeState", rd_set_node_state, NULL },
	{ "Heartbeat", rd_heartbeat, NULL },
	{ "StreamHeartbeats", NULL, &rd_stream_heartbeats },
	{ "Route", rd_route, NULL },
	{ "GetTenantRouting", rd_get_tenant_routing, NULL },
	{ "SetTenantBandwidth", rd_set_tenant_bandwidth, NULL },
	{ "SetSharedPoolAccess", rd_set_shared_pool_access, NULL },
	{ "WatchNodes", NULL, &rd_watch_nodes },
	{ 0 },
};

static void routerd_fini(fd_service_t *svc, void *state);

static int routerd_start(routerd_t *rd, fd_service_t *svc, fd_err_t *err)
{
	rd->cfg = fd_service_config(svc);
	rd->db = fd_service_db(svc);
	const routerd_config_t *cfg = rd->cfg;
	int rc;
	if (sodium_init() < 0)
		return fd_err_set(err, FD_EINTERNAL, "libsodium failed to initialise");
	if ((rc = regions_parse(&rd->regions, cfg->regions, err)) < 0)
		return rc;
	unsigned char hk[32];
	if ((rc = fd_hex_key32(cfg->common.secret_hash_key, "FRONTDESK_SECRET_HASH_KEY", hk, err)) < 0)
		return rc;
	/* A key of its own, derived: node secrets never share a hash key with
	 * anything else hashed under the same setting. */
	crypto_kdf_derive_from_key(rd->key_hash_key, sizeof(rd->key_hash_key), 3, "nodekeys", hk);
	sodium_memzero(hk, sizeof(hk));
	if (table_init(&rd->tbl, cfg->miss_after_ms ? cfg->miss_after_ms : 2 * cfg->heartbeat_ms) < 0)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	if ((rc = watch_init(rd, err)) < 0)
		return rc;
	fd_err_t lerr;
	/* Registrations survive restarts: read them before serving. With the
	 * database down, the listener reads them once it connects. */
	if (sync_load_all(rd, &lerr) < 0)
		fd_warn("routerd: cannot read the nodes yet (%s); they are read when the database answers", lerr.msg);
	return sync_init(rd, err);
}

static int routerd_init(fd_service_t *svc, void **state, fd_err_t *err)
{
	routerd_t *rd = calloc(1, sizeof(*rd));
	if (!rd)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	int rc = routerd_start(rd, svc, err);
	if (rc < 0) {
		routerd_fini(svc, rd);
		return rc;
	}
	fd_info("routerd: %zu nodes known; heartbeats every %" PRId64 " ms, DOWN after %" PRId64 " ms", rd->tbl.n,
	        rd->cfg->heartbeat_ms, rd->tbl.miss_ms);
	*state = rd;
	return 0;
}

static void routerd_fini(fd_service_t *svc, void *state)
{
	(void)svc;
	routerd_t *rd = state;
	if (!rd)
		return;
	sync_fini(rd);
	watch_fini(rd);
	if (rd->tbl.by_id) {
		uint64_t touches, waits, drops, retries, locked;
		index_stats(&rd->tbl, &touches, &waits, &drops, &retries, &locked);
		fd_info("routerd: Route's index: %" PRIu64 " key updates, %" PRIu64 " of them waited for their cell's "
		        "lock (%.3f%%); %" PRIu64 " nodes dropped as found silent; %" PRIu64 " cell searches made "
		        "again after overlapping a key update, %" PRIu64 " of them under the cell's lock", touches, waits,
		        touches ? 100.0 * (double)waits / (double)touches : 0.0, drops, retries, locked);
	}
	table_free(&rd->tbl);
	sodium_memzero(rd->key_hash_key, sizeof(rd->key_hash_key));
	free(rd);
}

int main(int argc, char **argv)
{
	const fd_service_spec_t spec = {
		.name = "routerd",
		.config = config_items,
		.config_size = sizeof(routerd_config_t),
		.common_offset = offsetof(routerd_config_t, common),
		.desc = &frontdesk__v1__routing_service__descriptor,
		.methods = methods,
		.init = routerd_init,
		.fini = routerd_fini,
	};
	return fd_service_main(argc, argv, &spec);
}
