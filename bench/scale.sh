#!/usr/bin/env bash
# scale.sh - issue 14, part 3: linesd with scale data, beside the same
# measurements on lines.sh's size in the same run. One command; it takes the
# shared benchmark lock (/tmp/fd-bench.lock) itself for the whole run, stops
# by itself, and removes everything it made.
#
# Two stacks on loopback, each its own private PostgreSQL (scripts/pg.sh, a
# temporary folder; shared_buffers and pg_stat_statements alike in both),
# authd, billingd, routerd with its nodes kept UP by a keeper (one Heartbeat
# per node per interval, open loop), and linesd:
#   - small (lines.sh's size): 1 tenant, 100,000 lines, 10,000 live
#     sessions, 200 nodes;
#   - scale: 1 tenant with 1,000,000 lines and 200,000 live sessions, 10,000
#     more tenants with 3 lines each, 1,000 nodes.
# The first line of a tenant is made through the API (lines_setup.py setup;
# kickoff_setup.py tenants for the small tenants' template), everything else
# in SQL as postgres: the lines are copies of the tenant's first line (as
# lines.sh and kickoff.sh make them; the password hash is per tenant, so each
# cloned tenant gets its own, scale_setup.py pwhashes); the 9,999 other
# tenants are clones of the template tenant (tenant row, tenant admin and
# reseller accounts, catalog through its triggers, package, job rows); the
# live sessions are rows as open_session writes them (each line's own, on a
# node of its client's region), with linesd.session_timeout due at once in
# their tenant, as AuthorizePlayback's sessions_started would make it.
#
# Then, per stack:
#   - start-up: linesd restarted on that data (process start to Health
#     SERVING, and to the first allowed AuthorizePlayback, a reopen of a live
#     session's line); later SCALE_STARTS more replicas started beside the
#     running one (medians);
#   - memory (RSS of linesd, /proc/PID/status VmRSS): after the heartbeat
#     cache is filled (SessionHeartbeat of every live session: each read
#     from PostgreSQL once) and after the line cache is filled (reopen of
#     every live session: each line's rules kept), per session and per cached
#     line; and after the new-session lines are cached too (a check: lines
#     and sessions together);
#   - rates, interleaved round by round (the order turns every round) at each
#     level of BENCH_INFLIGHT, closed loop (bench_load), as in lines.sh:
#     echo (bench_echo, the issue-2 baseline, sent the small stack's
#     heartbeats), and per stack new (AuthorizePlayback, a new session on a
#     line without one, its rules already cached), reopen (the live
#     sessions' own requests again: reused) and beat (SessionHeartbeat of
#     the live sessions); each run with its cpu line (measure.py, routerd's
#     xcpu) and an audit in SQL as lines.sh's (one new session per allowed
#     call, none ended, each with a node; the live sessions untouched; the
#     new ones deleted and the table vacuumed after each run);
#   - idle: SCALE_IDLE_SECONDS with nothing but the keepers (both stacks in
#     the same window), then again on the scale stack with one live session
#     in each of its 10,000 small tenants: transactions of the window
#     (pg_stat_database, and per service role from pg_stat_statements' BEGIN
#     calls, tracking on only in the window), each role's statements, CPU of
#     linesd, of PostgreSQL and of each role's backends (scale_setup.py idle).
# At the end: medians, scale/small per case and each against echo, the
# goals (scale >= 0.8 of small for new, reopen, beat), memory per session
# and per line, the idle cost per janitor pass, start-up times.
#   BUILD=build bench/scale.sh
# Knobs: SCALE_LINES (1000000), SCALE_LIVE (200000), SCALE_TENANTS (10000,
# the small tenants; 0: none), SCALE_TENANT_LINES (3), SCALE_NODES (1000),
# SMALL_LINES (100000), SMALL_LIVE (10000), SMALL_NODES (200), NEW_LINES
# (90000: lines of each stack the new-session runs use, spread over its
# lines without a session; more than a run's calls, which the audit
# checks; each round's requests from a player of its own, so that no
# request is the one that opened a session before: linesd answers that one
# from memory, 2b7e55e), REOPEN_LINES (10000: the live sessions whose lines the reopen
# runs use, the first ones, in turn; lines.sh's 10,000), BENCH_SECONDS (5), BENCH_ROUNDS (3),
# BENCH_INFLIGHT ("32"), SCALE_IDLE_SECONDS (60; 0: no idle part),
# SCALE_STARTS (3), LINESD_THREADS (8), LINESD_DB_POOL (8), ROUTERD_THREADS
# (8), ROUTERD_DB_POOL (2), ECHO_THREADS (2), HEARTBEAT_MS (1000),
# PG_SHARED_BUFFERS (1GB), SWEEP_MS (linesd's FRONTDESK_LINESD_SWEEP_MS,
# 10000), SCALE_LOCK (1; 0: the caller holds the lock).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCK=/tmp/fd-bench.lock
# The shared lock for the whole run, unless this process holds it already
# (flock LOCK bench/scale.sh: the descriptor is inherited).
held=0
for f in /proc/$$/fd/*; do [ "$(readlink "$f" 2>/dev/null)" = "$LOCK" ] && held=1; done
if [ "${SCALE_LOCK:-1}" = 1 ] && [ "$held" = 0 ]; then
	echo "# scale.sh: waiting for $LOCK" >&2
	exec flock "$LOCK" "$0" "$@"
fi
BUILD=${BUILD:-${FD_BUILD_DIR:-$ROOT/build}}
SCALE_LINES=${SCALE_LINES:-1000000}
SCALE_LIVE=${SCALE_LIVE:-200000}
SCALE_TENANTS=${SCALE_TENANTS:-10000}
SCALE_TENANT_LINES=${SCALE_TENANT_LINES:-3}
SCALE_NODES=${SCALE_NODES:-1000}
SMALL_LINES=${SMALL_LINES:-100000}
SMALL_LIVE=${SMALL_LIVE:-10000}
SMALL_NODES=${SMALL_NODES:-200}
NEW_LINES=${NEW_LINES:-90000}
REOPEN_LINES=${REOPEN_LINES:-10000}
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
INFLIGHTS=${BENCH_INFLIGHT:-32}
IDLE_S=${SCALE_IDLE_SECONDS:-60}
STARTS=${SCALE_STARTS:-3}
THREADS=${LINESD_THREADS:-8}
POOL=${LINESD_DB_POOL:-8}
RTHREADS=${ROUTERD_THREADS:-8}
RPOOL=${ROUTERD_DB_POOL:-2}
ECHO_THREADS=${ECHO_THREADS:-2}
HB_MS=${HEARTBEAT_MS:-1000}
SHARED_BUFFERS=${PG_SHARED_BUFFERS:-1GB}
SWEEP_MS=${SWEEP_MS:-10000}
LINE_CACHE=${LINE_CACHE:-1100000}
U0=1000000               # the big tenant's usernames: U0 .. U0+lines-1 (lines.sh's)
PASSWORD=bench-line-pw-1 # its lines' password (lines.sh's)
IP=203.0.113.7
UA=bench-player/1.0
SESSION_TIMEOUT=3600     # the live sessions outlive the run (lines.sh's)
WARMUP=1
PY=/usr/bin/python3
LHELPER=$ROOT/bench/lines_setup.py
KHELPER=$ROOT/bench/kickoff_setup.py
HELPER=$ROOT/bench/scale_setup.py
AUTH=/frontdesk.v1.LinesService/AuthorizePlayback
BEAT=/frontdesk.v1.LinesService/SessionHeartbeat

for b in bench/bench_load bench/bench_echo services/authd/authd services/billingd/billingd \
	services/linesd/linesd services/routerd/routerd services/frontdesk/frontdesk; do
	[ -x "$BUILD/$b" ] || { echo "scale.sh: $BUILD/$b missing: build first (scripts/build.sh)" >&2; exit 1; }
done
for v in SCALE_LINES SCALE_LIVE SCALE_NODES SMALL_LINES SMALL_LIVE SMALL_NODES NEW_LINES ROUNDS STARTS; do
	[[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "scale.sh: $v: a whole number, 1 or more" >&2; exit 1; }
done
[[ "$SCALE_TENANTS" =~ ^[0-9]+$ ]] && [[ "$SCALE_TENANT_LINES" =~ ^[1-9][0-9]*$ ]] ||
	{ echo "scale.sh: SCALE_TENANTS, SCALE_TENANT_LINES: whole numbers" >&2; exit 1; }
[[ "$IDLE_S" =~ ^[0-9]+$ ]] && [[ "$SECS" =~ ^[1-9][0-9]*$ ]] ||
	{ echo "scale.sh: SCALE_IDLE_SECONDS, BENCH_SECONDS: whole seconds" >&2; exit 1; }
for k in $INFLIGHTS; do
	[[ "$k" =~ ^[1-9][0-9]*$ ]] && [ "$k" -le 256 ] || { echo "scale.sh: BENCH_INFLIGHT: 1 to 256 each" >&2; exit 1; }
done
for s in SMALL SCALE; do
	l=${s}_LINES; v=${s}_LIVE
	[ "${!v}" -lt "${!l}" ] || { echo "scale.sh: ${s}_LIVE must be below ${s}_LINES (lines left for new sessions)" >&2; exit 1; }
done

top=$(mktemp -d /tmp/fd-bench-scale.XXXXXX)
STACKS="small scale"
declare -A PGPORT PGHOST PGURL PM APW HKEY KEK LSEC ESEC AUTHD BILLINGD ROUTERD LINESD
declare -A NREOPEN PATOK APID BPID RPID KPID LPID NLINES NLIVE NNODES TENANT STREAM TOKEN MAXSID NNEW
echo_pid=
extra_pids=
# Processes started here and not waited for by this shell (linesd replicas
# started by scale_setup.py startup): stopped by pid, then waited for.
stop_pid() {
	local p=$1 i
	kill "$p" 2>/dev/null || return 0
	for i in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
	kill -9 "$p" 2>/dev/null || true
}
cleanup() {
	set +e
	[ -n "$echo_pid" ] && { kill "$echo_pid" 2>/dev/null; wait "$echo_pid" 2>/dev/null; }
	for p in $extra_pids; do stop_pid "$p"; done
	for s in $STACKS; do
		for p in ${LPID[$s]:-} ${KPID[$s]:-} ${RPID[$s]:-} ${BPID[$s]:-} ${APID[$s]:-}; do
			stop_pid "$p"
			wait "$p" 2>/dev/null
		done
		"$ROOT/scripts/pg.sh" stop "$top/$s/pg"
	done
	rm -rf "$top"
}
trap cleanup EXIT
trap 'echo "scale.sh: stopped by a signal (INT or TERM)" >&2; exit 130' INT TERM

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
out=$top/out
psql_s() { local s=$1; shift; psql -X -q -v ON_ERROR_STOP=1 -h "${PGHOST[$s]}" -p "${PGPORT[$s]}" -U postgres -d frontdesk "$@"; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
logs() { # STACK
	for f in authd billingd routerd linesd; do echo "--- $1's $f log" >&2; tail -15 "$top/$1/$f.log" >&2; done
}

# --- a stack: PostgreSQL, authd, billingd, routerd (its nodes UP), linesd ---
stack_up() { # STACK NODES
	local s=$1 nodes=$2 d=$top/$1 tmp
	mkdir -p "$d"
	tmp=$d
	bench_platform
	PGPORT[$s]=$pg_port PGHOST[$s]=$pg_host PGURL[$s]=$pg_url APW[$s]=$admin_pw NNODES[$s]=$nodes
	# Both stacks alike: buffers to hold the scale data, pg_stat_statements
	# loaded (tracking off but for the idle windows).
	printf '%s\n' "shared_buffers = '$SHARED_BUFFERS'" "shared_preload_libraries = 'pg_stat_statements'" \
		"pg_stat_statements.track = 'none'" "pg_stat_statements.max = 10000" >>"$d/pg/data/postgresql.conf"
	"$ROOT/scripts/pg.sh" stop "$d/pg"
	"$ROOT/scripts/pg.sh" start "$d/pg" "$pg_port"
	psql_s "$s" -c "CREATE EXTENSION pg_stat_statements"
	PM[$s]=$(head -1 "$d/pg/data/postmaster.pid")
	HKEY[$s]=$(openssl rand -hex 32) KEK[$s]=$(openssl rand -hex 32)
	LSEC[$s]=$(openssl rand -hex 24) ESEC[$s]=$(openssl rand -hex 24)
	AUTHD[$s]=127.0.0.1:$(port)
	env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_AUTHD_LISTEN="${AUTHD[$s]}" FRONTDESK_AUTHD_THREADS=2 \
		FRONTDESK_SECRET_HASH_KEY="${HKEY[$s]}" FRONTDESK_KEY_ENCRYPTION_KEY="$(openssl rand -hex 32)" \
		FRONTDESK_SERVICE_SECRETS="linesd=${LSEC[$s]},edged=${ESEC[$s]}" \
		FRONTDESK_PWHASH_OPSLIMIT=1 FRONTDESK_PWHASH_MEMLIMIT_KIB=8192 FRONTDESK_PWHASH_CONCURRENCY=1 \
		FRONTDESK_SHUTDOWN_GRACE_MS=1000 FRONTDESK_LOG_LEVEL=warn \
		"$BUILD/services/authd/authd" >"$d/authd.log" 2>&1 &
	APID[$s]=$!
	BILLINGD[$s]=127.0.0.1:$(port)
	env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_BILLINGD_LISTEN="${BILLINGD[$s]}" FRONTDESK_BILLINGD_THREADS=2 \
		FRONTDESK_BILLINGD_DB_POOL=2 FRONTDESK_SECRET_HASH_KEY="${HKEY[$s]}" FRONTDESK_SHUTDOWN_GRACE_MS=1000 \
		FRONTDESK_LOG_LEVEL=warn "$BUILD/services/billingd/billingd" >"$d/billingd.log" 2>&1 &
	BPID[$s]=$!
	ROUTERD[$s]=127.0.0.1:$(port)
	env FRONTDESK_DATABASE_URL="$pg_url" FRONTDESK_ROUTERD_LISTEN="${ROUTERD[$s]}" \
		FRONTDESK_ROUTERD_THREADS="$RTHREADS" FRONTDESK_ROUTERD_DB_POOL="$RPOOL" \
		FRONTDESK_SECRET_HASH_KEY="${HKEY[$s]}" FRONTDESK_NODE_HEARTBEAT_MS="$HB_MS" \
		FRONTDESK_SHUTDOWN_GRACE_MS=1000 FRONTDESK_LOG_LEVEL=warn \
		"$BUILD/services/routerd/routerd" >"$d/routerd.log" 2>&1 &
	RPID[$s]=$!
	"$PY" "$LHELPER" wait "${ROUTERD[$s]}" || { logs "$s"; exit 1; }
	pa_token=''
	eval "$("$PY" "$LHELPER" nodes "${AUTHD[$s]}" "${ROUTERD[$s]}" "$admin_pw" "$nodes" "$d")" || { logs "$s"; exit 1; }
	PATOK[$s]=$pa_token
	# The keeper: each node's Heartbeat once an interval until killed (or a
	# generous bound).
	"$BUILD/bench/bench_load" --target "${ROUTERD[$s]}" --method /frontdesk.v1.RoutingService/Heartbeat \
		--case keeper --inflight 32 --conns 2 --seconds 3600 --warmup 0 --rate "$(( nodes * 1000 / HB_MS ))" \
		--payload-file "$d/nodebeat.hex" --token-file "$d/nodes.keys" >"$d/keeper.log" 2>&1 &
	KPID[$s]=$!
	LINESD[$s]=127.0.0.1:$(port)
	linesd_env "$s" "${LINESD[$s]}"
	env "${LENV[@]}" "$BUILD/services/linesd/linesd" >"$d/linesd.log" 2>&1 &
	LPID[$s]=$!
	for t in "${BILLINGD[$s]}" "${LINESD[$s]}"; do "$PY" "$LHELPER" wait "$t" || { logs "$s"; exit 1; }; done
}

# linesd's environment (LENV) for STACK, listening on ADDR.
linesd_env() { # STACK ADDR
	local s=$1
	LENV=(FRONTDESK_DATABASE_URL="${PGURL[$s]}" FRONTDESK_LINESD_LISTEN="$2"
		FRONTDESK_LINESD_THREADS="$THREADS" FRONTDESK_LINESD_DB_POOL="$POOL"
		FRONTDESK_SECRET_HASH_KEY="${HKEY[$s]}" FRONTDESK_KEY_ENCRYPTION_KEY="${KEK[$s]}"
		FRONTDESK_LINESD_SERVICE_SECRET="${LSEC[$s]}" FRONTDESK_AUTHD_TARGET="${AUTHD[$s]}"
		FRONTDESK_BILLINGD_TARGET="${BILLINGD[$s]}" FRONTDESK_ROUTERD_TARGET="${ROUTERD[$s]}"
		FRONTDESK_SESSION_TIMEOUT="$SESSION_TIMEOUT" FRONTDESK_LINESD_SWEEP_MS="$SWEEP_MS"
		FRONTDESK_LINESD_LINE_CACHE="$LINE_CACHE" FRONTDESK_SHUTDOWN_GRACE_MS=1000 FRONTDESK_LOG_LEVEL=info)
}

# A fresh edge token for STACK (shown to its linesd once): TOKEN[STACK] and $top/STACK/token.
fresh_token() { # STACK
	local s=$1 token=''
	eval "$("$PY" "$LHELPER" token "${AUTHD[$s]}" "${ESEC[$s]}" "${LINESD[$s]}" "${TENANT[$s]}")" || { logs "$s"; exit 1; }
	TOKEN[$s]=$token
	echo "$token" >"$top/$s/token"
}

# --- the data ---
# STACK's big tenant: its first line through the API (lines_setup.py), the
# other LINES-1 its copies in SQL (as lines.sh); LIVE sessions on the first
# LIVE lines; the payloads.
data_big() { # STACK LINES LIVE
	local s=$1 n=$2 live=$3 d=$top/$1 t0
	NLINES[$s]=$n NLIVE[$s]=$live
	tenant='' admin_token='' reseller='' package='' stream='' template=''
	eval "$("$PY" "$LHELPER" setup "${AUTHD[$s]}" "${LINESD[$s]}" "${APW[$s]}" "$U0" 1 "$PASSWORD")" || { logs "$s"; exit 1; }
	TENANT[$s]=$tenant STREAM[$s]=$stream
	local pwh want
	pwh=$(psql_s "$s" -tA -c "SELECT encode(password_hash, 'hex') FROM frontdesk.lines WHERE id = $template")
	want=$("$PY" "$LHELPER" pwhash "${HKEY[$s]}" "$tenant" "$PASSWORD")
	[ "$pwh" = "$want" ] || { echo "scale.sh: linesd's password hash $pwh, computed $want" >&2; exit 1; }
	t0=$(date +%s%N)
	psql_s "$s" -v t="$tenant" -v tpl="$template" -v u0="$U0" -v n="$n" <<'SQL'
BEGIN;
SELECT set_config('frontdesk.tenant_id', :'t', true) \g /dev/null
SET LOCAL synchronous_commit = off;
INSERT INTO frontdesk.lines (tenant_id, reseller_id, reseller_path, username, password_hash, password_box,
    package_id, state, expires_at, max_connections, bouquet_ids, allowed_ips, allowed_user_agents,
    output_formats, bandwidth_cap_kbps, trial, notes)
  SELECT l.tenant_id, l.reseller_id, l.reseller_path, (:u0 + i)::text, l.password_hash, l.password_box,
         l.package_id, l.state, l.expires_at, l.max_connections, l.bouquet_ids, l.allowed_ips,
         l.allowed_user_agents, l.output_formats, l.bandwidth_cap_kbps, l.trial, 'bench'
    FROM frontdesk.lines l, generate_series(1, :n - 1) i
   WHERE l.tenant_id = :t AND l.id = :tpl ORDER BY i;
COMMIT;
SQL
	echo "# $s: $n lines of tenant $tenant in $(ms_since "$t0") ms"
	sessions_sql "$s" "$tenant" "$stream" "$U0" "$live"
	echo "# $s: $live live sessions in $(ms_since "$t0") ms (lines and sessions)"
	# The payloads: the live sessions' heartbeats (by username) and their
	# own requests again (reopen), one of them for the start-up probe; the
	# new sessions' lines spread over the lines without a session.
	psql_s "$s" -tA -v t="$tenant" >"$d/live.ids" <<<"SELECT s.id FROM frontdesk.sessions s JOIN frontdesk.lines l
		ON l.tenant_id = s.tenant_id AND l.id = s.line_id WHERE s.tenant_id = :t AND s.ended_at IS NULL
		ORDER BY l.username::bigint"
	[ "$(wc -l <"$d/live.ids")" = "$live" ] || { echo "scale.sh: $s: $(wc -l <"$d/live.ids") live sessions, want $live" >&2; exit 1; }
	MAXSID[$s]=$(sort -n "$d/live.ids" | tail -1)
	"$PY" "$HELPER" beats "$d/beat.hex" "$tenant" "$d/live.ids"
	NREOPEN[$s]=$(( REOPEN_LINES < live ? REOPEN_LINES : live ))
	seq "$U0" $((U0 + NREOPEN[$s] - 1)) >"$d/live.users"
	"$PY" "$HELPER" authreqs "$d/reopen.hex" "$tenant" "$stream" "$PASSWORD" "$IP" "$UA" "$d/live.users"
	head -1 "$d/reopen.hex" >"$d/first.hex"
	local fresh=$((n - live)) nn stride
	nn=$(( NEW_LINES < fresh ? NEW_LINES : fresh ))
	stride=$(( fresh / nn ))
	NNEW[$s]=$nn
	seq 0 $((nn - 1)) | awk -v b=$((U0 + live)) -v st="$stride" '{ print b + $1 * st }' >"$d/new.users"
	echo "# $s: new sessions on $nn lines (every ${stride}th line without a session)"
}

# LIVE live sessions of TENANT on its lines U0.. U0+LIVE-1, as open_session
# writes them (stream, the client's address, player and format, a node of
# the client's region, as Route would name), and linesd.session_timeout
# due at once in the tenant (as AuthorizePlayback's sessions_started makes
# it: the janitor then keeps it due while sessions are live).
sessions_sql() { # STACK TENANT STREAM U0 LIVE
	psql_s "$1" -v t="$2" -v st="$3" -v u0="$4" -v n="$5" -v ip="$IP" -v ua="$UA" <<'SQL'
BEGIN;
SELECT set_config('frontdesk.tenant_id', :'t', true) \g /dev/null
SET LOCAL synchronous_commit = off;
-- lines_setup.py: clients' countries GB, DE, US, IN by username mod 4, the
-- nodes' regions in the same order.
CREATE TEMP TABLE rnodes ON COMMIT DROP AS
  SELECT array_position(ARRAY['eu-west', 'eu-central', 'us-east', 'ap-south'], region) - 1 AS r,
         array_agg(id ORDER BY id) AS ids
    FROM frontdesk.nodes WHERE tenant_id = 0 AND region IN ('eu-west', 'eu-central', 'us-east', 'ap-south')
   GROUP BY region;
INSERT INTO frontdesk.sessions (tenant_id, line_id, stream_id, node_id, client_ip, user_agent, output_format)
  SELECT l.tenant_id, l.id, :st, n.ids[1 + (l.username::bigint / 4) % cardinality(n.ids)], :'ip', :'ua', 1
    FROM frontdesk.lines l JOIN rnodes n ON n.r = l.username::bigint % 4
   WHERE l.tenant_id = :t AND l.username ~ '^[0-9]+$' AND l.username::bigint >= :u0 AND l.username::bigint < :u0 + :n
   ORDER BY l.username::bigint;
INSERT INTO frontdesk.tenant_jobs AS j (job, tenant, due_at, gen) VALUES ('linesd.session_timeout', :t, now(), 1)
  ON CONFLICT (job, tenant) DO UPDATE SET due_at = least(j.due_at, excluded.due_at), gen = j.gen + 1;
COMMIT;
ANALYZE frontdesk.lines;
VACUUM ANALYZE frontdesk.sessions;
SQL
}

# The scale stack's small tenants: the template (kickoff_setup.py tenants:
# a tenant, its admin and reseller, a catalog of 5 streams, a bouquet, a
# package, one line through CreateLine), then COUNT-1 clones of it in SQL,
# each with PER lines (copies of its first line under the template's
# usernames, the password hash the clone's own).
data_tenants() { # STACK COUNT PER
	local s=$1 count=$2 per=$3 d=$top/$1 t0 tpl_t tpl_l u0 pw streams
	t0=$(date +%s%N)
	"$PY" "$KHELPER" tenants "${AUTHD[$s]}" "${LINESD[$s]}" "${APW[$s]}" "$d" 1 || { logs "$s"; exit 1; }
	read -r tpl_t tpl_l u0 _ pw streams <"$d/tenants.txt"
	psql_s "$s" -v tpl="$tpl_t" -v nt="$count" <<'SQL'
BEGIN;
SET LOCAL synchronous_commit = off;
CREATE TABLE public.scale_clones AS
  WITH t AS (INSERT INTO frontdesk.tenants (slug, name)
             SELECT 'scale-' || i, 'Scale ' || i FROM generate_series(2, :nt) i RETURNING id)
  SELECT id FROM t;
-- The template's tenant admin and reseller (same ids in each tenant: ids
-- are per tenant, as the paths that hold them).
INSERT INTO frontdesk.accounts (tenant_id, id, parent_id, path, role, username, display_name, password_hash,
    status, permissions, notes)
  SELECT c.id, a.id, a.parent_id, a.path, a.role, a.username, a.display_name, a.password_hash, a.status,
         a.permissions, a.notes
    FROM frontdesk.accounts a, public.scale_clones c WHERE a.tenant_id = :tpl ORDER BY c.id, a.path;
-- The catalog (its triggers make the categories and catalog versions).
INSERT INTO frontdesk.streams (tenant_id, id, name, kind, category, number, logo_url, epg_channel, disabled)
  SELECT c.id, s.id, s.name, s.kind, s.category, s.number, s.logo_url, s.epg_channel, s.disabled
    FROM frontdesk.streams s, public.scale_clones c WHERE s.tenant_id = :tpl ORDER BY c.id, s.id;
INSERT INTO frontdesk.bouquets (tenant_id, id, name, stream_ids) OVERRIDING SYSTEM VALUE
  SELECT c.id, b.id, b.name, b.stream_ids FROM frontdesk.bouquets b, public.scale_clones c WHERE b.tenant_id = :tpl;
INSERT INTO frontdesk.packages (tenant_id, id, name, duration_days, duration_hours, credit_cost, max_connections,
    bouquet_ids, trial, output_formats, bandwidth_cap_kbps, disabled) OVERRIDING SYSTEM VALUE
  SELECT c.id, p.id, p.name, p.duration_days, p.duration_hours, p.credit_cost, p.max_connections, p.bouquet_ids,
         p.trial, p.output_formats, p.bandwidth_cap_kbps, p.disabled
    FROM frontdesk.packages p, public.scale_clones c WHERE p.tenant_id = :tpl;
-- What the services scheduled for the template (its first line's expiry, ...).
INSERT INTO frontdesk.tenant_jobs (job, tenant, due_at, gen)
  SELECT j.job, c.id, j.due_at, 1 FROM frontdesk.tenant_jobs j, public.scale_clones c WHERE j.tenant = :tpl;
COMMIT;
SQL
	psql_s "$s" -tA -c "SELECT id FROM public.scale_clones ORDER BY id" >"$d/clones.txt"
	"$PY" "$HELPER" pwhashes "${HKEY[$s]}" "$pw" "$d/clones.txt" "$d/clones.pwh"
	psql_s "$s" -v tpl="$tpl_t" -v tl="$tpl_l" -v u0="$u0" -v per="$per" -v f="$d/clones.pwh" <<'SQL'
BEGIN;
SET LOCAL synchronous_commit = off;
CREATE TEMP TABLE pwh (tenant bigint PRIMARY KEY, h bytea NOT NULL) ON COMMIT DROP;
\set copy '\\copy pwh FROM ' :'f'
:copy
-- The template's other lines, then every clone's (its first included).
INSERT INTO frontdesk.lines (tenant_id, reseller_id, reseller_path, username, password_hash, password_box,
    package_id, state, expires_at, max_connections, bouquet_ids, allowed_ips, allowed_user_agents,
    output_formats, bandwidth_cap_kbps, trial, notes)
  SELECT t.tenant, l.reseller_id, l.reseller_path, (:u0 + i)::text, coalesce(h.h, l.password_hash),
         l.password_box, l.package_id, l.state, l.expires_at, l.max_connections, l.bouquet_ids, l.allowed_ips,
         l.allowed_user_agents, l.output_formats, l.bandwidth_cap_kbps, l.trial, 'scale'
    FROM frontdesk.lines l,
         (SELECT :tpl::bigint AS tenant, 1 AS first UNION ALL SELECT id, 0 FROM public.scale_clones) t
         LEFT JOIN pwh h ON h.tenant = t.tenant,
         generate_series(t.first, :per - 1) i
   WHERE l.tenant_id = :tpl AND l.id = :tl
   ORDER BY t.tenant, i;
COMMIT;
ANALYZE frontdesk.lines;
ANALYZE frontdesk.accounts;
ANALYZE frontdesk.tenants;
SQL
	# Every tenant table: the template's rows beside the first clone's.
	psql_s "$s" -tA -F ' ' -v tpl="$tpl_t" -v c1="$(head -1 "$d/clones.txt")" <<'SQL' | paste -sd' ' | sed 's/^/# template tenant vs first clone (rows): /'
SELECT string_agg(format('SELECT %L || ''='' || count(*) FILTER (WHERE %I = %s) || ''/'' || count(*) FILTER (WHERE %I = %s)'
                         ' FROM %s HAVING count(*) FILTER (WHERE %I = %s) > 0',
                         c.relname, a.attname, :tpl, a.attname, :c1, c.oid::regclass, a.attname, :tpl), ' UNION ALL ')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname IN ('tenant_id', 'tenant') AND NOT a.attisdropped
 WHERE n.nspname = 'frontdesk' AND c.relkind IN ('r', 'p') AND NOT c.relispartition \gexec
SQL
	local got
	got=$(psql_s "$s" -tA -v tpl="$tpl_t" <<<"SELECT count(DISTINCT tenant_id) || ' ' || count(*) FROM frontdesk.lines
		WHERE tenant_id = :tpl OR tenant_id IN (SELECT id FROM public.scale_clones)")
	[ "$got" = "$count $((count * per))" ] || { echo "scale.sh: small tenants: $got (tenants lines), want $count $((count * per))" >&2; exit 1; }
	echo "# $s: $count small tenants (1 through the API, $((count - 1)) clones in SQL), $per lines each," \
		"in $(ms_since "$t0") ms"
	SMALLT_U0=$u0 SMALLT_PW=$pw SMALLT_STREAM=${streams%%,*} SMALLT_TPL=$tpl_t
}

# The new-session requests of STACK's lines without a session, from a player
# of TAG's own (its user agent): a new session each, never the request that
# opened one before (which linesd answers from memory as a reopen).
new_payloads() { # STACK TAG
	"$PY" "$HELPER" authreqs "$top/$1/new.hex" "${TENANT[$1]}" "${STREAM[$1]}" "$PASSWORD" "$IP" "$UA $2" "$top/$1/new.users"
}

# --- the load, as lines.sh measures it ---
conns_for() { if [ "$1" -le 1 ]; then echo 1; elif [ "$1" -le 16 ]; then echo $(( ($1 + 1) / 2 )); else echo 8; fi; }
bl() { # CASE TARGET METHOD PAYLOADS K TOKEN [more options] -> BL
	local name=$1 target=$2 method=$3 file=$4 k=$5 tok=$6
	shift 6
	BL=("$BUILD/bench/bench_load" --target "$target" --method "$method" --case "$name" --inflight "$k"
		--conns "$(conns_for "$k")" --seconds "$SECS" --warmup "$WARMUP"
		--metadata "authorization=Bearer $tok" --payload-file "$file" "$@")
}
measure() { # CASE STACK SERVER_PID -- COMMAND...
	local name=$1 s=$2 server=$3
	shift 3
	"$PY" "$LHELPER" measure "$name" "${RPID[$s]}" -- "$PY" "$ROOT/bench/measure.py" "$name" "$server" \
		"${PM[$s]}" "$WARMUP" "$SECS" --keeper "${KPID[$s]}" "$@" | tee -a "$out"
}
# The answers of a run (bench_load's fields line): "total ok f1 f5 node".
answers() { # CASE
	awk -v c="$1" '$1 == "fields" && $2 == c { t = o = a = r = nd = 0
		for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "total") t = kv[2]; if (kv[1] == "ok") o = kv[2]
			if (kv[1] == "f1") a = kv[2]; if (kv[1] == "f5") r = kv[2]; if (kv[1] == "f8" || kv[1] == "f3") nd = kv[2] }
		last = t " " o " " a " " r " " nd } END { print last }' "$out"
}
check_answers() { # CASE LABEL [reused]
	local t o a r nd want_r=0
	read -r t o a r nd <<<"$(answers "$1")"
	[ "${3:-}" = reused ] && want_r=$a
	if [ "$t" = "$o" ] && [ "$o" = "$a" ] && [ "${r:-0}" = "$want_r" ] && [ "$nd" = "$a" ] && [ "$t" -gt 0 ]; then
		echo "answers $2 ok ($t calls, all OK and true$([ "$want_r" != 0 ] && echo ", all reused"), each naming a node)" | tee -a "$out"
	else
		echo "answers $2 VIOLATIONS: $t calls, $o OK, $a allowed/active, ${r:-0} reused sessions, ${nd:-0} naming a node" | tee -a "$out"
	fi
}
# After an authorization run: one new session per allowed call (ids above
# the live ones'), each on its own line, none ended, each with a node; the
# live sessions untouched. Then the new ones go and the table is vacuumed.
audit_new() { # STACK LABEL WANT
	local s=$1
	psql_s "$s" -tA -v t="${TENANT[$s]}" -v m="${MAXSID[$s]}" -v want="$3" -v label="$2" -v nlive="${NLIVE[$s]}" \
		-v nnew="${NNEW[$s]:-0}" <<'SQL' | tee -a "$out"
WITH n AS (SELECT count(*) AS rows, count(DISTINCT line_id) AS lines, count(*) FILTER (WHERE ended_at IS NOT NULL) AS ended,
                  count(*) FILTER (WHERE node_id = 0) AS unrouted
             FROM frontdesk.sessions WHERE tenant_id = :t AND id > :m),
     l AS (SELECT count(*) AS live FROM frontdesk.sessions WHERE tenant_id = :t AND id <= :m AND ended_at IS NULL)
SELECT 'audit ' || :'label' || ' ' ||
       CASE WHEN rows = :want AND lines = rows AND ended = 0 AND unrouted = 0 AND live = :nlive THEN 'ok'
            ELSE 'VIOLATIONS: ' || concat_ws('; ',
                   CASE WHEN rows <> :want THEN rows || ' new session rows for ' || :want || ' allowed calls'
                        || CASE WHEN :want > :nnew THEN ' (more calls than the ' || :nnew
                                || ' lines of the new-session payloads: raise NEW_LINES or lower BENCH_SECONDS)' END END,
                   CASE WHEN lines <> rows THEN rows || ' new sessions on ' || lines || ' lines' END,
                   CASE WHEN ended <> 0 THEN ended || ' new sessions ended' END,
                   CASE WHEN unrouted <> 0 THEN unrouted || ' new sessions without a node' END,
                   CASE WHEN live <> :nlive THEN live || ' live sessions, want ' || :nlive END) END
       || ' (new sessions: ' || rows || ')'
  FROM n, l;
DELETE FROM frontdesk.sessions WHERE tenant_id = :t AND id > :m;
SQL
	psql_s "$s" -c "VACUUM ANALYZE frontdesk.sessions"
}
# After a heartbeat run and a flush: the live sessions all live, and the
# ones the run reached (the first min(calls, live) in payload order) written
# since it started.
audit_beat() { # STACK LABEL SINCE CALLS
	local s=$1 want
	want=$(( $4 < NLIVE[$s] ? $4 : NLIVE[$s] ))
	sleep 1.5
	psql_s "$s" -tA -v t="${TENANT[$s]}" -v m="${MAXSID[$s]}" -v since="$3" -v label="$2" -v nlive="${NLIVE[$s]}" \
		-v want="$want" <<'SQL' | tee -a "$out"
WITH s AS (SELECT count(*) FILTER (WHERE ended_at IS NULL) AS live,
                  count(*) FILTER (WHERE ended_at IS NULL AND last_seen_at >= to_timestamp(:since)) AS seen
             FROM frontdesk.sessions WHERE tenant_id = :t AND id <= :m)
SELECT 'audit ' || :'label' || ' ' ||
       CASE WHEN live = :nlive AND seen >= :want THEN 'ok'
            ELSE 'VIOLATIONS: ' || live || ' live sessions (want ' || :nlive || '), ' || seen
                 || ' with a heartbeat written since the run started (want ' || :want || ')' END
  FROM s;
SQL
}

run_echo() { # K ROUND
	bl "echo_inflight$1" "$echo_target" "$BEAT" "$top/small/beat.hex" "$1" "${TOKEN[small]}" --count-field 1
	measure "echo_inflight$1" small "$echo_pid" -- "${BL[@]}"
}
run_new() { # STACK K ROUND
	local s=$1 name=${1}_new_inflight$2
	bl "$name" "${LINESD[$s]}" "$AUTH" "$top/$s/new.hex" "$2" "${TOKEN[$s]}" --count-field 1 --count-field 5 --count-field 8
	measure "$name" "$s" "${LPID[$s]}" -- "${BL[@]}"
	check_answers "$name" "$name-round$3"
	audit_new "$s" "$name-round$3" "$(answers "$name" | awk '{ print $3 }')"
}
run_reopen() { # STACK K ROUND
	local s=$1 name=${1}_reopen_inflight$2
	bl "$name" "${LINESD[$s]}" "$AUTH" "$top/$s/reopen.hex" "$2" "${TOKEN[$s]}" --count-field 1 --count-field 5 --count-field 8
	measure "$name" "$s" "${LPID[$s]}" -- "${BL[@]}"
	check_answers "$name" "$name-round$3" reused
	audit_new "$s" "$name-round$3" 0
}
run_beat() { # STACK K ROUND
	local s=$1 name=${1}_beat_inflight$2 since
	since=$(date +%s)
	bl "$name" "${LINESD[$s]}" "$BEAT" "$top/$s/beat.hex" "$2" "${TOKEN[$s]}" --count-field 1 --count-field 3
	measure "$name" "$s" "${LPID[$s]}" -- "${BL[@]}"
	check_answers "$name" "$name-round$3"
	audit_beat "$s" "$name-round$3" "$since" "$(answers "$name" | awk '{ print $1 }')"
}

# Every payload of FILE sent once at least (bench_load runs, each from the
# first payload again, until one has sent them all): fills linesd's caches.
warm() { # STACK CASE METHOD FILE N [fields...]
	local s=$1 name=$2 method=$3 file=$4 n=$5 secs t
	shift 5
	secs=$(( n / 6000 + 2 ))
	while :; do
		"$BUILD/bench/bench_load" --target "${LINESD[$s]}" --method "$method" --case "$name" --inflight 64 --conns 8 \
			--seconds "$secs" --warmup 0 --metadata "authorization=Bearer ${TOKEN[$s]}" --payload-file "$file" \
			"$@" >"$top/$s/warm.out" 2>"$top/$s/warm.err" || { cat "$top/$s/warm.err" >&2; exit 1; }
		read -r t _ <<<"$(awk '$1 == "fields" { for (i = 3; i <= NF; i++) { split($i, kv, "=")
			if (kv[1] == "total") t = kv[2]; if (kv[1] == "ok") o = kv[2]; if (kv[1] == "f1") a = kv[2] } }
			END { print t + 0, o + 0, a + 0 }' "$top/$s/warm.out")"
		grep -q "^fields $name total=$t ok=$t f1=$t" "$top/$s/warm.out" ||
			{ echo "scale.sh: $s: warm-up $name: not every call OK and allowed/active:" >&2; cat "$top/$s/warm.out" "$top/$s/warm.err" >&2; exit 1; }
		[ "$t" -ge "$n" ] && break
		# Again from the first payload: what was sent is answered from memory
		# now (counted at 4 times the rate seen), the rest at the rate seen.
		secs=$(( (n - t) * secs * 13 / (10 * t + 1) + t * secs / (4 * t + 1) + 2 ))
	done
	echo "$t"
}

# ======================================================================
t_all=$(date +%s%N)
echo "=== scale.sh: small ($SMALL_LINES lines, $SMALL_LIVE live sessions, 1 tenant, $SMALL_NODES nodes) beside" \
	"scale ($SCALE_LINES lines and $SCALE_LIVE live sessions in one tenant, $SCALE_TENANTS more tenants of" \
	"$SCALE_TENANT_LINES lines, $SCALE_NODES nodes); linesd threads $THREADS pool $POOL, routerd threads $RTHREADS;" \
	"$(nproc) CPUs shared by all"
for s in $STACKS; do
	t0=$(date +%s%N)
	n=$([ "$s" = small ] && echo "$SMALL_NODES" || echo "$SCALE_NODES")
	stack_up "$s" "$n"
	echo "# $s: PostgreSQL, authd, billingd, routerd with $n nodes UP, linesd in $(ms_since "$t0") ms"
done
data_big small "$SMALL_LINES" "$SMALL_LIVE"
data_big scale "$SCALE_LINES" "$SCALE_LIVE"
[ "$SCALE_TENANTS" -gt 0 ] && data_tenants scale "$SCALE_TENANTS" "$SCALE_TENANT_LINES"
for s in $STACKS; do
	psql_s "$s" -tA -v s="$s" <<<"CHECKPOINT; SELECT '# ' || :'s' || ': database ' || pg_size_pretty(pg_database_size('frontdesk'))
		|| ', lines ' || (SELECT count(*) FROM frontdesk.lines) || ', tenants ' || (SELECT count(*) FROM frontdesk.tenants)
		|| ', live sessions ' || (SELECT count(*) FROM frontdesk.sessions WHERE ended_at IS NULL)
		|| ', nodes ' || (SELECT count(*) FROM frontdesk.nodes)"
done
echo "# data made in $(ms_since "$t_all") ms"
[ "${SCALE_STOP_AFTER:-}" = data ] && exit 0

# --- linesd restarted on the data: start-up, then the caches filled (memory) ---
# STACK's linesd (or a replica beside it, on ADDR) started and timed by
# scale_setup.py startup (ENV... added to linesd's): prints `pid=
# listen_ms= ready_ms= first_auth_ms= rss_kb= preload_lines= ...`.
start_linesd() { # STACK ADDR LOG [ENV...]
	local s=$1 addr=$2 log=$3
	shift 3
	linesd_env "$s" "$addr"
	env "${LENV[@]}" "$@" "$PY" "$HELPER" startup "$addr" "$top/$s/token" "$top/$s/first.hex" "$log" -- \
		"$BUILD/services/linesd/linesd"
}
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
declare -A RNC RPRE NPRE
for s in $STACKS; do
	fresh_token "$s"
	stop_pid "${LPID[$s]}"
	wait "${LPID[$s]}" 2>/dev/null || true
	LPID[$s]=
	# First without a line cache (no preload): the baseline of the memory a
	# replica takes before any line is kept.
	res=$(start_linesd "$s" "${LINESD[$s]}" "$top/$s/linesd.log" FRONTDESK_LINESD_LINE_CACHE=0) || { logs "$s"; exit 1; }
	pid=$(kv pid "$res")
	echo "startup $s nocache $res" | tee -a "$out"
	RNC[$s]=$(kv rss_kb "$res")
	stop_pid "$pid"
	# Then as deployed: the preload reads every line that can be allowed.
	res=$(start_linesd "$s" "${LINESD[$s]}" "$top/$s/linesd.log") || { logs "$s"; exit 1; }
	LPID[$s]=$(kv pid "$res")
	echo "startup $s restart $res" | tee -a "$out"
	RPRE[$s]=$(kv rss_preloaded_kb "$res") NPRE[$s]=$(kv preload_lines "$res")
	fresh_token "$s"
done
for s in $STACKS; do
	# Every thread and connection at work once (one line reopened over and
	# over), so the baseline holds what serving costs before the sessions.
	"$BUILD/bench/bench_load" --target "${LINESD[$s]}" --method "$AUTH" --case prime --inflight 64 --conns 8 \
		--seconds 2 --warmup 0 --metadata "authorization=Bearer ${TOKEN[$s]}" --payload-file "$top/$s/first.hex" \
		>/dev/null 2>&1 || true
	sleep 2     # a heartbeat flush, a janitor pass
	r0=$(rss "${LPID[$s]}")
	t0=$(date +%s%N)
	nb=$(warm "$s" warm_beat "$BEAT" "$top/$s/beat.hex" "${NLIVE[$s]}" --count-field 1)
	sleep 1.5   # a heartbeat flush
	r1=$(rss "${LPID[$s]}")
	echo "# $s: heartbeat cache filled: $nb heartbeats in $(ms_since "$t0") ms (each live session read from PostgreSQL once)"
	t0=$(date +%s%N)
	nr=$(warm "$s" warm_reopen "$AUTH" "$top/$s/reopen.hex" "${NREOPEN[$s]}" --count-field 1 --count-field 5)
	sleep 1.5
	r2=$(rss "${LPID[$s]}")
	echo "# $s: the reopen runs' lines: $nr reopens in $(ms_since "$t0") ms"
	audit_new "$s" "warm-reopen-$s" 0
	t0=$(date +%s%N)
	new_payloads "$s" warm
	nw=$(warm "$s" warm_new "$AUTH" "$top/$s/new.hex" "${NNEW[$s]}" --count-field 1)
	sleep 1.5
	r3=$(rss "${LPID[$s]}")
	echo "# $s: the new-session runs' lines: $nw authorizations in $(ms_since "$t0") ms"
	psql_s "$s" -tA -v t="${TENANT[$s]}" -v m="${MAXSID[$s]}" <<<"DELETE FROM frontdesk.sessions WHERE tenant_id = :t AND id > :m"
	psql_s "$s" -c "VACUUM ANALYZE frontdesk.sessions"
	pl=-
	[[ "${NPRE[$s]}" =~ ^[1-9][0-9]*$ ]] && pl=$(( (RPRE[$s] - RNC[$s]) * 1024 / NPRE[$s] ))
	echo "memory $s nocache_kb=${RNC[$s]} preloaded_kb=${RPRE[$s]} preloaded_lines=${NPRE[$s]} per_line_b=$pl" \
		"rss0_kb=$r0 sessions=${NLIVE[$s]} rss_sessions_kb=$r1 per_session_b=$(( (r1 - r0) * 1024 / NLIVE[$s] ))" \
		"reopens=${NREOPEN[$s]} rss_reopen_kb=$r2 new=${NNEW[$s]} rss_new_kb=$r3" \
		"per_new_session_b=$(( (r3 - r2) * 1024 / NNEW[$s] ))" | tee -a "$out"
done

# --- the rates, interleaved ---
echo_target=127.0.0.1:$(port)
"$BUILD/bench/bench_echo" --listen "$echo_target" --threads "$ECHO_THREADS" --method "$BEAT" >"$top/echo.log" 2>&1 &
echo_pid=$!
sleep 0.5
echo "=== rates: $ROUNDS rounds of ${SECS}s a case (+${WARMUP}s warm-up) at in-flight $INFLIGHTS"
for r in $(seq "$ROUNDS"); do
	for s in $STACKS; do fresh_token "$s"; new_payloads "$s" "round$r"; done
	cases=(echo "new small" "new scale" "reopen small" "reopen scale" "beat small" "beat scale")
	n=${#cases[@]}
	for k in $INFLIGHTS; do
		for i in $(seq 0 $((n - 1))); do
			read -r c st <<<"${cases[$(( (i + r + k) % n ))]}"
			if [ "$c" = echo ]; then run_echo "$k" "$r"; else "run_$c" "$st" "$k" "$r"; fi
		done
	done
done
kill "$echo_pid" 2>/dev/null || true
wait "$echo_pid" 2>/dev/null || true
echo_pid=

# --- idle: what the janitor and the rest cost when nothing is due ---
stack_arg() { echo "$1:${PGHOST[$1]}:${PGPORT[$1]}:${PM[$1]}:${LPID[$1]}"; }
if [ "$IDLE_S" -gt 0 ]; then
	sleep $(( SWEEP_MS / 1000 + 2 ))     # the heartbeats flushed, a janitor pass or more behind
	echo "=== idle ${IDLE_S}s, both stacks: no calls but the keepers' node heartbeats (janitor every ${SWEEP_MS} ms)"
	"$PY" "$HELPER" idle "$IDLE_S" "$(stack_arg small)" "$(stack_arg scale)" | sed 's/^idle\(_[a-z]*\)\? \(small\|scale\) /idle\1 \2-a /' | tee -a "$out"
	psql_s scale -tA <<<"SELECT 'jobs scale-a ' || job || ' rows=' || count(*) || ' due_now=' || count(*) FILTER (WHERE due_at <= now())
		|| ' due_within_' || $SWEEP_MS / 1000 || 's=' || count(*) FILTER (WHERE due_at <= now() + make_interval(secs => $SWEEP_MS / 1000))
		FROM frontdesk.tenant_jobs WHERE job LIKE 'linesd.%' GROUP BY job ORDER BY job" | tee -a "$out"
	if [ "$SCALE_TENANTS" -gt 0 ]; then
		# One live session in each small tenant (its first line), as
		# AuthorizePlayback leaves it: linesd.session_timeout due at once.
		psql_s scale -v u0="$SMALLT_U0" -v st="$SMALLT_STREAM" -v tpl="$SMALLT_TPL" -v ip="$IP" -v ua="$UA" <<'SQL'
BEGIN;
SET LOCAL synchronous_commit = off;
INSERT INTO frontdesk.sessions (tenant_id, line_id, stream_id, node_id, client_ip, user_agent, output_format)
  SELECT l.tenant_id, l.id, :st, (SELECT min(id) FROM frontdesk.nodes WHERE tenant_id = 0 AND region = 'eu-west'),
         :'ip', :'ua', 1
    FROM frontdesk.lines l
   WHERE (l.tenant_id = :tpl OR l.tenant_id IN (SELECT id FROM public.scale_clones)) AND l.username = :'u0';
INSERT INTO frontdesk.tenant_jobs AS j (job, tenant, due_at, gen)
  SELECT 'linesd.session_timeout', t, now(), 1 FROM (SELECT :tpl::bigint AS t UNION ALL SELECT id FROM public.scale_clones) x
  ON CONFLICT (job, tenant) DO UPDATE SET due_at = least(j.due_at, excluded.due_at), gen = j.gen + 1;
COMMIT;
VACUUM ANALYZE frontdesk.sessions;
SQL
		sleep $(( SWEEP_MS / 1000 + 2 ))
		echo "=== idle ${IDLE_S}s, scale stack with one live session in each of its $SCALE_TENANTS small tenants"
		"$PY" "$HELPER" idle "$IDLE_S" "$(stack_arg scale)" | sed 's/^idle\(_[a-z]*\)\? scale /idle\1 scale-b /' | tee -a "$out"
		psql_s scale -tA <<<"SELECT 'jobs scale-b ' || job || ' rows=' || count(*) || ' due_now=' || count(*) FILTER (WHERE due_at <= now())
			|| ' due_within_' || $SWEEP_MS / 1000 || 's=' || count(*) FILTER (WHERE due_at <= now() + make_interval(secs => $SWEEP_MS / 1000))
			FROM frontdesk.tenant_jobs WHERE job LIKE 'linesd.%' GROUP BY job ORDER BY job" | tee -a "$out"
	fi
fi

# --- start-up of a replica beside the running one ---
echo "=== start-up: $STARTS linesd replicas per stack started beside the running one (process start to SERVING," \
	"to the first allowed AuthorizePlayback)"
for i in $(seq "$STARTS"); do
	for s in $STACKS; do
		fresh_token "$s"
		res=$(start_linesd "$s" "127.0.0.1:$(port)" "$top/$s/replica.log") || { tail -20 "$top/$s/replica.log" >&2; exit 1; }
		pid=$(kv pid "$res")
		extra_pids="$extra_pids $pid"
		echo "startup $s replica$i $res" | tee -a "$out"
		stop_pid "$pid"
		extra_pids=${extra_pids% "$pid"}
	done
done

for s in $STACKS; do
	for f in linesd routerd; do
		if grep -q "level=error\|ERROR" "$top/$s/$f.log"; then
			echo "# $s: $f logged errors:"; grep "level=error\|ERROR" "$top/$s/$f.log" | tail -5
		fi
	done
	"$PY" "$LHELPER" nodes-up "${ROUTERD[$s]}" "${PATOK[$s]}" "nodes-up-at-end-$s" "${NNODES[$s]}" 2>/dev/null | tee -a "$out" || true
	if grep -q "failed call" "$top/$s/keeper.log"; then
		echo "keeper VIOLATIONS: $s: $(grep "failed call" "$top/$s/keeper.log" | head -1)" | tee -a "$out"
	fi
done
echo "# the whole run took $(( $(ms_since "$t_all") / 1000 )) s"

echo "--- medians over $ROUNDS rounds"
"$PY" - "$out" "$SWEEP_MS" <<'PY'
import re, statistics, sys
sweep_s = int(sys.argv[2]) / 1000
rows, audits, mem, idle, roles, stmts, starts, jobs = {}, [], {}, {}, {}, [], {}, []
for line in open(sys.argv[1]):
    m = re.match(r"(bench|cpu|xcpu|fields) (\w+?)_inflight(\d+) (.*)", line)
    if m:
        r = rows.setdefault((m[2], int(m[3])), {})
        for kv in m[4].split():
            k, v = kv.split("=", 1)
            v = v[:-2] if v.endswith("/s") else v
            try:
                r.setdefault(m[1] + "." + k, []).append(float(v))
            except ValueError:
                pass
        continue
    w = line.split()
    kv = lambda ws: {a: b for a, b in (x.split("=", 1) for x in ws if "=" in x)}
    if line.startswith(("audit ", "answers ", "keeper ")):
        audits.append(line.strip())
    elif w and w[0] == "memory":
        mem[w[1]] = kv(w[2:])
    elif w and w[0] == "idle":
        idle[w[1]] = kv(w[2:])
    elif w and w[0] == "idle_role":
        roles[(w[1], w[2])] = kv(w[3:])
    elif w and w[0] == "idle_stmt":
        stmts.append(line.strip())
    elif w and w[0] == "startup":
        starts.setdefault((w[1], w[2] if w[2] in ("restart", "nocache") else "replica"), []).append(kv(w[3:]))
    elif w and w[0] == "jobs":
        jobs.append(line.strip())
med = {k: {f: statistics.median(v) for f, v in r.items()} for k, r in rows.items()}
ks = sorted({k for _, k in med})
def g(case, k, f="bench.rate"):
    return med.get((case, k), {}).get(f, float("nan"))
def ratio(a, b):
    return a / b if b and b == b and a == a else float("nan")
goals = []
print("rates (calls/s, medians) and CPU per call (us: linesd, PostgreSQL, routerd; the load generator apart)")
print(f"{'case':<22}{'small':>9}{'scale':>9}{'scale/small':>13}{'small/echo':>12}{'scale/echo':>12}"
      f"{'p99 ms small/scale':>20}   us/call linesd small/scale, pg small/scale, routerd small/scale")
for k in ks:
    e = g("echo", k)
    print(f"{'echo_inflight' + str(k):<22}{e:>9.0f}{'':>9}{'':>13}   (bare gRPC echo, the baseline; p99 {g('echo', k, 'bench.p99_ms'):.2f} ms)")
    for c in ("new", "reopen", "beat"):
        a, b = g("small_" + c, k), g("scale_" + c, k)
        us = lambda st, f: g(f"{st}_{c}", k, f)
        print(f"{c + '_inflight' + str(k):<22}{a:>9.0f}{b:>9.0f}{ratio(b, a):>13.3f}{ratio(a, e):>12.3f}{ratio(b, e):>12.3f}"
              f"{us('small', 'bench.p99_ms'):>10.2f}/{us('scale', 'bench.p99_ms'):<9.2f}"
              f"   {us('small', 'cpu.server_us_per_call'):.1f}/{us('scale', 'cpu.server_us_per_call'):.1f}, "
              f"{us('small', 'cpu.pg_us_per_call'):.1f}/{us('scale', 'cpu.pg_us_per_call'):.1f}, "
              f"{us('small', 'xcpu.routerd_us_per_call'):.1f}/{us('scale', 'xcpu.routerd_us_per_call'):.1f}")
        goals.append((f"{c} at inflight {k}: scale >= 0.8 of small", f"{ratio(b, a):.3f}", ratio(b, a) >= 0.8))
print("memory (linesd RSS, VmRSS)")
for s, m in mem.items():
    ps, pn = int(m["per_session_b"]), int(m["per_new_session_b"])
    pl = m.get("per_line_b", "-")
    mib = lambda k: f"{int(m[k]) / 1024:.0f}" if m.get(k, "").isdigit() else "-"
    print(f"  {s}: a replica without a line cache {mib('nocache_kb')} MiB after its first authorization; "
          f"with its preload of {m.get('preloaded_lines', '-')} lines {mib('preloaded_kb')} MiB: {pl} B a cached line")
    print(f"  {s}: +{m['sessions']} sessions in the heartbeat cache "
          f"{(int(m['rss_sessions_kb']) - int(m['rss0_kb'])) / 1024:.1f} MiB = {ps} B a session; check: +{m['new']} new "
          f"sessions (their lines preloaded) {pn} B each")
    if s == "scale" and pl.isdigit():
        print(f"  at those rates 1,000,000 cached lines take ~{int(pl) * 1e6 / 2**20:.0f} MiB a replica, "
              f"200,000 live sessions ~{ps * 2e5 / 2**20:.0f} MiB")
print(f"idle (the janitor walks every {sweep_s:g} s; pg_stat_statements tracking on in the window; -a: as made, "
      f"live sessions in the big tenant only; -b: and one in each small tenant)")
for lab, d in idle.items():
    w = float(d["window_s"])
    passes = w / sweep_s
    lr = roles.get((lab, "linesd"), {})
    lx = int(lr.get("xacts", 0))
    visited = sum(int(re.search(r"calls=(\d+)", st)[1]) for st in stmts
                  if st.split()[1] == lab and st.split()[2] == "linesd" and "SELECT ceil(extract(epoch FROM least(" in st)
    print(f"  {lab}: database {d['db_xacts_per_min']} transactions/min; linesd {lr.get('xacts_per_min', '-')} "
          f"transactions/min (~{lx / passes:.1f} a janitor pass; linesd.session_timeout visited {visited} tenants, "
          f"~{visited / passes:.1f} a pass; {lr.get('pings', '-')} pings besides), {lr.get('statements', '-')} statements, "
          f"{lr.get('exec_ms', '-')} ms executing, its backends {lr.get('backend_cpu_ms', '-')} ms CPU; linesd "
          f"process {float(d['linesd_cores']) * 100:.2f}% of a core, PostgreSQL {float(d['pg_cores']) * 100:.2f}%")
    for role in ("routerd", "authd", "billingd"):
        r = roles.get((lab, role))
        if r:
            print(f"      {role}: {r['xacts_per_min']} transactions/min, backends {r['backend_cpu_ms']} ms CPU")
for j in jobs:
    print("  " + j)
for st in stmts:
    if " linesd " in st:
        print("  " + st)
print("start-up of linesd (process start to Health SERVING / to the first allowed AuthorizePlayback)")
for (s, kind), v in sorted(starts.items()):
    def f(key):
        xs = [float(x[key]) for x in v if x.get(key, "-") not in ("-", "")]
        return statistics.median(xs) if xs else float("nan")
    pre = (f", preload of {f('preload_lines'):.0f} lines of {f('preload_tenants'):.0f} tenants done at "
           f"{f('preloaded_ms'):.0f} ms (logged {f('preload_logged_ms'):.0f} ms), RSS then {f('rss_preloaded_kb') / 1024:.0f} MiB"
           if kind != "nocache" else " (FRONTDESK_LINESD_LINE_CACHE=0: no preload)")
    print(f"  {s} {kind} (n={len(v)}): listening {f('listen_ms'):.0f} ms, SERVING {f('ready_ms'):.0f} ms, first "
          f"authorization {f('first_auth_ms'):.0f} ms (RSS {f('rss_kb') / 1024:.0f} MiB){pre}"
          + ("" if kind != "replica" else
             "  [ready/first/preloaded: " + ", ".join(f"{x['ready_ms']}/{x['first_auth_ms']}/{x.get('preloaded_ms', '-')}" for x in v) + "]"))
clean = bool(audits) and all(" ok" in a for a in audits)
goals.append(("every answer allowed/active (reused for reopen, a node named), every audit clean",
              f"{len(audits)} checks", clean))
if any(sum(r.get("bench.errors", [0])) for r in rows.values()):
    goals.append(("no failed call", "some failed (see above)", False))
for what, got, ok in goals:
    print(f"goal {what}: {got}: {'met' if ok else 'MISSED'}")
for a in audits:
    if " ok" not in a:
        print(a)
PY
