"""Fault injection per API: latency, random failures, dropped connections, throttling, list lag.

Each API gets its own `Faults` settings and its own seeded random generator, so a
test that sets `seed` sees the same sequence of failures on every run.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

from cloudsim.state import _Record


@dataclass
class Faults(_Record):
    latency_ms: float = 0.0  # added to every request
    jitter_ms: float = 0.0  # plus a uniform random 0..jitter_ms
    error_rate: float = 0.0  # share of requests answered with one of error_statuses
    error_statuses: list[int] = field(default_factory=lambda: [429, 500, 503])
    drop_rate: float = 0.0  # share of requests whose connection is closed without an answer
    # Random failures and drops only for these operations (the route tables' names, e.g.
    # "roleAssignments.list"; empty: every operation) and only for requests whose path or a
    # query value contains `matching` (empty: every request). Lets a test break one read alone.
    operations: list[str] = field(default_factory=list)
    matching: str = ""
    list_lag_s: float = 0.0  # new objects stay out of LIST results for this long (read-after-write lag)
    read_lag_s: float = 0.0  # new objects answer "not found" to reads by id for this long
    # Resource units allowed per window; 0 turns throttling off. Graph charges its documented
    # costs (see graph.request_cost), the other APIs one unit per request.
    throttle_budget: int = 0
    throttle_window_s: float = 10.0
    retry_after_s: int = 1  # Retry-After sent with random 429/503 answers
    retry_after_date: bool = False  # send Retry-After as an HTTP date (RFC 9110 allows both forms)
    # ARM answers PrincipalNotFound for service principals younger than this even when
    # principalType is sent: beyond the documented behaviour, for testing clients' bounded
    # retries of replication delay (terraform-provider-azurerm #11417).
    principal_lag_s: float = 0.0
    seed: int | None = None


class FaultState:
    """The live side of one API's faults: the random generator and the throttle window."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.rng = random.Random(faults.seed)
        self._window_start = 0.0
        self._units_used = 0

    def configure(self, faults: Faults) -> None:
        self.faults = faults
        self.rng = random.Random(faults.seed)
        self._window_start = 0.0
        self._units_used = 0

    def delay_s(self) -> float:
        faults = self.faults
        if not faults.latency_ms and not faults.jitter_ms:
            return 0.0
        return (faults.latency_ms + self.rng.uniform(0.0, faults.jitter_ms)) / 1000.0

    def _targets(self, operation: str, target: str) -> bool:
        faults = self.faults
        return (not faults.operations or operation in faults.operations) and faults.matching in target

    def should_drop(self, operation: str, target: str) -> bool:
        faults = self.faults
        return (
            faults.drop_rate > 0 and self._targets(operation, target) and self.rng.random() < faults.drop_rate
        )

    def random_error(self, operation: str, target: str) -> int | None:
        faults = self.faults
        if not (faults.error_rate > 0 and faults.error_statuses and self._targets(operation, target)):
            return None
        if self.rng.random() < faults.error_rate:
            return self.rng.choice(faults.error_statuses)
        return None

    def charge(self, units: int) -> int | None:
        """Spend `units` of the window's budget; the seconds to wait when it is spent, else None."""
        faults = self.faults
        if faults.throttle_budget <= 0:
            return None
        now = time.monotonic()
        if now - self._window_start >= faults.throttle_window_s:
            self._window_start = now
            self._units_used = 0
        if self._units_used + units > faults.throttle_budget:
            remaining = faults.throttle_window_s - (now - self._window_start)
            return max(1, math.ceil(remaining))
        self._units_used += units
        return None

    def usage_percent(self) -> int:
        budget = self.faults.throttle_budget
        return min(100, round(100 * self._units_used / budget)) if budget > 0 else 0

    def visible(self, created_at: float) -> bool:
        """Whether an object created at `created_at` shows up in lists yet."""
        return _older_than(created_at, self.faults.list_lag_s)

    def principal_replicated(self, created_at: float) -> bool:
        """Whether ARM sees a service principal created at `created_at`, as a fault says."""
        return _older_than(created_at, self.faults.principal_lag_s)

    def readable(self, created_at: float) -> bool:
        """Whether an object created at `created_at` can be read by id yet."""
        return _older_than(created_at, self.faults.read_lag_s)


def _older_than(created_at: float, lag: float) -> bool:
    return lag <= 0 or time.time() - created_at >= lag
