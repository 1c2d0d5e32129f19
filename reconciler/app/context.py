"""The service the Functions triggers share: built once per worker process from the app settings.

One of everything per process, reused by every invocation: one credential (so one token cache),
the table clients, the Service Bus senders and one engine, whose Graph, ARM and ADO clients keep
their connection pools open between messages. reset() closes all of it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from contextlib import AsyncExitStack, nullcontext
from pathlib import Path

from reconciler.adapters.pacing import Budgets
from reconciler.app.service import ReconcilerService
from reconciler.cloud import cloud_from_settings
from reconciler.documents import load_policy
from reconciler.engine.run import EngineOptions, connect, default_credential
from reconciler.state.queues import Queues
from reconciler.state.stores import open_stores

_built: tuple[ReconcilerService, AsyncExitStack] | None = None
_lock = asyncio.Lock()


async def service() -> ReconcilerService:
    """The worker's service, built on first use."""
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
            _service, opened = _built
            _built = None
            await opened.aclose()


async def build_service(settings: Mapping[str, str]) -> tuple[ReconcilerService, AsyncExitStack]:
    """The service, and what closes everything it opened (local.settings.sample.json lists the settings).

    The credential is DefaultAzureCredential: the user-assigned managed identity named by
    AZURE_CLIENT_ID in Azure (infra gives ServiceBusConnection__clientId the same identity), the
    simulator's token endpoint locally. Tables, Service Bus and the engine share it.
    """
    policy = load_policy(Path(settings.get("WIF_POLICY_FILE") or "policy.yaml"))
    cloud = cloud_from_settings(settings)
    opened = AsyncExitStack()
    try:
        credential = default_credential(cloud)
        opened.push_async_callback(credential.close)
        stores = await open_stores(settings, credential)
        opened.push_async_callback(stores.close)
        queues = Queues.from_settings(settings, credential=credential)
        opened.push_async_callback(queues.close)
        options = EngineOptions(budgets=Budgets.from_settings(settings))
        engine = await opened.enter_async_context(
            connect(cloud, policy, credential=credential, options=options)
        )
    except BaseException:
        await opened.aclose()  # a half-built service leaves nothing open
        raise
    # Every invocation borrows the one engine; only reset() closes it.
    return ReconcilerService(stores, queues, policy, lambda: nullcontext(engine)), opened
