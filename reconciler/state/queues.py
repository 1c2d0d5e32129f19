"""The Service Bus side of the product, on `azure.servicebus.aio`: reconcile fan-out, follow-ups,
ticket submission, and dead-letter inspection and replay.

Three queues, named by infra:
- `requests` (no sessions): ticket requests from ticketing systems (see reconciler/state/tickets.py);
- `reconcile` (sessions): reconcile messages. Every message about an application goes to the
  session `session_for(app key)` (reconciler/core/sharding.py), and Service Bus gives a session
  to one receiver at a time, so one application is never reconciled by two instances at once,
  whether the work came from a sweep, a ticket, an event or a follow-up;
- `events` (no sessions): drift events from Event Grid (reconciler/app/events.py, docs/events.md).

A reconcile message is versioned JSON (`parse_reconcile_message` is its validator):
`{"schemaVersion": 1, "apps": [...], "configIds": [...], "reason": "sweep" | "ticket" | "follow-up" | "event",
"requestId": "...", "sweepId": "...", "event": {"source", "id", "actor", "detectedAt", "pending"}}`
(`event` with reason `event` only: the first event of the burst it coalesces). Its application
properties carry the sender's W3C trace context (`traceparent`) besides the reason and ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import DefaultAzureCredential
from azure.servicebus import (
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import MessageSizeExceededError, ServiceBusError
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from reconciler.core.events import EventTrigger, Source
from reconciler.core.identifiers import ApplicationDisplayName, ConfigId, Guid, RequestId
from reconciler.core.policy import GrantPolicy
from reconciler.core.sharding import Shard, session_for
from reconciler.state.tickets import Ticket, parse_ticket

REQUESTS_QUEUE = "requests"
RECONCILE_QUEUE = "reconcile"
EVENTS_QUEUE = "events"
QUEUES = (REQUESTS_QUEUE, RECONCILE_QUEUE, EVENTS_QUEUE)
# The Functions app's connection setting: a connection string, or (identity-based, in Azure)
# the namespace and optionally the client id of a user-assigned managed identity.
CONNECTION_SETTING = "ServiceBusConnection"
NAMESPACE_SETTING = "ServiceBusConnection__fullyQualifiedNamespace"
CLIENT_ID_SETTING = "ServiceBusConnection__clientId"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")  # DNS labels: no scheme, port, path or space

RECONCILE_SCHEMA_VERSION = 1
JSON = "application/json"
Reason = Literal["sweep", "ticket", "follow-up", "event"]
REASONS: tuple[Reason, ...] = get_args(Reason)
MAX_APPS_PER_MESSAGE = 1000
EXCERPT_CHARS = 200
# Service Bus adds these to a dead-lettered message; a replayed copy is a fresh attempt.
_DEAD_LETTER_PROPERTIES = {"DeadLetterReason", "DeadLetterErrorDescription"}


class QueueSettingsError(ValueError):
    """Neither a connection string nor a namespace is configured, or the one given is malformed."""


class ReconcileMessageInvalid(ValueError):
    """A reconcile message that no retry can make valid: dead-letter it with this reason."""


class ReplayFailed(RuntimeError):
    """Sending a copy failed; the message is still in the dead-letter queue."""

    def __init__(self, replayed: int, sequence_number: int, cause: Exception) -> None:
        self.replayed = replayed
        self.sequence_number = sequence_number
        super().__init__(
            f"replayed {replayed} message(s); sending a copy of {sequence_number} failed "
            f"({type(cause).__name__}: {cause}); it is still in the dead-letter queue"
        )


@dataclass(frozen=True)
class ReconcileRequest:
    apps: tuple[str, ...]
    reason: Reason
    config_ids: tuple[str, ...] = ()  # a hint for loading rows: the apps are what is reconciled
    request_id: str | None = None
    sweep_id: str | None = None
    event: EventTrigger | None = None  # reason "event": what was detected, when, and by whom


@dataclass(frozen=True)
class Sent:
    messages: int
    batches: int  # send requests made


@dataclass(frozen=True)
class DeadLetter:
    sequence_number: int
    message_id: str | None
    reason: str | None
    description: str | None
    delivery_count: int | None
    enqueued_time: datetime | None
    session_id: str | None
    body_excerpt: str
    problem: str | None = None  # a reconcile message's, as parse_reconcile_message says it


# ---------------------------------------------------------------------------- messages


def reconcile_message(
    apps: Sequence[str],
    *,
    reason: Reason,
    config_ids: Sequence[str] = (),
    request_id: str | None = None,
    sweep_id: str | None = None,
    discriminator: str = "",
    event: EventTrigger | None = None,
) -> ServiceBusMessage:
    """One reconcile message for applications that share a session."""
    sessions = {session_for(app) for app in apps}
    if len(sessions) != 1:
        raise ValueError(f"a reconcile message needs apps of one session, got {len(sessions)} sessions")
    body: dict[str, Any] = {"schemaVersion": RECONCILE_SCHEMA_VERSION, "apps": list(apps), "reason": reason}
    if config_ids:
        body["configIds"] = list(config_ids)
    if request_id is not None:
        body["requestId"] = request_id
    if sweep_id is not None:
        body["sweepId"] = sweep_id
    if event is not None:
        body["event"] = {
            "source": str(event.source),
            "id": event.event_id,
            "actor": event.actor,
            "detectedAt": event.detected_at,
            "pending": event.pending,
        }
    data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    parse_reconcile_message(data)  # never send what the receiver would refuse
    # The same work gets the same id, so Service Bus duplicate detection (if turned on) drops resends.
    digest = hashlib.sha256(data + discriminator.encode()).hexdigest()[:40]
    return ServiceBusMessage(
        data,
        content_type=JSON,
        session_id=sessions.pop(),
        message_id=f"{reason}-{digest}",
        application_properties={
            "reason": reason,
            "requestId": request_id or "",
            "sweepId": sweep_id or "",
            **_trace_context(),
        },
    )


def _trace_context() -> dict[str | bytes, str]:
    """The current W3C trace context (`traceparent`, `tracestate`): the reconcile continues the trace of
    the ticket, sweep or reconcile that sent it (reconciler/app/telemetry.py). Empty when nothing traces.
    With azure-core tracing on, the SDK then writes its own send span's context there, in the same trace."""
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return {name: value for name, value in carrier.items()}  # as application properties are typed


