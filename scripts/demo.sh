#!/usr/bin/env bash
# The main job on the local default. Today: validate the bundled example configs against
# the default grant policy, then plan them against an observed-state snapshot that has
# drift in it (a wrong subject, a secret-based connection, a legacy issuer, a missing
# role assignment, a managed one no longer wanted, a foreign credential).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh
py=.venv/bin/python

echo "== validate examples/configs.yaml against policy.yaml"
$py -m reconciler validate examples/configs.yaml --policy policy.yaml
echo
echo "== plan examples/configs.yaml against examples/observed.json"
status=0
$py -m reconciler plan --configs examples/configs.yaml --observed examples/observed.json --policy policy.yaml || status=$?
# Exit code 1 means "drift found", which is what this snapshot is for.
[ "$status" -le 1 ] || exit "$status"
