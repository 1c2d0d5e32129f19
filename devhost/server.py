"""The running host: the HTTP routes, queue listeners and timers of one app, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from aiohttp import web

from devhost.host import HostOptions, Keys, invoke
from devhost.http import build_app
from devhost.index import Index, ServiceBusFunction, TimerFunction
from devhost.servicebus import QueueListener, connection_string, message_from_input
from devhost.timers import TimerRunner

log = logging.getLogger("devhost")
ADMIN_REASON = "This function was programmatically called via the host APIs."


class DevHost:
    def __init__(self, index: Index, options: HostOptions, keys: Keys, settings: Mapping[str, str]) -> None:
        self.index, self.options, self.keys = index, options, keys
        # Connections are looked up before anything starts, so a missing setting stops nothing half-way.
        self._listeners = [
            QueueListener(f, connection_string(f, settings), options)
            for f in index.functions
            if isinstance(f, ServiceBusFunction)
        ]
        self._timers = {f.name: TimerRunner(f) for f in index.functions if isinstance(f, TimerFunction)}
        self._stopping = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self._web: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> str:
        """Starts everything; returns the base URL of the HTTP routes."""
        for listener in self._listeners:
            self._spawn(listener.run(self._stopping))
        for timer in self._timers.values():
            self._spawn(timer.run(self._stopping))
        self._web = web.AppRunner(
            build_app(self.index, self.keys, self.options.route_prefix, self.on_demand), access_log=None
        )
        await self._web.setup()
        site = web.TCPSite(self._web, host, port)
        await site.start()
        bound_host, bound_port = self._web.addresses[0][:2]
        return f"http://{bound_host}:{bound_port}"

    def on_demand(self, function: ServiceBusFunction | TimerFunction, given: str) -> None:
        """Runs a non-HTTP function now, in the background (the host's admin call answers 202 at once)."""
        if isinstance(function, TimerFunction):
            self._spawn(self._timers[function.name].fire(ADMIN_REASON, due=None))
        else:
            self._spawn(self._invoke_quietly(function, given))

    async def stop(self, grace: float = 30.0) -> None:
        """Stops taking work, lets invocations under way finish (up to `grace` seconds), closes everything."""
        self._stopping.set()
        if self._web is not None:
            await self._web.cleanup()
        if self._background:
            _, late = await asyncio.wait(self._background, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("devhost: a listener stopped: %r", task.exception())

    async def _invoke_quietly(self, function: ServiceBusFunction, given: str) -> None:
        with suppress(Exception):  # invoke logged it; an admin call has no message to settle
            await invoke(function, message_from_input(function, given), ADMIN_REASON)
