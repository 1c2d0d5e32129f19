"""Table federationindex: which applications an object named by events belongs to (docs/events.md).

The reconciler writes it as it applies: after each pass, every object the pass observed or
created for a config (its application's object id, its service principal, its connection, its
role assignments) is mapped to the config's application key. An event names one such object, so mapping it to
applications is **one indexed read**: a query on one PartitionKey (sha256 of the object), whose
rows are the applications. An object the reconciler does not manage has no rows, and its event
is dropped after that one read.

Stale rows (a config moved to another application, or retired) cost at most one needless
reconcile of the old application, which is level-triggered and finds nothing to do; they are
never a reason to skip one.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping

from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from reconciler.core.events import IndexKey
from reconciler.state.queues import is_app_key
from reconciler.state.tables import INDEX_TABLE, iterate, translated

MAX_REMEMBERED = 200_000  # rows this process knows it wrote: a steady state writes nothing
WRITE_CONCURRENCY = 8


class EventIndex:
    table_name = INDEX_TABLE

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._written: set[tuple[str, str]] = set()
        self._seeded = False

    async def applications(self, key: IndexKey) -> set[str]:
        """The application keys of this object: one query on one partition."""
        pages = self._table.query_entities(
            "PartitionKey eq @partition", parameters={"partition": _partition(key)}, select=["Key", "AppKey"]
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
        async for row in iterate(self._table.list_entities(select=["Key", "AppKey"]), "list index"):
            if isinstance(row.get("Key"), str) and is_app_key(row.get("AppKey")):
                self._written.add((row["Key"], str(row["AppKey"])))
        self._seeded = True

    async def record(self, entries: Mapping[IndexKey, Iterable[str]]) -> int:
        """Adds these mappings (idempotent upserts); returns how many rows were written."""
        new = [
            (key, app_key)
            for key, app_keys in sorted(entries.items())
            for app_key in sorted(app_keys)
            if (str(key), app_key) not in self._written and is_app_key(app_key)
        ]
        gate = asyncio.Semaphore(WRITE_CONCURRENCY)

        async def write(key: IndexKey, app_key: str) -> None:
            entity = {
                "PartitionKey": _partition(key),
                "RowKey": hashlib.sha256(app_key.encode()).hexdigest()[:40],
                "Key": str(key),
                "Kind": key.kind,
                "AppKey": app_key,
            }
            async with gate:
                await translated(self._table.upsert_entity(entity, mode=UpdateMode.REPLACE), f"index {key}")
            if len(self._written) >= MAX_REMEMBERED:
                self._written.clear()
            self._written.add((str(key), app_key))

        await asyncio.gather(*(write(key, app_key) for key, app_key in new))
        return len(new)


def _partition(key: IndexKey) -> str:
    return hashlib.sha256(str(key).encode()).hexdigest()
