#!/usr/bin/env bash
# Installs everything the project needs into the repository: a Python venv in .venv
# (from requirements-dev.txt), checkov in .venv-checkov (from tests/infra/checkov-requirements.txt)
# and, when package.json exists, the npm packages (Azurite).
# Safe to run again: it reinstalls only when a requirements or lock file changed.
# --no-checkov skips checkov (only scripts/test.sh needs it; the demo does not).
set -euo pipefail
with_checkov=true
for argument in "$@"; do
  case "$argument" in
    --no-checkov) with_checkov=false ;;
    *) echo "bootstrap: unknown option $argument (known: --no-checkov)" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  echo "bootstrap: Python 3.11 is required (found: $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi

stamp=.venv/.requirements.sha256
wanted=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "bootstrap: installing Python packages into .venv (about a minute the first time)" >&2
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$wanted" > "$stamp"
fi

# checkov (Bicep security scan) lives in its own venv: its pinned dependencies clash with the app's.
checkov_stamp=.venv-checkov/.requirements.sha256
checkov_wanted=$(sha256sum tests/infra/checkov-requirements.txt | cut -d' ' -f1)
if $with_checkov && { [ ! -x .venv-checkov/bin/checkov ] || [ "$(cat "$checkov_stamp" 2>/dev/null)" != "$checkov_wanted" ]; }; then
  echo "bootstrap: installing checkov into .venv-checkov" >&2
  "$python" -m venv .venv-checkov
  .venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -r tests/infra/checkov-requirements.txt
  echo "$checkov_wanted" > "$checkov_stamp"
fi

if [ -f package.json ]; then
  npm_stamp=node_modules/.package-lock.sha256
  npm_wanted=$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$npm_stamp" 2>/dev/null)" != "$npm_wanted" ]; then
    echo "bootstrap: installing npm packages (npm ci)" >&2
    npm ci --no-audit --no-fund --loglevel=error
    echo "$npm_wanted" > "$npm_stamp"
  fi
fi
