"""Table federationpending: coalescing a burst of events into one reconcile per application.

The first event about an application inserts its pending row and schedules one reconcile
message a short delay later (`EVENT_COALESCE_SECONDS`); every further event finds the row there
(the insert answers 409) and sends nothing. The reconcile deletes the row **before** it observes,
so an event that arrives once the pass has started inserts a new row and schedules the next pass:
no event is ever covered by a pass that started before it. docs/events.md weighs this against
Service Bus duplicate detection.

A row is keyed by the application and an epoch of EPOCH_SECONDS: a row left behind (the
process stopped between insert and send) holds back that application's events for at most one
epoch, and the sweep repairs what they reported meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables.aio import TableClient

from reconciler.core.events import pending_key
from reconciler.state.tables import PENDING_TABLE, translated

EPOCH_SECONDS = 300


class PendingReconciles:
    table_name = PENDING_TABLE

    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def claim(self, app_key: str, now: float, event_id: str) -> str | None:
        """The pending row's key when this event is the first of a burst (send the reconcile),
        None when a reconcile is already pending for the application (send nothing)."""
        row = pending_key(app_key, int(now // EPOCH_SECONDS))
        entity = {"PartitionKey": _partition(row), "RowKey": row, "AppKey": app_key, "EventId": event_id}
        try:
            await translated(self._table.create_entity(entity), f"pend a reconcile of {app_key}")
        except ResourceExistsError:
            return None
        return row

    async def release(self, row: str) -> None:
        """Lets the next event schedule a reconcile again (nothing happens when the row is gone)."""
        with contextlib.suppress(ResourceNotFoundError):
            await translated(self._table.delete_entity(_partition(row), row), f"release pending {row}")


def _partition(row: str) -> str:
    return hashlib.sha256(row.encode()).hexdigest()[:2]
