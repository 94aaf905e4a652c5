/* main.c - linesd: its settings, its method table, and its parts started
 * and stopped in order (see linesd.h for the files). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "linesd.h"
#include "rules.h"
#include "fd/log.h"

static const fd_cfg_item_t config_items[] = {
	FD_SERVICE_CONFIG_ITEMS("LINESD", "linesd", "127.0.0.1:7103", linesd_config_t, common),
	{ "key_encryption_key", "FRONTDESK_KEY_ENCRYPTION_KEY", FD_CFG_SECRET, "", 0, 64,
	  offsetof(linesd_config_t, key_encryption_key),
	  "64 hex digits: line passwords are sealed with a key derived from it (openssl rand -hex 32)" },
	{ "service_secret", "FRONTDESK_LINESD_SERVICE_SECRET", FD_CFG_SECRET, "", 0, 1024,
	  offsetof(linesd_config_t, service_secret),
	  "linesd's secret in authd's FRONTDESK_SERVICE_SECRETS (for its service token to billingd)" },
	{ "authd_target", "FRONTDESK_AUTHD_TARGET", FD_CFG_STR, "127.0.0.1:7101", 1, 255,
	  offsetof(linesd_config_t, authd_target), "authd's address (host:port)" },
	{ "billingd_target", "FRONTDESK_BILLINGD_TARGET", FD_CFG_STR, "127.0.0.1:7102", 1, 255,
	  offsetof(linesd_config_t, billingd_target), "billingd's address (host:port)" },
	{ "routerd_target", "FRONTDESK_ROUTERD_TARGET", FD_CFG_STR, "", 0, 255,
	  offsetof(linesd_config_t, routerd_target),
	  "routerd's address (host:port); empty: playback names no node (routing not configured)" },
	{ "session_timeout", "FRONTDESK_SESSION_TIMEOUT", FD_CFG_INT, "90", 5, 3600,
	  offsetof(linesd_config_t, session_timeout), "seconds without a heartbeat before a session ends" },
	{ "heartbeat_interval", "FRONTDESK_HEARTBEAT_INTERVAL", FD_CFG_INT, "30", 1, 3600,
	  offsetof(linesd_config_t, heartbeat_interval), "seconds between heartbeats players are told" },
	{ "heartbeat_flush_ms", "FRONTDESK_HEARTBEAT_FLUSH_MS", FD_CFG_INT, "1000", 10, 10000,
	  offsetof(linesd_config_t, heartbeat_flush_ms), "heartbeats are written to the database in batches this often" },
	{ "sweep_ms", "FRONTDESK_LINESD_SWEEP_MS", FD_CFG_INT, "10000", 100, 60000,
	  offsetof(linesd_config_t, sweep_ms),
	  "period of the expiry and session-timeout sweep and the charge reconciliation" },
	{ "reconcile_after", "FRONTDESK_LINESD_RECONCILE_AFTER", FD_CFG_INT, "30", 1, 86400,
	  offsetof(linesd_config_t, reconcile_after), "seconds a charge may stay pending before the sweep settles it" },
	{ "fail_window", "FRONTDESK_PLAYBACK_FAIL_WINDOW", FD_CFG_INT, "300", 10, 86400,
	  offsetof(linesd_config_t, fail_window), "seconds over which failed playback authorizations are counted" },
	{ "fail_max_user", "FRONTDESK_PLAYBACK_FAIL_MAX_USER", FD_CFG_INT, "10", 1, 100000,
	  offsetof(linesd_config_t, fail_max_user), "failed authorizations per (username, client address) per window" },
	{ "fail_max_ip", "FRONTDESK_PLAYBACK_FAIL_MAX_IP", FD_CFG_INT, "50", 1, 1000000,
	  offsetof(linesd_config_t, fail_max_ip), "failed authorizations per client address per window" },
	{ "line_cache", "FRONTDESK_LINESD_LINE_CACHE", FD_CFG_INT, "1000000", 0, 100000000,
	  offsetof(linesd_config_t, line_cache),
	  "lines whose rules are kept in memory for playback authorization (0: none; about 750 B each)" },
	{ "fault", "FRONTDESK_LINESD_FAULT", FD_CFG_STR, "", 0, 64, offsetof(linesd_config_t, fault),
	  "tests only: kill_after_charge (SIGKILL itself after Charge answered, before the line commits)" },
	{ 0 },
};

static const fd_method_impl_t methods[] = {
	{ "CreatePackage", linesd_create_package, NULL },
	{ "ListPackages", linesd_list_packages, NULL },
	{ "UpdatePackage", linesd_update_package, NULL },
	{ "CreateBouquet", linesd_create_bouquet, NULL },
	{ "ListBouquets", linesd_list_bouquets, NULL },
	{ "UpdateBouquet", linesd_update_bouquet, NULL },
	{ "CreateStream", linesd_create_stream, NULL },
	{ "ListStreams", linesd_list_streams, NULL },
	{ "UpdateStream", linesd_update_stream, NULL },
	{ "GetLinesSettings", linesd_get_settings, NULL },
	{ "UpdateLinesSettings", linesd_update_settings, NULL },
	{ "CreateLine", linesd_create_line, NULL },
	{ "GetLine", linesd_get_line, NULL },
	{ "ListLines", linesd_list_lines, NULL },
	{ "UpdateLine", linesd_update_line, NULL },
	{ "ExtendLine", linesd_extend_line, NULL },
	{ "SetLineStatus", linesd_set_line_status, NULL },
	{ "DeleteLine", linesd_delete_line, NULL },
	{ "CreateTrialLine", linesd_create_trial_line, NULL },
	{ "AuthorizePlayback", linesd_authorize_playback, NULL },
	{ "SessionHeartbeat", linesd_session_heartbeat, NULL },
	{ "EndSession", linesd_end_session, NULL },
	{ "ListSessions", linesd_list_sessions, NULL },
	{ "KickSession", linesd_kick_session, NULL },
	{ "WatchLineEvents", NULL, &linesd_watch_line_events },
	{ "GetLineChannels", linesd_get_line_channels, NULL },
	{ "ReportSessions", linesd_report_sessions, NULL },
	{ "WatchPlaybackEvents", NULL, &linesd_watch_playback_events },
	{ 0 },
};

/* events.c's observer: the rules and the heartbeat cache first (they must
 * be right before anyone acts on the event), then the edge's playback
 * streams. */
