#!/usr/bin/env bash
# up.sh - build and run the whole platform in the foreground. Without
# FRONTDESK_DATABASE_URL: a private PostgreSQL in DATA/pg (reused on the next
# run), migrated. INT or TERM (Ctrl-C, kill, also when started in the
# background) stops the services, then that PostgreSQL: exit 0 when everything
# stopped cleanly, 1 when something had to be killed or a service exited by
# itself, 1 when start-up failed or was refused (the message says what to do).
#
# Settings (environment variables) [default]:
#   FRONTDESK_DATA_DIR      this platform's state: secrets.env, keys.sha256, pg/ [.data]
#   FRONTDESK_PG_PORT       the private PostgreSQL's port (its socket is in DATA/pg/sock) [55400]
#   FRONTDESK_DATABASE_URL  an existing database instead (FRONTDESK_ADMIN_DATABASE_URL: its superuser)
#   FRONTDESK_AUTHD_LISTEN, _BILLINGD_LISTEN, _LINESD_LISTEN, _ROUTERD_LISTEN
#                           the services' addresses [127.0.0.1:7101, :7102, :7103, :7104];
#                           linesd's targets follow them
#   FRONTDESK_EDGED_LISTEN  the HTTP edge players and streaming nodes use [127.0.0.1:7180]
#   FRONTDESK_BUILD_DIR     the build folder [build]
#   FRONTDESK_UP_NO_BUILD   1: run the binaries already in FRONTDESK_BUILD_DIR (no
#                           install-deps, no build), e.g. a build folder ctest is using
# Every other FRONTDESK_* setting reaches the services as it is.
set -euo pipefail

# A non-interactive shell starts its background jobs with INT ignored (and
# `nohup up.sh &` is one), and bash cannot trap a signal ignored on entry:
# run again with INT and TERM at their defaults, so the traps below hold.
if [ -n "$(trap -p INT TERM)" ] && [ -z "${FD_UP_SIGNALS_RESET:-}" ]; then
	FD_UP_SIGNALS_RESET=1 exec env --default-signal=INT,TERM "$BASH" "$0" "$@"
fi
unset FD_UP_SIGNALS_RESET

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${FRONTDESK_DATA_DIR:-$ROOT/.data}
BUILD=${FRONTDESK_BUILD_DIR:-$ROOT/build}
secrets=$DATA/secrets.env
say() { echo "up.sh: $*" >&2; }

# ---- stopping: one path for a signal, a failed step and a service's exit ----
pids=()        # the services
names=()
step_pid=      # the step running now (own session: its whole tree is stopped)
own_pg=        # set once this run may have started its PostgreSQL

alive() {      # a child that has not exited (a zombie has)
	local state
	{ read -r _ _ state _ < "/proc/$1/stat"; } 2>/dev/null && [ "$state" != Z ]
}

