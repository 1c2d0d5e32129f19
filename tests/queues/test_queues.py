"""The azure-servicebus code against the AMQP peer: real SDK, real sends, receives and settlements.

One peer, one Queues (client and senders) for the module, emptied between tests: opening an
SDK sender or receiver costs about 0.5 s against the peer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from azure.servicebus.aio import ServiceBusClient

from reconciler.core.model import FederationConfig
from reconciler.core.sharding import session_for, shard
from reconciler.state.queues import (
    DeadLetter,
    Queues,
    ReplayFailed,
    parse_reconcile_message,
    reconcile_message,
)
from reconciler.state.tickets import TicketRejected
from servicebus_peer import QueueSpec, ServiceBusPeer, running_peer
from tests.core.builders import config
from tests.tickets.tickets_data import POLICY, encode, upsert

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def queues(module_peer: ServiceBusPeer) -> AsyncIterator[Queues]:
    settings = {"ServiceBusConnection": module_peer.connection_string}
    async with Queues.from_settings(settings, retry_total=0) as opened:
        yield opened


def fleet(apps: int, per_app: int) -> list[FederationConfig]:
    return [
        config(f"sc-{a}-{c}", app_id=f"aaaaaaaa-0000-0000-0000-{a:012d}")
        for a in range(apps)
        for c in range(per_app)
    ]


async def test_a_sweep_fans_out_in_batches_one_session_per_application(
    peer: ServiceBusPeer, queues: Queues
) -> None:
    configs = fleet(apps=2000, per_app=5)  # 10,000 configs: more than one 256 KiB batch of shards
    shards = shard(configs)
    sweep = "2026-11-26T14:00:00Z"
    sent = await queues.send_reconcile(shards, reason="sweep", sweep_id=sweep)
    assert sent.messages == len(shards) < 100
    assert 1 < sent.batches < sent.messages  # batched and split when full, not one request per message
    received = peer.messages("reconcile")
    assert len(received) == len(shards)
    seen_apps: set[str] = set()
    for message, expected in zip(received, shards, strict=True):
        request = parse_reconcile_message(message.body, session_id=message.session_id)
        assert message.session_id == expected.session_id
        assert message.content_type == "application/json"
        assert request.apps == expected.app_keys and request.config_ids == expected.config_ids
        assert (request.reason, request.sweep_id) == ("sweep", sweep)
        seen_apps.update(request.apps)
    assert len(seen_apps) == 2000
    # the same sweep gives the same message ids (for duplicate detection)
    again = [
        reconcile_message(s.app_keys, reason="sweep", config_ids=s.config_ids, sweep_id=sweep) for s in shards
    ]
    assert [m.message_id for m in again] == [m.message_id for m in received]


async def test_a_ticket_hand_off_is_received_from_the_applications_session(
    peer: ServiceBusPeer, queues: Queues, module_peer: ServiceBusPeer
) -> None:
    [ticket_shard] = shard([config("kv-reader")])
    await queues.send_reconcile([ticket_shard], reason="ticket", request_id="CHG0012345")
    async with (
        ServiceBusClient.from_connection_string(module_peer.connection_string, retry_total=0) as client,
        client.get_queue_receiver("reconcile", session_id=ticket_shard.session_id) as receiver,
    ):
        [message] = await receiver.receive_messages(max_message_count=5, max_wait_time=2)
        request = parse_reconcile_message(b"".join(message.body), session_id=receiver.session.session_id)
        await receiver.complete_message(message)
    assert request.apps == ticket_shard.app_keys
    assert (request.reason, request.request_id) == ("ticket", "CHG0012345")


async def test_a_follow_up_is_invisible_until_its_time(
    peer: ServiceBusPeer, queues: Queues, module_peer: ServiceBusPeer
) -> None:
    app_key = config().application.key
    at = datetime.now(UTC) + timedelta(seconds=1.5)
    sequence_number = await queues.schedule_follow_up(app_key, at, request_id="CHG7", config_ids=["a/b/c"])
    [stored] = peer.messages("reconcile")
    assert (stored.sequence_number, stored.scheduled, stored.session_id) == (
        sequence_number,
        True,
        session_for(app_key),
    )
    async with (
        ServiceBusClient.from_connection_string(module_peer.connection_string, retry_total=0) as client,
        client.get_queue_receiver("reconcile", session_id=session_for(app_key)) as receiver,
    ):
        assert await receiver.receive_messages(max_wait_time=0.5) == []
        assert datetime.now(UTC) < at
        [message] = await receiver.receive_messages(max_wait_time=3)  # waits for the schedule
        assert datetime.now(UTC) >= at
        await receiver.complete_message(message)
    request = parse_reconcile_message(b"".join(message.body))
    assert (request.apps, request.reason, request.request_id) == ((app_key,), "follow-up", "CHG7")


async def test_submit_sends_a_valid_ticket_and_nothing_else(peer: ServiceBusPeer, queues: Queues) -> None:
    body = encode(upsert())
    ticket = await queues.submit_ticket(body, POLICY)
    [message] = peer.messages("requests")
    assert (message.body, message.message_id, message.content_type) == (
        body,
        "CHG0012345",
        "application/json",
    )
    assert message.application_properties == {"requestId": "CHG0012345", "action": "upsert"}
    assert ticket.config_id == "contoso/payments/kv-reader"
    owner = upsert()
    owner["config"]["roleAssignments"][0]["role"] = "Owner"
    with pytest.raises(TicketRejected, match="grant policy"):
        await queues.submit_ticket(encode(owner), POLICY)
    with pytest.raises(TicketRejected, match="not valid JSON"):
        await queues.submit_ticket(b"{", POLICY)
    assert len(peer.messages("requests")) == 1


async def test_dead_letters_are_listed_with_reason_and_description(
    peer: ServiceBusPeer, queues: Queues
) -> None:
    first = peer.inject(
        "requests",
        b'{"bad": 1}',
        message_id="m-1",
        dead_letter_reason="TicketInvalid",
        dead_letter_description="schemaVersion missing",
    )
    second = peer.inject("requests", "x" * 1000, dead_letter_reason="MaxDeliveryCountExceeded")
    peer.inject("requests", b"alive")
    letters = await queues.list_dead_letters("requests")
    assert [(d.sequence_number, d.message_id, d.reason, d.description) for d in letters] == [
        (first, "m-1", "TicketInvalid", "schemaVersion missing"),
        (second, None, "MaxDeliveryCountExceeded", None),
    ]
    assert isinstance(letters[0], DeadLetter) and letters[0].body_excerpt == '{"bad": 1}'
    assert letters[1].body_excerpt == "x" * 200
    assert [d.sequence_number for d in await queues.list_dead_letters("requests", max_count=1)] == [first]
    with pytest.raises(ValueError, match="unknown queue"):
        await queues.list_dead_letters("nope")


async def test_replay_moves_messages_back_with_their_session_and_properties(
    peer: ServiceBusPeer, queues: Queues
) -> None:
    app = config().application.key
    seqs = [
        peer.inject(
            "reconcile",
            json.dumps({"n": n}),
            session_id=session_for(app),
            message_id=f"m-{n}",
            application_properties={"requestId": f"CHG{n}"},
            content_type="application/json",
            dead_letter_reason="EngineCrashed",
        )
        for n in range(3)
    ]
    assert await queues.replay_dead_letters("reconcile", [seqs[1], 999], max_wait_time=0.5) == 1
    [moved] = peer.messages("reconcile")
    assert (moved.body, moved.session_id, moved.message_id) == (b'{"n": 1}', session_for(app), "m-1")
    assert moved.application_properties == {"requestId": "CHG1"}
    assert moved.content_type == "application/json"
    assert [m.message_id for m in peer.dead_letters("reconcile")] == ["m-0", "m-2"]
    assert await queues.replay_dead_letters("reconcile") == 2
    assert peer.dead_letters("reconcile") == []
    assert sorted(m.message_id or "" for m in peer.messages("reconcile")) == ["m-0", "m-1", "m-2"]


async def test_a_failing_replay_send_loses_nothing() -> None:
    # The main queue refuses the copy (larger than it accepts): the dead letter must stay.
    with running_peer([QueueSpec("requests", max_message_size=4 * 1024)], tick_interval=0.02) as small:
        big = small.inject("requests", b"x" * 8 * 1024, message_id="big", dead_letter_reason="R")
        small_one = small.inject("requests", b"ok", message_id="small", dead_letter_reason="R")
        async with Queues.from_settings(
            {"ServiceBusConnection": small.connection_string}, retry_total=0
        ) as q:
            with pytest.raises(ReplayFailed) as failed:
                await q.replay_dead_letters("requests")
        assert failed.value.sequence_number == big
        assert small.messages("requests") == []
        assert [m.sequence_number for m in small.dead_letters("requests")] == [big, small_one]
        assert all(not m.locked for m in small.dead_letters("requests"))


async def test_identity_based_settings_build_a_client_for_the_namespace() -> None:
    queues = Queues.from_settings(
        {"ServiceBusConnection__fullyQualifiedNamespace": "sb://ns.servicebus.windows.net/"}
    )
    assert queues._client.fully_qualified_namespace == "ns.servicebus.windows.net"
    await queues.close()
