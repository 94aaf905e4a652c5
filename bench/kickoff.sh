#!/usr/bin/env bash
# kickoff.sh - the issue-14 kickoff: a big match starts, viewers arrive in a
# wave, and the busiest streaming node dies in the middle of it. One command;
# it stops by itself. Everything runs on loopback against a private
# PostgreSQL in a temporary folder; all of it is stopped and removed on exit.
#   - 100,000 lines in 3 tenants (50,000 / 30,000 / 20,000: the first of each
#     through CreateLine, the rest its copies in SQL, as lines.sh does);
#   - 200 shared-pool nodes in 4 regions (bench/kickoff_setup.py's FLEET: a
#     few big ones), each heartbeating over StreamHeartbeats from the driver
#     and reporting the viewers the driver placed on it, so overload is real;
#   - 50,000 viewers joining over 10 s (open loop: AuthorizePlayback over gRPC
#     with the edge's service token; each a line of its own, client countries
#     GB/US/DE/IN 40/30/20/10), then a SessionHeartbeat every interval linesd
#     gives (FRONTDESK_HEARTBEAT_INTERVAL, 10 s), a trickle of late joiners;
#   - once every viewer has been answered and has had a heartbeat answered,
#     the node carrying the most viewers has its heartbeat stream cancelled
#     and its connection closed, as a dead process's; 25 s more, then the end.
# The driver is bench_kickoff (bench/kickoff.c, C: one thread, gRPC core and
# protobuf-c); it prints the join (achieved against offered, p50/p99,
# errors), the failover (99% and 100% of the dead node's viewers on a live
# node, from routerd's DOWN event and from the kill; viewers sent to the dead
# node after the DOWN event), the peak load of every other node against its
# high water, the CPU of linesd, routerd, PostgreSQL, authd, billingd and the
# driver per phase (from /proc), and the goals with verdicts. Then an audit in
# SQL: the live sessions and how many are still on the dead node.
#   BUILD=build bench/kickoff.sh
# Knobs: VIEWERS (50000; the fleet's capacities scale with it), JOIN_SECONDS
# (10), LINES ("50000,30000,20000": per tenant), LATE_RATE (100/s), AFTER_KILL
# (25 s), KILL_AT (0: as soon as every viewer had a heartbeat answered),
# HEARTBEAT_INTERVAL (10 s, linesd's), NODE_HEARTBEAT_MS (1000, routerd's),
# LINESD_THREADS (8), LINESD_DB_POOL (8), ROUTERD_THREADS (8), CONNS (8: the
# driver's connections to linesd), KICKOFF_DRIVER (another bench_kickoff, e.g.
# a sanitizer build's, with this BUILD's services), PRELOAD (1: linesd started
# again after the set-up, as a replica running before the match; 0: not).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-${FD_BUILD_DIR:-$ROOT/build}}
VIEWERS=${VIEWERS:-50000}
JOIN_SECONDS=${JOIN_SECONDS:-10}
LINES=${LINES:-50000,30000,20000}
LATE_RATE=${LATE_RATE:-100}
AFTER_KILL=${AFTER_KILL:-25}
KILL_AT=${KILL_AT:-0}
HB_S=${HEARTBEAT_INTERVAL:-10}
NODE_HB_MS=${NODE_HEARTBEAT_MS:-1000}
THREADS=${LINESD_THREADS:-8}
POOL=${LINESD_DB_POOL:-8}
RTHREADS=${ROUTERD_THREADS:-8}
CONNS=${CONNS:-8}
SESSION_TIMEOUT=$(( HB_S * 9 > 90 ? HB_S * 9 : 90 ))
PY=/usr/bin/python3
HELPER=$ROOT/bench/kickoff_setup.py
DRIVER=${KICKOFF_DRIVER:-$BUILD/bench/bench_kickoff}

[ -x "$DRIVER" ] || { echo "kickoff.sh: $DRIVER missing: build first (scripts/build.sh)" >&2; exit 1; }
for b in services/authd/authd services/billingd/billingd services/linesd/linesd \
	services/routerd/routerd services/frontdesk/frontdesk; do
	[ -x "$BUILD/$b" ] || { echo "kickoff.sh: $BUILD/$b missing: build first (scripts/build.sh)" >&2; exit 1; }
