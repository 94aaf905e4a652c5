/* audit.h - the audit trail: one row of frontdesk.audit_events per
 * privileged action, written in the same transaction as the action (so an
 * action rolled back leaves no row, and a committed one always has its row).
 *
 * Append-only (migrations/0006_audit.sql): every service inserts, none
 * updates or deletes; authd serves the reads (ListAuditEvents). Never put a
 * password, token, key or secret in any field: targets are ids, details are
 * names and numbers. */
#ifndef FD_AUDIT_H
#define FD_AUDIT_H

#include <stdint.h>
#include "fd/arena.h"
#include "fd/auth.h"
#include "fd/db.h"
#include "fd/status.h"

typedef enum fd_audit_outcome {
	FD_AUDIT_OK = 0,       /* the action was done */
	FD_AUDIT_FAILED,       /* attempted and failed (a wrong password) */
	FD_AUDIT_REFUSED,      /* refused by a rule (reuse of a refresh token) */
	FD_AUDIT_LIMITED,      /* refused by a rate limit */
} fd_audit_outcome_t;

typedef struct fd_audit {
	/* The verified caller. NULL when there is none (a failed login): then
	 * actor_label says who it claimed to be ("login:alice"; NULL:
	 * "anonymous"). Borrowed. */
	const fd_caller_t *actor;
	const char *actor_label;
	const char *action;          /* "<resource>.<verb>": "line.create" (1..100 chars) */
	const char *target;          /* "line:1234"; NULL: none */
	const char *source;          /* the client's address without port (fd_audit_source); NULL: "" */
	fd_audit_outcome_t outcome;
	/* NULL, or key, value, key, value, ..., NULL: written as a JSON object
	 * of strings. Borrowed. */
	const char *const *detail;
} fd_audit_t;

/* Appends ev to the audit trail of the transaction's tenant (it must have
 * one: fd_tx_tenant(tx) >= 0). flags as fd_tx_exec's (FD_TX_LAST when it
 * is the transaction's last statement). The row's strings are copied by
 * the statement; ev is borrowed until the call returns. 0 or -code
 * (fd_tx_err(tx) says why; the transaction is then aborted). */
int fd_audit_add(fd_tx_t *tx, fd_arena_t *arena, const fd_audit_t *ev, unsigned flags) FD_MUSTCHECK;

/* The address part of a gRPC peer ("ipv4:10.0.0.1:5000" -> "10.0.0.1",
 * "ipv6:[::1]:5000" -> "::1"), at most 64 characters, in the arena; NULL
 * when out of memory. */
const char *fd_audit_source(fd_arena_t *arena, const char *peer);

/* The actor's label as stored in the row's actor column: "admin:7",
 * "reseller:42", "apikey:9", "service:linesd" (in the arena; NULL: out of
 * memory). */
const char *fd_audit_actor_label(fd_arena_t *arena, const fd_caller_t *c);

#endif
