"""One peer per test module, emptied before each test: starting a peer is cheap, but the SDK's
senders and receivers cost about 0.5 s each to open, so modules share what they open too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servicebus_peer import QueueSpec, ServiceBusPeer, running_peer

# The product's queues, with locks short enough that an expired one shows within a test.
QUEUES = (
    QueueSpec("requests", max_delivery_count=3, lock_duration=5.0),
    QueueSpec("reconcile", requires_session=True, max_delivery_count=3, lock_duration=5.0),
)


@pytest.fixture(scope="module")
def module_peer() -> Iterator[ServiceBusPeer]:
    with running_peer(QUEUES, tick_interval=0.02) as running:
        yield running


@pytest.fixture
def peer(module_peer: ServiceBusPeer) -> ServiceBusPeer:
    module_peer.reset()
    return module_peer
