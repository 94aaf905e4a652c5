#!/usr/bin/env bash
# routing.sh - the issue-6 benchmark: routerd with 1,000 nodes registered
# (800 in the platform's shared pool over 12 regions, 200 of one tenant over
# 4; 4 failure domains per region and owner), then, with BENCH_NODES="1000
# 10000", with 10,000 (the same shares; more nodes are registered and
# routerd is restarted between the two), each beside a baseline from the
# same run:
#   - route: RoutingService/Route for that tenant (closed loop, 64 in flight
#     by default; clients in 12 countries and one unknown, TS, 4 Mbit/s), with
#     linesd's service token (audience routerd, scope route);
#   - beat: RoutingService/Heartbeat from the simulated nodes, each call
#     with the next node's key (bench_load --token-file);
#   - echo (baseline): bench_echo, the bare gRPC-core echo, sent the very same
#     Route requests and metadata.
# The nodes heartbeat at their interval during the whole run, as deployed:
# a keeper (bench_load --rate 1000/s open loop over the 1,000 keys: one
# heartbeat per node per interval) runs in the background through every
# case, so no node misses `miss_after` while Route is measured. With more
# nodes the total heartbeat rate stays the same: the interval grows with the
# count (10,000 nodes: every 10 s, miss_after 20 s), routerd is told it
# (FRONTDESK_NODE_HEARTBEAT_MS) and the keeper sends 1000/s over the 10,000
# keys; so a larger fleet costs Route only what its size does (KEEPER=0:
# no keeper, routerd then runs the rounds with FRONTDESK_NODE_MISS_AFTER_MS
# = KEEPER0_MISS_AFTER_MS, and is restarted with the stated miss_after for
# the failover part). Cases are interleaved round by round, each run
# followed by a `cpu` line (the server: routerd or bench_echo; PostgreSQL;
# the load generator; the keeper; everyone else) and checks: every call OK,
# every Route answer naming a node and backups (bench_load --count-field),
# every heartbeat answered with a directive, and after each run all 1,000
# nodes UP and ACTIVE (ListNodes, all tenants), after a heartbeat run each
# with a heartbeat since the run began. After the first node count's rounds,
# bench/routing_failover.py: 20
# kills (SIGKILL) and 20 silences (SIGSTOP) of a node process holding
# StreamHeartbeats, with Route probed in a tight loop, and the time from the
# node's last heartbeat (and from the kill) to the first Route that avoids
# it. Medians, ratios and the goals: route >= 75% of echo at 64 in flight
# with the first node count, and with each larger count route/echo within
# 10% of that; failover <= miss_after + 100 ms for a silent node, <= 250 ms
# for a dead one.
# Everything runs on loopback against a private PostgreSQL in a temporary
# folder; all of it is stopped and removed on exit.
#   BUILD=build BENCH_SECONDS=4 BENCH_ROUNDS=3 bench/routing.sh
#   BENCH_NODES="1000 10000" BUILD=build bench/routing.sh
# Knobs: BENCH_NODES ("1000": node counts, ascending, each measured in turn),
# NODES_SHARED_PERCENT (80: the shared pool's share of each count),
# BENCH_SECONDS (4, whole), BENCH_ROUNDS (3), BENCH_INFLIGHT ("64"),
# ROUTERD_THREADS (8), ROUTERD_DB_POOL (8), ECHO_THREADS (2), HEARTBEAT_MS
# (1000: FRONTDESK_NODE_HEARTBEAT_MS with the first count; scaled with the
# count), MISS_AFTER_MS (0 = routerd's default, 2 x the interval; else
# scaled like it), KEEPER (1), KEEPER0_MISS_AFTER_MS (600000, routerd's
# most), BENCH_FAILOVER=0 (skip it), FAILOVER_KILLS (20), FAILOVER_SILENCES
# (20), FAILOVER_PROBERS (4 threads), ROUTERD_BIN (another routerd binary,
# e.g. an older build's, to compare), ROUTERD_BASE_BIN (a second routerd,
# e.g. an older build's, run beside the first as a replica of the same
# database, learning the nodes' heartbeats from it; its Route is then a
# case of each round, `base`, interleaved with the others: route/base is
# from the same rounds).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-${FD_BUILD_DIR:-$ROOT/build}}
SECS=${BENCH_SECONDS:-4}
ROUNDS=${BENCH_ROUNDS:-3}
INFLIGHTS=${BENCH_INFLIGHT:-64}
THREADS=${ROUTERD_THREADS:-8}
POOL=${ROUTERD_DB_POOL:-8}
ECHO_THREADS=${ECHO_THREADS:-2}
HB_MS1=${HEARTBEAT_MS:-1000}
MISS_MS1=${MISS_AFTER_MS:-0}
COUNTS=${BENCH_NODES:-1000}
SHARED_PCT=${NODES_SHARED_PERCENT:-80}
KEEPER=${KEEPER:-1}
ROUTERD_BIN=${ROUTERD_BIN:-$BUILD/services/routerd/routerd}
BASE_BIN=${ROUTERD_BASE_BIN:-}
KEEPER0_MISS=${KEEPER0_MISS_AFTER_MS:-600000}
KILLS=${FAILOVER_KILLS:-20}
SILENCES=${FAILOVER_SILENCES:-20}
PROBERS=${FAILOVER_PROBERS:-4}
WARMUP=1
PY=/usr/bin/python3
HELPER=$ROOT/bench/routing_setup.py

