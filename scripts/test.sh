#!/usr/bin/env bash
# Everything CI checks, in the order it checks it: formatting, lints with
# warnings denied, then every test of the workspace — unit, property, the
# store conformance suite on SQLite and PostgreSQL, the server integration
# tests (real SMTP, real binary) on SQLite, then again on PostgreSQL.
#
# Needs a Rust toolchain and a PostgreSQL server it may create databases on
# (PASSGATE_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres).
# A local cluster that is down is started; `.ci/run` installs one on a bare machine.
set -euo pipefail
cd "$(dirname "$0")/.."

export PASSGATE_TEST_POSTGRES_URL=${PASSGATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
if ! pg_isready -q -d "$PASSGATE_TEST_POSTGRES_URL" 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "== starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -d "$PASSGATE_TEST_POSTGRES_URL" && break; sleep 1; done
  fi
fi
pg_isready -d "$PASSGATE_TEST_POSTGRES_URL" || { echo "PostgreSQL is not reachable at $PASSGATE_TEST_POSTGRES_URL" >&2; exit 1; }

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  run_tests() { cargo nextest run --locked --no-fail-fast "$@"; }
else
  run_tests() { cargo test --locked --no-fail-fast "$@"; }
fi

echo "== tests (server on SQLite; stores on both)"
PASSGATE_TEST_BACKEND=sqlite run_tests --workspace

echo "== server integration tests on PostgreSQL"
# The same package selection as above, so nothing is rebuilt; the filter picks
# the server's integration tests (the rest already ran and do not depend on
# PASSGATE_TEST_BACKEND).
if cargo nextest --version >/dev/null 2>&1; then
  PASSGATE_TEST_BACKEND=postgres run_tests --workspace -E 'binary_id(passgate-server::it)'
else
  PASSGATE_TEST_BACKEND=postgres run_tests --workspace --test it
fi
