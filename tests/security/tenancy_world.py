"""A tenant for the tenancy and ownership tests: the Functions triggers called directly against
Azurite (tables), the cloud simulator (Graph, ARM, ADO) and the Service Bus peer, as in tests/app.

Two ADO projects of one organization: `payments` (the victim, first to claim its applications)
and `identity` (the other team, or the attacker).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

import function_app
from cloudsim.state import Application, FederatedCredential, ProjectReference, ServiceEndpoint, new_id
from cloudsim.testing import SAMPLE_SUBSCRIPTION, RunningSimulator, cloud_env, cloud_simulator
from reconciler.app import context as app_context
from reconciler.app.service import ReconcilerService
from reconciler.core.tenancy import TENANT_TAG_PREFIX
from servicebus_peer import ServiceBusPeer
from servicebus_peer.testing import servicebus_peer
from tests.app_settings import settle_app_settings
from tests.azurite import azurite_tables, table_settings

__all__ = ["azurite_tables", "cloud_env", "cloud_simulator", "servicebus_peer", "table_settings"]

VAULT = f"/subscriptions/{SAMPLE_SUBSCRIPTION}/resourceGroups/rg-pay"
POLICY = """apiVersion: wif-reconciler/v1
kind: GrantPolicy
organizations: [contoso]
roles: [Key Vault Reader]
scopes: [/subscriptions/*/resourceGroups/*]
"""


class Tenant:
    def __init__(self, sim: RunningSimulator, peer: ServiceBusPeer, policy: Path) -> None:
        self.sim, self.peer, self.policy = sim, peer, policy
        self.victim_app: dict[str, Any] = {}
        self.other_app: dict[str, Any] = {}

    async def share(self, policy_lines: str) -> None:
        """Adds lines to the policy and rebuilds the service, as a redeploy would."""
        self.policy.write_text(POLICY + policy_lines)
        await app_context.reset()

    def ticket(
        self,
        request_id: str,
        *,
        project: str = "payments",
        name: str = "kv-reader",
        application: dict[str, Any] | None = None,
        config_id: str | None = None,
        action: str = "upsert",
    ) -> bytes:
        message: dict[str, Any] = {
            "schemaVersion": 1,
            "requestId": request_id,
            "action": action,
            "requestedBy": "someone@contoso.com",
        }
        if action != "upsert":
            message["configId"] = config_id or f"contoso/{project}/{name}"
            return json.dumps(message).encode()
        config: dict[str, Any] = {
            "organization": "contoso",
            "project": project,
            "tenantId": self.sim.tenant_id,
            "serviceConnection": {
                "name": name,
                "subscriptionId": SAMPLE_SUBSCRIPTION,
                "subscriptionName": "Payments Prod",
            },
            "application": application or {"appId": self.victim_app["appId"]},
            "roleAssignments": [{"role": "Key Vault Reader", "scope": VAULT}],
            "prune": "managed",
        }
        if config_id is not None:
            config["id"] = config_id
        return json.dumps({**message, "config": config}).encode()

    async def send(self, body: bytes) -> None:
        await function_app.ticket_requests(func.ServiceBusMessage(body=body))

    async def deliver_reconciles(self) -> int:
        """Hand every message the peer holds on `reconcile` to the reconcile trigger, as the host would."""
        delivered = 0
        for message in self.peer.messages("reconcile"):
            await function_app.reconcile_apps(func.ServiceBusMessage(body=message.body))
            delivered += 1
        self.peer.reset()
        return delivered

    async def service(self) -> ReconcilerService:
        return await app_context.service()

    async def outcome(self, request_id: str) -> tuple[str, str]:
        record = await (await self.service()).request(request_id)
        assert record is not None, f"request {request_id} was not recorded"
        return record.outcome, record.reason

    def app(self, app_id: str) -> Application:
        app = self.sim.world.application_by_app_id(app_id)
        assert app is not None
        return app

    def hand_over(self, app_id: str, project: str) -> None:
        """The app's owners tag it for `contoso/<project>` (replacing any tenant tag), as they would
        with `az rest --method PATCH` (docs/deploy.md)."""
        app = self.app(app_id)
        app.tags = [t for t in app.tags if not t.startswith(TENANT_TAG_PREFIX)]
        app.tags.append(f"{TENANT_TAG_PREFIX}contoso/{project}")

    def app_named(self, display_name: str) -> Application:
        (app,) = [a for a in self.sim.world.applications if a.display_name == display_name]
        return app

    def credentials(self, app_id: str) -> list[FederatedCredential]:
        return list(self.app(app_id).federated_credentials)

    def assignments(self, principal_id: str) -> list[Any]:
        return [ra for ra in self.sim.world.role_assignments if ra.principal_id == principal_id]

    def connections(self, project: str) -> list[ServiceEndpoint]:
        org = self.sim.world.organization("contoso")
        assert org is not None
        found = org.project(project)
        assert found is not None
        return [e for e in org.endpoints if any(r.project_id == found.id for r in e.project_refs)]

    def hand_made_connection(self, name: str, *, app_id: str, description: str = "") -> ServiceEndpoint:
        """A workload identity connection someone made by hand in ADO, before any config named it."""
        org = self.sim.world.organization("contoso")
        assert org is not None
        project = org.project("payments")
        assert project is not None
        endpoint = ServiceEndpoint(
            id=new_id(),
            name=name,
            type="AzureRM",
            url="https://management.azure.com/",
            scheme="WorkloadIdentityFederation",
            parameters={"serviceprincipalid": app_id, "tenantid": self.sim.tenant_id},
            data={"subscriptionId": SAMPLE_SUBSCRIPTION, "subscriptionName": "Payments Prod"},
            project_refs=[ProjectReference(project_id=project.id, name=name)],
            description=description,
            created_at=time.time() - 3600,
        )
        org.endpoints.append(endpoint)
        return endpoint


@pytest.fixture
async def tenant(
    cloud_env: RunningSimulator,
    table_settings: dict[str, str],
    servicebus_peer: ServiceBusPeer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[Tenant]:
    policy = await settle_app_settings(
        monkeypatch, tmp_path, policy=POLICY, table_settings=table_settings, peer=servicebus_peer
    )
    world = Tenant(cloud_env, servicebus_peer, policy)
    world.victim_app = await cloud_env.admin.seed_application(
        "sc-payments-deployer", tenant="contoso/payments"
    )
    world.other_app = await cloud_env.admin.seed_application(
        "sc-identity-deployer", tenant="contoso/identity"
    )
    yield world
    await app_context.reset()
