# Sourced by the bench scripts: a PostgreSQL cluster of the bench's own, so
# its settings are the bench's and not whatever the machine's cluster has
# (issue 20: autovacuum must be on, and on some machines it is off). The
# Debian server binaries, initdb'd under /tmp as the `postgres` user, on
# 127.0.0.1:$BENCH_PG_PORT with trust auth; stopped and removed on exit by
# `bench_pg_stop`. Settings are PostgreSQL's defaults except those named
# here and any in BENCH_PG_OPTIONS ("-c name=value …"). The WAL settings
# are the usual ones for a write-heavy database (docs/scale-out.md): with
# the defaults, every first change to a page after a checkpoint writes the
# whole page to the WAL, and in large indexes that receive random keys
# (token hashes, addresses) nearly every insert is such a first change.
#
#   source bench/pg_cluster.sh; bench_pg_start   # sets PG_ADMIN
BENCH_PG_PORT=${BENCH_PG_PORT:-5544}
BENCH_PG_DIR=${BENCH_PG_DIR:-/tmp/passgate-bench-pg}

bench_pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1; }

bench_pg_as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

bench_pg_start() {
  local bin
  bin=$(bench_pg_bin)
  bench_pg_stop
  mkdir -p "$BENCH_PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres: "$BENCH_PG_DIR"
  bench_pg_as_postgres "$bin/initdb" -D "$BENCH_PG_DIR/data" -U postgres -A trust -E UTF8 >/dev/null
  bench_pg_as_postgres "$bin/pg_ctl" -D "$BENCH_PG_DIR/data" -l "$BENCH_PG_DIR/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$BENCH_PG_PORT -c unix_socket_directories=$BENCH_PG_DIR \
        -c autovacuum=on -c max_connections=200 -c shared_buffers=256MB \
        -c wal_compression=lz4 -c checkpoint_timeout=30min -c max_wal_size=8GB ${BENCH_PG_OPTIONS:-}" \
    start >/dev/null
  PG_ADMIN=postgres://postgres@127.0.0.1:$BENCH_PG_PORT/postgres
  psql "$PG_ADMIN" -Atqc "SELECT 'bench cluster: PostgreSQL ' || current_setting('server_version') ||
    ', autovacuum ' || current_setting('autovacuum') || ', port ' || current_setting('port')"
}

bench_pg_stop() {
  if [ -f "$BENCH_PG_DIR/data/postmaster.pid" ]; then
    bench_pg_as_postgres "$(bench_pg_bin)/pg_ctl" -D "$BENCH_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$BENCH_PG_DIR"
}