def parse_reconcile_message(body: bytes | str, *, session_id: str | None = None) -> ReconcileRequest:
    """The reconcile request in `body`, or ReconcileMessageInvalid saying what is wrong.

    With `session_id` (the session the message came from) it also checks that every
    application belongs to that session: a misrouted message would break the one-instance rule.
    """
    if len(body) > 256 * 1024:
        raise ReconcileMessageInvalid("larger than 256 KiB")
    try:
        message = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        raise ReconcileMessageInvalid(f"not JSON: {str(error)[:200]}") from error
    if not isinstance(message, dict):
        raise ReconcileMessageInvalid("not a JSON object")
    unknown = set(message) - {"schemaVersion", "apps", "configIds", "reason", "requestId", "sweepId", "event"}
    if unknown:
        raise ReconcileMessageInvalid(f"unknown fields: {', '.join(sorted(map(str, unknown)))[:200]}")
    version = message.get("schemaVersion")
    if type(version) is not int or version != RECONCILE_SCHEMA_VERSION:
        raise ReconcileMessageInvalid(f"schemaVersion: expected {RECONCILE_SCHEMA_VERSION}, got {version!r}")
    reason = message.get("reason")
    if reason not in REASONS:
        raise ReconcileMessageInvalid(f"reason: expected one of {', '.join(REASONS)}, got {reason!r:.100}")
    apps = _strings(message, "apps", is_app_key, required=True)
    config_ids = _strings(message, "configIds", ConfigId.is_valid, required=False)
    request_id = _token(message, "requestId")
    sweep_id = _token(message, "sweepId")
    if reason == "sweep" and sweep_id is None:
        raise ReconcileMessageInvalid("sweepId: required when reason is sweep")
    if reason == "ticket" and request_id is None:
        raise ReconcileMessageInvalid("requestId: required when reason is ticket")
    if reason == "follow-up" and request_id is None and sweep_id is None:
        # A follow-up carries what it follows up: a ticket's request id, or a sweep's id.
        raise ReconcileMessageInvalid("requestId or sweepId: required when reason is follow-up")
    event = _event_trigger(message.get("event"), reason)
    if session_id is not None:
        strays = [app for app in apps if session_for(app) != session_id]
        if strays:
            raise ReconcileMessageInvalid(
                f"apps not of session {session_id!r:.60}: {', '.join(strays)[:200]}"
            )
    return ReconcileRequest(apps, reason, config_ids, request_id, sweep_id, event)


