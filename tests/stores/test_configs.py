"""The desired-config table, against Azurite: round trips, generations, ETags, tombstones, bad rows."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.identifiers import ConfigId
from reconciler.documents import InputError
from reconciler.state.configs import ConfigRecord
from reconciler.state.stores import Stores
from reconciler.state.tables import (
    CONFIGS_TABLE,
    ConcurrencyConflict,
    CorruptRow,
    InvalidRow,
    decode_row_key,
    encode_row_key,
)
from tests.stores.conftest import SUBSCRIPTION, document

KEYS_FORBIDDEN = set("/\\#?") | {chr(c) for c in range(32)} | {chr(c) for c in range(0x7F, 0xA0)}


async def test_put_then_get_and_list_give_the_config_back(stores: Stores) -> None:
    stored = await stores.configs.put(document(), request_id="CHG1")

    assert stored.config_id == "contoso/payments/kv-reader"
    assert stored.generation == 1
    assert not stored.deleted
    assert stored.request_id == "CHG1"
    assert stored.document["id"] == stored.config_id  # always explicit in the stored document
    assert await stores.configs.get(stored.config_id) == stored
    assert await stores.configs.get(stored.config_id, "Contoso") == stored  # the point read
    assert [record async for record in stores.configs.list_all()] == [stored]
    assert await stores.configs.get("contoso/payments/missing") is None


async def test_every_change_bumps_the_generation_and_the_same_config_again_changes_nothing(
    stores: Stores,
) -> None:
    first = await stores.configs.put(document(), request_id="CHG1")
    same = await stores.configs.put(document(), request_id="CHG2")
    changed = await stores.configs.put(
        document(serviceConnection={**document()["serviceConnection"], "pipelines": [12, 15]}),
        request_id="CHG3",
    )

    assert (same.generation, same.etag, same.request_id) == (1, first.etag, "CHG1")
    assert changed.generation == 2
    assert changed.request_id == "CHG3"
    assert changed.config.pipelines.pipeline_ids == frozenset({12, 15})


async def test_a_stale_etag_is_a_conflict_and_the_loser_applies_its_change_on_top(stores: Stores) -> None:
    base = await stores.configs.put(document(), request_id="CHG0")
    # Two writers read the same row...
    read_a = await stores.configs.get(base.config_id)
    read_b = await stores.configs.get(base.config_id)
    assert read_a is not None and read_b is not None

    # ...A writes first; B's write, based on the same read, must not silently replace A's.
    await stores.configs.put(_with_pipelines(read_a.document, 12), request_id="A", expected_etag=read_a.etag)
    with pytest.raises(ConcurrencyConflict):
        await stores.configs.put(
            _with_pipelines(read_b.document, 15), request_id="B", expected_etag=read_b.etag
        )

    # B reads again and applies its change on top of A's.
    again = await stores.configs.get(base.config_id)
    assert again is not None
    final = await stores.configs.put(
        _with_pipelines(again.document, 15), request_id="B", expected_etag=again.etag
    )

    assert final.config.pipelines.pipeline_ids == frozenset({12, 15})
    assert final.generation == 3


async def test_concurrent_upserts_of_one_config_never_lose_an_update(stores: Stores) -> None:
    base = await stores.configs.put(document(), request_id="CHG0")
    conflicts = 0

    async def add_pipeline(pipeline_id: int) -> None:
        nonlocal conflicts
        while True:  # what every caller does: read, change, write if unchanged, else again
            current = await stores.configs.get(base.config_id, "contoso")
            assert current is not None
            try:
                await stores.configs.put(
                    _with_pipelines(current.document, pipeline_id),
                    request_id=f"CHG{pipeline_id}",
                    expected_etag=current.etag,
                )
                return
            except ConcurrencyConflict:
                conflicts += 1

    # expected_etag=None (read-modify-write inside put) is guarded the same way.
    await asyncio.gather(*(add_pipeline(n) for n in range(1, 9)))
    final = await stores.configs.get(base.config_id)

    assert final is not None
    assert final.config.pipelines.pipeline_ids == frozenset(range(1, 9))
    assert final.generation == 1 + 8
    assert conflicts > 0  # the writers did collide; none of them lost its change


async def test_concurrent_creates_of_one_new_config_leave_one_winner(stores: Stores) -> None:
    results = await asyncio.gather(
        *(stores.configs.put(document(), request_id=f"CHG{n}") for n in range(4)), return_exceptions=True
    )

    written = [r for r in results if isinstance(r, ConfigRecord)]
    assert all(isinstance(r, ConfigRecord | ConcurrencyConflict) for r in results)
    assert len(written) >= 1
    stored = await stores.configs.get("contoso/payments/kv-reader")
    assert stored is not None and stored.generation == 1


async def test_an_expected_etag_for_a_row_that_is_gone_is_a_conflict(stores: Stores) -> None:
    with pytest.raises(ConcurrencyConflict):
        await stores.configs.put(document(), request_id="CHG1", expected_etag="W/\"datetime'2020'\"")


async def test_retire_leaves_a_tombstone_that_purge_removes(stores: Stores) -> None:
    stored = await stores.configs.put(document(), request_id="CHG1")

    retired = await stores.configs.retire(stored.config_id, request_id="CHG2")
    assert retired is not None
    assert (retired.deleted, retired.generation, retired.request_id) == (True, 2, "CHG2")
    assert retired.config == stored.config  # what it owned is still known, for the prune
    assert await stores.configs.get(stored.config_id) == retired
    assert [r async for r in stores.configs.list_all()] == [retired]
    assert await stores.configs.retire(stored.config_id, request_id="CHG3") == retired  # no change
    assert await stores.configs.retire("contoso/payments/missing", request_id="CHG3") is None

    with pytest.raises(ConcurrencyConflict):
        await stores.configs.purge(stored.config_id, stored.etag)  # an older read: refused
    assert await stores.configs.purge(stored.config_id, retired.etag)
    assert await stores.configs.get(stored.config_id) is None
    assert not await stores.configs.purge(stored.config_id, retired.etag)


async def test_a_retired_config_put_again_is_active_again_and_is_not_purged(stores: Stores) -> None:
    stored = await stores.configs.put(document(), request_id="CHG1")
    retired = await stores.configs.retire(stored.config_id, request_id="CHG2")
    assert retired is not None

    restored = await stores.configs.put(document(), request_id="CHG3")

    assert (restored.deleted, restored.generation) == (False, 3)
    with pytest.raises(ConcurrencyConflict):
        await stores.configs.purge(stored.config_id, retired.etag)
    assert await stores.configs.get(stored.config_id) == restored


async def test_invalid_documents_are_rejected_naming_the_field_and_nothing_is_written(stores: Stores) -> None:
    with pytest.raises(InputError) as raised:
        await stores.configs.put(document(tenantId="not-a-guid", prune="sometimes"), request_id="CHG1")

    assert any("tenantId" in problem for problem in raised.value.problems)
    assert any("prune" in problem for problem in raised.value.problems)
    assert [r async for r in stores.configs.list_all()] == []


async def test_the_request_id_of_a_change_is_checked(stores: Stores) -> None:
    with pytest.raises(InputError, match="requestId"):
        await stores.configs.put(document(), request_id="CHG 1")
    stored = await stores.configs.put(document(), request_id="CHG1")
    with pytest.raises(InputError, match="requestId"):
        await stores.configs.retire(stored.config_id, request_id="")


async def test_an_id_cannot_move_to_another_organization_without_being_retired(stores: Stores) -> None:
    await stores.configs.put(document(id="shared/kv"), request_id="CHG1")

    with pytest.raises(InputError, match="is stored under organization 'contoso'"):
        await stores.configs.put(document(id="shared/kv", organization="fabrikam"), request_id="CHG2")


async def test_a_config_too_large_for_a_table_property_is_rejected(stores: Stores) -> None:
    scopes = [f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-{n:04d}-{'x' * 60}" for n in range(400)]
    huge = document(roleAssignments=[{"role": "Reader", "scope": scope} for scope in scopes])

    with pytest.raises(InputError, match="too large to store"):
        await stores.configs.put(huge, request_id="CHG1")


async def test_a_row_corrupted_by_hand_is_reported_and_the_listing_goes_on(
    stores: Stores, table_settings: dict[str, str]
) -> None:
    good = await stores.configs.put(document(), request_id="CHG1")
    other = await stores.configs.put(document("kv-writer"), request_id="CHG1")
    _edit_row(table_settings, "contoso", encode_row_key(other.config_id), Document="{not json")
    broken = json.loads(json.dumps(good.document))
    broken["tenantId"] = "nobody"
    _edit_row(table_settings, "contoso", "contoso~payments~third", Document=json.dumps(broken), Generation=1)

    invalid: list[InvalidRow] = []
    listed = [record async for record in stores.configs.list_all(on_invalid=invalid.append)]

    assert listed == [good]
    assert sorted((row.partition_key, row.row_key) for row in invalid) == [
        ("contoso", "contoso~payments~kv-writer"),
        ("contoso", "contoso~payments~third"),
    ]
    messages = {row.row_key: str(row) for row in invalid}
    assert "not JSON" in messages["contoso~payments~kv-writer"]
    assert "tenantId" in messages["contoso~payments~third"]
    assert "federationconfigs, row contoso/contoso~payments~third" in messages["contoso~payments~third"]
    with pytest.raises(CorruptRow, match="kv-writer"):
        await stores.configs.get(other.config_id)
    # Logged, not raised, when nobody collects them.
    assert [record async for record in stores.configs.list_all()] == [good]


async def test_a_row_whose_document_names_another_config_is_reported(
    stores: Stores, table_settings: dict[str, str]
) -> None:
    good = await stores.configs.put(document(), request_id="CHG1")
    _edit_row(
        table_settings, "contoso", "contoso~payments~copy", Document=json.dumps(good.document), Generation=1
    )

    with pytest.raises(CorruptRow, match="the document is config 'contoso/payments/kv-reader'"):
        await stores.configs.get("contoso/payments/copy")


async def test_list_for_apps_finds_the_configs_sharing_each_application(stores: Stores) -> None:
    apps = [f"0f1e2d3c-4b5a-4968-8776-{n:012d}" for n in range(20)]
    for n, app in enumerate(apps):  # more applications than one query may name
        await stores.configs.put(document(f"conn-{n}", application={"appId": app}), request_id="CHG1")
    await stores.configs.put(document("conn-shared", application={"appId": apps[19]}), request_id="CHG1")
    await stores.configs.put(
        document("conn-new", application={"displayName": "sc 'quoted' app", "create": True}),
        request_id="CHG1",
    )

    wanted = [f"app:{app}" for app in apps[3:20]] + ["new:sc 'quoted' app", "app:unknown"]
    found = await stores.configs.list_for_apps(wanted)

    names = sorted(record.config.connection_name for record in found)
    assert names == sorted([f"conn-{n}" for n in range(3, 20)] + ["conn-shared", "conn-new"])
    assert await stores.configs.list_for_apps([]) == []


@pytest.mark.parametrize("config_id", ["a", "contoso/payments/kv-reader", "x.y_z-1/2/3.4", "a/b/c/d/e/f"])
async def test_any_valid_id_is_stored_and_found_again(stores: Stores, config_id: str) -> None:
    stored = await stores.configs.put(document(id=config_id), request_id="CHG1")

    assert (await stores.configs.get(config_id)) == stored
    assert (await stores.configs.get(config_id, "contoso")) == stored


@given(st.from_regex(ConfigId.rule, fullmatch=True).filter(lambda i: len(i) <= ConfigId.max_length))
def test_the_row_key_encoding_is_valid_and_round_trips_every_valid_id(config_id: str) -> None:
    row_key = encode_row_key(config_id)

    assert not set(row_key) & KEYS_FORBIDDEN
    assert decode_row_key(row_key) == config_id


def _with_pipelines(doc: dict[str, Any], pipeline_id: int) -> dict[str, Any]:
    connection = dict(doc["serviceConnection"])
    pipelines = connection["pipelines"]
    connection["pipelines"] = sorted({*([] if pipelines == "all" else pipelines), pipeline_id})
    return {**doc, "serviceConnection": connection}


def _edit_row(settings: dict[str, str], partition_key: str, row_key: str, **properties: Any) -> None:
    """Writes a row behind the store's back, as a person in Storage Explorer would."""
    with TableServiceClient.from_connection_string(settings["WIF_TABLE_CONNECTION_STRING"]) as service:
        table = service.get_table_client(CONFIGS_TABLE)
        table.upsert_entity({"PartitionKey": partition_key, "RowKey": row_key, **properties})
