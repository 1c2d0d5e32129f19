"""Table federationhistory: every drift the reconciler repaired, per config, newest first.

One row per config and repairing pass: what changed (the actions applied), when the drift was
detected and repaired, by which source (`arm-event`, `ado-audit`, `entra-audit`, `sweep`, `ticket`,
`follow-up`) and, where the event says it, who made the change (Event Grid claims, audit
`initiatedBy` / actor). PartitionKey: the config's row key; RowKey: the inverted repair time, so
a query on the partition returns the newest first.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from azure.data.tables.aio import TableClient

from reconciler.state.tables import HISTORY_TABLE, encode_row_key, fit, iterate, translated

MAX_ROWS_READ = 1_000
_LATEST = 10**13  # milliseconds: RowKeys sort newest first until the year 2286
MAX_CHANGES_CHARS = 16_000


@dataclass(frozen=True)
class Repair:
    config_id: str
    repaired_at: str  # ISO 8601 UTC
    detected_at: str  # when the source saw the change (the event's time), else the pass's start
    source: str
    actor: str  # "" when the source does not say (a sweep never does)
    changes: tuple[str, ...]
    trigger: str = ""  # the event id, request id or sweep id

    def as_json(self) -> dict[str, object]:
        return {
            "configId": self.config_id,
            "repairedAt": self.repaired_at,
            "detectedAt": self.detected_at,
            "source": self.source,
            "actor": self.actor,
            "changes": list(self.changes),
            "trigger": self.trigger,
        }


class HistoryStore:
    table_name = HISTORY_TABLE

    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def add(self, repair: Repair) -> None:
        at = datetime.fromisoformat(repair.repaired_at)
        inverted = _LATEST - int(at.timestamp() * 1000)
        digest = hashlib.sha256(json.dumps(repair.as_json(), sort_keys=True).encode()).hexdigest()[:12]
        entity = {
            "PartitionKey": encode_row_key(repair.config_id),
            "RowKey": f"{inverted:013d}-{digest}",
            "ConfigId": repair.config_id,
            "RepairedAt": repair.repaired_at,
            "DetectedAt": repair.detected_at,
            "Source": repair.source,
            "Actor": fit(repair.actor, 1_000)[0],
            "Changes": fit(json.dumps(list(repair.changes)), MAX_CHANGES_CHARS)[0],
            "Trigger": repair.trigger,
        }
        await translated(self._table.upsert_entity(entity), f"record a repair of {repair.config_id!r}")

    async def list(self, config_id: str, limit: int = 100) -> list[Repair]:
        """The config's repairs, newest first (at most `limit`, itself at most MAX_ROWS_READ)."""
        pages = self._table.query_entities(
            "PartitionKey eq @key", parameters={"key": encode_row_key(config_id)}, results_per_page=100
        )
        found: list[Repair] = []
        async for row in iterate(pages, f"read the history of {config_id!r}"):
            found.append(_repair(row, config_id))
            if len(found) >= min(limit, MAX_ROWS_READ):
                break
        return found


def _repair(row: dict[str, object], config_id: str) -> Repair:
    try:
        changes = json.loads(str(row.get("Changes") or "[]"))
    except ValueError:
        changes = [str(row.get("Changes"))]  # cut to fit when it was written
    return Repair(
        config_id=config_id,
        repaired_at=str(row.get("RepairedAt") or ""),
        detected_at=str(row.get("DetectedAt") or ""),
        source=str(row.get("Source") or ""),
        actor=str(row.get("Actor") or ""),
        changes=tuple(str(c) for c in changes) if isinstance(changes, list) else (str(changes),),
        trigger=str(row.get("Trigger") or ""),
    )
