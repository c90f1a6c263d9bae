#!/usr/bin/env bash
# Set up a fresh clone, lint, and run the whole test suite (no GPU needed; a few minutes).
# STRUCTBERT_TEST_WORKERS=0 runs it in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
# two workers, each test file on one of them (its module fixtures and servers built once): most of the
# suite waits on servers starting and on load windows, so two keep a 2-core machine busy
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 -n "${STRUCTBERT_TEST_WORKERS:-2}" --dist loadfile "$@"
