/* apikeys.c - CreateApiKey, ListApiKeys, RevokeApiKey.
 *
 * A key is fdk_<tenant>_<id>_<secret>: the tenant and id find its row before
 * any tenant is known, the secret is 256 random bits, and only a keyed
 * BLAKE2b hash of the whole string is kept (fd/auth.h verifies it). The
 * whole key is shown once, in CreateApiKey's first answer: a replay answers
 * with the metadata only. */
#include <inttypes.h>
#include <string.h>
#include <sodium.h>
#include "authd.h"
#include "fd/clock.h"
#include "fd/log.h"

#define OOM(call) fd_call_fail((call), FD_EEXHAUSTED, "out of memory for this request")

/* ---- CreateApiKey ---- */

typedef struct create_q {
	const fd_tctx_t *t;
	const Frontdesk__V1__CreateApiKeyRequest *req;
	int64_t account;
	fd_scopes_t want;            /* 0: the account's */
	fd_idem_t key;
	Frontdesk__V1__CreateApiKeyResponse *reply;   /* fd_reply's */
	Frontdesk__V1__CreateApiKeyResponse *resp;    /* the reply, or a replay's first answer */
	bool replayed;
} create_q_t;

static int create_tx(fd_tx_t *tx, void *arg)
{
	create_q_t *q = arg;
	authd_t *a = authd_of(q->t->call);
	fd_arena_t *arena = q->t->arena;
	const fd_caller_t *c = &q->t->c;
	fd_idem_replay_t first;
	fd_role_t role;
	int rc;
	q->replayed = false;
	q->resp = q->reply;
	if ((rc = fd_idem_claim(tx, &q->key, &first)) < 0)
		return rc;
	if (rc == 1) {
		q->replayed = true;
		q->resp = (void *)authd_idem_answer(tx, &q->key, &first, &frontdesk__v1__create_api_key_response__descriptor);
		return q->resp ? 0 : -FD_EINTERNAL;
	}
	/* Refusals roll back: the key's claim goes with them. */
	if ((rc = store_account_role(tx, q->t->tenant, q->account, fd_subtree_prefix(c), &role)) < 0)
		return rc;
	if (rc == 0)
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "reseller %" PRId64 " not found", q->account);
	fd_scopes_t allowed = role_scopes(role) & c->scopes;
	fd_scopes_t scopes = q->want ? q->want : allowed;
	if (scopes & ~allowed)
		return fd_err_set(fd_tx_err(tx), FD_EPERM, "scopes: wider than the account the key acts as");
	store_new_key_t k = { .tenant = q->t->tenant, .account = q->account, .created_by = c->account_id,
		                  .expires_at = q->req->expires_at, .name = q->req->name };
	if ((rc = store_next_id(tx, SEQ_API_KEYS, &k.id)) < 0)
		return rc;
	char secret[44], hh[65];
	new_secret(secret);
	char *prefix = fd_arena_printf(arena, "fdk_%" PRId64 "_%" PRId64 "_", k.tenant, k.id);
	char *whole = fd_arena_printf(arena, "fdk_%" PRId64 "_%" PRId64 "_%s", k.tenant, k.id, secret);
	sodium_memzero(secret, sizeof(secret));
	if (whole && fd_arena_wipe_on_free(arena, whole, strlen(whole)) < 0) {
		sodium_memzero(whole, strlen(whole));
		whole = NULL;
	}
	char *names = scopes_text(arena, scopes, "");
	char *arr = names ? fd_arena_printf(arena, "{%s}", names) : NULL;
	const char *account = id_str(arena, q->account);
	if (!prefix || !whole || !arr || !account)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	secret_hash_hex(a, whole, strlen(whole), hh);
	k.prefix = prefix;
	k.hash = hh;
	k.scopes = arr;
	if ((rc = store_insert_api_key(tx, arena, &k, &q->resp->api_key)) < 0)
		return rc;
	/* The key's metadata only: never the secret, nor its hash. */
	const char *detail[] = { "name", q->req->name, "account", account, "scopes", names, NULL };
	if ((rc = audit_ok(tx, q->t, "api_key.create", "api_key", k.id, detail)) < 0)
		return rc;
	if (q->key.key) {
		/* A replay answers with the metadata only: the secret is not kept. */
		q->resp->secret = "";
		ProtobufCBinaryData packed = authd_idem_pack(arena, &q->resp->base);
		if (!packed.data)
			return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
		if ((rc = fd_idem_done(tx, &q->key, k.id, &packed, 0)) < 0)
			return rc;
	}
	q->resp->secret = whole;
	return 0;
}

