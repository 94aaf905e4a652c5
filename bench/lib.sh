# shellcheck shell=bash disable=SC2154
# lib.sh - what the benchmark scripts share (sourced; needs ROOT, BUILD, PY, tmp).

# A free loopback port.
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A private PostgreSQL in $tmp/pg, a migrated database `frontdesk` and a
# platform admin. Sets pg_port, pg_host, pg_url (no user) and admin_pw.
bench_platform() {
	pg_port=$(port)
	"$ROOT/scripts/pg.sh" start "$tmp/pg" "$pg_port"
	pg_url="$("$ROOT/scripts/pg.sh" url "$tmp/pg" "$pg_port") dbname=frontdesk"
	pg_host=$(cd "$tmp/pg/sock" && pwd)
	psql -X -q -v ON_ERROR_STOP=1 -h "$pg_host" -p "$pg_port" -U postgres -d postgres \
		-c "CREATE DATABASE frontdesk TEMPLATE template0"
	FRONTDESK_ADMIN_DATABASE_URL="$pg_url user=postgres" "$BUILD/services/frontdesk/frontdesk" migrate \
		>"$tmp/migrate.log" 2>&1 || { cat "$tmp/migrate.log" >&2; exit 1; }
	admin_pw=$(openssl rand -hex 16)
	FRONTDESK_ADMIN_DATABASE_URL="$pg_url user=postgres" FRONTDESK_BOOTSTRAP_USERNAME=admin \
		FRONTDESK_BOOTSTRAP_PASSWORD="$admin_pw" FRONTDESK_PWHASH_OPSLIMIT=1 FRONTDESK_PWHASH_MEMLIMIT_KIB=8192 \
		"$BUILD/services/frontdesk/frontdesk" bootstrap >"$tmp/bootstrap.log" 2>&1 ||
		{ cat "$tmp/bootstrap.log" >&2; exit 1; }
}
