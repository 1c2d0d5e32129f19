"""Table federationstatus: the latest reconcile of each config, keyed as the configs."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableEntity, UpdateMode
from azure.data.tables.aio import TableClient

from reconciler.engine.run import Status
from reconciler.state.tables import (
    MAX_PLAN_SUMMARY,
    STATUS_TABLE,
    CorruptRow,
    InvalidRow,
    decode_row_key,
    encode_row_key,
    fit,
    iterate,
    translated,
)


@dataclass(frozen=True)
class ConfigStatus:
    config_id: str
    organization: str
    phase: Status  # the engine's outcome for the config: the one vocabulary of phases
    observed_generation: int
    last_plan: str = ""  # summarise_plan(...)
    last_error: str = ""
    retry_after: float | None = None
    last_reconcile: str = ""  # ISO 8601 UTC, from the caller: the store keeps no clock
    # The client id of the application the config was last applied to: when the config moves to
    # another one, what it created on this one is removed.
    applied_application: str = ""


def summarise_plan(action_kinds: Sequence[str], limit: int = MAX_PLAN_SUMMARY) -> str:
    """A config's plan in one line for its status row: "2 actions: create-credential, ...".

    The plan itself is rebuilt on demand (GET /api/configs/{id}/plan); this only says what the
    last pass wanted to change.
    """
    if not action_kinds:
        return "no changes"
    noun = "action" if len(action_kinds) == 1 else "actions"
    return fit(f"{len(action_kinds)} {noun}: {', '.join(action_kinds)}", limit)[0]


class StatusStore:
    """Table federationstatus, keyed as the configs: one row per config, the latest reconcile."""

    table_name = STATUS_TABLE

    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def put(self, status: ConfigStatus) -> ConfigStatus:
        """Stores the status, each text cut to fit; returns what was stored.

        Replaces the whole row rather than merging: a merge would keep a cleared field
        (retry_after None, no error any more) at its old value.
        """
        stored = ConfigStatus(
            config_id=status.config_id,
            organization=status.organization.lower(),
            phase=Status(status.phase),  # refuses a phase outside the vocabulary
            observed_generation=status.observed_generation,
            last_plan=fit(status.last_plan, MAX_PLAN_SUMMARY)[0],
            last_error=fit(status.last_error)[0],
            retry_after=status.retry_after,
            last_reconcile=status.last_reconcile,
            applied_application=status.applied_application,
        )
        entity: dict[str, Any] = {
            "PartitionKey": stored.organization,
            "RowKey": encode_row_key(stored.config_id),
            "Phase": str(stored.phase),
            "ObservedGeneration": stored.observed_generation,
            "LastPlan": stored.last_plan,
            "LastError": stored.last_error,
            "LastReconcile": stored.last_reconcile,
            "AppliedApplication": stored.applied_application,
        }
        if stored.retry_after is not None:
            entity["RetryAfter"] = float(stored.retry_after)
        await translated(
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE), f"write status {status.config_id!r}"
        )
        return stored

    async def get(self, config_id: str, organization: str | None = None) -> ConfigStatus | None:
        row_key = encode_row_key(config_id)
        entity: TableEntity | None = None
        if organization is not None:
            try:
                entity = await translated(
                    self._table.get_entity(organization.lower(), row_key), f"read status {config_id!r}"
                )
            except ResourceNotFoundError:
                return None
        else:
            pages = self._table.query_entities("RowKey eq @key", parameters={"key": row_key})
            async for found in iterate(pages, f"find status {config_id!r}"):
                entity = found
                break
        if entity is None:
            return None
        retry_after = entity.get("RetryAfter")
        return ConfigStatus(
            config_id=decode_row_key(entity["RowKey"]),
            organization=entity["PartitionKey"],
            phase=_phase(entity),
            observed_generation=int(entity.get("ObservedGeneration", 0)),
            last_plan=str(entity.get("LastPlan", "")),
            last_error=str(entity.get("LastError", "")),
            retry_after=None if retry_after is None else float(retry_after),
            last_reconcile=str(entity.get("LastReconcile", "")),
            applied_application=str(entity.get("AppliedApplication") or ""),
        )

    async def delete(self, config_id: str, organization: str) -> None:
        """Forgets the status of a purged config (nothing happens when there is none)."""
        with contextlib.suppress(ResourceNotFoundError):
            await translated(
                self._table.delete_entity(organization.lower(), encode_row_key(config_id)),
                f"delete status {config_id!r}",
            )


def _phase(entity: TableEntity) -> Status:
    try:
        return Status(str(entity.get("Phase")))
    except ValueError:
        problem = f"Phase: expected one of {', '.join(Status)}, got {entity.get('Phase')!r:.60}"
        row = InvalidRow(STATUS_TABLE, entity["PartitionKey"], entity["RowKey"], (problem,))
        raise CorruptRow(row) from None
