"""Bad app settings at function startup: every one is a one-line "a setting is wrong" naming the
setting (HTTP: a 500 problem; Service Bus triggers: ServiceUnavailable, so the message comes back),
never a traceback out of a trigger, and never a pass that waits forever."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import azure.functions as func
import pytest

import function_app
from reconciler.adapters.pacing import Budgets, TokenBucket
from reconciler.app import context as app_context
from reconciler.cloud import CloudError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def worker(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[pytest.MonkeyPatch]:
    """A fresh worker with a good policy and no table or Service Bus settings yet."""
    for name in (
        "WIF_TABLE_ENDPOINT",
        "WIF_TABLE_CONNECTION_STRING",
        "WIF_CLOUD",
        "ServiceBusConnection",
        "ServiceBusConnection__fullyQualifiedNamespace",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WIF_POLICY_FILE", str(ROOT / "policy.yaml"))
    await app_context.reset()
    yield monkeypatch
    await app_context.reset()


def get(route: str) -> func.HttpRequest:
    return func.HttpRequest("GET", f"/api/{route}", body=b"", route_params={"config_id": "contoso~p~c"})


async def assert_setting_is_wrong(caplog: pytest.LogCaptureFixture, setting: str, secret: str = "") -> None:
    # Every route, /history too (it called service() itself, outside the problem answer).
    for trigger in (function_app.http_plan, function_app.http_history):
        response = await trigger(get("configs/contoso~p~c/plan"))
        assert response.status_code == 500, response.get_body()[:300]
        problem = json.loads(response.get_body())
        assert problem["title"] == "Service unavailable" and "settings are wrong" in problem["detail"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and all(r.exc_info is None for r in errors), [r.getMessage() for r in errors]
    assert setting in errors[0].getMessage()
    if secret:
        assert all(secret not in r.getMessage() for r in errors)


@pytest.mark.parametrize(
    "connection_string",
    [
        "garbage",
        "Endpoint=sb://example.servicebus.windows.net/;SharedAccessKeyName=send",  # no key
        "Endpoint=;SharedAccessKey=s3cret-key",
    ],
)
async def test_a_malformed_service_bus_connection_string_is_a_setting_error_not_a_traceback(
    worker: pytest.MonkeyPatch,
    table_settings: dict[str, str],
    connection_string: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in table_settings.items():
        worker.setenv(name, value)
    worker.setenv("ServiceBusConnection", connection_string)
    await assert_setting_is_wrong(caplog, "ServiceBusConnection", secret="s3cret-key")


@pytest.mark.parametrize("endpoint", ["https://", "https://[::1", "https://exa mple.table.core.windows.net"])
async def test_a_malformed_table_endpoint_is_a_setting_error_not_a_traceback(
    worker: pytest.MonkeyPatch, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    worker.setenv("WIF_TABLE_ENDPOINT", endpoint)
    worker.setenv("ServiceBusConnection__fullyQualifiedNamespace", "example.servicebus.windows.net")
    await assert_setting_is_wrong(caplog, "WIF_TABLE_ENDPOINT")


@pytest.mark.parametrize(
    "namespace", ["https://evil.example/?x=1", "a b", "example.servicebus.windows.net/path"]
)
async def test_a_service_bus_namespace_that_is_not_a_host_name_is_a_setting_error(
    worker: pytest.MonkeyPatch,
    table_settings: dict[str, str],
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in table_settings.items():
        worker.setenv(name, value)
    worker.setenv("ServiceBusConnection__fullyQualifiedNamespace", namespace)
    await assert_setting_is_wrong(caplog, "ServiceBusConnection__fullyQualifiedNamespace")


@pytest.mark.parametrize("setting", ["WIF_ARM_READS_BURST", "WIF_ARM_WRITES_BURST"])
@pytest.mark.parametrize("value", ["0.5", "1e-300"])
def test_an_arm_burst_below_one_request_is_refused(setting: str, value: str) -> None:
    with pytest.raises(CloudError, match=setting):
        Budgets.from_settings({setting: value})


@pytest.mark.parametrize("setting", ["WIF_ARM_READS_PER_SECOND", "WIF_ARM_WRITES_PER_SECOND"])
def test_an_arm_rate_of_almost_nothing_is_refused(setting: str) -> None:
    with pytest.raises(CloudError, match=setting):
        Budgets.from_settings({setting: "1e-300"})


async def test_a_burst_of_one_request_lets_requests_through_one_at_a_time() -> None:
    """Before: the bucket held 90% of the burst; a burst of 1 held 0.9 tokens, never the 1 a
    request takes, and every ARM request of every pass waited forever."""
    budgets = Budgets.from_settings({"WIF_ARM_READS_BURST": "1", "WIF_ARM_READS_PER_SECOND": "1000"})
    bucket = TokenBucket(budgets.arm_reads_burst, budgets.arm_reads_per_second)
    await asyncio.wait_for(asyncio.gather(*(bucket.take() for _ in range(3))), timeout=5)


@pytest.mark.parametrize(
    "connection_string",
    ["garbage", "InstrumentationKey=", "InstrumentationKey=abc;IngestionEndpoint=https://x.example"],
)
def test_a_malformed_application_insights_connection_string_leaves_the_app_running(
    connection_string: str,
) -> None:
    """Before: configure_azure_monitor's ValueError escaped function_app's import, so the worker
    indexed no function at all (not even /api/health): one bad optional setting took the app down."""
    env = {**os.environ, "APPLICATIONINSIGHTS_CONNECTION_STRING": connection_string}
    loaded = subprocess.run(
        [sys.executable, "-c", "import function_app; print(len(function_app.app.get_functions()))"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert int(loaded.stdout.strip()) >= 6
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in loaded.stderr and "Traceback" not in loaded.stderr


@pytest.mark.parametrize(
    "url", ["https://[::1", "https://graph.example/?x=1", "https://user:pw@graph.example", "https://a b"]
)
async def test_a_custom_cloud_url_that_is_no_base_url_is_a_setting_error(
    worker: pytest.MonkeyPatch, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: anything starting with https:// was taken, and API paths were appended to a query,
    a fragment or a broken host: every request of every pass failed, or went where it should not."""
    worker.setenv("WIF_CLOUD", "custom")
    for name in ("WIF_GRAPH_URL", "WIF_ARM_URL", "WIF_ADO_URL"):
        worker.setenv(name, url if name == "WIF_ARM_URL" else "https://sim.example")
    await assert_setting_is_wrong(caplog, "WIF_ARM_URL", secret="pw@")
