"""OpenTelemetry as the worker exports it, read back with the SDK's in-memory exporters: a ticket and the
reconcile it queues (through the AMQP peer) are one trace, down to each API call; the metrics count drift
detected and repaired, requests and throttled answers per API, against the cloud simulator."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.core.pipeline.policies import AsyncRetryPolicy
from azure.core.settings import settings as azure_core_settings
from azure.functions.servicebus import ServiceBusMessage as TriggerMessage
from azure.functions.timer import TimerRequest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import OperationTimeoutError
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import function_app
from cloudsim.faults import Faults
from reconciler.app import telemetry
from tests.app.test_app_triggers import App, app
from tests.app.test_sweep import a_config_deleted_by_hand
from tests.infra.bicep import ROOT, app_settings

__all__ = ["app"]

CONFIG_ID = "contoso/payments/kv-reader"


class _WhileRecording(SpanProcessor):
    """Forwards spans to the exporter only while a test records: the provider is global for the session."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._inner = SimpleSpanProcessor(exporter)
        self.on = False

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.on:
            self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            self._inner.on_end(span)


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.gate = _WhileRecording(self.spans)
        self.reader = InMemoryMetricReader()

    def finished(self) -> Sequence[ReadableSpan]:
        return self.spans.get_finished_spans()

    def points(self, name: str, *, histogram_sum: bool = False) -> dict[frozenset[tuple[str, Any]], float]:
        """The metric's cumulative values (a histogram's count, or its sum) by attribute set."""
        found: dict[frozenset[tuple[str, Any]], float] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        key = frozenset((point.attributes or {}).items())
                        if isinstance(point, HistogramDataPoint):
                            found[key] = point.sum if histogram_sum else point.count
                        elif isinstance(point, NumberDataPoint):
                            found[key] = point.value
        return found


@pytest.fixture(scope="session")
def session_telemetry() -> Telemetry:
    """The SDK providers, set once for the session (OpenTelemetry allows one global provider each)."""
    recorded = Telemetry()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(recorded.gate)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[recorded.reader]))
    return recorded


@pytest.fixture
def otel(session_telemetry: Telemetry) -> Iterator[Telemetry]:
    """Telemetry on, as install() turns it on in the worker; Azure SDK tracing and the SDK loggers' levels
    as they were afterwards."""
    levels = {name: logging.getLogger(name).level for name in telemetry.SDK_LOGGERS}
    assert telemetry.install({}) is True
    assert logging.getLogger("azure").getEffectiveLevel() >= logging.WARNING
    session_telemetry.spans.clear()
    session_telemetry.gate.on = True
    try:
        yield session_telemetry
    finally:
        session_telemetry.gate.on = False
        session_telemetry.spans.clear()
        azure_core_settings.tracing_implementation.unset_value()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def as_the_host_passes_it(message: ServiceBusReceivedMessage) -> func.ServiceBusMessage:
    """The trigger's argument as the Python worker builds it: body, broker properties, and the application
    properties with text keys (the host hands them over as JSON)."""
    return TriggerMessage(
        body=b"".join(message.body),
        message_id=str(message.message_id),
        session_id=message.session_id,
        delivery_count=message.delivery_count,
        enqueued_time_utc=message.enqueued_time_utc,
        application_properties={
            str(_text(key)): _text(value) for key, value in (message.application_properties or {}).items()
        },
        user_properties={},
    )