stop() {
	local status=$1 i p left grace deadline rc
	trap '' INT TERM   # a second Ctrl-C does not cut the shutdown short; it is bounded
	if [ -n "$step_pid" ]; then
		kill -TERM -- "-$step_pid" 2>/dev/null || kill -TERM "$step_pid" 2>/dev/null || true
		wait "$step_pid" 2>/dev/null || true
		# Its tree may outlive it (runuser gives initdb 2 s): wait for the
		# whole session, then kill what is left, before PostgreSQL stops.
		deadline=$((SECONDS + 5))
		while kill -0 -- "-$step_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
		kill -KILL -- "-$step_pid" 2>/dev/null || true
	fi
	if ((${#pids[@]})); then
		kill -TERM "${pids[@]}" 2>/dev/null || true
		# Each service drains for FRONTDESK_SHUTDOWN_GRACE_MS; past that and 5 s
		# more it is killed.
		grace=$(((${FRONTDESK_SHUTDOWN_GRACE_MS:-10000} + 999) / 1000 + 5))
		deadline=$((SECONDS + grace))
		while :; do
			left=0
			for p in "${pids[@]}"; do
				if alive "$p"; then left=1; fi
			done
			((left && SECONDS < deadline)) || break
			sleep 0.1
		done
		for i in "${!pids[@]}"; do
			p=${pids[$i]}
			if alive "$p"; then
				say "${names[$i]} did not stop within ${grace} s: killed"
				kill -KILL "$p" 2>/dev/null || true
				status=1
			fi
			rc=0
			wait "$p" 2>/dev/null || rc=$?
			# 143: our TERM came before its handler was set (nothing to drain
			# yet); 127: reaped already.
			if ((rc != 0 && rc != 143 && rc != 127)); then
				say "${names[$i]} exited with status $rc"
				status=1
			fi
		done
	fi
	if [ -n "$own_pg" ]; then
		"$ROOT/scripts/pg.sh" stop "$own_pg" || status=1
	fi
	if [ -n "$own_pg" ] || ((${#pids[@]})); then echo "frontdesk stopped"; fi
	exit "$status"
}
trap 'stop $?' EXIT
trap 'say "INT: stopping"; exit 0' INT
trap 'say "TERM: stopping"; exit 0' TERM

# step CMD...: runs CMD in a session of its own and waits for it, so that a
# signal to up.sh is handled at once (bash runs a trap only when its
# foreground command ends; `wait` it interrupts) and stops CMD's whole tree.
step() {
	local rc=0
	setsid "$@" & step_pid=$!
	wait "$step_pid" || rc=$?
	step_pid=
	return "$rc"
}

# Where a listening address is reached from here (0.0.0.0 means any).
target_of() {
	case $1 in
	0.0.0.0:* | :*) echo "127.0.0.1:${1##*:}" ;;
	"[::]:"*) echo "[::1]:${1##*:}" ;;
	*) echo "$1" ;;
	esac
}
export FRONTDESK_AUTHD_LISTEN=${FRONTDESK_AUTHD_LISTEN:-127.0.0.1:7101}
export FRONTDESK_BILLINGD_LISTEN=${FRONTDESK_BILLINGD_LISTEN:-127.0.0.1:7102}
export FRONTDESK_LINESD_LISTEN=${FRONTDESK_LINESD_LISTEN:-127.0.0.1:7103}
export FRONTDESK_ROUTERD_LISTEN=${FRONTDESK_ROUTERD_LISTEN:-127.0.0.1:7104}
export FRONTDESK_EDGED_LISTEN=${FRONTDESK_EDGED_LISTEN:-127.0.0.1:7180}
# linesd charges through billingd and routes playback through routerd (and
# follows its nodes' state).
export FRONTDESK_AUTHD_TARGET=${FRONTDESK_AUTHD_TARGET:-$(target_of "$FRONTDESK_AUTHD_LISTEN")}
export FRONTDESK_BILLINGD_TARGET=${FRONTDESK_BILLINGD_TARGET:-$(target_of "$FRONTDESK_BILLINGD_LISTEN")}
export FRONTDESK_ROUTERD_TARGET=${FRONTDESK_ROUTERD_TARGET:-$(target_of "$FRONTDESK_ROUTERD_LISTEN")}
# The HTTP edge asks linesd (and authd, for brands).
export FRONTDESK_LINESD_TARGET=${FRONTDESK_LINESD_TARGET:-$(target_of "$FRONTDESK_LINESD_LISTEN")}

# What the machine needs first (openssl makes the secrets below); the build
# comes after the secrets' checks, so a refused start does not wait for it.
[ "${FRONTDESK_UP_NO_BUILD:-}" = 1 ] || step "$ROOT/scripts/install-deps.sh"

# ---- secrets ----
# This machine's platform keeps them in DATA/secrets.env (made once, mode
# 600): the keyed-hash and key-encryption keys, the service secrets and the
# first passwords. What is missing is made, unless the database already holds
# data made with it: a different key there would leave API keys, refresh
# tokens, node keys and line lookups (hash key) or signing keys and line
# passwords (key-encryption key) unreadable, so that start is refused.
# keys.sha256, next to the database it describes, holds the two keys'
# SHA-256 from the first start (never the keys).
if [ -z "${FRONTDESK_DATABASE_URL:-}" ]; then
	own_db=$DATA/pg
	fingerprints=$own_db/keys.sha256
	fresh_hint="remove $own_db (every tenant, line and credit in it is lost)"
else
	own_db=
	fingerprints=$DATA/keys.sha256
	fresh_hint="point FRONTDESK_DATABASE_URL at a new database and remove $fingerprints"
fi
has() { [ -f "$secrets" ] && grep -q "^$1=" "$secrets"; }
# A variable's value as sourcing the file gives it (quotes removed, the last
# line wins), without what the environment holds.
value() { env -i /bin/bash -c 'set -a; . "$1" >/dev/null; printf %s "${!2-}"' _ "$secrets" "$1"; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
refuse() {
	say "$1"
	say "starting would be unsafe: $2; put the old line back in $secrets, or, to start afresh, $fresh_hint"
	exit 1
}
mkdir -p "$DATA"
new_file=
[ -f "$secrets" ] || new_file=1
made() { [ -n "$new_file" ] || say "$1 made (new) in $secrets${2:+: $2}"; }
for k in FRONTDESK_SECRET_HASH_KEY FRONTDESK_KEY_ENCRYPTION_KEY; do
	case $k in
	FRONTDESK_SECRET_HASH_KEY) holds="API keys, refresh tokens, node keys and line look-ups" ;;
	*) holds="the sealed signing keys and line passwords" ;;
	esac
	if [ -f "$fingerprints" ] && grep -q "^$k " "$fingerprints"; then
		has "$k" || refuse "$k is missing from $secrets, but the database holds data made with it" \
			"$holds would no longer be readable"
		[ "$(sha "$(value "$k")")" = "$(sed -n "s/^$k //p" "$fingerprints")" ] ||
			refuse "$k in $secrets is not the key the database was first started with (edited since?)" \
				"$holds would no longer be readable"
	elif ! has "$k"; then
		(umask 077 && echo "$k=$(openssl rand -hex 32)" >> "$secrets")
		made "$k"
	fi
done
for k in FRONTDESK_BOOTSTRAP_PASSWORD DEMO_ADMIN_PASSWORD; do
	if ! has "$k"; then
		# Used only if its account is made now; an existing account keeps its own.
		(umask 077 && echo "$k=$(openssl rand -base64 18 | tr -d '/+=')" >> "$secrets")
		made "$k" "the password of its account if that account is made now"
	fi
done
# Service secrets: linesd's, for the service token it charges billingd with,
# and the HTTP edge's. Nothing stores them but this file, so when either
# line is missing both are made anew (an HTTP edge then needs the new one).
if ! has FRONTDESK_LINESD_SERVICE_SECRET || ! has FRONTDESK_SERVICE_SECRETS; then
	sed -i '/^FRONTDESK_LINESD_SERVICE_SECRET=/d; /^FRONTDESK_SERVICE_SECRETS=/d' "$secrets"
	(
		umask 077
		linesd_secret=$(openssl rand -hex 24)
		echo "FRONTDESK_LINESD_SERVICE_SECRET=$linesd_secret"
		echo "FRONTDESK_SERVICE_SECRETS=linesd=$linesd_secret,edged=$(openssl rand -hex 24)"
	) >> "$secrets"
	made "service secrets (FRONTDESK_LINESD_SERVICE_SECRET, FRONTDESK_SERVICE_SECRETS)"
fi
# The HTTP edge's hand-off token keys: "kid:key", the first signs. Rotate by
# putting a new one first and dropping the old once its tokens expired.
if ! has FRONTDESK_EDGED_SIGNING_KEYS; then
	(umask 077 && echo "FRONTDESK_EDGED_SIGNING_KEYS=1:$(openssl rand -hex 32)" >> "$secrets")
	made FRONTDESK_EDGED_SIGNING_KEYS "streaming nodes' secrets derive from it (edged --node-secret ID)"
fi
case ",$(value FRONTDESK_SERVICE_SECRETS)," in
*",linesd=$(value FRONTDESK_LINESD_SERVICE_SECRET),"*) ;;
*)
	say "FRONTDESK_LINESD_SERVICE_SECRET in $secrets is not the linesd= entry of FRONTDESK_SERVICE_SECRETS:" \
		"linesd could not get its service token. Make them equal, or delete both lines to have new ones made"
	exit 1
	;;
esac
chmod 600 "$secrets"
[ -z "$new_file" ] || say "secrets made in $secrets (mode 600): keys, service secrets, first passwords"
set -a
. "$secrets"
set +a
# edged's own secret is the edged= entry of authd's list.
FRONTDESK_EDGED_SERVICE_SECRET=$(printf %s ",$FRONTDESK_SERVICE_SECRETS," | sed -n 's/.*,edged=\([^,]*\),.*/\1/p')
export FRONTDESK_EDGED_SERVICE_SECRET

# ---- build ----
if [ "${FRONTDESK_UP_NO_BUILD:-}" = 1 ]; then
	for b in frontdesk authd billingd linesd routerd edged; do
		[ -x "$BUILD/services/$b/$b" ] ||
			{ say "FRONTDESK_UP_NO_BUILD=1 but $BUILD/services/$b/$b is not built (FRONTDESK_BUILD_DIR)"; exit 1; }
	done
else
	step "$ROOT/scripts/build.sh" "$BUILD"
fi

# ---- database ----
if [ -n "$own_db" ]; then
	port=${FRONTDESK_PG_PORT:-55400}
	own_pg=$own_db
	step "$ROOT/scripts/pg.sh" start "$own_pg" "$port"
	base=$("$ROOT/scripts/pg.sh" url "$own_pg" "$port")
	psql -X -q -h "$own_pg/sock" -p "$port" -U postgres -d postgres -tAc \
		"SELECT 1 FROM pg_database WHERE datname='frontdesk'" | grep -q 1 ||
		psql -X -q -h "$own_pg/sock" -p "$port" -U postgres -d postgres -c "CREATE DATABASE frontdesk"
	export FRONTDESK_DATABASE_URL="$base dbname=frontdesk"
	export FRONTDESK_ADMIN_DATABASE_URL="$base dbname=frontdesk user=postgres"
fi
step "$BUILD/services/frontdesk/frontdesk" migrate
step "$BUILD/services/frontdesk/frontdesk" bootstrap
# From here on the database holds data made with the two keys (authd seals
# its first signing key as it starts).
if [ ! -f "$fingerprints" ]; then
	(
		umask 077
		echo "FRONTDESK_SECRET_HASH_KEY $(sha "$FRONTDESK_SECRET_HASH_KEY")"
		echo "FRONTDESK_KEY_ENCRYPTION_KEY $(sha "$FRONTDESK_KEY_ENCRYPTION_KEY")"
	) > "$fingerprints"
fi

# ---- services ----
for s in authd billingd routerd linesd edged; do
	"$BUILD/services/$s/$s" & pids+=($!) names+=("$s")
done
FRONTDESK_EDGE_URL="http://$(target_of "$FRONTDESK_EDGED_LISTEN")"
export FRONTDESK_EDGE_URL
step /usr/bin/python3 "$ROOT/scripts/demo_tenant.py" "$FRONTDESK_AUTHD_TARGET" "$FRONTDESK_BILLINGD_TARGET" \
	"$(target_of "$FRONTDESK_LINESD_LISTEN")" "$FRONTDESK_ROUTERD_TARGET" ||
	{ say "demo tenant could not be made"; exit 1; }
echo "frontdesk is up: authd $FRONTDESK_AUTHD_LISTEN, billingd $FRONTDESK_BILLINGD_LISTEN," \
	"linesd $FRONTDESK_LINESD_LISTEN, routerd $FRONTDESK_ROUTERD_LISTEN, edged (HTTP) $FRONTDESK_EDGED_LISTEN" \
	"(Ctrl-C or kill stops it)"
echo "  platform admin: tenant_slug=platform username=${FRONTDESK_BOOTSTRAP_USERNAME:-admin}; passwords in $secrets"
echo "  demo tenant admin: tenant_slug=demo username=demo-admin"
rc=0
wait -n -p done_pid "${pids[@]}" || rc=$?
for i in "${!pids[@]}"; do
	if [ "${pids[$i]}" = "${done_pid:-}" ]; then
		say "${names[$i]} exited by itself (status $rc); stopping everything"
		unset "pids[$i]" "names[$i]"
	fi
done
exit 1
