"""The state in Azure Tables: desired configs, status per config, and ticket request history.

One class per table, on the async SDK. Locally the tables live in Azurite
(`WIF_TABLE_CONNECTION_STRING`); in Azure in the Function App's storage account, reached
with its managed identity (`WIF_TABLE_ENDPOINT` and a credential). docs/state.md describes
the tables, their keys and how concurrent writers are kept from losing updates.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableEntity, UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

from reconciler.cloud import CloudError
from reconciler.core.model import FederationConfig
from reconciler.core.serialise import config_to_document
from reconciler.core.validation import Document, parse_config
from reconciler.documents import InputError
from reconciler.failures import TemporaryFailure

log = logging.getLogger(__name__)

CONFIGS_TABLE = "federationconfigs"
STATUS_TABLE = "federationstatus"
REQUESTS_TABLE = "federationrequests"

# A string property holds at most 64 KiB, that is 32,768 UTF-16 code units. Stay below it.
MAX_TEXT_UNITS = 32_000
TRUNCATED_MARKER = "...[truncated]"
MAX_PLAN_SUMMARY = 1_000  # a status line, not the plan: the plan is rebuilt on demand

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_T = TypeVar("_T")


class SettingsError(CloudError):
    """The table settings are missing or malformed (the CLI reports it as bad input)."""


class ConcurrencyConflict(Exception):
    """Someone else changed the row since the caller read it: read again, reapply, retry."""


class CorruptRow(Exception):
    """A stored row that is not a valid config (edited by hand, or by an older version)."""

    def __init__(self, row: InvalidRow) -> None:
        super().__init__(str(row))
        self.row = row


@dataclass(frozen=True)
class InvalidRow:
    table: str
    partition_key: str
    row_key: str
    problems: tuple[str, ...]

    def __str__(self) -> str:
        return (
            f"table {self.table}, row {self.partition_key}/{self.row_key} is not a valid config: "
            + "; ".join(self.problems)
        )


# ---------------------------------------------------------------------------- keys and sizes


def encode_row_key(config_id: str) -> str:
    """A config id as a RowKey: '/' is not allowed in keys, and '~' never occurs in ids."""
    return config_id.replace("/", "~")


def decode_row_key(row_key: str) -> str:
    return row_key.replace("~", "/")


def request_partition(request_id: str) -> str:
    """Derivable from the id alone, and spreads requests over 256 partitions."""
    return hashlib.sha256(request_id.encode()).hexdigest()[:2]


def validate_request_id(request_id: str) -> str:
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        raise InputError([f"requestId: expected 1-128 characters of A-Z a-z 0-9 . _ : -, got {request_id!r}"])
    return request_id


def fit(text: str, limit: int = MAX_TEXT_UNITS) -> tuple[str, bool]:
    """`text` cut to at most `limit` UTF-16 code units (how Tables counts), and whether it was cut."""
    if len(text) <= limit // 2 or _utf16_units(text) <= limit:  # the cheap test first
        return text, False
    room = limit - len(TRUNCATED_MARKER)
    cut = text.encode("utf-16-le")[: room * 2].decode("utf-16-le", errors="ignore")  # whole characters
    return cut + TRUNCATED_MARKER, True


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def summarise_plan(action_kinds: Sequence[str], limit: int = MAX_PLAN_SUMMARY) -> str:
    """A one-line plan summary for the status table: "3 actions: create-credential, ..."."""
    if not action_kinds:
        return "no changes"
    noun = "action" if len(action_kinds) == 1 else "actions"
    return fit(f"{len(action_kinds)} {noun}: {', '.join(action_kinds)}", limit)[0]


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------- errors


async def _translated(call: Awaitable[_T], what: str) -> _T:
    """Runs one SDK call, turning its errors into ours (not found is left to the caller)."""
    try:
        return await call
    except (ResourceNotFoundError, ResourceExistsError, ResourceModifiedError):
        raise
    except (ServiceRequestError, ServiceResponseError) as error:
        raise TemporaryFailure(f"{what}: cannot reach Table Storage: {error}") from error
    except HttpResponseError as error:
        status = error.status_code or 0
        if status == 412:
            raise ConcurrencyConflict(f"{what}: the row changed since it was read") from error
        if status in {408, 429} or status >= 500:
            raise TemporaryFailure(f"{what}: Table Storage answered {status}", status=status) from error
        raise


# ---------------------------------------------------------------------------- desired configs


@dataclass(frozen=True)
class ConfigRecord:
    config: FederationConfig
    document: dict[str, Any]  # canonical, as config_to_document writes it
    generation: int
    etag: str
    deleted: bool
    request_id: str
    updated_at: str = ""

    @property
    def config_id(self) -> str:
        return self.config.id


def split_retired(records: Iterable[ConfigRecord]) -> tuple[list[FederationConfig], list[FederationConfig]]:
    """The configs of live rows (desired) and of tombstones (retired: what they own is pruned)."""
    rows = list(records)
    return [r.config for r in rows if not r.deleted], [r.config for r in rows if r.deleted]


class DesiredConfigStore:
    """Table federationconfigs: PartitionKey = organization (lower case), RowKey = encoded config id."""

    table_name = CONFIGS_TABLE

    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def get(self, config_id: str, organization: str | None = None) -> ConfigRecord | None:
        """The row of a config, tombstones included. Raises CorruptRow for an invalid row.

        With the organization this is one point read; without it, a query on the RowKey
        across partitions (ids are unique in the table, so it finds at most one row).
        """
        entity = await self._find(config_id, organization)
        return None if entity is None else self._record(entity)

    async def put(
        self, document: Mapping[str, Any], *, request_id: str, expected_etag: str | None = None
    ) -> ConfigRecord:
        """Validates and stores one config; returns the stored record.

        `expected_etag` is the ETag the caller read (None: whatever is stored now). The write is
        conditional on the row being unchanged since that read, so of two concurrent writers one
        gets ConcurrencyConflict and must read again. Storing the same config again changes nothing
        (same generation and ETag): that is how a caller tells an unchanged config.
        """
        validate_request_id(request_id)
        config = _parse(document, "the config")
        canonical = config_to_document(config)
        text = _document_text(canonical, config.id)
        current = await self._find(config.id, config.organization)
        if current is None:
            # Ids are unique across organizations: the same id in another partition would be a
            # second config with the same owner marker.
            elsewhere = await self._find(config.id, None)
            if elsewhere is not None and elsewhere["PartitionKey"] == config.organization.lower():
                raise ConcurrencyConflict(f"config {config.id!r} was created meanwhile; read it again")
            if elsewhere is not None:
                raise InputError(
                    [
                        f"id: config {config.id!r} is stored under organization "
                        f"{elsewhere['PartitionKey']!r}; retire it there and let its prune finish first"
                    ]
                )
        _check_etag(current, expected_etag, config.id)
        if current is not None and not current.get("Deleted") and current.get("Document") == text:
            return self._record(current)
        entity = {
            "PartitionKey": config.organization.lower(),
            "RowKey": encode_row_key(config.id),
            "Document": text,
            "Generation": _generation(current) + 1,
            "AppKey": config.application.key,
            "Deleted": False,
            "Prune": config.prune.value,
            "RequestId": request_id,
            "UpdatedAt": _utc_now(),
        }
        etag = await self._write(entity, current)
        return _record_of(config, canonical, entity, etag)

    async def retire(
        self,
        config_id: str,
        *,
        request_id: str,
        expected_etag: str | None = None,
        organization: str | None = None,
    ) -> ConfigRecord | None:
        """Marks a config deleted (a tombstone), so the next reconcile prunes what it owned.

        None when there is no such config. Retiring a tombstone again changes nothing.
        """
        validate_request_id(request_id)
        current = await self._find(config_id, organization)
        if current is None:
            return None
        _check_etag(current, expected_etag, config_id)
        record = self._record(current)
        if record.deleted:
            return record
        entity = {
            **current,
            "Generation": record.generation + 1,
            "Deleted": True,
            "RequestId": request_id,
            "UpdatedAt": _utc_now(),
        }
        etag = await self._write(entity, current)
        return _record_of(record.config, record.document, entity, etag)

    async def purge(self, config_id: str, etag: str, organization: str | None = None) -> bool:
        """Deletes a tombstone once its prune has converged; False when it is already gone.

        Conditional on `etag`, so a config re-created meanwhile is never deleted.
        """
        current = await self._find(config_id, organization)
        if current is None:
            return False
        if not current.get("Deleted"):
            raise ConcurrencyConflict(f"config {config_id!r} is active again: not purged")
        try:
            await _translated(
                self._table.delete_entity(
                    current["PartitionKey"],
                    current["RowKey"],
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                ),
                f"purge config {config_id!r}",
            )
        except ResourceModifiedError as error:
            raise ConcurrencyConflict(f"config {config_id!r} changed since it was read") from error
        except ResourceNotFoundError:
            return False
        return True

    async def list_all(
        self, on_invalid: Callable[[InvalidRow], None] | None = None
    ) -> AsyncIterator[ConfigRecord]:
        """Every valid row, tombstones included (the SDK pages through the table).

        An invalid row does not stop the listing: it goes to `on_invalid` (logged when None).
        """
        pages = self._table.list_entities()
        async for entity in _iterate(pages, "list configs"):
            record = self._checked(entity, on_invalid)
            if record is not None:
                yield record

    async def list_for_apps(
        self, app_keys: Iterable[str], on_invalid: Callable[[InvalidRow], None] | None = None
    ) -> list[ConfigRecord]:
        """The rows of configs that use any of these applications (ApplicationRef.key).

        AppKey is not a key, so every query scans the table on the server: the keys are
        OR-ed, 15 to a query (the service's limit on comparisons in one filter), to scan
        as few times as possible. To read everything, list_all is cheaper.
        """
        keys = sorted(set(app_keys))
        records: list[ConfigRecord] = []
        for start in range(0, len(keys), _MAX_COMPARISONS):
            chunk = keys[start : start + _MAX_COMPARISONS]
            query = " or ".join(f"AppKey eq @k{n}" for n in range(len(chunk)))
            parameters = {f"k{n}": key for n, key in enumerate(chunk)}
            pages = self._table.query_entities(query, parameters=parameters)
            async for entity in _iterate(pages, "list configs by application"):
                record = self._checked(entity, on_invalid)
                if record is not None:
                    records.append(record)
        return records

    async def _find(self, config_id: str, organization: str | None) -> TableEntity | None:
        row_key = encode_row_key(config_id)
        if organization is not None:
            try:
                return await _translated(
                    self._table.get_entity(organization.lower(), row_key), f"read config {config_id!r}"
                )
            except ResourceNotFoundError:
                return None
        pages = self._table.query_entities("RowKey eq @key", parameters={"key": row_key})
        async for entity in _iterate(pages, f"find config {config_id!r}"):
            return entity
        return None

    async def _write(self, entity: dict[str, Any], current: TableEntity | None) -> str:
        what = f"write config {decode_row_key(entity['RowKey'])!r}"
        try:
            if current is None:
                metadata = await _translated(self._table.create_entity(entity), what)
            else:
                metadata = await _translated(
                    self._table.update_entity(
                        entity,
                        mode=UpdateMode.REPLACE,
                        etag=current.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    ),
                    what,
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as error:
            # Created, changed or purged by someone else between our read and our write.
            raise ConcurrencyConflict(f"{what}: the row changed since it was read; read it again") from error
        return str(metadata["etag"])

    def _record(self, entity: TableEntity) -> ConfigRecord:
        row = InvalidRow(self.table_name, entity["PartitionKey"], entity["RowKey"], ())
        try:
            body = json.loads(entity.get("Document") or "")
        except (json.JSONDecodeError, TypeError) as error:
            raise CorruptRow(_with(row, f"Document is not JSON ({error})")) from error
        source = f"table {self.table_name}, row {row.partition_key}/{row.row_key}"
        config, problems = parse_config(Document(source, 1, body))
        if config is None:
            raise CorruptRow(_with(row, *(f"{p.field}: {p.message}" for p in problems)))
        if config.id != decode_row_key(row.row_key) or config.organization.lower() != row.partition_key:
            raise CorruptRow(_with(row, f"the document is config {config.id!r} of {config.organization!r}"))
        generation = entity.get("Generation")
        if not isinstance(generation, int) or isinstance(generation, bool):
            raise CorruptRow(_with(row, f"Generation: expected an integer, got {generation!r}"))
        return ConfigRecord(
            config=config,
            document=config_to_document(config),
            generation=generation,
            etag=str(entity.metadata["etag"]),
            deleted=bool(entity.get("Deleted", False)),
            request_id=str(entity.get("RequestId", "")),
            updated_at=str(entity.get("UpdatedAt", "")),
        )

    def _checked(
        self, entity: TableEntity, on_invalid: Callable[[InvalidRow], None] | None
    ) -> ConfigRecord | None:
        try:
            return self._record(entity)
        except CorruptRow as error:
            if on_invalid is None:
                log.error("%s", error.row)
            else:
                on_invalid(error.row)
            return None


_MAX_COMPARISONS = 15


def _parse(document: Mapping[str, Any], source: str) -> FederationConfig:
    config, problems = parse_config(Document(source, 1, document))
    if config is None:
        raise InputError(problems)
    return config


def _document_text(document: Mapping[str, Any], config_id: str) -> str:
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    if _utf16_units(text) > MAX_TEXT_UNITS:
        raise InputError([f"config {config_id!r} is too large to store ({len(text)} characters as JSON)"])
    return text


def _check_etag(current: TableEntity | None, expected_etag: str | None, config_id: str) -> None:
    if expected_etag is not None and (current is None or current.metadata["etag"] != expected_etag):
        raise ConcurrencyConflict(f"config {config_id!r} changed since it was read; read it again")


def _generation(entity: TableEntity | None) -> int:
    value = entity.get("Generation") if entity is not None else 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _record_of(
    config: FederationConfig, document: dict[str, Any], entity: Mapping[str, Any], etag: str
) -> ConfigRecord:
    return ConfigRecord(
        config=config,
        document=document,
        generation=int(entity["Generation"]),
        etag=etag,
        deleted=bool(entity["Deleted"]),
        request_id=str(entity["RequestId"]),
        updated_at=str(entity["UpdatedAt"]),
    )


def _with(row: InvalidRow, *problems: str) -> InvalidRow:
    return InvalidRow(row.table, row.partition_key, row.row_key, tuple(problems))


async def _iterate(pages: Any, what: str) -> AsyncIterator[TableEntity]:
    """The entities of an SDK listing, its errors translated as every other call's."""
    iterator = pages.__aiter__()
    while True:
        try:
            entity: TableEntity = await _translated(iterator.__anext__(), what)
        except StopAsyncIteration:
            return
        yield entity


# ---------------------------------------------------------------------------- status

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
        }
        if stored.retry_after is not None:
            entity["RetryAfter"] = float(stored.retry_after)
        await _translated(
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE), f"write status {status.config_id!r}"
        )
        return stored

    async def get(self, config_id: str, organization: str | None = None) -> ConfigStatus | None:
        row_key = encode_row_key(config_id)
        entity: TableEntity | None = None
        if organization is not None:
            try:
                entity = await _translated(
                    self._table.get_entity(organization.lower(), row_key), f"read status {config_id!r}"
                )
            except ResourceNotFoundError:
                return None
        else:
            pages = self._table.query_entities("RowKey eq @key", parameters={"key": row_key})
            async for found in _iterate(pages, f"find status {config_id!r}"):
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
        )

    async def delete(self, config_id: str, organization: str) -> None:
        """Forgets the status of a purged config (nothing happens when there is none)."""
        with contextlib.suppress(ResourceNotFoundError):
            await _translated(
                self._table.delete_entity(organization.lower(), encode_row_key(config_id)),
                f"delete status {config_id!r}",
            )


