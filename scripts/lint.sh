#!/usr/bin/env bash
# Static checks: the same in pre-commit, locally and in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
