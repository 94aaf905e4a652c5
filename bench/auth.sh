#!/usr/bin/env bash
# auth.sh - the issue-3 benchmark: what authentication costs.
#   1. bench_verify (in process): first-seen and cached tokens, a cached API
#      key, beside raw OpenSSL ECDSA P-256 and libjwt's jwt_decode.
#   2. Over gRPC, against authd: Health/Check (no credential, the baseline),
#      WhoAmI with an access token and WhoAmI with an API key, interleaved
#      round by round at 64 in flight; then Login per second (argon2id with
#      the production parameters) at 8 in flight. For every run it also
#      samples the CPU of authd, of bench_load and of the whole machine during
#      the measured window.
# Everything runs on loopback against a private PostgreSQL in a temporary
# folder; all of it is stopped and removed on exit.
#   BUILD=build BENCH_SECONDS=5 BENCH_ROUNDS=3 bench/auth.sh
# Knobs: BENCH_SECONDS, BENCH_ROUNDS, AUTHD_THREADS (2), AUTHD_DB_POOL (8),
# BENCH_VERIFY=0 (skip part 1), VERIFY_SCOPES=all (part 1 with tokens about
# as long as authd's; default lines_read alone), BENCH_LOGIN=0 (skip Login),
# LOGIN_INFLIGHT (8), PWHASH_OPSLIMIT/PWHASH_MEMLIMIT_KIB/PWHASH_CONCURRENCY
# (2/65536/4: production's).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
THREADS=${AUTHD_THREADS:-2}
POOL=${AUTHD_DB_POOL:-8}
LOGIN_INFLIGHT=${LOGIN_INFLIGHT:-8}
OPS=${PWHASH_OPSLIMIT:-2}
MEM=${PWHASH_MEMLIMIT_KIB:-65536}
CONC=${PWHASH_CONCURRENCY:-4}
WARMUP=1
PY=/usr/bin/python3

