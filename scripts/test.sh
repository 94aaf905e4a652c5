#!/usr/bin/env bash
# test.sh - the whole test suite: build with warnings as errors and run ctest,
# then the same under ASan+UBSan. Each ctest run starts its own PostgreSQL.
#   FD_TEST_LABEL=unit|db|e2e  only that label;  FD_SKIP_ASAN=1  skip the sanitizer run
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/install-deps.sh" || exit 1
label=()
[ -n "${FD_TEST_LABEL:-}" ] && label=(-L "$FD_TEST_LABEL")
status=0
run() { # dir, port, cmake args...
	local dir=$1 port=$2; shift 2
	"$ROOT/scripts/build.sh" "$dir" -DFD_WERROR=ON -DFD_TEST_PGPORT="$port" "$@" || return 1
	ctest --test-dir "$dir" --output-on-failure -j2 --timeout 600 "${label[@]}"
}
run "$ROOT/build" 55432 || status=1
if [ -z "${FD_SKIP_ASAN:-}" ]; then
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		run "$ROOT/build-asan" 55433 -DFD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug || status=1
fi
exit $status
