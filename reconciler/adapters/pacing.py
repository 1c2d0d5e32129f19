"""Client-side pacing: the adapters stay under each API's documented budget instead of running into 429s.

Each API throttles by its own measure (shared/design/azure-contracts.md):

- Graph: resource units per app and tenant per 10 s (3,500 / 5,000 / 8,000 by tenant size; reading
  applications costs 2, other reads 1, +1 with `$expand`, -1 with `$select`, writes 1; a `$batch`
  is charged through the requests inside it), and 3,000 writes per 150 s;
- ARM: a token bucket per subscription (and principal and region): reads 250 burst refilling
  25 a second, writes and deletes 200 refilling 10 a second;
- Azure DevOps: 200 TSTUs in a sliding 5 minutes; what one request costs is not published, so the
  budget is set in requests (4,000: 0.05 TSTU per request, an assumption); a `Retry-After` on any
  of its answers holds the next requests (AdoPacingPolicy).

The pacers sit in the SDKs' own pipelines (a kiota middleware for Graph, an azure-core policy for
ARM and ADO), after the retry step, so every attempt is paced; a 429 that still happens (another
client spending the same budget) is the SDK's retry to handle, honouring Retry-After. They spend
only a share of each budget (PACE_SHARE: a request's arrival at the service lags its departure
by a varying delay), and low-priority Graph requests (the sweeps) stop at LOW_PRIORITY_SHARE,
below the 80% from which Graph throttles them first. Budgets are per process: several processes
sharing one identity (Function App instances, a person's CLI) should each be given their share.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy
from kiota_http.middleware.middleware import BaseMiddleware

from reconciler.cloud import CloudError
from reconciler.failures import retry_after_seconds

PACE_SHARE = 0.9  # of each budget: the rest absorbs the varying delay between client and service
LOW_PRIORITY_SHARE = 0.75  # of Graph's window for `x-ms-throttle-priority: low` (Graph: from 80%)
GRAPH_WINDOW_S = 10.0
GRAPH_WRITES_WINDOW_S = 150.0
ADO_WINDOW_S = 300.0
MIN_RATE = 0.01  # requests per second: one every 100 s; a slower "rate" is a typo, not a budget
_SUBSCRIPTION = re.compile(r"/subscriptions/([^/?]+)", re.IGNORECASE)
_READS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Budgets:
    """What each API allows one identity (the defaults are Azure's documented figures); 0 turns one off."""

    graph_units_per_10s: float = 3500  # the smallest tenants' budget; 5,000 or 8,000 for bigger ones
    graph_writes_per_150s: float = 3000
    arm_reads_burst: float = 250
    arm_reads_per_second: float = 25
    arm_writes_burst: float = 200
    arm_writes_per_second: float = 10
    ado_requests_per_5min: float = 4000  # 200 TSTUs at an assumed 0.05 TSTU per request

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> Budgets:
        """The budgets from the app settings (local.settings.sample.json); one absent or empty keeps
        its default."""
        values: dict[str, float] = {}
        for field_name, setting in _SETTINGS.items():
            raw = (settings.get(setting) or "").strip()
            if raw:
                least = MIN_RATE if field_name.endswith("per_second") else 1.0
                values[field_name] = _off_or_at_least(setting, raw, least)
        return cls(**values)


GRAPH_UNITS_SETTING = "WIF_GRAPH_UNITS_PER_10S"
GRAPH_WRITES_SETTING = "WIF_GRAPH_WRITES_PER_150S"
ARM_READS_BURST_SETTING = "WIF_ARM_READS_BURST"
ARM_READS_RATE_SETTING = "WIF_ARM_READS_PER_SECOND"
ARM_WRITES_BURST_SETTING = "WIF_ARM_WRITES_BURST"
ARM_WRITES_RATE_SETTING = "WIF_ARM_WRITES_PER_SECOND"
ADO_REQUESTS_SETTING = "WIF_ADO_REQUESTS_PER_5MIN"
_SETTINGS = {
    "graph_units_per_10s": GRAPH_UNITS_SETTING,
    "graph_writes_per_150s": GRAPH_WRITES_SETTING,
    "arm_reads_burst": ARM_READS_BURST_SETTING,
    "arm_reads_per_second": ARM_READS_RATE_SETTING,
    "arm_writes_burst": ARM_WRITES_BURST_SETTING,
    "arm_writes_per_second": ARM_WRITES_RATE_SETTING,
    "ado_requests_per_5min": ADO_REQUESTS_SETTING,
}
AZURE_BUDGETS = Budgets()
# No pacing at all: only against a simulator started lenient (limits off), as some benchmarks do.
UNLIMITED = Budgets(0, 0, 0, 0, 0, 0, 0)


def _off_or_at_least(name: str, raw: str, least: float) -> float:
    """0 (off), or a finite number of at least `least`: a smaller budget is never met (a bucket of 0.5
    requests never holds the one a request takes), and would make every request wait forever."""
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or (value != 0 and value < least):
        raise CloudError(
            f"{name}: expected 0 (turns the budget off) or a number of at least {least:g}, got {raw!r:.40}"
        )
    return value


class SlidingWindow:
    """At most `budget` units spent in any `window_s` seconds; spend() waits until they fit."""

    def __init__(self, budget: float, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget, self.window_s, self._clock = budget, window_s, clock
        self._spent: deque[tuple[float, float]] = deque()
        self._total = 0.0

    async def spend(self, units: float, share: float = PACE_SHARE) -> None:
        if self.budget <= 0:
            return
        ceiling = self.budget * share
        units = min(units, ceiling)  # a request dearer than the ceiling waits for an empty window
        while True:
            now = self._clock()
            self._expire(now)
            if self._total + units <= ceiling:
                self._spent.append((now, units))
                self._total += units
                return
            await asyncio.sleep(self._wait(now, self._total + units - ceiling))

    def _expire(self, now: float) -> None:
        while self._spent and now - self._spent[0][0] >= self.window_s:
            self._total -= self._spent.popleft()[1]

    def _wait(self, now: float, excess: float) -> float:
        """Seconds until the oldest spends that cover `excess` leave the window."""
        freed = 0.0
        for at, units in self._spent:
            freed += units
            if freed >= excess:
                return max(0.001, at + self.window_s - now)
        return self.window_s


class TokenBucket:
    """ARM's rule: `burst` tokens, refilled at `per_second`; take() waits for a token."""

    def __init__(self, burst: float, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        # At least one token: a burst of 1 (90% of it is 0.9) still lets one request through at a time.
        self.burst = max(1.0, burst * PACE_SHARE) if burst > 0 else 0.0
        self.per_second, self._clock = per_second * PACE_SHARE, clock
        self._tokens, self._at = self.burst, clock()

    async def take(self) -> None:
        if self.burst <= 0 or self.per_second <= 0:
            return
        while True:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await asyncio.sleep((1 - self._tokens) / self.per_second)


# ---------------------------------------------------------------- Graph


def graph_request_units(method: str, url: str) -> int:
    """Resource units one Graph request costs (identity and access table): reading applications 2,
    other reads 1, +1 with `$expand`, -1 with `$select` (never below 1); writes 1."""
    if method.upper() not in _READS:
        return 1
    parts = urlsplit(url)
    path = parts.path.lower().removeprefix("/v1.0").removeprefix("/beta")
    query = parse_qs(parts.query)
    units = 2 if path.startswith("/applications") else 1
    units += "$expand" in query
    units -= "$select" in query
    return max(1, units)


def graph_batch_units(body: bytes) -> tuple[int, int]:
    """The resource units and the writes of the requests inside a `$batch` body."""
    try:
        requests = json.loads(body or b"{}").get("requests", [])
    except (ValueError, AttributeError):
        return 1, 1
    units = writes = 0
    for item in requests if isinstance(requests, list) else []:
        method = str(item.get("method", "GET")) if isinstance(item, dict) else "GET"
        units += graph_request_units(method, str(item.get("url", "")) if isinstance(item, dict) else "")
        writes += method.upper() not in _READS
    return units, writes


class GraphPacer:
    """Graph's two budgets for this process: resource units per 10 s, writes per 150 s."""

    def __init__(self, budgets: Budgets) -> None:
        self.units = SlidingWindow(budgets.graph_units_per_10s, GRAPH_WINDOW_S)
        self.writes = SlidingWindow(budgets.graph_writes_per_150s, GRAPH_WRITES_WINDOW_S)

    async def pace(self, request: httpx.Request) -> None:
        if request.url.path.endswith("/$batch"):
            units, writes = graph_batch_units(request.content)
            # The batch's requests carry the pass's priority each; the outer request carries it too.
        else:
            units = graph_request_units(request.method, str(request.url))
            writes = int(request.method.upper() not in _READS)
        low = request.headers.get("x-ms-throttle-priority", "").lower() == "low"
        if writes:
            await self.writes.spend(writes)
        await self.units.spend(units, LOW_PRIORITY_SHARE if low else PACE_SHARE)


class GraphPacingHandler(BaseMiddleware):
    """A kiota middleware, last before the transport (after the retry handler): paces every attempt."""

    def __init__(self, pacer: GraphPacer) -> None:
        super().__init__()
        self._pacer = pacer

    async def send(self, request: httpx.Request, transport: httpx.AsyncBaseTransport) -> httpx.Response:
        await self._pacer.pace(request)
        return await super().send(request, transport)


# ---------------------------------------------------------------- ARM and Azure DevOps


class ArmPacingPolicy(AsyncHTTPPolicy):  # type: ignore[type-arg]
    """An azure-core policy (per retry) keeping ARM's token buckets: one per subscription, reads and
    writes apart, as ARM keeps them for one principal in one region."""

    def __init__(self, budgets: Budgets) -> None:
        super().__init__()
        self._budgets = budgets
        self._buckets: dict[tuple[str, bool], TokenBucket] = {}

    async def send(self, request: PipelineRequest) -> PipelineResponse:  # type: ignore[type-arg]
        http = request.http_request
        write = http.method.upper() not in _READS
        found = _SUBSCRIPTION.search(urlsplit(http.url).path)
        key = (found.group(1).lower() if found else "", write)
        bucket = self._buckets.get(key)
        if bucket is None:
            b = self._budgets
            bucket = (
                TokenBucket(b.arm_writes_burst, b.arm_writes_per_second)
                if write
                else TokenBucket(b.arm_reads_burst, b.arm_reads_per_second)
            )
            self._buckets[key] = bucket
        await bucket.take()
        response: Any = await self.next.send(request)
        return response  # type: ignore[no-any-return]


class AdoPacingPolicy(AsyncHTTPPolicy):  # type: ignore[type-arg]
    """An azure-core policy (per retry) keeping Azure DevOps' sliding 5-minute window, in requests,
    and holding every request back while ADO has asked to wait.

    Over its budget ADO first delays requests and puts `Retry-After` on the answers it still gives
    (200s included), answering 429 only later: "If you detect a Retry-After header in any response,
    wait until that amount of time has passed before sending another request" (learn.microsoft.com
    azure-devops integrate concepts rate-limits). azure-core's retry reads the header only on the
    answers it retries, so this policy reads it on every answer.
    """

    def __init__(self, budgets: Budgets, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window = SlidingWindow(budgets.ado_requests_per_5min, ADO_WINDOW_S)
        self._clock = clock
        self._hold_until = 0.0

    async def send(self, request: PipelineRequest) -> PipelineResponse:  # type: ignore[type-arg]
        held = self._hold_until - self._clock()
        if held > 0:
            await asyncio.sleep(held)
        await self._window.spend(1)
        response: Any = await self.next.send(request)
        asked = retry_after_seconds(response.http_response.headers.get("Retry-After"), default=0.0)
        if asked > 0:  # never longer than ADO's window: a larger value is not ADO's throttling
            self._hold_until = max(self._hold_until, self._clock() + min(asked, ADO_WINDOW_S))
        return response  # type: ignore[no-any-return]
