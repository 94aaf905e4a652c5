/* rules.h - what linesd keeps in memory to authorize playback at kickoff
 * speed (rules.c; migrations/0020_line_rules.sql):
 *
 *   - per tenant: active or suspended, its suspended accounts' paths, its
 *     connection-limit policy, and who is over the failure limits. Driven
 *     by NOTIFY on frontdesk_lines (suspensions and reactivations, lines
 *     settings, every failure counted), never by a timer; a read that
 *     overlaps a notification of its tenant is not kept (a generation per
 *     tenant bucket), and while the LISTEN connection is down nothing is
 *     kept at all: every call reads PostgreSQL.
 *   - per line (tenant, username): the rules of a line the database last
 *     allowed, at its rev (lines.rev). PostgreSQL refuses a rev other than
 *     the one held (frontdesk.open_session answers 'stale'), so a late or
 *     lost notification cannot keep a stale line rule; notifications only
 *     make room early. Bounded (FRONTDESK_LINESD_LINE_CACHE lines), least
 *     recently used first out.
 *
 *   - per line, up to 4 sessions this replica opened or reused, with the
 *     answer it gave: the very same request again (the same client
 *     reopening its stream) is answered from memory, with no statement,
 *     while the session is live in the heartbeat cache, its node fit, and
 *     no notice came for the line (104: any change of its rev, whoever
 *     made it) or for its tenant's bucket (suspensions, settings, failures,
 *     catalog changes) since the database last confirmed it.
 *
 * Only an allowed authorization is decided from memory (and then, for a new
 * session, only what does not need the session table): anything the memory
 * would deny is asked of frontdesk.authorize_playback, which answers it as
 * before (and counts a wrong password). */
#ifndef LINESD_RULES_H
#define LINESD_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "fd/arena.h"
#include "fd/tctx.h"
#include "frontdesk/v1/lines.pb-c.h"

struct linesd;
struct events_notice;

/* A client address as the checks compare it. */
typedef struct rules_addr {
	int family;                  /* AF_INET or AF_INET6; 0: not parsed */
	unsigned char a[16];
	int src_family;              /* the failure key's source: IPv4 (also IPv4-mapped) or the /64 */
	unsigned char src[16];
} rules_addr_t;

/* What a call needs of its tenant. */
typedef struct rules_tenant {
	bool active;
	bool end_oldest;             /* connection_limit_policy = end_oldest */
	const char *paths;           /* text[] of the suspended accounts' LIKE prefixes ("{1.5.%}") */
	bool blocked;                /* the (username, source) or the source is over its failure limit */
	bool cached;                 /* read from memory (else from PostgreSQL just now) */
} rules_tenant_t;

/* A line the memory allows: what frontdesk.open_session needs, and the
 * line's message (no password, no live counts) packed. */
typedef struct rules_hit {
	int64_t line_id, reseller_id, rev, expires_at, bandwidth_cap_kbps;
	int32_t max_connections;
	const char *bouquets;        /* text of a bigint[] */
	const unsigned char *message;
	size_t message_len;
} rules_hit_t;

int rules_init(struct linesd *l, size_t max_lines, fd_err_t *err) FD_MUSTCHECK;
void rules_fini(struct linesd *l);
/* Starts reading the lines that can be allowed into memory (rules.c: the
 * preload), on a thread of its own; rules_preload_stop ends it (before the
 * database goes). */
int rules_preload_start(struct linesd *l, fd_err_t *err) FD_MUSTCHECK;
void rules_preload_stop(struct linesd *l);

/* Parses ip (already checked) into *out. */
void rules_addr_parse(const char *ip, rules_addr_t *out);

/* The tenant of t: from memory, or read now (and kept when it may be).
 * username and addr: for the failure limits (username NULL: the source's
 * limit only). 0 or -code with the call's error set. */
int rules_tenant(const fd_tctx_t *t, struct linesd *l, const char *username, const rules_addr_t *addr,
                 rules_tenant_t *out) FD_MUSTCHECK;

/* Whether the memory allows this authorization of (tenant, username) with
 * the password's lookup hash, from addr with user agent ua and format, at
 * now_s, the tenant's suspended prefixes in paths: then *hit is filled (in
 * a's memory) and true is returned. False: ask authorize_playback. */
bool rules_line(struct linesd *l, fd_arena_t *a, int64_t tenant, const char *username,
                const unsigned char pw_hash[32], const rules_addr_t *addr, const char *ua, int format,
                int64_t now_s, const char *paths, rules_hit_t *hit);
/* Keeps the line authorize_playback just allowed: its message (m, which
 * holds no password here), its rev, its path and the lookup hash. */
void rules_line_put(struct linesd *l, int64_t tenant, const Frontdesk__V1__Line *m, int64_t rev, const char *path,
                    const unsigned char pw_hash[32]);
/* Sessions the same client reopens (rules.c: the line's reopen slots).
 * rules_gen is read before the database is asked; a slot is kept only if
 * the line was not dropped since (rules_line_drop: stale, or announced
 * changed) and is used only while the tenant's bucket saw no notice since
 * (suspensions, settings, failures, catalog changes). */
typedef struct rules_gen {
	uint64_t tenant, line;
} rules_gen_t;

/* The request as a reopen compares it, and (to keep) the session and the
 * answer given, packed without its line. */
typedef struct rules_reopen {
	const rules_addr_t *addr;
	const char *ua, *client_key;
	int64_t stream;
	int format;
	int64_t session, live;
	const unsigned char *answer;
	size_t answer_len;
} rules_reopen_t;

typedef struct rules_reopened {
	int64_t session, live;        /* live: the line's live sessions when the slot was kept */
	const unsigned char *answer;  /* in the arena */
	size_t answer_len;
} rules_reopened_t;

rules_gen_t rules_gen(struct linesd *l, int64_t tenant, const char *username);
/* The count of suspensions (tenant or account) heard in tenant's bucket. A
 * session opened while it changed may have been decided before the
 * suspension was known, and committed after the sweep the suspension woke
 * ended its peers: the caller wakes the sweep again (janitor_soon). */
uint64_t rules_suspensions(struct linesd *l, int64_t tenant);
/* Keeps k's session on (tenant, username) at rev, unless the line was
 * dropped since gen or is not held at rev. */
void rules_reopen_put(struct linesd *l, int64_t tenant, const char *username, int64_t rev, rules_gen_t gen,
                      const rules_reopen_t *k);
/* rules_line's checks, then the slot of k's request (session and answer
 * ignored in k): true with *hit and *out filled. The caller still checks
 * that the session is live (the heartbeat cache) and its node fit. */
bool rules_reopen(struct linesd *l, fd_arena_t *a, int64_t tenant, const char *username,
                  const unsigned char pw_hash[32], const rules_reopen_t *k, int64_t now_s, const char *paths,
                  rules_hit_t *hit, rules_reopened_t *out);
/* Forgets (tenant, username): open_session found it stale, or it was
 * announced changed or deleted (104). */
void rules_line_drop(struct linesd *l, int64_t tenant, const char *username);

/* events.c's observer part (the LISTEN thread) and a lost or renewed LISTEN. */
void rules_on_event(struct linesd *l, const struct events_notice *n);
void rules_forget_all(struct linesd *l);

typedef struct rules_stats {
	uint64_t line_hits, line_misses, lines, tenant_hits, tenant_reads, preloaded, reopened;
} rules_stats_t;
void rules_stats(struct linesd *l, rules_stats_t *out);

#endif
