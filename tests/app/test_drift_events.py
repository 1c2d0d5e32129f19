"""Event-driven drift through the real triggers: the simulator emits Azure's events to the peer's
`events` queue (and Entra audit records for the Event Hubs trigger), `drift_events` / `entra_audit`
turn them into coalesced reconcile messages, `reconcile_apps` repairs, and the history says who."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

import function_app
from cloudsim.events import ADO_CALLER_ID, PERSON
from cloudsim.testing import RunningSimulator
from reconciler.app import context as app_context
from reconciler.app import http_api
from servicebus_peer import PeerMessage, ServiceBusPeer
from tests.app.test_app_triggers import POLICY, App, as_the_host_passes_it
from tests.app_settings import settle_app_settings
from tests.azurite import TableRequests

CONFIG = "contoso/payments/kv-reader"


@pytest.fixture
async def app(
    cloud_env: RunningSimulator,
    table_settings: dict[str, str],
    servicebus_peer: ServiceBusPeer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[App]:
    own = f"{cloud_env.world.caller_object_id},{ADO_CALLER_ID}"
    monkeypatch.setenv("WIF_RECONCILER_IDENTITIES", own)
    monkeypatch.setenv("EVENT_COALESCE_SECONDS", "0")
    await settle_app_settings(
        monkeypatch, tmp_path, policy=POLICY, table_settings=table_settings, peer=servicebus_peer
    )
    await cloud_env.admin.deliver_events_to(servicebus_peer.connection_string)
    seeded = await cloud_env.admin.seed_application("sc-payments-kv-reader")
    yield EventsApp(cloud_env, servicebus_peer, seeded)
    await cloud_env.admin.deliver_events_to(None)
    await app_context.reset()


class EventsApp(App):
    """Hands each message to its trigger once, without emptying the queues: the simulator keeps
    sending events while the test runs."""

    def __init__(self, sim: RunningSimulator, peer: ServiceBusPeer, seeded: dict[str, Any]) -> None:
        super().__init__(sim, peer, seeded)
        self.handled: set[tuple[str, int]] = set()

    def new(self, queue: str) -> list[PeerMessage]:
        return [m for m in self.peer.messages(queue) if (queue, m.sequence_number) not in self.handled]

    def _handled(self, queue: str, messages: list[PeerMessage]) -> list[PeerMessage]:
        self.handled |= {(queue, m.sequence_number) for m in messages}
        return messages

    async def deliver_reconciles(self) -> int:
        messages = self._handled("reconcile", self.new("reconcile"))
        for message in messages:
            await function_app.reconcile_apps(as_the_host_passes_it(message))
        return len(messages)

    async def deliver_events(self, expected: int) -> list[PeerMessage]:
        """The new `events` messages to the trigger in one batch, as the host would, once the
        simulator's sender has put `expected` there."""
        assert await self.peer.wait_until_async(lambda: len(self.new("events")) >= expected, 10)
        messages = self._handled("events", self.new("events"))
        await function_app.drift_events([as_the_host_passes_it(m) for m in messages])
        return messages


async def converged(app: EventsApp) -> None:
    """The config applied, and the events of the reconciler's own writes handled: none of them
    schedules a reconcile."""
    await function_app.ticket_requests(func.ServiceBusMessage(body=app.ticket("CHG0001")))
    assert await app.deliver_reconciles() == 1
    assert len(app.assignments()) == 1
    await app.deliver_events(2)  # at least the role assignment and the connection
    assert app.new("reconcile") == []


async def test_a_role_assignment_deleted_by_hand_is_restored_and_the_history_says_who(app: EventsApp) -> None:
    await converged(app)
    [assignment] = app.assignments()
    await app.sim.admin.delete_role_assignment(assignment.id)
    assert app.assignments() == []
    await app.deliver_events(1)
    [message] = app.new("reconcile")
    assert json.loads(message.body)["reason"] == "event"
    assert await app.deliver_reconciles() == 1
    assert len(app.assignments()) == 1  # restored
    response = await http_api.history(await app.service(), CONFIG.replace("/", "~"))
    assert response.status == 200
    [repair] = response.body["repairs"]
    assert (repair["source"], repair["actor"]) == (
        "arm-event",
        f"{PERSON['upn']}, objectId {PERSON['objectId']}",
    )
    assert any("role-assignment" in change for change in repair["changes"])
    # The restore is the reconciler's own write: its event schedules nothing.
    await app.deliver_events(1)
    assert app.new("reconcile") == []


