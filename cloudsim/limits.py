"""Azure's documented rate limits, enforced by default.

Unlike faults (random, off unless a test asks), these are the services' own rules: a client that
ignores them fails here as it would in Azure. `Limits.lenient()` turns them off for the few runs
that need more than Azure allows (the big benchmarks); it is never the default. Sources are in
shared/design/azure-contracts.md, "Stricter rules found since the first build".
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from dataclasses import dataclass

from cloudsim.api import Call, Route, Slowdown
from cloudsim.state import _Record

# Graph throttles low-priority requests first; the simulator's reading: refused from 80% of the
# window's budget on (Graph starts warning at 80% with x-ms-throttle-limit-percentage).
LOW_PRIORITY_CUTOFF_PERCENT = 80
_SUBSCRIPTION = re.compile(r"/subscriptions/([^/]+)", re.IGNORECASE)


@dataclass
class Limits(_Record):
    """Budgets per API; 0 turns one off. The defaults are the strictest documented figures."""

    # Graph, identity and access: resource units per app and tenant per 10 s (3,500 for tenants
    # under 50 users, the smallest budget); writes per app and tenant per 150 s.
    graph_units: int = 3500
    graph_window_s: float = 10.0
    graph_writes: int = 3000
    graph_writes_window_s: float = 150.0
    # ARM: a token bucket per region, subscription and principal; reads 250 burst refilling
    # 25 per second, writes and deletes 200 refilling 10 per second.
    arm_read_burst: int = 250
    arm_read_refill_per_s: float = 25.0
    arm_write_burst: int = 200
    arm_write_refill_per_s: float = 10.0
    # Azure DevOps: 200 TSTUs in a sliding 5-minute window. What one request costs is not
    # published (a TSTU is load, not requests): 0.05 per request, i.e. 4,000 requests, is an
    # assumption, to be replaced by a measured figure.
    ado_tstus: float = 200.0
    ado_window_s: float = 300.0
    ado_tstus_per_request: float = 0.05
    # Past the budget ADO first delays requests (up to 30 s) and says so on the answer it then
    # gives (`Retry-After`, `X-RateLimit-Delay`), and only later answers 429 (learn.microsoft.com
    # azure-devops integrate concepts rate-limits: "If you detect a Retry-After header in any
    # response, wait until that amount of time has passed"). This many requests past the budget are
    # served late, by ado_slowdown_delay_s, before 429s start; 0 (default): 429 at once, the stricter.
    ado_slowdown_requests: int = 0
    ado_slowdown_delay_s: float = 0.1

    @classmethod
    def lenient(cls) -> Limits:
        """Every limit off: only for runs that need more than Azure allows."""
        return cls(graph_units=0, graph_writes=0, arm_read_burst=0, arm_write_burst=0, ado_tstus=0)


class _FixedWindow:
    def __init__(self, budget: float, window_s: float) -> None:
        self.budget, self.window_s = budget, window_s
        self.start, self.used = time.monotonic(), 0.0

    def _roll(self) -> float:
        now = time.monotonic()
        if now - self.start >= self.window_s:
            self.start, self.used = now, 0.0
        return now

    def take(self, units: float) -> int | None:
        """Spend `units`; the whole seconds to wait instead when the window's budget would be exceeded."""
        if self.budget <= 0:
            return None
        now = self._roll()
        if self.used + units > self.budget:
            return max(1, math.ceil(self.window_s - (now - self.start)))
        self.used += units
        return None

    def seconds_left(self) -> int:
        return math.ceil(self.window_s - (time.monotonic() - self.start))

    def percent(self) -> int:
        self._roll()
        return min(100, round(100 * self.used / self.budget)) if self.budget > 0 else 0


class _TokenBucket:
    def __init__(self, burst: float, refill_per_s: float) -> None:
        self.burst, self.refill = burst, refill_per_s
        self.tokens, self.at = burst, time.monotonic()

    def take(self) -> int | None:
        if self.burst <= 0:
            return None
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.refill)
        self.at = now
        if self.tokens < 1:
            return max(1, math.ceil((1 - self.tokens) / self.refill))
        self.tokens -= 1
        return None


