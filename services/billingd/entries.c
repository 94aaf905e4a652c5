/* entries.c - ListLedger: a tenant's ledger entries, newest first, paged
 * and filtered (account, kinds, time, line); a reseller sees the entries
 * that touch its subtree. */
#include <inttypes.h>
#include <stdlib.h>
#include "billingd.h"
#include "enums.h"
#include "money.h"
#include "store.h"

typedef struct list_q {
	const fd_tctx_t *t;
	int64_t reseller;
	const char *params[LIST_NPARAMS];
	entry_t **out;
	size_t n;
} list_q_t;

static int list_tx(fd_tx_t *tx, void *arg)
{
	list_q_t *q = arg;
	int rc;
	if (q->reseller && (rc = account_visible(tx, q->t, q->reseller, false)) < 0)
		return rc;
	return store_list(tx, q->t, q->params, &q->out, &q->n);
}

/* The kinds filter as a text[] literal ("{mint,charge}"), or NULL for none. */
static int kinds_param(fd_call_t *call, const Frontdesk__V1__ListLedgerRequest *req, const char **out)
{
	fd_arena_t *ar = fd_call_arena(call);
	char *kinds = NULL;
	*out = NULL;
	if (req->n_kinds > 4)
		return fd_call_fail(call, FD_EINVAL, "kinds: at most 4");
	for (size_t i = 0; i < req->n_kinds; i++) {
		const char *kind = enum_text(ENTRY_KIND_NAMES, req->kinds[i]);
		if (!kind)
			return fd_call_fail(call, FD_EINVAL, "kinds[%zu]: unknown kind %d", i, req->kinds[i]);
		kinds = fd_arena_printf(ar, "%s%s%s", kinds ? kinds : "{", kinds ? "," : "", kind);
		if (!kinds)
			return OOM(call);
	}
	if (kinds && !(kinds = fd_arena_printf(ar, "%s}", kinds)))
		return OOM(call);
	*out = kinds;
	return 0;
}

int billingd_list_ledger(fd_call_t *call, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Frontdesk__V1__ListLedgerRequest *req = (const void *)msg;
	billingd_t *b = billingd_of(call);
	fd_tctx_t t;
	int rc = fd_tctx_begin(&t, call, FRONTDESK__V1__SCOPE__SCOPE_CREDITS_READ, req->tenant_id, "credits");
	if (rc < 0)
		return rc;
	fd_arena_t *ar = t.arena;
	if (req->page_size < 0 || req->reseller_id < 0 || req->line_id < 0)
		return fd_call_fail(call, FD_EINVAL, "page_size, reseller_id, line_id: must not be negative");
	int limit = req->page_size == 0 ? 50 : req->page_size > 1000 ? 1000 : req->page_size;
	int64_t before = 0;
	if (req->page_token[0]) {
		char *end;
		before = req->page_token[0] == 'b' ? strtoll(req->page_token + 1, &end, 10) : 0;
		if (before <= 0 || *end)
			return fd_call_fail(call, FD_EINVAL, "page_token: not a token this server gave");
	}
	const char *kinds;
	if ((rc = kinds_param(call, req, &kinds)) < 0)
		return rc;
	int64_t from = req->created_within ? req->created_within->start_at : 0;
	int64_t to = req->created_within ? req->created_within->end_at : 0;
	if (from < 0 || to < 0)
		return fd_call_fail(call, FD_EINVAL, "created_within: times must not be negative");
	list_q_t q = { .t = &t, .reseller = req->reseller_id,
		           .params = { [LIST_TENANT] = t.tenant_s,
		                       [LIST_BEFORE] = fd_arena_printf(ar, "%" PRId64, before),
		                       [LIST_ACCOUNT] = fd_arena_printf(ar, "%" PRId64, req->reseller_id),
		                       [LIST_PREFIX] = fd_subtree_prefix(&t.c),
		                       [LIST_KINDS] = kinds,
		                       [LIST_FROM] = fd_arena_printf(ar, "%" PRId64, from),
		                       [LIST_TO] = fd_arena_printf(ar, "%" PRId64, to),
		                       [LIST_LINE] = fd_arena_printf(ar, "%" PRId64, req->line_id),
		                       [LIST_LIMIT] = fd_arena_printf(ar, "%d", limit + 1) } };
	for (int i = 0; i < LIST_NPARAMS; i++)
		if (i != LIST_KINDS && !q.params[i])
			return OOM(call);
	if ((rc = fd_tctx_run(&t, b->db, &(fd_tx_opts_t){ .read_only = true }, list_tx, &q)) < 0)
		return rc;
	Frontdesk__V1__ListLedgerResponse *r = fd_reply(call, resp);
	if (!r)
		return -FD_EEXHAUSTED;
	r->entries = q.out;
	r->n_entries = q.n > (size_t)limit ? (size_t)limit : q.n;
	if (q.n > (size_t)limit && !(r->next_page_token = fd_arena_printf(ar, "b%" PRId64, q.out[limit - 1]->id)))
		return OOM(call);
	return 0;
}
