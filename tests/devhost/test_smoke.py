"""devhost started as `scripts/demo.sh` starts it, against the simulator, Azurite and the Service Bus peer:
a ticket goes in on the `requests` queue and its outcome comes back over HTTP with a function key; a
drift event on the `events` queue is repaired and the config's history names who made the change."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from cloudsim.events import ADO_CALLER_ID, PERSON
from cloudsim.testing import SAMPLE_SUBSCRIPTION, RunningSimulator
from servicebus_peer import ServiceBusPeer

ROOT = Path(__file__).resolve().parents[2]
VAULT = (
    f"/subscriptions/{SAMPLE_SUBSCRIPTION}/resourceGroups/rg-pay/providers/Microsoft.KeyVault/vaults/kv-pay"
)
POLICY = """apiVersion: wif-reconciler/v1
kind: GrantPolicy
organizations: [contoso]
roles: [Key Vault Reader]
scopes: [/subscriptions/*/resourceGroups/*]
"""
STARTUP = 60.0  # importing the app and its SDKs on a busy 2-core machine


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    url: str
    function_key: str
    master_key: str
    log: Path
    sim: RunningSimulator
    peer: ServiceBusPeer

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@pytest.fixture
async def devhost(
    cloud_env: RunningSimulator,
    table_settings: dict[str, str],
    servicebus_peer: ServiceBusPeer,
    tmp_path: Path,
) -> AsyncIterator[Running]:
    (tmp_path / "policy.yaml").write_text(POLICY)
    values = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "ServiceBusConnection": servicebus_peer.connection_string,
        "WIF_POLICY_FILE": str(tmp_path / "policy.yaml"),
        "DRIFT_SCHEDULE": "0 0 3 * * *",
        "WIF_RECONCILER_IDENTITIES": f"{cloud_env.world.caller_object_id},{ADO_CALLER_ID}",
        "EVENT_COALESCE_SECONDS": "0",
        **table_settings,
    }
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    env_file, log = tmp_path / "devhost.env", tmp_path / "devhost.log"
    process = start_devhost(settings, env_file, log)
    try:
        deadline = time.monotonic() + STARTUP
        while not env_file.exists():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"devhost did not start:\n{log.read_text()}"
            await asyncio.sleep(0.1)
        ready = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        yield Running(
            process, ready["DEVHOST_URL"], ready["DEVHOST_FUNCTION_KEY"], ready["DEVHOST_MASTER_KEY"],
            log, cloud_env, servicebus_peer,
        )  # fmt: skip
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def start_devhost(settings: Path, env_file: Path, log: Path) -> subprocess.Popen[bytes]:
    """`python -m devhost` as scripts/demo.sh runs it; the simulator's variables come from cloud_env."""
    command = [sys.executable, "-m", "devhost", "--port", "0", "--settings", str(settings)]
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [*command, "--env-file", str(env_file)],
            cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip


def ticket(sim: RunningSimulator, app_id: str, request_id: str) -> str:
    return json.dumps({
        "schemaVersion": 1, "requestId": request_id, "action": "upsert", "requestedBy": "jane@contoso.com",
        "config": {
            "organization": "contoso", "project": "payments", "tenantId": sim.tenant_id,
            "serviceConnection": {
                "name": "kv-reader", "subscriptionId": SAMPLE_SUBSCRIPTION, "subscriptionName": "Payments",
            },
            "application": {"appId": app_id},
            "roleAssignments": [{"role": "Key Vault Reader", "scope": VAULT}],
        },
    })  # fmt: skip


async def send(connection: str, queue: str, body: str, **properties: Any) -> None:
    async with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_queue_sender(queue) as sender,
    ):
        await sender.send_messages(ServiceBusMessage(body, **properties))


async def poll_request(http: aiohttp.ClientSession, host: Running, request_id: str) -> dict[str, Any]:
    """The request record once its reconcile has finished (applied or failed)."""
    deadline = time.monotonic() + 60
    while True:
        async with http.get(
            f"{host.url}/api/requests/{request_id}", headers={"x-functions-key": host.function_key}
        ) as response:
            record: dict[str, Any] = await response.json() if response.status == 200 else {}
        if record.get("outcome") in {"applied", "failed", "rejected"}:
            return record
        assert time.monotonic() < deadline, f"request {request_id}: {record}\n{host.log.read_text()}"
        await asyncio.sleep(0.3)


async def test_a_ticket_goes_through_devhost_and_its_outcome_is_read_back_with_a_function_key(
    devhost: Running,
) -> None:
    seeded = await devhost.sim.admin.seed_application("sc-payments-kv-reader")
    await send(devhost.peer.connection_string, "requests", ticket(devhost.sim, seeded["appId"], "CHG0001"))
    async with aiohttp.ClientSession() as http:
        record = await poll_request(http, devhost, "CHG0001")
        assert record["outcome"] == "applied", record
        # Reconciled through the session queue: the credential exists, and every message was completed.
        app = devhost.sim.world.application_by_app_id(seeded["appId"])
        assert app is not None and [c.name for c in app.federated_credentials] == [
            "contoso--payments--kv-reader"
        ]
        assert devhost.peer.messages("requests") == [] and devhost.peer.messages("reconcile") == []

        request_url = f"{devhost.url}/api/requests/CHG0001"
        async with (
            http.get(request_url) as no_key,
            http.get(request_url, headers={"x-functions-key": "wrong"}) as bad,
        ):
            assert (no_key.status, await no_key.read(), bad.status) == (401, b"", 401)
        async with http.get(request_url, params={"code": devhost.function_key}) as by_query:
            assert by_query.status == 200
        async with http.get(f"{devhost.url}/api/configs/contoso~payments~kv-reader/status") as status:
            assert status.status == 401
        async with http.get(f"{devhost.url}/api/health") as health:  # ANONYMOUS: open
            assert health.status == 200 and await health.json() == {"status": "ok"}
    assert devhost.stop() == 0
    assert "Traceback" not in devhost.log.read_text()


async def test_the_sweep_runs_on_demand_with_the_master_key_and_a_failing_message_is_abandoned_to_dead_letter(
    devhost: Running,
) -> None:
    sweep = f"{devhost.url}/admin/functions/drift_sweep"
    async with aiohttp.ClientSession() as http:
        async with http.post(sweep, json={}, headers={"x-functions-key": devhost.function_key}) as not_master:
            assert not_master.status == 401  # the admin call wants the master key
        async with http.post(sweep, json={}, headers={"x-functions-key": devhost.master_key}) as accepted:
            assert accepted.status == 202
    deadline = time.monotonic() + 30
    while "Executed 'Functions.drift_sweep' (Succeeded" not in devhost.log.read_text():
        assert time.monotonic() < deadline, devhost.log.read_text()
        await asyncio.sleep(0.2)

    # reconcile_apps raises on a malformed message: the host abandons it on each delivery, and the
    # broker dead-letters it at the queue's max delivery count (5 for the product's queues).
    await send(devhost.peer.connection_string, "reconcile", "not a reconcile message", session_id="app-x")
    await devhost.peer.wait_until_async(lambda: bool(devhost.peer.dead_letters("reconcile")), within=30)
    (letter,) = devhost.peer.dead_letters("reconcile")
    assert letter.dead_letter_reason == "MaxDeliveryCountExceeded" and letter.delivery_count == 5
    assert devhost.log.read_text().count("Executed 'Functions.reconcile_apps' (Failed") == 5
    assert devhost.stop() == 0


async def test_a_drift_event_is_repaired_through_devhost_and_the_history_names_who_made_the_change(
    devhost: Running,
) -> None:
    seeded = await devhost.sim.admin.seed_application("sc-payments-kv-reader")
    await send(devhost.peer.connection_string, "requests", ticket(devhost.sim, seeded["appId"], "CHG0002"))
    history_url = f"{devhost.url}/api/configs/contoso~payments~kv-reader/history"
    key = {"x-functions-key": devhost.function_key}
    async with aiohttp.ClientSession() as http:
        assert (await poll_request(http, devhost, "CHG0002"))["outcome"] == "applied"
        async with http.get(history_url) as no_key:
            assert no_key.status == 401
        async with http.get(history_url, headers=key) as empty:
            assert (empty.status, (await empty.json())["repairs"]) == (200, [])  # a ticket is not drift

        await devhost.sim.admin.deliver_events_to(devhost.peer.connection_string)
        try:
            (grant,) = [ra for ra in devhost.sim.world.role_assignments if ra.scope.lower() == VAULT.lower()]
            await devhost.sim.admin.delete_role_assignment(
                f"{grant.scope}/providers/Microsoft.Authorization/roleAssignments/{grant.name}"
            )
            repairs = await poll_history(http, devhost, history_url)
        finally:
            await devhost.sim.admin.deliver_events_to(None)
    (repair,) = repairs
    assert repair["source"] == "arm-event" and repair["changes"][0].startswith("create-role-assignment ")
    assert PERSON["upn"] in repair["actor"]
    assert [ra.scope.lower() for ra in devhost.sim.world.role_assignments].count(VAULT.lower()) == 1
    assert "Executed 'Functions.drift_events' (Succeeded" in devhost.log.read_text()
    # Every batch is completed, the restore's own event (sent just after the repair) included.
    await devhost.peer.wait_until_async(lambda: devhost.peer.messages("events") == [], within=30)
    assert devhost.stop() == 0


async def poll_history(http: aiohttp.ClientSession, host: Running, url: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        async with http.get(url, headers={"x-functions-key": host.function_key}) as response:
            repairs: list[dict[str, Any]] = (await response.json())["repairs"]
        if repairs:
            return repairs
        assert time.monotonic() < deadline, f"no repair recorded:\n{host.log.read_text()}"
        await asyncio.sleep(0.3)
