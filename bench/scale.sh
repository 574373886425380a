#!/usr/bin/env bash
# Several instances (issue 20, item 6): one PostgreSQL, INSTANCES `passgate
# serve` processes behind HAProxy (round robin per request, keep-alive to
# both sides), the kit's load generator against HAProxy. Measured twice,
# the same way: one instance behind the proxy, then INSTANCES of them, so the
# proxy's own cost is in both rows. Every instance sends mail to the
# loadgen's one SMTP sink and runs its own outbox worker and sweeper, as in
# production (docs/scale-out.md). Writes bench/results/<date>/scale-*.json,
# scale.md and the "Several instances" section of BENCHMARKS.md.
#
#   bench/scale.sh
#   INSTANCES=3 USERS=64 DURATION=30 FLOW=link bench/scale.sh
#
# On the 2-core benchmark machine the instances, PostgreSQL, HAProxy and
# the load generator share two cores, so more instances cannot add CPU:
# this shows that the instances share one database correctly under load
# and what coordination through it costs, not how far they scale on more
# machines. Needs haproxy (installed with apt-get if missing).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KIT=${BENCH_KIT:-$(cd "$ROOT/../shared/bench" && pwd)}
INSTANCES=${INSTANCES:-3}
USERS=${USERS:-64}
WARMUP=${WARMUP:-5}
DURATION=${DURATION:-30}
FLOW=${FLOW:-link}
DATE=$(date -u +%F)
OUT=$ROOT/bench/results/$DATE
WORK=$(mktemp -d)
PORT=8080
CALLBACK=http://localhost:3000/auth/callback
PG_DB=passgate_scale
mkdir -p "$OUT"
cd "$ROOT"
source "$ROOT/bench/pg_cluster.sh"

pids=()
proxy_pid=""
stop_all() {
  for pid in "${pids[@]}" $proxy_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}" $proxy_pid; do wait "$pid" 2>/dev/null || true; done
  pids=(); proxy_pid=""
}
cleanup() { stop_all; [ -z "${PASSGATE_BENCH_POSTGRES_URL:-}" ] && bench_pg_stop; rm -rf "$WORK"; }
trap cleanup EXIT
wait_http() { for _ in $(seq 1 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

command -v haproxy >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; }
echo "== building (release)"
cargo build --release --locked -p passgate-server
cargo build --release --manifest-path "$KIT/loadgen/Cargo.toml" --target-dir target/bench-kit
PASSGATE=$ROOT/target/release/passgate
LOADGEN=$ROOT/target/bench-kit/release/loadgen
secret=$(head -c 32 /dev/urandom | base64)
if [ -n "${PASSGATE_BENCH_POSTGRES_URL:-}" ]; then PG_ADMIN=$PASSGATE_BENCH_POSTGRES_URL; else bench_pg_start; fi
url="${PG_ADMIN%/*}/$PG_DB"

run() {
  local n=$1
  psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" -c "CREATE DATABASE $PG_DB"
  local key
  key=$(PASSGATE_DATABASE_URL=$url "$PASSGATE" project create --name scale --redirect-url "$CALLBACK" \
        --emails-per-minute 1000000 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secretKey"])')
  {
    printf 'global\n  maxconn 4096\n  nbthread 1\ndefaults\n  mode http\n  option http-keep-alive\n'
    printf '  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n'
    printf 'frontend passgate\n  bind 127.0.0.1:%s\n  default_backend instances\n' "$PORT"
    printf 'backend instances\n  balance roundrobin\n  http-reuse always\n'
    for i in $(seq 1 "$n"); do printf '  server i%s 127.0.0.1:%s\n' "$i" $((PORT + i)); done
  } >"$WORK/haproxy.cfg"
  local watch=()
  for i in $(seq 1 "$n"); do
    PASSGATE_DATABASE_URL=$url PASSGATE_SMTP_URL=smtp://127.0.0.1:2525 PASSGATE_SECRET_KEY=$secret \
      PASSGATE_LISTEN=127.0.0.1:$((PORT + i)) PASSGATE_METRICS_LISTEN=127.0.0.1:$((9090 + i)) PASSGATE_LOG=warn "$PASSGATE" serve >>"$OUT/server-scale-$n.log" 2>&1 &
    pids+=($!)
    watch+=(--pid $!)
  done
  for i in $(seq 1 "$n"); do wait_http "http://127.0.0.1:$((PORT + i))/readyz"; done
  haproxy -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
  proxy_pid=$!
  wait_http "http://127.0.0.1:$PORT/readyz"
  watch+=(--pid "$proxy_pid")
  LOADGEN_API_KEY=$key "$LOADGEN" --target passgate --base-url "http://127.0.0.1:$PORT" --validation-url "$CALLBACK" \
    --flow "$FLOW" --users "$USERS" --warmup "$WARMUP" --duration "$DURATION" --time-limit $((WARMUP + DURATION + 60)) \
    "${watch[@]}" --label "scale/$n" --json "$OUT/scale-$FLOW-$n.json" >"$OUT/loadgen-scale-$FLOW-$n.txt"
  # Every instance served a share: each one's request count.
  for i in $(seq 1 "$n"); do
    printf 'instance %s: ' "$i"
    curl -fs "http://127.0.0.1:$((9090 + i))/metrics" | awk '/^passgate_http_requests_total/ {s += $NF} END {print s + 0, "requests"}'
  done | tee "$OUT/scale-$FLOW-$n-shares.txt"
  stop_all
}

: >"$OUT/server-scale-1.log"; : >"$OUT/server-scale-$INSTANCES.log"
echo "== one instance behind the proxy"; run 1
echo "== $INSTANCES instances behind the proxy"; run "$INSTANCES"

python3 - "$OUT" "$ROOT/BENCHMARKS.md" "$FLOW" "$INSTANCES" "$USERS" <<'PY'
import json, os, sys
out, benchmarks, flow, n, users = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
rows = ["| instances | logins/s | start p99 | verify p99 | cycle p99 | failed | requests per instance | server CPU (cores, all instances) |",
        "|---|---|---|---|---|---|---|---|"]
for k in ("1", n):
    d = json.load(open(f"{out}/scale-{flow}-{k}.json"))
    lat = d["latencyMs"]
    shares = ", ".join(l.split(": ")[1].split()[0] for l in open(f"{out}/scale-{flow}-{k}-shares.txt").read().splitlines())
    procs = d["processes"][:-1]  # the last is HAProxy
    cores = sum(p["cpuSeconds"] for p in procs) / d["windowSeconds"]
    rows.append(f'| {k} | {d["loginsPerSecond"]:,.1f} | {lat["start"]["p99"]:.1f} ms | {lat["verify"]["p99"]:.1f} ms | '
                f'{lat["cycle"]["p99"]:.1f} ms | {d["failed"]} | {shares} | {cores:.2f} |')
date = os.path.basename(os.path.normpath(out))
section = "\n".join([f"### Several instances, {date}", "",
    f"The {flow} flow, {users} users, 5 s warm-up + 30 s, one PostgreSQL (the bench's own cluster), "
    "the instances behind HAProxy (round robin per request) on the same 2-core machine "
    "(`bench/scale.sh`; the machine's two cores are shared by all, so this measures correctness and "
    "coordination cost under load, not added capacity).", ""] + rows + [""])
open(f"{out}/scale.md", "w").write(section)
sys.path.insert(0, os.path.dirname(os.path.abspath(benchmarks)) + "/bench")
import sections
sections.publish(benchmarks, "scale", section)
print(section)
PY
