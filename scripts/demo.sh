#!/usr/bin/env bash
# The main job on the local default: the Functions app at work, then the CLI, against local stand-ins
# for Azure (the cloud simulator, Azurite's tables, the Service Bus peer) on loopback.
#
# 1. start the simulator with the demo tenant (examples/tenant.yaml), Azurite, the Service Bus peer
#    and devhost, the local stand-in for `func start` that runs function_app.py;
# 2. examples/app_demo.py: tickets for examples/configs.yaml go to the `requests` queue and come out
#    reconciled, read back over the HTTP API with a function key; drift is injected and the drift
#    sweep, run on demand, repairs it; then the simulator's events go to the `events` queue, a person
#    removes a role assignment and the event repairs it in seconds; each config's history says who
#    changed what and which source (sweep or event) repaired it;
# 3. the CLI on the same tenant: drift again, `plan` shows it, `apply` repairs it.
# Every process it starts is stopped on exit or Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh --no-checkov
py=.venv/bin/python
run_dir=$(mktemp -d)
pids=()
stop_all() {  # the last started first: devhost finishes its invocations while the clouds still answer
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -rf "$run_dir"
}
trap stop_all EXIT
trap 'exit 130' INT TERM
fail() {  # the message, then the logs of what started, so a failure explains itself
  echo "demo: $1" >&2
  for log in "$run_dir"/*.log; do echo "--- ${log##*/}" >&2; tail -n 30 "$log" >&2; done
  exit 1
}
wait_for() {  # WHAT PID COMMAND...: run COMMAND until it succeeds, while PID lives, for up to 60 s
  local what=$1 pid=$2
  shift 2
  for _ in $(seq 1 600); do
    "$@" && return 0
    kill -0 "$pid" 2>/dev/null || fail "$what stopped"
    sleep 0.1
  done
  fail "$what did not start within 60 s"
}

$py -m cloudsim serve --port 0 --state examples/tenant.yaml --env-file "$run_dir/simulator.env" \
  --ca-file "$run_dir/ca.pem" > /dev/null 2> "$run_dir/simulator.log" &
pids+=($!); simulator=$!
azurite_port=$($py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
node_modules/.bin/azurite-table --tableHost 127.0.0.1 --tablePort "$azurite_port" --inMemoryPersistence \
  --disableTelemetry --skipApiVersionCheck > "$run_dir/azurite.log" 2>&1 &
pids+=($!); azurite=$!
$py -m servicebus_peer serve --port 0 --queue requests --queue events --session-queue reconcile --max-delivery-count 5 \
  > "$run_dir/peer.out" 2> "$run_dir/peer.log" &
pids+=($!); peer=$!
wait_for "the simulator" "$simulator" test -s "$run_dir/simulator.env"
wait_for "the Service Bus peer" "$peer" test -s "$run_dir/peer.out"
wait_for "Azurite" "$azurite" grep -q "successfully started" "$run_dir/azurite.log"
set -a; . "$run_dir/simulator.env"; set +a
export ServiceBusConnection
ServiceBusConnection=$(head -n 1 "$run_dir/peer.out")  # for the tickets examples/app_demo.py sends

# The app's settings, as local.settings.json gives them to `func start` (see local.settings.sample.json).
# WIF_RECONCILER_IDENTITIES: the demo tenant's identity (caller_object_id of examples/tenant.yaml)
# and its id in the simulator's ADO (cloudsim/events.py), so events of the app's own repairs are dropped.
cat > "$run_dir/local.settings.json" <<JSON
{
  "IsEncrypted": false,
  "Values": {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "ServiceBusConnection": "$ServiceBusConnection",
    "WIF_TABLE_CONNECTION_STRING": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:$azurite_port/devstoreaccount1;",
    "WIF_POLICY_FILE": "policy.yaml",
    "DRIFT_SCHEDULE": "0 */30 * * * *",
    "WIF_RECONCILER_IDENTITIES": "d1000000-0000-4000-8000-00000000a11c,00000000-0000-0000-0000-00000000aaaa",
    "EVENT_COALESCE_SECONDS": "1"
  }
}
JSON
$py -m devhost --port 0 --settings "$run_dir/local.settings.json" --env-file "$run_dir/devhost.env" \
  > "$run_dir/devhost.out" 2> "$run_dir/devhost.log" &
pids+=($!); devhost=$!
wait_for "devhost" "$devhost" test -s "$run_dir/devhost.env"
set -a; . "$run_dir/devhost.env"; set +a
echo "== up: the simulator (Graph $WIF_GRAPH_URL), Azurite tables, the Service Bus peer, and devhost serving"
cat "$run_dir/devhost.out"

$py examples/app_demo.py || fail "the app did not do its job (examples/app_demo.py)"

echo; echo "== 6. the CLI on the same tenant: the app stopped, drift again, plan it, apply it"
# Stop the app first: with it running, the drift events below would be repaired by the app before
# the CLI's `apply` could show its own repair.
kill -TERM "$devhost" 2>/dev/null && wait "$devhost" 2>/dev/null || true
reconcile() {  # exit code 1 means drift or failures: expected in the middle of the demo
  local status=0
  $py -m reconciler "$@" --configs examples/configs.yaml --policy policy.yaml --cloud simulator --pipelines || status=$?
  [ "$status" -le 1 ] || exit "$status"
}
$py examples/inject_drift.py
reconcile plan
reconcile apply
