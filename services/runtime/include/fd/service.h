/* service.h - the main() every frontdesk service shares.
 *
 * A service describes itself (name, config table, its protobuf-c service
 * descriptor and handler table) and fd_service_main does the rest: flags
 * (--print-config, --list-env), configuration, logging, the database pool,
 * the gRPC server with health and reflection, the health of the database
 * reflected in Health within a second, and a graceful stop on SIGTERM or
 * SIGINT (exit 0). */
#ifndef FD_SERVICE_H
#define FD_SERVICE_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>
#include "fd/auth.h"
#include "fd/config.h"
#include "fd/rpc.h"

typedef struct fd_service fd_service_t;
struct fd_db;

typedef struct fd_service_spec {
	const char *name;                          /* "authd": logs and messages */
	const fd_cfg_item_t *config;               /* the service's config table */
	size_t config_size;                        /* sizeof its config struct */
	size_t common_offset;                      /* offsetof(its struct, fd_service_config_t) */
	const ProtobufCServiceDescriptor *desc;
	const fd_method_impl_t *methods;
	/* Optional: runs once the pool is open, before serving; *state is then
	 * available to handlers through fd_service_state. */
	int (*init)(fd_service_t *svc, void **state, fd_err_t *err);
	void (*fini)(fd_service_t *svc, void *state);
} fd_service_spec_t;

/* Returns the process exit status: 0 after a clean stop, 2 for bad
 * configuration or flags, 1 when start-up fails. */
int fd_service_main(int argc, char **argv, const fd_service_spec_t *spec);

/* For handlers: fd_service_t *svc = fd_call_service(call); */
const void *fd_service_config(const fd_service_t *svc);   /* the service's config struct */
struct fd_db *fd_service_db(fd_service_t *svc);
void *fd_service_state(fd_service_t *svc);
/* FRONTDESK_SECRET_HASH_KEY, 32 bytes, for keyed hashes (borrowed for the
 * service's life; never log it). */
const unsigned char *fd_service_hash_key(const fd_service_t *svc);
/* The verifier of bearer credentials (audience: the service's name). */
fd_verifier_t *fd_service_verifier(fd_service_t *svc);

/* Who is calling: verifies the call's authorization metadata into *out (and
 * tags the call's log lines with its tenant). Returns 0, or -code with the
 * call's error set (UNAUTHENTICATED, UNAVAILABLE); return it from the handler. */
int fd_call_caller(fd_call_t *call, fd_caller_t *out) FD_MUSTCHECK;

/* The tenant a request acts in, from its tenant_id field (0: the caller's
 * own): fd_caller_tenant's rule, and a tenant named by a platform admin or a
 * service must exist (else NOT_FOUND); services are refused a suspended one
 * (FAILED_PRECONDITION). Returns 0, or -code with the call's error set. */
int fd_call_tenant(fd_call_t *call, const fd_caller_t *c, int64_t requested, int64_t *tenant) FD_MUSTCHECK;

#endif
