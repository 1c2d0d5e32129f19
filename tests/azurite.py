"""Azurite's table service for the tests: the real emulator from npm, in memory, on loopback.

Import the fixtures into a conftest:

    from tests.azurite import azurite_tables, table_settings  # noqa: F401

`azurite_tables` (session) starts one Azurite and yields its connection string;
`table_settings` (per test) gives the app settings pointing at it and deletes the
reconciler's tables afterwards, so every test starts from empty tables.
"""

from __future__ import annotations

import socket
import subprocess
import time
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
    process, port = start_azurite(tmp_path_factory.mktemp("azurite") / "azurite.log")
    try:
        yield connection_string(port)
    finally:
        stop_azurite(process)


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
