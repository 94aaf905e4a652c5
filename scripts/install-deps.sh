#!/usr/bin/env bash
# install-deps.sh [build] - installs whatever the build, the platform and the
# tests need (Debian 12 packages, and buf from npm into .tools/); with "build",
# only what building needs (the container image). Idempotent; no prompts.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUF_VERSION=1.75.0
PKGS=(build-essential cmake pkg-config libgrpc-dev libprotobuf-c-dev protobuf-c-compiler
      protobuf-compiler libprotobuf-dev grpc-proto libpq-dev libjwt-dev libjansson-dev libsodium-dev libssl-dev
      libmicrohttpd-dev libxml2-dev libidn2-dev)
[ "${1:-}" = build ] || PKGS+=(postgresql postgresql-contrib python3-grpcio python3-grpc-tools
      python3-pytest python3-yaml python3-psycopg2 python3-jwt python3-cryptography openssl procps
      nginx libnginx-mod-rtmp ffmpeg wrk curl)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# nginx's package starts the system's nginx on port 80 unless told not
	# to: the tests run their own on loopback ports (-p DIR -c CONF), so no
	# package may start a service while this runs.
	policy=/usr/sbin/policy-rc.d
	own_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' > "$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" || { [ -z "$own_policy" ] || rm -f "$policy"; exit 1; }
	[ -z "$own_policy" ] || rm -f "$policy"
fi
[ "${1:-}" = build ] && exit 0
if ! command -v npm >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
fi
if [ ! -x "$ROOT/.tools/node_modules/.bin/buf" ]; then
	echo "install-deps: installing buf $BUF_VERSION into .tools/"
	npm install --prefix "$ROOT/.tools" --no-save --no-audit --no-fund "@bufbuild/buf@$BUF_VERSION" >/dev/null
fi
