"""The service the Functions triggers share, built once per worker process from the app settings."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

from reconciler.app.service import ReconcilerService
from reconciler.cloud import cloud_from_settings
from reconciler.documents import load_policy
from reconciler.engine.run import connect, default_credential
from reconciler.state.queues import Queues
from reconciler.state.stores import Stores, open_stores

_built: tuple[ReconcilerService, Stores, Queues] | None = None
_lock = asyncio.Lock()


async def service() -> ReconcilerService:
    """The worker's service, built on first use: clients and their connection pools are reused."""
    global _built  # noqa: PLW0603 - one service per worker process
    async with _lock:
        if _built is None:
            _built = await build_service(os.environ)
    return _built[0]


async def reset() -> None:
    """Close and forget the service (tests build one per event loop; settings may change)."""
    global _built  # noqa: PLW0603
    async with _lock:
        if _built is not None:
            _service, stores, queues = _built
            _built = None
            await stores.close()
            await queues.close()


async def build_service(settings: Mapping[str, str]) -> tuple[ReconcilerService, Stores, Queues]:
    """Policy, cloud, credential, stores and queues from the settings (local.settings.sample.json lists them).

    The credential is DefaultAzureCredential: the user-assigned managed identity named by
    AZURE_CLIENT_ID in Azure, the simulator's token endpoint locally.
    """
    policy = load_policy(Path(settings.get("WIF_POLICY_FILE") or "policy.yaml"))
    cloud = cloud_from_settings(settings)
    credential = default_credential(cloud)
    stores = await open_stores(settings, credential)
    queues = Queues.from_settings(settings)
    engine = ReconcilerService(stores, queues, policy, lambda: connect(cloud, policy, credential=credential))
    return engine, stores, queues
