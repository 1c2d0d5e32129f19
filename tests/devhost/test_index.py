"""devhost indexes any FunctionApp as the host does: functions it has never seen are served from their
binding metadata; a function it cannot serve is reported, and the others still run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import azure.functions as func
import pytest

from devhost.index import HttpFunction, ServiceBusFunction, TimerFunction, index
from devhost.ncrontab import Schedule
from devhost.settings import SettingsError, export_settings, read_local_settings
from devhost.timers import TimerRunner

ROOT = Path(__file__).resolve().parents[2]


def an_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.service_bus_queue_trigger(arg_name="event", queue_name="%EVENTS_QUEUE%", connection="Bus")
    async def events(event: func.ServiceBusMessage) -> None: ...

    @app.timer_trigger(arg_name="timer", schedule="%NIGHTLY%")
    def nightly(timer: func.TimerRequest) -> None: ...

    @app.route(route="files/{*path}", methods=["GET", "PUT"], auth_level=func.AuthLevel.ADMIN)
    def files(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    @app.route(route="items/{id:int}")
    def constrained(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    @app.queue_output(arg_name="out", queue_name="elsewhere", connection="Storage")
    @app.route(route="forward")
    def forward(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
        return func.HttpResponse("")

    return app


def test_any_app_is_indexed_from_its_bindings_with_settings_resolved() -> None:
    indexed = index(an_app(), {"EVENTS_QUEUE": "events", "NIGHTLY": "0 0 3 * * *"})
    events, nightly, files = indexed.functions
    assert isinstance(events, ServiceBusFunction)
    assert (events.queue, events.connection, events.sessions, events.arg_name) == (
        "events",
        "Bus",
        False,
        "event",
    )
    assert isinstance(nightly, TimerFunction) and nightly.schedule.expression == "0 0 3 * * *"
    assert isinstance(files, HttpFunction)
    assert (files.route, files.methods, files.auth_level) == ("files/{*path}", ("GET", "PUT"), "ADMIN")
    skipped = dict(indexed.skipped)
    assert set(skipped) == {"constrained", "forward"}
    assert "constrained and default parameters are not served" in skipped["constrained"]
    assert "queue (OUT)" in skipped["forward"]


def test_a_batch_trigger_is_served_with_lists_of_messages_and_not_from_a_session_queue() -> None:
    app = func.FunctionApp()

    @app.service_bus_queue_trigger(
        arg_name="batch", queue_name="events", connection="Bus", cardinality="many"
    )
    async def events(batch: list[func.ServiceBusMessage]) -> None: ...

    @app.service_bus_queue_trigger(
        arg_name="batch", queue_name="work", connection="Bus", cardinality="many", is_sessions_enabled=True
    )
    async def sessions(batch: list[func.ServiceBusMessage]) -> None: ...

    indexed = index(app, {})
    (served,) = indexed.functions
    assert isinstance(served, ServiceBusFunction) and (served.name, served.batch) == ("events", True)
    assert dict(indexed.skipped) == {"sessions": "batches from a session-enabled queue are not served"}


def test_a_binding_naming_a_missing_setting_is_not_served_and_says_which() -> None:
    indexed = index(an_app(), {"NIGHTLY": "0 0 3 * * *"})
    assert (
        dict(indexed.skipped)["events"]
        == "%EVENTS_QUEUE% does not resolve to a value: set the app setting EVENTS_QUEUE"
    )
    assert [f.name for f in indexed.functions] == ["nightly", "files"]


def test_local_settings_never_override_the_environment(tmp_path: Path) -> None:
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": {"A": "from file", "B": "from file"}}))
    environment = {"A": "from environment"}
    assert export_settings(read_local_settings(settings), environment) == ["A"]
    assert environment == {"A": "from environment", "B": "from file"}
    assert read_local_settings(tmp_path / "absent.json") == {}
    settings.write_text(json.dumps({"Values": {"PORT": 7071}}))
    with pytest.raises(SettingsError, match=r"Values.PORT must be a string"):
        read_local_settings(settings)


async def test_a_timer_fires_on_its_schedule() -> None:
    fired: list[func.TimerRequest] = []

    async def every_second(timer: func.TimerRequest) -> None:
        fired.append(timer)

    runner = TimerRunner(TimerFunction("tick", every_second, "timer", Schedule.parse("* * * * * *"), False))
    stopping = asyncio.Event()
    running = asyncio.create_task(runner.run(stopping))
    await asyncio.sleep(2.5)
    stopping.set()
    await asyncio.wait_for(running, timeout=5)
    assert 2 <= len(fired) <= 3 and not any(t.past_due for t in fired)


def test_devhost_is_never_deployed() -> None:
    assert "devhost/" in (ROOT / ".funcignore").read_text().splitlines()
