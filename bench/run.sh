#!/usr/bin/env bash
# run.sh - the issue-2 benchmark: the bare gRPC core echo (baseline) and the
# runtime's no-op method, interleaved round by round at 1, 8, 64 and 256 in
# flight; prints each case's line, then medians and the ratio noop/echo.
#   BUILD=build BENCH_SECONDS=5 BENCH_ROUNDS=3 bench/run.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
out=$(mktemp)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -f "$out"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { # binary port
	"$BUILD/bench/$1" --listen "127.0.0.1:$2" --threads 2 >/dev/null 2>&1 &
	pids+=($!)
}
echo_port=$(port); start bench_echo "$echo_port"
noop_port=$(port); start bench_noop "$noop_port"
sleep 1
for r in $(seq "$ROUNDS"); do
	for k in "1 1" "8 4" "64 8" "256 8"; do
		set -- $k
		for s in echo:$echo_port noop:$noop_port; do
			"$BUILD/bench/bench_load" --target "127.0.0.1:${s#*:}" --case "${s%%:*}_inflight$1" \
				--inflight "$1" --conns "$2" --seconds "$SECS" --warmup 1 | tee -a "$out"
		done
	done
done
echo "--- medians over $ROUNDS rounds (calls/s)"
python3 - "$out" <<'PY'
import re, statistics, sys
rates = {}
for line in open(sys.argv[1]):
    m = re.match(r"bench (\w+)_inflight(\d+) rate=(\d+)", line)
    if m: rates.setdefault((m[1], int(m[2])), []).append(int(m[3]))
for k in sorted({k for _, k in rates}):
    e, n = statistics.median(rates[("echo", k)]), statistics.median(rates[("noop", k)])
    print(f"inflight={k:<4} echo={e:>8.0f}/s noop={n:>8.0f}/s ratio={n / e:.2f}")
PY
