#!/usr/bin/env bash
# Static checks: the same in pre-commit, locally and in CI (the project's .venv when there is
# one, else the tools on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
[ -x "${bin}/ruff" ] || bin="$(dirname "$(command -v ruff)")"
"${bin}/ruff" check src tests bench
"${bin}/ruff" format --check src tests bench
"${bin}/mypy"
