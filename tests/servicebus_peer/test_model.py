"""The queue model on its own: no AMQP, a fake clock, every rule in milliseconds."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from servicebus_peer import model
from servicebus_peer.model import (
    Broker,
    MessageLockLostError,
    MessageNotFoundError,
    MessageSizeExceededError,
    NoSessionAvailableError,
    NotAllowedError,
    QueueSpec,
    SessionCannotBeLockedError,
    SessionLockLostError,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> Broker:
    return Broker(
        [
            QueueSpec("requests", max_delivery_count=2, lock_duration=10.0),
            QueueSpec("reconcile", requires_session=True, max_delivery_count=2, lock_duration=10.0),
        ],
        clock=clock,
    )


def test_the_model_does_not_depend_on_amqp() -> None:
    tree = ast.parse(Path(model.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.startswith("proton") for name in imported)


def test_messages_come_out_in_sequence_order_with_enqueue_time(broker: Broker, clock: FakeClock) -> None:
    first = broker.enqueue("requests", b"1")
    clock.now += 1
    second = broker.enqueue("Requests", b"2")  # entity names are case-insensitive
    got = [broker.receive("requests", owner="c") for _ in range(3)]
    assert [m.sequence_number if m else None for m in got] == [first, second, None]
    assert [m.enqueued_time for m in got if m] == [1_000.0, 1_001.0]


def test_abandon_counts_deliveries_and_dead_letters_at_the_limit(broker: Broker) -> None:
    broker.enqueue("requests", b"x")
    for expected_count in (0, 1):
        msg = broker.receive("requests", owner="c")
        assert msg is not None and msg.lock_token is not None
        assert msg.delivery_count == expected_count
        broker.abandon(msg.lock_token, {"attempt": expected_count})
    assert broker.messages("requests") == []
    [dead] = broker.messages("requests/$DeadLetterQueue")
    assert (dead.dead_letter_reason, dead.delivery_count) == ("MaxDeliveryCountExceeded", 2)
    assert dead.extra_properties == {"attempt": 1}


def test_an_expired_lock_means_redelivery_and_a_late_settle_fails(broker: Broker, clock: FakeClock) -> None:
    broker.enqueue("requests", b"x")
    msg = broker.receive("requests", owner="c")
    assert msg is not None and msg.lock_token is not None
    clock.now += 5
    assert broker.renew_lock(msg.lock_token) == clock.now + 10
    clock.now += 9.9
    broker.tick()
    assert broker.messages("requests")[0].lock_token is not None  # renewed, still locked
    clock.now += 0.2
    broker.tick()
    with pytest.raises(MessageLockLostError):
        broker.complete(msg.lock_token)
    again = broker.receive("requests", owner="c")
    assert again is not None and again.delivery_count == 1


def test_dead_letter_records_reason_and_source(broker: Broker) -> None:
    broker.enqueue("requests", b"x")
    msg = broker.receive("requests", owner="c")
    assert msg is not None and msg.lock_token is not None
    broker.dead_letter(msg.lock_token, "Bad", "very bad")
    [dead] = broker.messages("requests/$deadletterqueue")
    assert (dead.dead_letter_reason, dead.dead_letter_description, dead.dead_letter_source) == (
        "Bad",
        "very bad",
        "requests",
    )
    with pytest.raises(NotAllowedError):
        broker.enqueue("requests/$deadletterqueue", b"y")


def test_receive_and_delete_removes_immediately(broker: Broker) -> None:
    broker.enqueue("requests", b"x")
    msg = broker.receive("requests", owner="c", peek_lock=False)
    assert msg is not None and msg.lock_token is None
    assert broker.messages("requests") == []


def test_scheduled_messages_appear_at_their_time_or_are_cancelled(broker: Broker, clock: FakeClock) -> None:
    later = broker.enqueue("requests", b"later", scheduled_at=clock.now + 5)
    gone = broker.enqueue("requests", b"gone", scheduled_at=clock.now + 5)
    broker.cancel_scheduled("requests", [gone])
    with pytest.raises(MessageNotFoundError):
        broker.cancel_scheduled("requests", [gone])
    assert broker.receive("requests", owner="c") is None
    assert [m.sequence_number for m in broker.peek("requests", 1, 10)] == [later]  # peek sees scheduled ones
    clock.now += 5
    broker.tick()
    msg = broker.receive("requests", owner="c")
    assert msg is not None and msg.sequence_number == later and not msg.scheduled
    assert msg.enqueued_time == clock.now


def test_time_to_live_drops_expired_messages(broker: Broker, clock: FakeClock) -> None:
    broker.enqueue("requests", b"short", ttl=1.0)
    broker.enqueue("requests", b"long", ttl=100.0)
    clock.now += 2
    broker.tick()
    assert [m.payload for m in broker.messages("requests")] == [b"long"]


def test_peek_starts_at_a_sequence_number_and_does_not_lock(broker: Broker) -> None:
    for body in (b"a", b"b", b"c"):
        broker.enqueue("requests", body)
    assert [m.payload for m in broker.peek("requests", 2, 5)] == [b"b", b"c"]
    assert [m.payload for m in broker.peek("requests", 1, 1)] == [b"a"]
    assert all(m.lock_token is None for m in broker.messages("requests"))


def test_session_queue_requires_a_session_id(broker: Broker) -> None:
    with pytest.raises(NotAllowedError, match="SessionId"):
        broker.enqueue("reconcile", b"x")


def test_next_available_session_skips_locked_ones_and_keeps_fifo(broker: Broker) -> None:
    broker.enqueue("reconcile", b"a1", session_id="a")
    broker.enqueue("reconcile", b"b1", session_id="b")
    broker.enqueue("reconcile", b"a2", session_id="a")
    assert broker.accept_session("reconcile", None, owner="one").session_id == "a"
    assert broker.accept_session("reconcile", None, owner="two").session_id == "b"
    with pytest.raises(NoSessionAvailableError):
        broker.accept_session("reconcile", None, owner="three")
    with pytest.raises(SessionCannotBeLockedError):
        broker.accept_session("reconcile", "a", owner="three")
    got = [broker.receive("reconcile", owner="one", session_id="a") for _ in range(3)]
    assert [m.payload if m else None for m in got] == [b"a1", b"a2", None]
    with pytest.raises(SessionLockLostError):
        broker.receive("reconcile", owner="two", session_id="a")


def test_session_lock_expiry_and_release_put_messages_back(broker: Broker, clock: FakeClock) -> None:
    broker.enqueue("reconcile", b"a1", session_id="a")
    broker.accept_session("reconcile", "a", owner="one")
    assert broker.receive("reconcile", owner="one", session_id="a") is not None
    clock.now += 5
    assert broker.renew_session_lock("reconcile", "a", owner="one") == clock.now + 10
    clock.now += 10
    broker.tick()
    with pytest.raises(SessionLockLostError):
        broker.renew_session_lock("reconcile", "a", owner="one")
    broker.accept_session("reconcile", "a", owner="two")
    msg = broker.receive("reconcile", owner="two", session_id="a")
    assert msg is not None and msg.delivery_count == 1
    broker.enqueue("reconcile", b"a2", session_id="a")
    broker.release_session("reconcile", "a", owner="two")
    # The unsettled a1 was delivered twice (max_delivery_count=2): dead-lettered; a2 is free again.
    assert [m.payload for m in broker.messages("reconcile/$deadletterqueue")] == [b"a1"]
    assert [m.lock_token for m in broker.messages("reconcile")] == [None]
    assert broker.accept_session("reconcile", None, owner="three").session_id == "a"


def test_session_state_belongs_to_the_lock_holder(broker: Broker) -> None:
    broker.enqueue("reconcile", b"a1", session_id="a")
    broker.accept_session("reconcile", "a", owner="one")
    broker.set_session_state("reconcile", "a", "one", b"state")
    assert broker.get_session_state("reconcile", "a", "one") == b"state"
    with pytest.raises(SessionLockLostError):
        broker.get_session_state("reconcile", "a", "two")
    broker.release_session("reconcile", "a", owner="one")
    broker.accept_session("reconcile", "a", owner="two")
    assert broker.get_session_state("reconcile", "a", "two") == b"state"  # state outlives the lock


def test_reset_forgets_everything(broker: Broker) -> None:
    broker.enqueue("requests", b"x")
    broker.enqueue("reconcile", b"y", session_id="s")
    broker.accept_session("reconcile", "s", owner="one")
    broker.reset()
    assert broker.messages("requests") == [] and broker.session_states("reconcile") == {}
    assert broker.enqueue("requests", b"z") == 1


def test_messages_over_the_size_limit_are_refused(clock: FakeClock) -> None:
    broker = Broker([QueueSpec("small", max_message_size=10)], clock=clock)
    broker.check_size("small", 10)
    with pytest.raises(MessageSizeExceededError):
        broker.check_size("small", 11)


def test_deferred_messages_come_back_only_by_sequence_number(broker: Broker) -> None:
    first = broker.enqueue("requests", b"later")
    broker.enqueue("requests", b"next")
    msg = broker.receive("requests", owner="c")
    assert msg is not None and msg.lock_token is not None
    broker.defer(msg.lock_token)
    taken = broker.receive("requests", owner="c")
    assert taken is not None and taken.payload == b"next"
    assert broker.receive("requests", owner="c") is None
    [again] = broker.receive_deferred("requests", [first], owner="c")
    assert again.lock_token is not None and again.payload == b"later"
    with pytest.raises(MessageNotFoundError):  # already locked
        broker.receive_deferred("requests", [first], owner="c")
    broker.complete(again.lock_token)
    with pytest.raises(MessageNotFoundError):
        broker.receive_deferred("requests", [first], owner="c")