def _fit_conditions(conditions: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any], ...]:
    """Drops conditions from the end until the list fits, and says so in a last condition."""
    kept = list(conditions)
    marker = {"type": "Truncated", "status": "True", "message": "more conditions were dropped to fit"}
    while kept and _utf16_units(json.dumps(kept, ensure_ascii=False)) > MAX_TEXT_UNITS:
        kept = kept[: len(kept) // 2]
        if _utf16_units(json.dumps([*kept, marker], ensure_ascii=False)) <= MAX_TEXT_UNITS:
            return (*kept, marker)
    return tuple(kept)


def _json_list(text: object) -> list[Mapping[str, Any]]:
    try:
        value = json.loads(str(text or "[]"))
    except json.JSONDecodeError:
        return []
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


# ---------------------------------------------------------------------------- requests

Outcome = Literal["accepted", "rejected", "applied", "failed"]
OUTCOMES: tuple[str, ...] = ("accepted", "rejected", "applied", "failed")


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    action: str
    requested_by: str
    received_at: str
    body: str
    body_truncated: bool
    outcome: str  # one of OUTCOMES
    reason: str = ""
    changes: tuple[str, ...] = ()
    finished_at: str = ""
    etag: str = ""


class RequestStore:
    """Table federationrequests: PartitionKey = request_partition(id), RowKey = request id."""

    table_name = REQUESTS_TABLE

    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def begin(
        self, request_id: str, body: str, *, requested_by: str, action: str, received_at: str
    ) -> tuple[RequestRecord, bool]:
        """Records a request as accepted; for a request id seen before, the first record and False.

        The insert is the idempotency check: of two deliveries of one request, only one creates it.
        """
        validate_request_id(request_id)
        stored_body, truncated = fit(body)
        entity = {
            "PartitionKey": request_partition(request_id),
            "RowKey": request_id,
            "Action": fit(action, 200)[0],
            "RequestedBy": fit(requested_by, 1_000)[0],
            "ReceivedAt": received_at,
            "Body": stored_body,
            "BodyTruncated": truncated,
            "Outcome": "accepted",
            "Reason": "",
            "Changes": "[]",
            "FinishedAt": "",
        }
        try:
            metadata = await _translated(self._table.create_entity(entity), f"record request {request_id!r}")
        except ResourceExistsError:
            existing = await self.get(request_id)
            if existing is None:  # created and purged between the two calls: cannot happen today
                raise ConcurrencyConflict(f"request {request_id!r} vanished while being read") from None
            return existing, False
        return _request_of({**entity}, str(metadata["etag"])), True

    async def finish(
        self, request_id: str, outcome: str, reason: str, changes: Sequence[str], finished_at: str
    ) -> RequestRecord:
        """Records the outcome of a request that begin() recorded."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}: expected one of {', '.join(OUTCOMES)}")
        validate_request_id(request_id)
        entity = {
            "PartitionKey": request_partition(request_id),
            "RowKey": request_id,
            "Outcome": outcome,
            "Reason": fit(reason)[0],
            "Changes": _fit_changes(changes),
            "FinishedAt": finished_at,
        }
        try:
            await _translated(
                self._table.update_entity(entity, mode=UpdateMode.MERGE), f"finish request {request_id!r}"
            )
        except ResourceNotFoundError as error:
            raise KeyError(f"request {request_id!r} was never begun") from error
        found = await self.get(request_id)
        assert found is not None  # just written
        return found

    async def get(self, request_id: str) -> RequestRecord | None:
        if not _REQUEST_ID.match(request_id):
            return None  # cannot exist: begin() refuses such ids
        try:
            entity = await _translated(
                self._table.get_entity(request_partition(request_id), request_id),
                f"read request {request_id!r}",
            )
        except ResourceNotFoundError:
            return None
        return _request_of(entity, str(entity.metadata["etag"]))


def _fit_changes(changes: Sequence[str]) -> str:
    kept = list(changes)
    while kept and _utf16_units(json.dumps(kept, ensure_ascii=False)) > MAX_TEXT_UNITS:
        kept = [*kept[: len(kept) // 2], f"... and more ({len(changes)} changes in all)"]
        if len(kept) == 1:
            break
    return json.dumps(kept, ensure_ascii=False)


def _request_of(entity: Mapping[str, Any], etag: str) -> RequestRecord:
    changes = json.loads(str(entity.get("Changes") or "[]"))
    return RequestRecord(
        request_id=str(entity["RowKey"]),
        action=str(entity.get("Action", "")),
        requested_by=str(entity.get("RequestedBy", "")),
        received_at=str(entity.get("ReceivedAt", "")),
        body=str(entity.get("Body", "")),
        body_truncated=bool(entity.get("BodyTruncated", False)),
        outcome=str(entity.get("Outcome", "")),
        reason=str(entity.get("Reason", "")),
        changes=tuple(str(c) for c in changes) if isinstance(changes, list) else (),
        finished_at=str(entity.get("FinishedAt", "")),
        etag=etag,
    )


# ---------------------------------------------------------------------------- opening


@dataclass
class Stores:
    """The three stores on one service client. Close it (or use `async with`) when done."""

    configs: DesiredConfigStore
    status: StatusStore
    requests: RequestStore
    _service: TableServiceClient

    async def close(self) -> None:
        await self._service.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()


async def open_stores(settings: Mapping[str, str], credential: AsyncTokenCredential | None) -> Stores:
    """Stores from the app settings, with their tables created if missing.

    WIF_TABLE_CONNECTION_STRING (Azurite locally) wins; else WIF_TABLE_ENDPOINT, an https account
    URL, with `credential` (the managed identity in Azure). Open once per process and share it.
    """
    service = _service_client(settings, credential)
    try:
        for name in (CONFIGS_TABLE, STATUS_TABLE, REQUESTS_TABLE):
            with contextlib.suppress(ResourceExistsError):
                await _translated(service.create_table(name), f"create table {name}")
    except BaseException:
        await service.close()
        raise
    return Stores(
        configs=DesiredConfigStore(service.get_table_client(CONFIGS_TABLE)),
        status=StatusStore(service.get_table_client(STATUS_TABLE)),
        requests=RequestStore(service.get_table_client(REQUESTS_TABLE)),
        _service=service,
    )


def _service_client(
    settings: Mapping[str, str], credential: AsyncTokenCredential | None
) -> TableServiceClient:
    connection_string = (settings.get("WIF_TABLE_CONNECTION_STRING") or "").strip()
    endpoint = (settings.get("WIF_TABLE_ENDPOINT") or "").strip()
    if connection_string:
        try:
            return TableServiceClient.from_connection_string(connection_string)
        except (ValueError, AzureError) as error:
            raise SettingsError(
                f"WIF_TABLE_CONNECTION_STRING is not a valid connection string: {error}"
            ) from None
    if not endpoint:
        raise SettingsError(
            "set WIF_TABLE_ENDPOINT (the storage account's table URL, in Azure) or "
            "WIF_TABLE_CONNECTION_STRING (Azurite, locally)"
        )
    if not endpoint.startswith("https://"):
        raise SettingsError(f"WIF_TABLE_ENDPOINT must be an https URL, got {endpoint!r}")
    if credential is None:
        raise SettingsError("WIF_TABLE_ENDPOINT needs a credential (the Function App's managed identity)")
    return TableServiceClient(endpoint, credential=credential)