def _event_trigger(value: object, reason: str) -> EventTrigger | None:
    if value is None:
        if reason == "event":
            raise ReconcileMessageInvalid("event: required when reason is event")
        return None
    if reason != "event" or not isinstance(value, dict):
        raise ReconcileMessageInvalid("event: expected an object, with reason event only")
    unknown = set(value) - {"source", "id", "actor", "detectedAt", "pending"}
    if unknown:
        raise ReconcileMessageInvalid(f"event: unknown fields {', '.join(sorted(map(str, unknown)))[:200]}")
    source, actor, detected_at = value.get("source"), value.get("actor"), value.get("detectedAt")
    if source not in set(Source):
        raise ReconcileMessageInvalid(f"event.source: expected one of {', '.join(Source)}")
    if not isinstance(actor, str) or len(actor) > 1_000:
        raise ReconcileMessageInvalid("event.actor: expected a string of at most 1,000 characters")
    if not isinstance(detected_at, str) or len(detected_at) > 40:
        raise ReconcileMessageInvalid("event.detectedAt: expected an ISO 8601 time")
    return EventTrigger(
        Source(source), _required_token(value, "id"), actor, detected_at, _required_token(value, "pending")
    )


def _required_token(value: Mapping[str, Any], key: str) -> str:
    token = value.get(key)
    if not RequestId.is_valid(token):
        raise ReconcileMessageInvalid(f"event.{key}: expected {RequestId.what}")
    return str(token)


def is_app_key(key: object) -> bool:
    """`app:<client id>` (lower case, as ApplicationRef.key writes it) or `new:<display name>`."""
    if not isinstance(key, str):
        return False
    kind, _, rest = key.partition(":")
    if kind == "app":
        return Guid.is_valid(rest) and rest == rest.lower()
    return kind == "new" and ApplicationDisplayName.is_valid(rest)


def _strings(
    message: Mapping[str, Any], key: str, valid: Callable[[object], bool], *, required: bool
) -> tuple[str, ...]:
    value = message.get(key)
    if value is None and not required:
        return ()
    if not isinstance(value, list) or not value or len(value) > MAX_APPS_PER_MESSAGE:
        raise ReconcileMessageInvalid(f"{key}: expected a list of 1-{MAX_APPS_PER_MESSAGE} strings")
    bad = [v for v in value if not isinstance(v, str) or not valid(v)]
    if bad:
        raise ReconcileMessageInvalid(f"{key}: malformed entries {bad[:3]!r:.200}")
    return tuple(value)


