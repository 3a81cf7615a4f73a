#!/usr/bin/env bash
# Prints a K3s HelmChart (helm.cattle.io/v1) that installs deploy/helm/rotator
# with the given values file, the chart carried inline as spec.chartContent,
# so no chart repository is needed:
#   hack/k3s-helmchart.sh my-values.yaml > rotator-helmchart.yaml
# Then apply it, or drop it in /var/lib/rancher/k3s/server/manifests/.
# Release namespace: $ROTATOR_NAMESPACE (default rotator-system). The chart is
# packaged as `helm package` does; a values file with gitlabToken.value is
# refused (exit 2). The work is done by hack/k3s-helmchart, built here.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
(cd "$root" && go build -o "$bin/k3s-helmchart" ./hack/k3s-helmchart)
"$bin/k3s-helmchart" --chart "$root/deploy/helm/rotator" "$@"
