"""pytest fixtures for tests that talk to Service Bus through the real SDK.

Import them into a conftest (`from servicebus_peer.testing import servicebus_peer`),
or list `"servicebus_peer.testing"` in `pytest_plugins` of the root conftest.
The peer runs in its own thread, so the same fixtures serve sync tests and
`async def` tests (`azure.servicebus.aio`) alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack

import pytest

from servicebus_peer.model import QueueSpec
from servicebus_peer.server import ServiceBusPeer, running_peer

# The product's queues, with the settings infra declares for them.
PRODUCT_QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec("requests", max_delivery_count=5, lock_duration=30.0),
    QueueSpec("reconcile", requires_session=True, max_delivery_count=5, lock_duration=30.0),
    QueueSpec("events", max_delivery_count=5, lock_duration=30.0),
)

PeerFactory = Callable[[Iterable[QueueSpec]], ServiceBusPeer]


@pytest.fixture
def servicebus_peer() -> Iterator[ServiceBusPeer]:
    """A fresh peer with the product's queues (`requests`, session queue `reconcile`, `events`)."""
    with running_peer(PRODUCT_QUEUES) as peer:
        yield peer


@pytest.fixture
def servicebus_peer_factory() -> Iterator[PeerFactory]:
    """Start peers with your own queues (e.g. short lock durations); all stop after the test."""
    with ExitStack() as stack:

        def start(queues: Iterable[QueueSpec]) -> ServiceBusPeer:
            return stack.enter_context(running_peer(queues))

        yield start


@pytest.fixture
def servicebus_connection_string(servicebus_peer: ServiceBusPeer) -> str:
    """For code under test that reads a connection string (e.g. from settings)."""
    return servicebus_peer.connection_string
