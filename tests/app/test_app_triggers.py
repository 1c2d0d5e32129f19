"""Each trigger called directly, with real azure.functions objects, against Azurite (tables), the cloud
simulator (Graph, ARM, ADO, tokens) and the Service Bus peer (queues)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest
from azure.servicebus import ServiceBusReceivedMessage

import function_app
from cloudsim.state import FederatedCredential, new_id
from cloudsim.testing import SAMPLE_SUBSCRIPTION, RunningSimulator
from reconciler.app import context as app_context
from reconciler.app.service import ReconcilerService
from servicebus_peer import PeerMessage, ServiceBusPeer
from tests.app_settings import settle_app_settings

VAULT = (
    f"/subscriptions/{SAMPLE_SUBSCRIPTION}/resourceGroups/rg-pay/providers/Microsoft.KeyVault/vaults/kv-pay"
)
POLICY = """apiVersion: wif-reconciler/v1
kind: GrantPolicy
organizations: [contoso]
roles: [Key Vault Reader]
scopes: [/subscriptions/*/resourceGroups/*]
"""


@pytest.fixture
async def app(
    cloud_env: RunningSimulator,
    table_settings: dict[str, str],
    servicebus_peer: ServiceBusPeer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[App]:
    await settle_app_settings(
        monkeypatch, tmp_path, policy=POLICY, table_settings=table_settings, peer=servicebus_peer
    )
    seeded = await cloud_env.admin.seed_application("sc-payments-kv-reader")
    yield App(cloud_env, servicebus_peer, seeded)
    await app_context.reset()


def as_the_host_passes_it(message: PeerMessage | ServiceBusReceivedMessage) -> func.ServiceBusMessage:
    """The trigger's argument as the Python worker builds it: the body and the broker's properties."""
    body = message.body if isinstance(message, PeerMessage) else b"".join(message.body)
    return ServiceBusMessage(
        body=body,
        message_id=str(message.message_id),
        session_id=message.session_id,
        delivery_count=message.delivery_count,
        application_properties={},
        user_properties={},
    )


class App:
    def __init__(self, sim: RunningSimulator, peer: ServiceBusPeer, seeded: dict[str, Any]) -> None:
        self.sim, self.peer, self.seeded = sim, peer, seeded

    def ticket(self, request_id: str, action: str = "upsert", **config_changes: Any) -> bytes:
        if action != "upsert":
            body: dict[str, Any] = {"configId": "contoso/payments/kv-reader"}
        else:
            config = {
                "apiVersion": "wif-reconciler/v1",
                "kind": "FederationConfig",
                "organization": "contoso",
                "project": "payments",
                "tenantId": self.sim.tenant_id,
                "serviceConnection": {
                    "name": "kv-reader",
                    "subscriptionId": SAMPLE_SUBSCRIPTION,
                    "subscriptionName": "Payments Prod",
                },
                "application": {"appId": self.seeded["appId"]},
                "roleAssignments": [{"role": "Key Vault Reader", "scope": VAULT}],
                "prune": "managed",
                **config_changes,
            }
            body = {"config": config}
        message = {
            "schemaVersion": 1,
            "requestId": request_id,
            "action": action,
            "requestedBy": "jane@contoso.com",
        }
        return json.dumps({**message, **body}).encode()

    async def service(self) -> ReconcilerService:
        return await app_context.service()

    async def deliver_reconciles(self) -> int:
        """Hand every message the peer holds on `reconcile` to the reconcile trigger, as the host would."""
        delivered = 0
        for message in self.peer.messages("reconcile"):
            await function_app.reconcile_apps(as_the_host_passes_it(message))
            delivered += 1
        self.peer.reset()
        return delivered

    def credentials(self) -> list[Any]:
        app = self.sim.world.application_by_app_id(self.seeded["appId"])
        assert app is not None
        return list(app.federated_credentials)

    def assignments(self) -> list[Any]:
        return [
            ra
            for ra in self.sim.world.role_assignments
            if ra.principal_id == self.seeded["servicePrincipalId"]
        ]


async def test_a_ticket_upsert_ends_with_the_table_the_cloud_the_status_and_the_request_recorded(
    app: App,
) -> None:
    await function_app.ticket_requests(func.ServiceBusMessage(body=app.ticket("CHG0001")))
    service = await app.service()
    request = await service.request("CHG0001")
    assert request is not None and request.outcome == "accepted"
    assert await app.deliver_reconciles() == 1
    assert len(app.credentials()) == 1 and len(app.assignments()) == 1
    status = await service.status("contoso/payments/kv-reader")
    assert status is not None and status.phase == "converged" and status.observed_generation == 1
    request = await service.request("CHG0001")
    assert request is not None and request.outcome == "applied"


async def upsert_and_reconcile(app: App, request_id: str = "CHG0001", **changes: Any) -> None:
    await function_app.ticket_requests(func.ServiceBusMessage(body=app.ticket(request_id, **changes)))
    await app.deliver_reconciles()


async def test_a_delete_with_prune_managed_removes_only_what_was_owned(app: App) -> None:
    await upsert_and_reconcile(app)
    world = app.sim.world
    live = world.application_by_app_id(app.seeded["appId"])
    assert live is not None
    foreign = FederatedCredential(
        id=new_id(), name="by-hand", issuer="https://token.actions.githubusercontent.com", subject="repo:x",
        audiences=["api://AzureADTokenExchange"],
    )  # fmt: skip
    live.federated_credentials.append(foreign)
    await function_app.ticket_requests(func.ServiceBusMessage(body=app.ticket("CHG0002", action="delete")))
    assert await app.deliver_reconciles() == 1
    assert app.credentials() == [foreign]
    assert app.assignments() == []
    org = world.organization("contoso")
    assert org is not None and [e.name for e in org.endpoints] == []  # created by the reconciler, so deleted
    service = await app.service()
    assert await service.status("contoso/payments/kv-reader") is None
    request = await service.request("CHG0002")
    assert request is not None and request.outcome == "applied"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json at all", "not JSON"),
        (b'{"schemaVersion": 2, "requestId": "CHG9", "action": "upsert"}', "schemaVersion"),
        (None, "privileged"),
    ],
    ids=["not-json", "wrong-version", "policy-violation"],
)
async def test_invalid_and_forbidden_requests_are_recorded_as_rejected_and_write_nothing(
    app: App, body: bytes | None, reason: str
) -> None:
    if body is None:
        owner = [{"role": "Owner", "scope": VAULT}]
        body = app.ticket("CHG0003", roleAssignments=owner)
    await function_app.ticket_requests(func.ServiceBusMessage(body=body))
    service = await app.service()
    assert [r async for r in service._stores.configs.list_all()] == []
    assert app.peer.messages("reconcile") == []
    request_id = "CHG0003" if b"CHG0003" in body else ("CHG9" if b"CHG9" in body else None)
    if request_id is not None:
        record = await service.request(request_id)
        assert record is not None and record.outcome == "rejected" and reason.lower() in record.reason.lower()


async def test_the_same_request_delivered_twice_applies_once(app: App) -> None:
    body = app.ticket("CHG0004")
    await function_app.ticket_requests(func.ServiceBusMessage(body=body))
    await function_app.ticket_requests(func.ServiceBusMessage(body=body))
    assert len(app.peer.messages("reconcile")) == 1
    service = await app.service()
    record = await service._stores.configs.get("contoso/payments/kv-reader")
    assert record is not None and record.generation == 1


async def test_concurrent_upserts_of_one_config_never_lose_an_update(app: App) -> None:
    names = [f"Payments {n}" for n in range(4)]
    bodies = [
        app.ticket(f"CHG01{n}", serviceConnection={
            "name": "kv-reader", "subscriptionId": SAMPLE_SUBSCRIPTION, "subscriptionName": name,
        })
        for n, name in enumerate(names)
    ]  # fmt: skip
    await asyncio.gather(*(function_app.ticket_requests(func.ServiceBusMessage(body=b)) for b in bodies))
    service = await app.service()
    record = await service._stores.configs.get("contoso/payments/kv-reader")
    assert record is not None and record.generation == len(bodies)  # every write landed, one after another
    for n in range(len(bodies)):
        request = await service.request(f"CHG01{n}")
        assert request is not None and request.outcome == "accepted"


async def test_the_timer_sweeps_even_when_past_due(app: App) -> None:
    await upsert_and_reconcile(app)
    (credential,) = app.credentials()
    await app.sim.admin.delete_fic(app.seeded["appId"], credential.name)  # drift: someone deleted it
    await function_app.drift_sweep(TimerRequest(past_due=True))
    (message,) = app.peer.messages("reconcile")
    assert json.loads(message.body)["reason"] == "sweep"
    assert await app.deliver_reconciles() == 1
    assert len(app.credentials()) == 1


def http(method: str, url: str, body: bytes = b"", **route: str) -> func.HttpRequest:
    return func.HttpRequest(method, url, body=body, route_params=route)


async def test_the_http_api(app: App) -> None:
    await upsert_and_reconcile(app)
    config_route = "contoso~payments~kv-reader"
    response = await function_app.http_plan(
        http("GET", f"/api/configs/{config_route}/plan", config_id=config_route)
    )
    assert response.status_code == 200 and json.loads(response.get_body())["plan"]["summary"]["actions"] == 0
    response = await function_app.http_status(http("GET", "/api/configs/x/status", config_id=config_route))
    assert response.status_code == 200 and json.loads(response.get_body())["phase"] == "converged"
    response = await function_app.http_request(http("GET", "/api/requests/CHG0001", request_id="CHG0001"))
    assert response.status_code == 200 and json.loads(response.get_body())["outcome"] == "applied"
    dry = json.dumps({"configIds": ["contoso/payments/kv-reader"], "dryRun": True}).encode()
    response = await function_app.http_reconcile(http("POST", "/api/reconcile", dry))
    assert response.status_code == 200
    assert {o["status"] for o in json.loads(response.get_body())["outcomes"]} == {"converged"}
    response = await function_app.http_health(http("GET", "/api/health"))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("handler", "request_", "status"),
    [
        ("http_reconcile", http("POST", "/api/reconcile", b"{not json"), 400),
        ("http_reconcile", http("POST", "/api/reconcile", b'{"all": true, "configIds": ["a"]}'), 400),
        ("http_reconcile", http("POST", "/api/reconcile", b'{"configIds": ["contoso/nope/x"]}'), 404),
        ("http_plan", http("GET", "/api/configs/x/plan", config_id="contoso~nope~x"), 404),
        ("http_plan", http("GET", "/api/configs/x/plan", config_id="Bad Id!"), 400),
        ("http_status", http("GET", "/api/configs/x/status", config_id="contoso~nope~x"), 404),
        ("http_request", http("GET", "/api/requests/x", request_id="no such"), 400),
        ("http_request", http("GET", "/api/requests/x", request_id="CHG404"), 404),
    ],
)
async def test_http_errors_are_problem_json_without_internals(
    app: App, handler: str, request_: func.HttpRequest, status: int
) -> None:
    response = await getattr(function_app, handler)(request_)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = json.loads(response.get_body())
    assert problem["status"] == status and problem["title"] and "Traceback" not in problem["detail"]
