"""The Functions app without the host: its bindings as the host reads them, and each trigger called
with real azure.functions objects against Azurite, the cloud simulator and the Service Bus peer."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import function_app

SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(scope="module")
def indexed() -> dict[str, Any]:
    # get_functions() indexes once per app object: a second call raises, so share one result.
    return {str(f.get_function_name()): f for f in function_app.app.get_functions()}


def bindings(function: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(function.get_function_json())["bindings"]
    return found


def test_every_function_is_indexed_with_the_bindings_the_host_needs(indexed: dict[str, Any]) -> None:
    assert set(indexed) == {
        "ticket_requests", "drift_sweep", "reconcile_apps", "drift_events",
        "http_reconcile", "http_plan", "http_status", "http_history", "http_request", "http_health",
    }  # fmt: skip
    (ticket,) = bindings(indexed["ticket_requests"])
    assert ticket["type"] == "serviceBusTrigger" and ticket["queueName"] == "requests"
    assert ticket["connection"] == "ServiceBusConnection" and not ticket.get("isSessionsEnabled")
    (reconcile,) = bindings(indexed["reconcile_apps"])
    assert reconcile["queueName"] == "reconcile" and reconcile["isSessionsEnabled"] is True
    (events,) = bindings(indexed["drift_events"])
    assert events["queueName"] == "events" and events["cardinality"].lower() == "many"
    (timer,) = bindings(indexed["drift_sweep"])
    assert timer["type"] == "timerTrigger" and timer["schedule"] == "%DRIFT_SCHEDULE%"
    routes = {name: bindings(f)[0] for name, f in indexed.items() if name.startswith("http_")}
    assert routes["http_plan"]["route"] == "configs/{config_id}/plan"
    assert routes["http_health"]["authLevel"] == "ANONYMOUS"
    assert {r["authLevel"] for n, r in routes.items() if n != "http_health"} == {"FUNCTION"}


def test_the_entra_audit_trigger_is_registered_only_where_its_event_hub_is_configured() -> None:
    script = (
        "import json, function_app\n"
        "print(json.dumps({str(f.get_function_name()): json.loads(f.get_function_json())['bindings']"
        " for f in function_app.app.get_functions()}))"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "ENTRA_AUDIT_HUB": "insights-logs-auditlogs"}
    printed = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, check=True
    ).stdout
    (hub,) = json.loads(printed.splitlines()[-1])["entra_audit"]
    assert hub["type"] == "eventHubTrigger" and hub["eventHubName"] == "%ENTRA_AUDIT_HUB%"
    assert hub["connection"] == "EntraAuditConnection"


def test_handler_parameters_match_their_binding_names(indexed: dict[str, Any]) -> None:
    # The real worker refuses to load a function whose parameters differ from its bindings.
    for name, function in indexed.items():
        parameters = set(inspect.signature(function.get_user_function()).parameters)
        names = {b["name"] for b in bindings(function) if b["direction"] == "IN"}
        assert parameters == names, name
