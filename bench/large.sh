#!/usr/bin/env bash
# Large tables (issue 20, item 5): the link bench on an empty database, then
# on the same database after bench/large.py has loaded ROWS past logins, as
# many events and a tenth as many users (in SQL); with each, the latency of
# the reads an app makes (GET /auth/logins/{id}, the events list, by type
# and by user). Writes bench/results/<date>/large-*.json, large.md and the
# "Large tables" section of BENCHMARKS.md.
#
#   bench/large.sh                               # 10 million rows, SQLite then PostgreSQL
#   ROWS=1000000 DBS=sqlite bench/large.sh       # a quicker look
#
# Settings (environment): ROWS (10000000), USERS (64), WARMUP (5),
# DURATION (30), DBS ("sqlite postgres"), BENCH_KIT,
# PASSGATE_BENCH_POSTGRES_URL (else the bench's own cluster,
# bench/pg_cluster.sh). The server runs with its default retention, which
# keeps everything loaded (logins of the past six days, events of the past 80).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KIT=${BENCH_KIT:-$(cd "$ROOT/../shared/bench" && pwd)}
ROWS=${ROWS:-10000000}
USERS=${USERS:-64}
WARMUP=${WARMUP:-5}
DURATION=${DURATION:-30}
DBS=${DBS:-"sqlite postgres"}
DATE=$(date -u +%F)
OUT=$ROOT/bench/results/$DATE
WORK=${LARGE_WORK:-$(mktemp -d)}
PORT=8080
CALLBACK=http://localhost:3000/auth/callback
PG_DB=passgate_large
mkdir -p "$OUT" "$WORK"
cd "$ROOT"
source "$ROOT/bench/pg_cluster.sh"

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
cleanup() { stop_server; [ -z "${PASSGATE_BENCH_POSTGRES_URL:-}" ] && bench_pg_stop; rm -rf "$WORK"; }
trap cleanup EXIT
wait_http() { for _ in $(seq 1 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

echo "== building (release)"
cargo build --release --locked -p passgate-server
cargo build --release --manifest-path "$KIT/loadgen/Cargo.toml" --target-dir target/bench-kit
PASSGATE=$ROOT/target/release/passgate
LOADGEN=$ROOT/target/bench-kit/release/loadgen
secret=$(head -c 32 /dev/urandom | base64)
if [[ " $DBS " == *" postgres "* ]]; then
  if [ -n "${PASSGATE_BENCH_POSTGRES_URL:-}" ]; then PG_ADMIN=$PASSGATE_BENCH_POSTGRES_URL; else bench_pg_start; fi
fi
echo "$ROWS" >"$OUT/large-rows.txt"

serve() {
  PASSGATE_DATABASE_URL=$1 PASSGATE_SMTP_URL=smtp://127.0.0.1:2525 PASSGATE_SECRET_KEY=$secret \
    PASSGATE_LISTEN=127.0.0.1:$PORT PASSGATE_LOG=warn "$PASSGATE" serve >>"$OUT/server-large-$2.log" 2>&1 &
  server_pid=$!
  wait_http "http://127.0.0.1:$PORT/readyz"
}

# The load, then the reads (one client, the server otherwise idle; after
# the load, so even the empty database has full pages of events).
measure() {
  local db=$1 phase=$2 url=$3 key=$4
  serve "$url" "$db"
  LOADGEN_API_KEY=$key "$LOADGEN" --target passgate --base-url "http://127.0.0.1:$PORT" --validation-url "$CALLBACK" \
    --flow link --users "$USERS" --warmup "$WARMUP" --duration "$DURATION" --time-limit $((WARMUP + DURATION + 60)) \
    --pid "$server_pid" --label "large/$db/$phase" --json "$OUT/large-$db-$phase.json" >"$OUT/loadgen-large-$db-$phase.txt"
  grep -E "logins/s|verify" "$OUT/loadgen-large-$db-$phase.txt" | head -3 || true
  python3 "$ROOT/bench/large.py" probe "http://127.0.0.1:$PORT" "$key" "$OUT/large-$db-$phase-reads.json"
  stop_server
}

for db in $DBS; do
  case $db in
    sqlite) rm -f "$WORK"/large.db*; url="sqlite://$WORK/large.db" ;;
    postgres)
      psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" -c "CREATE DATABASE $PG_DB"
      url="${PG_ADMIN%/*}/$PG_DB" ;;
  esac
  : >"$OUT/server-large-$db.log"
  key=$(PASSGATE_DATABASE_URL=$url "$PASSGATE" project create --name large --redirect-url "$CALLBACK" \
        --emails-per-minute 1000000 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secretKey"])')
  echo "== large: $db, empty"
  measure "$db" empty "$url" "$key"
  echo "== large: $db, loading $ROWS rows"
  python3 "$ROOT/bench/large.py" load "$url" "$ROWS" | tee "$OUT/large-$db-load.txt"
  echo "== large: $db, $ROWS rows"
  measure "$db" large "$url" "$key"
  [ "$db" = postgres ] && psql "$PG_ADMIN" -qc "DROP DATABASE $PG_DB WITH (FORCE)"
done
python3 "$ROOT/bench/large.py" report "$OUT" "$ROOT/BENCHMARKS.md" $DBS
