"""The triggers when the service cannot start (issue 14): a wrong setting or an unreachable store is
logged as one line saying what to fix; HTTP answers a problem JSON (500, or 503 for a store), the
timer returns, a Service Bus trigger raises a one-line error so that the message comes back."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

import function_app
from reconciler.app import context as app_context
from reconciler.app.context import ServiceUnavailable

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE_TABLES = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "TableEndpoint=http://127.0.0.1:1/devstoreaccount1;"
)


@pytest.fixture
async def fresh_worker(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[pytest.MonkeyPatch]:
    for name in ("WIF_TABLE_ENDPOINT", "WIF_TABLE_CONNECTION_STRING", "WIF_CLOUD", "ServiceBusConnection"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "example.servicebus.windows.net")
    await app_context.reset()
    yield monkeypatch
    await app_context.reset()


def plan_request() -> func.HttpRequest:
    return func.HttpRequest(
        "GET", "/api/configs/contoso~payments~kv-reader/plan", body=b"", route_params={"config_id": "x"}
    )


def the_one_error(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].exc_info is None and "\n" not in errors[0].getMessage()
    return errors[0]


async def test_a_missing_policy_file_answers_500_and_logs_one_line(
    fresh_worker: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fresh_worker.setenv("WIF_POLICY_FILE", str(tmp_path / "missing.yaml"))
    response = await function_app.http_plan(plan_request())
    assert response.status_code == 500
    body = json.loads(response.get_body())
    assert body["title"] == "Service unavailable" and "settings are wrong" in body["detail"]
    assert "missing.yaml" not in body["detail"]  # settings stay in the logs
    assert "missing.yaml: cannot read" in the_one_error(caplog).getMessage()


async def test_an_unreachable_table_answers_503_and_the_timer_returns(
    fresh_worker: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fresh_worker.setenv("WIF_POLICY_FILE", str(ROOT / "policy.yaml"))
    fresh_worker.setenv("WIF_TABLE_CONNECTION_STRING", UNREACHABLE_TABLES)
    response = await function_app.http_plan(plan_request())
    assert response.status_code == 503 and "could not be reached" in json.loads(response.get_body())["detail"]
    caplog.clear()
    await function_app.drift_sweep(TimerRequest(past_due=False))  # returns: the next run tries again
    assert "cannot reach Table Storage" in the_one_error(caplog).getMessage()


async def test_a_service_bus_trigger_raises_one_line_so_the_message_comes_back(
    fresh_worker: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fresh_worker.setenv("WIF_POLICY_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(ServiceUnavailable) as raised:
        await function_app.ticket_requests(func.ServiceBusMessage(body=b"{}"))
    assert "\n" not in str(raised.value) and "missing.yaml" in str(raised.value)
    assert raised.value.__suppress_context__  # the SDK's own traceback is not chained to it
    the_one_error(caplog)