def _token(message: Mapping[str, Any], key: str) -> str | None:
    value = message.get(key)
    if value is None:
        return None
    if not RequestId.is_valid(value):
        raise ReconcileMessageInvalid(f"{key}: expected {RequestId.what}")
    return str(value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# ---------------------------------------------------------------------------- the client


class Queues:
    """The product's Service Bus queues. Senders are opened on first use and kept until close()."""

    def __init__(self, client: ServiceBusClient, *, credential: AsyncTokenCredential | None = None) -> None:
        self._client = client
        self._credential = credential  # closed with us when we created it
        self._senders: dict[str, ServiceBusSender] = {}
        # The SDK's sender is not safe for concurrent use (two first sends race to open its
        # link), and the Functions worker runs invocations concurrently: one send at a time per queue.
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @classmethod
    def from_settings(
        cls,
        settings: Mapping[str, str],
        *,
        retry_total: int = 3,
        credential: AsyncTokenCredential | None = None,
    ) -> Queues:
        """From the app settings: `ServiceBusConnection` (a connection string), or
        `ServiceBusConnection__fullyQualifiedNamespace` with the managed identity (Azure): the
        caller's `credential` (left open), else a DefaultAzureCredential of our own (closed with us)."""
        connection_string = (settings.get(CONNECTION_SETTING) or "").strip()
        if connection_string:
            try:
                return cls(
                    ServiceBusClient.from_connection_string(connection_string, retry_total=retry_total)
                )
            except ValueError as error:  # the SDK's reasons name parts, never the values (the key)
                raise QueueSettingsError(
                    f"{CONNECTION_SETTING} is not a valid connection string: {error}"
                ) from None
        namespace = (settings.get(NAMESPACE_SETTING) or "").strip()
        if not namespace:
            raise QueueSettingsError(
                f"Service Bus is not configured: set {CONNECTION_SETTING} (a connection string; locally "
                f"the peer's ...;UseDevelopmentEmulator=true) or {NAMESPACE_SETTING} "
                "(e.g. mynamespace.servicebus.windows.net, reached with the managed identity)"
            )
        host = namespace.removeprefix("sb://").rstrip("/")
        if not _HOST_NAME.fullmatch(host):  # else the first send fails, on every message
            raise QueueSettingsError(
                f"{NAMESPACE_SETTING} must be a host name (e.g. mynamespace.servicebus.windows.net), "
                f"got {namespace!r:.100}"
            )
        if credential is not None:
            return cls(ServiceBusClient(host, credential, retry_total=retry_total))
        client_id = settings.get(CLIENT_ID_SETTING) or settings.get("AZURE_CLIENT_ID") or None
        own = DefaultAzureCredential(
            managed_identity_client_id=client_id, exclude_interactive_browser_credential=True
        )
        return cls(ServiceBusClient(host, own, retry_total=retry_total), credential=own)

    async def __aenter__(self) -> Queues:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for sender in self._senders.values():
            await sender.close()
        self._senders.clear()
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()

    @asynccontextmanager
    async def _sender(self, queue: str) -> AsyncIterator[ServiceBusSender]:
        """The queue's sender, held alone for the duration of the block."""
        async with self._locks[queue]:
            if queue not in self._senders:
                # keep_alive=0: our senders send in bursts; an idle link is re-opened by the SDK on use.
                self._senders[queue] = self._client.get_queue_sender(queue, keep_alive=0)
            yield self._senders[queue]

    # ------------------------------------------------------------------ reconcile

    async def send_reconcile(
        self,
        shards: Sequence[Shard],
        *,
        reason: Reason,
        request_id: str | None = None,
        sweep_id: str | None = None,
    ) -> Sent:
        """One message per shard to `reconcile`, in as few batched sends as fit (256 KiB each)."""
        messages = [
            reconcile_message(
                s.app_keys, reason=reason, config_ids=s.config_ids, request_id=request_id, sweep_id=sweep_id
            )
            for s in shards
        ]
        return await self._send_batched(RECONCILE_QUEUE, messages)

    async def schedule_follow_up(
        self,
        app_key: str,
        at: datetime,
        *,
        request_id: str | None = None,
        sweep_id: str | None = None,
        config_ids: Sequence[str] = (),
    ) -> int:
        """Reconcile one application again at `at` (e.g. a Retry-After); returns the sequence number.

        It carries the ticket's request id (whose outcome it will record) or the sweep's id.
        """
        when = at if at.tzinfo else at.replace(tzinfo=UTC)
        message = reconcile_message(
            [app_key],
            reason="follow-up",
            config_ids=config_ids,
            request_id=request_id,
            sweep_id=sweep_id,
            discriminator=when.isoformat(),  # two follow-ups at two times are two messages
        )
        async with self._sender(RECONCILE_QUEUE) as sender:
            [sequence_number] = await sender.schedule_messages(message, when)
        return sequence_number

    async def schedule_event_reconcile(self, app_key: str, at: datetime, event: EventTrigger) -> int:
        """Reconcile one application at `at` because of a burst of events (reconciler/app/events.py),
        or again after a temporary failure of such a reconcile (it keeps what the events said)."""
        when = at if at.tzinfo else at.replace(tzinfo=UTC)
        # Each scheduling is its own message, a follow-up of the same trigger too.
        discriminator = f"{event.pending}@{when.isoformat()}"
        message = reconcile_message([app_key], reason="event", event=event, discriminator=discriminator)
        async with self._sender(RECONCILE_QUEUE) as sender:
            [sequence_number] = await sender.schedule_messages(message, when)
        return sequence_number

    # ------------------------------------------------------------------ tickets

    async def submit_ticket(self, body: bytes, policy: GrantPolicy) -> Ticket:
        """Validate the ticket (TicketRejected, nothing sent) and send it to `requests`."""
        ticket = parse_ticket(body, policy)
        message = ServiceBusMessage(
            body,
            content_type=JSON,
            message_id=ticket.request_id,  # the ticket's own idempotency key
            application_properties={"requestId": ticket.request_id, "action": ticket.action},
        )
        async with self._sender(REQUESTS_QUEUE) as sender:
            await sender.send_messages(message)
        return ticket

    # ------------------------------------------------------------------ dead letters

    async def list_dead_letters(self, queue: str, max_count: int = 100) -> list[DeadLetter]:
        """Peek (no lock, nothing changes) at up to max_count dead-lettered messages of `queue`."""
        async with self._dead_letter_receiver(queue) as receiver:
            peeked = await _peek_all(receiver, max_count)
        return [_dead_letter(m, reconcile=queue == RECONCILE_QUEUE) for m in peeked]

    async def replay_dead_letters(
        self, queue: str, sequence_numbers: Collection[int] | None = None, *, max_wait_time: float = 2.0
    ) -> int:
        """Move dead-lettered messages back to `queue` (all of them when sequence_numbers is None).

        Each copy keeps the body, application properties, session id and message id; the
        dead-letter message is completed only after its copy was sent, so a failed send loses
        nothing (ReplayFailed; the message stays in the dead-letter queue). "All" means the
        messages there when the replay starts: a message that fails again during the replay
        is not replayed in a loop.
        """
        async with self._sender(queue) as sender, self._dead_letter_receiver(queue) as receiver:
            if sequence_numbers is None:
                wanted = {m.sequence_number for m in await _peek_all(receiver, None)}
            else:
                wanted = set(sequence_numbers)
            skipped: list[ServiceBusReceivedMessage] = []  # held locked so the receiver moves past them
            seen: set[int] = set()
            replayed = 0
            try:
                while wanted:
                    batch = await receiver.receive_messages(
                        max_message_count=100, max_wait_time=max_wait_time
                    )
                    # A message seen before came back because its lock expired: everything has been seen.
                    if not batch or any((m.sequence_number or 0) in seen for m in batch):
                        skipped.extend(batch)
                        break
                    for position, message in enumerate(batch):
                        number = message.sequence_number or 0
                        seen.add(number)
                        if number not in wanted or message.body_type != AmqpMessageBodyType.DATA:
                            skipped.append(message)
                            continue
                        try:
                            await sender.send_messages(_copy(message))
                        except Exception as error:
                            skipped.extend(batch[position:])
                            raise ReplayFailed(replayed, number, error) from error
                        await receiver.complete_message(message)
                        wanted.discard(number)
                        replayed += 1
            finally:
                for message in skipped:
                    # Back to the dead-letter queue at once rather than when the lock expires.
                    with contextlib.suppress(ServiceBusError):  # the lock may have expired already
                        await receiver.abandon_message(message)
        return replayed

    def _dead_letter_receiver(self, queue: str) -> ServiceBusReceiver:
        if queue not in QUEUES:
            raise ValueError(f"unknown queue {queue!r}: expected one of {', '.join(QUEUES)}")
        # The dead-letter sub-queue of a session queue is read without sessions.
        return self._client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER)

    async def _send_batched(self, queue: str, messages: Sequence[ServiceBusMessage]) -> Sent:
        async with self._sender(queue) as sender:
            batches = 0
            batch = await sender.create_message_batch()
            for message in messages:
                try:
                    batch.add_message(message)
                except MessageSizeExceededError:
                    if len(batch) == 0:
                        raise  # one message larger than the queue allows: a bug in the sharding
                    await sender.send_messages(batch)
                    batches += 1
                    batch = await sender.create_message_batch()
                    batch.add_message(message)
            if len(batch):
                await sender.send_messages(batch)
                batches += 1
        return Sent(len(messages), batches)


