"""The drift-event tables against Azurite: the index, the coalescing rows, the repair history."""

from __future__ import annotations

import hashlib

from azure.data.tables import UpdateMode

from reconciler.core.events import IndexKey
from reconciler.state.event_index import EventIndex
from reconciler.state.history import Repair
from reconciler.state.stores import Stores
from tests.azurite import TableRequests

SCOPE = IndexKey(
    "roleAssignment",
    "/subscriptions/6b1e2c5a-3f4d-4e8a-9c7b-1a2b3c4d5e6f/resourceGroups/rg-pay"
    "/providers/Microsoft.Authorization/roleAssignments/0b3c1e6e-0000-0000-0000-000000000001",
)
PRINCIPAL = IndexKey("principal", "aaaaaaaa-0000-0000-0000-000000000001")
APP_A = "app:0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
APP_B = "new:sc-payments"


async def test_an_object_maps_to_every_application_recorded_for_it(stores: Stores) -> None:
    assert await stores.index.record({SCOPE: [APP_A, APP_B], PRINCIPAL: [APP_A]}) == 3
    assert await stores.index.applications(SCOPE) == {APP_A, APP_B}
    assert await stores.index.applications(PRINCIPAL) == {APP_A}
    unmanaged = IndexKey("principal", "bbbbbbbb-0000-0000-0000-000000000001")
    assert await stores.index.applications(unmanaged) == set()
    # What this process wrote once is not written again.
    assert await stores.index.record({SCOPE: [APP_A]}) == 0


async def test_a_row_edited_into_another_object_or_a_bad_key_is_not_believed(stores: Stores) -> None:
    await stores.index.record({PRINCIPAL: [APP_A]})
    table = stores.index._table
    [row] = [r async for r in table.list_entities()]
    await table.upsert_entity({**row, "AppKey": "app:../../x"}, mode=UpdateMode.REPLACE)
    assert await stores.index.applications(PRINCIPAL) == set()
    await table.upsert_entity({**row, "Key": str(SCOPE)}, mode=UpdateMode.REPLACE)
    assert await stores.index.applications(PRINCIPAL) == set()


async def test_the_first_event_of_a_burst_claims_the_reconcile_until_it_is_released(stores: Stores) -> None:
    row = await stores.pending.claim(APP_A, 1_000.0, "e1")
    assert row is not None
    assert await stores.pending.claim(APP_A, 1_001.0, "e2") is None  # coalesced
    assert await stores.pending.claim(APP_B, 1_001.0, "e3") is not None  # another application
    await stores.pending.release(row)
    await stores.pending.release(row)  # twice is fine
    assert await stores.pending.claim(APP_A, 1_002.0, "e4") == row
    # A row left behind holds events back for one epoch at most.
    assert await stores.pending.claim(APP_A, 1_000.0 + 300, "e5") not in (None, row)


async def test_repairs_are_listed_newest_first(stores: Stores) -> None:
    older = Repair(
        "contoso/payments/kv-reader",
        "2026-12-05T01:00:02+00:00",
        "2026-12-05T01:00:00Z",
        "arm-event",
        "jane@contoso.com",
        ("create-role-assignment Key Vault Reader on /subscriptions/x: applied",),
        "event-1",
    )
    newer = Repair("contoso/payments/kv-reader", "2026-12-05T02:00:00+00:00", "", "sweep", "", ("x",), "s")
    await stores.history.add(older)
    await stores.history.add(newer)
    assert await stores.history.list("contoso/payments/kv-reader") == [newer, older]
    assert await stores.history.list("contoso/payments/other") == []
    assert len(await stores.history.list("contoso/payments/kv-reader", limit=1)) == 1


async def test_a_bulk_record_goes_out_in_transactions_and_a_fresh_worker_writes_nothing_again(
    stores: Stores, table_settings: dict[str, str]
) -> None:
    principals = [IndexKey("principal", f"cccccccc-0000-4000-8000-{n:012d}") for n in range(600)]
    tables = TableRequests.of(table_settings)
    tables.mark()
    assert await stores.index.record({key: [APP_A] for key in principals}) == 600
    writes = tables.writes_since_mark()
    # 600 rows over at most 256 partitions: one transaction per partition (none holds 100 here),
    # never one request per row.
    partitions = {hashlib.sha256(str(key).encode()).hexdigest()[:2] for key in principals}
    assert writes == [("POST", "/devstoreaccount1/$batch")] * len(partitions)
    assert all([await stores.index.applications(key) == {APP_A} for key in principals[:20]])

    fresh = EventIndex(stores.index._table)  # a new worker process: it seeds from one listing
    await fresh.seed()
    tables.mark()
    assert await fresh.record({key: [APP_A] for key in principals}) == 0
    assert tables.writes_since_mark() == []


async def test_rows_of_the_older_one_partition_per_object_layout_are_written_again(stores: Stores) -> None:
    table = stores.index._table
    old = hashlib.sha256(str(PRINCIPAL).encode()).hexdigest()
    row = {
        "PartitionKey": old,
        "RowKey": "x" * 40,
        "Key": str(PRINCIPAL),
        "Kind": "principal",
        "AppKey": APP_A,
    }
    await table.upsert_entity(row, mode=UpdateMode.REPLACE)
    fresh = EventIndex(table)
    await fresh.seed()
    assert await fresh.applications(PRINCIPAL) == set()  # lookups read the new layout only
    assert await fresh.record({PRINCIPAL: [APP_A]}) == 1
    assert await fresh.applications(PRINCIPAL) == {APP_A}
