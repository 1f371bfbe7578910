#!/usr/bin/env bash
# Builds the e2e suites' API server (this directory's Go program) into
# target/kube-test-server/kube-test-server and prints that path; also kubectl of the same
# Kubernetes release (a `tool` of go.mod) as target/kube-test-server/kubectl, which the webhook
# suite uses to check what users see. Its Go dependencies come from
# the Go module proxy, pinned by go.sum. A cold build takes about 7 minutes on 2 cores; later
# builds reuse Go's build cache.
#
# Not with -trimpath: Kubernetes' test server finds its test data through its source path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../../target/kube-test-server"
if ! command -v go >/dev/null 2>&1; then
  echo "kube-test-server: go is not installed (Go 1.26 or later builds the e2e API server)" >&2
  exit 1
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here"
# The machine's own Go builds it (go.mod needs 1.26); never fetch another toolchain.
GOTOOLCHAIN=local GOFLAGS=-buildvcs=false go build -o "$out/kube-test-server" . >&2
k8s=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' go.mod)
version="-X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/client-go/pkg/version.gitVersion=$k8s"
GOTOOLCHAIN=local GOFLAGS=-buildvcs=false go build -ldflags "$version" -o "$out/kubectl" k8s.io/kubernetes/cmd/kubectl >&2
echo "$out/kube-test-server"