async def _peek_all(receiver: ServiceBusReceiver, max_count: int | None) -> list[ServiceBusReceivedMessage]:
    """Peek page by page (Service Bus returns at most a few hundred per request)."""
    found: list[ServiceBusReceivedMessage] = []
    next_number = 0
    while max_count is None or len(found) < max_count:
        page_size = 250 if max_count is None else min(250, max_count - len(found))
        page = await receiver.peek_messages(max_message_count=page_size, sequence_number=next_number)
        if not page:
            break
        found.extend(page)
        next_number = max(m.sequence_number or 0 for m in page) + 1
    return found


def _body(message: ServiceBusReceivedMessage) -> bytes:
    if message.body_type == AmqpMessageBodyType.DATA:
        return b"".join(message.body)
    return str(message).encode()


def _text(value: object) -> object:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _copy(message: ServiceBusReceivedMessage) -> ServiceBusMessage:
    properties = {
        str(_text(key)): _text(value)
        for key, value in (message.application_properties or {}).items()
        if _text(key) not in _DEAD_LETTER_PROPERTIES
    }
    return ServiceBusMessage(
        _body(message),
        application_properties=properties,  # type: ignore[arg-type]
        session_id=message.session_id,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        subject=message.subject,
    )


def _reconcile_problem(message: ServiceBusReceivedMessage) -> str | None:
    """What is wrong with a dead-lettered reconcile message, if anything.

    The Functions host dead-letters an invalid one for its delivery count, with Service Bus'
    generic reason (function_app.reconcile_apps explains why): this says the real one.
    """
    try:
        parse_reconcile_message(_body(message), session_id=message.session_id)
    except ReconcileMessageInvalid as problem:
        return str(problem)
    return None


def _dead_letter(message: ServiceBusReceivedMessage, *, reconcile: bool) -> DeadLetter:
    return DeadLetter(
        sequence_number=message.sequence_number or 0,
        message_id=message.message_id,
        reason=message.dead_letter_reason,
        description=message.dead_letter_error_description,
        delivery_count=message.delivery_count,
        enqueued_time=message.enqueued_time_utc,
        session_id=message.session_id,
        body_excerpt=_body(message)[: EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS],
        problem=_reconcile_problem(message) if reconcile else None,
    )
