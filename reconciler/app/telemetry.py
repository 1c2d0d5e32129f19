"""OpenTelemetry for the Functions app: one trace per ticket, and the metrics operators watch.

How it is switched on in Azure (Microsoft's guide, Python pivot:
https://learn.microsoft.com/azure/azure-functions/opentelemetry-howto):
- host.json `"telemetryMode": "OpenTelemetry"`: the Functions host exports its own logs and traces
  with OpenTelemetry and hands each invocation's trace context to the worker.
- `PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true` (infra sets it): the Python worker calls
  azure-monitor-opentelemetry's `configure_azure_monitor()` itself before it imports function_app.py,
  exports the worker's logs (so the host does not send them twice) and makes the host's invocation
  context current in every call. Its exporter signs in with the managed identity that
  `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` names (`Authorization=AAD;ClientId=...`; infra turns
  Application Insights' local authentication off). Do not set `PYTHON_ENABLE_OPENTELEMETRY` on its own:
  the 3.11 worker then makes the host's context current with a propagator it never created, and every
  async invocation fails.
- `install()` (function_app.py calls it) configures the distro itself, for traces and metrics, only when
  no OpenTelemetry SDK is installed yet and `APPLICATIONINSIGHTS_CONNECTION_STRING` is set (the app hosted
  without that worker setting, whose logs the host forwards); without a connection string nothing is
  exported and every call below costs next to nothing.

Traces: a ticket's span, the `reconcile` message it sends (its W3C `traceparent` in the message's
application properties, written by reconciler/state/queues.py) and the reconcile that message starts,
with a child span per API call (azure-core's DistributedTracingPolicy for ARM and Azure DevOps,
Kiota's own spans for Graph, Azure Tables and Service Bus too), are one trace. Every span started while
a request is handled carries `reconciler.request_id` and `reconciler.config_ids` (from the log context of
reconciler/app/logs.py). Metrics are the instruments below, recorded from the engine's reports
(docs/operations.md lists them with suggested alerts).
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from reconciler.adapters.metering import RequestMeter
from reconciler.app.logs import current_context
from reconciler.core.plan import Finding
from reconciler.engine.run import RunReport

CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
NAME = "reconciler"
APIS = ("graph", "arm", "ado")
SDK_LOGGERS = ("azure", "httpx", "kiota_http", "msgraph", "msgraph_core")
MAX_IDS_ON_SPAN = 20  # a sweep's pass may hold hundreds of configs; the count says how many
REPAIRED = frozenset({"applied", "adopted"})  # ActionResult outcomes that leave the drift repaired

_P = ParamSpec("_P")
_R = TypeVar("_R")

tracer = trace.get_tracer(NAME)
_meter = metrics.get_meter(NAME)
drift_detected = _meter.create_counter(
    "reconciler.drift.detected",
    unit="{change}",
    description="Changes a reconcile pass found needed, by action kind and source",
)
drift_repaired = _meter.create_counter(
    "reconciler.drift.repaired",
    unit="{change}",
    description="Changes applied (or adopted) by a reconcile pass, by action kind and source",
)
api_requests = _meter.create_counter(
    "reconciler.api.requests",
    unit="{request}",
    description="HTTP requests sent to Graph, ARM and Azure DevOps, by api, kind (read/write) and source",
)
pass_duration = _meter.create_histogram(
    "reconciler.pass.duration", unit="s", description="Wall time of one engine pass (observe + apply)"
)
queue_lag = _meter.create_histogram(
    "reconciler.queue.lag",
    unit="s",
    description="From a message's enqueued time (a scheduled one's activation) to its processing",
)
config_outcomes = _meter.create_counter(
    "reconciler.config.outcomes",
    unit="{config}",
    description="Configs at the end of a pass, by phase (converged, failed-temporary, ...) and source",
)
orphans = _meter.create_gauge(
    "reconciler.orphans",
    unit="{object}",
    description="What the reconciler made that no config names, by kind, as the last scanning sweep found",
)
# What an orphaned finding's target starts with (reconciler/core/orphans.py and plan.py), and its kind.
ORPHAN_KINDS = {
    "application ": "application",
    "app ": "application",
    "credential ": "credential",
    "role assignment ": "role-assignment",
    "service connection ": "connection",
}
_watched: list[RequestMeter] = []
_unwatched = Counter[str]()  # what closed engines' meters counted: the counter never goes down
_stamped: list[TracerProvider] = []  # the providers install() added the request-context stamp to


def _observe_throttled(options: CallbackOptions) -> Iterator[Observation]:
    for api in APIS:
        live = sum(meter.throttled(api) for meter in _watched)
        yield Observation(_unwatched[api] + live, {"api": api})


_meter.create_observable_counter(
    "reconciler.api.throttled",
    callbacks=[_observe_throttled],
    unit="{response}",
    description="Throttled answers (429) from Graph, ARM and Azure DevOps, retried ones included",
)


# ---------------------------------------------------------------------------- setup


def install(settings: Mapping[str, str] = os.environ) -> bool:
    """Turn telemetry on where an exporter is configured (idempotent); True when spans are recorded."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider) and (settings.get(CONNECTION_STRING_SETTING) or "").strip():
        from azure.monitor.opentelemetry import configure_azure_monitor  # noqa: PLC0415 - heavy, rarely

        try:
            # Traces and metrics only: without the worker setting the host forwards the worker's logs itself.
            configure_azure_monitor(disable_logging=True)
        except ValueError as error:  # malformed: run without telemetry rather than load no function at all
            logging.getLogger("reconciler").error(
                "telemetry is off, %s is not a valid connection string: %s", CONNECTION_STRING_SETTING, error
            )
            return False
        provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        return False
    if all(p is not provider for p in _stamped):
        provider.add_span_processor(_RequestContextStamp())
        _stamped.append(provider)
    _trace_azure_sdks()
    _quiet_sdk_loggers()
    return True


