#!/usr/bin/env bash
# Refreshes the committed offline query caches (`.sqlx/`) after a query or a
# migration changed: builds a scratch database from the migrations, then
# compiles the store crate with the macros pointed at it.
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

sqlite_db="$scratch/prepare.db"
for m in crates/passgate-store-sqlite/migrations/*.sql; do sqlite3 "$sqlite_db" < "$m"; done
rm -rf crates/passgate-store-sqlite/.sqlx && mkdir -p crates/passgate-store-sqlite/.sqlx
touch crates/passgate-store-sqlite/src/*.rs
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$PWD/crates/passgate-store-sqlite/.sqlx" \
  DATABASE_URL="sqlite://$sqlite_db" cargo check -q -p passgate-store-sqlite --all-targets
echo "sqlite: $(ls crates/passgate-store-sqlite/.sqlx | wc -l) queries cached"
