#!/usr/bin/env bash
# The soak benchmark: passgate under steady load for a long time, with a
# retention horizon short enough that the sweeper reaches a steady state
# inside the run, to show that its cost does not grow with its age.
#
#   bench/soak.sh                                  # link flow, 30 min on SQLite, then on PostgreSQL
#   MINUTES=5 DBS=sqlite FLOWS=link bench/soak.sh  # a short look
#
# Each minute is one loadgen window of 60 s against the same server and
# database (the kit's SMTP sink restarts between windows; the server's
# pooled connections reconnect). Every window signs in the same addresses
# again (`--email-tag ''`: u{vu}-{i}@bench.test, i from 0), so the users
# table stops growing too: users are accounts, which retention keeps, and
# with ever-new addresses the database would grow by the accounts it signs
# up (a first run measured that: about 1 GB of users in 16 minutes). The
# per-recipient limit is raised for the same reason (each address gets an
# email a minute). After each window: the server's RSS, the
# database's size on disk (SQLite: the file and its WAL; PostgreSQL: the
# database's relations) and the row counts of the tables retention keeps
# bounded. Writes bench/results/<date>/soak-<flow>-<db>.csv, a plot
# soak-<flow>.png, and the "Soak" section of BENCHMARKS.md.
#
# Settings (environment): MINUTES (30), USERS (64), FLOWS ("link otp"),
# DBS ("sqlite postgres"), RETAIN (the horizon of logins, emails and events;
# "1m"), SWEEP ("10s"), BENCH_KIT, PASSGATE_BENCH_POSTGRES_URL (a cluster to
# use instead of the bench's own, see bench/pg_cluster.sh; it must run
# autovacuum). The project's
# links live one minute (the shortest allowed): a login is kept its lifetime
# plus RETAIN, so the steady state comes within a few minutes.
# Targets (issue 20): the last five minutes' logins/s at least 90% of the
# first five's; database size and RSS flat once retention has caught up.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KIT=${BENCH_KIT:-$(cd "$ROOT/../shared/bench" && pwd)}
MINUTES=${MINUTES:-30}
USERS=${USERS:-64}
FLOWS=${FLOWS:-"link otp"}
DBS=${DBS:-"sqlite postgres"}
RETAIN=${RETAIN:-1m}
SWEEP=${SWEEP:-10s}
DATE=$(date -u +%F)
OUT=$ROOT/bench/results/$DATE
WORK=$(mktemp -d)
PORT=8080
CALLBACK=http://localhost:3000/auth/callback
PG_DB=passgate_soak
source "$ROOT/bench/pg_cluster.sh"
mkdir -p "$OUT"
cd "$ROOT"

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
wait_http() { for _ in $(seq 1 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

echo "== building (release)"
cargo build --release --locked -p passgate-server
cargo build --release --manifest-path "$KIT/loadgen/Cargo.toml" --target-dir target/bench-kit
PASSGATE=$ROOT/target/release/passgate
LOADGEN=$ROOT/target/bench-kit/release/loadgen
# The plot: matplotlib in a virtualenv of the bench's own.
VENV=$ROOT/target/bench-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q matplotlib
fi
secret=$(head -c 32 /dev/urandom | base64)
# PostgreSQL: the bench's own cluster (autovacuum on), unless one is given.
if [[ " $DBS " == *" postgres "* ]]; then
  if [ -n "${PASSGATE_BENCH_POSTGRES_URL:-}" ]; then PG_ADMIN=$PASSGATE_BENCH_POSTGRES_URL; else bench_pg_start; fi
fi

# The database's size on disk and its row counts, as one CSV fragment:
# db_mib,logins,otp_codes,outbox,events,idempotency_keys,webhook_deliveries
measure_db() {
  local db=$1 url=$2
  case $db in
    sqlite)
      "$VENV/bin/python" - "$WORK/soak.db" <<'EOF'
import os, sqlite3, sys
path = sys.argv[1]
size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
          for t in ("logins", "otp_codes", "outbox", "events", "idempotency_keys", "webhook_deliveries")]
print(",".join([f"{size / 2**20:.1f}"] + [str(c) for c in counts]))
EOF
      ;;
    postgres)
      psql "$url" -Atqc "SELECT round(pg_database_size(current_database()) / 1048576.0, 1) || ',' ||
        (SELECT count(*) FROM logins) || ',' || (SELECT count(*) FROM otp_codes) || ',' ||
        (SELECT count(*) FROM outbox) || ',' || (SELECT count(*) FROM events) || ',' ||
        (SELECT count(*) FROM idempotency_keys) || ',' || (SELECT count(*) FROM webhook_deliveries)" ;;
  esac
}