class _SlidingWindow:
    def __init__(self, budget: float, window_s: float) -> None:
        self.budget, self.window_s = budget, window_s
        self.spent: deque[tuple[float, float]] = deque()
        self.total = 0.0

    def take(self, units: float) -> int | None:
        if self.budget <= 0:
            return None
        now = time.monotonic()
        while self.spent and now - self.spent[0][0] >= self.window_s:
            self.total -= self.spent.popleft()[1]
        if self.total + units > self.budget:
            oldest = self.spent[0][0] if self.spent else now
            return max(1, math.ceil(self.window_s - (now - oldest)))
        self.spent.append((now, units))
        self.total += units
        return None

    def remaining(self) -> float:
        return max(0.0, self.budget - self.total)


class Throttle:
    """The live side of the limits: one budget per API (per subscription for ARM), reset by configure.

    The simulator serves one tenant whose callers share Graph's budget: at least as strict as
    Graph's per-app budget.
    """

    def __init__(self, limits: Limits) -> None:
        self.configure(limits)

    def configure(self, limits: Limits) -> None:
        self.limits = limits
        self._graph_units = _FixedWindow(limits.graph_units, limits.graph_window_s)
        self._graph_writes = _FixedWindow(limits.graph_writes, limits.graph_writes_window_s)
        self._arm: dict[tuple[str, bool], _TokenBucket] = {}
        self._ado = _SlidingWindow(limits.ado_tstus, limits.ado_window_s)
        self._ado_slowed = 0  # requests served late since the budget last had room
        self.low_priority_requests = 0  # Graph requests that said x-ms-throttle-priority: low

    # Each rule answers None (go ahead) or the seconds to wait and extra headers for the 429.

    def graph(self, call: Call, route: Route, units: int) -> tuple[int, dict[str, str]] | None:
        low = call.headers.get("x-ms-throttle-priority", "").lower() == "low"
        self.low_priority_requests += low
        if low and self._graph_units.percent() >= LOW_PRIORITY_CUTOFF_PERCENT:
            return max(1, self._graph_units.seconds_left()), {}
        if route.write and route.operation != "batch":  # a batch is charged through its requests
            wait = self._graph_writes.take(1)
            if wait is not None:
                return wait, {}
        wait = self._graph_units.take(units)
        return None if wait is None else (wait, {})

    def graph_percent(self) -> int:
        """How much of Graph's resource-unit budget this window has used (x-ms-throttle-limit-percentage)."""
        return self._graph_units.percent()

    def arm(self, call: Call, route: Route, _units: int) -> tuple[int, dict[str, str]] | None:
        found = _SUBSCRIPTION.search(call.path)
        key = (found.group(1).lower() if found else "", route.write)
        bucket = self._arm.get(key)
        if bucket is None:
            limits = self.limits
            bucket = (
                _TokenBucket(limits.arm_write_burst, limits.arm_write_refill_per_s)
                if route.write
                else _TokenBucket(limits.arm_read_burst, limits.arm_read_refill_per_s)
            )
            self._arm[key] = bucket
        wait = bucket.take()
        remaining = {f"x-ms-ratelimit-remaining-subscription-{'writes' if route.write else 'reads'}": "0"}
        return None if wait is None else (wait, remaining)

    def ado(self, _call: Call, _route: Route, _units: int) -> tuple[int, dict[str, str]] | Slowdown | None:
        wait = self._ado.take(self.limits.ado_tstus_per_request)
        if wait is None:
            self._ado_slowed = 0
            return None
        headers = {
            "X-RateLimit-Resource": "Core",
            "X-RateLimit-Limit": str(round(self.limits.ado_tstus)),
            "X-RateLimit-Remaining": str(math.floor(self._ado.remaining())),
            "X-RateLimit-Reset": str(math.ceil(time.time() + wait)),
        }
        if self._ado_slowed < self.limits.ado_slowdown_requests:
            self._ado_slowed += 1
            delay = self.limits.ado_slowdown_delay_s
            return Slowdown(delay, {**headers, "Retry-After": str(wait), "X-RateLimit-Delay": f"{delay:.3f}"})
        return wait, headers
