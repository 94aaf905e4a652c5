#!/bin/sh
# schema_lint.sh FRONTDESK - a database migrated by `frontdesk migrate` passes
# ../shared/tools/schema-lint.sql (DESIGN.md's tenancy rules) with only the
# platform-level tables exempt; and the lint is seen to catch a bad table.
set -eu
frontdesk=$1
# The team's shared folder sits beside the main checkout (/work/shared); a
# clone elsewhere (CI) finds it there. FD_SCHEMA_LINT names another copy.
lint=${FD_SCHEMA_LINT:-}
for c in "$FD_SOURCE_DIR/../shared/tools/schema-lint.sql" /work/shared/tools/schema-lint.sql; do
  [ -z "$lint" ] && [ -f "$c" ] && lint=$c
done
if [ -z "$lint" ] || [ ! -f "$lint" ]; then
  echo "schema_lint: schema-lint.sql not found beside the repository, in /work/shared/tools," \
       "or at FD_SCHEMA_LINT" >&2
  exit 1
fi
db=t_lint_$$
psql="psql -X -q -h $FD_TEST_PGHOST -p $FD_TEST_PGPORT -U postgres -v ON_ERROR_STOP=1"
$psql -d postgres -c "CREATE DATABASE $db TEMPLATE template0"
trap '$psql -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT

FRONTDESK_ADMIN_DATABASE_URL="host=$FD_TEST_PGHOST port=$FD_TEST_PGPORT dbname=$db user=postgres" \
  "$frontdesk" migrate

lint() {
  $psql -d "$db" -v schema=frontdesk -v exempt="'tenants','schema_migrations','signing_keys','login_failures','tenant_jobs','brand_hosts'" -At -f "$lint"
}
out=$(lint)
if [ -n "$out" ]; then
  echo "schema_lint: findings on the migrated schema:" >&2
  echo "$out" >&2
  exit 1
fi

# The lint really looks at this schema: a tenant table without RLS is caught.
$psql -d "$db" -c "CREATE TABLE frontdesk.lint_probe (tenant_id bigint PRIMARY KEY)"
out=$(lint)
case $out in
  *lint_probe*) ;;
  *) echo "schema_lint: the lint did not report a tenant table without RLS: [$out]" >&2; exit 1 ;;
esac
echo "schema_lint: the migrated schema is clean"
