#!/usr/bin/env bash
# Set up a fresh clone, lint, and run the whole test suite (no GPU needed; a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 "$@"
