#!/usr/bin/env bash
# The README's test command: set up what is missing, lint, type-check, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/lint.sh
.venv/bin/pytest "$@"
