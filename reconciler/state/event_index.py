"""Table federationindex: which applications an object named by events belongs to (docs/events.md).

The reconciler writes it as it applies: after each pass, every object the pass observed or
created for a config (its application's object id, its service principal, its connection, its
role assignments) is mapped to the config's application key. An event names one such object, so
mapping it to applications is **one indexed read**: a range query on the RowKey prefix
`sha256(object)-` within one partition, whose rows are the applications. An object the
reconciler does not manage has no rows, and its event is dropped after that one read.

Partitions are the first two hex digits of sha256(object) (256 of them), so that the rows a bulk
pass writes go out in table transactions of up to 100 rows of one partition, not one request each
(a first sweep of 50,000 configs writes about 200,000 rows).

Stale rows (a config moved to another application, or retired) cost at most one needless
reconcile of the old application, which is level-triggered and finds nothing to do; they are
never a reason to skip one.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import get_args

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableEntity, TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from reconciler.core.events import IndexKey, IndexKind
from reconciler.failures import TemporaryFailure
from reconciler.state.queues import is_app_key
from reconciler.state.tables import INDEX_TABLE, ConcurrencyConflict, iterate, translated

MAX_REMEMBERED = 200_000  # rows this process knows it wrote: a steady state writes nothing
MAX_TRANSACTION_ROWS = 100  # Azure Tables' limit for one transaction (all rows of one partition)
UNCHANGED = MatchConditions.IfNotModified  # a write only if the row is as it was read
PARTITION_HEX_DIGITS = 2  # 256 partitions: rows of one partition go out 100 to a transaction


@dataclass(frozen=True)
class OldIndexRow:
    """A row of the layout before 256 partitions (PartitionKey: the whole sha256 of the object),
    which lookups no longer read. `key` is None when its Key or AppKey does not parse."""

    partition_key: str
    row_key: str
    etag: str
    key: IndexKey | None
    app_key: str


class EventIndex:
    table_name = INDEX_TABLE

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._written: set[tuple[str, str]] = set()
        self._seeded = False

    async def applications(self, key: IndexKey) -> set[str]:
        """The application keys of this object: one range query on one partition (the object's rows
        share the RowKey prefix `sha256(object)-`)."""
        digest = _digest(str(key))
        pages = self._table.query_entities(
            "PartitionKey eq @partition and RowKey ge @first and RowKey lt @after",
            parameters={
                "partition": digest[:PARTITION_HEX_DIGITS],
                "first": f"{digest}-",
                "after": f"{digest}.",
            },
            select=["Key", "AppKey"],
        )
        found: set[str] = set()
        async for row in iterate(pages, f"read index {key}"):
            # A row edited by hand, or a hash collision, names another object: not this one's.
            if row.get("Key") == str(key) and is_app_key(row.get("AppKey")):
                found.add(str(row["AppKey"]))
        return found

    async def seed(self) -> None:
        """Remembers every row the table already holds (one listing, once per process), so a bulk
        pass in a fresh worker writes only the rows that are missing, not all of them again."""
        if self._seeded:
            return
        listing = self._table.list_entities(select=["PartitionKey", "Key", "AppKey"])
        async for row in iterate(listing, "list index"):
            key, app_key = row.get("Key"), row.get("AppKey")
            # Rows of another layout (an older version's) are not what lookups read: write them again.
            if (
                len(str(row.get("PartitionKey"))) == PARTITION_HEX_DIGITS
                and isinstance(key, str)
                and is_app_key(app_key)
            ):
                self._written.add((key, str(app_key)))
        self._seeded = True

    async def record(self, entries: Mapping[IndexKey, Iterable[str]]) -> int:
        """Adds these mappings (idempotent upserts, in transactions of up to 100 rows of one
        partition); returns how many rows were written. A failed transaction raises; the rows of
        the transactions before it stay written (each is complete on its own)."""
        by_partition: dict[str, list[TableEntity]] = defaultdict(list)
        for key, app_keys in sorted(entries.items()):
            for app_key in sorted(app_keys):
                if (str(key), app_key) not in self._written and is_app_key(app_key):
                    row = _entity(key, app_key)
                    by_partition[row["PartitionKey"]].append(row)
        written = 0
        for partition in sorted(by_partition):
            rows = by_partition[partition]
            for start in range(0, len(rows), MAX_TRANSACTION_ROWS):
                await self._transact(rows[start : start + MAX_TRANSACTION_ROWS])
                written += len(rows[start : start + MAX_TRANSACTION_ROWS])
        return written

    async def _transact(self, rows: Sequence[TableEntity]) -> None:
        what = f"write {len(rows)} index rows of partition {rows[0]['PartitionKey']}"
        operations = [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in rows]
        try:
            await translated(self._table.submit_transaction(operations), what)
        except TableTransactionError as error:
            raise TemporaryFailure(f"{what}: {error.message}", status=error.status_code) from error
        if len(self._written) + len(rows) > MAX_REMEMBERED:
            self._written.clear()
        self._written.update((str(row["Key"]), str(row["AppKey"])) for row in rows)

    async def old_layout_rows(self) -> AsyncIterator[OldIndexRow]:
        """The rows of the older layout (one listing of the table)."""
        listing = self._table.list_entities(select=["PartitionKey", "RowKey", "Key", "AppKey"])
        async for row in iterate(listing, "list index"):
            if len(str(row.get("PartitionKey"))) == PARTITION_HEX_DIGITS:
                continue
            app_key = row.get("AppKey")
            key = _index_key(row.get("Key")) if is_app_key(app_key) else None
            etag = str(row.metadata["etag"])
            yield OldIndexRow(row["PartitionKey"], row["RowKey"], etag, key, str(app_key))

    async def move(self, old: OldIndexRow) -> None:
        """Writes the row again in the current layout, then deletes the old one if it is unchanged
        since it was read (else ConcurrencyConflict: an older worker still writes that layout)."""
        assert old.key is not None
        row = _entity(old.key, old.app_key)
        what = f"move index row {old.partition_key}/{old.row_key}"
        await translated(self._table.upsert_entity(row, mode=UpdateMode.REPLACE), what)
        self._written.add((str(old.key), old.app_key))
        try:
            await translated(
                self._table.delete_entity(
                    old.partition_key, old.row_key, etag=old.etag, match_condition=UNCHANGED
                ),
                what,
            )
        except ResourceModifiedError as error:
            raise ConcurrencyConflict(f"{what}: the old row changed since it was read") from error
        except ResourceNotFoundError:
            pass  # gone already: nothing left to move


def _index_key(text: object) -> IndexKey | None:
    """`kind:value` as IndexKey.__str__ writes it, or None."""
    if not isinstance(text, str):
        return None
    kind, _, value = text.partition(":")
    for known in get_args(IndexKind):
        if kind == known and value:
            return IndexKey(known, value)
    return None


def _entity(key: IndexKey, app_key: str) -> TableEntity:
    digest = _digest(str(key))
    return TableEntity(
        PartitionKey=digest[:PARTITION_HEX_DIGITS],
        RowKey=f"{digest}-{_digest(app_key)[:40]}",
        Key=str(key),
        Kind=key.kind,
        AppKey=app_key,
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
