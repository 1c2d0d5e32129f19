"""The real azure-servicebus SDK (sync) against the peer: send, receive, settle, schedule, peek."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSender,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
)

from servicebus_peer import ServiceBusPeer
from tests.servicebus_peer.conftest import open_sender

DLQ = ServiceBusSubQueue.DEAD_LETTER


def test_send_and_receive_preserve_what_the_sender_set(
    peer: ServiceBusPeer, sb: ServiceBusClient, requests_sender: ServiceBusSender
) -> None:
    before = datetime.now(UTC)
    requests_sender.send_messages(
        ServiceBusMessage(
            '{"requestId": "CHG1"}',
            application_properties={"schemaVersion": 1, "kind": "upsert"},
            message_id="m-1",
            correlation_id="corr-1",
            subject="ticket",
            content_type="application/json",
            time_to_live=timedelta(minutes=5),
        )
    )
    with sb.get_queue_receiver("requests") as receiver:
        [msg] = receiver.receive_messages(max_message_count=1, max_wait_time=2)
        assert str(msg) == '{"requestId": "CHG1"}'
        assert msg.application_properties == {b"schemaVersion": 1, b"kind": b"upsert"}
        assert (msg.message_id, msg.correlation_id, msg.subject) == ("m-1", "corr-1", "ticket")
        assert msg.content_type == "application/json"
        assert msg.time_to_live == timedelta(minutes=5)
        assert (msg.sequence_number, msg.delivery_count) == (1, 0)
        assert msg.enqueued_time_utc is not None
        assert before - timedelta(seconds=1) <= msg.enqueued_time_utc <= datetime.now(UTC)
        assert msg.locked_until_utc is not None
        assert msg.locked_until_utc > datetime.now(UTC) + timedelta(seconds=3)
        assert peer.messages("requests")[0].locked
        receiver.complete_message(msg)
    assert peer.messages("requests") == []


def test_a_batch_arrives_as_separate_messages_and_receive_and_delete_removes_them(
    peer: ServiceBusPeer, sb: ServiceBusClient, requests_sender: ServiceBusSender
) -> None:
    batch = requests_sender.create_message_batch()
    for i in range(3):
        batch.add_message(ServiceBusMessage(f"shard-{i}", application_properties={"shard": i}))
    requests_sender.send_messages(batch)
    stored = peer.messages("requests")
    assert [m.body for m in stored] == [b"shard-0", b"shard-1", b"shard-2"]
    assert [m.application_properties["shard"] for m in stored] == [0, 1, 2]
    mode = ServiceBusReceiveMode.RECEIVE_AND_DELETE
    with sb.get_queue_receiver("requests", receive_mode=mode) as receiver:
        received = receiver.receive_messages(max_message_count=3, max_wait_time=2)
        assert [str(m) for m in received] == ["shard-0", "shard-1", "shard-2"]
        assert [m.sequence_number for m in received] == [1, 2, 3]
        assert peer.messages("requests") == []


def test_abandon_redelivers_until_max_delivery_count_then_dead_letters(
    peer: ServiceBusPeer, sb: ServiceBusClient, requests_sender: ServiceBusSender
) -> None:
    requests_sender.send_messages(ServiceBusMessage("poison"))
    tokens = set()
    with sb.get_queue_receiver("requests") as receiver:
        for attempt in range(3):  # max_delivery_count=3
            [msg] = receiver.receive_messages(max_message_count=1, max_wait_time=2)
            assert (str(msg), msg.delivery_count, msg.sequence_number) == ("poison", attempt, 1)
            tokens.add(msg.lock_token)
            receiver.abandon_message(msg)
        assert len(tokens) == 3  # a new lock each delivery
    assert peer.messages("requests") == []
    [stored] = peer.dead_letters("requests")
    assert (stored.dead_letter_reason, stored.delivery_count) == ("MaxDeliveryCountExceeded", 3)
    with sb.get_queue_receiver("requests", sub_queue=DLQ) as dlq:
        [dead] = dlq.receive_messages(max_message_count=1, max_wait_time=2)
        assert (str(dead), dead.dead_letter_reason) == ("poison", "MaxDeliveryCountExceeded")
        dlq.complete_message(dead)
    assert peer.dead_letters("requests") == []


def test_explicit_dead_letter_keeps_reason_and_description_and_deferral_works(
    peer: ServiceBusPeer, sb: ServiceBusClient, requests_sender: ServiceBusSender
) -> None:
    bad_request = ServiceBusMessage("bad", application_properties={"requestId": "CHG9"})
    requests_sender.send_messages([bad_request, ServiceBusMessage("set aside")])
    with sb.get_queue_receiver("requests") as receiver:
        bad, aside = receiver.receive_messages(max_message_count=2, max_wait_time=2)
        receiver.dead_letter_message(bad, reason="PolicyViolation", error_description="Owner role")
        receiver.defer_message(aside)
        assert [(m.body, m.deferred, m.locked) for m in peer.messages("requests")] == [
            (b"set aside", True, False)
        ]
        # A deferred message is no longer handed out in order.
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.2) == []
        assert aside.sequence_number is not None
        [deferred] = receiver.receive_deferred_messages([aside.sequence_number])
        assert (str(deferred), deferred.sequence_number) == ("set aside", aside.sequence_number)
        receiver.complete_message(deferred)  # settled through the management link
    assert peer.messages("requests") == []
    [stored] = peer.dead_letters("requests")
    assert (stored.dead_letter_reason, stored.dead_letter_description) == ("PolicyViolation", "Owner role")
    with sb.get_queue_receiver("requests", sub_queue=DLQ) as dlq:
        [dead] = dlq.receive_messages(max_message_count=1, max_wait_time=2)
        assert dead.dead_letter_reason == "PolicyViolation"
        assert dead.dead_letter_error_description == "Owner role"
        assert dead.dead_letter_source == "requests"
        assert dead.application_properties == {
            b"requestId": b"CHG9",
            b"DeadLetterReason": b"PolicyViolation",
            b"DeadLetterErrorDescription": b"Owner role",
        }


def test_dead_letters_can_be_listed_with_peek_and_replayed(
    peer: ServiceBusPeer, sb: ServiceBusClient, requests_sender: ServiceBusSender
) -> None:
    # Seeded straight into the sub-queue: explicit dead-lettering is tested above.
    for body, message_id in (("r1", "CHG1"), ("r2", None)):
        peer.inject(
            "requests",
            body,
            message_id=message_id,
            application_properties={"requestId": body},
            dead_letter_reason="TemporaryFailure",
        )
    assert peer.messages("requests") == []
    with sb.get_queue_receiver("requests", sub_queue=DLQ) as dlq:
        # `dlq list`: browse without taking locks.
        listed = dlq.peek_messages(max_message_count=10, sequence_number=1)
        assert [(str(m), m.dead_letter_reason) for m in listed] == [
            ("r1", "TemporaryFailure"),
            ("r2", "TemporaryFailure"),
        ]
        # `dlq replay`: send a copy back to the queue, then complete the dead letter.
        [first] = dlq.receive_messages(max_message_count=1, max_wait_time=2)
        assert first.application_properties is not None
        assert first.application_properties[b"requestId"] == b"r1"
        requests_sender.send_messages(ServiceBusMessage(b"".join(first.body), message_id=first.message_id))
        dlq.complete_message(first)
    assert [m.body for m in peer.dead_letters("requests")] == [b"r2"]
    [replayed] = peer.messages("requests")
    assert (replayed.body, replayed.message_id, replayed.delivery_count) == (b"r1", "CHG1", 0)


def test_an_expired_lock_redelivers_and_the_old_lock_is_lost(
    peer: ServiceBusPeer, sb: ServiceBusClient
) -> None:
    with open_sender(sb, "shortlock") as sender:
        sender.send_messages(ServiceBusMessage("slow"))
    with sb.get_queue_receiver("shortlock") as receiver:
        [msg] = receiver.receive_messages(max_message_count=1, max_wait_time=2)
        time.sleep(0.7)  # lock_duration=0.5
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(msg)
        [again] = receiver.receive_messages(max_message_count=1, max_wait_time=2)
        assert (str(again), again.delivery_count) == ("slow", 1)
        # Renewing keeps the lock past its duration.
        first_expiry = again.locked_until_utc
        assert first_expiry is not None
        for _ in range(2):  # 2 x 0.3 s is past the 0.5 s lock
            time.sleep(0.3)
            assert receiver.renew_message_lock(again) > first_expiry
        assert peer.messages("shortlock")[0].delivery_count == 1
        receiver.complete_message(again)
    assert peer.messages("shortlock") == []


def test_scheduled_messages_wait_for_their_time_and_can_be_cancelled(
    peer: ServiceBusPeer, sb: ServiceBusClient, requests_sender: ServiceBusSender
) -> None:
    with sb.get_queue_receiver("requests") as receiver:  # opened first: opening takes ~0.5 s
        at = datetime.now(UTC) + timedelta(seconds=0.7)
        [kept] = requests_sender.schedule_messages(ServiceBusMessage("follow-up"), at)
        [cancelled] = requests_sender.schedule_messages(ServiceBusMessage("never"), at)
        direct = ServiceBusMessage("sent with a time")
        direct.scheduled_enqueue_time_utc = at
        requests_sender.send_messages(direct)
        assert cancelled == kept + 1
        assert [m.scheduled for m in peer.messages("requests")] == [True, True, True]
        requests_sender.cancel_scheduled_messages(cancelled)
        assert [m.body for m in peer.messages("requests")] == [b"follow-up", b"sent with a time"]
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.2) == []
        received = receiver.receive_messages(max_message_count=2, max_wait_time=3)
        assert datetime.now(UTC) >= at - timedelta(milliseconds=50)
        assert [(str(m), m.sequence_number) for m in received] == [
            ("follow-up", kept),
            ("sent with a time", 3),
        ]
        assert received[0].scheduled_enqueue_time_utc is not None
        assert received[0].enqueued_time_utc is not None
        assert received[0].enqueued_time_utc >= at - timedelta(milliseconds=5)


def test_batches_are_sized_by_the_queue_s_max_message_size(
    peer: ServiceBusPeer, requests_sender: ServiceBusSender
) -> None:
    batch = requests_sender.create_message_batch()
    assert batch.max_size_in_bytes == 256 * 1024  # QueueSpec.max_message_size, as Standard tier
    with pytest.raises(MessageSizeExceededError):
        requests_sender.send_messages(ServiceBusMessage("x" * 300_000))
    assert peer.messages("requests") == []


def test_an_unknown_queue_is_not_found(sb: ServiceBusClient) -> None:
    with pytest.raises(MessagingEntityNotFoundError), open_sender(sb, "nope") as sender:
        sender.send_messages(ServiceBusMessage("x"))
