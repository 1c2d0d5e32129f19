"""The thin proton layer: AMQP links, transfers and dispositions onto :class:`Broker`.

Link roles, seen from the peer:
- the client's sender to `<queue>` is our receiver: each transfer is enqueued;
- the client's receiver from `<queue>` (or its `$DeadLetterQueue`) is our
  sender: we push messages while it has credit (`_pump`), and its outcomes
  (accepted/modified/rejected) complete, abandon or dead-letter the lock;
- a NEXT_AVAILABLE session receiver's attach is held until a session has
  messages or its wait runs out (`_accept_waiting`);
- `$cbs` and `<queue>/$management` come as a pair of links; requests arrive on
  one and answers go back on the other (matched by address).

A timer (`tick_interval`) applies lock expiry and schedules and pushes newly
available messages; all state lives in the broker, this class only routes.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from proton import (
    Condition,
    Connection,
    Delivery,
    Event,
    Handler,
    Link,
    Receiver,
    Sender,
    Terminus,
    symbol,
)
from proton.handlers import Handshaker

from servicebus_peer import codec
from servicebus_peer.management import CBS_NODE, MANAGEMENT_SUFFIX, handle_cbs, handle_management
from servicebus_peer.model import (
    Broker,
    NoSessionAvailableError,
    NotAllowedError,
    PeerError,
    SessionLockLostError,
    SessionState,
)

SESSION_FILTER = symbol("com.microsoft:session-filter")
LOCKED_UNTIL_UTC = symbol("com.microsoft:locked-until-utc")
# .NET ticks (100 ns) at the Unix epoch: the SDK reads the session lock expiry in ticks.
DOTNET_TICKS_AT_EPOCH = 621355968000000000
INCOMING_CREDIT = 100
# The SDK sends its NEXT_AVAILABLE wait (ms) as this attach property; without it Service Bus
# waits its default operation timeout for a session to get messages.
OPERATION_TIMEOUT = symbol("com.microsoft:timeout")
DEFAULT_SESSION_WAIT = 60.0


def entity_path(address: str | None) -> str:
    """`amqps://host:port/requests` or `requests` -> `requests`."""
    address = address or ""
    if "://" in address:
        address = address.split("://", 1)[1]
        address = address.split("/", 1)[1] if "/" in address else ""
    return address.strip("/")


@dataclass
class _Consumer:
    """A client receiver we deliver to."""

    link: Sender
    path: str
    owner: str
    session_id: str | None
    peek_lock: bool


@dataclass
class _WaitingReceiver:
    """A NEXT_AVAILABLE session receiver whose attach is held until a session has messages."""

    link: Sender
    path: str
    owner: str
    peek_lock: bool
    deadline: float


class _Handshaker(Handshaker):
    """Opens connections and sessions; links are opened (or held, or refused) by PeerHandler."""

    @staticmethod
    def on_link_remote_open(event: Event) -> None:
        pass


class PeerHandler(Handler):
    """Dispatches proton events; all queue semantics live in the broker."""

    def __init__(self, broker: Broker, stop: threading.Event, tick_interval: float = 0.05) -> None:
        super().__init__()
        self.handlers = [_Handshaker()]
        self.broker = broker
        self._stop = stop
        self._tick_interval = tick_interval
        self._consumers: list[_Consumer] = []
        self._waiting: list[_WaitingReceiver] = []
        self._reply_links: dict[tuple[str, str], Sender] = {}
        self._lock_tokens: dict[Delivery, uuid.UUID] = {}
        self._owners: dict[Connection, str] = {}
        self._owner_ids = itertools.count(1)

    # ------------------------------------------------------------------ timer
    def on_reactor_init(self, event: Event) -> None:
        event.container.schedule(self._tick_interval, self)

    def on_timer_task(self, event: Event) -> None:
        if self._stop.is_set():
            event.container.stop()
            return
        self.broker.tick()
        self._pump_all()
        event.container.schedule(self._tick_interval, self)

    # ------------------------------------------------------------------ connections
    def _owner(self, connection: Connection) -> str:
        # One owner per AMQP connection: the SDK opens one per sender/receiver, and
        # session management requests share the receiver's connection.
        name: str | None = self._owners.get(connection)
        if name is None:
            name = f"connection-{next(self._owner_ids)}"
            self._owners[connection] = name
        return name

    def on_connection_remote_close(self, event: Event) -> None:
        connection = event.connection
        if connection is not None:
            self._forget_connection(connection)

    def on_transport_closed(self, event: Event) -> None:
        connection = event.connection
        if connection is not None:
            self._forget_connection(connection)

    def _forget_connection(self, connection: Connection) -> None:
        for consumer in [c for c in self._consumers if c.link.connection == connection]:
            self._drop_consumer(consumer)
        self._waiting = [w for w in self._waiting if w.link.connection != connection]
        for key in [k for k, link in self._reply_links.items() if link.connection == connection]:
            del self._reply_links[key]
        self._owners.pop(connection, None)

    # ------------------------------------------------------------------ attach
    def on_link_remote_open(self, event: Event) -> None:
        link = event.link
        if link is None:
            return
        try:
            if isinstance(link, Receiver):
                self._attach_incoming(link)
            else:
                self._attach_outgoing(link)
        except PeerError as exc:
            self._refuse(link, exc)

    def _attach_incoming(self, link: Receiver) -> None:
        address = entity_path(link.remote_target.address)
        if address != CBS_NODE:
            entity = self.broker.entity(address.removesuffix(MANAGEMENT_SUFFIX))
            if not address.endswith(MANAGEMENT_SUFFIX):
                link.max_message_size = entity.spec.max_message_size
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.open()
        link.flow(INCOMING_CREDIT)

    def _attach_outgoing(self, link: Sender) -> None:
        address = entity_path(link.remote_source.address)
        owner = self._owner(link.connection)
        if address == CBS_NODE or address.endswith(MANAGEMENT_SUFFIX):
            if address != CBS_NODE:
                self.broker.entity(address.removesuffix(MANAGEMENT_SUFFIX))
            self._reply_links[(owner, address)] = link
            self._open_echo(link)
            return
        peek_lock = link.remote_snd_settle_mode != Link.SND_SETTLED
        if not self.broker.requires_session(address):
            self.broker.entity(address)
            self._open_consumer(link, address, owner, peek_lock, None)
            return
        filters = _filters(link)
        if SESSION_FILTER not in filters:
            raise NotAllowedError(
                "It is not possible for an entity that requires sessions to create a non-sessionful "
                "message receiver."
            )
        requested = filters[SESSION_FILTER]
        if requested is None:  # NEXT_AVAILABLE_SESSION
            deadline = time.monotonic() + _session_wait(link)
            self._waiting.append(_WaitingReceiver(link, address, owner, peek_lock, deadline))
            self._accept_waiting()
            return
        state = self.broker.accept_session(address, str(requested), owner)
        self._open_consumer(link, address, owner, peek_lock, state)

    def _accept_waiting(self) -> None:
        """Give held NEXT_AVAILABLE receivers a session, or their timeout once it has passed."""
        for waiting in list(self._waiting):
            try:
                state = self.broker.accept_session(waiting.path, None, waiting.owner)
            except NoSessionAvailableError as exc:
                if time.monotonic() >= waiting.deadline:
                    self._waiting.remove(waiting)
                    self._refuse(waiting.link, exc)
                continue
            self._waiting.remove(waiting)
            self._open_consumer(waiting.link, waiting.path, waiting.owner, waiting.peek_lock, state)

    def _open_consumer(
        self, link: Sender, path: str, owner: str, peek_lock: bool, session: SessionState | None
    ) -> None:
        if session is not None:
            link.properties = {LOCKED_UNTIL_UTC: _ticks(session.locked_until)}
        self._open_echo(link)
        if session is not None:
            # The SDK learns which session it got from the source filter of our attach.
            link.source.filter.put_dict({SESSION_FILTER: session.session_id})
        consumer = _Consumer(link, path, owner, None if session is None else session.session_id, peek_lock)
        self._consumers.append(consumer)

    @staticmethod
    def _open_echo(link: Link) -> None:
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        link.open()

    @staticmethod
    def _refuse(link: Link, exc: PeerError) -> None:
        # Like Service Bus: answer the attach without a terminus (null source and target),
        # then detach with the error; the SDK turns the detach error into its exception.
        link.source.type = Terminus.UNSPECIFIED
        link.target.type = Terminus.UNSPECIFIED
        link.open()
        link.condition = _condition(exc)
        link.close()

    # ------------------------------------------------------------------ detach
    def on_link_remote_close(self, event: Event) -> None:
        link = event.link
        if link is None:
            return
        for consumer in [c for c in self._consumers if c.link == link]:
            self._drop_consumer(consumer)
        self._waiting = [w for w in self._waiting if w.link != link]
        for key in [k for k, reply in self._reply_links.items() if reply == link]:
            del self._reply_links[key]
        if not link.state & Link.LOCAL_CLOSED:
            link.close()

    def _drop_consumer(self, consumer: _Consumer) -> None:
        self._consumers.remove(consumer)
        if consumer.session_id is not None:
            self.broker.release_session(consumer.path, consumer.session_id, consumer.owner)
        for delivery in [d for d in self._lock_tokens if d.link == consumer.link]:
            del self._lock_tokens[delivery]

    # ------------------------------------------------------------------ outgoing messages
    def on_link_flow(self, event: Event) -> None:
        for consumer in self._consumers:
            if consumer.link == event.link:
                self._pump(consumer)

    def _pump_all(self) -> None:
        self._accept_waiting()
        for consumer in list(self._consumers):
            self._pump(consumer)

    def _pump(self, consumer: _Consumer) -> None:
        link = consumer.link
        while link.credit > 0 and link.state & Link.LOCAL_ACTIVE:
            try:
                msg = self.broker.receive(
                    consumer.path,
                    owner=consumer.owner,
                    session_id=consumer.session_id,
                    peek_lock=consumer.peek_lock,
                )
            except SessionLockLostError as exc:
                self._consumers.remove(consumer)
                link.condition = _condition(exc)
                link.close()
                return
            if msg is None:
                return
            token = msg.lock_token or uuid.uuid4()
            delivery = link.delivery(_tag(token.bytes_le))
            link.stream(codec.encode_for_delivery(msg, with_lock=consumer.peek_lock))
            link.advance()
            if consumer.peek_lock:
                self._lock_tokens[delivery] = token
            else:
                delivery.settle()

    # ------------------------------------------------------------------ deliveries
    def on_delivery(self, event: Event) -> None:
        delivery = event.delivery
        if delivery is None:
            return
        if isinstance(delivery.link, Receiver):
            if delivery.readable and not delivery.partial:
                self._incoming(delivery.link, delivery)
        elif delivery.updated and delivery in self._lock_tokens:
            self._outcome(delivery)
        elif delivery.settled and delivery not in self._lock_tokens:
            # A management answer (or a stale delivery) the client has settled: forget it.
            delivery.settle()

    def _incoming(self, link: Receiver, delivery: Delivery) -> None:
        raw = link.recv(delivery.pending) or b""
        link.advance()
        address = entity_path(link.target.address)
        try:
            if address == CBS_NODE or address.endswith(MANAGEMENT_SUFFIX):
                self._request(link, address, raw)
            else:
                self._enqueue(address, raw)
            delivery.update(Delivery.ACCEPTED)
        except PeerError as exc:
            delivery.local.condition = _condition(exc)
            delivery.update(Delivery.REJECTED)
        delivery.settle()
        if link.credit < INCOMING_CREDIT // 2:
            link.flow(INCOMING_CREDIT - link.credit)
        self._pump_all()

    def _enqueue(self, path: str, raw: bytes) -> None:
        self.broker.check_size(path, len(raw))
        messages = codec.unbatch(raw)
        infos = [codec.read_info(m) for m in messages]
        for info in infos:
            # Check the whole batch first: Service Bus accepts all of it or none.
            self.broker.check_send(path, info.session_id)
        for message, info in zip(messages, infos, strict=True):
            self.broker.enqueue(
                path,
                message,
                message_id=info.message_id,
                session_id=info.session_id,
                ttl=info.ttl,
                scheduled_at=info.scheduled_at,
            )

    def _request(self, link: Receiver, address: str, raw: bytes) -> None:
        request = codec.decode_message(raw)

        owner = self._owner(link.connection)
        if address == CBS_NODE:
            reply = handle_cbs(request)
        else:
            reply = handle_management(self.broker, address.removesuffix(MANAGEMENT_SUFFIX), request, owner)
        reply_link = self._reply_links.get((owner, address))
        if reply_link is None:
            raise NotAllowedError(f"No reply link attached for '{address}'.")
        reply_link.delivery(_tag(uuid.uuid4().bytes))
        reply_link.stream(reply.encode())
        reply_link.advance()

    def _outcome(self, delivery: Delivery) -> None:
        token = self._lock_tokens.pop(delivery)
        state = delivery.remote_state
        try:
            if state == Delivery.ACCEPTED:
                self.broker.complete(token)
            elif state == Delivery.REJECTED:
                info = _condition_info(delivery.remote.condition)
                self.broker.dead_letter(
                    token,
                    _str_or_none(info.get("DeadLetterReason")),
                    _str_or_none(info.get("DeadLetterErrorDescription")),
                )
            elif state == Delivery.MODIFIED and delivery.remote.undeliverable:
                self.broker.defer(token)  # what the SDK's defer_message sends
            elif state in (Delivery.MODIFIED, Delivery.RELEASED):
                properties: dict[str, object] = {
                    str(k): v for k, v in (delivery.remote.annotations or {}).items()
                }
                self.broker.abandon(token, properties)
            else:
                return
            # Echo the outcome: the SDK waits for the peer's disposition to confirm the settlement.
            delivery.update(state)
        except PeerError as exc:
            delivery.local.condition = _condition(exc)
            delivery.update(Delivery.REJECTED)
        delivery.settle()
        self._pump_all()


def _condition(exc: PeerError) -> Condition:
    # pyamqp reads all three error fields (condition, description, info); a missing info
    # breaks its error handling, so always send one, as Service Bus does (tracking id).
    return Condition(exc.condition, str(exc), {symbol("com.microsoft:tracking-id"): "servicebus-peer"})


def _tag(raw: bytes) -> Any:
    # The SDK reads the lock token from the delivery tag (UUID bytes, little-endian);
    # proton accepts bytes here although its annotation says str.
    return raw


def _filters(link: Link) -> dict[Any, Any]:
    data = link.remote_source.filter
    data.rewind()
    if not data.next():
        return {}
    found = data.get_object()
    return dict(found) if isinstance(found, dict) else {}


def _session_wait(link: Link) -> float:
    properties = link.remote_properties or {}
    timeout_ms = properties.get(OPERATION_TIMEOUT)
    return DEFAULT_SESSION_WAIT if timeout_ms is None else int(timeout_ms) / 1000.0


def _ticks(seconds: float) -> int:
    return DOTNET_TICKS_AT_EPOCH + round(seconds * 10_000_000)


def _condition_info(condition: Condition | None) -> dict[Any, Any]:
    if condition is None or not isinstance(condition.info, dict):
        return {}
    return {str(k): v for k, v in condition.info.items()}


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
