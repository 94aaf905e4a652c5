#!/usr/bin/env bash
# edge.sh - the HTTP edge's benchmark (issue 13): four pairs, each beside its
# baseline at the same concurrency in the same run (bench/edge_bench.py says
# what each case is):
#   seg_auth / seg_static    nginx auth_request to edged vs the same file, no auth   goal >= 0.5
#   live_new / grpc_new      /live/ redirect, new session vs AuthorizePlayback gRPC   goal >= 0.8
#   login / grpc_login       player_api.php login vs AuthorizePlayback stream 0       goal >= 0.8
#   m3u_5000 / m3u_static    get.php m3u_plus (5,000 streams) vs nginx static bytes   goal >= 0.3, p99 <= 50 ms
# Everything on loopback: a private PostgreSQL in a temporary folder, the
# five services, nginx (Debian) with the shipped docker/nginx/hls-node.conf,
# wrk and bench_load; all stopped and removed on exit.
#   BUILD=build-release BENCH_SECONDS=5 BENCH_ROUNDS=3 bench/edge.sh
# Knobs: BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_CONNS (32), BENCH_LINES (400).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
PY=/usr/bin/python3
for b in bench/bench_load services/authd/authd services/billingd/billingd services/linesd/linesd \
	services/routerd/routerd services/edged/edged services/frontdesk/frontdesk; do
	[ -x "$BUILD/$b" ] || { echo "edge.sh: $BUILD/$b missing: build first (scripts/build.sh)" >&2; exit 1; }
done
for c in wrk nginx; do
	command -v "$c" >/dev/null || { echo "edge.sh: $c not found (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
tmp=$(mktemp -d /tmp/fd-edge-bench.XXXXXX)
chmod 755 "$tmp"
cleanup() {
	"$ROOT/scripts/pg.sh" stop "$tmp/pg" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
pg_port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$ROOT/scripts/pg.sh" start "$tmp/pg" "$pg_port" >/dev/null
FD_SOURCE_DIR=$ROOT FD_BUILD_DIR=$(cd "$BUILD" && pwd) FD_TEST_PGHOST=$(cd "$tmp/pg/sock" && pwd) \
	FD_TEST_PGPORT=$pg_port "$PY" "$ROOT/bench/edge_bench.py"
