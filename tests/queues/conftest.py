"""The queues against the Service Bus peer: one per test module, emptied before each test."""

from tests.peer import module_peer, peer

__all__ = ["module_peer", "peer"]
