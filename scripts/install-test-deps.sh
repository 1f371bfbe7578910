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