for b in bench/bench_load bench/bench_echo services/authd/authd services/routerd/routerd \
	services/frontdesk/frontdesk; do
	[ -x "$BUILD/$b" ] || { echo "routing.sh: $BUILD/$b missing: build first (scripts/build.sh)" >&2; exit 1; }
done
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || { echo "routing.sh: BENCH_SECONDS: whole seconds" >&2; exit 1; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "routing.sh: BENCH_ROUNDS: 1 or more" >&2; exit 1; }
for k in $INFLIGHTS; do
	[[ "$k" =~ ^[1-9][0-9]*$ ]] && [ "$k" -le 256 ] || { echo "routing.sh: BENCH_INFLIGHT: 1 to 256 each" >&2; exit 1; }
done
[ -x "$ROUTERD_BIN" ] || { echo "routing.sh: ROUTERD_BIN $ROUTERD_BIN: not an executable" >&2; exit 1; }
[ -z "$BASE_BIN" ] || [ -x "$BASE_BIN" ] ||
	{ echo "routing.sh: ROUTERD_BASE_BIN $BASE_BIN: not an executable" >&2; exit 1; }
prev=0
for c in $COUNTS; do
	[[ "$c" =~ ^[1-9][0-9]*$ ]] && [ "$c" -ge 5 ] && [ "$c" -gt "$prev" ] ||
		{ echo "routing.sh: BENCH_NODES: ascending counts of 5 or more" >&2; exit 1; }
	prev=$c
done
N1=${COUNTS%% *}
# The keeper's rate, the same for every count: one heartbeat per node per
# HEARTBEAT_MS with the first count.
BEAT_RATE=$(( N1 * 1000 / HB_MS1 ))
[ "$BEAT_RATE" -ge 1 ] || { echo "routing.sh: fewer than 1 heartbeat a second" >&2; exit 1; }
# Per count: the interval (ms), miss_after, the pool's and the tenant's nodes.
period_of() { echo $(( $1 * 1000 / BEAT_RATE )); }
miss_of() { if [ "$MISS_MS1" -gt 0 ]; then echo $(( MISS_MS1 * $1 / N1 )); else echo 0; fi; }
eff_miss_of() { local m; m=$(miss_of "$1"); echo $(( m > 0 ? m : 2 * $(period_of "$1") )); }
shared_of() { echo $(( $1 * SHARED_PCT / 100 )); }
for c in $COUNTS; do
	p=$(period_of "$c")
	[ "$p" -ge 100 ] && [ "$p" -le 60000 ] && [ "$(eff_miss_of "$c")" -le 600000 ] ||
		{ echo "routing.sh: $c nodes at $BEAT_RATE heartbeats/s: an interval of $p ms (100..60000)" >&2; exit 1; }
done
[ "$SHARED_PCT" -ge 0 ] && [ "$SHARED_PCT" -le 100 ] || { echo "routing.sh: NODES_SHARED_PERCENT: 0..100" >&2; exit 1; }