def _text(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


async def deliver_reconciles(app: App) -> int:
    """Receive `reconcile` from the peer as the host does (a session at a time), call the trigger and
    complete the message."""
    delivered = 0
    async with ServiceBusClient.from_connection_string(app.peer.connection_string, retry_total=0) as client:
        while True:
            try:
                receiver = client.get_queue_receiver(
                    "reconcile", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1
                )
                async with receiver:
                    while batch := await receiver.receive_messages(max_message_count=10, max_wait_time=1):
                        for received in batch:
                            await function_app.reconcile_apps(as_the_host_passes_it(received))
                            await receiver.complete_message(received)
                            delivered += 1
            except OperationTimeoutError:  # no session has messages
                return delivered


def api_of(span: ReadableSpan, app: App) -> str | None:
    """Which simulated API a client span called, by its URL (the longest matching base URL wins)."""
    attributes = span.attributes or {}
    url = str(attributes.get("url.full") or attributes.get("http.url") or "")
    bases = {"graph": app.sim.graph_url, "arm": app.sim.arm_url, "ado": app.sim.ado_url}
    matching = [(len(base), api) for api, base in bases.items() if url.startswith(base)]
    return max(matching)[1] if matching else None


def descends_from(span: ReadableSpan, ancestor: ReadableSpan, spans: Sequence[ReadableSpan]) -> bool:
    by_id = {s.context.span_id: s for s in spans if s.context}
    parent = span.parent
    while parent is not None:
        if ancestor.context and parent.span_id == ancestor.context.span_id:
            return True
        found = by_id.get(parent.span_id)
        parent = found.parent if found else None
    return False


async def test_a_ticket_and_its_reconcile_are_one_trace_down_to_each_api_call(
    app: App, otel: Telemetry
) -> None:
    await function_app.ticket_requests(func.ServiceBusMessage(body=app.ticket("CHG0701")))
    [sent] = app.peer.messages("reconcile")
    assert str(sent.application_properties.get("traceparent", "")).startswith("00-")

    assert await deliver_reconciles(app) == 1

    spans = otel.finished()
    [ticket] = [s for s in spans if s.name == "ticket"]
    [process] = [s for s in spans if s.name == "process reconcile"]
    [reconcile] = [s for s in spans if s.name == "reconcile"]
    assert ticket.context and process.context and reconcile.context
    trace_id = ticket.context.trace_id
    assert process.context.trace_id == trace_id and reconcile.context.trace_id == trace_id
    assert process.kind is SpanKind.CONSUMER and descends_from(process, ticket, spans)
    assert reconcile.parent is not None and reconcile.parent.span_id == process.context.span_id
    assert (ticket.attributes or {})["reconciler.request_id"] == "CHG0701"
    attributes = reconcile.attributes or {}
    assert attributes["reconciler.request_id"] == "CHG0701"
    assert list(attributes["reconciler.config_ids"]) == [CONFIG_ID]  # type: ignore[arg-type]

    calls = [s for s in spans if api_of(s, app) is not None and descends_from(s, reconcile, spans)]
    assert {api_of(s, app) for s in calls} == {"graph", "arm", "ado"}
    for call in calls:
        assert call.context and call.context.trace_id == trace_id
        assert (call.attributes or {}).get("reconciler.request_id") == "CHG0701", call.name
    assert app.credentials() and app.assignments()  # the trace is of real work


async def test_a_pass_records_drift_detected_and_repaired_and_requests_per_api_by_source(
    app: App, otel: Telemetry
) -> None:
    detected = otel.points("reconciler.drift.detected")
    repaired = otel.points("reconciler.drift.repaired")
    requests = otel.points("reconciler.api.requests")
    outcomes = otel.points("reconciler.config.outcomes")
    lags = otel.points("reconciler.queue.lag")
    durations = otel.points("reconciler.pass.duration")

    await function_app.ticket_requests(func.ServiceBusMessage(body=app.ticket("CHG0702")))
    await deliver_reconciles(app)
    [credential] = app.credentials()
    await app.sim.admin.delete_fic(app.seeded["appId"], credential.name)  # drift for the sweep to find
    await function_app.drift_sweep(TimerRequest(past_due=False))
    await deliver_reconciles(app)

    def grew(before: dict[frozenset[tuple[str, Any]], float], name: str, **attributes: str) -> float:
        key = frozenset(attributes.items())
        return otel.points(name).get(key, 0) - before.get(key, 0)

    for kind in ("create-credential", "create-role-assignment"):
        assert grew(detected, "reconciler.drift.detected", kind=kind, source="ticket") == 1
        assert grew(repaired, "reconciler.drift.repaired", kind=kind, source="ticket") == 1
    assert grew(detected, "reconciler.drift.detected", kind="create-credential", source="sweep") == 1
    assert grew(repaired, "reconciler.drift.repaired", kind="create-credential", source="sweep") == 1
    assert grew(detected, "reconciler.drift.detected", kind="create-role-assignment", source="sweep") == 0
    for api in ("graph", "arm", "ado"):
        assert grew(requests, "reconciler.api.requests", api=api, kind="read", source="ticket") >= 1
    assert grew(requests, "reconciler.api.requests", api="graph", kind="write", source="ticket") == 1
    assert grew(requests, "reconciler.api.requests", api="arm", kind="write", source="ticket") == 1
    assert grew(outcomes, "reconciler.config.outcomes", phase="converged", source="sweep") == 1
    assert grew(durations, "reconciler.pass.duration", source="ticket") == 1
    assert grew(lags, "reconciler.queue.lag", queue="reconcile") == 2


async def test_the_sweep_sets_the_orphans_gauge_by_kind_and_back_to_zero(
    app: App, otel: Telemetry, table_settings: dict[str, str]
) -> None:
    await a_config_deleted_by_hand(app, table_settings)
    await function_app.drift_sweep(TimerRequest(past_due=False))
    kinds = ("application", "credential", "role-assignment", "connection")
    assert {
        k: otel.points("reconciler.orphans").get(frozenset({("kind", k)})) for k in kinds
    } == dict.fromkeys(kinds, 1)
    [application] = [a for a in app.sim.world.applications if a.display_name == "sc-payments-orphan"]
    for credential in list(application.federated_credentials):  # a person cleans up what it left
        await app.sim.admin.delete_fic(application.app_id, credential.name)
    await function_app.drift_sweep(TimerRequest(past_due=False))
    orphans = otel.points("reconciler.orphans")
    assert orphans[frozenset({("kind", "credential")})] == 0
    assert orphans[frozenset({("kind", "application")})] == 1


async def test_throttled_answers_are_counted_per_api_retried_ones_included(app: App, otel: Telemetry) -> None:
    before = otel.points("reconciler.api.throttled")
    # ARM answers every role assignment create with 429 (Retry-After 0): azure-core sends it once and retries
    # it as often as its status retries allow; a hook on final answers would count one.
    throttling = Faults(
        error_rate=1.0, error_statuses=[429], retry_after_s=0, operations=["roleAssignments.create"]
    )
    await app.sim.admin.set_faults({"arm": throttling})
    await function_app.ticket_requests(func.ServiceBusMessage(body=app.ticket("CHG0703")))
    await deliver_reconciles(app)

    status = await (await app.service()).status(CONFIG_ID)
    assert status is not None and status.phase == "failed-temporary"
    after = otel.points("reconciler.api.throttled")

    def grew(api: str) -> float:
        key = frozenset({("api", api)})
        return after.get(key, 0) - before.get(key, 0)

    assert grew("arm") == 1 + AsyncRetryPolicy().status_retries
    assert grew("graph") == 0 and grew("ado") == 0


def test_a_message_without_trace_context_starts_its_own_trace_and_records_its_lag(
    otel: Telemetry,
) -> None:
    lags = otel.points("reconciler.queue.lag")
    waited = otel.points("reconciler.queue.lag", histogram_sum=True)
    enqueued = datetime.now(UTC) - timedelta(seconds=30)
    with telemetry.processing("requests", {"traceparent": "not a trace context"}, enqueued):
        pass
    [span] = otel.finished()
    assert span.name == "process requests" and span.parent is None
    key = frozenset({("queue", "requests")})
    assert otel.points("reconciler.queue.lag")[key] == lags.get(key, 0) + 1
    assert 30 <= otel.points("reconciler.queue.lag", histogram_sum=True)[key] - waited.get(key, 0) < 60


def test_the_host_and_the_worker_are_set_up_for_opentelemetry_in_azure() -> None:
    # host.json turns the host's OpenTelemetry mode on; infra lets the worker configure the Azure Monitor
    # distro itself, and never sets PYTHON_ENABLE_OPENTELEMETRY alone (reconciler/app/telemetry.py says why).
    host = json.loads((ROOT / "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"
    settings = app_settings()
    assert settings["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    assert "PYTHON_ENABLE_OPENTELEMETRY" not in settings
