/* idem.c - claim-first idempotency keys (fd/idem.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fd/idem.h"
#include "fd/request.h"
#include "fd/service.h"

/* DO NOTHING on a conflict waits for the holder of the key to finish: the
 * next statement then sees its row (READ COMMITTED). */
static const fd_sql_t SQL_CLAIM = {
	"fd_idem_claim",
	"INSERT INTO frontdesk.idempotency (tenant_id, service, idem_key, request_hash)"
	" VALUES ($1, $2, $3, decode($4, 'hex')) ON CONFLICT DO NOTHING RETURNING 1",
	4,
};
static const fd_sql_t SQL_FIRST = {
	"fd_idem_first",
	"SELECT encode(request_hash, 'hex'), coalesce(result_id, 0), response IS NOT NULL, response"
	"  FROM frontdesk.idempotency WHERE tenant_id = $1 AND service = $2 AND idem_key = $3",
	3,
};
static const fd_sql_t SQL_DONE = {
	"fd_idem_done",
	"UPDATE frontdesk.idempotency SET result_id = $4, response = $5::bytea"
	" WHERE tenant_id = $1 AND service = $2 AND idem_key = $3",
	5,
};

int fd_idem_make(const fd_tctx_t *t, const char *service, const char *method, const char *client_key,
                 bool required, const ProtobufCMessage *req, fd_idem_t *out)
{
	memset(out, 0, sizeof(*out));
	out->service = service;
	out->arena = t->arena;
	int rc = fd_check_idem_key(client_key, fd_call_err(t->call));
	if (rc < 0)
		return rc;
	if (!client_key[0])
		return required ? fd_call_fail(t->call, FD_EINVAL, "idempotency_key: required for this call") : 0;
	const fd_caller_t *c = &t->c;
	out->key = c->kind == FD_CRED_SERVICE_TOKEN
	               ? fd_arena_printf(t->arena, "%s/svc:%s/%s", method, c->service, client_key)
	               : fd_arena_printf(t->arena, "%s/acct:%" PRId64 "/%s", method, c->account_id, client_key);
	out->hash = fd_request_mac(t->arena, req, fd_service_hash_key(fd_call_service(t->call)));
	if (!out->key || !out->hash) {
		out->key = NULL;
		return fd_call_fail(t->call, FD_EEXHAUSTED, "out of memory");
	}
	return 0;
}

static int tenant_param(fd_tx_t *tx, char buf[24])
{
	int64_t tenant = fd_tx_tenant(tx);
	if (tenant < 0)
		return fd_err_set(fd_tx_err(tx), FD_EINTERNAL, "idempotency key outside a tenant transaction");
	snprintf(buf, 24, "%" PRId64, tenant);
	return 0;
}

int fd_idem_claim(fd_tx_t *tx, const fd_idem_t *k, fd_idem_replay_t *first)
{
	memset(first, 0, sizeof(*first));
	if (!k->key)
		return 0;
	char tenant[24];
	int rc = tenant_param(tx, tenant);
	if (rc < 0)
		return rc;
	const char *params[] = { tenant, k->service, k->key, k->hash };
	PGresult *res;
	if ((rc = fd_tx_exec(tx, &SQL_CLAIM, params, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) == 1)
		return 0;
	if ((rc = fd_tx_exec(tx, &SQL_FIRST, params, 0, &res)) < 0)
		return rc;
	if (PQntuples(res) != 1)   /* claimed and given up between the two statements: rare; retried */
		return fd_err_set(fd_tx_err(tx), FD_EABORTED, "idempotency_key: in use by a call that gave up; try again");
	if (strcmp(PQgetvalue(res, 0, 0), k->hash) != 0)
		return fd_err_set(fd_tx_err(tx), FD_EPRECOND, "idempotency_key: already used with a different request");
	first->result_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	if (strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
		size_t n = 0;
		unsigned char *bin = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 3), &n);
		uint8_t *copy = bin ? fd_arena_alloc(k->arena, n ? n : 1) : NULL;
		if (copy)
			memcpy(copy, bin, n);
		PQfreemem(bin);
		if (!copy)
			return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
		first->response.data = copy;
		first->response.len = n;
	}
	return 1;
}

int fd_idem_done(fd_tx_t *tx, const fd_idem_t *k, int64_t result_id, const ProtobufCBinaryData *response,
                 unsigned flags)
{
	if (!k->key)
		return 0;
	char tenant[24], id[24];
	int rc = tenant_param(tx, tenant);
	if (rc < 0)
		return rc;
	snprintf(id, sizeof(id), "%" PRId64, result_id);
	char *hex = NULL;
	if (response) {
		/* bytea's text input: \x and two hex digits a byte. */
		hex = fd_arena_alloc(k->arena, 2 * response->len + 3);
		if (!hex)
			return fd_err_set(fd_tx_err(tx), FD_EEXHAUSTED, "out of memory");
		hex[0] = '\\';
		hex[1] = 'x';
		for (size_t i = 0; i < response->len; i++)
			snprintf(hex + 2 + 2 * i, 3, "%02x", response->data[i]);
		hex[2 + 2 * response->len] = '\0';
	}
	const char *params[] = { tenant, k->service, k->key, id, hex };
	return fd_tx_exec(tx, &SQL_DONE, params, flags, NULL);
}
