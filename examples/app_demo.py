"""The Functions app at work, seen from outside: tickets in on Service Bus, answers out over HTTP.

scripts/demo.sh runs it once the simulator, Azurite, the Service Bus peer and devhost (the local
stand-in for the Functions host) are up, with their settings in the environment: ServiceBusConnection,
DEVHOST_URL, DEVHOST_FUNCTION_KEY, DEVHOST_MASTER_KEY and the simulator's WIF_* variables.

1. a ticketing system sends one upsert ticket per connection of examples/configs.yaml to `requests`;
   the app validates and records each, reconciles it, and the outcome is read back over HTTP;
2. drift is injected (examples/inject_drift.py); a dry run through the HTTP API shows it;
3. the drift sweep runs on demand (the host's admin call) and repairs it; a dry run shows nothing left;
4. the simulator's Event Grid events now go to the `events` queue (as infra/'s event subscription
   delivers them); a person removes a role assignment and the event, not the sweep, repairs it in
   seconds;
5. each config's history (GET /api/configs/{id}/history) says what was repaired, by which source
   (`sweep`, `arm-event`) and who made the change.
Exit code 1 when a step does not end as it should.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from inject_drift import main as inject_drift  # examples/, this script's folder

from cloudsim.testing import AdminClient  # inject_drift put the repository on sys.path

ROOT = Path(__file__).resolve().parents[1]
SERVICE_BUS = "ServiceBusConnection"  # the app's setting, which the demo's tickets use too

FINISHED = {"applied", "failed", "rejected"}
PATIENCE = 60.0  # seconds for each step to end before the demo gives up
# Step 4's drift: the Reader assignment of fabrikam/storefront/deploy-web (examples/configs.yaml).
EVENT_DRIFT_CONFIG = "fabrikam/storefront/deploy-web"
EVENT_DRIFT_SCOPE = "/subscriptions/9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d/resourceGroups/rg-web"


class DemoFailed(Exception):
    pass


class Api:
    """The app's HTTP API with a function key (and the master key for the host's admin call)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session, self.url = session, os.environ["DEVHOST_URL"]
        self.key = {"x-functions-key": os.environ["DEVHOST_FUNCTION_KEY"]}

    async def get(self, path: str, *, key: bool = True) -> tuple[int, Any]:
        async with self.session.get(f"{self.url}/api/{path}", headers=self.key if key else {}) as response:
            return response.status, await response.json(content_type=None) if await response.read() else None

    async def dry_run(self) -> dict[str, Any]:
        async with self.session.post(
            f"{self.url}/api/reconcile", json={"all": True, "dryRun": True}, headers=self.key
        ) as response:
            report: dict[str, Any] = await response.json()
            return report

    async def run_now(self, function: str) -> int:
        headers = {"x-functions-key": os.environ["DEVHOST_MASTER_KEY"]}
        async with self.session.post(
            f"{self.url}/admin/functions/{function}", json={}, headers=headers
        ) as answer:
            return answer.status


async def send_tickets() -> list[tuple[str, str]]:
    """One upsert ticket per config document, as a ticketing system sends them; returns (request, config)."""
    documents = list(yaml.safe_load_all((ROOT / "examples" / "configs.yaml").read_text()))
    tickets = []
    client = ServiceBusClient.from_connection_string(os.environ[SERVICE_BUS])
    async with client, client.get_queue_sender("requests") as sender:
        for number, config in enumerate(documents, start=1):
            request_id = f"CHG{number:07d}"
            ticket = {
                    "schemaVersion": 1, "requestId": request_id, "action": "upsert",
                    "requestedBy": "jane@contoso.com", "config": config,
                }  # fmt: skip
            await sender.send_messages(ServiceBusMessage(json.dumps(ticket), content_type="application/json"))
            name = f"{config['organization']}/{config['project']}/{config['serviceConnection']['name']}"
            tickets.append((request_id, name))
            print(f"sent ticket {request_id}: upsert {name}")
    return tickets


async def wait_for_outcomes(api: Api, tickets: list[tuple[str, str]]) -> None:
    deadline = time.monotonic() + PATIENCE
    for request_id, _ in tickets:
        while True:
            status, record = await api.get(f"requests/{request_id}")
            if status == 200 and record["outcome"] in FINISHED:
                break
            if time.monotonic() > deadline:
                raise DemoFailed(f"request {request_id} did not finish within {PATIENCE:.0f} s: {record}")
            await asyncio.sleep(0.5)
        reason = f": {record['reason']}" if record["reason"] else ""
        print(f"GET /api/requests/{request_id} -> {record['outcome']}{reason}")
        if record["outcome"] != "applied":
            raise DemoFailed(f"request {request_id} ended {record['outcome']}")


async def show_status(api: Api, tickets: list[tuple[str, str]]) -> None:
    for _, config_id in tickets:
        _, found = await api.get(f"configs/{config_id.replace('/', '~')}/status")
        print(
            f"GET /api/configs/{config_id.replace('/', '~')}/status -> {found['phase']}, {found['lastPlan']}"
        )


