"""The worker builds its service once, under a lock: concurrent first invocations wait for it. The
host runs one event loop; the lock must still serve a later loop (each test runs its own)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cloudsim.testing import RunningSimulator
from reconciler.app import context as app_context
from reconciler.app.service import ReconcilerService
from servicebus_peer import ServiceBusPeer
from tests.app_settings import settle_app_settings

POLICY = """apiVersion: wif-reconciler/v1
kind: GrantPolicy
organizations: [contoso]
roles: [Key Vault Reader]
scopes: [/subscriptions/*/resourceGroups/*]
"""


async def first_invocations() -> list[ReconcilerService]:
    """Two invocations arriving together on a fresh worker (the second waits on the lock while the
    first opens the tables), then the worker is closed again."""
    try:
        return list(await asyncio.gather(app_context.service(), app_context.service()))
    finally:
        await app_context.reset()


async def test_concurrent_first_invocations_share_one_service_in_every_event_loop(
    cloud_env: RunningSimulator,
    table_settings: dict[str, str],
    servicebus_peer: ServiceBusPeer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    await settle_app_settings(
        monkeypatch, tmp_path, policy=POLICY, table_settings=table_settings, peer=servicebus_peer
    )
    here = await first_invocations()
    elsewhere = await asyncio.to_thread(asyncio.run, first_invocations())  # another event loop
    for services in (here, elsewhere):
        assert len(services) == 2 and services[0] is services[1]
    assert here[0] is not elsewhere[0]  # reset in between: built again
