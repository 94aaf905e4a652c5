#!/bin/sh
# buf_lint.sh: lint the API contract (api/frontdesk/v1/*.proto) with buf's
# STANDARD rules, as configured in buf.yaml at the repository root.
# ctest sets FD_SOURCE_DIR; run by hand, the repository is this script's ../..
set -eu

src=${FD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
buf=$src/.tools/node_modules/.bin/buf

if [ ! -x "$buf" ]; then
  echo "buf_lint: buf not found at $buf" >&2
  echo "buf_lint: run scripts/install-deps.sh (it installs @bufbuild/buf into .tools/)" >&2
  exit 1
fi

cd "$src"
echo "buf_lint: in $src: $buf lint ($("$buf" --version))"
"$buf" lint
echo "buf_lint: ok"
