#!/usr/bin/env bash
# billing.sh - the issue-4 benchmark: Charge per second over gRPC against
# billingd, beside a raw-SQL baseline from the same run: pgbench running what
# billingd runs for one Charge (BEGIN, the tenant, SQL_CHARGE read from
# services/billingd/store.c, COMMIT, in one pipeline, as frontdesk_billingd
# so that RLS applies). Two patterns: one hot reseller, and charges spread
# over 1,000 resellers; 1, 8 and 32 in flight; cases interleaved round by
# round, each run followed by a `cpu` line (billingd, PostgreSQL, the load
# generator, everyone else). After each pattern of each round, an audit of
# the ledger in SQL. Then medians and ratios grpc/sql; the goal (issue 14) is
# grpc >= 80% of sql at 8 in flight on both patterns, with a clean audit.
# CreateLine end to end (CREATELINE=1, the default): linesd's outbox, its
# Charge to billingd and the apply, over gRPC as the tenant admin, one line a
# call spread over the 1,000 resellers at each in-flight count after the
# spread pattern's runs (case createline_grpc_spread_inflight<K>; the `cpu`
# line's server is linesd, its keeper billingd), stated against the same
# round's Charge baselines; the audit checks its lines and charges too.
# Everything runs on loopback against a private PostgreSQL in a temporary
# folder; all of it is stopped and removed on exit.
#   BUILD=build BENCH_SECONDS=5 BENCH_ROUNDS=3 bench/billing.sh
# Knobs: BENCH_SECONDS (5), BENCH_ROUNDS (3, at most 99), BENCH_INFLIGHT
# ("1 8 32"), BILLINGD_THREADS (8), BILLINGD_DB_POOL (8), PGBENCH_THREADS (1,
# like bench_load), PGBENCH_PIPELINE=0 (the baseline without pipelining: one
# round trip per statement), PGBENCH_TIMEOUT (1: pgbench sets the statement
# timeout beside the tenant, as billingd does for a call with a deadline; 0:
# the tenant only), BENCH_DB_PREPARED (true; false: the services send unnamed
# statements, as behind pgbouncer in transaction mode, and pgbench runs
# -M extended, the same), CREATELINE (1; 0: no linesd, no CreateLine case),
# BENCH_PGSS=1 (pg_stat_statements after each run: a diagnosis of plans made
# per call), PGBENCH (its path).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
INFLIGHTS=${BENCH_INFLIGHT:-1 8 32}
THREADS=${BILLINGD_THREADS:-8}
POOL=${BILLINGD_DB_POOL:-8}
PGB_THREADS=${PGBENCH_THREADS:-1}
PREPARED=${BENCH_DB_PREPARED:-true}
CREATELINE=${CREATELINE:-1}
PGBENCH_TIMEOUT=${PGBENCH_TIMEOUT:-1}
case $PREPARED in true) PGB_MODE=prepared ;; false) PGB_MODE=extended ;;
	*) echo "billing.sh: BENCH_DB_PREPARED: true or false" >&2; exit 1 ;; esac
PGBENCH=${PGBENCH:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)/pgbench}
RESELLERS=1000
MINT=1000000000          # credits minted to each reseller: far more than a run charges
WARMUP=1
PY=/usr/bin/python3
HELPER=$ROOT/bench/billing_setup.py

for b in bench/bench_load services/authd/authd services/billingd/billingd services/frontdesk/frontdesk \
	$([ "$CREATELINE" = 1 ] && echo services/linesd/linesd); do
	[ -x "$BUILD/$b" ] || { echo "billing.sh: $BUILD/$b missing: build first (scripts/build.sh)" >&2; exit 1; }
done
[ -x "$PGBENCH" ] || { echo "billing.sh: pgbench not found (PGBENCH=...)" >&2; exit 1; }
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 99 ] || { echo "billing.sh: BENCH_ROUNDS: 1 to 99" >&2; exit 1; }
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || { echo "billing.sh: BENCH_SECONDS: whole seconds (pgbench -T)" >&2; exit 1; }
for k in $INFLIGHTS; do
	[[ "$k" =~ ^[1-9][0-9]?$ ]] || { echo "billing.sh: BENCH_INFLIGHT: 1 to 99 each (the key tag)" >&2; exit 1; }
