#!/usr/bin/env bash
# Everything CI checks, in the order it checks it: formatting, lints with
# warnings denied, then every test of the workspace — unit, property, the
# store conformance suite on SQLite and PostgreSQL, the server integration
# tests (real SMTP, real binary, the example apps in examples/) on SQLite,
# then again on PostgreSQL.
#
# Needs a Rust toolchain, Node.js 20+ with npm and Python 3 with venv (for
# the example apps, whose dependencies it installs first), Debian's chromium
# and chromium-driver (installed with apt when run as root), and a PostgreSQL
# server it may create databases on (PASSGATE_TEST_POSTGRES_URL, default
# postgres://postgres@127.0.0.1:5432/postgres).
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

echo "== the example apps' dependencies"
# examples/ holds two apps that sign in with passgate; the server's
# integration tests run them end to end (tests/it/examples.rs) and fail when
# these are missing. Each install is skipped while its lock file is the one
# it was made from, so a second run costs nothing.
node_dir=examples/node-express
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
  || { echo "Node.js 20+ and npm are needed for $node_dir (.ci/run installs them)" >&2; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || { echo "$node_dir needs Node.js 20 or later; this is $(node --version)" >&2; exit 1; }
node_stamp=$(sha256sum "$node_dir/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$node_dir/node_modules/.passgate-installed" 2>/dev/null)" != "$node_stamp" ]; then
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$node_stamp" > "$node_dir/node_modules/.passgate-installed"
fi
py_dir=examples/python-flask
py_stamp=$(sha256sum "$py_dir/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$py_dir/.venv/.passgate-installed" 2>/dev/null)" != "$py_stamp" ] \
  || ! "$py_dir/.venv/bin/python" -c '' 2>/dev/null; then
  python3 -m venv --clear "$py_dir/.venv" \
    || { echo "python3 -m venv failed: install python3-venv (.ci/run does)" >&2; exit 1; }
  "$py_dir/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$py_dir/requirements.txt"
  echo "$py_stamp" > "$py_dir/.venv/.passgate-installed"
fi

echo "== a browser for the proxy app's end-to-end tests"
# examples/proxy-app/tests/e2e.rs drives Debian's Chromium over WebDriver.
if ! command -v chromedriver >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "the proxy app's browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)" >&2
    exit 1
  fi
fi

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

echo "== the SDK's documentation examples"
# nextest runs no doctests; the SDK's examples must compile.
cargo test --locked --doc -p passgate-client

echo "== server integration tests on PostgreSQL"
# The same package selection as above, so nothing is rebuilt; the filter picks
# the server's integration tests (the rest already ran and do not depend on
# PASSGATE_TEST_BACKEND).
if cargo nextest --version >/dev/null 2>&1; then
  PASSGATE_TEST_BACKEND=postgres run_tests --workspace -E 'binary_id(passgate-server::it)'
else
  PASSGATE_TEST_BACKEND=postgres run_tests --workspace --test it
fi
