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
"$ROOT/build/services/frontdesk/frontdesk" migrate
# (issue 3: `frontdesk bootstrap` creates the first platform admin and a demo tenant here)
pids=()
stop() {
	trap - INT TERM
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "$own_pg" ] && "$ROOT/scripts/pg.sh" stop "$own_pg"
	echo "frontdesk stopped"
}
trap 'stop; exit 0' INT TERM
for s in authd billingd linesd routerd; do
	"$ROOT/build/services/$s/$s" & pids+=($!)
done
echo "frontdesk is up: authd :7101, billingd :7102, linesd :7103, routerd :7104 (Ctrl-C stops)"
wait -n "${pids[@]}" || true
echo "a service exited; stopping everything" >&2
stop
exit 1