done
[[ "$VIEWERS" =~ ^[1-9][0-9]*$ ]] || { echo "kickoff.sh: VIEWERS: a whole number" >&2; exit 1; }
[[ "$LINES" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "kickoff.sh: LINES: counts, comma separated" >&2; exit 1; }
[[ "$HB_S" =~ ^[1-9][0-9]*$ ]] || { echo "kickoff.sh: HEARTBEAT_INTERVAL: whole seconds" >&2; exit 1; }
nlines=0
for n in ${LINES//,/ }; do nlines=$((nlines + n)); done
[ "$VIEWERS" -le "$nlines" ] || { echo "kickoff.sh: more VIEWERS than LINES" >&2; exit 1; }

tmp=$(mktemp -d /tmp/fd-bench-kickoff.XXXXXX)
authd_pid= billingd_pid= linesd_pid= routerd_pid=
cleanup() {
	for p in $linesd_pid $routerd_pid $billingd_pid $authd_pid; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	"$ROOT/scripts/pg.sh" stop "$tmp/pg" || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# --- a private PostgreSQL, a migrated database, a platform admin ---
bench_platform
psql_pg() { psql -X -q -v ON_ERROR_STOP=1 -h "$pg_host" -p "$pg_port" -U postgres "$@"; }
pg_postmaster=$(head -1 "$tmp/pg/data/postmaster.pid")

# --- authd, billingd, routerd, linesd (routed, its players told HB_S) ---
hash_key=$(openssl rand -hex 32)
linesd_secret=$(openssl rand -hex 24)
edged_secret=$(openssl rand -hex 24)
authd=127.0.0.1:$(port)
env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_AUTHD_LISTEN="$authd" FRONTDESK_AUTHD_THREADS=2 \
	FRONTDESK_SECRET_HASH_KEY="$hash_key" FRONTDESK_KEY_ENCRYPTION_KEY="$(openssl rand -hex 32)" \
	FRONTDESK_SERVICE_SECRETS="linesd=$linesd_secret,edged=$edged_secret" \
	FRONTDESK_PWHASH_OPSLIMIT=1 FRONTDESK_PWHASH_MEMLIMIT_KIB=8192 FRONTDESK_PWHASH_CONCURRENCY=1 \
	FRONTDESK_SHUTDOWN_GRACE_MS=1000 FRONTDESK_LOG_LEVEL=warn \
	"$BUILD/services/authd/authd" >"$tmp/authd.log" 2>&1 &
authd_pid=$!
billingd=127.0.0.1:$(port)
env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_BILLINGD_LISTEN="$billingd" FRONTDESK_BILLINGD_THREADS=2 \
	FRONTDESK_BILLINGD_DB_POOL=2 FRONTDESK_SECRET_HASH_KEY="$hash_key" FRONTDESK_SHUTDOWN_GRACE_MS=1000 \
	FRONTDESK_LOG_LEVEL=warn "$BUILD/services/billingd/billingd" >"$tmp/billingd.log" 2>&1 &
billingd_pid=$!
routerd=127.0.0.1:$(port)
env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_ROUTERD_LISTEN="$routerd" FRONTDESK_ROUTERD_THREADS="$RTHREADS" \
	FRONTDESK_ROUTERD_DB_POOL=2 FRONTDESK_SECRET_HASH_KEY="$hash_key" FRONTDESK_NODE_HEARTBEAT_MS="$NODE_HB_MS" \
	FRONTDESK_SHUTDOWN_GRACE_MS=1000 FRONTDESK_LOG_LEVEL=info \
	"$BUILD/services/routerd/routerd" >"$tmp/routerd.log" 2>&1 &
routerd_pid=$!
linesd=127.0.0.1:$(port)
kek=$(openssl rand -hex 32)
start_linesd() {
	env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_LINESD_LISTEN="$linesd" \
		FRONTDESK_LINESD_THREADS="$THREADS" FRONTDESK_LINESD_DB_POOL="$POOL" \
		FRONTDESK_SECRET_HASH_KEY="$hash_key" FRONTDESK_KEY_ENCRYPTION_KEY="$kek" \
		FRONTDESK_LINESD_SERVICE_SECRET="$linesd_secret" FRONTDESK_AUTHD_TARGET="$authd" \
		FRONTDESK_BILLINGD_TARGET="$billingd" FRONTDESK_ROUTERD_TARGET="$routerd" \
		FRONTDESK_SESSION_TIMEOUT="$SESSION_TIMEOUT" FRONTDESK_HEARTBEAT_INTERVAL="$HB_S" \
		FRONTDESK_SHUTDOWN_GRACE_MS=1000 FRONTDESK_LOG_LEVEL="$1" \
		"$BUILD/services/linesd/linesd" >>"$tmp/linesd.log" 2>&1 &
	linesd_pid=$!
}
start_linesd warn
logs() { for f in authd billingd routerd linesd; do echo "--- $f's log" >&2; tail -20 "$tmp/$f.log" >&2; done; }
for t in "$authd" "$billingd" "$routerd" "$linesd"; do "$PY" "$HELPER" wait "$t" || { logs; exit 1; }; done

# --- the tenants, their first lines through the API, the rest in SQL ---
echo "# set-up: tenants with lines $LINES (the first of each through CreateLine, the rest in SQL)," \
	"200 shared-pool nodes through RegisterNode"
t_setup=$(date +%s%N)
"$PY" "$HELPER" tenants "$authd" "$linesd" "$admin_pw" "$tmp" "$LINES" || { logs; exit 1; }
: >"$tmp/plan.txt"
while read -r tenant tpl u0 n password streams; do
	psql_pg -d frontdesk -v t="$tenant" -v tpl="$tpl" -v u0="$u0" -v n="$n" <<'SQL'
BEGIN;
SELECT set_config('frontdesk.tenant_id', :'t', true) \g /dev/null
INSERT INTO frontdesk.lines (tenant_id, reseller_id, reseller_path, username, password_hash, password_box,
    package_id, state, expires_at, max_connections, bouquet_ids, allowed_ips, allowed_user_agents,
    output_formats, bandwidth_cap_kbps, trial, notes)
  SELECT l.tenant_id, l.reseller_id, l.reseller_path, (:u0 + i)::text, l.password_hash, l.password_box,
         l.package_id, l.state, l.expires_at, l.max_connections, l.bouquet_ids, l.allowed_ips,
         l.allowed_user_agents, l.output_formats, l.bandwidth_cap_kbps, l.trial, 'kickoff'
    FROM frontdesk.lines l, generate_series(1, :n - 1) i
   WHERE l.tenant_id = :t AND l.id = :tpl ORDER BY i;
COMMIT;
SQL
	got=$(psql_pg -d frontdesk -tA -c "SELECT count(*) FROM frontdesk.lines WHERE tenant_id = $tenant AND state = 'active'")
	[ "$got" = "$n" ] || { echo "kickoff.sh: tenant $tenant has $got active lines, want $n" >&2; exit 1; }
	echo "$tenant $u0 $n $password $streams" >>"$tmp/plan.txt"
done <"$tmp/tenants.txt"
psql_pg -d frontdesk -c "ANALYZE frontdesk.lines" -c "VACUUM ANALYZE frontdesk.sessions"
# PRELOAD=1 (the default): linesd started again now that the lines exist, as
# a replica running before the match: its preload reads every line that can
# be allowed into memory (rules.c). PRELOAD=0: a cold start (each line's
# first authorization takes the full path).
if [ "${PRELOAD:-1}" = 1 ]; then
	kill -TERM "$linesd_pid"; wait "$linesd_pid" || true
	t0=$(date +%s%N)
	start_linesd info
	"$PY" "$HELPER" wait "$linesd" || { logs; exit 1; }
	t1=$(date +%s%N)
	for _ in $(seq 600); do grep -q "read into memory" "$tmp/linesd.log" && break; sleep 0.1; done
	echo "# linesd restarted: ready in $(( (t1 - t0) / 1000000 )) ms; $(grep -o '[0-9]* lines. rules of .*' "$tmp/linesd.log" | tail -1)"
fi
"$PY" "$HELPER" nodes "$authd" "$routerd" "$admin_pw" "$tmp" "$VIEWERS" || { logs; exit 1; }
first_tenant=$(head -1 "$tmp/tenants.txt" | cut -d' ' -f1)
"$PY" "$HELPER" token "$authd" "$edged_secret" "$linesd" "$first_tenant" "$tmp" || { logs; exit 1; }
echo "# set-up took $(( ($(date +%s%N) - t_setup) / 1000000 )) ms: $(wc -l <"$tmp/plan.txt") tenants, $nlines lines," \
	"$(wc -l <"$tmp/nodes.txt") nodes (max_connections per region:" \
	"$(awk '{ c[$2] += $3; if ($3 > m[$2]) m[$2] = $3 } END { for (r in c) printf " %s %d (largest %d)", r, c[r], m[r] }' "$tmp/nodes.txt"))"

echo "=== kickoff: linesd (threads $THREADS, pool $POOL; players told a heartbeat every ${HB_S} s, session timeout" \
	"${SESSION_TIMEOUT} s), routerd (threads $RTHREADS; nodes report every $NODE_HB_MS ms), authd, billingd," \
	"PostgreSQL and the driver on $(nproc) CPUs shared by all"
"$DRIVER" --linesd "$linesd" --routerd "$routerd" --edge-token-file "$tmp/edge.token" \
	--admin-token-file "$tmp/admin.token" --nodes "$tmp/nodes.txt" --plan "$tmp/plan.txt" --viewers "$VIEWERS" \
	--join-seconds "$JOIN_SECONDS" --late-rate "$LATE_RATE" --kill-at "$KILL_AT" --after-kill "$AFTER_KILL" \
	--conns "$CONNS" --pids "linesd=$linesd_pid,routerd=$routerd_pid,authd=$authd_pid,billingd=$billingd_pid" \
	--postmaster "$pg_postmaster" --routerd-log "$tmp/routerd.log" | tee "$tmp/out" || { logs; exit 1; }

# --- the sessions as the database has them ---
dead=$(sed -n 's/^kill node \([0-9]*\) .*/\1/p' "$tmp/out")
psql_pg -d frontdesk -tA -v dead="${dead:-0}" <<'SQL'
SELECT 'audit sessions live=' || count(*) FILTER (WHERE ended_at IS NULL)
       || ' ended=' || count(*) FILTER (WHERE ended_at IS NOT NULL)
       || ' live_on_the_dead_node=' || count(*) FILTER (WHERE ended_at IS NULL AND node_id = :dead)
       || ' live_without_a_node=' || count(*) FILTER (WHERE ended_at IS NULL AND node_id = 0)
  FROM frontdesk.sessions;
SQL
for f in linesd routerd; do
	if grep -q "level=error\|ERROR" "$tmp/$f.log"; then
		echo "# $f logged errors:"; grep "level=error\|ERROR" "$tmp/$f.log" | tail -5
	fi
done
