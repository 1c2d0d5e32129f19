"""Rows as earlier versions of the reconciler wrote them, with the raw azure-data-tables client
(no code of ours), for the tests of `table migrate`."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from azure.data.tables import TableServiceClient

from reconciler.core.events import IndexKey
from reconciler.core.serialise import config_to_document
from reconciler.core.validation import Document, parse_config
from reconciler.state.tables import CLAIMS_TABLE, CONFIGS_TABLE, INDEX_TABLE


def old_config(raw: TableServiceClient, body: dict[str, Any]) -> dict[str, Any]:
    """A config row as versions before the connection index wrote it: the row alone."""
    parsed, problems = parse_config(Document("test", 1, body))
    assert parsed is not None, problems
    row = {
        "PartitionKey": parsed.organization.lower(),
        "RowKey": parsed.id.replace("/", "~"),
        "Document": json.dumps(config_to_document(parsed), separators=(",", ":")),
        "Generation": 1,
        "AppKey": parsed.application.key,
        "Deleted": False,
        "Prune": parsed.prune.value,
        "RequestId": "CHG1",
        "UpdatedAt": "2026-12-01T00:00:00+00:00",
    }
    raw.get_table_client(CONFIGS_TABLE).create_entity(row)
    return row


def old_claim(raw: TableServiceClient, key: str, config_id: str, project: str = "payments") -> None:
    """A claim as versions before `Created` wrote it."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    raw.get_table_client(CLAIMS_TABLE).create_entity(
        {
            "PartitionKey": digest[:2],
            "RowKey": digest,
            "Application": key,
            "Organization": "contoso",
            "Project": project,
            "ConfigId": config_id,
            "RequestId": "CHG1",
            "ClaimedAt": "2026-12-01T00:00:00+00:00",
        }
    )


def old_index_row(raw: TableServiceClient, key: IndexKey, app_key: str) -> dict[str, Any]:
    """An index row of the one-partition-per-object layout (PartitionKey: all of sha256(object))."""
    row = {
        "PartitionKey": hashlib.sha256(str(key).encode()).hexdigest(),
        "RowKey": hashlib.sha256(app_key.encode()).hexdigest()[:40],
        "Key": str(key),
        "Kind": key.kind,
        "AppKey": app_key,
    }
    raw.get_table_client(INDEX_TABLE).create_entity(row)
    return row
