"""The fixtures in servicebus_peer.testing, as other test packages will use them."""

from __future__ import annotations

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from servicebus_peer import QueueSpec, ServiceBusPeer
from servicebus_peer.testing import PeerFactory


async def test_the_product_peer_serves_the_async_sdk(
    servicebus_peer: ServiceBusPeer, servicebus_connection_string: str
) -> None:
    assert servicebus_connection_string == servicebus_peer.connection_string
    async with (
        ServiceBusClient.from_connection_string(servicebus_connection_string) as sb,
        sb.get_queue_sender("requests", keep_alive=0) as sender,
    ):
        await sender.send_messages(ServiceBusMessage('{"schemaVersion": 1}'))
    assert await servicebus_peer.wait_until_async(lambda: len(servicebus_peer.messages("requests")) == 1)
    assert servicebus_peer.broker.requires_session("reconcile")
    assert servicebus_peer.broker.entity("requests").spec.max_delivery_count == 5


def test_the_factory_starts_peers_with_custom_queues(servicebus_peer_factory: PeerFactory) -> None:
    one = servicebus_peer_factory([QueueSpec("a", lock_duration=1.0)])
    two = servicebus_peer_factory([QueueSpec("b")])
    assert one.port != two.port
    assert one.broker.queue_names() == ["a"]
    assert two.broker.queue_names() == ["b"]
