"""The SDK tests share one peer per module (tests/peer.py, with short-lock queues), and the sync
tests also one client and its senders: opening an SDK sender or receiver costs about 0.5 s (the
SDK reads one frame per 50 ms poll) and closing a receiver another 0.5 s (its keep-alive thread
sleeps 1 s). Receivers stay per test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusSender

from servicebus_peer import ServiceBusPeer

# The fixtures other test packages use (`pytest_plugins` is only allowed in the root conftest).
from servicebus_peer.testing import servicebus_connection_string, servicebus_peer, servicebus_peer_factory
from tests.peer import module_peer, peer

__all__ = [
    "module_peer",
    "peer",
    "servicebus_connection_string",
    "servicebus_peer",
    "servicebus_peer_factory",
]


@pytest.fixture(scope="module")
def sb(module_peer: ServiceBusPeer) -> Iterator[ServiceBusClient]:
    # retry_total=0: a failure a test expects must not be retried for seconds.
    with ServiceBusClient.from_connection_string(module_peer.connection_string, retry_total=0) as client:
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