async def test_what_a_ticket_just_created_is_repaired_through_its_event_before_any_sweep(
    app: EventsApp, table_settings: dict[str, str]
) -> None:
    """The pass that creates an application, its principal, connection and role assignment indexes
    them from what it wrote, so a deletion right after (no sweep has observed them) is repaired."""
    created = {"displayName": "sc-payments-created", "create": True}
    ticket = app.ticket("CHG0002", application=created)
    await function_app.ticket_requests(func.ServiceBusMessage(body=ticket))
    assert await app.deliver_reconciles() == 1
    tables = TableRequests.of(table_settings)
    tables.mark()
    await function_app.drift_sweep(TimerRequest(past_due=False))
    assert tables.writes_since_mark() == []  # the index already holds all that the sweep observes
    [application] = [a for a in app.sim.world.applications if a.display_name == created["displayName"]]
    [principal] = [s for s in app.sim.world.service_principals if s.app_id == application.app_id]
    [assignment] = [ra for ra in app.sim.world.role_assignments if ra.principal_id == principal.id]
    await app.deliver_events(2)  # the pass's own writes (role assignment, connection): ignored
    assert app.new("reconcile") == []

    await app.sim.admin.delete_role_assignment(assignment.id)
    await app.deliver_events(1)
    [message] = app.new("reconcile")
    assert json.loads(message.body)["reason"] == "event"
    assert await app.deliver_reconciles() == 1
    assert [ra.id for ra in app.sim.world.role_assignments if ra.principal_id == principal.id] == [
        assignment.id
    ]  # restored under its deterministic name
    [repair] = (await http_api.history(await app.service(), CONFIG.replace("/", "~"))).body["repairs"]
    assert repair["source"] == "arm-event" and PERSON["upn"] in repair["actor"]


async def test_a_burst_for_one_application_is_one_reconcile(app: EventsApp) -> None:
    await converged(app)
    [assignment] = app.assignments()
    await app.sim.admin.delete_role_assignment(assignment.id)
    [event] = await app.deliver_events(1)
    for _ in range(5):  # the same event redelivered, and again in later deliveries
        await function_app.drift_events([as_the_host_passes_it(event)] * 3)
    assert len(app.new("reconcile")) == 1
    assert await app.deliver_reconciles() == 1
    # Once the reconcile started, a new event schedules the next one.
    await function_app.drift_events([as_the_host_passes_it(event)])
    assert len(app.new("reconcile")) == 1


async def test_events_about_unmanaged_objects_and_malformed_events_change_nothing(app: EventsApp) -> None:
    await converged(app)
    [assignment] = app.assignments()
    await app.sim.admin.delete_role_assignment(assignment.id)
    assert await app.peer.wait_until_async(lambda: len(app.new("events")) == 1, 10)
    event = json.loads(app.new("events")[0].body)
    elsewhere = event["data"]["resourceUri"].replace("/rg-pay/", "/rg-other/")
    unmanaged = {**event, "data": {**event["data"], "resourceUri": elsewhere}}
    bodies = [
        json.dumps(unmanaged).encode(),
        b'{"id": "x", "eventType": ',
        b'{"id": "../..", "eventType": "x"}',
    ]
    outcome = await (await app.service()).handle_drift_events(bodies, "event-grid")
    assert (outcome.invalid, outcome.unmanaged, outcome.index_reads, outcome.scheduled) == (2, 1, 1, 0)
    assert app.new("reconcile") == []


async def test_entra_audit_records_through_the_event_hubs_trigger(app: EventsApp) -> None:
    await converged(app)
    live = app.sim.world.application_by_app_id(app.seeded["appId"])
    assert live is not None and len(live.federated_credentials) == 1
    await app.sim.admin.take_events()
    await app.sim.admin.delete_fic(app.seeded["appId"], live.federated_credentials[0].name)
    records = (await app.sim.admin.take_events())["entra"]
    await function_app.entra_audit([func.EventHubEvent(body=json.dumps(records).encode())])
    assert await app.deliver_reconciles() == 1
    assert len(live.federated_credentials) == 1  # restored
    [repair] = (await http_api.history(await app.service(), CONFIG.replace("/", "~"))).body["repairs"]
    assert repair["source"] == "entra-audit" and PERSON["upn"] in repair["actor"]
