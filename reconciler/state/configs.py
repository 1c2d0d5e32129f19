"""The desired state: table federationconfigs, one row per config, ETag-guarded, with tombstones;
and one index row per service connection, so that no two configs ever manage one connection."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableEntity, TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from reconciler.core.model import ConnectionKey, FederationConfig
from reconciler.core.serialise import config_to_document
from reconciler.core.validation import Document, id_takeover, parse_config
from reconciler.documents import InputError
from reconciler.state.claims import ClaimRejected
from reconciler.state.tables import (
    CONFIGS_TABLE,
    MAX_TEXT_UNITS,
    ConcurrencyConflict,
    CorruptRow,
    InvalidRow,
    decode_row_key,
    encode_row_key,
    iterate,
    translated,
    utc_now,
    utf16_units,
    validate_request_id,
)

log = logging.getLogger(__name__)


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
        takeover = self._takeover(current, config)
        if takeover is not None:
            raise ClaimRejected([f"id: {takeover}"])
        index = await self._connection_row(config.organization, config.connection)
        holder = index.get("ConfigId") if index is not None else None
        if holder not in (None, config.id):
            raise ClaimRejected(
                [
                    f"serviceConnection.name: service connection {config.connection} is managed by config "
                    f"{holder!r}; retire that config (and let its prune finish) first"
                ]
            )
        unchanged = current is not None and not current.get("Deleted") and current.get("Document") == text
        operations: list[Any] = []
        if not unchanged:
            entity = {
                "PartitionKey": config.organization.lower(),
                "RowKey": encode_row_key(config.id),
                "Document": text,
                "Generation": _generation(current) + 1,
                "AppKey": config.application.key,
                "Deleted": False,
                "Prune": config.prune.value,
                "RequestId": request_id,
                "UpdatedAt": utc_now(),
            }
            operations.append(_replace(entity, current))
        if index is None:
            operations.append(("create", _connection_entity(config)))
        left = await self._connection_left(current, config.connection)
        if left is not None:
            operations.append(_delete(left))
        if not operations:
            assert current is not None
            return self._record(current)
        etags = await self._transact(operations, f"write config {config.id!r}")
        if unchanged:
            assert current is not None
            return self._record(current)
        return _record_of(config, canonical, entity, etags[0])

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
            "UpdatedAt": utc_now(),
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
        # The connection is free for another config once the tombstone is gone, not before.
        left = await self._connection_left(current, None)
        operations = [_delete(current, etag), *([_delete(left)] if left is not None else [])]
        try:
            await self._transact(operations, f"purge config {config_id!r}")
        except ConcurrencyConflict:
            if await self._find(config_id, current["PartitionKey"]) is None:
                return False
            raise
        return True

    async def list_all(
        self, on_invalid: Callable[[InvalidRow], None] | None = None
    ) -> AsyncIterator[ConfigRecord]:
        """Every valid row, tombstones included (the SDK pages through the table).

        An invalid row does not stop the listing: it goes to `on_invalid` (logged when None).
        """
        pages = self._table.query_entities("RowKey lt @index", parameters={"index": CONNECTION_ROW_PREFIX})
        async for entity in iterate(pages, "list configs"):
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
            async for entity in iterate(pages, "list configs by application"):
                record = self._checked(entity, on_invalid)
                if record is not None:
                    records.append(record)
        return records

    async def _find(self, config_id: str, organization: str | None) -> TableEntity | None:
        row_key = encode_row_key(config_id)
        if organization is not None:
            try:
                return await translated(
                    self._table.get_entity(organization.lower(), row_key), f"read config {config_id!r}"
                )
            except ResourceNotFoundError:
                return None
        pages = self._table.query_entities("RowKey eq @key", parameters={"key": row_key})
        async for entity in iterate(pages, f"find config {config_id!r}"):
            return entity
        return None

    async def connection_holder(self, organization: str, key: ConnectionKey) -> str | None:
        """The id of the config that manages this connection (live or retired), or None."""
        index = await self._connection_row(organization, key)
        return str(index.get("ConfigId")) if index is not None else None

    async def connection_holders(self) -> dict[tuple[str, str], str]:
        """Every connection index row: (PartitionKey, RowKey) -> the id of the config it names."""
        pages = self._table.query_entities("RowKey ge @index", parameters={"index": CONNECTION_ROW_PREFIX})
        return {
            (row["PartitionKey"], row["RowKey"]): str(row.get("ConfigId"))
            async for row in iterate(pages, "list connection index rows")
        }

    async def add_connection_row(self, record: ConfigRecord) -> None:
        """Writes the missing index row of a config stored before index rows existed.

        In one transaction with a guard on the config row's ETag (a merge of nothing), so a config
        changed since it was read (another connection, purged) gets no stale index row: that is
        ConcurrencyConflict, as is an index row someone else wrote meanwhile.
        """
        config = record.config
        keys = {"PartitionKey": config.organization.lower(), "RowKey": encode_row_key(config.id)}
        guard = {
            "mode": UpdateMode.MERGE,
            "etag": record.etag,
            "match_condition": MatchConditions.IfNotModified,
        }
        index = _connection_entity(config)
        await self._transact([("update", keys, guard), ("create", index)], f"index config {config.id!r}")

    async def _connection_row(self, organization: str, key: ConnectionKey) -> TableEntity | None:
        try:
            return await translated(
                self._table.get_entity(organization.lower(), connection_row_key(key)),
                f"read the index row of connection {key}",
            )
        except ResourceNotFoundError:
            return None

    def _takeover(self, current: TableEntity | None, config: FederationConfig) -> str | None:
        """Why `config` may not replace the stored row (reconciler.core.validation.id_takeover)."""
        if current is None:
            return None
        try:
            before = self._record(current).config
        except CorruptRow:
            return None  # an unreadable row is replaced as before: nothing in it can be kept
        return id_takeover(before, config)

    async def id_takeover(self, config: FederationConfig) -> str | None:
        """Why storing `config` would take over the config of another connection, or None (for
        `import`, which checks every config before it writes any)."""
        try:
            return self._takeover(await self._find(config.id, config.organization), config)
        except CorruptRow:
            return None

    async def _connection_left(
        self, current: TableEntity | None, now: ConnectionKey | None
    ) -> TableEntity | None:
        """The index row of the connection the stored config names, when it is not `now` and
        still points to this config: it goes in the same transaction as the config's write."""
        if current is None:
            return None
        try:
            before = self._record(current).config
        except CorruptRow:
            return None
        if now is not None and before.connection.folded == now.folded:
            return None
        index = await self._connection_row(before.organization, before.connection)
        return index if index is not None and index.get("ConfigId") == before.id else None

    async def _transact(self, operations: list[Any], what: str) -> list[str]:
        """One table transaction (every row in the config's partition); the ETags it wrote, in order."""
        try:
            results = await translated(self._table.submit_transaction(operations), what)
        except TableTransactionError as error:
            if error.status_code in {404, 409, 412}:
                # Created, changed or removed by someone else between our read and our write.
                raise ConcurrencyConflict(
                    f"{what}: a row changed since it was read; read it again"
                ) from error
            raise
        return [str(metadata.get("etag", "")) for metadata in results]

    async def _write(self, entity: dict[str, Any], current: TableEntity | None) -> str:
        what = f"write config {decode_row_key(entity['RowKey'])!r}"
        try:
            if current is None:
                metadata = await translated(self._table.create_entity(entity), what)
            else:
                metadata = await translated(
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
# The index rows that keep one config per connection live in each organization's partition, next to
# its configs. Their RowKeys start with '~', which sorts after every config id's first character
# ([a-z0-9]) and begins none: `RowKey lt '~'` lists the configs alone.
CONNECTION_ROW_PREFIX = "~"


def connection_row_key(key: ConnectionKey) -> str:
    """The index row of a connection: a digest of its case-folded key (names may hold any character)."""
    digest = hashlib.sha256(json.dumps(list(key.folded)).encode("utf-8")).hexdigest()
    return f"{CONNECTION_ROW_PREFIX}connection~{digest}"


def _connection_entity(config: FederationConfig) -> dict[str, Any]:
    return {
        "PartitionKey": config.organization.lower(),
        "RowKey": connection_row_key(config.connection),
        "Connection": str(config.connection),
        "ConfigId": config.id,
        "UpdatedAt": utc_now(),
    }


def _replace(entity: dict[str, Any], current: TableEntity | None) -> tuple[Any, ...]:
    """The transaction operation that writes `entity`: an insert, or a replace guarded by the read ETag."""
    if current is None:
        return ("create", entity)
    guard = {
        "mode": UpdateMode.REPLACE,
        "etag": current.metadata["etag"],
        "match_condition": MatchConditions.IfNotModified,
    }
    return ("update", entity, guard)


def _delete(entity: TableEntity, etag: str | None = None) -> tuple[Any, ...]:
    guard = {"etag": etag or entity.metadata["etag"], "match_condition": MatchConditions.IfNotModified}
    return ("delete", {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"]}, guard)


def _parse(document: Mapping[str, Any], source: str) -> FederationConfig:
    config, problems = parse_config(Document(source, 1, document))
    if config is None:
        raise InputError(problems)
    return config


def _document_text(document: Mapping[str, Any], config_id: str) -> str:
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    if utf16_units(text) > MAX_TEXT_UNITS:
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
