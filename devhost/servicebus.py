"""Service Bus queue triggers: receive with azure-servicebus, invoke, settle as the host does.

Per function, `maxConcurrentCalls` receivers (or `maxConcurrentSessions` session receivers, each
waiting up to `clientRetryOptions.tryTimeout` for the next available session and holding it until it
is idle for `sessionIdleTimeout`, as the extension's session processor does) in peek-lock mode,
one message per invocation, locks renewed up to `maxAutoLockRenewalDuration`. A `cardinality="many"`
trigger gets, from one receiver, a list of what has arrived (up to `maxMessageBatchSize`) per
invocation. As the host does with `autoCompleteMessages` (the default), the messages of an
invocation are completed when the function returns and abandoned when it raises; dead-lettering at
the queue's max delivery count is the broker's job.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping

import azure.functions as func
from azure.functions.servicebus import ServiceBusMessage
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceivedMessage
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient, ServiceBusReceiver
from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError

from devhost.host import HostOptions, invoke, until_stopped
from devhost.index import ServiceBusFunction
from devhost.settings import SettingsError

log = logging.getLogger("devhost")
RECONNECT_DELAY = 2.0  # after a lost connection, as the host's listener backs off before reopening


def connection_string(function: ServiceBusFunction, settings: Mapping[str, str]) -> str:
    """The trigger's connection, found as the host finds it: the setting, else AzureWebJobs<setting>."""
    value = settings.get(function.connection) or settings.get(f"AzureWebJobs{function.connection}")
    if not value:
        raise SettingsError(
            f"function {function.name}: app setting {function.connection} is not set; devhost connects with "
            f"a connection string (the peer prints one), not {function.connection}__fullyQualifiedNamespace"
        )
    return value


def as_function_message(message: ServiceBusReceivedMessage) -> func.ServiceBusMessage:
    """The trigger's argument as the Python worker builds it from the received message."""
    properties: dict[str, object] = {
        _text(key): value for key, value in (message.application_properties or {}).items()
    }
    return ServiceBusMessage(
        body=b"".join(message.body),
        application_properties=properties,
        user_properties=properties,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        dead_letter_error_description=message.dead_letter_error_description,
        dead_letter_reason=message.dead_letter_reason,
        dead_letter_source=message.dead_letter_source,
        delivery_count=message.delivery_count,
        enqueued_sequence_number=message.enqueued_sequence_number,
        enqueued_time_utc=message.enqueued_time_utc,
        expires_at_utc=message.expires_at_utc,
        locked_until=message.locked_until_utc,
        lock_token=str(message.lock_token),
        message_id=str(message.message_id),
        partition_key=message.partition_key,
        reply_to=message.reply_to,
        reply_to_session_id=message.reply_to_session_id,
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time_utc,
        sequence_number=message.sequence_number,
        session_id=message.session_id,
        subject=message.subject,
        label=message.subject,
        time_to_live=message.time_to_live,
        to=message.to,
    )


def message_from_input(function: ServiceBusFunction, given: str) -> object:
    """A queue trigger's argument for the host's admin call: the input is the message body (a list
    of that one message for a batch trigger)."""
    message = ServiceBusMessage(
        body=given.encode(), message_id=uuid.uuid4().hex, application_properties={}, user_properties={}
    )
    return [message] if function.batch else message


def _text(key: object) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)


class QueueListener:
    """Receives one queue for one function until `stopping` is set; an invocation under way finishes."""

    def __init__(self, function: ServiceBusFunction, connection: str, options: HostOptions) -> None:
        self.function, self.options = function, options
        self._client = ServiceBusClient.from_connection_string(connection)
        self._renewer = AutoLockRenewer(max_lock_renewal_duration=options.max_auto_lock_renewal)

    async def run(self, stopping: asyncio.Event) -> None:
        if self.function.sessions:
            workers = [self._sessions(stopping) for _ in range(self.options.max_concurrent_sessions)]
        else:  # batches come from one receive loop, as the host's batch listener has
            calls = 1 if self.function.batch else self.options.max_concurrent_calls
            workers = [self._messages(stopping) for _ in range(calls)]
        try:
            await asyncio.gather(*workers)
        finally:
            await self._renewer.close()
            await self._client.close()

    async def _messages(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                async with self._client.get_queue_receiver(
                    self.function.queue, auto_lock_renewer=self._renewer, prefetch_count=0
                ) as receiver:
                    await self._drain(receiver, stopping, idle=None)
            except ServiceBusError as error:
                await self._lost(error, stopping)

    async def _sessions(self, stopping: asyncio.Event) -> None:
        idle, accept_wait = self.options.session_idle_timeout, self.options.try_timeout
        while not stopping.is_set():
            receiver = self._client.get_queue_receiver(
                self.function.queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=accept_wait,
                auto_lock_renewer=self._renewer, prefetch_count=0,
            )  # fmt: skip
            try:
                if await until_stopped(stopping, receiver.__aenter__()) is not None:
                    await self._drain(receiver, stopping, idle=idle)  # until the session is idle
            except OperationTimeoutError:
                pass  # no session had messages within the try timeout: ask again
            except ServiceBusError as error:
                await self._lost(error, stopping)
            finally:
                await receiver.close()  # releases the session

    async def _drain(self, receiver: ServiceBusReceiver, stopping: asyncio.Event, idle: float | None) -> None:
        count = self.options.max_message_batch_size if self.function.batch else 1
        while True:
            received = await until_stopped(
                stopping, receiver.receive_messages(max_message_count=count, max_wait_time=idle)
            )
            if not received:  # stopping, or the session is idle
                return
            await self._deliver(receiver, received)

    async def _deliver(self, receiver: ServiceBusReceiver, messages: list[ServiceBusReceivedMessage]) -> None:
        reason = f"New ServiceBus message detected on '{self.function.queue}'."
        given = [as_function_message(m) for m in messages]
        try:
            await invoke(self.function, given if self.function.batch else given[0], reason)
        except Exception:
            settle = receiver.abandon_message  # delivered again, up to the queue's max delivery count
        else:
            settle = receiver.complete_message
        for message in messages:
            try:
                await settle(message)
            except ServiceBusError as error:  # e.g. the lock was lost: the broker delivers it again
                log.warning(
                    "could not settle message %s on %s: %s", message.message_id, self.function.queue, error
                )

    async def _lost(self, error: ServiceBusError, stopping: asyncio.Event) -> None:
        log.warning("Service Bus listener for %s: %s; reconnecting", self.function.name, error)
        await until_stopped(stopping, asyncio.sleep(RECONNECT_DELAY))
