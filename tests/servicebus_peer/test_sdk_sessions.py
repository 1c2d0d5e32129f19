"""Sessions on a queue with requires_session, through the real SDK (sync)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient, ServiceBusMessage, ServiceBusSender
from azure.servicebus.exceptions import (
    OperationTimeoutError,
    ServiceBusError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)

from servicebus_peer import ServiceBusPeer


def send(sender: ServiceBusSender, *pairs: tuple[str, str]) -> None:
    sender.send_messages([ServiceBusMessage(body, session_id=session) for session, body in pairs])


def test_next_available_skips_locked_sessions_and_keeps_fifo_within_a_session(
    peer: ServiceBusPeer, sb: ServiceBusClient, reconcile_sender: ServiceBusSender
) -> None:
    send(reconcile_sender, ("app-a", "a1"), ("app-b", "b1"), ("app-a", "a2"))
    with sb.get_queue_receiver("reconcile", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as first:
        assert first.session.session_id == "app-a"  # the session of the oldest message
        with sb.get_queue_receiver("reconcile", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as second:
            assert second.session.session_id == "app-b"  # app-a is locked by `first`
            received = first.receive_messages(max_message_count=3, max_wait_time=1)
            assert [(str(m), m.session_id) for m in received] == [("a1", "app-a"), ("a2", "app-a")]
            for msg in received:
                first.complete_message(msg)
            taken = sb.get_queue_receiver("reconcile", session_id="app-a")
            with pytest.raises(SessionCannotBeLockedError), taken:
                pass
            [b1] = second.receive_messages(max_message_count=1, max_wait_time=1)
            second.complete_message(b1)
    assert peer.messages("reconcile") == []
    with (
        pytest.raises(OperationTimeoutError),
        sb.get_queue_receiver("reconcile", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=0.5),
    ):
        pass  # no session gets messages within max_wait_time


def test_next_available_waits_for_a_session_to_get_messages(
    peer: ServiceBusPeer, sb: ServiceBusClient, reconcile_sender: ServiceBusSender
) -> None:
    late = threading.Timer(0.5, lambda: send(reconcile_sender, ("late", "l1")))
    late.start()
    started = time.monotonic()
    waiting = sb.get_queue_receiver("reconcile", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=3)
    try:
        with waiting as receiver:
            assert receiver.session.session_id == "late"
            assert time.monotonic() - started >= 0.5
    finally:
        late.join()


def test_session_state_lock_renewal_and_a_scheduled_follow_up(
    peer: ServiceBusPeer, sb: ServiceBusClient, shortsession_sender: ServiceBusSender
) -> None:
    send(shortsession_sender, ("s", "step-1"))
    follow_up_at = datetime.now(UTC) + timedelta(seconds=0.5)
    shortsession_sender.schedule_messages(ServiceBusMessage("retry-after", session_id="s"), follow_up_at)
    with sb.get_queue_receiver("shortsession", session_id="s") as receiver:
        session = receiver.session
        assert session.get_state() is None
        session.set_state(b"checkpoint-1")
        assert session.get_state() == b"checkpoint-1"
        assert peer.session_state("shortsession", "s") == b"checkpoint-1"
        [msg] = receiver.receive_messages(max_message_count=1, max_wait_time=1)
        first_expiry = session.locked_until_utc
        assert first_expiry is not None
        for _ in range(3):  # 3 x 0.3 s is well past the 0.6 s session lock
            time.sleep(0.3)
            assert session.renew_lock() > first_expiry
        receiver.complete_message(msg)
        # The scheduled follow-up arrives in the session that is still held.
        [follow_up] = receiver.receive_messages(max_message_count=1, max_wait_time=1)
        assert (str(follow_up), follow_up.session_id) == ("retry-after", "s")
        receiver.complete_message(follow_up)
    assert peer.messages("shortsession") == []


def test_a_session_lock_that_expires_frees_the_session_and_its_messages(
    peer: ServiceBusPeer, sb: ServiceBusClient, shortsession_sender: ServiceBusSender
) -> None:
    send(shortsession_sender, ("s", "job"))
    with sb.get_queue_receiver("shortsession", session_id="s") as stale:
        [msg] = stale.receive_messages(max_message_count=1, max_wait_time=1)
        time.sleep(0.8)  # session lock_duration=0.6, not renewed
        with pytest.raises(SessionLockLostError):
            stale.complete_message(msg)
        with sb.get_queue_receiver("shortsession", session_id="s") as fresh:
            [again] = fresh.receive_messages(max_message_count=1, max_wait_time=1)
            assert (str(again), again.delivery_count) == ("job", 1)
            fresh.complete_message(again)


def test_closing_a_session_receiver_releases_its_unsettled_messages(
    peer: ServiceBusPeer, sb: ServiceBusClient, reconcile_sender: ServiceBusSender
) -> None:
    send(reconcile_sender, ("app-a", "a1"))
    with sb.get_queue_receiver("reconcile", session_id="app-a") as receiver:
        assert len(receiver.receive_messages(max_message_count=1, max_wait_time=1)) == 1
    assert peer.wait_until(lambda: not peer.messages("reconcile")[0].locked, timeout=2)
    with sb.get_queue_receiver("reconcile", session_id="app-a") as receiver:
        [msg] = receiver.receive_messages(max_message_count=1, max_wait_time=1)
        assert (str(msg), msg.delivery_count) == ("a1", 1)
        receiver.dead_letter_message(msg, reason="Unreconcilable")
    # The dead-letter sub-queue of a session queue is read without a session.
    [dead] = peer.dead_letters("reconcile")
    assert (dead.session_id, dead.dead_letter_reason) == ("app-a", "Unreconcilable")


def test_a_session_queue_refuses_messages_and_receivers_without_a_session(
    peer: ServiceBusPeer, sb: ServiceBusClient, reconcile_sender: ServiceBusSender
) -> None:
    with pytest.raises(ServiceBusError, match="SessionId was not set"):
        reconcile_sender.send_messages(ServiceBusMessage("no session"))
    with pytest.raises(ServiceBusError, match="SessionId was not set"):
        # A batch is accepted whole or not at all.
        batch = [ServiceBusMessage("ok", session_id="x"), ServiceBusMessage("no session")]
        reconcile_sender.send_messages(batch)
    assert peer.messages("reconcile") == []
    without_session = sb.get_queue_receiver("reconcile")
    with pytest.raises(ServiceBusError, match="non-sessionful"), without_session:
        without_session.receive_messages(max_wait_time=0.2)
