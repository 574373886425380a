#!/usr/bin/env bash
# The benchmark: passgate side by side with a peer on this machine, in one
# run, with the neutral kit in ../shared/bench (loadgen with its SMTP sink,
# the better-auth peer, rawdb). Writes BENCHMARKS.md at the project root and
# the raw reports under bench/results/<date>/.
#
#   bench/run.sh                       # everything (about 25 minutes)
#   QUICK=1 USERS=64 DURATION=10 DBS=sqlite PEER=0 bench/run.sh   # a quick look
#
# QUICK=1 runs only the login rows, into a scratch folder, and leaves
# BENCHMARKS.md alone (its figures come from full runs only).
#
# Settings (environment): FLOWS ("link otp": the kit's flows, each against
# both targets), USERS ("1 16 64"), WARMUP (5), DURATION (30),
# DBS ("sqlite postgres"), PEER (1 to run better-auth too), BENCH_KIT,
# RESULTS (bench/results/<today>: where a full run writes its reports),
# MAX_STEAL (0.15) and TRIES (3): on a shared VM the hypervisor may take CPU
# from us mid-run (loadgen reports it as steal); a row whose window lost
# more than MAX_STEAL cores is measured again, up to TRIES times, and the
# report shows the steal of the run it kept.
# ROUNDS (3) and ROUND_USERS ("64"): the rows at those concurrencies, which
# the targets are judged on, are measured ROUNDS times, passgate and the
# peer taking turns, and the report keeps each side's median round. This
# host's speed drifts by tens of percent within minutes; taking turns gives
# both sides the same drift, and the median drops a round that caught a
# slow or a fast spell.
# Needs: Rust, Node 20 + npm, PostgreSQL on 127.0.0.1:5432 (root, as on the
# benchmark machine: the peer's setup creates its role and database).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KIT=${BENCH_KIT:-$(cd "$ROOT/../shared/bench" && pwd)}
FLOWS=${FLOWS:-"link otp"}
USERS=${USERS:-"1 16 64"}
WARMUP=${WARMUP:-5}
DURATION=${DURATION:-30}
DBS=${DBS:-"sqlite postgres"}
PEER=${PEER:-1}
DATE=$(date -u +%F)
QUICK=${QUICK:-0}
WORK=$(mktemp -d)
# A second run the same day must not overwrite the first: RESULTS=bench/results/<date>b.
OUT=$(realpath -m "${RESULTS:-$ROOT/bench/results/$DATE}")
[ "$QUICK" = 1 ] && OUT=$WORK/results
PORT=8080
PEER_PORT=4100
CALLBACK=http://localhost:3000/auth/callback
PG_ADMIN=${PASSGATE_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_DB=passgate_bench
MAX_STEAL=${MAX_STEAL:-0.15}
TRIES=${TRIES:-3}
ROUNDS=${ROUNDS:-3}
ROUND_USERS=${ROUND_USERS:-64}
mkdir -p "$OUT"
# Rounds of an earlier run the same day would be read as this run's.
for flow in $FLOWS; do rm -f "$OUT"/*-"$flow"-*.round*.*; done
cd "$ROOT"

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT

wait_http() { for _ in $(seq 1 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
postmaster_pid() { head -n1 "$(pg_lsclusters -h | awk 'NR==1{print $6}')/postmaster.pid"; }

echo "== building (release)"
cargo build --release --locked -p passgate-server -p passgate-bench
cargo build --release --manifest-path "$KIT/loadgen/Cargo.toml" --target-dir target/bench-kit
cargo build --release --manifest-path "$KIT/rawdb/Cargo.toml" --target-dir target/bench-kit
PASSGATE=$ROOT/target/release/passgate
LOADGEN=$ROOT/target/bench-kit/release/loadgen
RAWDB=$ROOT/target/bench-kit/release/rawdb
command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [ "$PEER" = 1 ] && [ ! -d "$KIT/peers/better-auth/node_modules" ]; then
  echo "== setting up the better-auth peer"
  "$KIT/peers/better-auth/setup.sh"
fi

secret=$(head -c 32 /dev/urandom | base64)

# One passgate run: a fresh database, a project whose send limit is raised
# with the documented setting (every other check stays on), a fresh process.
run_passgate() {
  local db=$1 users=$2 flow=$3 url pids=()
  case $db in
    sqlite) rm -f "$WORK"/bench.db*; url="sqlite://$WORK/bench.db" ;;
    postgres)
      psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" -c "CREATE DATABASE $PG_DB"
      url="${PG_ADMIN%/*}/$PG_DB" ;;
  esac
  local key
  key=$(PASSGATE_DATABASE_URL=$url "$PASSGATE" project create --name bench --redirect-url "$CALLBACK" \
        --emails-per-minute 1000000 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secretKey"])')
  PASSGATE_DATABASE_URL=$url PASSGATE_SMTP_URL=smtp://127.0.0.1:2525 PASSGATE_SECRET_KEY=$secret \
    PASSGATE_LISTEN=127.0.0.1:$PORT PASSGATE_LOG=warn "$PASSGATE" serve >"$OUT/server-passgate-$db-$flow-$users.log" 2>&1 &
  server_pid=$!
  wait_http "http://127.0.0.1:$PORT/readyz"
  pids=(--pid "$server_pid")
  [ "$db" = postgres ] && pids+=(--pid "$(postmaster_pid)" --pid-tree)
  LOADGEN_API_KEY=$key "$LOADGEN" --target passgate --base-url "http://127.0.0.1:$PORT" --validation-url "$CALLBACK" \
    --flow "$flow" --users "$users" --warmup "$WARMUP" --duration "$DURATION" --time-limit $((WARMUP + DURATION + 60)) \
    "${pids[@]}" --label "passgate/$db" --json "$OUT/passgate-$db-$flow-$users.json" >"$OUT/loadgen-passgate-$db-$flow-$users.txt"
  stop_server
}

run_peer() {
  local db=$1 users=$2 flow=$3 pids=()
  export PGHOST=127.0.0.1 PGUSER=bench PGPASSWORD=bench PGDATABASE=better_auth_bench
  case $db in
    postgres) psql -q -c 'TRUNCATE "user", "session", "account", "verification" CASCADE' ;;
    sqlite)
      rm -f "$KIT/peers/better-auth/better-auth.db"*
      (cd "$KIT/peers/better-auth" && DB_KIND=sqlite BETTER_AUTH_SECRET=migrate-only-secret-0000000000000000 node migrate.mjs >/dev/null) ;;
  esac
  DB_KIND=$db PORT=$PEER_PORT "$KIT/peers/better-auth/run.sh" >"$OUT/server-better-auth-$db-$flow-$users.log" 2>&1 &
  server_pid=$!
  wait_http "http://127.0.0.1:$PEER_PORT/healthz"
  pids=(--pid "$server_pid")
  [ "$db" = postgres ] && pids+=(--pid "$(postmaster_pid)" --pid-tree)
  "$LOADGEN" --target better-auth --base-url "http://127.0.0.1:$PEER_PORT" --flow "$flow" --users "$users" \
    --warmup "$WARMUP" --duration "$DURATION" --time-limit $((WARMUP + DURATION + 60)) \
    "${pids[@]}" --label "better-auth/$db" --json "$OUT/better-auth-$db-$flow-$users.json" >"$OUT/loadgen-better-auth-$db-$flow-$users.txt"
  stop_server
  unset PGHOST PGUSER PGPASSWORD PGDATABASE
}

# Runs one row until the hypervisor left it alone (see MAX_STEAL).
measure() {
  local what=$1 db=$2 users=$3 flow=$4 try steal
  for try in $(seq 1 "$TRIES"); do
    echo "== $what $db $flow, $users users (try $try)"
    "run_$what" "$db" "$users" "$flow"
    steal=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1])).get("machineStealCores") or 0, 2))' \
      "$OUT/$(echo "$what" | sed 's/peer/better-auth/')-$db-$flow-$users.json")
    python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' "$steal" "$MAX_STEAL" && return 0
    echo "   the hypervisor took $steal cores during the window; measuring again"
    sleep 10
  done
}

# Keeps one measured row under its round's name: <target>-<db>-<flow>-<users>.round<N>.json.
keep_round() {
  local target=$1 db=$2 users=$3 flow=$4 round=$5 f
  for f in "$OUT/$target-$db-$flow-$users".json "$OUT/loadgen-$target-$db-$flow-$users".txt; do
    cp "$f" "${f%.*}.round$round.${f##*.}"
  done
}

for flow in $FLOWS; do
  for db in $DBS; do
    for users in $USERS; do
      rounds=1
      case " $ROUND_USERS " in *" $users "*) rounds=$ROUNDS ;; esac
      for round in $(seq 1 "$rounds"); do
        measure passgate "$db" "$users" "$flow"
        if [ "$rounds" -gt 1 ]; then keep_round passgate "$db" "$users" "$flow" "$round"; fi
        if [ "$PEER" = 1 ]; then
          measure peer "$db" "$users" "$flow"
          if [ "$rounds" -gt 1 ]; then keep_round better-auth "$db" "$users" "$flow" "$round"; fi
        fi
      done
    done
  done
done

if [ "$QUICK" = 1 ]; then
  for f in "$OUT"/loadgen-*.txt; do echo "-- $f"; cat "$f"; done
  exit 0
fi

echo "== limits: the database alone, and an axum hello-world"
"$RAWDB" --synchronous full --duration "$DURATION" --json >"$OUT/raw-sqlite-full.txt" 2>&1 || true
"$RAWDB" --synchronous normal --duration "$DURATION" --json >"$OUT/raw-sqlite-normal.txt" 2>&1 || true
CLIENTS="16 64" DURATION=$DURATION "$KIT/rawdb/run_pg.sh" >"$OUT/raw-postgres.txt" 2>&1 || true
"$ROOT/target/release/hello-axum" 127.0.0.1:8090 &
server_pid=$!
wait_http http://127.0.0.1:8090/hello
for c in 16 64; do
  wrk -t2 -c"$c" -d"${DURATION}s" http://127.0.0.1:8090/hello >"$OUT/hello-axum-$c.txt"
done
stop_server

echo "== micro-benchmarks"
cargo bench --locked -p passgate-core --bench hot_path >"$OUT/micro.txt" 2>&1 || true

python3 "$ROOT/bench/report.py" "$OUT" >"$ROOT/BENCHMARKS.md"
echo "wrote BENCHMARKS.md (reports in bench/results/$DATE)"
