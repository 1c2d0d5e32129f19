"""Counts every HTTP request the adapters send, per API, reads and writes apart, and the throttled answers.

Counting happens at the transport, so retries count too: the figure is what the
clouds see. A Graph `$batch` is one request; it counts as a read when every request
inside it is a GET. A throttled answer is a 429, counted as each response arrives (before the
SDK's retry waits out its Retry-After), so the operators' metric sees every one; Graph's `$batch`
counts its throttled sub-requests too.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import httpx
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy

READ_METHODS = frozenset({"GET", "HEAD"})
THROTTLED = 429
# The counts of the pass running in this task (and the tasks it starts): one worker runs several
# passes at once on shared adapters, and each pass reports only its own requests.
_this_pass: ContextVar[Counter[tuple[str, str]] | None] = ContextVar("wif_requests_this_pass", default=None)


@dataclass
class RequestMeter:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record(self, api: str, *, write: bool) -> None:
        self._add((api, "write" if write else "read"))

    def record_throttled(self, api: str) -> None:
        self._add((api, "throttled"))

    def _add(self, key: tuple[str, str]) -> None:
        self.counts[key] += 1
        this_pass = _this_pass.get()
        if this_pass is not None:
            this_pass[key] += 1

    @contextmanager
    def counting_this_pass(self) -> Iterator[RequestMeter]:
        """A meter of the requests sent from this task and the tasks it starts, until the block ends."""
        counts: Counter[tuple[str, str]] = Counter()
        token = _this_pass.set(counts)
        try:
            yield RequestMeter(counts)
        finally:
            _this_pass.reset(token)

    def reads(self, api: str | None = None) -> int:
        return sum(n for (name, kind), n in self.counts.items() if kind == "read" and api in {None, name})

    def writes(self, api: str | None = None) -> int:
        return sum(n for (name, kind), n in self.counts.items() if kind == "write" and api in {None, name})

    def throttled(self, api: str | None = None) -> int:
        counts = self.counts.items()
        return sum(n for (name, kind), n in counts if kind == "throttled" and api in {None, name})

    def as_dict(self) -> dict[str, dict[str, int]]:
        apis = sorted({api for api, _ in self.counts})
        return {api: {"reads": self.reads(api), "writes": self.writes(api)} for api in apis}


class MeteringPolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """An azure-core pipeline policy that records each request on a meter."""

    def __init__(self, meter: RequestMeter, api: str) -> None:
        super().__init__()
        self._meter = meter
        self._api = api

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        self._meter.record(self._api, write=request.http_request.method.upper() not in READ_METHODS)

    def on_response(self, request: PipelineRequest, response: PipelineResponse) -> None:  # type: ignore[type-arg]
        if response.http_response.status_code == THROTTLED:
            self._meter.record_throttled(self._api)


class MeteringTransport(httpx.AsyncBaseTransport):
    """Wraps an httpx transport to record each request, and each throttled answer, on a meter.

    At the transport, under the SDK's retry middleware (which wraps the client's transport), so every
    attempt is counted, as the azure-core policies after the retry policy count ARM's and ADO's; a
    client event hook would see only the first attempt and the final answer.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, meter: RequestMeter, api: str) -> None:
        self._inner, self._meter, self._api = inner, meter, api

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._meter.record(self._api, write=_is_write(request))
        response = await self._inner.handle_async_request(request)
        if response.status_code == THROTTLED:
            self._meter.record_throttled(self._api)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _is_write(request: httpx.Request) -> bool:
    if request.method.upper() in READ_METHODS:
        return False
    if request.method.upper() == "POST" and request.url.path.endswith("/$batch"):
        try:
            inner = json.loads(request.content or b"{}").get("requests", [])
        except ValueError:
            return True
        return any(str(item.get("method", "")).upper() not in READ_METHODS for item in inner)
    return True