done
[ "$(printf '%s\n' $INFLIGHTS | sort | uniq -d)" = "" ] ||
	{ echo "billing.sh: BENCH_INFLIGHT: each count once (runs' keys would repeat)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/fd-bench-billing.XXXXXX)
authd_pid= billingd_pid= linesd_pid=
cleanup() {
	for p in $linesd_pid $billingd_pid $authd_pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
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
# BENCH_PGSS=1: PostgreSQL restarted with pg_stat_statements (planning
# tracked too): each run is followed by a `pgss` line per statement (calls,
# plans made, mean planning and execution time). A diagnosis, not a figure:
# the tracking costs PostgreSQL CPU of its own.
if [ "${BENCH_PGSS:-0}" = 1 ]; then
	printf '%s\n' "shared_preload_libraries = 'pg_stat_statements'" "pg_stat_statements.track_planning = on" \
		"pg_stat_statements.track = 'all'" >>"$tmp/pg/data/postgresql.conf"
	"$ROOT/scripts/pg.sh" stop "$tmp/pg"
	"$ROOT/scripts/pg.sh" start "$tmp/pg" "$pg_port"
	psql_pg -d frontdesk -c "CREATE EXTENSION pg_stat_statements"
fi

# --- authd (service tokens for linesd), billingd ---
hash_key=$(openssl rand -hex 32)
service_secret=$(openssl rand -hex 24)
authd_port=$(port)
authd=127.0.0.1:$authd_port
env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_AUTHD_LISTEN="$authd" FRONTDESK_AUTHD_THREADS=2 \
	FRONTDESK_SECRET_HASH_KEY="$hash_key" FRONTDESK_KEY_ENCRYPTION_KEY="$(openssl rand -hex 32)" \
	FRONTDESK_SERVICE_SECRETS="linesd=$service_secret" \
	FRONTDESK_PWHASH_OPSLIMIT=1 FRONTDESK_PWHASH_MEMLIMIT_KIB=8192 FRONTDESK_PWHASH_CONCURRENCY=1 \
	FRONTDESK_SHUTDOWN_GRACE_MS=1000 FRONTDESK_LOG_LEVEL=warn \
	"$BUILD/services/authd/authd" >"$tmp/authd.log" 2>&1 &
authd_pid=$!
tenant='' root=''
vars=$("$PY" "$HELPER" tenant "$authd" "$admin_pw") ||
	{ echo "billing.sh: tenant set-up failed; authd's log:" >&2; cat "$tmp/authd.log" >&2; exit 1; }
eval "$vars"

# 1,000 resellers under the tenant admin, each minted MINT credits: balance
# rows, the issuance account's row and one mint entry each, as MintCredits
# would leave them (actor: the tenant admin), written directly as postgres.
first=$(psql_pg -d frontdesk -tA -v t="$tenant" -v root="$root" -v n="$RESELLERS" -v mint="$MINT" <<'SQL'
BEGIN;
SELECT set_config('frontdesk.tenant_id', :'t', true) \g /dev/null
CREATE TEMP TABLE r ON COMMIT DROP AS
  SELECT i, nextval('frontdesk.accounts_id_seq') AS id FROM generate_series(1, :n) i;
INSERT INTO frontdesk.accounts (tenant_id, id, parent_id, path, role, username, password_hash)
  SELECT :t, id, :root, :root || '.' || id || '.', 'reseller', 'bench-r' || i, 'x' FROM r;
INSERT INTO frontdesk.credit_balances (tenant_id, account_id, balance)
  SELECT :t, id, :mint FROM r UNION ALL SELECT :t, 0, -:mint::bigint * :n;
INSERT INTO frontdesk.ledger_entries (tenant_id, kind, from_account, to_account, amount,
    from_balance_after, to_balance_after, note, actor_account, idem_key, request_hash)
  SELECT :t, 'mint', 0, id, :mint, -:mint::bigint * i, :mint, 'bench', :root,
         'MintCredits/acct:' || :root || '/bench-mint-' || id, decode(md5(id::text), 'hex')
    FROM r ORDER BY i;
SELECT min(id) || ' ' || max(id) FROM r;
COMMIT;
SQL
)
read -r first last <<<"$first"
[ $((last - first + 1)) = "$RESELLERS" ] || { echo "billing.sh: reseller ids not contiguous: $first..$last" >&2; exit 1; }
hot=$first

billingd_port=$(port)
billingd=127.0.0.1:$billingd_port
env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_BILLINGD_LISTEN="$billingd" \
	FRONTDESK_BILLINGD_THREADS="$THREADS" FRONTDESK_BILLINGD_DB_POOL="$POOL" FRONTDESK_DB_PREPARED="$PREPARED" \
	FRONTDESK_SECRET_HASH_KEY="$hash_key" FRONTDESK_SHUTDOWN_GRACE_MS=1000 FRONTDESK_LOG_LEVEL=warn \
	"$BUILD/services/billingd/billingd" >"$tmp/billingd.log" 2>&1 &
billingd_pid=$!
"$PY" "$HELPER" wait "$billingd" ||
	{ echo "billing.sh: billingd's log:" >&2; cat "$tmp/billingd.log" >&2; exit 1; }

# --- linesd (CREATELINE=1): charging through this billingd with the
# service secret authd knows; the tenant admin's catalog, a package of 1
# credit. Same threads and pool as billingd.
if [ "$CREATELINE" = 1 ]; then
	linesd=127.0.0.1:$(port)
	env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_LINESD_LISTEN="$linesd" \
		FRONTDESK_LINESD_THREADS="$THREADS" FRONTDESK_LINESD_DB_POOL="$POOL" FRONTDESK_DB_PREPARED="$PREPARED" \
		FRONTDESK_SECRET_HASH_KEY="$hash_key" FRONTDESK_KEY_ENCRYPTION_KEY="$(openssl rand -hex 32)" \
		FRONTDESK_LINESD_SERVICE_SECRET="$service_secret" FRONTDESK_AUTHD_TARGET="$authd" \
		FRONTDESK_BILLINGD_TARGET="$billingd" FRONTDESK_SHUTDOWN_GRACE_MS=1000 FRONTDESK_LOG_LEVEL=warn \
		"$BUILD/services/linesd/linesd" >"$tmp/linesd.log" 2>&1 &
	linesd_pid=$!
	boss='' package=''
	vars=$("$PY" "$HELPER" boss "$authd") || { cat "$tmp/authd.log" >&2; exit 1; }
	eval "$vars"
	vars=$("$PY" "$HELPER" catalog "$linesd" "$boss") ||
		{ echo "billing.sh: linesd's log:" >&2; cat "$tmp/linesd.log" >&2; exit 1; }
	eval "$vars"
fi

# The requests: TAG (6 characters: g, the pattern, the in-flight count, the
# round) is set per run, KEY per call by bench_load; pgbench's keys have the
# same length ("Charge/svc:linesd/" + p... + 16 digits).
TAG=TTTTTT KEY=KKKKKKKKKKKKKKKK
"$PY" "$HELPER" payloads "$tmp" "$tenant" "$hot" "$first" "$RESELLERS" "$TAG" "$KEY"
[ "$CREATELINE" = 1 ] && "$PY" "$HELPER" lines "$tmp" "$tenant" "$package" "$first" "$RESELLERS" "$TAG" "$KEY"
"$PY" "$HELPER" pgbench "$tmp/charge.pgbench" $([ "${PGBENCH_PIPELINE:-1}" = 0 ] && echo nopipeline) \
	$([ "$PGBENCH_TIMEOUT" = 1 ] && echo timeout)
pg_postmaster=$(head -1 "$tmp/pg/data/postmaster.pid")

out=$tmp/out
# measure CASE -- COMMAND...: runs COMMAND, and samples the CPU of
# billingd, of PostgreSQL (the postmaster and its children), of COMMAND and
# of the whole machine over the measured window (after the warm-up). Prints
# COMMAND's output, turned into the lines of bench_load for pgbench:
#   bench <case> rate=<tx/s> p50_ms=- p99_ms=- lat_avg_ms=<x> errors=<n>
#   calls <case> total=<n> ok=<n> failed=<n>
#   cpu <case> billingd_cores= pg_cores= load_cores= others_cores= steal_cores= ..._us_per_call=
# MEASURE_AS="PID LABEL [KEEPER_PID]" measures another server (CreateLine:
# linesd, with billingd as the keeper).
measure() {
	local name=$1 as
	shift
	read -r -a as <<<"${MEASURE_AS:-$billingd_pid billingd}"
	[ "${BENCH_PGSS:-0}" = 1 ] && psql_pg -d frontdesk -tA -c "SELECT pg_stat_statements_reset(), pg_stat_reset_shared('wal')" >/dev/null
	"$PY" "$ROOT/bench/measure.py" "$name" "${as[0]}" "$pg_postmaster" "$WARMUP" "$SECS" --label "${as[1]}" \
		${as[2]:+--keeper "${as[2]}"} "$@" | tee -a "$out"
	[ "${BENCH_PGSS:-0}" = 1 ] && pgss "$name"
	return 0
}
# The statements of the run just measured, the most time first (BENCH_PGSS=1).
pgss() { # CASE
	psql_pg -d frontdesk -tA -F ' ' -v c="$1" <<'SQL'
SELECT 'pgss ' || :'c' || ' calls=' || calls || ' plans=' || plans
       || ' plan_us=' || round((total_plan_time / greatest(calls, 1) * 1000)::numeric, 1)
       || ' exec_us=' || round((total_exec_time / greatest(calls, 1) * 1000)::numeric, 1)
       || ' toplevel=' || toplevel || ' ' || left(regexp_replace(query, '\s+', ' ', 'g'), 90)
  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'frontdesk')
 ORDER BY total_plan_time + total_exec_time DESC LIMIT 8;
SELECT 'pgwal ' || :'c' || ' records=' || wal_records || ' fpi=' || wal_fpi || ' bytes=' || wal_bytes
       || ' writes=' || wal_write || ' syncs=' || wal_sync || ' buffers_full=' || wal_buffers_full
  FROM pg_stat_wal;
SQL
}

conns_for() { if [ "$1" -le 1 ]; then echo 1; elif [ "$1" -le 8 ]; then echo $(( $1 / 2 )); else echo 8; fi; }
tag() { printf '%s%s%02d%02d' "$1" "${2:0:1}" "$3" "$4"; }   # g|p, hot|spread, k, round

run_grpc() { # PATTERN K ROUND
	local name=charge_grpc_$1_inflight$2 file=$tmp/$1.run.hex
	"$PY" -c 'import sys
old, new = sys.argv[1].encode(), sys.argv[2].encode()
with open(sys.argv[3]) as f, open(sys.argv[4], "w") as o:
    for line in f:
        b = bytes.fromhex(line.strip())
        assert b.count(old) == 1 and len(new) == len(old)
        o.write(b.replace(old, new).hex() + "\n")' "$TAG" "$(tag g "$1" "$2" "$3")" "$tmp/$1.hex" "$file"
	measure "$name" -- "$BUILD/bench/bench_load" --target "$billingd" \
		--method /frontdesk.v1.BillingService/Charge --case "$name" --inflight "$2" --conns "$(conns_for "$2")" \
		--seconds "$SECS" --warmup "$WARMUP" --metadata "authorization=Bearer $token" \
		--payload-file "$file" --vary-key "$KEY"
}

run_sql() { # PATTERN K ROUND
	local name=charge_sql_$1_inflight$2 span=1 r0=$hot
	if [ "$1" = spread ]; then span=$RESELLERS r0=$first; fi
	local j=$(( PGB_THREADS < $2 ? PGB_THREADS : $2 ))
	measure "$name" -- "$PGBENCH" -n -M "$PGB_MODE" ${PGBENCH_EXTRA:-} -c "$2" -j "$j" -T "$(( SECS + WARMUP ))" -P 1 \
		-f "$tmp/charge.pgbench" -h "$pg_host" -p "$pg_port" -U frontdesk_billingd \
		-D t="$tenant" -D st=10000 -D r0="$r0" -D span="$span" -D n=0 -D amount=1 \
		-D reason=line_created -D line=1 -D note=bench -D actor=linesd \
		-D idem="Charge/svc:linesd/$(tag p "$1" "$2" "$3")" -D hash="$(printf '%064d' 0)" frontdesk
}

# CreateLine end to end, spread over the resellers (1 credit each): linesd's
# outbox claim, its Charge to billingd, the apply.
run_line() { # K ROUND
	local name=createline_grpc_spread_inflight$1 file=$tmp/lines.run.hex
	"$PY" -c 'import sys
old, new = sys.argv[1].encode(), sys.argv[2].encode()
with open(sys.argv[3]) as f, open(sys.argv[4], "w") as o:
    for line in f:
        b = bytes.fromhex(line.strip())
        assert b.count(old) == 1 and len(new) == len(old)
        o.write(b.replace(old, new).hex() + "\n")' "$TAG" "$(tag l spread "$1" "$2")" "$tmp/lines.hex" "$file"
	MEASURE_AS="$linesd_pid linesd $billingd_pid" measure "$name" -- "$BUILD/bench/bench_load" --target "$linesd" \
		--method /frontdesk.v1.LinesService/CreateLine --case "$name" --inflight "$1" --conns "$(conns_for "$1")" \
		--seconds "$SECS" --warmup "$WARMUP" --metadata "authorization=Bearer $boss" \
		--payload-file "$file" --vary-key "$KEY"
}

# The audit, over the whole tenant: every balance row equals its ledger sum;
# balances plus consumption (charges less refunds) sum to 0; no reseller
# below 0; the charges of each reseller left distinct balances, one credit
# apart, the last its balance now (no lost or doubled update); and as many
# charge entries as OK calls of bench_load and transactions of pgbench.
audit() { # LABEL
	local grpc sql made
	read -r grpc sql made < <(awk '/^calls charge_grpc/ { for (i = 1; i <= NF; i++) if ($i ~ /^ok=/) g += substr($i, 4) }
		/^calls charge_sql/ { for (i = 1; i <= NF; i++) if ($i ~ /^ok=/) s += substr($i, 4) }
		/^calls createline_grpc/ { for (i = 1; i <= NF; i++) if ($i ~ /^ok=/) l += substr($i, 4) }
		END { print g + 0, s + 0, l + 0 }' "$out")
	psql_pg -d frontdesk -tA -v t="$tenant" -v grpc="$grpc" -v sql="$sql" -v made="$made" -v label="$1" \
		-v mint="$MINT" <<'SQL' | tee -a "$out"
SELECT set_config('frontdesk.tenant_id', :'t', false) \g /dev/null
WITH e AS (SELECT * FROM frontdesk.ledger_entries WHERE tenant_id = :t),
b AS (SELECT account_id, balance FROM frontdesk.credit_balances WHERE tenant_id = :t),
led AS (SELECT account, sum(d) AS s FROM (SELECT to_account AS account, amount AS d FROM e
                                          UNION ALL SELECT from_account, -amount FROM e) x GROUP BY account),
cons AS (SELECT coalesce((SELECT s FROM led WHERE account = -1), 0) AS s,
                coalesce(sum(amount) FILTER (WHERE kind = 'charge'), 0)
                  - coalesce(sum(amount) FILTER (WHERE kind = 'refund'), 0) AS charged FROM e),
per AS (SELECT from_account AS id, count(*) AS n, count(DISTINCT from_balance_after) AS nd,
               min(from_balance_after) AS lo, max(from_balance_after) AS hi, sum(amount) AS amt
          FROM e WHERE kind = 'charge' GROUP BY from_account),
counts AS (SELECT count(*) FILTER (WHERE kind = 'charge' AND idem_key LIKE 'Charge/svc:linesd/g%') AS grpc,
                  count(*) FILTER (WHERE kind = 'charge' AND idem_key LIKE 'Charge/svc:linesd/p%') AS sql,
                  count(*) FILTER (WHERE kind = 'charge' AND idem_key LIKE 'Charge/svc:linesd/lc-%') AS lc,
                  count(*) FILTER (WHERE kind = 'charge') AS charges FROM e),
lc AS (SELECT (SELECT count(*) FROM frontdesk.lines WHERE tenant_id = :t) AS nlines,
              count(*) AS n, count(*) FILTER (WHERE c.state = 'applied' AND c.charge_entry_id = x.id
                                                AND c.amount = 1 AND x.amount = 1
                                                AND x.from_account = c.reseller_id) AS good
         FROM frontdesk.line_charges c LEFT JOIN e x ON x.idem_key = 'Charge/svc:linesd/lc-' || c.id
        WHERE c.tenant_id = :t),
v AS (
  SELECT 'account ' || coalesce(b.account_id, l.account) || ': balance ' || coalesce(b.balance::text, 'missing')
         || ', ledger sum ' || coalesce(l.s, 0) AS violation
    FROM b FULL JOIN (SELECT * FROM led WHERE account <> -1) l ON l.account = b.account_id
   WHERE b.account_id IS NULL OR b.balance <> coalesce(l.s, 0)
  UNION ALL
  SELECT 'consumption ' || s || ' but charges less refunds ' || charged FROM cons WHERE s <> charged
  UNION ALL
  SELECT 'tenant does not sum to 0: balances ' || (SELECT sum(balance) FROM b) || ' + consumption ' || s
    FROM cons WHERE (SELECT sum(balance) FROM b) + s <> 0
  UNION ALL
  SELECT 'reseller ' || account_id || ' below 0: ' || balance FROM b WHERE account_id > 0 AND balance < 0
  UNION ALL
  SELECT 'reseller ' || per.id || ': ' || n || ' charges of ' || amt || ' credits left ' || nd
         || ' distinct balances in ' || lo || '..' || hi || ', balance now ' || coalesce(b.balance::text, 'missing')
    FROM per LEFT JOIN b ON b.account_id = per.id
   WHERE nd <> n OR hi - lo + 1 <> n OR amt <> n OR b.balance IS DISTINCT FROM lo OR hi <> :mint - 1
  UNION ALL
  SELECT 'charge entries: ' || grpc || ' by gRPC (bench_load OK calls: ' || :grpc || '), ' || sql
         || ' by pgbench (its transactions: ' || :sql || '), ' || lc || ' by CreateLine (OK calls: ' || :made
         || '), ' || charges || ' in all'
    FROM counts WHERE grpc <> :grpc OR sql <> :sql OR lc <> :made OR charges <> :grpc + :sql + :made
  UNION ALL
  SELECT 'CreateLine: ' || nlines || ' lines, ' || n || ' line charges, ' || good
         || ' applied with their 1-credit charge entry (OK calls: ' || :made || ')'
    FROM lc WHERE nlines <> :made OR n <> :made OR good <> :made
)
SELECT 'audit ' || :'label' || ' ' || CASE WHEN count(*) = 0 THEN 'ok' ELSE 'VIOLATIONS: ' || string_agg(violation, '; ') END
       || ' (charges: ' || (SELECT grpc FROM counts) || ' gRPC, ' || (SELECT sql FROM counts) || ' SQL, '
       || (SELECT lc FROM counts) || ' CreateLine)'
  FROM v;
SQL
}

echo "=== Charge over gRPC (billingd: $THREADS threads, pool $POOL, prepared statements $PREPARED) and its SQL" \
	"in pgbench (-M $PGB_MODE, -j $PGB_THREADS, pipeline ${PGBENCH_PIPELINE:-1}, timeout $PGBENCH_TIMEOUT)" \
	"$([ "$CREATELINE" = 1 ] && echo ", CreateLine through linesd"): $ROUNDS rounds of ${SECS}s a case;" \
	"$(nproc) CPUs shared by PostgreSQL, billingd and the load generator"
echo "# tenant $tenant, hot reseller $hot, spread over $first..$last; $MINT credits each"
for r in $(seq "$ROUNDS"); do
	token=''
	vars=$("$PY" "$HELPER" token "$authd" "$service_secret" "$billingd" "$tenant") ||
		{ cat "$tmp/authd.log" "$tmp/billingd.log" >&2; exit 1; }
	eval "$vars"
	if [ "$CREATELINE" = 1 ]; then
		vars=$("$PY" "$HELPER" boss "$authd") || { cat "$tmp/authd.log" >&2; exit 1; }
		eval "$vars"
	fi
	for pat in hot spread; do
		for k in $INFLIGHTS; do
			if [ $((r % 2)) = 1 ]; then run_grpc "$pat" "$k" "$r"; run_sql "$pat" "$k" "$r"
			else run_sql "$pat" "$k" "$r"; run_grpc "$pat" "$k" "$r"; fi
			if [ "$pat" = spread ] && [ "$CREATELINE" = 1 ]; then run_line "$k" "$r"; fi
		done
		audit "$pat-round$r"
	done
done

echo "--- medians over $ROUNDS rounds"
"$PY" - "$out" <<'PY'
import re, statistics, sys
rows = {}
audits = []
for line in open(sys.argv[1]):
    m = re.match(r"(bench|calls|cpu) (charge_grpc|charge_sql|createline_grpc)_(\w+?)_inflight(\d+) (.*)", line)
    if m:
        side = {"charge_grpc": "grpc", "charge_sql": "sql", "createline_grpc": "line"}[m[2]]
        r = rows.setdefault((m[3], int(m[4]), side), {})
        for kv in m[5].split():
            k, v = kv.split("=")
            if v.endswith("/s"):
                v = v[:-2]
            if v not in ("-", "nan"):
                r.setdefault(m[1] + "." + k, []).append(float(v))
    if line.startswith("audit "):
        audits.append(line.strip())
med = {k: {f: statistics.median(v) for f, v in r.items()} for k, r in rows.items()}
def fmt(r, f, spec):
    return format(r[f], spec) if f in r else "-"
for (pat, k, side) in sorted(med, key=lambda x: (x[0] != "hot", x[1], x[2])):
    r = med[(pat, k, side)]
    lat = (f"p50_ms={fmt(r, 'bench.p50_ms', '.3f')} p99_ms={fmt(r, 'bench.p99_ms', '.3f')}" if side != "sql"
           else f"lat_avg_ms={fmt(r, 'bench.lat_avg_ms', '.3f')}")
    if side == "line":   # the server is linesd, the keeper billingd
        if "cpu.keeper_cores" in r and r.get("bench.rate"):
            r["cpu.billingd_us_per_call"] = r["cpu.keeper_cores"] / r["bench.rate"] * 1e6
        servers = (f"linesd_cores={fmt(r, 'cpu.linesd_cores', '.2f')} billingd_cores={fmt(r, 'cpu.keeper_cores', '.2f')} "
                   f"pg_cores={fmt(r, 'cpu.pg_cores', '.2f')} ")
        per = f"linesd_us/call={fmt(r, 'cpu.linesd_us_per_call', '.1f')} "
    else:
        servers = f"billingd_cores={fmt(r, 'cpu.billingd_cores', '.2f')} pg_cores={fmt(r, 'cpu.pg_cores', '.2f')} "
        per = ""
    print(f"{'createline_grpc' if side == 'line' else 'charge_' + side}_{pat}_inflight{k:<3} "
          f"rate={r['bench.rate']:>7.0f}/s {lat} "
          f"errors={int(sum(rows[(pat, k, side)].get('bench.errors', [0])))} "
          f"failed_all_runs={int(sum(rows[(pat, k, side)].get('calls.failed', [0])))} "
          f"{servers}load_cores={fmt(r, 'cpu.load_cores', '.2f')} others_cores={fmt(r, 'cpu.others_cores', '.2f')} "
          f"steal_cores={fmt(r, 'cpu.steal_cores', '.2f')} {per}billingd_us/call={fmt(r, 'cpu.billingd_us_per_call', '.1f')} "
          f"pg_us/call={fmt(r, 'cpu.pg_us_per_call', '.1f')} load_us/call={fmt(r, 'cpu.load_us_per_call', '.1f')}")
print("--- ratios grpc/sql (medians)")
goal = True
for pat in ("hot", "spread"):
    for k in sorted({k for p, k, _ in med if p == pat}):
        g, s = med.get((pat, k, "grpc")), med.get((pat, k, "sql"))
        if g and s and s["bench.rate"]:
            ratio = g["bench.rate"] / s["bench.rate"]
            print(f"ratio charge_{pat}_inflight{k} grpc={g['bench.rate']:.0f}/s sql={s['bench.rate']:.0f}/s "
                  f"grpc/sql={ratio:.2f}")
            if k == 8:
                print(f"goal charge_{pat}_inflight8 grpc/sql={ratio:.2f} >= 0.80: {'met' if ratio >= 0.80 else 'MISSED'}")
                goal &= ratio >= 0.80
        line = med.get((pat, k, "line"))
        if line and s and s["bench.rate"] and g and g["bench.rate"]:
            print(f"ratio createline_{pat}_inflight{k} createline={line['bench.rate']:.0f}/s "
                  f"createline/charge_sql={line['bench.rate'] / s['bench.rate']:.2f} "
                  f"createline/charge_grpc={line['bench.rate'] / g['bench.rate']:.2f}")
clean = bool(audits) and all(" ok " in a for a in audits)
print(f"goal audit: {len(audits)} audits, {'all ok' if clean else 'VIOLATIONS (see the audit lines above)'}")
print("goal: " + ("met" if goal and clean else "MISSED"))
if any(sum(r.get("calls.failed", [0])) for r in rows.values()):
    print("WARNING: some calls failed (see the messages above)")
PY
