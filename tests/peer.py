"""The Service Bus peer for the tests: the real AMQP peer (`servicebus_peer`), in-process, on loopback.

Import the fixtures into a conftest:

    from tests.peer import module_peer, peer

`module_peer` (one per test module) serves TEST_QUEUES; `peer` gives it emptied for each test.
Starting a peer is cheap, but an SDK sender or receiver costs about 0.5 s to open (the SDK
reads one frame per 50 ms poll), so modules share one peer and what they open on it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servicebus_peer import QueueSpec, ServiceBusPeer, running_peer

# The product's queues with locks short enough that an expired one shows within a test, and two
# queues whose locks expire in well under a second, for expiry and renewal.
TEST_QUEUES = (
    QueueSpec("requests", max_delivery_count=3, lock_duration=5.0),
    QueueSpec("reconcile", requires_session=True, max_delivery_count=3, lock_duration=5.0),
    QueueSpec("events", max_delivery_count=3, lock_duration=5.0),
    QueueSpec("shortlock", max_delivery_count=3, lock_duration=0.5),
    QueueSpec("shortsession", requires_session=True, max_delivery_count=3, lock_duration=0.6),
)
TICK = 0.02  # how often the peer expires locks and releases scheduled messages


@pytest.fixture(scope="module")
def module_peer() -> Iterator[ServiceBusPeer]:
    with running_peer(TEST_QUEUES, tick_interval=TICK) as running:
        yield running


@pytest.fixture
def peer(module_peer: ServiceBusPeer) -> ServiceBusPeer:
    """The module's peer, emptied for this test."""
    module_peer.reset()
    return module_peer