def watch(meter: RequestMeter) -> None:
    """Report this engine's throttled answers as `reconciler.api.throttled` (the worker builds one engine)."""
    if all(m is not meter for m in _watched):
        _watched.append(meter)


def unwatch(meter: RequestMeter) -> None:
    if any(m is meter for m in _watched):
        _unwatched.update({api: meter.throttled(api) for api in APIS})
        _watched[:] = [m for m in _watched if m is not meter]


def _quiet_sdk_loggers() -> None:
    """The SDKs log every request at INFO. host.json's log levels filter only the host's own logs, not
    what the worker exports itself, so their warnings are what the worker exports (unless set already)."""
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _trace_azure_sdks() -> None:
    """azure-core clients (ARM, Azure DevOps, Tables, Service Bus) report spans through OpenTelemetry, as
    the distro's `azure_sdk` instrumentation sets it; Service Bus then also stamps `traceparent` on sends."""
    from azure.core.settings import settings  # noqa: PLC0415
    from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan  # noqa: PLC0415

    if settings.tracing_implementation() is None:
        settings.tracing_implementation = OpenTelemetrySpan


class _RequestContextStamp(SpanProcessor):
    """Stamps the request id and config ids of the log context on every span as it starts, the API calls'
    spans included, so that a request's dependencies can be found by its id."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        request_id, config_ids = current_context()
        if request_id:
            span.set_attribute("reconciler.request_id", request_id)
        if config_ids:
            span.set_attributes(_config_attributes(config_ids))

    def on_end(self, span: ReadableSpan) -> None:
        pass


# ---------------------------------------------------------------------------- traces


def traced(name: str) -> Callable[[Callable[_P, Awaitable[_R]]], Callable[_P, Awaitable[_R]]]:
    """Run the decorated coroutine function in a span of its own (a child of the current one)."""

    def decorate(function: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
        @functools.wraps(function)
        async def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with tracer.start_as_current_span(name):
                return await function(*args, **kwargs)

        return run

    return decorate


def annotate(
    *, request_id: str | None = None, config_ids: Sequence[str] | None = None, **attributes: str
) -> None:
    """Add the request's ids (and other attributes, prefixed `reconciler.`) to the current span."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    if request_id:
        span.set_attribute("reconciler.request_id", request_id)
    if config_ids is not None:
        span.set_attributes(_config_attributes(config_ids))
    span.set_attributes({f"reconciler.{key}": value for key, value in attributes.items() if value})