def unsettled(report: dict[str, Any]) -> dict[str, str]:
    """What a dry run found to do, per config: its drift, or its status when it is not converged."""
    return {
        o["configId"]: "; ".join(o["drift"]) or f"{o['status']}: {o['reason']}"
        for o in report["outcomes"]
        if o["status"] != "converged" or o["drift"] or o["actions"]
    }


async def wait_until_repaired(api: Api) -> None:
    deadline = time.monotonic() + PATIENCE
    while left := unsettled(await api.dry_run()):
        if time.monotonic() > deadline:
            raise DemoFailed(f"the sweep did not repair the drift within {PATIENCE:.0f} s: {left}")
        await asyncio.sleep(0.5)


async def assignment_at(admin: AdminClient, scope: str) -> str:
    """The id of the one role assignment at exactly this scope."""
    state = await admin.dump_state()
    found = [ra for ra in state["role_assignments"] if ra["scope"].lower() == scope.lower()]
    if len(found) != 1:
        raise DemoFailed(f"expected one role assignment at {scope}, found {len(found)}")
    return f"{found[0]['scope']}/providers/Microsoft.Authorization/roleAssignments/{found[0]['name']}"


async def wait_for_event_repair(api: Api, config_id: str) -> dict[str, Any]:
    """The config's newest history entry once it is a repair by an ARM event."""
    deadline = time.monotonic() + PATIENCE
    while True:
        status, found = await api.get(f"configs/{config_id.replace('/', '~')}/history")
        if status == 200 and found["repairs"] and found["repairs"][0]["source"] == "arm-event":
            repair: dict[str, Any] = found["repairs"][0]
            return repair
        if time.monotonic() > deadline:
            raise DemoFailed(f"no event repaired {config_id} within {PATIENCE:.0f} s: {status} {found}")
        await asyncio.sleep(0.3)


async def show_history(api: Api, config_id: str) -> None:
    status, found = await api.get(f"configs/{config_id.replace('/', '~')}/history")
    if status != 200:
        raise DemoFailed(f"GET .../history of {config_id} answered {status}: {found}")
    print(config_id)
    for repair in found["repairs"]:
        who = f", changed by {repair['actor']}" if repair["actor"] else ""
        print(
            f"  detected {repair['detectedAt'][11:19]}, repaired {repair['repairedAt'][11:19]} "
            f"by {repair['source']}{who}: {actions(repair)}"
        )


def actions(repair: dict[str, Any]) -> str:
    """The kinds of action a repair applied, e.g. `create-role-assignment`."""
    return ", ".join(change.split(" ", 1)[0] for change in repair["changes"])


async def main() -> None:
    async with aiohttp.ClientSession() as session:
        api = Api(session)
        print(
            "\n== 1. tickets arrive on the `requests` queue; the app validates, records and reconciles them"
        )
        tickets = await send_tickets()
        await wait_for_outcomes(api, tickets)
        await show_status(api, tickets)

        print("\n== 2. drift happens; a dry run through the API (POST /api/reconcile, dryRun) sees it")
        await inject_drift()
        found = unsettled(await api.dry_run())
        for config_id, drift in found.items():
            print(f"{config_id}: {drift[:150]}{'...' if len(drift) > 150 else ''}")
        if len(found) != len(tickets):
            raise DemoFailed(f"the dry run found drift in {len(found)} of the {len(tickets)} configs")

        print(
            "\n== 3. the drift sweep, run on demand (POST /admin/functions/drift_sweep with the master key)"
        )
        started = time.monotonic()
        if (answer := await api.run_now("drift_sweep")) != 202:
            raise DemoFailed(f"the admin call answered {answer}")
        await wait_until_repaired(api)
        print(
            f"repaired in {time.monotonic() - started:.1f} s: a dry run through the API finds nothing to do"
        )
        await show_status(api, tickets)  # the sweep's reconcile recorded what it did

        print("\n== 4. drift events: Event Grid now delivers role-assignment changes to the `events` queue")
        admin = AdminClient(os.environ["WIF_SIMULATOR_ADMIN_URL"], Path(os.environ["REQUESTS_CA_BUNDLE"]))
        await admin.deliver_events_to(os.environ[SERVICE_BUS], "events")
        started = time.monotonic()
        await admin.delete_role_assignment(await assignment_at(admin, EVENT_DRIFT_SCOPE))
        print(f"drift: a person removed the Reader assignment of {EVENT_DRIFT_CONFIG} in the portal")
        repair = await wait_for_event_repair(api, EVENT_DRIFT_CONFIG)
        if left := unsettled(await api.dry_run()):
            raise DemoFailed(f"drift left after the event's repair: {left}")
        print(
            f"repaired by the event in {time.monotonic() - started:.1f} s ({actions(repair)}), no sweep: "
            "a dry run through the API finds nothing to do"
        )

        print("\n== 5. who changed what: GET /api/configs/{id}/history, newest first")
        for _, config_id in tickets:
            await show_history(api, config_id)

        status, _ = await api.get("requests/CHG0000001", key=False)
        print(f"\nwithout a function key: GET /api/requests/CHG0000001 -> {status}")
        if status != 401:
            raise DemoFailed(f"a request without a key got {status}, not 401")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except DemoFailed as failure:
        print(f"demo: {failure}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: scripts/demo.sh stops what it started
