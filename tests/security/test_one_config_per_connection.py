"""One config per service connection across the whole desired state (issue 10, item 3), enforced
by the store against a real Azurite: an index row per connection (organization/project/name,
case-folded as ADO compares them), written in the same table transaction as the config row."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from reconciler.state.claims import ClaimRejected
from reconciler.state.configs import ConfigRecord
from reconciler.state.stores import Stores, open_stores
from reconciler.state.tables import ConcurrencyConflict
from tests.azurite import azurite_tables, table_settings
from tests.stores.conftest import document

__all__ = ["azurite_tables", "table_settings"]


@pytest.fixture
async def stores(table_settings: dict[str, str]) -> AsyncIterator[Stores]:
    async with await open_stores(table_settings, None) as opened:
        yield opened


async def put_retrying(stores: Stores, body: dict[str, Any]) -> ConfigRecord:
    """As the ticket handler and `import` do: a concurrent writer's conflict is read again and retried."""
    for _ in range(20):
        try:
            return await stores.configs.put(body, request_id="test")
        except ConcurrencyConflict:
            await asyncio.sleep(0.01)
    raise AssertionError("kept conflicting")


def named(config_id: str, connection: str, **changes: Any) -> dict[str, Any]:
    body = document(connection, **changes)
    body["id"] = config_id
    return body


async def test_concurrent_puts_of_configs_for_one_connection_store_exactly_one(stores: Stores) -> None:
    spellings = ["kv-reader", "KV-Reader", "Kv-Reader", "kv-READER"]
    bodies = [named(f"team{n}/reader", spellings[n % len(spellings)]) for n in range(8)]
    results = await asyncio.gather(*(put_retrying(stores, b) for b in bodies), return_exceptions=True)
    stored = [r for r in results if isinstance(r, ConfigRecord)]
    rejected = [r for r in results if isinstance(r, ClaimRejected)]
    assert len(stored) == 1 and len(rejected) == 7, results
    assert all(f"is managed by config {stored[0].config_id!r}" in str(r) for r in rejected)
    assert [r.config_id async for r in stores.configs.list_all()] == [stored[0].config_id]


async def test_a_second_config_for_a_connection_is_refused_whatever_the_letter_case(stores: Stores) -> None:
    await stores.configs.put(named("payments/reader", "kv-reader"), request_id="r1")
    other_case = named("payments/other", "KV-READER", project="PAYMENTS")
    with pytest.raises(ClaimRejected, match="is managed by config 'payments/reader'"):
        await stores.configs.put(other_case, request_id="r2")
    assert await stores.configs.get("payments/other") is None


async def test_renaming_a_configs_connection_frees_the_old_name_in_the_same_write(stores: Stores) -> None:
    await stores.configs.put(named("payments/reader", "kv-reader"), request_id="r1")
    await stores.configs.put(named("payments/reader", "kv-reader-2"), request_id="r2")
    taken = await stores.configs.put(named("payments/other", "kv-reader"), request_id="r3")
    assert taken.config.connection_name == "kv-reader"
    with pytest.raises(ClaimRejected):
        await stores.configs.put(named("payments/third", "kv-reader-2"), request_id="r4")


async def test_a_retired_config_keeps_its_connection_until_it_is_purged(stores: Stores) -> None:
    await stores.configs.put(named("payments/reader", "kv-reader"), request_id="r1")
    retired = await stores.configs.retire("payments/reader", request_id="r2")
    assert retired is not None
    with pytest.raises(ClaimRejected, match="retire that config"):
        await stores.configs.put(named("payments/other", "kv-reader"), request_id="r3")
    restored = await stores.configs.put(
        named("payments/reader", "kv-reader"), request_id="r4"
    )  # its own: fine
    retired = await stores.configs.retire("payments/reader", request_id="r5")
    assert restored.generation == 3 and retired is not None
    assert await stores.configs.purge("payments/reader", retired.etag, "contoso")
    await stores.configs.put(named("payments/other", "kv-reader"), request_id="r6")
    assert [r.config_id async for r in stores.configs.list_all()] == ["payments/other"]
