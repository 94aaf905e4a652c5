/* balances.c - GetBalance: a reseller's balance (its own by default), or an
 * admin's look at the tenant's issuance and consumption accounts. */
#include <inttypes.h>
#include "billingd.h"
#include "money.h"
#include "store.h"

typedef struct balance_q {
	const fd_tctx_t *t;
	int64_t account;             /* money.h's account ids */
	int64_t balance, updated_at;
} balance_q_t;

static int balance_tx(fd_tx_t *tx, void *arg)
{
	balance_q_t *q = arg;
	int rc;
	if (q->account > 0 && (rc = account_visible(tx, q->t, q->account, false)) < 0)
		return rc;
	return store_balance(tx, q->t, q->account, &q->balance, &q->updated_at);
}

int billingd_get_balance(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__GetBalanceRequest *req = (const void *)msg;
	billingd_t *b = billingd_of(call);
	fd_tctx_t t;
	int rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_CREDITS_READ, req->tenant_id, "credits");
	if (rc < 0)
		return rc;
	if (req->reseller_id < 0 || (int)req->kind < 0 || req->kind > FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_CONSUMPTION)
		return fd_call_fail(call, FD_EINVAL, "kind or reseller_id: out of range");
	balance_q_t q = { .t = &t };
	if (req->kind == FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_ISSUANCE ||
	    req->kind == FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_CONSUMPTION) {
		if (!fd_tctx_admin(&t))
			return fd_call_fail(call, FD_EPERM, "only tenant and platform admins read the tenant's own accounts");
		q.account = req->kind == FRONTDESK__V1__ACCOUNT_KIND__ACCOUNT_KIND_ISSUANCE ? ACCOUNT_ISSUANCE
		                                                                          : ACCOUNT_CONSUMPTION;
	} else {
		q.account = req->reseller_id ? req->reseller_id : t.tenant == t.c.tenant_id ? t.c.account_id : 0;
		if (q.account <= 0)
			return fd_call_fail(call, FD_EINVAL, "reseller_id: required when acting in another tenant");
	}
	if ((rc = fd_tctx_run(&t, b->db, &(fd_tx_opts_t){ .read_only = true }, balance_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__Account *acc = fd_arena_zalloc(t.arena, sizeof(*acc));
	if (!acc)
		return OOM(call);
	frontdesk__v1__account__init(acc);
	acc->tenant_id = t.tenant;
	acc->kind = account_kind(q.account);
	acc->reseller_id = q.account > 0 ? q.account : 0;
	acc->balance = q.balance;
	acc->updated_at = q.updated_at;
	Frontdesk__V1__GetBalanceResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->account = acc;
	return 0;
}
