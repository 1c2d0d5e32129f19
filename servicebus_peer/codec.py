"""AMQP 1.0 message encoding as the Service Bus SDK expects it, on proton's codec.

Messages are kept as the bytes the client sent. On the way out the peer
rewrites only the sections Service Bus owns (header, message annotations and,
for dead-lettered messages, two application properties) and copies the rest
(properties, body, footer) byte for byte, so nothing the sender set is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proton import Data, DataException, Described, Message, MessageException, symbol, timestamp, ulong

from servicebus_peer.model import PeerError, StoredMessage

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_SEQUENCE = 0x76
AMQP_VALUE = 0x77
BODY_SECTIONS = (DATA, AMQP_SEQUENCE, AMQP_VALUE)

SCHEDULED_ENQUEUE_TIME = symbol("x-opt-scheduled-enqueue-time")


class CodecError(PeerError):
    """The bytes are not an AMQP message."""

    condition = "amqp:decode-error"


@dataclass(frozen=True)
class Section:
    code: int
    raw: bytes
    value: Any


@dataclass(frozen=True)
class MessageInfo:
    """What the broker needs to know about a message without decoding it fully."""

    message_id: str | None
    session_id: str | None
    ttl: float | None
    scheduled_at: float | None


def split_sections(raw: bytes) -> list[Section]:
    """Cut an encoded message into its sections (each a described value)."""
    sections: list[Section] = []
    rest = bytes(raw)
    while rest:
        data = Data()
        try:
            used = data.decode(rest)
        except DataException as exc:
            raise CodecError(f"not an AMQP message: {exc}") from exc
        data.rewind()
        data.next()
        value = data.get_object()
        if not isinstance(value, Described) or not isinstance(value.descriptor, int):
            raise CodecError("AMQP message sections must be described by a numeric code")
        content: Any = value.value
        if isinstance(content, memoryview):
            # proton's memoryview points into the Data object, which is freed with it.
            content = bytes(content)
        sections.append(Section(int(value.descriptor), rest[:used], content))
        rest = rest[used:]
    return sections


def decode_message(raw: bytes) -> Message:
    # proton's Message.decode accepts garbage silently; check the sections first.
    if not split_sections(raw):
        raise CodecError("an empty transfer is not an AMQP message")
    message = Message()
    try:
        message.decode(raw)
    except (DataException, MessageException) as exc:
        raise CodecError(f"not an AMQP message: {exc}") from exc
    return message


def _looks_like_message(raw: bytes) -> bool:
    # An encoded section starts with 0x00 (described), 0x53 (smallulong) and a section code.
    return len(raw) > 3 and raw[0] == 0x00 and raw[1] == 0x53 and HEADER <= raw[2] <= 0x78


def unbatch(raw: bytes) -> list[bytes]:
    """A batch (format 0x80013700) carries one encoded message per data section.

    proton does not expose the transfer's message format, so a batch is
    recognised by its shape: every body section is a data section holding an
    encoded AMQP message with a body. Anything else is a single message.
    """
    sections = split_sections(raw)
    body = [s for s in sections if s.code in BODY_SECTIONS]
    if not body or any(s.code != DATA or not _looks_like_message(bytes(s.value)) for s in body):
        return [raw]
    inner = [bytes(s.value) for s in body]
    try:
        if all(any(s.code in BODY_SECTIONS for s in split_sections(m)) for m in inner):
            return inner
    except CodecError:
        pass
    return [raw]


def _section(sections: list[Section], code: int) -> Any:
    return next((s.value for s in sections if s.code == code), None)


def _field(values: Any, index: int) -> Any:
    return values[index] if isinstance(values, list) and len(values) > index else None


def read_info(raw: bytes) -> MessageInfo:
    sections = split_sections(raw)
    props = _section(sections, PROPERTIES)
    header = _section(sections, HEADER)
    annotations = _section(sections, MESSAGE_ANNOTATIONS) or {}
    message_id = _field(props, 0)
    ttl_ms = _field(header, 2)
    scheduled = annotations.get(SCHEDULED_ENQUEUE_TIME)
    return MessageInfo(
        message_id=None if message_id is None else str(message_id),
        session_id=_field(props, 10),
        ttl=ttl_ms / 1000.0 if ttl_ms else None,
        scheduled_at=int(scheduled) / 1000.0 if scheduled is not None else None,
    )


def encode_value(code: int, value: Any) -> bytes:
    data = Data()
    data.put_object(Described(ulong(code), value))
    return bytes(data.encode())


def encode_header(original: Any, delivery_count: int) -> bytes:
    """Write every header field, so that delivery-count 0 is present (the SDK reads it as is)."""
    durable = bool(_field(original, 0))
    priority = _field(original, 1)
    ttl = _field(original, 2)
    data = Data()
    data.put_described()
    data.enter()
    data.put_ulong(HEADER)
    data.put_list()
    data.enter()
    data.put_bool(durable)
    data.put_ubyte(4 if priority is None else int(priority))
    if ttl is None:
        data.put_null()
    else:
        data.put_uint(int(ttl))
    data.put_bool(bool(_field(original, 3)))
    data.put_uint(delivery_count)
    data.exit()
    data.exit()
    return bytes(data.encode())


def ms(seconds: float) -> timestamp:
    return timestamp(round(seconds * 1000))


def encode_for_delivery(msg: StoredMessage, *, with_lock: bool) -> bytes:
    """The message as Service Bus hands it out: broker annotations added, client sections untouched."""
    sections = split_sections(msg.payload)
    annotations: dict[Any, Any] = dict(_section(sections, MESSAGE_ANNOTATIONS) or {})
    annotations[symbol("x-opt-sequence-number")] = int(msg.sequence_number)
    annotations[symbol("x-opt-enqueued-time")] = ms(msg.enqueued_time)
    if with_lock and msg.locked_until is not None:
        annotations[symbol("x-opt-locked-until")] = ms(msg.locked_until)
    if msg.dead_letter_source is not None:
        annotations[symbol("x-opt-deadletter-source")] = msg.dead_letter_source

    app_props: dict[Any, Any] = dict(_section(sections, APPLICATION_PROPERTIES) or {})
    app_props.update(msg.extra_properties)
    if msg.dead_letter_reason is not None:
        app_props["DeadLetterReason"] = msg.dead_letter_reason
    if msg.dead_letter_description is not None:
        app_props["DeadLetterErrorDescription"] = msg.dead_letter_description

    out = [encode_header(_section(sections, HEADER), msg.delivery_count)]
    out.append(encode_value(MESSAGE_ANNOTATIONS, annotations))
    out.extend(s.raw for s in sections if s.code == PROPERTIES)
    if app_props:
        out.append(encode_value(APPLICATION_PROPERTIES, app_props))
    # Body sections and the footer, in their original order and encoding.
    out.extend(s.raw for s in sections if s.code > APPLICATION_PROPERTIES)
    return b"".join(out)