static void observe_event(void *arg, const events_notice_t *n)
{
	rules_on_event(arg, n);
	sessions_on_event(arg, n);
	playback_on_event(arg, n);
}

static void observe_lost(void *arg)
{
	rules_forget_all(arg);
	sessions_forget_all(arg);
	playback_on_lost(arg);
}

static int linesd_start(linesd_t *l, fd_service_t *svc, fd_err_t *err)
{
	l->cfg = fd_service_config(svc);
	l->db = fd_service_db(svc);
	l->verifier = fd_service_verifier(svc);
	const linesd_config_t *cfg = l->cfg;
	if (cfg->fault[0] && strcmp(cfg->fault, "kill_after_charge") != 0)
		return fd_err_set(err, FD_EINVAL, "FRONTDESK_LINESD_FAULT: \"\" or kill_after_charge");
	unsigned char kek[32], hk[32];
	int rc;
	if ((rc = fd_hex_key32(cfg->key_encryption_key, "FRONTDESK_KEY_ENCRYPTION_KEY", kek, err)) < 0 ||
	    (rc = fd_hex_key32(cfg->common.secret_hash_key, "FRONTDESK_SECRET_HASH_KEY", hk, err)) < 0)
		return rc;
	/* Keys of their own, derived: a line password's box and hash never share
	 * a key with anything else sealed or hashed under the same settings. */
	crypto_kdf_derive_from_key(l->pw_box_key, sizeof(l->pw_box_key), 1, "linepwbx", kek);
	crypto_kdf_derive_from_key(l->pw_hash_key, sizeof(l->pw_hash_key), 2, "linepwhs", hk);
	sodium_memzero(kek, sizeof(kek));
	sodium_memzero(hk, sizeof(hk));
	if (strlen(cfg->service_secret) < 32)
		return fd_err_set(err, FD_EINVAL, "FRONTDESK_LINESD_SERVICE_SECRET: required, at least 32 characters "
		                  "(linesd's entry in authd's FRONTDESK_SERVICE_SECRETS)");
	const char *ca = cfg->common.tls_ca[0] ? cfg->common.tls_ca : NULL;
	fd_channel_opts_t ao = { .target = cfg->authd_target, .tls_ca = ca };
	fd_channel_opts_t bo = { .target = cfg->billingd_target, .tls_ca = ca };
	if (!(l->authd = fd_channel_new(&ao, err)) || !(l->billingd = fd_channel_new(&bo, err)))
		return -FD_EINVAL;
	fd_token_source_opts_t to = { .authd = l->authd, .service = "linesd", .secret = cfg->service_secret,
		                          .audience = "billingd" };
	if (!(l->billing_token = fd_token_source_new(&to, err)))
		return -FD_EINVAL;
	/* The heartbeat cache and the edge's streams hear every line event,
	 * and forget all when they may have been missed: events.c knows
	 * nothing of them. */
	events_observer_t obs = { .on_event = observe_event, .on_lost = observe_lost, .arg = l };
	if ((rc = rules_init(l, (size_t)cfg->line_cache, err)) < 0 || (rc = sessions_init(l, err)) < 0 ||
	    (rc = playback_init(l, err)) < 0 || (rc = events_init(l, &obs, err)) < 0 ||
	    (rc = routing_init(l, err)) < 0 || (rc = rules_preload_start(l, err)) < 0)
		return rc;
	return janitor_start(l, err);
}

static void linesd_fini(fd_service_t *svc, void *state);

static int linesd_init(fd_service_t *svc, void **state, fd_err_t *err)
{
	linesd_t *l = calloc(1, sizeof(*l));
	if (!l)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	int rc = linesd_start(l, svc, err);
	if (rc < 0) {
		linesd_fini(svc, l);
		return rc;
	}
	*state = l;
	return 0;
}

static void linesd_fini(fd_service_t *svc, void *state)
{
	(void)svc;
	linesd_t *l = state;
	if (!l)
		return;
	rules_preload_stop(l);
	janitor_stop(l);
	routing_fini(l);
	events_fini(l);
	playback_fini(l);
	sessions_fini(l);
	rules_fini(l);
	fd_token_source_free(l->billing_token);
	fd_channel_free(l->billingd);
	fd_channel_free(l->authd);
	sodium_memzero(l->pw_box_key, sizeof(l->pw_box_key));
	sodium_memzero(l->pw_hash_key, sizeof(l->pw_hash_key));
	free(l);
}

int main(int argc, char **argv)
{
	const fd_service_spec_t spec = {
		.name = "linesd",
		.config = config_items,
		.config_size = sizeof(linesd_config_t),
		.common_offset = offsetof(linesd_config_t, common),
		.desc = &frontdesk__v1__lines_service__descriptor,
		.methods = methods,
		.init = linesd_init,
		.fini = linesd_fini,
	};
	return fd_service_main(argc, argv, &spec);
}
