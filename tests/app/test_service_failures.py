"""Temporary failures in the service: a ticket whose hand-off fails is delivered again and applied
once; a reconcile that fails temporarily schedules a follow-up that later finishes the request."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cloudsim.faults import Faults
from cloudsim.testing import SAMPLE_SUBSCRIPTION, RunningSimulator
from reconciler.app.service import ReconcilerService
from reconciler.cloud import cloud_from_settings
from reconciler.core.identifiers import ScopePattern
from reconciler.core.policy import GrantPolicy
from reconciler.engine.run import EngineOptions, connect
from reconciler.state.queues import Queues, parse_reconcile_message
from reconciler.state.stores import Stores, open_stores
from servicebus_peer import ServiceBusPeer

KEY_VAULT_READER = "21090545-7ca7-4776-b22c-e363652d74d2"
POLICY = GrantPolicy(
    organizations=frozenset({"contoso"}),
    role_ids=frozenset({KEY_VAULT_READER}),
    privileged_role_ids=frozenset(),
    scopes=(ScopePattern("/subscriptions/*/resourceGroups/*"),),
)
VAULT = f"/subscriptions/{SAMPLE_SUBSCRIPTION}/resourceGroups/rg-pay/providers/Microsoft.KeyVault/vaults/kv"
UNREACHABLE_BUS = (
    "Endpoint=sb://127.0.0.1:9;SharedAccessKeyName=local;SharedAccessKey=local;UseDevelopmentEmulator=true"
)


@pytest.fixture
async def stores(table_settings: dict[str, str]) -> AsyncIterator[Stores]:
    async with await open_stores(table_settings, None) as opened:
        yield opened


def ticket(sim: RunningSimulator, request_id: str, application: dict[str, Any]) -> bytes:
    config = {
        "apiVersion": "wif-reconciler/v1",
        "kind": "FederationConfig",
        "organization": "contoso",
        "project": "payments",
        "tenantId": sim.tenant_id,
        "serviceConnection": {
            "name": "kv",
            "subscriptionId": SAMPLE_SUBSCRIPTION,
            "subscriptionName": "Prod",
        },
        "application": application,
        "roleAssignments": [{"role": "Key Vault Reader", "scope": VAULT}],
    }
    body = {
        "schemaVersion": 1,
        "requestId": request_id,
        "action": "upsert",
        "requestedBy": "ops",
        "config": config,
    }
    return json.dumps(body).encode()


def service(stores: Stores, bus: str, options: EngineOptions = EngineOptions()) -> ReconcilerService:  # noqa: B008
    cloud = cloud_from_settings(os.environ)
    return ReconcilerService(
        stores, Queues.from_settings({"ServiceBusConnection": bus}, retry_total=0), POLICY,
        lambda: connect(cloud, POLICY, options=options),
    )  # fmt: skip


async def test_a_failed_hand_off_raises_and_the_redelivery_applies_once(
    cloud_env: RunningSimulator, stores: Stores, servicebus_peer: ServiceBusPeer
) -> None:
    app = await cloud_env.admin.seed_application("sc-kv")
    body = ticket(cloud_env, "CHG7001", {"appId": app["appId"]})
    broken = service(stores, UNREACHABLE_BUS)
    with pytest.raises(Exception):  # noqa: B017 - whatever the SDK raises, the message is not completed
        await broken.handle_ticket(body)
    # Service Bus delivers the message again; this time the bus is there.
    working = service(stores, servicebus_peer.connection_string)
    outcome = await working.handle_ticket(body)
    assert outcome.outcome == "accepted"
    record = await stores.configs.get("contoso/payments/kv")
    assert record is not None and record.generation == 1  # written once, not twice
    assert len(servicebus_peer.messages("reconcile")) == 1
    assert (await working.handle_ticket(body)).outcome == "duplicate"


async def test_a_temporary_failure_schedules_a_follow_up_that_finishes_the_request(
    cloud_env: RunningSimulator, stores: Stores, servicebus_peer: ServiceBusPeer
) -> None:
    # ARM will not see the app's new principal for a while: the pass fails temporarily.
    await cloud_env.admin.set_faults({"arm": Faults(principal_lag_s=2.5)})
    impatient = EngineOptions(principal_replication_window=0.5, retry_total=0)
    svc = service(stores, servicebus_peer.connection_string, impatient)
    assert (
        await svc.handle_ticket(ticket(cloud_env, "CHG7002", {"displayName": "sc-new", "create": True}))
    ).outcome == "accepted"
    (handed_off,) = servicebus_peer.messages("reconcile")
    servicebus_peer.reset()
    report = await svc.reconcile(parse_reconcile_message(handed_off.body))
    assert [str(o.status) for o in report.outcomes] == ["failed-temporary"]
    (follow_up,) = servicebus_peer.messages("reconcile")
    assert follow_up.scheduled
    request = parse_reconcile_message(follow_up.body)
    assert request.reason == "follow-up" and request.request_id == "CHG7002"
    status = await stores.status.get("contoso/payments/kv")
    assert status is not None and status.phase == "failed-temporary"
    await asyncio.sleep(2.5)  # the follow-up's time: ARM sees the principal now
    again = await svc.reconcile(request)
    assert again.all_converged, [(o.status, o.reason) for o in again.outcomes]
    finished = await stores.requests.get("CHG7002")
    assert finished is not None and finished.outcome == "applied"


async def test_a_sweeps_follow_up_carries_the_sweep_id_and_records_no_request(
    cloud_env: RunningSimulator,
    stores: Stores,
    servicebus_peer: ServiceBusPeer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await cloud_env.admin.set_faults({"arm": Faults(principal_lag_s=2.5)})
    impatient = EngineOptions(principal_replication_window=0.5, retry_total=0)
    svc = service(stores, servicebus_peer.connection_string, impatient)
    body = ticket(cloud_env, "CHG7003", {"displayName": "sc-swept", "create": True})
    assert (await svc.handle_ticket(body)).outcome == "accepted"
    servicebus_peer.reset()  # the ticket's own reconcile is not delivered: the sweep finds the config
    swept_report = await svc.sweep()
    assert (swept_report.configs, swept_report.apps_queued, swept_report.messages) == (1, 1, 1)
    (swept,) = servicebus_peer.messages("reconcile")
    servicebus_peer.reset()
    sweep = parse_reconcile_message(swept.body)
    report = await svc.reconcile(sweep)
    assert [str(o.status) for o in report.outcomes] == ["failed-temporary"]
    (follow_up,) = servicebus_peer.messages("reconcile")
    request = parse_reconcile_message(follow_up.body)
    assert (request.reason, request.sweep_id, request.request_id) == ("follow-up", sweep.sweep_id, None)
    await asyncio.sleep(2.5)  # ARM sees the principal now
    with caplog.at_level("WARNING", logger="reconciler"):
        assert (await svc.reconcile(request)).all_converged
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []
    assert sweep.sweep_id is not None and await stores.requests.get(sweep.sweep_id) is None
