#!/usr/bin/env bash
# Everything CI checks, in the order it checks it: formatting, lints with
# warnings denied, then every test of the workspace (unit, property,
# conformance on SQLite, integration over real SMTP, the real binary).
# Needs only a Rust toolchain; `.ci/run` installs what a bare machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  # (nextest skips doctests; the workspace has none: examples live in tests.)
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
