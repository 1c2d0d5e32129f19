"""What every simulated API shares: requests and replies, routing, counters, faults, audience checks.

Handlers take a `Call` (a parsed request) and return a `Reply`. Keeping HTTP at
the edge lets Graph's `$batch` run its sub-requests through the same routes,
counters and throttling as top-level requests.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from cloudsim import tokens
from cloudsim.faults import Faults, FaultState
from cloudsim.state import JsonObject, World


class _Empty:
    """Marks a reply without a body (a JSON `null` body is a real answer in ADO)."""


EMPTY: Any = _Empty()


@dataclass
class Call:
    method: str
    path: str  # percent-decoded, without the query
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any  # parsed JSON, or None
    base_url: str  # scheme://host:port of the listener, for nextLink
    in_batch: bool = False


@dataclass
class Reply:
    status: int
    body: Any = EMPTY
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    raw: bytes | None = None  # a non-JSON body (Content-Type in headers)


class ApiError(Exception):
    """A refusal with the API's own status and error code; `Api.serve` renders it in the API's error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


Handler = Callable[[Call, "re.Match[str]"], Reply | Awaitable[Reply]]
ErrorFactory = Callable[[int, str, str], Reply]
Precondition = Callable[[Call, "Route"], None]  # raises ApiError to refuse a request
ChangeHook = Callable[[str, str, Call, "re.Match[str]", Reply], None]  # api, operation, call, match, reply


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    operation: str  # the name request counters use
    write: bool


class RouteTable:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, operation: str, handler: Handler) -> None:
        write = method not in ("GET", "HEAD")
        self.routes.append(Route(method, re.compile(pattern, re.IGNORECASE), handler, operation, write))

    def match(self, method: str, path: str) -> tuple[Route, re.Match[str]] | None:
        for route in self.routes:
            if route.method == method:
                found = route.pattern.fullmatch(path)
                if found:
                    return route, found
        return None


