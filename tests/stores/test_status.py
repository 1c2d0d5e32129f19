"""The status table, against Azurite: round trip, replace semantics, and texts cut to fit."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from reconciler.engine.run import Status
from reconciler.state.status import ConfigStatus, changed, summarise_plan
from reconciler.state.stores import Stores
from reconciler.state.tables import MAX_PLAN_SUMMARY, MAX_TEXT_UNITS, TRUNCATED_MARKER, CorruptRow
from tests.azurite import TableRequests

CONFIG_ID = "contoso/payments/kv-reader"


BASE = ConfigStatus(
    config_id=CONFIG_ID,
    organization="Contoso",
    phase=Status.FAILED_TEMPORARY,
    observed_generation=3,
    last_plan=summarise_plan(["create-credential", "assign-role"]),
    last_error="ARM answered 429",
    retry_after=30.0,
    last_reconcile="2026-11-26T14:00:00+00:00",
)


def status(**changes: Any) -> ConfigStatus:
    return replace(BASE, **changes)


async def test_a_status_round_trips(stores: Stores) -> None:
    stored = await stores.status.put(status())

    assert stored == status(organization="contoso")
    assert stored.last_plan == "2 actions: create-credential, assign-role"
    assert await stores.status.get(CONFIG_ID, "contoso") == stored
    assert await stores.status.get(CONFIG_ID) == stored
    assert await stores.status.get("contoso/payments/other") is None
    assert await stores.status.get("contoso/payments/other", "contoso") is None


async def test_a_new_status_replaces_the_old_one_whole(stores: Stores) -> None:
    await stores.status.put(status())

    converged = status(phase=Status.CONVERGED, observed_generation=4, last_error="", retry_after=None)
    await stores.status.put(converged)

    found = await stores.status.get(CONFIG_ID)
    assert found is not None
    assert (found.phase, found.observed_generation, found.last_error, found.retry_after) == (
        "converged",
        4,
        "",
        None,
    )


async def test_long_texts_are_cut_to_fit_a_table_property_with_a_marker(stores: Stores) -> None:
    error = "\U0001f4a5" * 40_000  # characters outside the BMP count twice in a table property
    plan = summarise_plan([f"assign-role-{n}" for n in range(500)])

    stored = await stores.status.put(status(last_error=error, last_plan=plan))
    found = await stores.status.get(CONFIG_ID)

    assert found == stored
    assert found.last_error.endswith(TRUNCATED_MARKER)
    assert len(found.last_error.encode("utf-16-le")) // 2 <= MAX_TEXT_UNITS
    assert found.last_error.startswith("\U0001f4a5" * 100)
    assert len(found.last_plan) <= MAX_PLAN_SUMMARY and found.last_plan.startswith("500 actions: ")


async def test_a_phase_outside_the_engines_vocabulary_is_refused_on_write_and_on_read(
    stores: Stores,
) -> None:
    with pytest.raises(ValueError, match="'pending' is not a valid Status"):
        await stores.status.put(status(phase="pending"))
    await stores.status.put(status())
    row = {"PartitionKey": "contoso", "RowKey": "contoso~payments~kv-reader", "Phase": "happy"}
    await stores.status._table.update_entity(row)  # edited by hand
    with pytest.raises(CorruptRow, match=r"Phase: expected one of converged, drifted, .*, got 'happy'"):
        await stores.status.get(CONFIG_ID)


def test_the_plan_summary_counts_and_names_the_actions() -> None:
    assert summarise_plan([]) == "no changes"
    assert summarise_plan(["create-credential"]) == "1 action: create-credential"


async def test_the_status_of_a_purged_config_can_be_forgotten(stores: Stores) -> None:
    await stores.status.put(status())

    await stores.status.delete(CONFIG_ID, "Contoso")
    await stores.status.delete(CONFIG_ID, "contoso")  # again: nothing to do

    assert await stores.status.get(CONFIG_ID) is None


async def test_many_statuses_go_in_transactions_of_up_to_100_rows_of_one_partition(
    stores: Stores, table_settings: dict[str, str]
) -> None:
    rows = [status(config_id=f"contoso/payments/kv-{n}") for n in range(150)]
    rows += [status(config_id=f"fabrikam/web/kv-{n}", organization="Fabrikam") for n in range(30)]
    tables = TableRequests.of(table_settings)
    tables.mark()
    assert await stores.status.put_many(rows) == 180
    assert tables.writes_since_mark() == [("POST", "/devstoreaccount1/$batch")] * 3  # 100 + 50, and 30
    listed = {s.config_id: s async for s in stores.status.list_all()}
    assert len(listed) == 180 and listed["fabrikam/web/kv-7"].organization == "fabrikam"
    assert not changed(listed["contoso/payments/kv-3"], replace(rows[3], last_reconcile="later"))
    assert changed(listed["contoso/payments/kv-3"], replace(rows[3], phase=Status.CONVERGED))
