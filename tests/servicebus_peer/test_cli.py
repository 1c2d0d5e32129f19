"""`python -m servicebus_peer serve`: usable by the SDK, clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

ROOT = Path(__file__).resolve().parents[2]


def start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "servicebus_peer", "serve", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def served() -> Iterator[subprocess.Popen[str]]:
    process = start("--queue", "requests", "--session-queue", "reconcile")
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_serve_prints_a_connection_string_the_sdk_accepts_and_stops_on_sigterm(
    served: subprocess.Popen[str],
) -> None:
    assert served.stdout is not None
    connection_string = served.stdout.readline().strip()
    assert connection_string.startswith("Endpoint=sb://127.0.0.1:")
    assert connection_string.endswith("UseDevelopmentEmulator=true")
    with (
        ServiceBusClient.from_connection_string(connection_string, retry_total=0) as sb,
        sb.get_queue_sender("reconcile", keep_alive=0) as sender,
    ):
        sender.send_messages(ServiceBusMessage("from the CLI test", session_id="s"))
    served.send_signal(signal.SIGTERM)
    _, err = served.communicate(timeout=5)
    assert served.returncode == 0
    assert "stopped" in err


def test_serve_stops_on_sigint(served: subprocess.Popen[str]) -> None:
    assert served.stdout is not None
    assert served.stdout.readline().startswith("Endpoint=")
    served.send_signal(signal.SIGINT)
    served.communicate(timeout=5)
    assert served.returncode == 0


def test_serve_needs_a_queue() -> None:
    process = start()
    _, err = process.communicate(timeout=10)
    assert process.returncode == 2
    assert "--queue" in err
