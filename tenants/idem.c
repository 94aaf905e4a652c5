/* idem.c - claim-first idempotency keys (fd/idem.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fd/idem.h"
#include "fd/request.h"
#include "fd/service.h"

/* The three statements over frontdesk.idempotency (hash-partitioned) are
 * the plpgsql functions of migrations/0019_generic_plans.sql. As plain
 * prepared statements, the read and the update by (tenant, service, key)
 * were planned again on every call (the plan cache kept choosing a custom
 * plan pruned to one partition over the generic one: pg_stat_statements
 * counted 102 plans for 100 calls of each); a function keeps one generic
 * plan for the life of the session, also behind a pooler in transaction mode
 * (FRONTDESK_DB_PREPARED=false: unnamed statements, the call alone parsed
 * and planned). The claim's INSERT kept its generic plan either way; it is a
 * function too so that all three survive the pooler alike.
 *
 * DO NOTHING on a conflict waits for the holder of the key to finish: the
 * next statement then sees its row (READ COMMITTED). */
static const fd_sql_t SQL_CLAIM = {
	"fd_idem_claim", "SELECT * FROM frontdesk.idem_claim($1, $2, $3, $4)", 4,
};
enum first_col { FIRST_HASH, FIRST_RESULT, FIRST_RESPONSE };
static const fd_sql_t SQL_FIRST = {
	"fd_idem_first", "SELECT * FROM frontdesk.idem_first($1, $2, $3)", 3,
};
static const fd_sql_t SQL_DONE = {
	"fd_idem_done", "SELECT frontdesk.idem_done($1, $2, $3, $4, $5)", 5,
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
	if (strcmp(PQgetvalue(res, 0, FIRST_HASH), k->hash) != 0)
		return fd_err_set(fd_tx_err(tx), FD_EPRECOND, "idempotency_key: already used with a different request");
	first->result_id = strtoll(PQgetvalue(res, 0, FIRST_RESULT), NULL, 10);
	if (!PQgetisnull(res, 0, FIRST_RESPONSE)) {
		size_t n = 0;
		unsigned char *bin = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, FIRST_RESPONSE), &n);
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
