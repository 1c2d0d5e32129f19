"""Service Bus queue semantics in memory, with no AMQP in sight.

The broker stores each message as opaque bytes (the AMQP encoding the client
sent) plus the metadata Service Bus keeps beside it: sequence number, enqueue
time, delivery count, lock, schedule, dead-letter reason. The proton adapter
turns frames into calls on :class:`Broker`; tests can drive it directly with a
fake clock.

Every public method takes the broker's lock, because the AMQP thread and the
test thread (inspection helpers) both use it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

DEAD_LETTER_SUFFIX = "/$deadletterqueue"
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
SESSION_LOCK_LOST_REASON = "session lock lost"


class PeerError(Exception):
    """A request Service Bus would refuse; `condition` is the AMQP error symbol it uses."""

    condition = "amqp:internal-error"


class EntityNotFoundError(PeerError):
    condition = "amqp:not-found"


class NotAllowedError(PeerError):
    condition = "amqp:not-allowed"


class MessageLockLostError(PeerError):
    condition = "com.microsoft:message-lock-lost"


class MessageNotFoundError(PeerError):
    condition = "com.microsoft:message-not-found"


class SessionCannotBeLockedError(PeerError):
    condition = "com.microsoft:session-cannot-be-locked"


class SessionLockLostError(PeerError):
    condition = "com.microsoft:session-lock-lost"


class MessageSizeExceededError(PeerError):
    condition = "amqp:link:message-size-exceeded"


class NoSessionAvailableError(PeerError):
    # Service Bus answers a NEXT_AVAILABLE accept with a timeout when no session has messages.
    condition = "com.microsoft:timeout"


@dataclass(frozen=True)
class QueueSpec:
    """One queue as it would be declared in Azure (only the properties the peer honours)."""

    name: str
    requires_session: bool = False
    max_delivery_count: int = 10
    lock_duration: float = 30.0
    # Standard tier's limit; advertised on the sender's attach, so the SDK sizes batches by it.
    max_message_size: int = 256 * 1024


@dataclass
class StoredMessage:
    """A message and the broker-side metadata Service Bus keeps for it."""

    sequence_number: int
    payload: bytes
    enqueued_time: float
    message_id: str | None = None
    session_id: str | None = None
    ttl: float | None = None
    visible_at: float = 0.0
    scheduled: bool = False
    # Deferred messages are only handed out by sequence number (receive_deferred).
    deferred: bool = False
    delivery_count: int = 0
    lock_token: uuid.UUID | None = None
    locked_until: float | None = None
    locked_by: str | None = None
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None
    dead_letter_source: str | None = None
    # Application properties added by abandon/dead-letter (`properties_to_modify`).
    extra_properties: dict[str, object] = field(default_factory=dict)

    def snapshot(self) -> StoredMessage:
        return dataclasses.replace(self, extra_properties=dict(self.extra_properties))


@dataclass
class SessionState:
    session_id: str
    state: bytes | None = None
    locked_by: str | None = None
    locked_until: float = 0.0


@dataclass
class _Entity:
    """A queue or its dead-letter sub-queue."""

    path: str
    spec: QueueSpec
    is_dead_letter: bool = False
    next_sequence: int = 1
    messages: dict[int, StoredMessage] = field(default_factory=dict)

    @property
    def requires_session(self) -> bool:
        # The dead-letter sub-queue of a session queue is read without sessions.
        return self.spec.requires_session and not self.is_dead_letter


def normalize_path(path: str) -> str:
    """`requests`, `/requests/`, `Requests/$DeadLetterQueue` -> canonical lower-case form."""
    return path.strip("/").lower()


class Broker:
    """In-memory queues with peek-lock, sessions, scheduling and dead-lettering."""

    def __init__(self, queues: Iterable[QueueSpec], clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self._entities: dict[str, _Entity] = {}
        self._sessions: dict[str, dict[str, SessionState]] = {}
        self._locks: dict[uuid.UUID, tuple[_Entity, int]] = {}
        for spec in queues:
            name = normalize_path(spec.name)
            self._entities[name] = _Entity(name, spec)
            dlq = name + DEAD_LETTER_SUFFIX
            self._entities[dlq] = _Entity(dlq, spec, is_dead_letter=True)
            self._sessions[name] = {}

    def reset(self) -> None:
        """Forget every message, lock and session (between tests that share one peer)."""
        with self.lock:
            for entity in self._entities.values():
                entity.messages.clear()
                entity.next_sequence = 1
            for sessions in self._sessions.values():
                sessions.clear()
            self._locks.clear()

    # ------------------------------------------------------------------ lookup
    def entity(self, path: str) -> _Entity:
        found = self._entities.get(normalize_path(path))
        if found is None:
            raise EntityNotFoundError(f"The messaging entity '{path}' could not be found.")
        return found

    def requires_session(self, path: str) -> bool:
        with self.lock:
            return self.entity(path).requires_session

    def queue_names(self) -> list[str]:
        return [e.spec.name for e in self._entities.values() if not e.is_dead_letter]

    # ------------------------------------------------------------------ send
    def enqueue(
        self,
        path: str,
        payload: bytes,
        *,
        message_id: str | None = None,
        session_id: str | None = None,
        ttl: float | None = None,
        scheduled_at: float | None = None,
    ) -> int:
        """Store a message; returns its sequence number. Scheduled ones stay invisible until their time."""
        with self.lock:
            self.check_send(path, session_id)
            entity = self.entity(path)
            now = self.clock()
            seq = entity.next_sequence
            entity.next_sequence += 1
            entity.messages[seq] = StoredMessage(
                sequence_number=seq,
                payload=payload,
                enqueued_time=now if scheduled_at is None else max(now, scheduled_at),
                message_id=message_id,
                session_id=session_id,
                ttl=ttl,
                visible_at=now if scheduled_at is None else scheduled_at,
                scheduled=scheduled_at is not None and scheduled_at > now,
            )
            return seq

    def check_size(self, path: str, size: int) -> None:
        limit = self.entity(path).spec.max_message_size
        if size > limit:
            raise MessageSizeExceededError(f"The message ({size} bytes) exceeds the limit of {limit} bytes.")

    def check_send(self, path: str, session_id: str | None) -> None:
        """Raise what Service Bus answers to a send it refuses."""
        entity = self.entity(path)
        if entity.is_dead_letter:
            raise NotAllowedError("Messages cannot be sent to a dead-letter sub-queue.")
        if entity.requires_session and not session_id:
            raise NotAllowedError(
                "The SessionId was not set on a message, and it cannot be sent to the entity. "
                "Entities that have session support enabled can only receive messages that "
                "have the SessionId set to a valid value."
            )

    def cancel_scheduled(self, path: str, sequence_numbers: Iterable[int]) -> None:
        with self.lock:
            entity = self.entity(path)
            for seq in sequence_numbers:
                msg = entity.messages.get(seq)
                if msg is None or not msg.scheduled:
                    raise MessageNotFoundError(
                        f"The scheduled message with sequence number {seq} was not found."
                    )
                del entity.messages[seq]

    # ------------------------------------------------------------------ receive
    def receive(
        self, path: str, *, owner: str, session_id: str | None = None, peek_lock: bool = True
    ) -> StoredMessage | None:
        """Hand out the next available message (FIFO), locked in peek-lock mode, removed otherwise."""
        with self.lock:
            entity = self.entity(path)
            now = self.clock()
            if session_id is not None:
                self._check_session_owner(entity.path, session_id, owner)
            for msg in entity.messages.values():
                if not self._available(msg, now) or (session_id is not None and msg.session_id != session_id):
                    continue
                if not peek_lock:
                    del entity.messages[msg.sequence_number]
                    return msg
                return self._lock(entity, msg, owner, session_id)
            return None

    @staticmethod
    def _available(msg: StoredMessage, now: float) -> bool:
        return msg.lock_token is None and msg.visible_at <= now and not msg.deferred

    def _lock(self, entity: _Entity, msg: StoredMessage, owner: str, session_id: str | None) -> StoredMessage:
        msg.lock_token = uuid.uuid4()
        msg.locked_by = owner
        msg.locked_until = self.clock() + entity.spec.lock_duration
        if session_id is not None:
            msg.locked_until = self._sessions[entity.path][session_id].locked_until
        self._locks[msg.lock_token] = (entity, msg.sequence_number)
        return msg.snapshot()

    def receive_deferred(
        self,
        path: str,
        sequence_numbers: Iterable[int],
        *,
        owner: str,
        session_id: str | None = None,
        peek_lock: bool = True,
    ) -> list[StoredMessage]:
        """Hand out deferred messages by sequence number, as `receive_deferred_messages` asks."""
        with self.lock:
            entity = self.entity(path)
            if session_id is not None:
                self._check_session_owner(entity.path, session_id, owner)
            found = []
            for seq in sequence_numbers:
                msg = entity.messages.get(seq)
                if msg is None or not msg.deferred or msg.lock_token is not None:
                    raise MessageNotFoundError(f"No deferred message with sequence number {seq}.")
                if session_id is not None and msg.session_id != session_id:
                    raise MessageNotFoundError(f"Message {seq} does not belong to session '{session_id}'.")
                found.append(msg)
            if not peek_lock:
                for msg in found:
                    del entity.messages[msg.sequence_number]
                return found
            return [self._lock(entity, msg, owner, session_id) for msg in found]

    def _locked(self, token: uuid.UUID) -> tuple[_Entity, StoredMessage]:
        found = self._locks.get(token)
        if found is None:
            raise MessageLockLostError(
                "The lock supplied is invalid. Either the lock expired, or the message has already "
                "been removed from the queue."
            )
        entity, seq = found
        return entity, entity.messages[seq]

    def _unlock(self, msg: StoredMessage) -> None:
        if msg.lock_token is not None:
            self._locks.pop(msg.lock_token, None)
        msg.lock_token = None
        msg.locked_until = None
        msg.locked_by = None

    def complete(self, token: uuid.UUID) -> None:
        with self.lock:
            entity, msg = self._locked(token)
            self._unlock(msg)
            del entity.messages[msg.sequence_number]

    def abandon(self, token: uuid.UUID, properties: dict[str, object] | None = None) -> None:
        """Unlock for redelivery with delivery_count + 1; dead-letter once max_delivery_count is reached."""
        with self.lock:
            entity, msg = self._locked(token)
            self._release_for_redelivery(entity, msg, properties)

    def _release_for_redelivery(
        self, entity: _Entity, msg: StoredMessage, properties: dict[str, object] | None = None
    ) -> None:
        self._unlock(msg)
        msg.extra_properties.update(properties or {})
        msg.delivery_count += 1
        limit = entity.spec.max_delivery_count
        if not entity.is_dead_letter and msg.delivery_count >= limit:
            self._move_to_dead_letter(
                entity,
                msg,
                MAX_DELIVERY_COUNT_EXCEEDED,
                f"Message could not be consumed after {limit} delivery attempts.",
            )

    def defer(self, token: uuid.UUID) -> None:
        """Set the message aside: no longer delivered in order, only by its sequence number."""
        with self.lock:
            _, msg = self._locked(token)
            self._unlock(msg)
            msg.deferred = True

    def dead_letter(
        self,
        token: uuid.UUID,
        reason: str | None = None,
        description: str | None = None,
        properties: dict[str, object] | None = None,
    ) -> None:
        with self.lock:
            entity, msg = self._locked(token)
            if entity.is_dead_letter:
                raise NotAllowedError("A message in a dead-letter sub-queue cannot be dead-lettered again.")
            self._unlock(msg)
            msg.extra_properties.update(properties or {})
            self._move_to_dead_letter(entity, msg, reason, description)

    def _move_to_dead_letter(
        self, entity: _Entity, msg: StoredMessage, reason: str | None, description: str | None
    ) -> None:
        # Service Bus keeps the message (and its sequence number) and records why it moved.
        del entity.messages[msg.sequence_number]
        dlq = self._entities[entity.path + DEAD_LETTER_SUFFIX]
        msg.dead_letter_reason = reason
        msg.dead_letter_description = description
        msg.dead_letter_source = entity.spec.name
        dlq.messages[msg.sequence_number] = msg
        dlq.messages = dict(sorted(dlq.messages.items()))

    def dead_letter_by_sequence(
        self, path: str, sequence_number: int, reason: str | None, description: str | None
    ) -> None:
        """Move an unlocked message to the dead-letter sub-queue (for seeding test data)."""
        with self.lock:
            entity = self.entity(path)
            msg = entity.messages.get(sequence_number)
            if msg is None or msg.lock_token is not None:
                raise MessageNotFoundError(f"No unlocked message with sequence number {sequence_number}.")
            self._move_to_dead_letter(entity, msg, reason, description)

    def renew_lock(self, token: uuid.UUID) -> float:
        with self.lock:
            entity, msg = self._locked(token)
            if entity.requires_session:
                raise NotAllowedError("Message locks of a session are renewed with the session lock.")
            msg.locked_until = self.clock() + entity.spec.lock_duration
            return msg.locked_until

    def locked_until(self, token: uuid.UUID) -> float:
        with self.lock:
            _, msg = self._locked(token)
            assert msg.locked_until is not None
            return msg.locked_until

    # ------------------------------------------------------------------ peek
    def peek(
        self, path: str, from_sequence: int, count: int, session_id: str | None = None
    ) -> list[StoredMessage]:
        """Browse without locking: active and scheduled messages from `from_sequence` on, in order."""
        with self.lock:
            entity = self.entity(path)
            found = [
                m.snapshot()
                for m in entity.messages.values()
                if m.sequence_number >= from_sequence and (session_id is None or m.session_id == session_id)
            ]
            return found[:count]

    # ------------------------------------------------------------------ sessions
    def accept_session(self, path: str, session_id: str | None, owner: str) -> SessionState:
        """Lock one session for `owner`: the named one, or (None) the first unlocked one with messages."""
        with self.lock:
            entity = self.entity(path)
            if not entity.requires_session:
                raise NotAllowedError(f"The entity '{path}' does not require sessions.")
            now = self.clock()
            sessions = self._sessions[entity.path]
            if session_id is None:
                session_id = self._next_available_session(entity, now)
            state = sessions.setdefault(session_id, SessionState(session_id))
            if state.locked_by is not None and state.locked_until > now:
                raise SessionCannotBeLockedError(
                    f"The requested session '{session_id}' cannot be accepted. "
                    "It may be locked by another receiver."
                )
            state.locked_by = owner
            state.locked_until = now + entity.spec.lock_duration
            return dataclasses.replace(state)

    def _next_available_session(self, entity: _Entity, now: float) -> str:
        sessions = self._sessions[entity.path]
        for msg in entity.messages.values():
            if msg.session_id is None or not self._available(msg, now):
                continue
            state = sessions.get(msg.session_id)
            if state is None or state.locked_by is None or state.locked_until <= now:
                return msg.session_id
        raise NoSessionAvailableError("No session with available messages; the operation timed out.")

    def _check_session_owner(self, path: str, session_id: str, owner: str) -> SessionState:
        state = self._sessions.get(path, {}).get(session_id)
        if state is None or state.locked_by != owner or state.locked_until <= self.clock():
            raise SessionLockLostError(f"The session lock has expired on the session '{session_id}'.")
        return state

    def release_session(self, path: str, session_id: str, owner: str) -> None:
        """The receiver went away: unlock the session and put its unsettled messages back."""
        with self.lock:
            entity = self.entity(path)
            state = self._sessions[entity.path].get(session_id)
            if state is None or state.locked_by != owner:
                return
            state.locked_by = None
            self._abandon_session_messages(entity, session_id)

    def _abandon_session_messages(self, entity: _Entity, session_id: str) -> None:
        for msg in list(entity.messages.values()):
            if msg.session_id == session_id and msg.lock_token is not None:
                self._release_for_redelivery(entity, msg)

    def renew_session_lock(self, path: str, session_id: str, owner: str) -> float:
        with self.lock:
            entity = self.entity(path)
            state = self._check_session_owner(entity.path, session_id, owner)
            state.locked_until = self.clock() + entity.spec.lock_duration
            for msg in entity.messages.values():
                if msg.session_id == session_id and msg.lock_token is not None:
                    msg.locked_until = state.locked_until
            return state.locked_until

    def get_session_state(self, path: str, session_id: str, owner: str) -> bytes | None:
        with self.lock:
            return self._check_session_owner(self.entity(path).path, session_id, owner).state

    def set_session_state(self, path: str, session_id: str, owner: str, state: bytes | None) -> None:
        with self.lock:
            self._check_session_owner(self.entity(path).path, session_id, owner).state = state

    def session_locked_until(self, path: str, session_id: str) -> float:
        with self.lock:
            return self._sessions[self.entity(path).path][session_id].locked_until

    # ------------------------------------------------------------------ time
    def tick(self) -> None:
        """Apply the passage of time: lock expiry, session lock expiry, schedules, TTL."""
        with self.lock:
            now = self.clock()
            for entity in self._entities.values():
                self._expire(entity, now)

    def _expire(self, entity: _Entity, now: float) -> None:
        if entity.requires_session:
            for state in self._sessions[entity.path].values():
                if state.locked_by is not None and state.locked_until <= now:
                    state.locked_by = None
                    self._abandon_session_messages(entity, state.session_id)
        for msg in list(entity.messages.values()):
            if msg.scheduled and msg.visible_at <= now:
                msg.scheduled = False
            if not entity.requires_session and msg.locked_until is not None and msg.locked_until <= now:
                self._release_for_redelivery(entity, msg)
            elif self._expired(entity, msg, now):
                # Expired messages are dropped (Service Bus default: no dead-lettering on expiration).
                del entity.messages[msg.sequence_number]

    @staticmethod
    def _expired(entity: _Entity, msg: StoredMessage, now: float) -> bool:
        if entity.is_dead_letter or msg.lock_token is not None or msg.scheduled or not msg.ttl:
            return False
        return msg.enqueued_time + msg.ttl <= now

    # ------------------------------------------------------------------ inspection
    def messages(self, path: str) -> list[StoredMessage]:
        """Copies of every message on an entity (active, locked and scheduled), in sequence order."""
        with self.lock:
            return [m.snapshot() for m in self.entity(path).messages.values()]

    def session_states(self, path: str) -> dict[str, SessionState]:
        with self.lock:
            entity = self.entity(path)
            return {k: dataclasses.replace(v) for k, v in self._sessions.get(entity.path, {}).items()}
