"""The peer's lifecycle: start, stop, crashes surfaced."""

from __future__ import annotations

import socket
import time

import pytest

from servicebus_peer import QueueSpec, ServiceBusPeer


def test_the_peer_listens_on_loopback_and_stops_listening_when_stopped() -> None:
    peer = ServiceBusPeer([QueueSpec("q")]).start()
    try:
        assert peer.connection_string.startswith(f"Endpoint=sb://127.0.0.1:{peer.port};")
        with socket.create_connection(("127.0.0.1", peer.port), timeout=1):
            pass
    finally:
        peer.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", peer.port), timeout=1):
        pass


def test_a_crash_inside_the_peer_fails_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    peer = ServiceBusPeer([QueueSpec("q")]).start()

    def broken_tick() -> None:
        raise ValueError("bug in the peer")

    monkeypatch.setattr(peer.broker, "tick", broken_tick)
    time.sleep(0.2)  # a few ticks
    with pytest.raises(RuntimeError, match="bug in the peer"):
        peer.stop()
