#!/usr/bin/env bash
# Local Kubernetes: creates the Kind cluster (if missing), builds the collector image, loads it
# into the cluster, and installs the Helm chart with values-local.yaml (Mosquitto, PostgreSQL,
# collector x3, simulator, Prometheus, Grafana).
#
#   deploy/kind/up.sh              create/update everything
#   deploy/kind/up.sh --delete     delete the cluster
#
# Needs docker, kind, kubectl and helm on PATH (docs/deployment.md).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cluster="${KIND_CLUSTER_NAME:-iot-collector}"
namespace="${IOT_NAMESPACE:-iot}"
image="iot-collector:local"

for tool in docker kind kubectl helm; do
    command -v "${tool}" >/dev/null 2>&1 || { echo "error: ${tool} is not on PATH" >&2; exit 1; }
done

if [[ "${1:-}" == "--delete" ]]; then
    kind delete cluster --name "${cluster}"
    exit 0
fi

if ! kind get clusters | grep -qx "${cluster}"; then
    kind create cluster --name "${cluster}" --config "${repo}/deploy/kind/cluster.yaml" --wait 120s
fi
kubectl config use-context "kind-${cluster}" >/dev/null

docker build -f "${repo}/deploy/docker/Dockerfile" -t "${image}" \
    --build-arg "REVISION=$(git -C "${repo}" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "${repo}"
kind load docker-image "${image}" --name "${cluster}"

helm upgrade --install iot "${repo}/deploy/helm/iot-collector" \
    --namespace "${namespace}" --create-namespace \
    -f "${repo}/deploy/helm/iot-collector/values-local.yaml" \
    --wait --timeout 10m

kubectl -n "${namespace}" rollout status statefulset/iot-iot-collector --timeout 5m
helm -n "${namespace}" status iot
