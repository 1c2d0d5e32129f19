"""A local AMQP 1.0 peer that the azure-servicebus SDK accepts as a Service Bus namespace (tests only)."""

from servicebus_peer.model import QueueSpec
from servicebus_peer.server import PeerMessage, ServiceBusPeer, running_peer

__all__ = ["PeerMessage", "QueueSpec", "ServiceBusPeer", "running_peer"]