def _config_attributes(config_ids: Sequence[str]) -> dict[str, str | int | Sequence[str]]:
    return {
        "reconciler.config_ids": list(config_ids[:MAX_IDS_ON_SPAN]),
        "reconciler.config_count": len(config_ids),
    }


@contextmanager
def processing(
    queue: str, properties: Mapping[Any, object] | None, enqueued: datetime | None
) -> Iterator[None]:
    """A message's processing: a consumer span in the trace the sender's `traceparent` names (linked to the
    host's invocation span when that is another trace), and the message's queue lag."""
    if enqueued is not None:
        at = enqueued if enqueued.tzinfo else enqueued.replace(tzinfo=UTC)
        queue_lag.record(max(0.0, (datetime.now(UTC) - at).total_seconds()), {"queue": queue})
    sent_from = TraceContextTextMapPropagator().extract(_trace_carrier(properties or {}))
    sender = trace.get_current_span(sent_from).get_span_context()
    invocation = trace.get_current_span().get_span_context()
    links = [Link(invocation)] if invocation.is_valid and invocation.trace_id != sender.trace_id else []
    with tracer.start_as_current_span(
        f"process {queue}",
        context=sent_from if sender.is_valid else None,
        kind=SpanKind.CONSUMER,
        links=links,
        attributes={
            "messaging.system": "servicebus",
            "messaging.operation": "process",
            "messaging.destination.name": queue,
        },
    ):
        yield


def _trace_carrier(properties: Mapping[Any, object]) -> dict[str, str]:
    """`traceparent`/`tracestate` from application properties as the host or the SDK gives them (keys and
    values as text or bytes); Service Bus' older `Diagnostic-Id` holds a traceparent too."""
    found = {_text(key): _text(value) for key, value in properties.items()}
    carrier = {name: found[name] for name in ("traceparent", "tracestate") if found.get(name)}
    if "traceparent" not in carrier and found.get("Diagnostic-Id"):
        carrier["traceparent"] = found["Diagnostic-Id"]
    return carrier


def _text(value: object) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------- metrics


def record_pass(report: RunReport, *, source: str) -> None:
    """The metrics of one engine pass, from its report. `source` says what started it: sweep, ticket, http
    or event. A dry run's drift is not counted as detected: it is a preview, counted when it is applied."""
    attributes = {"source": source}
    pass_duration.record(report.observe_seconds + report.apply_seconds, attributes)
    for api, counts in report.requests.items():
        for kind, requests in (("read", counts.get("reads", 0)), ("write", counts.get("writes", 0))):
            if requests:
                api_requests.add(requests, {"api": api, "kind": kind, **attributes})
    for outcome in report.outcomes:
        config_outcomes.add(1, {"phase": str(outcome.status), **attributes})
    if report.dry_run:
        return
    for action in report.plan.actions:
        drift_detected.add(1, {"kind": str(action.kind), **attributes})
    # An action shared by several configs is in each of their outcomes: count each result once.
    results = {id(result): result for outcome in report.outcomes for result in outcome.actions}
    for result in results.values():
        if result.outcome in REPAIRED:
            drift_repaired.add(1, {"kind": str(result.action.kind), **attributes})


def record_orphans(findings: Sequence[Finding]) -> None:
    """`reconciler.orphans`: the sweep's orphaned findings by kind, every kind set (0 once cleared)."""
    counts = Counter(orphan_kind(finding.target) for finding in findings)
    for kind in sorted({*ORPHAN_KINDS.values(), *counts}):
        orphans.set(counts[kind], {"kind": kind})


def orphan_kind(target: str) -> str:
    return next((kind for prefix, kind in ORPHAN_KINDS.items() if target.startswith(prefix)), "other")
