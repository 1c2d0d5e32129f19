"""Table federationstatus: the latest reconcile of each config, keyed as the configs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableEntity, UpdateMode
from azure.data.tables.aio import TableClient

from reconciler.state.tables import (
    MAX_PLAN_SUMMARY,
    MAX_TEXT_UNITS,
    STATUS_TABLE,
    decode_row_key,
    encode_row_key,
    fit,
    iterate,
    translated,
    utf16_units,
)

Phase = Literal["converged", "drifted", "failed-temporary", "failed-permanent", "blocked", "pending"]
PHASES: tuple[str, ...] = (
    "converged",
    "drifted",
    "failed-temporary",
    "failed-permanent",
    "blocked",
    "pending",
)


@dataclass(frozen=True)
class ConfigStatus:
    config_id: str
    organization: str
    phase: str  # one of PHASES
    observed_generation: int
    last_plan: str = ""  # summarise_plan(...)
    last_error: str = ""
    retry_after: float | None = None
    last_reconcile: str = ""  # ISO 8601 UTC, from the caller: the store keeps no clock
    conditions: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    # The client id of the application the config was last applied to: when the config moves to
    # another one, what it created on this one is removed.
    applied_application: str = ""


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
        if status.phase not in PHASES:
            raise ValueError(f"unknown phase {status.phase!r}: expected one of {', '.join(PHASES)}")
        stored = ConfigStatus(
            config_id=status.config_id,
            organization=status.organization.lower(),
            phase=status.phase,
            observed_generation=status.observed_generation,
            last_plan=fit(status.last_plan, MAX_PLAN_SUMMARY)[0],
            last_error=fit(status.last_error)[0],
            retry_after=status.retry_after,
            last_reconcile=status.last_reconcile,
            conditions=_fit_conditions(status.conditions),
            applied_application=status.applied_application,
        )
        entity: dict[str, Any] = {
            "PartitionKey": stored.organization,
            "RowKey": encode_row_key(stored.config_id),
            "Phase": stored.phase,
            "ObservedGeneration": stored.observed_generation,
            "LastPlan": stored.last_plan,
            "LastError": stored.last_error,
            "LastReconcile": stored.last_reconcile,
            "Conditions": json.dumps(list(stored.conditions), ensure_ascii=False),
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
            phase=str(entity.get("Phase", "")),
            observed_generation=int(entity.get("ObservedGeneration", 0)),
            last_plan=str(entity.get("LastPlan", "")),
            last_error=str(entity.get("LastError", "")),
            retry_after=None if retry_after is None else float(retry_after),
            last_reconcile=str(entity.get("LastReconcile", "")),
            conditions=tuple(_json_list(entity.get("Conditions"))),
            applied_application=str(entity.get("AppliedApplication") or ""),
        )

    async def delete(self, config_id: str, organization: str) -> None:
        """Forgets the status of a purged config (nothing happens when there is none)."""
        with contextlib.suppress(ResourceNotFoundError):
            await translated(
                self._table.delete_entity(organization.lower(), encode_row_key(config_id)),
                f"delete status {config_id!r}",
            )


def _fit_conditions(conditions: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any], ...]:
    """Drops conditions from the end until the list fits, and says so in a last condition."""
    kept = list(conditions)
    marker = {"type": "Truncated", "status": "True", "message": "more conditions were dropped to fit"}
    while kept and utf16_units(json.dumps(kept, ensure_ascii=False)) > MAX_TEXT_UNITS:
        kept = kept[: len(kept) // 2]
        if utf16_units(json.dumps([*kept, marker], ensure_ascii=False)) <= MAX_TEXT_UNITS:
            return (*kept, marker)
    return tuple(kept)


def _json_list(text: object) -> list[Mapping[str, Any]]:
    try:
        value = json.loads(str(text or "[]"))
    except json.JSONDecodeError:
        return []
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []
