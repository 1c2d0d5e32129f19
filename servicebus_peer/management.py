"""Request/response operations: CBS put-token on `$cbs` and `<entity>/$management`.

Each request is an AMQP message with `operation` in its application
properties; the answer carries `statusCode` (`status-code` on `$cbs`) and the
request's message id as correlation id. Operations map onto :class:`Broker`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from proton import UNDESCRIBED, Array, Data, Message, symbol

from servicebus_peer import codec
from servicebus_peer.model import (
    Broker,
    EntityNotFoundError,
    MessageLockLostError,
    MessageNotFoundError,
    NotAllowedError,
    PeerError,
    SessionLockLostError,
)

MANAGEMENT_SUFFIX = "/$management"
CBS_NODE = "$cbs"

Body = dict[str, Any]
Operation = Callable[[Broker, str, Body, str], Body]


class ArgumentError(PeerError):
    condition = "com.microsoft:argument-error"


_STATUS_BY_ERROR: dict[type[PeerError], int] = {
    ArgumentError: 400,
    codec.CodecError: 400,
    EntityNotFoundError: 404,
    MessageNotFoundError: 404,
    MessageLockLostError: 410,
    SessionLockLostError: 410,
    NotAllowedError: 400,
}


def _elements(value: Any) -> list[Any]:
    """proton decodes AMQP arrays as `Array` and lists as `list`; accept both."""
    if isinstance(value, Array):
        return list(value.elements)
    return list(value or [])


def _array(amqp_type: int, values: list[Any]) -> Array:
    descriptor: Any = UNDESCRIBED  # proton's annotation says PythonAMQPData; the constant is what it wants
    return Array(descriptor, amqp_type, *values)


def message_properties(message: Message) -> dict[str, Any]:
    """Application properties of a decoded message (proton's annotation claims they are always None)."""
    found: Any = message.properties
    return {str(k): v for k, v in (found or {}).items()}


def _reply(request: Message, properties: dict[str, Any], body: Any = None) -> Message:
    return Message(correlation_id=request.id, properties=properties, body=body)


def _tokens(body: Body) -> list[uuid.UUID]:
    return [t if isinstance(t, uuid.UUID) else uuid.UUID(str(t)) for t in _elements(body.get("lock-tokens"))]


def _renew_lock(broker: Broker, path: str, body: Body, owner: str) -> Body:
    expirations = [codec.ms(broker.renew_lock(token)) for token in _tokens(body)]
    return {"expirations": _array(Data.TIMESTAMP, expirations)}


def _schedule(broker: Broker, path: str, body: Body, owner: str) -> Body:
    sequence_numbers = []
    for entry in _elements(body.get("messages")):
        raw = bytes(entry["message"])
        broker.check_size(path, len(raw))
        info = codec.read_info(raw)
        seq = broker.enqueue(
            path,
            raw,
            message_id=info.message_id,
            session_id=entry.get("session-id") or info.session_id,
            ttl=info.ttl,
            scheduled_at=info.scheduled_at,
        )
        sequence_numbers.append(seq)
    return {"sequence-numbers": _array(Data.LONG, sequence_numbers)}


def _cancel(broker: Broker, path: str, body: Body, owner: str) -> Body:
    broker.cancel_scheduled(path, [int(n) for n in _elements(body.get("sequence-numbers"))])
    return {}


def _peek(broker: Broker, path: str, body: Body, owner: str) -> Body:
    found = broker.peek(
        path,
        int(body.get("from-sequence-number", 1)),
        int(body.get("message-count", 1)),
        body.get("session-id"),
    )
    return {"messages": [{"message": codec.encode_for_delivery(m, with_lock=False)} for m in found]}


def _update_disposition(broker: Broker, path: str, body: Body, owner: str) -> Body:
    # Used by the SDK when the receive link is gone but the lock is still valid.
    status = body.get("disposition-status")
    props: dict[str, object] = {str(k): v for k, v in (body.get("properties-to-modify") or {}).items()}
    for token in _tokens(body):
        if status == "completed":
            broker.complete(token)
        elif status == "abandoned":
            broker.abandon(token, props)
        elif status == "defered":  # sic: the SDK's spelling
            broker.defer(token)
        elif status == "suspended":
            broker.dead_letter(
                token, body.get("deadletter-reason"), body.get("deadletter-description"), props
            )
        else:
            raise NotAllowedError(f"Disposition '{status}' is not supported by the local peer.")
    return {}


def _receive_by_sequence_number(broker: Broker, path: str, body: Body, owner: str) -> Body:
    # receiver-settle-mode 0 ("first") is RECEIVE_AND_DELETE, 1 ("second") is PEEK_LOCK.
    peek_lock = int(body.get("receiver-settle-mode", 1)) == 1
    sequence_numbers = [int(n) for n in _elements(body.get("sequence-numbers"))]
    found = broker.receive_deferred(
        path, sequence_numbers, owner=owner, session_id=body.get("session-id"), peek_lock=peek_lock
    )
    entries = []
    for msg in found:
        entry: dict[str, Any] = {"message": codec.encode_for_delivery(msg, with_lock=peek_lock)}
        if msg.lock_token is not None:
            entry["lock-token"] = msg.lock_token
        entries.append(entry)
    return {"messages": entries}


def _renew_session_lock(broker: Broker, path: str, body: Body, owner: str) -> Body:
    return {"expiration": codec.ms(broker.renew_session_lock(path, body["session-id"], owner))}


def _get_session_state(broker: Broker, path: str, body: Body, owner: str) -> Body:
    state = broker.get_session_state(path, body["session-id"], owner)
    return {"session-state": state}


def _set_session_state(broker: Broker, path: str, body: Body, owner: str) -> Body:
    state = body.get("session-state")
    broker.set_session_state(path, body["session-id"], owner, None if state is None else bytes(state))
    return {}


OPERATIONS: dict[str, Operation] = {
    "com.microsoft:renew-lock": _renew_lock,
    "com.microsoft:schedule-message": _schedule,
    "com.microsoft:cancel-scheduled-message": _cancel,
    "com.microsoft:peek-message": _peek,
    "com.microsoft:update-disposition": _update_disposition,
    "com.microsoft:receive-by-sequence-number": _receive_by_sequence_number,
    "com.microsoft:renew-session-lock": _renew_session_lock,
    "com.microsoft:get-session-state": _get_session_state,
    "com.microsoft:set-session-state": _set_session_state,
}


def handle_cbs(request: Message) -> Message:
    """Accept every token: the peer is for loopback tests, not for checking signatures."""
    return _reply(request, {"status-code": 202, "status-description": "Accepted"})


def handle_management(broker: Broker, path: str, request: Message, owner: str) -> Message:
    """Run one `$management` operation; errors become the status codes Service Bus uses."""
    props = message_properties(request)
    operation = OPERATIONS.get(str(props.get("operation")))
    try:
        if operation is None:
            raise NotAllowedError(f"Operation '{props.get('operation')}' is not supported by the local peer.")
        body = request.body if isinstance(request.body, dict) else {}
        try:
            result = operation(broker, path, body, owner)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A malformed request body: answer it, do not let it take the peer down.
            raise ArgumentError(f"Malformed '{props.get('operation')}' request: {exc!r}") from exc
    except PeerError as exc:
        status = _STATUS_BY_ERROR.get(type(exc), 500)
        error = {"statusCode": status, "statusDescription": str(exc), "errorCondition": symbol(exc.condition)}
        return _reply(request, error)
    if operation is _peek and not result["messages"]:
        return _reply(request, {"statusCode": 204, "statusDescription": "No messages"})
    return _reply(request, {"statusCode": 200, "statusDescription": "OK"}, result)
