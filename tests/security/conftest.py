"""The Functions app as the host runs it, against Azurite, the cloud simulator and the Service Bus peer.

`Host.deliver` does what the Functions host does with a message on `requests`: receive it with a
peek-lock through the real SDK, run the trigger, complete the message when the trigger returns and
abandon it when it raises (so a raise means redelivery, and in the end the dead-letter queue).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

import function_app
from cloudsim.testing import SAMPLE_SUBSCRIPTION, RunningSimulator, cloud_env, cloud_simulator
from reconciler.app import context as app_context
from reconciler.app.service import ReconcilerService
from servicebus_peer import ServiceBusPeer
from servicebus_peer.testing import servicebus_peer
from tests.app_settings import settle_app_settings
from tests.azurite import azurite_tables, table_settings

__all__ = ["azurite_tables", "cloud_env", "cloud_simulator", "servicebus_peer", "table_settings"]

VAULT = (
    f"/subscriptions/{SAMPLE_SUBSCRIPTION}/resourceGroups/rg-pay/providers/Microsoft.KeyVault/vaults/kv-pay"
)
# Two ticketing systems: ServiceNow may manage all of contoso, Jira only fabrikam's `web` project.
POLICY = """apiVersion: wif-reconciler/v1
kind: GrantPolicy
organizations: [contoso, fabrikam]
roles: [Key Vault Reader]
scopes: [/subscriptions/*/resourceGroups/*]
ticketSources:
  - name: servicenow
    organizations: [contoso]
  - name: jira
    projects: [fabrikam/storefront]
"""


class Host:
    def __init__(
        self, sim: RunningSimulator, peer: ServiceBusPeer, receiver: ServiceBusReceiver, tmp: Path
    ) -> None:
        self.sim, self.peer, self._receiver, self._tmp = sim, peer, receiver, tmp

    async def deliver(self, body: bytes) -> None:
        """One message through the `requests` trigger, settled as the host settles it."""
        self.peer.inject("requests", body)
        (message,) = await self._receiver.receive_messages(max_message_count=1, max_wait_time=5)
        try:
            await function_app.ticket_requests(func.ServiceBusMessage(body=b"".join(message.body)))
        except BaseException:
            await self._receiver.abandon_message(message)
            raise
        await self._receiver.complete_message(message)

    async def deliver_reconciles(self) -> int:
        """Hand every message on `reconcile` to the reconcile trigger (what reaches the clouds)."""
        messages = self.peer.messages("reconcile")
        for message in messages:
            await function_app.reconcile_apps(func.ServiceBusMessage(body=message.body))
        self.peer.reset()
        return len(messages)

    async def service(self) -> ReconcilerService:
        return await app_context.service()

    async def use_policy(self, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Restart the worker with another grant policy (as a redeploy would)."""
        path = self._tmp / f"policy-{abs(hash(text))}.yaml"
        path.write_text(text)
        monkeypatch.setenv("WIF_POLICY_FILE", str(path))
        await app_context.reset()

    def settled(self) -> bool:
        """Nothing left on `requests`: every message was completed, none redelivered or dead-lettered."""
        return not self.peer.messages("requests") and not self.peer.dead_letters("requests")

    async def cloud_state(self) -> Any:
        return await self.sim.admin.dump_state()


@pytest.fixture
async def host(
    cloud_env: RunningSimulator,
    table_settings: dict[str, str],
    servicebus_peer: ServiceBusPeer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[Host]:
    await settle_app_settings(
        monkeypatch, tmp_path, policy=POLICY, table_settings=table_settings, peer=servicebus_peer
    )
    async with (
        ServiceBusClient.from_connection_string(servicebus_peer.connection_string, retry_total=0) as client,
        client.get_queue_receiver("requests") as receiver,
    ):
        yield Host(cloud_env, servicebus_peer, receiver, tmp_path)
    await app_context.reset()


def config(
    tenant_id: str,
    organization: str = "contoso",
    project: str = "payments",
    name: str = "kv-reader",
    **changes: Any,
) -> dict[str, Any]:
    """A valid config that asks the reconciler to create its application."""
    return {
        "organization": organization,
        "project": project,
        "tenantId": tenant_id,
        "serviceConnection": {
            "name": name,
            "subscriptionId": SAMPLE_SUBSCRIPTION,
            "subscriptionName": "Prod",
        },
        "application": {"displayName": f"sc-{organization}-{project}-{name}", "create": True},
        "roleAssignments": [{"role": "Key Vault Reader", "scope": VAULT}],
        "prune": "managed",
        **changes,
    }


def ticket(
    request_id: str, action: str = "upsert", *, source: str | None = "servicenow", **fields: Any
) -> bytes:
    """A ticket message; `source=None` leaves the source out."""
    message: dict[str, Any] = {
        "schemaVersion": 1,
        "requestId": request_id,
        "action": action,
        "requestedBy": "jane@contoso.com",
        **fields,
    }
    if source is not None:
        message["source"] = source
    return json.dumps(message).encode()
