"""The Azure Functions app (Python v2 programming model): thin triggers over the reconciler service.

| function | trigger | does |
|---|---|---|
| ticket_requests | Service Bus queue `requests` | validate and record a ticket, queue its reconcile |
| drift_sweep | timer `%DRIFT_SCHEDULE%` | bulk dry run; reconcile messages for drift; orphans logged |
| reconcile_apps | Service Bus queue `reconcile` (sessions) | reconcile the configs of one application group |
| drift_events | Service Bus queue `events` (batches) | Event Grid events -> coalesced reconcile messages |
| entra_audit | Event Hubs `%ENTRA_AUDIT_HUB%` (only when set) | the same, for Entra audit logs |
| http_* | HTTP | `POST /api/reconcile`, `GET /api/configs/{id}/plan`, `/status` and `/history`, |
| | | `GET /api/requests/{id}`, `GET /api/health` (anonymous) |
"""

from __future__ import annotations

import logging
import os

import azure.functions as func

from reconciler.app import http_api, logs, telemetry
from reconciler.app.context import ServiceUnavailable, service
from reconciler.state.queues import ReconcileMessageInvalid, parse_reconcile_message

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
log = logging.getLogger("reconciler")
logs.install()
telemetry.install()  # OpenTelemetry when the worker or APPLICATIONINSIGHTS_CONNECTION_STRING configures it


@app.service_bus_queue_trigger(arg_name="message", queue_name="requests", connection="ServiceBusConnection")
async def ticket_requests(message: func.ServiceBusMessage) -> None:
    with telemetry.processing("requests", message.application_properties, message.enqueued_time_utc):
        outcome = await (await service()).handle_ticket(message.get_body())
    log.info("ticket %s: %s (%s)", outcome.request_id, outcome.outcome, outcome.reason)


@app.timer_trigger(arg_name="timer", schedule="%DRIFT_SCHEDULE%", run_on_startup=False, use_monitor=True)
async def drift_sweep(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("drift sweep is past due: running it now")
    try:
        reconciler = await service()
    except ServiceUnavailable:
        return  # logged as one line by service(); the next run tries again, and nothing is lost
    # The whole pass runs here, not behind a message: a timer function runs on one instance at a
    # time (the host's schedule lock), and one bulk observation is one piece of work anyway.
    await reconciler.sweep()  # never raises for a row, read or send; it logs its summary


@app.service_bus_queue_trigger(
    arg_name="message", queue_name="reconcile", connection="ServiceBusConnection", is_sessions_enabled=True
)
async def reconcile_apps(message: func.ServiceBusMessage) -> None:
    try:
        request = parse_reconcile_message(message.get_body(), session_id=message.session_id)
    except ReconcileMessageInvalid as rejected:
        # No retry fixes a malformed or misrouted message: it belongs in the dead-letter queue. The
        # host settles the message itself (complete on return, abandon on an exception) and gives a
        # Python function no settlement client, so raising is how to get it there: Service Bus
        # dead-letters it at the queue's max delivery count, and `dlq list` shows it with this
        # problem (docs/tickets.md, "Dead letters").
        log.error(
            "reconcile message %s (delivery %s) is invalid, dead-lettered at the max delivery count: %s",
            message.message_id, message.delivery_count, rejected,
        )  # fmt: skip
        raise
    with telemetry.processing("reconcile", message.application_properties, message.enqueued_time_utc):
        await (await service()).reconcile(request)


@app.service_bus_queue_trigger(
    arg_name="messages", queue_name="events", connection="ServiceBusConnection", cardinality="many"
)
async def drift_events(messages: list[func.ServiceBusMessage]) -> None:
    outcome = await (await service()).handle_drift_events([m.get_body() for m in messages], "event-grid")
    log.info("drift events: %s", outcome)


async def entra_audit(events: list[func.EventHubEvent]) -> None:
    outcome = await (await service()).handle_drift_events([e.get_body() for e in events], "entra")
    log.info("Entra audit records: %s", outcome)


# Entra audit logs reach the app only where a tenant administrator set up the diagnostic setting
# (infra/app/events-entra.bicep, which sets ENTRA_AUDIT_HUB and EntraAuditConnection__*): without
# it the trigger is not registered at all.
if os.environ.get("ENTRA_AUDIT_HUB"):
    app.event_hub_message_trigger(
        arg_name="events",
        connection="EntraAuditConnection",
        event_hub_name="%ENTRA_AUDIT_HUB%",
        cardinality="many",
    )(entra_audit)


@app.route(route="reconcile", methods=["POST"])
async def http_reconcile(req: func.HttpRequest) -> func.HttpResponse:
    body, content_type = req.get_body(), req.headers.get("content-type")
    return _http(await http_api.answer(service, http_api.reconcile, body, content_type))


@app.route(route="configs/{config_id}/plan", methods=["GET"])
async def http_plan(req: func.HttpRequest) -> func.HttpResponse:
    return _http(await http_api.answer(service, http_api.plan, req.route_params["config_id"]))


@app.route(route="configs/{config_id}/status", methods=["GET"])
async def http_status(req: func.HttpRequest) -> func.HttpResponse:
    return _http(await http_api.answer(service, http_api.status, req.route_params["config_id"]))


@app.route(route="configs/{config_id}/history", methods=["GET"])
async def http_history(req: func.HttpRequest) -> func.HttpResponse:
    return _http(await http_api.answer(service, http_api.history, req.route_params["config_id"]))


@app.route(route="requests/{request_id}", methods=["GET"])
async def http_request(req: func.HttpRequest) -> func.HttpResponse:
    return _http(await http_api.answer(service, http_api.request, req.route_params["request_id"]))


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def http_health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse('{"status": "ok"}', status_code=200, mimetype="application/json")


def _http(response: http_api.Response) -> func.HttpResponse:
    return func.HttpResponse(response.text(), status_code=response.status, headers=dict(response.headers))
