#!/usr/bin/env bash
# pg.sh - a private PostgreSQL cluster on a unix socket only (trust on the socket).
#   pg.sh start DIR PORT   initdb if DIR holds no cluster, then start (idempotent)
#   pg.sh stop DIR         fast stop (fine if not running); fails if it is still running after 30 s
#   pg.sh status DIR       exit 0 when it runs, 3 when not
#   pg.sh url DIR PORT     print the conninfo
set -euo pipefail
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$BIN" ] || { echo "pg.sh: PostgreSQL server not installed (scripts/install-deps.sh)" >&2; exit 1; }
cmd=${1:?usage: pg.sh start|stop|status|url DIR [PORT]}
dir=${2:?DIR}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
start)
	port=${3:?PORT}
	mkdir -p "$dir/sock"
	dir=$(cd "$dir" && pwd)
	if [ "$(id -u)" = 0 ]; then
		chown -R postgres:postgres "$dir"
		# postgres must reach DIR: open the path's parents for traversal only.
		p=$dir
		while [ "$p" != / ]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
	fi
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		as_pg "$BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
	fi
	if as_pg "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		# Already running (left by an earlier run?): fine on the same port only,
		# since the socket's name carries the port.
		running=$(sed -n 4p "$dir/data/postmaster.pid" 2>/dev/null || true)
		[ "$running" = "$port" ] && exit 0
		echo "pg.sh: PostgreSQL in $dir already runs on port $running, not $port:" \
		     "stop it (scripts/pg.sh stop $dir) or use port $running" >&2
		exit 1
	fi
	as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
		-o "-p $port -k $dir/sock -c listen_addresses='' -c max_connections=300" start >/dev/null
	;;
stop)
	[ -f "$dir/data/PG_VERSION" ] || exit 0
	as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
	if as_pg "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		echo "pg.sh: PostgreSQL in $dir is still running after a fast stop of 30 s" >&2
		exit 1
	fi
	;;
status)
	[ -f "$dir/data/PG_VERSION" ] || exit 3
	as_pg "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 || exit 3
	;;
url)
	echo "host=$(cd "$dir" && pwd)/sock port=${3:?PORT}"
	;;
*) echo "pg.sh: unknown command $cmd" >&2; exit 2 ;;
esac