for b in bench/bench_load bench/bench_verify services/authd/authd services/frontdesk/frontdesk; do
	[ -x "$BUILD/$b" ] || { echo "auth.sh: $BUILD/$b missing: build first (scripts/build.sh)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/fd-bench-auth.XXXXXX)
authd_pid=
cleanup() {
	if [ -n "$authd_pid" ]; then kill "$authd_pid" 2>/dev/null || true; wait "$authd_pid" 2>/dev/null || true; fi
	"$ROOT/scripts/pg.sh" stop "$tmp/pg" || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# --- a private PostgreSQL, a migrated database, a platform admin ---
bench_platform

# --- 1. the verifier in process ---
if [ "${BENCH_VERIFY:-1}" != 0 ]; then
	echo "=== 1. in-process verification (bench_verify, $ROUNDS rounds)"
	"$BUILD/bench/bench_verify" --db "$pg_url user=postgres" --rounds "$ROUNDS" \
		--scopes "${VERIFY_SCOPES:-lines_read}" --seconds "$(awk -v s="$SECS" 'BEGIN { print (s < 5 ? s / 4 : 1) }')"
fi

# --- 2. authd over gRPC ---
authd_port=$(port)
target=127.0.0.1:$authd_port
env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_AUTHD_LISTEN="$target" \
	FRONTDESK_AUTHD_THREADS="$THREADS" FRONTDESK_AUTHD_DB_POOL="$POOL" \
	FRONTDESK_SECRET_HASH_KEY="$(openssl rand -hex 32)" FRONTDESK_KEY_ENCRYPTION_KEY="$(openssl rand -hex 32)" \
	FRONTDESK_PWHASH_OPSLIMIT="$OPS" FRONTDESK_PWHASH_MEMLIMIT_KIB="$MEM" FRONTDESK_PWHASH_CONCURRENCY="$CONC" \
	FRONTDESK_LOGIN_FAILURES_PER_SOURCE=100000 FRONTDESK_LOGIN_FAILURES_PER_ACCOUNT=1000 \
	FRONTDESK_SHUTDOWN_GRACE_MS=1000 FRONTDESK_LOG_LEVEL=warn \
	"$BUILD/services/authd/authd" >"$tmp/authd.log" 2>&1 &
authd_pid=$!

# Waits for SERVING, makes a tenant (its admin hashed by authd with the
# parameters above) and an API key of that admin; writes shell assignments.
# With "token" as its argument, only logs the tenant admin in again (a fresh
# access token each round: they live 15 minutes at most).
setup() {
	FD_SOURCE_DIR="$ROOT" "$PY" - "$target" "$admin_pw" "$@" <<'PY'
import os, sys, time
sys.path.insert(0, os.path.join(os.environ["FD_SOURCE_DIR"], "tests", "lib"))
import grpc
import fdapi
target, admin_pw = sys.argv[1], sys.argv[2]
only_token = sys.argv[3:] == ["token"]
ch = grpc.insecure_channel(target)
deadline = time.time() + 30
while True:
    try:
        if ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=1) == b"\x08\x01":
            break
    except grpc.RpcError:
        pass
    if time.time() > deadline:
        sys.exit("auth.sh: authd never became SERVING")
    time.sleep(0.1)
auth = fdapi.Auth(ch, timeout=30)
TENANT, BOSS, BOSS_PW = "bench", "boss", "bench-boss-password-1"
if not only_token:
    admin = auth.Login(tenant_slug="platform", username="admin", password=admin_pw).access_token
    auth.with_token(admin).CreateTenant(slug=TENANT, name="Bench", admin_username=BOSS,
                                        admin_password=BOSS_PW)
token = auth.Login(tenant_slug=TENANT, username=BOSS, password=BOSS_PW).access_token
me = auth.with_token(token)
assert me.WhoAmI().caller.username == BOSS
print(f"token='{token}'")
if not only_token:
    key = me.CreateApiKey(fdapi.auth_pb2.CreateApiKeyRequest(name="bench")).secret
    assert auth.with_token(key).WhoAmI().caller.credential_kind == 2
    login = fdapi.auth_pb2.LoginRequest(tenant_slug=TENANT, username=BOSS, password=BOSS_PW)
    print(f"api_key='{key}'")
    print(f"login_hex='{login.SerializeToString().hex()}'")
PY
}
token='' api_key='' login_hex=''
vars=$(setup) || { echo "auth.sh: setup failed; authd's log:" >&2; cat "$tmp/authd.log" >&2; exit 1; }
eval "$vars"
echo "# tenant admin's access token: ${#token} bytes; API key: ${#api_key} bytes"

out=$tmp/out
# run CASE METHOD INFLIGHT CONNS [bench_load options]: one bench_load, with
# the CPU of authd, of bench_load and of the machine over its measured window.
run() {
	local name=$1 method=$2 k=$3 c=$4
	shift 4
	"$PY" - "$authd_pid" "$WARMUP" "$SECS" "$name" -- "$BUILD/bench/bench_load" --target "$target" \
		--method "$method" --case "$name" --inflight "$k" --conns "$c" --seconds "$SECS" \
		--warmup "$WARMUP" "$@" <<'PY' | tee -a "$out"
import os, subprocess, sys, time
server, warmup, secs, name = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
cmd = sys.argv[sys.argv.index("--") + 1:]
tick = os.sysconf("SC_CLK_TCK")
def proc_cpu(pid):   # utime + stime, seconds
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick
def busy():          # the machine's CPU: (busy, stolen by the hypervisor), seconds
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4] - v[7]) / tick, v[7] / tick
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
time.sleep(warmup + 0.05)
t0, s0, l0, (b0, st0) = time.monotonic(), proc_cpu(server), proc_cpu(p.pid), busy()
time.sleep(secs - 0.1)
t1, s1, l1, (b1, st1) = time.monotonic(), proc_cpu(server), proc_cpu(p.pid), busy()
line = p.stdout.read()
p.wait()
sys.stdout.write(line)
rate = float(line.split("rate=")[1].split("/")[0]) if "rate=" in line else 0
w = t1 - t0
calls = rate * w
us = lambda c: c / calls * 1e6 if calls else float("nan")
print(f"cpu {name} server_cores={(s1 - s0) / w:.2f} load_cores={(l1 - l0) / w:.2f} "
      f"others_cores={(b1 - b0 - (s1 - s0) - (l1 - l0)) / w:.2f} steal_cores={(st1 - st0) / w:.2f} "
      f"server_cpu_us_per_call={us(s1 - s0):.1f} "
      f"load_cpu_us_per_call={us(l1 - l0):.1f}")