tmp=$(mktemp -d /tmp/fd-bench-routing.XXXXXX)
authd_pid= routerd_pid= base_pid= echo_pid= keeper_pid=
cleanup() {
	for p in $keeper_pid $echo_pid $base_pid $routerd_pid $authd_pid; do
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
pg_postmaster=$(head -1 "$tmp/pg/data/postmaster.pid")

# --- authd (linesd's service tokens, audience routerd), routerd, bench_echo ---
hash_key=$(openssl rand -hex 32)
linesd_secret=$(openssl rand -hex 24)
authd=127.0.0.1:$(port)
env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_AUTHD_LISTEN="$authd" FRONTDESK_AUTHD_THREADS=2 \
	FRONTDESK_SECRET_HASH_KEY="$hash_key" FRONTDESK_KEY_ENCRYPTION_KEY="$(openssl rand -hex 32)" \
	FRONTDESK_SERVICE_SECRETS="linesd=$linesd_secret" \
	FRONTDESK_PWHASH_OPSLIMIT=1 FRONTDESK_PWHASH_MEMLIMIT_KIB=8192 FRONTDESK_PWHASH_CONCURRENCY=1 \
	FRONTDESK_SHUTDOWN_GRACE_MS=1000 FRONTDESK_LOG_LEVEL=warn \
	"$BUILD/services/authd/authd" >"$tmp/authd.log" 2>&1 &
authd_pid=$!
routerd=127.0.0.1:$(port)
routerd_base=127.0.0.1:$(port)
start_routerd() { # HEARTBEAT_MS MISS_AFTER_MS (0 = routerd's default); the base beside it when asked
	env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_ROUTERD_LISTEN="$routerd" \
		FRONTDESK_ROUTERD_THREADS="$THREADS" FRONTDESK_ROUTERD_DB_POOL="$POOL" \
		FRONTDESK_SECRET_HASH_KEY="$hash_key" FRONTDESK_NODE_HEARTBEAT_MS="$1" \
		FRONTDESK_NODE_MISS_AFTER_MS="$2" FRONTDESK_SHUTDOWN_GRACE_MS=1000 FRONTDESK_LOG_LEVEL=warn \
		"$ROUTERD_BIN" >>"$tmp/routerd.log" 2>&1 &
	routerd_pid=$!
	if [ -n "$BASE_BIN" ]; then
		env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_ROUTERD_LISTEN="$routerd_base" \
			FRONTDESK_ROUTERD_THREADS="$THREADS" FRONTDESK_ROUTERD_DB_POOL="$POOL" \
			FRONTDESK_SECRET_HASH_KEY="$hash_key" FRONTDESK_NODE_HEARTBEAT_MS="$1" \
			FRONTDESK_NODE_MISS_AFTER_MS="$2" FRONTDESK_SHUTDOWN_GRACE_MS=1000 FRONTDESK_LOG_LEVEL=warn \
			"$BASE_BIN" >>"$tmp/routerd-base.log" 2>&1 &
		base_pid=$!
	fi
}
stop_routerd() {
	for p in $base_pid $routerd_pid; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	routerd_pid= base_pid=
}
wait_routerd() {
	"$PY" "$HELPER" wait "$routerd" || return 1
	[ -z "$BASE_BIN" ] || "$PY" "$HELPER" wait "$routerd_base"
}
logs() { for f in authd routerd; do echo "--- $f's log" >&2; tail -20 "$tmp/$f.log" >&2; done; }
rounds_miss() { if [ "$KEEPER" = 1 ]; then miss_of "$1"; else echo "$KEEPER0_MISS"; fi; }
start_routerd "$(period_of "$N1")" "$(rounds_miss "$N1")"
ROUTE=/frontdesk.v1.RoutingService/Route
BEAT=/frontdesk.v1.RoutingService/Heartbeat
echo_target=127.0.0.1:$(port)
"$BUILD/bench/bench_echo" --listen "$echo_target" --threads "$ECHO_THREADS" --method "$ROUTE" \
	>"$tmp/echo.log" 2>&1 &
echo_pid=$!
for t in "$authd" "$routerd" ${BASE_BIN:+"$routerd_base"}; do "$PY" "$HELPER" wait "$t" || { logs; exit 1; }; done

tenant='' admin_token='' boss_token='' told_interval_ms='' token=''
out=$tmp/out
: >"$out"
# The keeper: every node heartbeats once an interval (open loop, the keys in
# turn), from its start until the count's last case. It stops by itself
# after a generous estimate of the whole run.
nk=$(wc -w <<<"$INFLIGHTS")
start_keeper() { # NODES
	local secs
	secs=$(( ROUNDS * nk * 3 * (SECS + WARMUP + 15) + (KILLS + SILENCES) * ($(eff_miss_of "$1") / 1000 + 15) + 600 ))
	"$BUILD/bench/bench_load" --target "$routerd" --method "$BEAT" --case keeper --inflight 32 --conns 2 \
		--seconds "$secs" --warmup 0 --rate "$BEAT_RATE" --payload-file "$tmp/beat.hex" \
		--token-file "$tmp/nodes.keys" >"$tmp/keeper.log" 2>&1 &
	keeper_pid=$!
}
stop_keeper() {
	[ -n "$keeper_pid" ] || return 0
	kill "$keeper_pid" 2>/dev/null || true
	wait "$keeper_pid" 2>/dev/null || true
	keeper_pid=
	if grep -q "failed call" "$tmp/keeper.log"; then
		echo "keeper VIOLATIONS: $(grep "failed call" "$tmp/keeper.log" | head -1)" | tee -a "$out"
	fi
}

# measure CASE SERVER_PID -- COMMAND...: runs COMMAND, samples the CPU of the
# server (routerd or bench_echo), of PostgreSQL (the postmaster and its
# children), of COMMAND, of the keeper and of the whole machine over the
# measured window (after the warm-up). Prints COMMAND's output and
#   cpu <case> server_cores= pg_cores= load_cores= keeper_cores= others_cores= ..._us_per_call=
measure() {
	local name=$1 server=$2
	shift 2
	"$PY" "$ROOT/bench/measure.py" "$name" "$server" "$pg_postmaster" "$WARMUP" "$SECS" --keeper "${keeper_pid:-0}" "$@" | tee -a "$out"
}

conns_for() { if [ "$1" -le 1 ]; then echo 1; elif [ "$1" -le 16 ]; then echo $(( ($1 + 1) / 2 )); else echo 8; fi; }

# The answers of a run (bench_load's `fields` line): every call OK and each
# counted field set (Route: node and backups; Heartbeat: the directive).
check_answers() { # CASE LABEL NFIELDS
	local line t o a b
	line=$(awk -v c="$1" '$1 == "fields" && $2 == c { l = $0 } END { print l }' "$out")
	t=$(sed -n 's/.* total=\([0-9]*\).*/\1/p' <<<"$line")
	o=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$line")
	a=$(sed -n 's/.* f1=\([0-9]*\).*/\1/p' <<<"$line")
	b=$(sed -n 's/.* f2=\([0-9]*\).*/\1/p' <<<"$line")
	[ "$3" = 2 ] || b=$a
	if [ -n "$t" ] && [ "$t" -gt 0 ] && [ "$t" = "$o" ] && [ "$o" = "$a" ] && [ "$o" = "$b" ]; then
		echo "answers $2 ok ($t calls, all OK, each with its $([ "$3" = 2 ] && echo "node and backups" ||
			echo directive))" | tee -a "$out"
	else
		echo "answers $2 VIOLATIONS: ${t:-?} calls, ${o:-?} OK, ${a:-?} with field 1, ${b:-?} with field 2" |
			tee -a "$out"
	fi
}
health() { # LABEL [SINCE_EPOCH_S]
	"$PY" "$HELPER" health "$routerd" "$admin_token" "$tenant" "$1" "$NODES" ${2:+"$2"} | tee -a "$out"
}
# The run's case name: CASE_n<NODES>_inflight<K>.
cname() { echo "${1}_n${NODES}_inflight$2"; }

