#!/usr/bin/env bash
# What a session credential and a stamp cost a login (issue 16, item 7):
# the project's own load tool, otp-session-load (crates/passgate-bench), runs
# the OTP flow in three modes against a passgate it starts on a fresh
# database: `code` (send, code from the email, verify: the kit's otp flow),
# `credential` (the same with a targetPublicKey, so the verify mints a
# session key and seals it, and the client opens the bundle) and `stamped`
# (then a session/whoami signed with the session key by Turnkey's stamper).
# The modes take turns, ROUNDS times, so the host's drift falls on all of
# them; each mode's median round is reported. Writes
# bench/results/<date>/session-<db>-<mode>.round<N>.json and session.md, and
# the "Session credentials and stamps" section of BENCHMARKS.md (bench/SESSION.md).
#
#   bench/session.sh
#   ROUNDS=1 DURATION=10 DBS=sqlite bench/session.sh   # a quick look
#
# Settings (environment): USERS (64), WARMUP (5), DURATION (20), ROUNDS (3),
# DBS ("sqlite postgres"), PASSGATE_BENCH_POSTGRES_URL (else the bench's own
# cluster, bench/pg_cluster.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
USERS=${USERS:-64}
WARMUP=${WARMUP:-5}
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
DBS=${DBS:-"sqlite postgres"}
DATE=$(date -u +%F)
OUT=$ROOT/bench/results/$DATE
WORK=$(mktemp -d)
PG_DB=passgate_session
mkdir -p "$OUT"
rm -f "$OUT"/session-*.json
cd "$ROOT"
source "$ROOT/bench/pg_cluster.sh"
cleanup() { [ -z "${PASSGATE_BENCH_POSTGRES_URL:-}" ] && bench_pg_stop; rm -rf "$WORK"; }
trap cleanup EXIT

echo "== building (release)"
cargo build --release --locked -p passgate-server -p passgate-bench
PASSGATE=$ROOT/target/release/passgate
LOAD=$ROOT/target/release/otp-session-load
if [[ " $DBS " == *" postgres "* ]]; then
  if [ -n "${PASSGATE_BENCH_POSTGRES_URL:-}" ]; then PG_ADMIN=$PASSGATE_BENCH_POSTGRES_URL; else bench_pg_start; fi
fi

for db in $DBS; do
  for round in $(seq 1 "$ROUNDS"); do
    for mode in code credential stamped; do
      echo "== $db, $mode, round $round"
      pid_args=()
      case $db in
        sqlite) rm -f "$WORK"/session.db*; url="sqlite://$WORK/session.db" ;;
        postgres)
          psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" -c "CREATE DATABASE $PG_DB"
          url="${PG_ADMIN%/*}/$PG_DB"
          data_dir=$(psql "$PG_ADMIN" -Atc "SHOW data_directory")
          [ -r "$data_dir/postmaster.pid" ] && pid_args=(--db-pid "$(head -n1 "$data_dir/postmaster.pid")") ;;
      esac
      "$LOAD" --passgate "$PASSGATE" --database-url "$url" --mode "$mode" --users "$USERS" \
        --warmup "$WARMUP" --duration "$DURATION" "${pid_args[@]}" \
        --json "$OUT/session-$db-$mode.round$round.json" >/dev/null
    done
  done
done

python3 "$ROOT/bench/session_report.py" "$OUT" "$DBS" "$USERS" "$DURATION"
