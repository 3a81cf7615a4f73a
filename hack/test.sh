#!/usr/bin/env bash
# The whole test suite, as CI runs it: builds (or reuses) kube-apiserver and
# etcd, then runs every package's tests against them.
set -euo pipefail
cd "$(dirname "$0")/.."
export KUBEBUILDER_ASSETS="$(hack/kube-binaries.sh)"
go vet ./...
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [[ -n "$unformatted" ]]; then echo "gofmt would change: $unformatted" >&2; exit 1; fi
go test -count=1 -timeout 30m "$@" ./...
