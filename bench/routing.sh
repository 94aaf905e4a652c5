#!/usr/bin/env bash
# routing.sh - the issue-6 benchmark: routerd with 1,000 nodes registered
# (800 in the platform's shared pool over 12 regions, 200 of one tenant over
# 4; 4 failure domains per region and owner), beside a baseline from the
# same run:
#   - route: RoutingService/Route for that tenant (closed loop, 64 in flight
#     by default; clients in 12 countries and one unknown, TS, 4 Mbit/s), with
#     linesd's service token (audience routerd, scope route);
#   - beat: RoutingService/Heartbeat from the 1,000 simulated nodes, each call
#     with the next node's key (bench_load --token-file);
#   - echo (baseline): bench_echo, the bare gRPC-core echo, sent the very same
#     Route requests and metadata.
# The nodes heartbeat at their interval during the whole run, as deployed:
# a keeper (bench_load --rate 1000/s open loop over the 1,000 keys: one
# heartbeat per node per interval) runs in the background through every
# case, so no node misses `miss_after` while Route is measured (KEEPER=0:
# no keeper, routerd then runs the rounds with FRONTDESK_NODE_MISS_AFTER_MS
# = KEEPER0_MISS_AFTER_MS, and is restarted with the stated miss_after for
# the failover part). Cases are interleaved round by round, each run
# followed by a `cpu` line (the server: routerd or bench_echo; PostgreSQL;
# the load generator; the keeper; everyone else) and checks: every call OK,
# every Route answer naming a node and backups (bench_load --count-field),
# every heartbeat answered with a directive, and after each run all 1,000
# nodes UP and ACTIVE (ListNodes, all tenants), after a heartbeat run each
# with a heartbeat since the run began. Then bench/routing_failover.py: 20
# kills (SIGKILL) and 20 silences (SIGSTOP) of a node process holding
# StreamHeartbeats, with Route probed in a tight loop, and the time from the
# node's last heartbeat (and from the kill) to the first Route that avoids
# it. Medians, ratios and the goals: route >= 50% of echo at 64 in flight;
# failover <= miss_after + 100 ms for a silent node, <= 250 ms for a dead one.
# Everything runs on loopback against a private PostgreSQL in a temporary
# folder; all of it is stopped and removed on exit.
#   BUILD=build BENCH_SECONDS=4 BENCH_ROUNDS=3 bench/routing.sh
# Knobs: BENCH_SECONDS (4, whole), BENCH_ROUNDS (3), BENCH_INFLIGHT ("64"),
# ROUTERD_THREADS (8), ROUTERD_DB_POOL (8), ECHO_THREADS (2), HEARTBEAT_MS
# (1000: FRONTDESK_NODE_HEARTBEAT_MS), MISS_AFTER_MS (0 = routerd's default,
# 2 x HEARTBEAT_MS), NODES_SHARED (800), NODES_TENANT (200), KEEPER (1),
# KEEPER0_MISS_AFTER_MS (600000, routerd's most), BENCH_FAILOVER=0 (skip it),
# FAILOVER_KILLS (20), FAILOVER_SILENCES (20), FAILOVER_PROBERS (4 threads).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-${FD_BUILD_DIR:-$ROOT/build}}
SECS=${BENCH_SECONDS:-4}
ROUNDS=${BENCH_ROUNDS:-3}
INFLIGHTS=${BENCH_INFLIGHT:-64}
THREADS=${ROUTERD_THREADS:-8}
POOL=${ROUTERD_DB_POOL:-8}
ECHO_THREADS=${ECHO_THREADS:-2}
HB_MS=${HEARTBEAT_MS:-1000}
MISS_MS=${MISS_AFTER_MS:-0}
NSHARED=${NODES_SHARED:-800}
NTENANT=${NODES_TENANT:-200}
KEEPER=${KEEPER:-1}
KEEPER0_MISS=${KEEPER0_MISS_AFTER_MS:-600000}
KILLS=${FAILOVER_KILLS:-20}
SILENCES=${FAILOVER_SILENCES:-20}
PROBERS=${FAILOVER_PROBERS:-4}
WARMUP=1
PY=/usr/bin/python3
HELPER=$ROOT/bench/routing_setup.py
NODES=$((NSHARED + NTENANT))
EFF_MISS=$(( MISS_MS > 0 ? MISS_MS : 2 * HB_MS ))