class RequestCounters:
    """Requests per API and operation, reads and writes apart; per API also the requests answered
    429 (`throttled`) and the resource units charged to the requests that were served."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, bool]] = Counter()
        self._throttled: Counter[str] = Counter()
        self._units: Counter[str] = Counter()

    def count(self, api: str, operation: str, write: bool) -> None:
        self._counts[(api, operation, write)] += 1

    def answered(self, api: str, status: int, units: int) -> None:
        if status == 429:
            self._throttled[api] += 1
        else:
            self._units[api] += units

    def reset(self) -> None:
        self._counts.clear()
        self._throttled.clear()
        self._units.clear()

    def snapshot(self) -> JsonObject:
        report: JsonObject = {}
        for (api, operation, write), n in sorted(self._counts.items()):
            entry = report.setdefault(
                api,
                {
                    "reads": 0,
                    "writes": 0,
                    "throttled": self._throttled[api],
                    "resourceUnits": self._units[api],
                    "operations": {},
                },
            )
            kind = "writes" if write else "reads"
            entry[kind] += n
            entry["operations"].setdefault(operation, {"reads": 0, "writes": 0})[kind] += n
        return report


CostRule = Callable[[Call, Route], int]
# The service's own rate limit (cloudsim.limits): None to go ahead, or the seconds to wait and
# extra headers for its 429.
# A rate limit's answer: None (serve), (seconds to wait, headers) for a 429, or a Slowdown (serve
# late, with these headers: Azure DevOps delays a caller over its budget before it refuses one).
LimitRule = Callable[[Call, Route, int], "tuple[int, dict[str, str]] | Slowdown | None"]


@dataclass(frozen=True)
class Slowdown:
    delay_s: float
    headers: dict[str, str]


class Api:
    """One simulated service: its routes, the audience its tokens need, its faults and error shape."""

    def __init__(
        self,
        name: str,
        world: World,
        counters: RequestCounters,
        error: ErrorFactory,
        audiences: frozenset[str] | None,
        *,
        cost: CostRule | None = None,
    ) -> None:
        self.name = name
        self.world = world
        self.counters = counters
        self.error = error
        self.audiences = audiences  # None: no bearer token needed
        self.cost = cost or (lambda _call, _route: 1)
        self.routes = RouteTable()
        self.faults = FaultState(Faults())
        self.reports_resource_units = False  # Graph's x-ms-resource-unit headers
        # The share of the rate limits' budget in use (cloudsim/limits.py), for those headers.
        self.budget_percent: Callable[[], int] = lambda: 0
        self.precondition: Precondition | None = None  # e.g. ARM's and ADO's api-version checks
        self.limit: LimitRule | None = None
        # How the service answers a token it does not accept, when not with the 401 it is given.
        self.token_refused: Callable[[Call, Reply], Reply] | None = None
        # The admin API answers malformed input with 400 instead of failing with 500.
        self.input_errors_are_bad_requests = False
        # Told of every write's reply (cloudsim/events.py emits Azure's events from them).
        self.on_change: ChangeHook | None = None

    def visible(self, created_at: float) -> bool:
        return self.faults.visible(created_at)

    def readable(self, created_at: float) -> bool:
        return self.faults.readable(created_at)

    async def serve(self, call: Call) -> Reply:
        found = self.routes.match(call.method, call.path)
        if found is None:
            self.counters.count(self.name, "unknown", call.method not in ("GET", "HEAD"))
            return self.error(404, "NotFound", f"No {self.name} API matches {call.method} {call.path}.")
        route, match = found
        self.counters.count(self.name, route.operation, route.write and not _reads_only(call))
        # The network comes first (latency, dropped connections), then authentication, then
        # the service's own failures and throttling.
        if not call.in_batch:
            if await self._network_faults(route.operation, _target(call)):
                return Reply(0, drop=True)
            if self.audiences is not None:
                refusal = self._check_token(call)
                if refusal is not None:
                    return self.token_refused(call, refusal) if self.token_refused else refusal
        units = self.cost(call, route)
        slowdown: Slowdown | None = None
        reply = self._service_faults(route.operation, _target(call), units)
        if reply is None:
            limited = self.limit(call, route, units) if self.limit is not None else None
            if isinstance(limited, Slowdown):
                slowdown = limited
                await asyncio.sleep(limited.delay_s)
            elif limited is not None:
                reply = self._throttled(*limited)
        if reply is None:
            reply = await self._handle(route, call, match)
            if slowdown is not None:
                reply.headers.update(slowdown.headers)
        self.counters.answered(self.name, reply.status, units)
        if self.on_change is not None and route.write:
            self.on_change(self.name, route.operation, call, match, reply)
        if self.reports_resource_units:
            reply.headers["x-ms-resource-unit"] = str(units)
            used = max(self.budget_percent(), self.faults.usage_percent())
            reply.headers["x-ms-throttle-limit-percentage"] = str(used)
        return reply

    async def _handle(self, route: Route, call: Call, match: re.Match[str]) -> Reply:
        try:
            if self.precondition is not None:
                self.precondition(call, route)
            reply = route.handler(call, match)
            return await reply if inspect.isawaitable(reply) else reply
        except ApiError as error:
            return self.error(error.status, error.code, error.message)
        except (KeyError, TypeError, ValueError) as error:
            if not self.input_errors_are_bad_requests:
                raise
            return self.error(400, "BadRequest", f"Invalid request: {error!r}")

    async def _network_faults(self, operation: str, target: str) -> bool:
        """Wait the injected latency; True when this connection is to be dropped."""
        delay = self.faults.delay_s()
        if delay:
            await asyncio.sleep(delay)
        return self.faults.should_drop(operation, target)

    def _service_faults(self, operation: str, target: str, units: int) -> Reply | None:
        faults = self.faults
        status = faults.random_error(operation, target)
        if status is not None:
            return self._failure(status, faults.faults.retry_after_s)
        wait = faults.charge(units)
        if wait is not None:
            return self._failure(429, wait)
        return None

    def _throttled(self, wait: int, headers: dict[str, str]) -> Reply:
        reply = self._failure(429, wait)
        reply.headers.update(headers)
        return reply

    def _failure(self, status: int, retry_after: int) -> Reply:
        codes = {429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable"}
        messages = {
            429: "Too many requests. Please try again later.",
            500: "An internal server error occurred.",
            503: "The service is temporarily unavailable.",
        }
        reply = self.error(status, codes.get(status, "Error"), messages.get(status, "Simulated failure."))
        if status == 429:  # a 503 comes without Retry-After: the client picks its own backoff
            reply.headers["Retry-After"] = (
                format_datetime(datetime.now(UTC) + timedelta(seconds=retry_after), usegmt=True)
                if self.faults.faults.retry_after_date
                else str(retry_after)
            )
        return reply

    def _check_token(self, call: Call) -> Reply | None:
        assert self.audiences is not None
        problem = tokens.check_bearer(call.headers.get("Authorization"), self.audiences)
        if problem is None:
            return None
        reply = self.error(401, problem.code, problem.message)
        reply.headers["WWW-Authenticate"] = (
            f'Bearer authorization_uri="https://login.microsoftonline.com/{self.world.tenant_id}", '
            f'error="invalid_token", error_description="{problem.message}"'
        )
        return reply


def _target(call: Call) -> str:
    """What `Faults.matching` looks in: the path and the query's values."""
    return " ".join([call.path, *call.query.values()])


def _reads_only(call: Call) -> bool:
    """A Graph $batch whose requests are all GETs is a read, as the clients count it."""
    steps = call.body.get("requests") if isinstance(call.body, dict) else None
    if not call.path.endswith("/$batch") or not isinstance(steps, list):
        return False
    return all(isinstance(s, dict) and str(s.get("method", "GET")).upper() == "GET" for s in steps)