# bench_load's command line, into BL: CASE TARGET METHOD PAYLOADS K [more options]
bl() {
	local name=$1 target=$2 method=$3 file=$4 k=$5
	shift 5
	BL=("$BUILD/bench/bench_load" --target "$target" --method "$method" --case "$name" --inflight "$k"
		--conns "$(conns_for "$k")" --seconds "$SECS" --warmup "$WARMUP" --payload-file "$file" "$@")
}

run_echo() { # K ROUND
	local name
	name=$(cname echo "$1")
	bl "$name" "$echo_target" "$ROUTE" "$tmp/route.hex" "$1" --metadata "authorization=Bearer $token"
	measure "$name" "$echo_pid" -- "${BL[@]}"
}
run_route() { # K ROUND
	local name
	name=$(cname route "$1")
	bl "$name" "$routerd" "$ROUTE" "$tmp/route.hex" "$1" --metadata "authorization=Bearer $token" \
		--count-field 1 --count-field 2
	measure "$name" "$routerd_pid" -- "${BL[@]}"
	check_answers "$name" "$name-round$2" 2
	health "nodes-up-after-$name-round$2"
}
run_base() { # K ROUND: Route of the base routerd (ROUTERD_BASE_BIN)
	local name
	name=$(cname base "$1")
	bl "$name" "$routerd_base" "$ROUTE" "$tmp/route.hex" "$1" --metadata "authorization=Bearer $token_base" \
		--count-field 1 --count-field 2
	measure "$name" "$base_pid" -- "${BL[@]}"
	check_answers "$name" "$name-round$2" 2
}
run_beat() { # K ROUND
	local name since
	name=$(cname beat "$1")
	since=$(date +%s)
	bl "$name" "$routerd" "$BEAT" "$tmp/beat.hex" "$1" --token-file "$tmp/nodes.keys" --count-field 1
	measure "$name" "$routerd_pid" -- "${BL[@]}"
	check_answers "$name" "$name-round$2" 1
	health "nodes-up-after-$name-round$2" "$since"
}

