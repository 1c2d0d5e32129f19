"""The stores against a real Azurite (started once per session, tables emptied per test)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from reconciler.state.stores import Stores, open_stores
from tests.azurite import azurite_tables, table_settings

__all__ = ["azurite_tables", "table_settings"]

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SUBSCRIPTION = "6b1e2c5a-3f4d-4e8a-9c7b-1a2b3c4d5e6f"
APP_ID = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
VAULT = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-pay/providers/microsoft.keyvault/vaults/kv-pay"


def document(name: str = "kv-reader", *, organization: str = "contoso", **changes: Any) -> dict[str, Any]:
    """A valid config document in the YAML format, as a ticket or a file would carry it."""
    body: dict[str, Any] = {
        "apiVersion": "wif-reconciler/v1",
        "kind": "FederationConfig",
        "organization": organization,
        "project": "payments",
        "tenantId": TENANT,
        "serviceConnection": {
            "name": name,
            "subscriptionId": SUBSCRIPTION,
            "subscriptionName": "Payments Prod",
            "pipelines": "all",
        },
        "application": {"appId": APP_ID},
        "roleAssignments": [{"role": "Key Vault Reader", "scope": VAULT}],
        "prune": "managed",
    }
    body.update(copy.deepcopy(changes))
    return body


@pytest.fixture
async def stores(table_settings: dict[str, str]) -> AsyncIterator[Stores]:
    async with await open_stores(table_settings, None) as opened:
        yield opened
