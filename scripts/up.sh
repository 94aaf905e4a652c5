#!/usr/bin/env bash
# up.sh - build and run the whole platform in the foreground. Without
# FRONTDESK_DATABASE_URL: a private PostgreSQL in .data/pg (reused on the next
# run), migrated. Ctrl-C stops the services, then PostgreSQL, cleanly.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/install-deps.sh"
"$ROOT/scripts/build.sh" "$ROOT/build"
own_pg=
if [ -z "${FRONTDESK_DATABASE_URL:-}" ]; then
	own_pg=$ROOT/.data/pg
	port=${FRONTDESK_PG_PORT:-55400}
	"$ROOT/scripts/pg.sh" start "$own_pg" "$port"
	base=$("$ROOT/scripts/pg.sh" url "$own_pg" "$port")
	psql -X -q -h "$own_pg/sock" -p "$port" -U postgres -d postgres -tAc \
		"SELECT 1 FROM pg_database WHERE datname='frontdesk'" | grep -q 1 ||
		psql -X -q -h "$own_pg/sock" -p "$port" -U postgres -d postgres -c "CREATE DATABASE frontdesk"
	export FRONTDESK_DATABASE_URL="$base dbname=frontdesk"
	export FRONTDESK_ADMIN_DATABASE_URL="$base dbname=frontdesk user=postgres"
fi
# Secrets this machine's platform keeps (made once, in .data/secrets.env, mode
# 600): the keyed-hash and key-encryption keys, and the first passwords.
secrets=$ROOT/.data/secrets.env
if [ ! -f "$secrets" ]; then
	mkdir -p "$ROOT/.data"
	umask 077
	{
		echo "FRONTDESK_SECRET_HASH_KEY=$(openssl rand -hex 32)"
		echo "FRONTDESK_KEY_ENCRYPTION_KEY=$(openssl rand -hex 32)"
		echo "FRONTDESK_BOOTSTRAP_PASSWORD=$(openssl rand -base64 18 | tr -d '/+=')"
		echo "DEMO_ADMIN_PASSWORD=$(openssl rand -base64 18 | tr -d '/+=')"
	} > "$secrets"
	umask 022
fi
# Service secrets (added to an older secrets.env too): linesd's, for the
# service token it charges billingd with, and the HTTP edge's.
if ! grep -q '^FRONTDESK_LINESD_SERVICE_SECRET=' "$secrets"; then
	(
		umask 077
		linesd_secret=$(openssl rand -hex 24)
		edged_secret=$(openssl rand -hex 24)
		echo "FRONTDESK_LINESD_SERVICE_SECRET=$linesd_secret"
		echo "FRONTDESK_SERVICE_SECRETS=linesd=$linesd_secret,edged=$edged_secret"
	) >> "$secrets"
fi
set -a
. "$secrets"
set +a
: "${FRONTDESK_SECRET_HASH_KEY:?}" "${FRONTDESK_KEY_ENCRYPTION_KEY:?}"
"$ROOT/build/services/frontdesk/frontdesk" migrate
"$ROOT/build/services/frontdesk/frontdesk" bootstrap
pids=()
stop() {
	trap - INT TERM
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "$own_pg" ] && "$ROOT/scripts/pg.sh" stop "$own_pg"
	echo "frontdesk stopped"
}
trap 'stop; exit 0' INT TERM
# linesd routes playback through routerd (and follows its nodes' state).
export FRONTDESK_ROUTERD_TARGET=${FRONTDESK_ROUTERD_TARGET:-127.0.0.1:7104}
for s in authd billingd routerd linesd; do
	"$ROOT/build/services/$s/$s" & pids+=($!)
done
/usr/bin/python3 "$ROOT/scripts/demo_tenant.py" 127.0.0.1:7101 "$FRONTDESK_BOOTSTRAP_PASSWORD" \
	"$DEMO_ADMIN_PASSWORD" || { echo "demo tenant could not be made" >&2; stop; exit 1; }
echo "frontdesk is up: authd :7101, billingd :7102, linesd :7103, routerd :7104 (Ctrl-C stops)"
echo "  platform admin: tenant_slug=platform username=admin; passwords in $secrets"
echo "  demo tenant admin: tenant_slug=demo username=demo-admin"
wait -n "${pids[@]}" || true
echo "a service exited; stopping everything" >&2
stop
exit 1