first=1 FO_MISS=0
for NODES in $COUNTS; do
	HB_MS=$(period_of "$NODES")
	EFF_MISS=$(eff_miss_of "$NODES")
	NSHARED=$(shared_of "$NODES")
	NTENANT=$(( NODES - NSHARED ))
	# --- the nodes, each UP after one heartbeat; the requests; linesd's token ---
	t0=$(date +%s%N)
	if [ "$first" = 1 ]; then
		echo "# set-up: a tenant, $NSHARED shared-pool nodes (platform admin) and $NTENANT of the tenant" \
			"(its admin) through RegisterNode, one Heartbeat each"
		vars=$("$PY" "$HELPER" setup "$authd" "$routerd" "$admin_pw" "$NSHARED" "$NTENANT" "$tmp") ||
			{ logs; exit 1; }
		eval "$vars"
		"$PY" "$HELPER" payloads "$tmp" "$tenant"
	else
		echo "# set-up: more nodes through RegisterNode, until $NSHARED of the shared pool and $NTENANT of" \
			"the tenant, one Heartbeat each; then routerd restarted with heartbeats every $HB_MS ms"
		vars=$("$PY" "$HELPER" grow "$authd" "$routerd" "$admin_pw" "$tenant" "$NSHARED" "$NTENANT" "$tmp") ||
			{ logs; exit 1; }
		eval "$vars"
		stop_keeper
		# routerd writes the last heartbeats every second (node_live): the
		# restarted one reads them, so every node is still UP when it starts.
		sleep 2
		stop_routerd
		start_routerd "$HB_MS" "$(rounds_miss "$NODES")"
		wait_routerd || { logs; exit 1; }
	fi
	echo "# $NODES nodes registered and UP in $(( ($(date +%s%N) - t0) / 1000000 )) ms;" \
		"routerd told them heartbeat_interval_ms=$told_interval_ms"
	if [ "$KEEPER" = 1 ]; then start_keeper "$NODES"; fi
	# With a larger count the set-up can outlast miss_after (10,000 nodes:
	# about 40 s of RegisterNode against 20 s), so the nodes registered
	# first are DOWN until the keeper reaches them: one whole interval of
	# the keeper before the rounds (the first count: half a second).
	if [ "$first" = 1 ] || [ "$KEEPER" != 1 ]; then sleep 0.5; else sleep $(( HB_MS / 1000 + 1 )); fi
	vars=$("$PY" "$HELPER" token "$authd" "$linesd_secret" "$routerd") || { logs; exit 1; }
	eval "$vars"
	"$PY" "$HELPER" sample "$routerd" "$token" "$tenant" "$admin_token" | tee -a "$out"

	if [ "$KEEPER" = 1 ]; then
		keep="a keeper sends each node's heartbeat every ${HB_MS} ms (${BEAT_RATE}/s, open loop) throughout"
	else
		keep="no keeper: miss_after ${KEEPER0_MISS} ms for the rounds"
	fi
	echo "=== routerd (threads $THREADS, pool $POOL; heartbeat interval $HB_MS ms, miss_after $EFF_MISS ms)" \
		"with $NODES nodes ($NSHARED shared pool over 12 regions, $NTENANT of tenant $tenant over 4); $keep;" \
		"bench_echo ($ECHO_THREADS threads); $ROUNDS rounds of ${SECS}s a case (+${WARMUP}s warm-up);" \
		"$(nproc) CPUs shared by all" | tee -a "$out"
	for r in $(seq "$ROUNDS"); do
		token=''
		vars=$("$PY" "$HELPER" token "$authd" "$linesd_secret" "$routerd") || { logs; exit 1; }
		eval "$vars"
		cases=(echo route beat)
		if [ -n "$BASE_BIN" ]; then
			main_token=$token
			vars=$("$PY" "$HELPER" token "$authd" "$linesd_secret" "$routerd_base") || { logs; exit 1; }
			eval "$vars"
			token_base=$token token=$main_token
			cases+=(base)
		fi
		for k in $INFLIGHTS; do
			# A different order each round: the noise of a shared machine falls on all alike.
			n=${#cases[@]}
			for i in $(seq 0 $((n - 1))); do
				c=${cases[$(( (i + r + k) % n ))]}
				"run_$c" "$k" "$r"
			done
		done
	done
	"$PY" "$HELPER" sample "$routerd" "$token" "$tenant" "$admin_token" | tee -a "$out"

	# --- failover (first count only): a node process killed, or silent, while Route is probed ---
	if [ "$first" = 1 ] && [ "${BENCH_FAILOVER:-1}" != 0 ]; then
		if [ "$KEEPER" != 1 ]; then
			stop_routerd
			start_routerd "$HB_MS" "$(miss_of "$NODES")"
			wait_routerd || { logs; exit 1; }
		fi
		echo "# failover: $KILLS kills and $SILENCES silences of a node process holding StreamHeartbeats" \
			"(interval $HB_MS ms, miss_after $EFF_MISS ms), Route probed by $PROBERS threads;" \
			"$([ "$KEEPER" = 1 ] && echo "the $NODES nodes heartbeating meanwhile" || echo "no other load")"
		"$PY" "$ROOT/bench/routing_failover.py" --routerd "$routerd" --authd "$authd" --admin-pw "$admin_pw" \
			--secret "$linesd_secret" --interval-ms "$HB_MS" --miss-after-ms "$EFF_MISS" --kills "$KILLS" \
			--silences "$SILENCES" --probers "$PROBERS" | tee -a "$out" || { logs; exit 1; }
		FO_MISS=$EFF_MISS
		if [ "$KEEPER" != 1 ]; then
			stop_routerd
			start_routerd "$HB_MS" "$KEEPER0_MISS"
			wait_routerd || { logs; exit 1; }
		fi
	fi
	first=0
done
stop_keeper
if grep -q "level=error\|ERROR" "$tmp/routerd.log"; then
	echo "# routerd logged errors:"; grep "level=error\|ERROR" "$tmp/routerd.log" | tail -5
fi

echo "--- medians over $ROUNDS rounds"
"$PY" - "$out" "$FO_MISS" <<'PY'
import re, statistics, sys
miss = int(sys.argv[2])
rows, audits, fo = {}, [], {}
for line in open(sys.argv[1]):
    m = re.match(r"(bench|cpu|fields) (echo|route|beat|base)_n(\d+)_inflight(\d+) (.*)", line)
    if m:
        r = rows.setdefault((int(m[3]), int(m[4]), m[2]), {})
        for kv in m[5].split():
            k, v = kv.split("=", 1)
            v = v[:-2] if v.endswith("/s") else v
            if v not in ("-", "nan"):
                r.setdefault(m[1] + "." + k, []).append(float(v))
    if line.startswith(("audit ", "answers ", "keeper ")):
        audits.append(line.strip())
    m = re.match(r"failover_summary (\w+) (.*)", line)
    if m:
        fo[m[1]] = dict(kv.split("=", 1) for kv in m[2].split())
med = {k: {f: statistics.median(v) for f, v in r.items()} for k, r in rows.items()}
def fmt(r, f, spec):
    return format(r[f], spec) if f in r else "-"
order = {"echo": 0, "route": 1, "base": 2, "beat": 3}
for key in sorted(med, key=lambda x: (x[0], x[1], order.get(x[2], 9))):
    n, k, case = key
    r = med[key]
    print(f"{case:<5} nodes={n:<6} inflight={k:<4} rate={r['bench.rate']:>7.0f}/s "
          f"p50_ms={fmt(r, 'bench.p50_ms', '.3f')} p99_ms={fmt(r, 'bench.p99_ms', '.3f')} "
          f"errors={int(sum(rows[key].get('bench.errors', [0])))} "
          f"server_cores={fmt(r, 'cpu.server_cores', '.2f')} pg_cores={fmt(r, 'cpu.pg_cores', '.2f')} "
          f"load_cores={fmt(r, 'cpu.load_cores', '.2f')} keeper_cores={fmt(r, 'cpu.keeper_cores', '.2f')} "
          f"others_cores={fmt(r, 'cpu.others_cores', '.2f')} "
          f"us/call: server={fmt(r, 'cpu.server_us_per_call', '.1f')} "
          f"load={fmt(r, 'cpu.load_us_per_call', '.1f')} total={fmt(r, 'cpu.total_us_per_call', '.1f')}")
counts = sorted({n for n, k, c in med})
ks = sorted({k for n, k, c in med})
def rate(n, k, case):
    r = med.get((n, k, case))
    return r["bench.rate"] if r else 0
def ratio(n, k, case="route"):
    e = rate(n, k, "echo")
    return rate(n, k, case) / e if e else 0.0
# Per round too (each round's route over the same round's echo), for the spread.
def round_ratios(n, k, case="route"):
    e, g = rows.get((n, k, "echo"), {}).get("bench.rate", []), rows.get((n, k, case), {}).get("bench.rate", [])
    return [b / a for a, b in zip(e, g) if a]
print("--- ratios (medians; route/echo per round in brackets)")
for n in counts:
    for k in ks:
        rr = " ".join(f"{x:.3f}" for x in round_ratios(n, k))
        base = ""
        if rate(n, k, "base"):
            br = " ".join(f"{x:.3f}" for x in round_ratios(n, k, "base"))
            base = (f" base/echo={ratio(n, k, 'base'):.3f} [{br}] route/base="
                    f"{rate(n, k, 'route') / rate(n, k, 'base'):.3f}")
        print(f"nodes={n:<6} inflight={k:<4} route/echo={ratio(n, k):.3f} [{rr}] beat/echo={ratio(n, k, 'beat'):.3f}"
              + base)
goals = []
k64 = 64 if 64 in ks else max(ks)
n1 = counts[0]
r1 = ratio(n1, k64)
goals.append((f"Route >= 75% of the bare echo at {k64} in flight with {n1} nodes",
              f"{rate(n1, k64, 'route'):.0f}/s of {rate(n1, k64, 'echo'):.0f}/s = {r1:.3f}", r1 >= 0.75))
for n in counts[1:]:
    rn = ratio(n, k64)
    goals.append((f"Route/echo with {n} nodes within 10% of that with {n1}",
                  f"{rn:.3f} vs {r1:.3f} = {rn / r1 if r1 else 0:.3f} of it "
                  f"(route {rate(n, k64, 'route'):.0f}/s vs {rate(n1, k64, 'route'):.0f}/s)", bool(r1) and rn >= 0.9 * r1))
for kind, limit, what in (("silence", miss + 100, f"miss_after + 100 ms = {miss + 100} ms"),
                          ("kill", 250, "250 ms")):
    s = fo.get(kind)
    if s:
        mx = float(s["max_ms"])
        goals.append((f"failover of a {'silent' if kind == 'silence' else 'dead'} node <= {what} "
                      f"(from its last heartbeat, max over {s['n']})",
                      f"median {s['median_ms']} ms, max {s['max_ms']} ms"
                      + (f" (from the kill: median {s['kill_median_ms']} ms, max {s['kill_max_ms']} ms)"
                         if "kill_median_ms" in s else ""),
                      mx <= limit and s.get("failed", "0") == "0"))
clean = bool(audits) and all(" ok" in a for a in audits)
goals.append(("every answer OK and naming nodes, all nodes UP after each run", f"{len(audits)} checks", clean))
if any(sum(r.get("bench.errors", [0])) for r in rows.values()):
    goals.append(("no failed call", "some failed (see above)", False))
for what, got, ok in goals:
    print(f"goal {what}: {got}: {'met' if ok else 'MISSED'}")
for a in audits:
    if " ok" not in a:
        print(a)
PY
