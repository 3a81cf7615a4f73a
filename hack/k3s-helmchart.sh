#!/usr/bin/env bash
# Prints a K3s HelmChart (helm.cattle.io/v1) that installs deploy/helm/rotator
# with the given values file, the chart carried inline as spec.chartContent,
# so no chart repository is needed:
#   hack/k3s-helmchart.sh my-values.yaml > rotator-helmchart.yaml
# Then apply it, or drop it in /var/lib/rancher/k3s/server/manifests/.
# Release namespace: $ROTATOR_NAMESPACE (default rotator-system).
set -euo pipefail
if [[ $# -ne 1 || ! -f "$1" ]]; then
  echo "usage: $0 VALUES_FILE   (a Helm values file for deploy/helm/rotator)" >&2
  exit 2
fi
values="$1"
chart_dir="$(cd "$(dirname "$0")/../deploy/helm" && pwd)"
namespace="${ROTATOR_NAMESPACE:-rotator-system}"
# valuesContent is stored in clear text in kube-system and in the manifests
# folder: the token must come from a Secret instead.
if grep -qE '(^|[{,[:space:]])value:[[:space:]]*[^[:space:]{}]' "$values"; then
  echo "$0: $values sets gitlabToken.value, which would be stored in clear text in the HelmChart; create the Secret and set gitlabToken.existingSecret instead" >&2
  exit 2
fi
# A chart archive is a gzipped tar with the chart in one top-level directory,
# which is what `helm package` writes too; .helmignore applies as it does there.
content="$(tar -czf - --owner=0 --group=0 --exclude='*.tgz' \
  --exclude-from=<(grep -vE '^[[:space:]]*(#|$)' "$chart_dir/rotator/.helmignore") \
  -C "$chart_dir" rotator | base64 -w0)"
cat <<YAML
apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata:
  name: rotator
  namespace: kube-system
spec:
  targetNamespace: ${namespace}
  createNamespace: true
  chartContent: ${content}
  valuesContent: |-
$(sed 's/^/    /' "$values")
YAML
