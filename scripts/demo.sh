#!/usr/bin/env bash
# The main job on the local default: the reconciler against the local cloud simulator.
#
# 1. start the simulator (Graph, ARM, Azure DevOps, managed-identity tokens over HTTPS on
#    loopback) with the demo tenant, examples/tenant.yaml;
# 2. apply examples/configs.yaml: connections, credentials, role assignments and pipeline
#    permissions are created, one app too;
# 3. inject drift (examples/inject_drift.py), `plan` it, `apply` it, and `plan` again: empty.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh
py=.venv/bin/python
run_dir=$(mktemp -d)
env_file="$run_dir/simulator.env"

$py -m cloudsim serve --port 0 --state examples/tenant.yaml --env-file "$env_file" --ca-file "$run_dir/ca.pem" \
  > "$run_dir/simulator.out" 2> "$run_dir/simulator.err" &
simulator=$!
trap 'kill "$simulator" 2>/dev/null; wait "$simulator" 2>/dev/null; rm -rf "$run_dir"' EXIT
for _ in $(seq 1 100); do [ -s "$env_file" ] && break; sleep 0.1; done
[ -s "$env_file" ] || { cat "$run_dir/simulator.err" >&2; echo "demo: the simulator did not start" >&2; exit 1; }
set -a; . "$env_file"; set +a
echo "== the simulator is up: Graph $WIF_GRAPH_URL, ARM $WIF_ARM_URL, Azure DevOps $WIF_ADO_URL"

reconcile() {  # exit code 1 means drift or failures: expected in the middle of the demo
  local status=0
  $py -m reconciler "$@" --configs examples/configs.yaml --policy policy.yaml --cloud simulator --pipelines || status=$?
  [ "$status" -le 1 ] || exit "$status"
}

echo; echo "== 1. first apply: create everything examples/configs.yaml asks for"
reconcile apply
echo; echo "== 2. drift happens"
$py examples/inject_drift.py
echo; echo "== 3. plan: what drifted and what the reconciler would do"
reconcile plan
echo; echo "== 4. apply: repair it"
reconcile apply
echo; echo "== 5. plan again: nothing left to do"
$py -m reconciler plan --configs examples/configs.yaml --policy policy.yaml --cloud simulator --pipelines
