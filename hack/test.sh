#!/usr/bin/env bash
# The whole test suite, as CI runs it: builds (or reuses) kube-apiserver and
# etcd, installs promtool, Prometheus and the Pushgateway (Debian's prometheus
# and prometheus-pushgateway packages) when missing, then runs every
# package's tests against them.
set -euo pipefail
cd "$(dirname "$0")/.."
export KUBEBUILDER_ASSETS="$(hack/kube-binaries.sh)"
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null || ! command -v prometheus-pushgateway >/dev/null; then
  echo "installing Debian's prometheus and prometheus-pushgateway packages for the alert, dashboard and run-once metrics tests" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-pushgateway >/dev/null
fi
go vet ./...
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [[ -n "$unformatted" ]]; then echo "gofmt would change: $unformatted" >&2; exit 1; fi
go test -count=1 -timeout 30m "$@" ./...
