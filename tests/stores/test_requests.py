"""The request history, against Azurite: idempotency by request id, outcomes, and long bodies."""

from __future__ import annotations

import asyncio

import pytest

from reconciler.documents import InputError
from reconciler.state.requests import RequestRecord
from reconciler.state.stores import Stores
from reconciler.state.tables import MAX_TEXT_UNITS, TRUNCATED_MARKER, request_partition

RECEIVED = "2026-11-26T14:00:00+00:00"


async def begin(
    stores: Stores,
    request_id: str,
    body: str = '{"action": "upsert"}',
    requested_by: str = "alice@contoso.com",
) -> tuple[RequestRecord, bool]:
    return await stores.requests.begin(
        request_id, body, requested_by=requested_by, action="upsert", received_at=RECEIVED
    )


async def test_the_same_request_id_twice_gives_the_first_record(stores: Stores) -> None:
    first, created = await begin(stores, "CHG0012345")
    again, created_again = await begin(stores, "CHG0012345", body='{"other": true}', requested_by="mallory")

    assert created and not created_again
    assert again == first
    assert (first.outcome, first.body, first.requested_by) == (
        "accepted",
        '{"action": "upsert"}',
        "alice@contoso.com",
    )
    assert await stores.requests.get("CHG0012345") == first


async def test_concurrent_deliveries_of_one_request_create_it_once(stores: Stores) -> None:
    results = await asyncio.gather(*(begin(stores, "CHG7", body=f"delivery {n}") for n in range(6)))

    assert sum(created for _, created in results) == 1
    assert len({record.body for record, _ in results}) == 1


async def test_finish_records_the_outcome_reason_and_changes(stores: Stores) -> None:
    await begin(stores, "CHG1")

    finished = await stores.requests.finish(
        "CHG1",
        "applied",
        "",
        ["created credential kv-reader", "assigned Reader"],
        "2026-11-26T14:01:00+00:00",
    )

    assert (finished.outcome, finished.changes, finished.finished_at) == (
        "applied",
        ("created credential kv-reader", "assigned Reader"),
        "2026-11-26T14:01:00+00:00",
    )
    assert finished.body == '{"action": "upsert"}'  # the merge keeps what begin recorded
    assert await stores.requests.get("CHG1") == finished
    again, created = await begin(stores, "CHG1")
    assert not created and again.outcome == "applied"


async def test_finish_refuses_unknown_outcomes_and_requests_never_begun(stores: Stores) -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        await stores.requests.finish("CHG1", "done", "", [], RECEIVED)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="never begun"):
        await stores.requests.finish("CHG404", "failed", "boom", [], RECEIVED)


async def test_a_huge_body_is_stored_cut_with_a_flag(stores: Stores) -> None:
    record, _ = await begin(stores, "CHG2", body="x" * 1_000_000)

    assert record.body_truncated
    assert record.body.endswith(TRUNCATED_MARKER) and len(record.body) <= MAX_TEXT_UNITS
    assert await stores.requests.get("CHG2") == record


async def test_many_changes_are_cut_to_fit(stores: Stores) -> None:
    await begin(stores, "CHG3")
    changes = [f"assigned role {n} on a scope with a long name {'x' * 100}" for n in range(2_000)]

    finished = await stores.requests.finish("CHG3", "applied", "", changes, RECEIVED)

    assert 1 < len(finished.changes) < 2_000
    assert finished.changes[-1] == "... and more (2000 changes in all)"


@pytest.mark.parametrize("request_id", ["", "a" * 129, "CHG 1", "CHG/1", "CHG#1", "ünïcode"])
async def test_request_ids_are_checked(stores: Stores, request_id: str) -> None:
    with pytest.raises(InputError, match="requestId"):
        await begin(stores, request_id)
    assert await stores.requests.get(request_id) is None


def test_the_partition_comes_from_the_id_alone() -> None:
    assert request_partition("CHG0012345") == request_partition("CHG0012345")
    assert len(request_partition("CHG0012345")) == 2
    assert len({request_partition(f"CHG{n}") for n in range(2_000)}) == 256
