#!/usr/bin/env bash
# Refreshes the committed offline query cache of the PostgreSQL store
# (`crates/passgate-store-postgres/.sqlx/`) after a query or a migration
# changed: builds a scratch database from the migrations, then compiles the
# store crate with the macros pointed at it. (The SQLite store uses SQLite's
# C API directly and has no cache; its conformance suite checks its queries.)
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL: a scratch database on the server named by PASSGATE_TEST_POSTGRES_URL.
admin_url=${PASSGATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
scratch_db="passgate_prepare_$$"
psql "$admin_url" -qc "CREATE DATABASE $scratch_db"
trap 'psql "$admin_url" -qc "DROP DATABASE IF EXISTS $scratch_db WITH (FORCE)"' EXIT
pg_url="${admin_url%/*}/$scratch_db"
for m in crates/passgate-store-postgres/migrations/*.sql; do psql "$pg_url" -q -v ON_ERROR_STOP=1 -f "$m"; done
rm -rf crates/passgate-store-postgres/.sqlx && mkdir -p crates/passgate-store-postgres/.sqlx
find crates/passgate-store-postgres/src -name "*.rs" -exec touch {} +
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$PWD/crates/passgate-store-postgres/.sqlx" \
  DATABASE_URL="$pg_url" cargo check -q -p passgate-store-postgres --all-targets
echo "postgres: $(ls crates/passgate-store-postgres/.sqlx | wc -l) queries cached"
