"""The reconcile trigger as the Functions host runs it: messages received from the peer in sessions and
settled as the host settles them, and one engine per worker process that keeps its connections open."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from azure.functions import ServiceBusMessage as TriggerMessage
from azure.functions.timer import TimerRequest
from azure.servicebus import NEXT_AVAILABLE_SESSION
from azure.servicebus import ServiceBusMessage as OutgoingMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import OperationTimeoutError

import function_app
from reconciler.app import context as app_context
from reconciler.cli.queue_commands import register
from reconciler.core.sharding import SESSION_COUNT, session_for
from servicebus_peer import ServiceBusPeer
from tests.app.test_app_triggers import App, app, as_the_host_passes_it

__all__ = ["app"]

MAX_DELIVERY_COUNT = 5  # the peer's `reconcile` queue, as infra declares it for the tests


async def run_like_the_host(peer: ServiceBusPeer) -> list[str]:
    """Receive `reconcile` as the Functions host does (a session at a time, peek-lock), call the trigger,
    then complete the message when it returns and abandon it when it raises, until no session has
    messages. The settlements, in order."""
    settled: list[str] = []
    # No retries: "no session has messages" should end the loop at once, not after backoff.
    async with ServiceBusClient.from_connection_string(peer.connection_string, retry_total=0) as client:
        while True:
            try:
                receiver = client.get_queue_receiver(
                    "reconcile", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1
                )
                async with receiver:
                    while batch := await receiver.receive_messages(max_message_count=1, max_wait_time=1):
                        for received in batch:
                            try:
                                await function_app.reconcile_apps(as_the_host_passes_it(received))
                            except Exception:
                                await receiver.abandon_message(received)
                                settled.append("abandoned")
                            else:
                                await receiver.complete_message(received)
                                settled.append("completed")
            except OperationTimeoutError:  # no session has messages
                return settled


async def send(peer: ServiceBusPeer, body: bytes, session_id: str) -> None:
    client = ServiceBusClient.from_connection_string(peer.connection_string)
    async with client, client.get_queue_sender("reconcile") as sender:
        await sender.send_messages(OutgoingMessage(body, session_id=session_id))


async def dlq_list(capsys: pytest.CaptureFixture[str]) -> str:
    """`python -m reconciler dlq list --queue reconcile`, as an operator runs it (its own event loop)."""
    parser = argparse.ArgumentParser(prog="python -m reconciler")
    register(parser.add_subparsers(required=True))
    args = parser.parse_args(["dlq", "list", "--queue", "reconcile"])
    capsys.readouterr()
    assert await asyncio.to_thread(args.run, args) == 0
    return capsys.readouterr().out


async def test_a_well_routed_reconcile_message_is_completed(app: App) -> None:
    await function_app.ticket_requests(TriggerMessage(body=app.ticket("CHG0501")))
    assert await run_like_the_host(app.peer) == ["completed"]
    assert len(app.credentials()) == 1


async def test_a_reconcile_message_in_the_wrong_session_is_dead_lettered_and_changes_nothing(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    await function_app.ticket_requests(TriggerMessage(body=app.ticket("CHG0502")))
    (handed_off,) = app.peer.messages("reconcile")
    app.peer.reset()
    right = session_for(f"app:{app.seeded['appId']}")
    wrong = next(f"apps-{n:02d}" for n in range(SESSION_COUNT) if f"apps-{n:02d}" != right)
    await send(app.peer, handed_off.body, session_id=wrong)

    assert await run_like_the_host(app.peer) == ["abandoned"] * MAX_DELIVERY_COUNT
    assert app.credentials() == [] and app.assignments() == []  # never reconciled out of its session
    (dead,) = app.peer.dead_letters("reconcile")
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
    listed = await dlq_list(capsys)
    assert f"problem: apps not of session '{wrong}'" in listed


async def test_a_malformed_reconcile_message_is_dead_lettered_with_its_problem(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    await send(app.peer, b'{"schemaVersion": 1, "apps": "nope"}', session_id="apps-00")

    assert await run_like_the_host(app.peer) == ["abandoned"] * MAX_DELIVERY_COUNT
    assert app.peer.messages("reconcile") == []
    expected = "problem: reason: expected one of sweep, ticket, follow-up, event, got None"
    assert expected in await dlq_list(capsys)


def connections_to(ports: set[int]) -> int:
    """This machine's established TCP connections to these local ports, from /proc (Linux)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port in ports and fields[3] == "01":  # 01: ESTABLISHED
                count += 1
    return count


async def test_the_worker_keeps_one_engine_and_its_connections_between_messages_and_reset_closes_them(
    app: App,
) -> None:
    urls = ("WIF_GRAPH_URL", "WIF_ARM_URL", "WIF_ADO_URL", "IDENTITY_ENDPOINT")
    ports = {port for port in (urlsplit(os.environ[name]).port for name in urls) if port is not None}
    await function_app.ticket_requests(TriggerMessage(body=app.ticket("CHG0503")))
    assert await app.deliver_reconciles() == 1
    service = await app.service()
    async with service._engine() as first:
        reads_after_first = first.meter.reads()
    assert connections_to(ports) > 0  # the pools stay open for the next message

    await function_app.drift_sweep(TimerRequest(past_due=False))
    assert await app.deliver_reconciles() == 0  # converged: the sweep sent nothing
    async with service._engine() as second:
        assert second is first  # one engine per worker, not one per message
    assert first.meter.reads() > reads_after_first  # the sweep's pass ran on it too
    assert await app.service() is service

    await app_context.reset()
    assert connections_to(ports) == 0  # closed: the Graph, ARM and ADO pools and the credential's
