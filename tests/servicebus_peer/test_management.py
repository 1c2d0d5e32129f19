"""`$management` and `$cbs` request handling, without a network."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from proton import UNDESCRIBED, Array, Data, Message, symbol

from servicebus_peer.management import handle_cbs, handle_management, message_properties
from servicebus_peer.model import Broker, QueueSpec


@pytest.fixture
def broker() -> Broker:
    return Broker([QueueSpec("requests", max_delivery_count=5)])


def request(operation: str, body: dict[str, Any]) -> Message:
    return Message(id="req-1", properties={"operation": operation}, body=body)


def tokens(*values: uuid.UUID) -> Array:
    descriptor: Any = UNDESCRIBED
    return Array(descriptor, Data.UUID, *values)


def test_cbs_accepts_the_token_and_correlates_the_answer() -> None:
    reply = handle_cbs(Message(id="cbs-1", properties={"operation": "put-token"}))
    assert reply.correlation_id == "cbs-1"
    assert message_properties(reply)["status-code"] == 202


def test_update_disposition_settles_by_lock_token(broker: Broker) -> None:
    for payload in (b"a", b"b", b"c"):
        broker.enqueue("requests", payload)
    locked = [broker.receive("requests", owner="c") for _ in range(3)]
    a, b, c = (m.lock_token for m in locked if m is not None)
    assert a and b and c
    cases: list[tuple[str, uuid.UUID, dict[str, str]]] = [
        ("completed", a, {}),
        ("abandoned", b, {}),
        ("suspended", c, {"deadletter-reason": "R", "deadletter-description": "D"}),
    ]
    for status, token, extra in cases:
        body = {"disposition-status": status, "lock-tokens": tokens(token), **extra}
        reply = handle_management(broker, "requests", request("com.microsoft:update-disposition", body), "c")
        assert message_properties(reply)["statusCode"] == 200
    assert [(m.payload, m.delivery_count) for m in broker.messages("requests")] == [(b"b", 1)]
    [dead] = broker.messages("requests/$deadletterqueue")
    assert (dead.payload, dead.dead_letter_reason, dead.dead_letter_description) == (b"c", "R", "D")


def test_errors_carry_the_service_bus_status_and_condition(broker: Broker) -> None:
    lost = handle_management(
        broker, "requests", request("com.microsoft:renew-lock", {"lock-tokens": tokens(uuid.uuid4())}), "c"
    )
    assert message_properties(lost)["statusCode"] == 410
    assert message_properties(lost)["errorCondition"] == symbol("com.microsoft:message-lock-lost")
    unknown = handle_management(broker, "requests", request("com.microsoft:nothing", {}), "c")
    assert message_properties(unknown)["statusCode"] == 400
    missing = handle_management(broker, "nope", request("com.microsoft:peek-message", {}), "c")
    assert message_properties(missing)["statusCode"] == 404


def test_peek_on_an_empty_queue_answers_no_content(broker: Broker) -> None:
    body = {"from-sequence-number": 1, "message-count": 10}
    reply = handle_management(broker, "requests", request("com.microsoft:peek-message", body), "c")
    assert message_properties(reply)["statusCode"] == 204
    assert reply.correlation_id == "req-1"


def test_a_malformed_request_is_answered_not_fatal(broker: Broker) -> None:
    no_session = handle_management(broker, "requests", request("com.microsoft:get-session-state", {}), "c")
    assert message_properties(no_session)["statusCode"] == 400
    assert message_properties(no_session)["errorCondition"] == symbol("com.microsoft:argument-error")
    garbage = request("com.microsoft:schedule-message", {"messages": [{"message": b"not amqp"}]})
    bad_schedule = handle_management(broker, "requests", garbage, "c")
    assert message_properties(bad_schedule)["statusCode"] == 400
    assert broker.messages("requests") == []


def test_receive_by_sequence_number_returns_the_deferred_message_with_its_lock(broker: Broker) -> None:
    seq = broker.enqueue("requests", bytes(Message(body=b"aside").encode()))
    msg = broker.receive("requests", owner="c")
    assert msg is not None and msg.lock_token is not None
    broker.defer(msg.lock_token)
    descriptor: Any = UNDESCRIBED
    body = {"sequence-numbers": Array(descriptor, Data.LONG, seq), "receiver-settle-mode": 1}
    by_number = request("com.microsoft:receive-by-sequence-number", body)
    reply = handle_management(broker, "requests", by_number, "c")
    assert message_properties(reply)["statusCode"] == 200
    answer: Any = reply.body
    [entry] = answer["messages"]
    assert entry["lock-token"] == broker.messages("requests")[0].lock_token
    again = handle_management(broker, "requests", by_number, "c")
    assert message_properties(again)["statusCode"] == 404  # locked now, not available by number
