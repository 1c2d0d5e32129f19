"""Table federationstatus: the latest reconcile of each config, keyed as the configs.

A status row is written only when what it says changes (`changed`): a sweep that finds
everything as it was writes nothing. Writes of many rows go in table transactions
(`put_many`): up to 100 rows of one partition (one organization) per request.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableEntity, TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from reconciler.core.identifiers import Guid
from reconciler.engine.run import Status
from reconciler.failures import TemporaryFailure
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

log = logging.getLogger(__name__)

# Table Storage's limit of operations in one transaction (all in one partition).
MAX_TRANSACTION_ROWS = 100


@dataclass(frozen=True)
class ConfigStatus:
    config_id: str
    organization: str
    phase: Status  # the engine's outcome for the config: the one vocabulary of phases
    observed_generation: int
    last_plan: str = ""  # summarise_plan(...)
    last_error: str = ""
    retry_after: float | None = None
    # ISO 8601 UTC, from the caller (the store keeps no clock): when the row last changed. Not
    # when the config was last checked: a sweep that changes nothing writes nothing.
    last_reconcile: str = ""
    # The client id of the application the config was last applied to: when the config moves to
    # another one, what it created on this one is removed.
    applied_application: str = ""


def changed(previous: ConfigStatus | None, status: ConfigStatus) -> bool:
    """Whether `status` says something `previous` (the stored row) does not: anything but the time."""
    if previous is None:
        return True
    return replace(_stored(status), last_reconcile="") != replace(previous, last_reconcile="")


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
        stored = _stored(status)
        await translated(
            self._table.upsert_entity(_entity(stored), mode=UpdateMode.REPLACE),
            f"write status {status.config_id!r}",
        )
        return stored

    async def put_many(
        self,
        statuses: Iterable[ConfigStatus],
        on_failure: Callable[[Sequence[str], Exception], None] | None = None,
    ) -> int:
        """Stores these statuses (as `put` does) in transactions of up to 100 rows of one partition;
        returns how many rows were written.

        A failed transaction writes none of its rows. Without `on_failure` it raises; with it, the
        failure and the config ids of the transaction go there and the other transactions go on.
        """
        by_partition: dict[str, list[ConfigStatus]] = defaultdict(list)
        for status in statuses:
            stored = _stored(status)
            by_partition[stored.organization].append(stored)
        written = 0
        for partition in sorted(by_partition):
            rows = by_partition[partition]
            for start in range(0, len(rows), MAX_TRANSACTION_ROWS):
                batch = rows[start : start + MAX_TRANSACTION_ROWS]
                try:
                    await self._transact(batch)
                except Exception as error:
                    if on_failure is None:
                        raise
                    on_failure([s.config_id for s in batch], error)
                    continue
                written += len(batch)
        return written

    async def _transact(self, batch: Sequence[ConfigStatus]) -> None:
        what = f"write {len(batch)} status rows of {batch[0].organization!r}"
        operations = [("upsert", _entity(s), {"mode": UpdateMode.REPLACE}) for s in batch]
        try:
            await translated(self._table.submit_transaction(operations), what)
        except TableTransactionError as error:
            # An upsert conflicts with nothing: what fails it is the service (or a bug), not a race.
            raise TemporaryFailure(f"{what}: {error.message}", status=error.status_code) from error

    async def list_all(
        self, on_invalid: Callable[[InvalidRow], None] | None = None
    ) -> AsyncIterator[ConfigStatus]:
        """Every status row (the SDK pages through the table). A row that cannot be read goes to
        `on_invalid` (logged when None) and the listing goes on: the next write replaces it."""
        async for entity in iterate(self._table.list_entities(), "list statuses"):
            try:
                yield _status_of(entity)
            except CorruptRow as corrupt:
                if on_invalid is None:
                    log.error("%s", corrupt.row)
                else:
                    on_invalid(corrupt.row)

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
        return _status_of(entity)

    async def delete(self, config_id: str, organization: str) -> None:
        """Forgets the status of a purged config (nothing happens when there is none)."""
        with contextlib.suppress(ResourceNotFoundError):
            await translated(
                self._table.delete_entity(organization.lower(), encode_row_key(config_id)),
                f"delete status {config_id!r}",
            )


def _stored(status: ConfigStatus) -> ConfigStatus:
    """The status as the table keeps it: organization in lower case, texts cut to fit."""
    return ConfigStatus(
        config_id=status.config_id,
        organization=status.organization.lower(),
        phase=Status(status.phase),  # refuses a phase outside the vocabulary
        observed_generation=status.observed_generation,
        last_plan=fit(status.last_plan, MAX_PLAN_SUMMARY)[0],
        last_error=fit(status.last_error)[0],
        retry_after=None if status.retry_after is None else float(status.retry_after),
        last_reconcile=status.last_reconcile,
        applied_application=status.applied_application,
    )


def _entity(stored: ConfigStatus) -> dict[str, Any]:
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
        entity["RetryAfter"] = stored.retry_after
    return entity


def _status_of(entity: TableEntity) -> ConfigStatus:
    """The row as a ConfigStatus; a field that does not parse (a row edited by hand or by an older
    version) is CorruptRow naming it, never a ValueError out of a sweep or a reconcile."""
    problems: list[str] = []
    phase = _phase(entity, problems)
    generation = entity.get("ObservedGeneration", 0)
    if type(generation) is not int or generation < 0:
        problems.append(f"ObservedGeneration: expected a whole number of at least 0, got {generation!r:.60}")
    retry_after = entity.get("RetryAfter")
    if retry_after is not None and (type(retry_after) not in (int, float) or not 0 <= retry_after < math.inf):
        problems.append(f"RetryAfter: expected seconds, got {retry_after!r:.60}")
    # A client id the next pass reads, and removes this config's credentials from: a GUID or nothing.
    applied = entity.get("AppliedApplication") or ""
    if applied and not Guid.is_valid(applied):
        problems.append(f"AppliedApplication: expected {Guid.what}, got {applied!r:.60}")
    if problems or phase is None:
        row = InvalidRow(STATUS_TABLE, entity["PartitionKey"], entity["RowKey"], tuple(problems))
        raise CorruptRow(row)
    return ConfigStatus(
        config_id=decode_row_key(entity["RowKey"]),
        organization=entity["PartitionKey"],
        phase=phase,
        observed_generation=generation,
        last_plan=str(entity.get("LastPlan", "")),
        last_error=str(entity.get("LastError", "")),
        retry_after=None if retry_after is None else float(retry_after),
        last_reconcile=str(entity.get("LastReconcile", "")),
        applied_application=str(Guid(applied, "AppliedApplication")) if applied else "",
    )


def _phase(entity: TableEntity, problems: list[str]) -> Status | None:
    try:
        return Status(str(entity.get("Phase")))
    except ValueError:
        problems.append(f"Phase: expected one of {', '.join(Status)}, got {entity.get('Phase')!r:.60}")
        return None
