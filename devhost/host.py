"""What the Functions host provides around a function: host.json options, keys, invocation and logs.

An invocation calls the user function with its trigger argument by binding name: an `async def`
on the event loop, a plain `def` on a worker thread (as the Python worker does), logged in the
host's words ("Executing 'Functions.x' ..." / "Executed 'Functions.x' (Succeeded|Failed ...)").
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from devhost.index import Served

log = logging.getLogger("devhost")
T = TypeVar("T")
TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")  # [d.]hh:mm:ss[.fff]
LOG_LEVELS = {
    "trace": logging.DEBUG, "debug": logging.DEBUG, "information": logging.INFO,
    "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL,
    "none": logging.CRITICAL + 1,
}  # fmt: skip


class HostJsonError(ValueError):
    pass


@dataclass(frozen=True)
class HostOptions:
    """The parts of host.json devhost honours (defaults: the host's)."""

    route_prefix: str = "api"
    max_concurrent_calls: int = 16  # the host's default is 16 per core
    max_concurrent_sessions: int = 8
    max_message_batch_size: int = 1000  # messages per invocation of a `cardinality="many"` trigger
    session_idle_timeout: float = 60.0  # the SDK's default wait for the next message of a session
    # How long accepting the next session waits for one with messages (the SDK's TryTimeout: its
    # AcceptNextSession times out after it), so an idle receiver stays attached, ready.
    try_timeout: float = 60.0
    max_auto_lock_renewal: float = 300.0
    log_levels: Mapping[str, int] | None = None

    @classmethod
    def read(cls, path: Path) -> HostOptions:
        if not path.exists():
            return cls()
        try:
            document = json.loads(path.read_text(encoding="utf-8-sig"))
            extensions = document.get("extensions", {})
            bus = extensions.get("serviceBus", {})
            levels = document.get("logging", {}).get("logLevel", {})
            if bus.get("autoCompleteMessages", True) is not True:
                raise ValueError("autoCompleteMessages: devhost settles messages as the host does with true")
            return cls(
                route_prefix=str(extensions.get("http", {}).get("routePrefix", cls.route_prefix)).strip("/"),
                max_concurrent_calls=int(bus.get("maxConcurrentCalls", cls.max_concurrent_calls)),
                max_concurrent_sessions=int(bus.get("maxConcurrentSessions", cls.max_concurrent_sessions)),
                max_message_batch_size=int(bus.get("maxMessageBatchSize", cls.max_message_batch_size)),
                session_idle_timeout=_seconds(bus.get("sessionIdleTimeout"), cls.session_idle_timeout),
                try_timeout=_seconds(bus.get("clientRetryOptions", {}).get("tryTimeout"), cls.try_timeout),
                max_auto_lock_renewal=_seconds(
                    bus.get("maxAutoLockRenewalDuration"), cls.max_auto_lock_renewal
                ),
                log_levels={name: LOG_LEVELS[str(level).lower()] for name, level in levels.items()},
            )
        except (OSError, ValueError, AttributeError, KeyError, TypeError) as error:
            raise HostJsonError(f"{path}: {error!r:.300}") from None

    def apply_log_levels(self) -> None:
        """host.json's logging.logLevel on the Python loggers: `default` on the root, others by name."""
        for name, level in (self.log_levels or {}).items():
            logging.getLogger(None if name == "default" else name).setLevel(level)
        log.setLevel(logging.INFO)  # devhost's own lines stand in for the host's, always shown


def _seconds(value: object, default: float) -> float:
    if value is None:
        return default
    match = TIMESPAN.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a TimeSpan like 00:05:00")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class Keys:
    """The host's keys: a function key opens FUNCTION-level routes; the master key opens everything."""

    function: str
    master: str

    @classmethod
    def generate(cls) -> Keys:
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32))


async def invoke(function: Served, argument: Any, reason: str) -> Any:
    """Calls the function with its trigger argument; returns its result or raises its exception."""
    invocation_id = uuid.uuid4()
    log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", function.name, reason, invocation_id)
    started = time.perf_counter()
    try:
        call = function.handler
        if inspect.iscoroutinefunction(call):
            result = await call(**{function.arg_name: argument})
        else:
            result = await asyncio.to_thread(call, **{function.arg_name: argument})
    except Exception:
        elapsed = (time.perf_counter() - started) * 1000
        log.exception(
            "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms)", function.name, invocation_id, elapsed
        )
        raise
    elapsed = (time.perf_counter() - started) * 1000
    log.info(
        "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)", function.name, invocation_id, elapsed
    )
    return result


async def until_stopped(stopping: asyncio.Event, awaitable: Awaitable[T]) -> T | None:
    """The awaitable's result, or None (and the awaitable cancelled) if `stopping` is set first."""
    task: asyncio.Future[T] = asyncio.ensure_future(awaitable)
    stop: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return task.result() if not task.cancelled() else None
