/* main.c - authd: identity. Tenants, the reseller tree, logins, access and
 * refresh tokens, API keys, service tokens, brand host names and the public
 * keys every service verifies tokens with. authd.h lists its parts, one file each. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "authd.h"
#include "fd/log.h"

static const fd_cfg_item_t config_items[] = {
	FD_SERVICE_CONFIG_ITEMS("AUTHD", "authd", "127.0.0.1:7101", authd_config_t, common),
	{ "key_encryption_key", "FRONTDESK_KEY_ENCRYPTION_KEY", FD_CFG_SECRET, "", 0, 64,
	  offsetof(authd_config_t, key_encryption_key), "64 hex digits: seals the signing keys in the database" },
	{ "access_token_ttl", "FRONTDESK_ACCESS_TOKEN_TTL", FD_CFG_INT, "900", 60, 900,
	  offsetof(authd_config_t, access_ttl), "seconds an access or service token is valid" },
	{ "refresh_token_ttl", "FRONTDESK_REFRESH_TOKEN_TTL", FD_CFG_INT, "2592000", 300, 31536000,
	  offsetof(authd_config_t, refresh_ttl), "seconds a refresh token is valid" },
	{ "signing_key_rotate", "FRONTDESK_SIGNING_KEY_ROTATE", FD_CFG_INT, "2592000", 10, 31536000,
	  offsetof(authd_config_t, rotate_seconds), "seconds a signing key signs before a new one replaces it" },
	{ "service_secrets", "FRONTDESK_SERVICE_SECRETS", FD_CFG_SECRET, "", 0, 4096,
	  offsetof(authd_config_t, service_secrets), "name=secret,... of the services that may get service tokens (linesd, edged)" },
	{ "login_failures_per_account", "FRONTDESK_LOGIN_FAILURES_PER_ACCOUNT", FD_CFG_INT, "10", 1, 1000,
	  offsetof(authd_config_t, fail_per_account), "failed logins per (account, source address) per window" },
	{ "login_failures_per_source", "FRONTDESK_LOGIN_FAILURES_PER_SOURCE", FD_CFG_INT, "50", 1, 100000,
	  offsetof(authd_config_t, fail_per_source), "failed logins per source address per window" },
	{ "login_window", "FRONTDESK_LOGIN_WINDOW", FD_CFG_INT, "300", 1, 86400,
	  offsetof(authd_config_t, fail_window), "seconds of the failed-login window" },
	{ "pwhash_concurrency", "FRONTDESK_PWHASH_CONCURRENCY", FD_CFG_INT, "4", 1, 256,
	  offsetof(authd_config_t, pwhash_concurrency), "password hashes running at once (each takes memlimit)" },
	{ "pwhash_opslimit", "FRONTDESK_PWHASH_OPSLIMIT", FD_CFG_INT, "2", 1, 16,
	  offsetof(authd_config_t, pwhash_opslimit), "argon2id passes" },
	{ "pwhash_memlimit_kib", "FRONTDESK_PWHASH_MEMLIMIT_KIB", FD_CFG_INT, "65536", 8192, 4194304,
	  offsetof(authd_config_t, pwhash_memlimit_kib), "argon2id memory per hash, KiB" },
	{ "platform_hosts", "FRONTDESK_PLATFORM_HOSTS", FD_CFG_STR, "localhost,127.0.0.1", 0, 4096,
	  offsetof(authd_config_t, platform_hosts), "the platform's own host names (comma separated, as edged "
	  "reads them): no brand may hold them or a name below them; IP literals are allowed and reserve nothing "
	  "(no host name is one)" },
	{ 0 },
};

static const fd_method_impl_t methods[] = {
	{ "CreateTenant", authd_create_tenant, NULL },
	{ "GetTenant", authd_get_tenant, NULL },
	{ "ListTenants", authd_list_tenants, NULL },
	{ "SuspendTenant", authd_suspend_tenant, NULL },
	{ "Login", authd_login, NULL },
	{ "Refresh", authd_refresh, NULL },
	{ "Logout", authd_logout, NULL },
	{ "WhoAmI", authd_whoami, NULL },
	{ "CreateReseller", authd_create_reseller, NULL },
	{ "GetReseller", authd_get_reseller, NULL },
	{ "ListResellers", authd_list_resellers, NULL },
	{ "UpdateReseller", authd_update_reseller, NULL },
	{ "CreateApiKey", authd_create_api_key, NULL },
	{ "ListApiKeys", authd_list_api_keys, NULL },
	{ "RevokeApiKey", authd_revoke_api_key, NULL },
	{ "ListAuditEvents", authd_list_audit_events, NULL },
	{ "GetVerificationKeys", authd_get_verification_keys, NULL },
	{ "IssueServiceToken", authd_issue_service_token, NULL },
	{ "RequestHost", authd_request_host, NULL },
	{ "ApproveHost", authd_approve_host, NULL },
	{ "ListHosts", authd_list_hosts, NULL },
	{ "DeleteHost", authd_delete_host, NULL },
	{ "ListBrandHosts", authd_list_brand_hosts, NULL },
	{ 0 },
};

static void authd_fini(fd_service_t *svc, void *state);

static int authd_init(fd_service_t *svc, void **state, fd_err_t *err)
{
	const authd_config_t *cfg = fd_service_config(svc);
	authd_t *a = calloc(1, sizeof(*a));
	if (!a)
		return fd_err_set(err, FD_EEXHAUSTED, "out of memory");
	a->svc = svc;
	a->cfg = cfg;
	a->db = fd_service_db(svc);
	pthread_mutex_init(&a->pw_mu, NULL);
	pthread_cond_init(&a->pw_cv, NULL);
	int rc;
	if ((rc = fd_hex_key32(cfg->key_encryption_key, "FRONTDESK_KEY_ENCRYPTION_KEY", a->kek, err)) < 0 ||
	    (rc = fd_hex_key32(cfg->common.secret_hash_key, "FRONTDESK_SECRET_HASH_KEY", a->hash_key, err)) < 0 ||
	    (rc = services_parse(a, cfg->service_secrets, err)) < 0 ||
	    (rc = hosts_parse(a, cfg->platform_hosts, err)) < 0)
		goto fail;
	/* Unknown users are verified against this, so they take as long as known ones. */
	char dummy[32];
	randombytes_buf(dummy, sizeof(dummy) - 1);
	for (size_t i = 0; i < sizeof(dummy) - 1; i++)
		dummy[i] = (char)('a' + (unsigned char)dummy[i] % 26);
	dummy[sizeof(dummy) - 1] = '\0';
	pthread_mutex_init(&a->key_mu, NULL);
	if ((rc = pw_hash(a, dummy, a->dummy_hash, err)) < 0 || (rc = keys_init(a, err)) < 0)
		goto fail;
	fd_info("argon2id: %lld passes, %lld KiB, %lld at once; access tokens %lld s",
	        (long long)cfg->pwhash_opslimit, (long long)cfg->pwhash_memlimit_kib,
	        (long long)cfg->pwhash_concurrency, (long long)cfg->access_ttl);
	*state = a;
	return 0;
fail:
	authd_fini(svc, a);
	return rc;
}

static void authd_fini(fd_service_t *svc, void *state)
{
	(void)svc;
	authd_t *a = state;
	keys_fini(a);
	pthread_mutex_destroy(&a->pw_mu);
	pthread_cond_destroy(&a->pw_cv);
	sodium_memzero(a, sizeof(*a));
	free(a);
}

int main(int argc, char **argv)
{
	const fd_service_spec_t spec = {
		.name = "authd",
		.config = config_items,
		.config_size = sizeof(authd_config_t),
		.common_offset = offsetof(authd_config_t, common),
		.desc = &frontdesk__v1__auth_service__descriptor,
		.methods = methods,
		.init = authd_init,
		.fini = authd_fini,
	};
	return fd_service_main(argc, argv, &spec);
}
