"""The service the Functions triggers share: built once per worker process from the app settings.

One of everything per process, reused by every invocation: one credential (so one token cache),
the table clients, the Service Bus senders and one engine, whose Graph, ARM and ADO clients keep
their connection pools open between messages. reset() closes all of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from contextlib import AsyncExitStack, nullcontext
from pathlib import Path

from azure.core.exceptions import AzureError

from reconciler.adapters.pacing import Budgets
from reconciler.app import telemetry
from reconciler.app.events import EventSettings
from reconciler.app.service import ReconcilerService, sweep_finds_orphans
from reconciler.cloud import CloudError, cloud_from_settings
from reconciler.documents import InputError, load_policy
from reconciler.engine.run import EngineOptions, connect, default_credential
from reconciler.failures import Failure
from reconciler.state.queues import Queues, QueueSettingsError
from reconciler.state.stores import open_stores

log = logging.getLogger("reconciler")
_built: tuple[ReconcilerService, AsyncExitStack] | None = None
# An asyncio.Lock belongs to the event loop that first waits on it. The host runs one loop; tests
# run one per test, so the lock is made anew for each loop (a lock of another loop would raise).
_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None


def _start_up_lock() -> asyncio.Lock:
    global _lock  # noqa: PLW0603 - one lock per event loop of the worker process
    loop = asyncio.get_running_loop()
    if _lock is None or _lock[0] is not loop:
        _lock = (loop, asyncio.Lock())
    return _lock[1]


class ServiceUnavailable(Exception):
    """The service could not be built. `str()` is one line for the logs, saying what to fix;
    `public` is what an HTTP caller may be told (no setting values, no hosts)."""

    def __init__(self, message: str, *, public: str, temporary: bool) -> None:
        super().__init__(message)
        self.public = public
        self.temporary = temporary  # a store was unreachable: the next invocation may succeed


async def service() -> ReconcilerService:
    """The worker's service, built on first use.

    A wrong setting or an unreachable store is logged as one line and raised as
    ServiceUnavailable (without the SDK's traceback): a Service Bus trigger must raise so that
    the message is delivered again, and the next invocation tries to build the service again.
    """
    global _built  # noqa: PLW0603 - one service per worker process
    async with _start_up_lock():
        if _built is None:
            try:
                _built = await build_service(os.environ)
            except (InputError, CloudError, QueueSettingsError) as error:
                raise _unavailable(f"a setting is wrong: {_first_line(error)}", temporary=False) from None
            except (Failure, AzureError, OSError) as error:
                raise _unavailable(
                    f"a store could not be reached: {_first_line(error)}", temporary=True
                ) from None
    return _built[0]


def _unavailable(problem: str, *, temporary: bool) -> ServiceUnavailable:
    message = f"the reconciler service could not start, {problem}"
    log.error(message)
    public = "a store could not be reached" if temporary else "the app's settings are wrong"
    return ServiceUnavailable(
        message, public=f"the service could not start: {public}; see its logs", temporary=temporary
    )


def _first_line(error: BaseException) -> str:
    """One line: every problem of an InputError, else the message up to its first line break."""
    if isinstance(error, InputError):
        return "; ".join(error.problems)
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


async def reset() -> None:
    """Close and forget the service (tests build one per event loop; settings may change)."""
    global _built  # noqa: PLW0603
    async with _start_up_lock():
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
    event_settings = EventSettings.from_settings(settings)
    find_orphans = sweep_finds_orphans(settings)
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
        telemetry.watch(engine.meter)
        opened.callback(telemetry.unwatch, engine.meter)
    except BaseException:
        await opened.aclose()  # a half-built service leaves nothing open
        raise
    # Every invocation borrows the one engine; only reset() closes it.
    return (
        ReconcilerService(
            stores,
            queues,
            policy,
            lambda: nullcontext(engine),
            event_settings=event_settings,
            find_orphans=find_orphans,
        ),
        opened,
    )
