"""Valid ticket bodies and the policy the ticket tests check against."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from reconciler.core.policy import GrantPolicy
from reconciler.documents import load_policy

ROOT = Path(__file__).resolve().parents[2]
POLICY: GrantPolicy = load_policy(ROOT / "policy.yaml")
SUBSCRIPTION = "6b1e2c5a-3f4d-4e8a-9c7b-1a2b3c4d5e6f"
RESOURCE_GROUP = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-pay"
APP_ID = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"

CONFIG: dict[str, Any] = {
    "organization": "contoso",
    "project": "payments",
    "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "serviceConnection": {
        "name": "kv-reader",
        "subscriptionId": SUBSCRIPTION,
        "subscriptionName": "Payments Prod",
        "pipelines": [12, 15],
    },
    "application": {"appId": APP_ID},
    "roleAssignments": [
        {
            "role": "Key Vault Reader",
            "scope": f"{RESOURCE_GROUP}/providers/Microsoft.KeyVault/vaults/kv-pay",
        }
    ],
    "prune": "managed",
}


def upsert(**changes: Any) -> dict[str, Any]:
    ticket: dict[str, Any] = {
        "schemaVersion": 1,
        "requestId": "CHG0012345",
        "action": "upsert",
        "requestedBy": "jane@contoso.com",
        "config": copy.deepcopy(CONFIG),
    }
    ticket.update(changes)
    return ticket


def by_id(action: str, config_id: str = "contoso/payments/kv-reader", **changes: Any) -> dict[str, Any]:
    ticket: dict[str, Any] = {
        "schemaVersion": 1,
        "requestId": "CHG0012346",
        "action": action,
        "requestedBy": "jane@contoso.com",
        "configId": config_id,
    }
    ticket.update(changes)
    return ticket


def encode(ticket: object) -> bytes:
    return json.dumps(ticket).encode()
