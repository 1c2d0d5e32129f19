"""The same operations through `azure.servicebus.aio`, the async SDK the Functions app uses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
from azure.servicebus.exceptions import MessageLockLostError, SessionCannotBeLockedError

from servicebus_peer import ServiceBusPeer


@pytest.fixture
async def sb(peer: ServiceBusPeer) -> AsyncIterator[ServiceBusClient]:
    async with ServiceBusClient.from_connection_string(peer.connection_string, retry_total=0) as client:
        yield client


def open_sender(client: ServiceBusClient, queue: str) -> ServiceBusSender:
    return client.get_queue_sender(queue, keep_alive=0)


async def test_send_receive_settle_and_dead_letter(peer: ServiceBusPeer, sb: ServiceBusClient) -> None:
    async with open_sender(sb, "requests") as sender:
        await sender.send_messages(
            ServiceBusMessage("single", application_properties={"k": "v"}, message_id="m-1", subject="s")
        )
        batch = await sender.create_message_batch()
        for body in ("poison", "invalid"):
            batch.add_message(ServiceBusMessage(body, correlation_id=f"c-{body}"))
        await sender.send_messages(batch)
    assert [m.body for m in peer.messages("requests")] == [b"single", b"poison", b"invalid"]
    async with sb.get_queue_receiver("requests") as receiver:
        single, poison, invalid = await receiver.receive_messages(max_message_count=3, max_wait_time=2)
        assert single.application_properties == {b"k": b"v"}
        assert (str(single), single.message_id, single.subject) == ("single", "m-1", "s")
        assert (poison.correlation_id, invalid.correlation_id) == ("c-poison", "c-invalid")
        assert [m.sequence_number for m in (single, poison, invalid)] == [1, 2, 3]
        await receiver.complete_message(single)
        await receiver.dead_letter_message(invalid, reason="SchemaInvalid", error_description="no requestId")
        await receiver.abandon_message(poison)
        for attempt in (1, 2):  # max_delivery_count=3
            [again] = await receiver.receive_messages(max_message_count=1, max_wait_time=2)
            assert (str(again), again.delivery_count) == ("poison", attempt)
            await receiver.abandon_message(again)
    assert peer.messages("requests") == []
    async with sb.get_queue_receiver("requests", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        dead = await dlq.receive_messages(max_message_count=2, max_wait_time=2)
        found = {str(m): (m.dead_letter_reason, m.dead_letter_error_description) for m in dead}
        assert found["invalid"] == ("SchemaInvalid", "no requestId")
        assert found["poison"][0] == "MaxDeliveryCountExceeded"


async def test_lock_expiry_and_renewal(peer: ServiceBusPeer, sb: ServiceBusClient) -> None:
    async with open_sender(sb, "shortlock") as sender:
        await sender.send_messages(ServiceBusMessage("job"))
    async with sb.get_queue_receiver("shortlock") as receiver:
        [msg] = await receiver.receive_messages(max_message_count=1, max_wait_time=2)
        await asyncio.sleep(0.7)  # lock_duration=0.5
        with pytest.raises(MessageLockLostError):
            await receiver.complete_message(msg)
        [again] = await receiver.receive_messages(max_message_count=1, max_wait_time=2)
        assert again.delivery_count == 1
        for _ in range(2):  # past the 0.5 s lock
            await asyncio.sleep(0.3)
            await receiver.renew_message_lock(again)
        await receiver.complete_message(again)
    assert peer.messages("shortlock") == []


async def test_schedule_cancel_peek_and_receive_and_delete(
    peer: ServiceBusPeer, sb: ServiceBusClient
) -> None:
    mode = ServiceBusReceiveMode.RECEIVE_AND_DELETE
    async with sb.get_queue_receiver("requests", receive_mode=mode) as receiver:
        async with open_sender(sb, "requests") as sender:
            at = datetime.now(UTC) + timedelta(seconds=0.7)
            await sender.send_messages(ServiceBusMessage("now"))
            [later] = await sender.schedule_messages(ServiceBusMessage("later"), at)
            [dropped] = await sender.schedule_messages(ServiceBusMessage("dropped"), at)
            await sender.cancel_scheduled_messages(dropped)
        stored = [(m.body, m.scheduled) for m in peer.messages("requests")]
        assert stored == [(b"now", False), (b"later", True)]
        peeked = await receiver.peek_messages(max_message_count=5, sequence_number=1)
        assert [(str(m), m.sequence_number) for m in peeked] == [("now", 1), ("later", later)]
        assert [str(m) for m in await receiver.peek_messages(max_message_count=5, sequence_number=later)] == [
            "later"
        ]
        assert not any(m.locked for m in peer.messages("requests"))  # peeking takes no lock
        before_schedule = await receiver.receive_messages(max_message_count=2, max_wait_time=0.2)
        assert [str(m) for m in before_schedule] == ["now"]
        [msg] = await receiver.receive_messages(max_message_count=1, max_wait_time=3)
        assert str(msg) == "later"
        assert datetime.now(UTC) >= at - timedelta(milliseconds=50)
    assert peer.messages("requests") == []


async def test_sessions(peer: ServiceBusPeer, sb: ServiceBusClient) -> None:
    async with open_sender(sb, "reconcile") as sender:
        await sender.send_messages(
            [ServiceBusMessage(body, session_id=sid) for sid, body in [("b", "b1"), ("a", "a1"), ("b", "b2")]]
        )
    next_session = sb.get_queue_receiver("reconcile", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1)
    async with next_session as receiver:
        session = receiver.session
        assert session.session_id == "b"
        with pytest.raises(SessionCannotBeLockedError):
            async with sb.get_queue_receiver("reconcile", session_id="b"):
                pass
        received = await receiver.receive_messages(max_message_count=3, max_wait_time=1)
        assert [str(m) for m in received] == ["b1", "b2"]
        await session.set_state(b"done")
        assert await session.get_state() == b"done"
        before = session.locked_until_utc
        assert before is not None
        assert await session.renew_lock() >= before
        for msg in received:
            await receiver.complete_message(msg)
    assert [m.body for m in peer.messages("reconcile")] == [b"a1"]
    assert peer.session_state("reconcile", "b") == b"done"


async def test_competing_receivers_never_get_the_same_message(
    peer: ServiceBusPeer, sb: ServiceBusClient
) -> None:
    async with open_sender(sb, "requests") as sender:
        await sender.send_messages([ServiceBusMessage(f"shard-{i}") for i in range(20)])

    async def drain(count: int) -> list[str]:
        taken: list[str] = []
        async with sb.get_queue_receiver("requests") as receiver:
            while len(taken) < count:
                batch = await receiver.receive_messages(max_message_count=3, max_wait_time=0.5)
                if not batch:
                    break
                for msg in batch:
                    taken.append(str(msg))
                    await receiver.complete_message(msg)
        return taken

    first, second = await asyncio.gather(drain(20), drain(20))
    assert sorted(first + second) == sorted(f"shard-{i}" for i in range(20))
    assert peer.messages("requests") == []
