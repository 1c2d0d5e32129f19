#!/usr/bin/env bash
# The project's whole check, as CI runs it: install, lint, types, layering, tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -k planner -x).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh
export PATH="$root/.venv/bin:$PATH"

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"; mypy
echo "== layering (import-linter)"; lint-imports
echo "== pytest"; pytest "$@"
