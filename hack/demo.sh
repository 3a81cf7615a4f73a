#!/usr/bin/env bash
# The demo: a local kube-apiserver and the GitLab emulator, then three
# run-once cycles: first rotation, a no-op, and a rotation after the
# emulator's clock passes the renewal point. Everything it starts it stops.
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_for() { for _ in $(seq 1 300); do [[ -s "$1" ]] && return 0; sleep 0.2; done; echo "timed out waiting for $1" >&2; exit 1; }

say "Building kube-apiserver and etcd (cached after the first time)"
export KUBEBUILDER_ASSETS="$(hack/kube-binaries.sh)"

say "Building rotator, gitlab-emulator and devenv"
mkdir -p "$work/bin"
go build -o "$work/bin/" ./cmd/rotator ./cmd/gitlab-emulator ./hack/devenv
PATH="$work/bin:$PATH"

say "Starting kube-apiserver + etcd; namespaces default and game-servers with ServiceAccounts default and agones-sdk"
devenv up --dir "$work/cluster" &
pids+=($!)
wait_for "$work/cluster/ready"
export KUBECONFIG="$work/cluster/kubeconfig"

say "Starting the GitLab emulator (project 7 = games/fleet)"
gitlab-emulator --listen 127.0.0.1:0 --ready-file "$work/emulator.addr" --api-token-file "$work/gitlab-token" 2>"$work/emulator.log" &
pids+=($!)
wait_for "$work/emulator.addr"
# localhost, not 127.0.0.1: registry clients refuse a token realm on a
# loopback IP whose host differs from the registry's.
emulator="http://$(sed 's/^127\.0\.0\.1/localhost/' "$work/emulator.addr")"

say "Starting a real container registry (distribution) that trusts the emulator's token service"
devenv registry --emulator "$emulator" --dir "$work/registry" &
pids+=($!)
wait_for "$work/registry/host"
registry="$(cat "$work/registry/host")"

cat >"$work/config.yaml" <<YAML
gitlab:
  url: $emulator
  allowInsecureHTTP: true        # the emulator speaks plain HTTP on loopback
  tokenFile: $work/gitlab-token
  project: games/fleet
  registryHost: $registry
verify:
  repository: games/fleet        # each new token must pull from here first
token:
  prefix: k8s-pull
  lifetime: 30d                  # renewBefore defaults to 10d
daemon:
  leaseNamespace: default        # run-once holds this Lease while it acts
targets:
  - namespace: default
  - namespace: game-servers
YAML
echo "config:"; sed 's/^/  /' "$work/config.yaml"

run_once() {
  ROTATOR_NOW="$(devenv clock --emulator "$emulator")" ROTATOR_LOG_FORMAT=text \
    rotator run-once --config "$work/config.yaml" "$@"
}
show() { devenv show --kubeconfig "$KUBECONFIG" --registry-host "$registry" --emulator "$emulator"; }
writes() { echo "$(devenv writes --emulator "$emulator") $(devenv writes --audit-log "$work/cluster/audit.log")"; }

say "1. First run: create a deploy token, write both Secrets, patch the ServiceAccounts"
run_once
show

say "2. Second run: nothing to do"
read -r g0 k0 <<<"$(writes)"
run_once
read -r g1 k1 <<<"$(writes)"
echo "write requests during the second run: GitLab $((g1 - g0)), Kubernetes $((k1 - k0))"
if [[ $((g1 - g0)) -ne 0 || $((k1 - k0)) -ne 0 ]]; then echo "demo: the no-op run wrote something" >&2; exit 1; fi

say "3. Move the emulator clock 21 days forward, past the renewal point (day 20), and run again"
echo "emulator clock now $(devenv clock --emulator "$emulator" --advance 21d)"
run_once --dry-run
run_once
show

say "Done: each Secret holds the new token; the old token is gone from GitLab"
