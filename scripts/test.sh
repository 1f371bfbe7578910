#!/usr/bin/env bash
# Every check CI runs, in the order it runs them: formatting, clippy with warnings as errors,
# the real Kubernetes API server for the end-to-end suites (built from Go modules and started
# here, see docs/e2e.md), all tests (unit, integration, network tests when root, the e2e suites
# on that server), then doctests and the API docs (broken intra-doc links fail).
#
# Outside CI a test that lacks root, a DHCP client or the API server prints why it skips; under
# CI=true it fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
else
  echo "test.sh: cargo fmt is not installed on this machine: formatting was NOT checked" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --all-features -- -D warnings
else
  echo "test.sh: cargo clippy is not installed on this machine: lints were NOT checked" >&2
fi

# Dependencies: none declared and unused; licences, bans and sources as deny.toml says.
for check in "machete" "deny check bans licenses sources"; do
  tool=cargo-${check%% *}
  if command -v "$tool" >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    cargo $check
  elif [ "${CI:-}" = "true" ]; then
    echo "test.sh: $tool is not installed (scripts/install-test-deps.sh installs it): failing" >&2
    exit 1
  else
    echo "test.sh: $tool is not installed: 'cargo $check' was NOT run (scripts/install-test-deps.sh installs it)" >&2
  fi
done

# The API server: build, start, export its kubeconfig, stop it on exit.
server_pid=
run_dir=
stop_server() {
  status=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -n "$run_dir" ]; then
    if [ "$status" -ne 0 ]; then
      echo "test.sh: the API server's last log lines ($run_dir/server.log):" >&2
      tail -n 30 "$run_dir/server.log" >&2 2>/dev/null || true
    fi
    [ -n "${VMDHCP_E2E_KEEP:-}" ] || rm -rf "$run_dir"
  fi
}
trap stop_server EXIT
if server_bin=$(scripts/kube-test-server/build.sh); then
  run_dir=$(mktemp -d "$root/target/kube-test-server/run.XXXXXX")
  "$server_bin" --dir "$run_dir" >"$run_dir/stdout" 2>"$run_dir/stderr" &
  server_pid=$!
  for _ in $(seq 1 180); do
    grep -q '^kube-test-server ready:' "$run_dir/stdout" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 1
  done
  if ! grep -q '^kube-test-server ready:' "$run_dir/stdout" 2>/dev/null; then
    echo "test.sh: kube-test-server did not get ready; its stderr:" >&2
    tail -n 40 "$run_dir/stderr" >&2
    exit 1
  fi
  cat "$run_dir/stdout"
  export VMDHCP_E2E_KUBECONFIG="$run_dir/admin.kubeconfig"
  export VMDHCP_KUBE_TEST_SERVER="$server_bin"
  export KUBECTL="$(dirname "$server_bin")/kubectl"
elif [ "${CI:-}" = "true" ]; then
  echo "test.sh: CI=true and the API server could not be built: failing" >&2
  exit 1
else
  echo "test.sh: no API server (see above): the e2e suites will skip and say so" >&2
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
else
  echo "cargo-nextest not found: falling back to cargo test" >&2
  cargo test --workspace --all-features --no-fail-fast --lib --bins --tests
fi
cargo test --workspace --all-features --doc
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --quiet
