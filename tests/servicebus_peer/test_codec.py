"""Message encoding: batches split, broker sections written the way the SDK reads them."""

from __future__ import annotations

import pytest
from proton import Message, symbol

from servicebus_peer import codec
from servicebus_peer.model import StoredMessage


def encoded(body: bytes, **fields: object) -> bytes:
    return bytes(Message(body=body, **fields).encode())


def test_a_batch_is_split_into_its_messages_and_a_plain_message_is_not() -> None:
    one, two = encoded(b"one", id="1"), encoded(b"two", id="2")
    batch = codec.encode_value(codec.DATA, one) + codec.encode_value(codec.DATA, two)
    assert codec.unbatch(batch) == [one, two]
    plain = encoded(b"just bytes")
    assert codec.unbatch(plain) == [plain]


def test_read_info_finds_ids_ttl_and_schedule() -> None:
    message = Message(body=b"x", id="m-1", group_id="session-1", ttl=30.0)
    message.annotations = {symbol("x-opt-scheduled-enqueue-time"): codec.ms(1234.5)}
    info = codec.read_info(bytes(message.encode()))
    assert info == codec.MessageInfo(message_id="m-1", session_id="session-1", ttl=30.0, scheduled_at=1234.5)


def test_delivery_encoding_writes_the_full_header_and_broker_annotations() -> None:
    payload = encoded(b"body", id="m-1", properties={"k": "v"})
    stored = StoredMessage(
        sequence_number=7,
        payload=payload,
        enqueued_time=100.0,
        locked_until=130.0,
        dead_letter_reason="Why",
        dead_letter_source="requests",
    )
    out = codec.encode_for_delivery(stored, with_lock=True)
    sections = codec.split_sections(out)
    header = sections[0]
    assert header.code == codec.HEADER
    assert header.value == [False, 4, None, False, 0]  # delivery-count 0 present, as the SDK needs
    decoded = Message()
    decoded.decode(out)
    assert decoded.body == b"body" and decoded.id == "m-1"
    assert decoded.annotations is not None
    assert decoded.annotations[symbol("x-opt-sequence-number")] == 7
    assert decoded.annotations[symbol("x-opt-enqueued-time")] == 100_000
    assert decoded.annotations[symbol("x-opt-locked-until")] == 130_000
    assert decoded.annotations[symbol("x-opt-deadletter-source")] == "requests"
    props: dict[str, object] = dict(decoded.properties or {})
    assert props == {"k": "v", "DeadLetterReason": "Why"}
    peeked = Message()
    peeked.decode(codec.encode_for_delivery(stored, with_lock=False))
    assert peeked.annotations is not None
    assert symbol("x-opt-locked-until") not in peeked.annotations


def test_bytes_that_are_not_a_message_raise_a_codec_error() -> None:
    with pytest.raises(codec.CodecError):
        codec.split_sections(b"not amqp")
    with pytest.raises(codec.CodecError):
        codec.decode_message(b"\x00\x53")