for b in bench/bench_load bench/bench_echo services/authd/authd services/routerd/routerd \
	services/frontdesk/frontdesk; do
	[ -x "$BUILD/$b" ] || { echo "routing.sh: $BUILD/$b missing: build first (scripts/build.sh)" >&2; exit 1; }
done
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || { echo "routing.sh: BENCH_SECONDS: whole seconds" >&2; exit 1; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "routing.sh: BENCH_ROUNDS: 1 or more" >&2; exit 1; }
for k in $INFLIGHTS; do
	[[ "$k" =~ ^[1-9][0-9]*$ ]] && [ "$k" -le 256 ] || { echo "routing.sh: BENCH_INFLIGHT: 1 to 256 each" >&2; exit 1; }
done
[ "$NODES" -ge 3 ] || { echo "routing.sh: at least 3 nodes" >&2; exit 1; }

tmp=$(mktemp -d /tmp/fd-bench-routing.XXXXXX)
authd_pid= routerd_pid= echo_pid= keeper_pid=
cleanup() {
	for p in $keeper_pid $echo_pid $routerd_pid $authd_pid; do
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
start_routerd() { # MISS_AFTER_MS (0 = routerd's default)
	env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_ROUTERD_LISTEN="$routerd" \
		FRONTDESK_ROUTERD_THREADS="$THREADS" FRONTDESK_ROUTERD_DB_POOL="$POOL" \
		FRONTDESK_SECRET_HASH_KEY="$hash_key" FRONTDESK_NODE_HEARTBEAT_MS="$HB_MS" \
		FRONTDESK_NODE_MISS_AFTER_MS="$1" FRONTDESK_SHUTDOWN_GRACE_MS=1000 FRONTDESK_LOG_LEVEL=warn \
		"$BUILD/services/routerd/routerd" >>"$tmp/routerd.log" 2>&1 &
	routerd_pid=$!
}
logs() { for f in authd routerd; do echo "--- $f's log" >&2; tail -20 "$tmp/$f.log" >&2; done; }
if [ "$KEEPER" = 1 ]; then rounds_miss=$MISS_MS; else rounds_miss=$KEEPER0_MISS; fi
start_routerd "$rounds_miss"
ROUTE=/frontdesk.v1.RoutingService/Route
BEAT=/frontdesk.v1.RoutingService/Heartbeat
echo_target=127.0.0.1:$(port)
"$BUILD/bench/bench_echo" --listen "$echo_target" --threads "$ECHO_THREADS" --method "$ROUTE" \
	>"$tmp/echo.log" 2>&1 &
echo_pid=$!
for t in "$authd" "$routerd"; do "$PY" "$HELPER" wait "$t" || { logs; exit 1; }; done

# --- the nodes, each UP after one heartbeat; the requests; linesd's token ---
echo "# set-up: a tenant, $NSHARED shared-pool nodes (platform admin) and $NTENANT of the tenant" \
	"(its admin) through RegisterNode, one Heartbeat each"
tenant='' admin_token='' boss_token='' told_interval_ms=''
t0=$(date +%s%N)
vars=$("$PY" "$HELPER" setup "$authd" "$routerd" "$admin_pw" "$NSHARED" "$NTENANT" "$tmp") || { logs; exit 1; }
eval "$vars"
echo "# $NODES nodes registered and UP in $(( ($(date +%s%N) - t0) / 1000000 )) ms;" \
	"routerd tells them heartbeat_interval_ms=$told_interval_ms"
"$PY" "$HELPER" payloads "$tmp" "$tenant"
token=''
vars=$("$PY" "$HELPER" token "$authd" "$linesd_secret" "$routerd") || { logs; exit 1; }
eval "$vars"

out=$tmp/out
: >"$out"
# The keeper: every node heartbeats once an interval (open loop, the 1,000
# keys in turn), from now until the end.
# It stops by itself after a generous estimate of the whole run.
keeper_rate=$(( NODES * 1000 / HB_MS ))
nk=$(wc -w <<<"$INFLIGHTS")
keeper_secs=$(( ROUNDS * nk * 3 * (SECS + WARMUP + 15) + (KILLS + SILENCES) * (EFF_MISS / 1000 + 15) + 600 ))
start_keeper() {
	"$BUILD/bench/bench_load" --target "$routerd" --method "$BEAT" --case keeper --inflight 32 --conns 2 \
		--seconds "$keeper_secs" --warmup 0 --rate "$keeper_rate" --payload-file "$tmp/beat.hex" \
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
if [ "$KEEPER" = 1 ]; then start_keeper; fi
sleep 0.5
"$PY" "$HELPER" sample "$routerd" "$token" "$tenant" "$admin_token" | tee -a "$out"

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
	"$PY" "$HELPER" health "$routerd" "$admin_token" "$1" "$NODES" ${2:+"$2"} | tee -a "$out"
}

# bench_load's command line, into BL: CASE TARGET METHOD PAYLOADS K [more options]
bl() {
	local name=$1 target=$2 method=$3 file=$4 k=$5
	shift 5
	BL=("$BUILD/bench/bench_load" --target "$target" --method "$method" --case "$name" --inflight "$k"
		--conns "$(conns_for "$k")" --seconds "$SECS" --warmup "$WARMUP" --payload-file "$file" "$@")
}

run_echo() { # K ROUND
	bl "echo_inflight$1" "$echo_target" "$ROUTE" "$tmp/route.hex" "$1" --metadata "authorization=Bearer $token"
	measure "echo_inflight$1" "$echo_pid" -- "${BL[@]}"
}
run_route() { # K ROUND
	local name=route_inflight$1
	bl "$name" "$routerd" "$ROUTE" "$tmp/route.hex" "$1" --metadata "authorization=Bearer $token" \
		--count-field 1 --count-field 2
	measure "$name" "$routerd_pid" -- "${BL[@]}"
	check_answers "$name" "$name-round$2" 2
	health "nodes-up-after-$name-round$2"
}
run_beat() { # K ROUND
	local name=beat_inflight$1 since
	since=$(date +%s)
	bl "$name" "$routerd" "$BEAT" "$tmp/beat.hex" "$1" --token-file "$tmp/nodes.keys" --count-field 1
	measure "$name" "$routerd_pid" -- "${BL[@]}"
	check_answers "$name" "$name-round$2" 1
	health "nodes-up-after-$name-round$2" "$since"
}

if [ "$KEEPER" = 1 ]; then
	keep="a keeper sends each node's heartbeat every ${HB_MS} ms (${keeper_rate}/s, open loop) throughout"
else
	keep="no keeper: miss_after ${KEEPER0_MISS} ms for the rounds"
fi
echo "=== routerd (threads $THREADS, pool $POOL; heartbeat interval $HB_MS ms, miss_after $EFF_MISS ms)" \
	"with $NODES nodes ($NSHARED shared pool over 12 regions, $NTENANT of tenant $tenant over 4); $keep;" \
	"bench_echo ($ECHO_THREADS threads); $ROUNDS rounds of ${SECS}s a case (+${WARMUP}s warm-up);" \
	"$(nproc) CPUs shared by all"
for r in $(seq "$ROUNDS"); do
	token=''
	vars=$("$PY" "$HELPER" token "$authd" "$linesd_secret" "$routerd") || { logs; exit 1; }
	eval "$vars"
	cases=(echo route beat)
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

# --- failover: a node process killed, or silent, while Route is probed ---
if [ "${BENCH_FAILOVER:-1}" != 0 ]; then
	if [ "$KEEPER" != 1 ]; then
		kill "$routerd_pid" 2>/dev/null || true
		wait "$routerd_pid" 2>/dev/null || true
		start_routerd "$MISS_MS"
		"$PY" "$HELPER" wait "$routerd" || { logs; exit 1; }
	fi
	echo "# failover: $KILLS kills and $SILENCES silences of a node process holding StreamHeartbeats" \
		"(interval $HB_MS ms, miss_after $EFF_MISS ms), Route probed by $PROBERS threads;" \
		"$([ "$KEEPER" = 1 ] && echo "the $NODES nodes heartbeating meanwhile" || echo "no other load")"
	"$PY" "$ROOT/bench/routing_failover.py" --routerd "$routerd" --authd "$authd" --admin-pw "$admin_pw" \
		--secret "$linesd_secret" --interval-ms "$HB_MS" --miss-after-ms "$EFF_MISS" --kills "$KILLS" \
		--silences "$SILENCES" --probers "$PROBERS" | tee -a "$out" || { logs; exit 1; }
fi
stop_keeper
if grep -q "level=error\|ERROR" "$tmp/routerd.log"; then
	echo "# routerd logged errors:"; grep "level=error\|ERROR" "$tmp/routerd.log" | tail -5
fi

echo "--- medians over $ROUNDS rounds"
"$PY" - "$out" "$EFF_MISS" <<'PY'
import re, statistics, sys
miss = int(sys.argv[2])
rows, audits, fo = {}, [], {}
for line in open(sys.argv[1]):
    m = re.match(r"(bench|cpu|fields) (\w+?)_inflight(\d+) (.*)", line)
    if m:
        r = rows.setdefault((m[2], int(m[3])), {})
        for kv in m[4].split():
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
order = {"echo": 0, "route": 1, "beat": 2}
for key in sorted(med, key=lambda x: (x[1], order.get(x[0], 9))):
    case, k = key
    r = med[key]
    print(f"{case}_inflight{k:<4} rate={r['bench.rate']:>7.0f}/s p50_ms={fmt(r, 'bench.p50_ms', '.3f')} "
          f"p99_ms={fmt(r, 'bench.p99_ms', '.3f')} errors={int(sum(rows[key].get('bench.errors', [0])))} "
          f"server_cores={fmt(r, 'cpu.server_cores', '.2f')} pg_cores={fmt(r, 'cpu.pg_cores', '.2f')} "
          f"load_cores={fmt(r, 'cpu.load_cores', '.2f')} keeper_cores={fmt(r, 'cpu.keeper_cores', '.2f')} "
          f"others_cores={fmt(r, 'cpu.others_cores', '.2f')} "
          f"us/call: server={fmt(r, 'cpu.server_us_per_call', '.1f')} "
          f"load={fmt(r, 'cpu.load_us_per_call', '.1f')} total={fmt(r, 'cpu.total_us_per_call', '.1f')}")
ks = sorted({k for c, k in med})
def rate(case, k):
    r = med.get((case, k))
    return r["bench.rate"] if r else 0
print("--- ratios (medians)")
for k in ks:
    e, g, b = rate("echo", k), rate("route", k), rate("beat", k)
    print(f"inflight{k:<4} route/echo={g / e if e else float('nan'):.3f} beat/echo={b / e if e else float('nan'):.3f}")
goals = []
k64 = 64 if 64 in ks else max(ks)
e, g = rate("echo", k64), rate("route", k64)
goals.append((f"Route >= 50% of the bare echo at {k64} in flight", f"{g:.0f}/s of {e:.0f}/s = "
              f"{g / e if e else 0:.3f}", bool(e) and g / e >= 0.5))
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
