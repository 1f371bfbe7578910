#!/usr/bin/env bash
# Installs what the tests use that a fresh Debian machine lacks: real DHCP clients for the
# end-to-end tests and the network tools they drive. Needs root (apt-get).
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: not root, skipping package installation (network tests will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  iproute2 ethtool udhcpc isc-dhcp-client dhcpcd-base procps tcpdump >/dev/null
echo "install-test-deps: installed udhcpc, dhclient, dhcpcd, iproute2, ethtool, tcpdump"
# Helm's Go engine (there is no helm binary in these registries) for vmdhcp-api/tests/chart.rs:
# re-render the chart and lint it. Without it those two checks skip and say so.
if python3 -m pip install --quiet --no-input helm-python-sdk==0.2.2; then
  echo "install-test-deps: installed helm-python-sdk (Helm SDK for the chart test)"
else
  echo "install-test-deps: helm-python-sdk could not be installed; the chart test's render and lint checks will skip" >&2
fi
# The dependency checks of scripts/test.sh: unused dependencies, licences, bans, sources.
# (No prebuilt binaries can be fetched here: cargo builds them, about 5 minutes once.)
for tool in "cargo-machete@0.9.2" "cargo-deny@0.20.2"; do
  name=${tool%@*}
  if ! command -v "$name" >/dev/null 2>&1; then
    cargo install --locked --quiet "$tool"
    echo "install-test-deps: installed $tool"
  fi
done
