/* money.c - what every billingd call shares (money.h): account ids, the
 * prelude of a money-moving call, replays, visibility, amount checks. */
#include <inttypes.h>
#include <string.h>
#include "billingd.h"
#include "fd/request.h"
#include "fd/text.h"
#include "money.h"
#include "store.h"

Frontdesk__V1__AccountKind account_kind(int64_t id)
{
	return id > 0 ? FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_RESELLER
	       : id == ACCOUNT_ISSUANCE ? FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_ISSUANCE
	                                : FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_CONSUMPTION;
}

int money_begin(money_t *m, fd_call_t *call, const char *method, fd_scope_t scope, int64_t tenant_id,
                const char *key, const ProtobufCMessage *req)
{
	memset(m, 0, sizeof(*m));
	int rc = fd_tctx_begin(&m->t, call, scope, tenant_id, "credits");
	if (rc < 0)
		return rc;
	if (!key[0])
		return fd_call_fail(call, FD_EINVAL, "idempotency_key: required for a call that moves credits");
	if ((rc = fd_check_idem_key(key, fd_call_err(call))) < 0)
		return rc;
	const fd_caller_t *c = &m->t.c;
	fd_arena_t *ar = m->t.arena;
	if (c->kind == FD_CRED_SERVICE_TOKEN) {
		m->actor_service = c->service;
		m->idem = fd_arena_printf(ar, "%s/svc:%s/%s", method, c->service, key);
	} else {
		m->actor_account = fd_arena_printf(ar, "%" PRId64, c->account_id);
		m->idem = fd_arena_printf(ar, "%s/acct:%" PRId64 "/%s", method, c->account_id, key);
	}
	m->hash = fd_request_hash(ar, req);
	if (!m->idem || !m->hash || (!m->actor_service && !m->actor_account))
		return OOM(call);
	return 0;
}

int money_replay(fd_tx_t *tx, money_t *m)
{
	const char *hash;
	int rc = store_entry_by_idem(tx, &m->t, m->idem, &m->entry, &hash);
	if (rc <= 0)
		return rc;
	if (strcmp(hash, m->hash) != 0) {
		m->entry = NULL;
		return fd_err_set(fd_tx_err(tx), FD_EPRECOND, "idempotency_key: already used with a different request");
	}
	return 1;
}

int account_visible(fd_tx_t *tx, const fd_tctx_t *t, int64_t id, bool strictly)
{
	const char *path = NULL;
	int rc = id > 0 ? store_account_path(tx, t, id, &path) : 0;
	if (rc < 0)
		return rc;
	if (!path || !fd_subtree_contains(&t->c, t->tenant, path, strictly))
		return fd_err_set(fd_tx_err(tx), FD_ENOTFOUND, "reseller %" PRId64 " not found", id);
	return 0;
}

int check_amount(int64_t amount, int64_t max, fd_err_t *err)
{
	if (amount <= 0)
		return fd_err_set(err, FD_EINVAL, "amount: must be more than 0");
	if (amount > max)
		return fd_err_set(err, FD_EINVAL, "amount: at most %" PRId64 " per call", max);
	return 0;
}

int check_refund_amount(int64_t amount, int64_t max, fd_err_t *err)
{
	if (amount < 0 || amount > max)
		return fd_err_set(err, FD_EINVAL, "amount: 0 (the whole charge) to %" PRId64, max);
	return 0;
}

int check_note(const char *note, fd_err_t *err)
{
	return fd_check_text("note", note, 0, 500, err);
}
