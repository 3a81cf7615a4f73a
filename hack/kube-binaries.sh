#!/usr/bin/env bash
# Builds kube-apiserver (k8s.io/kubernetes) and etcd (go.etcd.io/etcd/server/v3)
# from the Go module proxy into a cache folder outside the repo, and prints
# that folder. A warm cache returns at once. Tests and the demo point
# KUBEBUILDER_ASSETS at the printed folder.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
STAGING_VERSION="${STAGING_VERSION:-v0.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
CACHE_ROOT="${ROTATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rotator}"
OUT="$CACHE_ROOT/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"

log() { echo "kube-binaries: $*" >&2; }

if [[ -x "$OUT/kube-apiserver" && -x "$OUT/etcd" ]]; then
  echo "$OUT"
  exit 0
fi

mkdir -p "$OUT"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

if [[ ! -x "$OUT/etcd" ]]; then
  log "building etcd $ETCD_VERSION (cold: a few minutes)"
  mkdir -p "$work/etcd"
  (
    cd "$work/etcd"
    go mod init scratch/etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1
    go build -trimpath -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3
  )
  mv "$OUT/etcd.tmp" "$OUT/etcd"
fi

if [[ ! -x "$OUT/kube-apiserver" ]]; then
  log "building kube-apiserver $KUBE_VERSION (cold: about 10 minutes on 2 cores)"
  mkdir -p "$work/kube"
  # k8s.io/kubernetes pins its staging modules at v0.0.0 and replaces them
  # with local paths; a consumer must replace each with its real release.
  modfile="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$modfile" ]] || { log "could not fetch go.mod of k8s.io/kubernetes@$KUBE_VERSION"; exit 1; }
  staging="$(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$modfile" | awk '{print $1}' | sort -u)"
  [[ -n "$staging" ]] || { log "found no staging replaces in $modfile"; exit 1; }
  (
    cd "$work/kube"
    {
      echo "module scratch/kube"
      echo
      echo "go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')"
      echo
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      echo
      echo "replace ("
      for m in $staging; do echo "	$m => $m $STAGING_VERSION"; done
      echo ")"
    } > go.mod
    go mod download k8s.io/kubernetes >/dev/null
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" >/dev/null 2>&1 || go mod tidy >/dev/null 2>&1 || true
    go build -trimpath -o "$OUT/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  )
  mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
fi

log "ready in $OUT"
echo "$OUT"