soak() {
  local flow=$1 db=$2 url csv=$OUT/soak-$flow-$db.csv
  case $db in
    sqlite) rm -f "$WORK"/soak.db*; url="sqlite://$WORK/soak.db" ;;
    postgres)
      psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" -c "CREATE DATABASE $PG_DB"
      url="${PG_ADMIN%/*}/$PG_DB" ;;
  esac
  local key
  key=$(PASSGATE_DATABASE_URL=$url "$PASSGATE" project create --name soak --redirect-url "$CALLBACK" \
        --emails-per-minute 1000000 --emails-per-recipient 1000 --otp-sends-per-email 100 --link-ttl 1m --event-retention "$RETAIN" --json \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["secretKey"])')
  PASSGATE_DATABASE_URL=$url PASSGATE_SMTP_URL=smtp://127.0.0.1:2525 PASSGATE_SECRET_KEY=$secret \
    PASSGATE_RETAIN_LOGINS=$RETAIN PASSGATE_RETAIN_EMAILS=$RETAIN PASSGATE_SWEEP_INTERVAL=$SWEEP \
    PASSGATE_LISTEN=127.0.0.1:$PORT PASSGATE_LOG=warn "$PASSGATE" serve >"$OUT/server-soak-$flow-$db.log" 2>&1 &
  server_pid=$!
  wait_http "http://127.0.0.1:$PORT/readyz"
  echo "minute,logins_per_s,verify_p99_ms,cycle_p99_ms,errors,rss_mib,db_mib,logins,otp_codes,outbox,events,idempotency_keys,webhook_deliveries" >"$csv"
  for minute in $(seq 1 "$MINUTES"); do
    local report=$WORK/minute.json
    LOADGEN_API_KEY=$key "$LOADGEN" --target passgate --base-url "http://127.0.0.1:$PORT" --validation-url "$CALLBACK" \
      --flow "$flow" --users "$USERS" --warmup 0 --duration 60 --time-limit 120 --pid "$server_pid" --email-tag '' \
      --label "soak/$db" --json "$report" >"$WORK/minute.txt"
    local row
    row=$(python3 - "$report" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
lat = d["latencyMs"]
rss = max(p["windowMaxRssKib"] for p in d["processes"]) / 1024
print(f'{d["loginsPerSecond"]:.1f},{lat["verify"]["p99"]:.2f},{lat["cycle"]["p99"]:.2f},{d["failed"]},{rss:.1f}')
EOF
)
    echo "$minute,$row,$(measure_db "$db" "$url")" | tee -a "$csv"
  done
  stop_server
}

for flow in $FLOWS; do
  for db in $DBS; do
    echo "== soak: $flow on $db, $USERS users, $MINUTES minutes, retention $RETAIN"
    soak "$flow" "$db"
  done
  "$VENV/bin/python" "$ROOT/bench/soak_report.py" "$OUT" "$flow" "$RETAIN" "$USERS" $DBS
done
"$VENV/bin/python" "$ROOT/bench/soak_report.py" --benchmarks "$ROOT/BENCHMARKS.md" "$OUT"