int authd_create_api_key(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__CreateApiKeyRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_err_t *err = fd_call_err(call);
	fd_tctx_t t;
	int rc;
	if ((rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_API_KEYS_WRITE, req->tenant_id, NULL)) < 0)
		return rc;
	if (t.c.kind != FD_CRED_ACCESS_TOKEN && t.c.kind != FD_CRED_API_KEY)
		return fd_call_fail(call, FD_EPERM, "API keys are made for people's accounts");
	create_q_t q = { .t = &t, .req = req };
	if ((rc = fd_check_name("name", req->name, 1, 100, err)) < 0 ||
	    (rc = authd_idem_make(&t, "CreateApiKey", req->idempotency_key, msg, &q.key)) < 0)
		return rc;
	if (req->reseller_id < 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: must not be negative");
	if ((rc = check_expires_at("expires_at", req->expires_at, fd_now_s(), err)) < 0 ||
	    (rc = check_scopes("scopes", req->scopes, req->n_scopes, &q.want, err)) < 0)
		return rc;
	if (q.want & ~t.c.scopes)
		return fd_call_fail(call, FD_EPERM, "scopes: wider than your own");
	q.account = req->reseller_id ? req->reseller_id : t.tenant == t.c.tenant_id ? t.c.account_id : 0;
	if (!q.account)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: required when acting in another tenant");
	if (!(q.reply = fd_reply(call, resp)))
		return -FD_EEXHAUSTED;
	if ((rc = fd_tctx_run(&t, a->db, NULL, create_tx, &q)) < 0)
		return rc;
	if (q.replayed)
		*resp = &q.resp->base;
	else
		fd_info("API key %" PRId64 " created for account %" PRId64, q.resp->api_key->id, q.account);
	return 0;
}

/* ---- ListApiKeys, RevokeApiKey ---- */

typedef struct keys_q {
	const fd_tctx_t *t;
	store_key_filter_t f;        /* ListApiKeys: its account must be in the subtree */
	int64_t id;                  /* RevokeApiKey's */
	Frontdesk__V1__ApiKey **out;
	size_t n;
	bool account_missing;
} keys_q_t;

static int list_tx(fd_tx_t *tx, void *arg)
{
	keys_q_t *q = arg;
	fd_role_t role;
	int rc;
	q->n = 0;
	if (q->f.account) {
		if ((rc = store_account_role(tx, q->f.tenant, q->f.account, q->f.prefix, &role)) < 0)
			return rc;
		if ((q->account_missing = rc == 0))
			return 0;
	}
	return store_list_api_keys(tx, q->t->arena, &q->f, &q->out, &q->n);
}

static int revoke_tx(fd_tx_t *tx, void *arg)
{
	keys_q_t *q = arg;
	bool now;
	if (!(q->out = fd_arena_zalloc(q->t->arena, sizeof(*q->out))))
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	int rc = store_revoke_api_key(tx, q->t->arena, q->t->tenant, q->id, fd_subtree_prefix(&q->t->c), &q->out[0],
	                              &now);
	if ((q->n = rc > 0) == 0 || !now)
		return rc < 0 ? rc : 0;
	/* A revocation is recorded once: revoking a revoked key again changes nothing. */
	const char *account = id_str(q->t->arena, q->out[0]->reseller_id);
	if (!account)
		return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
	const char *detail[] = { "name", q->out[0]->name, "account", account, NULL };
	return audit_ok(tx, q->t, "api_key.revoke", "api_key", q->id, detail);
}

int authd_list_api_keys(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListApiKeysRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_tctx_t t;
	int64_t after;
	int limit, rc;
	if ((rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_API_KEYS_READ, req->tenant_id, NULL)) < 0 ||
	    (rc = fd_check_page(req->page_size, req->page_token, &limit, &after, fd_call_err(call))) < 0)
		return rc;
	if (req->reseller_id < 0)
		return fd_call_fail(call, FD_EINVAL, "reseller_id: must not be negative");
	keys_q_t q = { .t = &t,
		           .f = { .tenant = t.tenant, .prefix = fd_subtree_prefix(&t.c), .after = after,
		                  .account = req->reseller_id, .include_revoked = req->include_revoked,
		                  .limit = limit + 1 } };
	fd_tx_opts_t ro = { .read_only = true };
	if ((rc = fd_tctx_run(&t, a->db, &ro, list_tx, &q)) < 0)
		return rc;
	if (q.account_missing)
		return fd_call_fail(call, FD_ENOTFOUND, "reseller %" PRId64 " not found", req->reseller_id);
	Frontdesk__V1__ListApiKeysResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->api_keys = q.out;
	r->n_api_keys = q.n > (size_t)limit ? (size_t)limit : q.n;
	if (q.n > (size_t)limit && !(r->next_page_token = fd_page_token(t.arena, q.out[limit - 1]->id)))
		return OOM(call);
	return 0;
}

int authd_revoke_api_key(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__RevokeApiKeyRequest *req = (const void *)msg;
	authd_t *a = authd_of(call);
	fd_tctx_t t;
	int rc;
	if ((rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_API_KEYS_WRITE, req->tenant_id, NULL)) < 0)
		return rc;
	if (req->api_key_id <= 0)
		return fd_call_fail(call, FD_EINVAL, "api_key_id: required");
	keys_q_t q = { .t = &t, .id = req->api_key_id };
	if ((rc = fd_tctx_run(&t, a->db, NULL, revoke_tx, &q)) < 0)
		return rc;
	if (q.n == 0)
		return fd_call_fail(call, FD_ENOTFOUND, "API key %" PRId64 " not found", req->api_key_id);
	fd_info("API key %" PRId64 " revoked", req->api_key_id);
	Frontdesk__V1__RevokeApiKeyResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->api_key = q.out[0];
	return 0;
}
