"""Azurite's table service for the tests: the real emulator from npm, in memory, on loopback.

Import the fixtures into a conftest:

    from tests.azurite import azurite_tables, table_settings  # noqa: F401

`azurite_tables` (session) starts one Azurite and yields its connection string;
`table_settings` (per test) gives the app settings pointing at it and deletes the
reconciler's tables afterwards, so every test starts from empty tables.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient

from reconciler.state.tables import (
    CLAIMS_TABLE,
    CONFIGS_TABLE,
    HISTORY_TABLE,
    INDEX_TABLE,
    PENDING_TABLE,
    REQUESTS_TABLE,
    STATUS_TABLE,
)

ROOT = Path(__file__).resolve().parents[1]
AZURITE_TABLE = ROOT / "node_modules" / ".bin" / "azurite-table"

# Azurite's well-known development account. The key is public (Microsoft documents it for the
# emulator) and opens nothing but a local emulator: it belongs in tests and local settings only.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

STARTUP_TIMEOUT = 20.0
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})
# Azurite's access log (its console output), one line per request: `... "METHOD /path HTTP/1.1" status -`
_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3})')
_access_logs: dict[str, Path] = {}  # connection string -> the log of the Azurite serving it


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_azurite(log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Starts azurite-table on a free port; returns the process and the port once it listens."""
    if not AZURITE_TABLE.exists():
        raise RuntimeError(f"{AZURITE_TABLE} is missing: run `bash scripts/bootstrap.sh` (npm ci)")
    for _ in range(3):  # another process may take the free port before Azurite binds it
        port = _free_port()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    str(AZURITE_TABLE),
                    "--tableHost",
                    "127.0.0.1",
                    "--tablePort",
                    str(port),
                    "--inMemoryPersistence",
                    "--disableTelemetry",
                    "--skipApiVersionCheck",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if _accepts_connections(port):
                return process, port
            time.sleep(0.05)
        stop_azurite(process)
    raise RuntimeError(f"Azurite did not start; its output:\n{log_path.read_text(errors='replace')}")


def stop_azurite(process: subprocess.Popen[bytes]) -> None:
    """Stops our Azurite by its PID (never by name: other sessions may run their own)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def azurite_tables(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Azurite table service for the whole test session; yields its connection string."""
    log_path = tmp_path_factory.mktemp("azurite") / "azurite.log"
    process, port = start_azurite(log_path)
    _access_logs[connection_string(port)] = log_path
    try:
        yield connection_string(port)
    finally:
        stop_azurite(process)


class TableRequests:
    """The requests Azurite served, from its access log: what the tests count table writes with, at
    the network boundary (a transaction is one `POST .../$batch`)."""

    def __init__(self, log_path: Path, port: int) -> None:
        self._log_path = log_path
        self._port = port
        self._start = 0

    @classmethod
    def of(cls, settings: dict[str, str]) -> TableRequests:
        connection = settings["WIF_TABLE_CONNECTION_STRING"]
        port = int(re.search(r"127\.0\.0\.1:(\d+)", connection).group(1))  # type: ignore[union-attr]
        return cls(_access_logs[connection], port)

    def mark(self) -> None:
        """Count from here on."""
        self._start = len(self._settled_lines())

    def since_mark(self) -> list[tuple[str, str]]:
        """(method, path) of every request served since mark(), up to now."""
        return [(method, path) for method, path, _ in self.answered_since_mark()]

    def answered_since_mark(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request served since mark(), up to now."""
        found = []
        for line in self._settled_lines()[self._start :]:
            match = _ACCESS_LINE.search(line)
            if match and "/sentinel-" not in match["path"]:
                found.append((match["method"], match["path"], int(match["status"])))
        return found

    def writes_since_mark(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self.since_mark() if method in WRITE_METHODS]

    def _settled_lines(self) -> list[str]:
        """The log once every request served so far is in it: Azurite logs a request when its response
        is done, a moment after the client has it. So send one of our own and wait for its line."""
        sentinel = f"sentinel-{uuid.uuid4().hex}"
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(
                f"http://127.0.0.1:{self._port}/{DEV_ACCOUNT}/{sentinel}", timeout=5
            ).close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            lines = self._lines()
            if any(sentinel in line for line in lines):
                return lines
            time.sleep(0.02)
        raise TimeoutError(f"Azurite did not log request {sentinel} within 5 s")

    def _lines(self) -> list[str]:
        return self._log_path.read_text(errors="replace").splitlines()


@pytest.fixture
def table_settings(azurite_tables: str) -> Iterator[dict[str, str]]:
    """App settings for Azurite; the reconciler's tables are deleted after the test.

    A plain (sync) fixture, so that sync tests (the CLI's) can use it as well as async ones.
    """
    yield {"WIF_TABLE_CONNECTION_STRING": azurite_tables}
    with TableServiceClient.from_connection_string(azurite_tables) as service:
        tables = (CONFIGS_TABLE, STATUS_TABLE, REQUESTS_TABLE, CLAIMS_TABLE, INDEX_TABLE, HISTORY_TABLE)
        for table in (*tables, PENDING_TABLE):
            service.delete_table(table)
