"""Run the peer on loopback in a background thread, and look inside it from tests."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from proton import Message
from proton.reactor import Container

from servicebus_peer.adapter import PeerHandler
from servicebus_peer.management import message_properties
from servicebus_peer.model import DEAD_LETTER_SUFFIX, Broker, QueueSpec, StoredMessage

LOOPBACK = "127.0.0.1"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeerMessage:
    """A stored message, decoded for assertions in tests."""

    sequence_number: int
    body: Any
    application_properties: dict[str, Any]
    message_id: str | None
    correlation_id: str | None
    subject: str | None
    content_type: str | None
    session_id: str | None
    delivery_count: int
    enqueued_time: float
    locked: bool
    scheduled: bool
    deferred: bool
    dead_letter_reason: str | None
    dead_letter_description: str | None

    @classmethod
    def from_stored(cls, stored: StoredMessage) -> PeerMessage:
        decoded = Message()
        decoded.decode(stored.payload)
        body = decoded.body
        return cls(
            sequence_number=stored.sequence_number,
            body=bytes(body) if isinstance(body, memoryview) else body,
            application_properties=message_properties(decoded),
            message_id=None if decoded.id is None else str(decoded.id),
            correlation_id=None if decoded.correlation_id is None else str(decoded.correlation_id),
            subject=decoded.subject,
            content_type=None if decoded.content_type is None else str(decoded.content_type),
            session_id=stored.session_id,
            delivery_count=stored.delivery_count,
            enqueued_time=stored.enqueued_time,
            locked=stored.lock_token is not None,
            scheduled=stored.scheduled,
            deferred=stored.deferred,
            dead_letter_reason=stored.dead_letter_reason,
            dead_letter_description=stored.dead_letter_description,
        )


class ServiceBusPeer:
    """An AMQP 1.0 peer that the azure-servicebus SDK accepts as a Service Bus namespace."""

    def __init__(
        self,
        queues: Iterable[QueueSpec],
        *,
        port: int = 0,
        tick_interval: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.broker = Broker(queues, clock=clock)
        self._requested_port = port
        self._tick_interval = tick_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._crash: BaseException | None = None
        self.port = 0

    @property
    def connection_string(self) -> str:
        # UseDevelopmentEmulator makes the SDK speak plain AMQP (no TLS) and keep the port.
        return (
            f"Endpoint=sb://{LOOPBACK}:{self.port};SharedAccessKeyName=local;"
            "SharedAccessKey=local;UseDevelopmentEmulator=true"
        )

    def start(self) -> ServiceBusPeer:
        container = Container(PeerHandler(self.broker, self._stop, self._tick_interval))
        acceptor = container.listen(f"{LOOPBACK}:{self._requested_port}")
        # proton has no public accessor for the bound port; its listening socket is the delegate.
        listening: Any = acceptor._selectable._delegate
        self.port = int(listening.getsockname()[1])
        self._thread = threading.Thread(
            target=self._run, args=(container, listening), name=f"servicebus-peer-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def _run(self, container: Container, listening: socket.socket) -> None:
        try:
            container.run()
        except BaseException as exc:
            # A bug in the peer must fail the test that met it, not hang it silently.
            _log.exception("servicebus peer on port %s crashed", self.port)
            self._crash = exc
        finally:
            # Stopping the container leaves the listening socket open; the reactor is done with it now.
            listening.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; raises if the peer crashed while it ran."""
        # The reactor is not thread-safe: the timer task sees the flag and stops the container itself.
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._crash is not None:
            raise RuntimeError(f"the servicebus peer crashed: {self._crash!r}") from self._crash

    def __enter__(self) -> ServiceBusPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection
    def reset(self) -> None:
        """Empty every queue and forget sessions; open connections stay usable."""
        self.broker.reset()

    def inject(
        self,
        queue: str,
        body: bytes | str,
        *,
        application_properties: dict[str, Any] | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
        subject: str | None = None,
        content_type: str | None = None,
        session_id: str | None = None,
        dead_letter_reason: str | None = None,
        dead_letter_description: str | None = None,
    ) -> int:
        """Put a message on a queue without the SDK (no 0.5 s sender open); returns its sequence number.

        With `dead_letter_reason` (or description) it goes straight to the
        dead-letter sub-queue, e.g. to test `dlq list|replay`. The body is sent
        as one data section, as `ServiceBusMessage` does.
        """
        message = Message(
            body=body.encode() if isinstance(body, str) else body,
            inferred=True,
            id=message_id,
            correlation_id=correlation_id,
            subject=subject,
            content_type=content_type,
            group_id=session_id,
            properties=application_properties,
        )
        payload = bytes(message.encode())
        seq = self.broker.enqueue(queue, payload, message_id=message_id, session_id=session_id)
        if dead_letter_reason is not None or dead_letter_description is not None:
            self.broker.dead_letter_by_sequence(queue, seq, dead_letter_reason, dead_letter_description)
        return seq

    def messages(self, queue: str) -> list[PeerMessage]:
        """Everything on the queue (available, locked and scheduled), in sequence order."""
        return [PeerMessage.from_stored(m) for m in self.broker.messages(queue)]

    def dead_letters(self, queue: str) -> list[PeerMessage]:
        return self.messages(queue + DEAD_LETTER_SUFFIX)

    def session_state(self, queue: str, session_id: str) -> bytes | None:
        state = self.broker.session_states(queue).get(session_id)
        return None if state is None else state.state

    def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll `condition` (e.g. `lambda: len(peer.messages("requests")) == 3`) until true or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.02)
        return condition()

    async def wait_until_async(self, condition: Callable[[], bool], within: float = 5.0) -> bool:
        """`wait_until` for async tests: yields to the event loop while polling (`within` seconds)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if condition():
                return True
            await asyncio.sleep(0.02)
        return condition()


@contextmanager
def running_peer(
    queues: Iterable[QueueSpec], *, port: int = 0, tick_interval: float = 0.05
) -> Iterator[ServiceBusPeer]:
    """`with running_peer(queues=[QueueSpec("requests")]) as peer:` -> use `peer.connection_string`."""
    peer = ServiceBusPeer(queues, port=port, tick_interval=tick_interval)
    with peer:
        yield peer
