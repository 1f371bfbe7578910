#!/usr/bin/env bash
# Every check CI runs, in the order it runs them: formatting, clippy with warnings as errors,
# all tests (unit, integration, network tests when root), then doctests and the API docs
# (broken intra-doc links fail).
# Tests that need root or a missing tool print why they skip.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
else
  echo "cargo-nextest not found: falling back to cargo test" >&2
  cargo test --workspace --all-features --no-fail-fast --lib --bins --tests
fi
cargo test --workspace --all-features --doc
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --quiet