sys.stdout.flush()
PY
}

echo "=== 2. authd over gRPC: $ROUNDS rounds of ${SECS}s a case; authd: $THREADS threads, pool $POOL;" \
	"$(nproc) CPUs; client and server share them"
for r in $(seq "$ROUNDS"); do
	if [ "$r" != 1 ]; then vars=$(setup token); eval "$vars"; fi
	run health_inflight64 /grpc.health.v1.Health/Check 64 8
	run whoami_token_inflight64 /frontdesk.v1.AuthService/WhoAmI 64 8 --metadata "authorization=Bearer $token"
	run whoami_apikey_inflight64 /frontdesk.v1.AuthService/WhoAmI 64 8 --metadata "authorization=Bearer $api_key"
	if [ "${BENCH_LOGIN:-1}" != 0 ]; then
		run "login_inflight$LOGIN_INFLIGHT" /frontdesk.v1.AuthService/Login "$LOGIN_INFLIGHT" \
			"$(( LOGIN_INFLIGHT < 4 ? LOGIN_INFLIGHT : 4 ))" --payload-hex "$login_hex"
	fi
done

echo "--- medians over $ROUNDS rounds; Login: argon2id opslimit=$OPS memlimit=${MEM}KiB concurrency=$CONC"
"$PY" - "$out" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"bench (\w+?)_inflight(\d+) rate=(\d+)/s p50_ms=([\d.]+) p99_ms=([\d.]+) \S+ errors=(\d+)", line)
    if m:
        r = rows.setdefault((m[1], int(m[2])), {})
        for k, v in zip(("rate", "p50", "p99", "errors"), m.groups()[2:]):
            r.setdefault(k, []).append(float(v))
    m = re.match(r"cpu (\w+?)_inflight(\d+) (.*)", line)
    if m:
        r = rows.setdefault((m[1], int(m[2])), {})
        for kv in m[3].split():
            k, v = kv.split("=")
            r.setdefault(k, []).append(float(v))
med = {k: {f: statistics.median(v) for f, v in r.items()} for k, r in rows.items()}
for (name, k), r in med.items():
    print(f"{name:<14} inflight={k:<3} rate={r['rate']:>8.0f}/s p50_ms={r['p50']:.3f} p99_ms={r['p99']:.3f} "
          f"errors={int(sum(rows[(name, k)]['errors']))} server_cpu_us/call={r.get('server_cpu_us_per_call', 0):.1f} "
          f"load_cpu_us/call={r.get('load_cpu_us_per_call', 0):.1f} server_cores={r.get('server_cores', 0):.2f} "
          f"load_cores={r.get('load_cores', 0):.2f} others_cores={r.get('others_cores', 0):.2f} "
          f"steal_cores={r.get('steal_cores', 0):.2f}")
health = med.get(("health", 64), {}).get("rate")
for name in ("whoami_token", "whoami_apikey"):
    r = med.get((name, 64))
    if health and r:
        ratio = r["rate"] / health
        print(f"ratio {name}/health={ratio:.2f} (goal >= 0.80: {'met' if ratio >= 0.80 else 'MISSED'})")
if any(sum(r["errors"]) for r in rows.values()):
    print("WARNING: some calls failed (see bench_load's message above)")
PY
