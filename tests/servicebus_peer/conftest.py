"""Peers for the SDK tests, with short locks so expiry and renewal show in well under a second.

Opening an SDK sender or receiver costs about 0.5 s (the SDK reads one frame per
50 ms poll) and closing a receiver another 0.5 s (its keep-alive thread sleeps
1 s), so the sync tests share one peer, client and senders per module and reset
the peer between tests; receivers stay per test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusSender

from servicebus_peer import QueueSpec, ServiceBusPeer, running_peer

# The fixtures other test packages use (`pytest_plugins` is only allowed in the root conftest).
from servicebus_peer.testing import servicebus_connection_string, servicebus_peer, servicebus_peer_factory

__all__ = ["servicebus_connection_string", "servicebus_peer", "servicebus_peer_factory"]

TEST_QUEUES = (
    QueueSpec("requests", max_delivery_count=3, lock_duration=5.0),
    QueueSpec("reconcile", requires_session=True, max_delivery_count=3, lock_duration=5.0),
    QueueSpec("shortlock", max_delivery_count=3, lock_duration=0.5),
    QueueSpec("shortsession", requires_session=True, max_delivery_count=3, lock_duration=0.6),
)


@pytest.fixture
def peer() -> Iterator[ServiceBusPeer]:
    """A fresh peer for one test."""
    with running_peer(TEST_QUEUES, tick_interval=0.02) as running:
        yield running


@pytest.fixture(scope="module")
def shared_peer() -> Iterator[ServiceBusPeer]:
    with running_peer(TEST_QUEUES, tick_interval=0.02) as running:
        yield running


@pytest.fixture
def clean_peer(shared_peer: ServiceBusPeer) -> ServiceBusPeer:
    """The module's peer, emptied for this test."""
    shared_peer.reset()
    return shared_peer


@pytest.fixture(scope="module")
def sb(shared_peer: ServiceBusPeer) -> Iterator[ServiceBusClient]:
    # retry_total=0: a failure a test expects must not be retried for seconds.
    with ServiceBusClient.from_connection_string(shared_peer.connection_string, retry_total=0) as client:
        yield client


def open_sender(client: ServiceBusClient, queue: str) -> ServiceBusSender:
    # keep_alive=0: no keep-alive thread, so closing does not wait for its 1 s sleep.
    return client.get_queue_sender(queue, keep_alive=0)


@pytest.fixture(scope="module")
def requests_sender(sb: ServiceBusClient) -> Iterator[ServiceBusSender]:
    with open_sender(sb, "requests") as sender:
        yield sender


@pytest.fixture(scope="module")
def reconcile_sender(sb: ServiceBusClient) -> Iterator[ServiceBusSender]:
    with open_sender(sb, "reconcile") as sender:
        yield sender


@pytest.fixture(scope="module")
def shortsession_sender(sb: ServiceBusClient) -> Iterator[ServiceBusSender]:
    with open_sender(sb, "shortsession") as sender:
        yield sender
