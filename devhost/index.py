"""Index a Functions app as the host does: find its FunctionApp, read each function's bindings.

The Python worker imports the script file (function_app.py), takes the one `FunctionRegister`
(`func.FunctionApp`) among its globals and calls `get_functions()`; the host then reads every
function's binding metadata (the JSON `get_function_json()` returns). This module does the same
and turns the metadata into what devhost serves: Service Bus queue triggers, timer triggers and HTTP
routes. `%NAME%` in a binding attribute is resolved from the app settings, as the host does. A
function with a binding devhost cannot serve is reported and left out (the others still run).
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func

from devhost.ncrontab import Schedule, ScheduleError
from devhost.settings import SettingsError, resolve

# Route parameters devhost serves: `{name}` and the catch-all `{*name}`, not `{a?}`, `{a:int}`, `{a=x}`.
UNSERVED_PARAMETER = re.compile(r"\{[^}]*[?:=][^}]*\}")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")


class NotServed(ValueError):
    """A function (or app) devhost cannot serve, and why."""


@dataclass(frozen=True)
class ServiceBusFunction:
    name: str
    handler: Callable[..., Any]
    arg_name: str
    queue: str
    connection: str  # the name of the app setting that holds the connection
    sessions: bool
    batch: bool = False  # cardinality "many": a list of messages per invocation


@dataclass(frozen=True)
class TimerFunction:
    name: str
    handler: Callable[..., Any]
    arg_name: str
    schedule: Schedule
    run_on_startup: bool


@dataclass(frozen=True)
class HttpFunction:
    name: str
    handler: Callable[..., Any]
    arg_name: str
    route: str  # the route template, without the host's route prefix
    methods: tuple[str, ...]
    auth_level: str  # ANONYMOUS, FUNCTION or ADMIN


Served = ServiceBusFunction | TimerFunction | HttpFunction


@dataclass(frozen=True)
class Index:
    functions: tuple[Served, ...]
    skipped: tuple[tuple[str, str], ...]  # (function name, why devhost does not serve it)

    def named(self, name: str) -> Served | None:
        return next((f for f in self.functions if f.name == name), None)


def load_app(script_root: Path, script_file: str = "function_app.py") -> func.FunctionRegister:
    """Imports the script file from the script root and returns its one FunctionApp, as the worker does."""
    if str(script_root) not in sys.path:
        sys.path.insert(0, str(script_root))
    module = importlib.import_module(Path(script_file).stem)
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if len(apps) != 1:
        raise NotServed(
            f"{script_file}: expected one FunctionApp instance at module level, found {len(apps)}"
        )
    return apps[0]


def index(app: func.FunctionRegister, settings: Mapping[str, str]) -> Index:
    """Every function of the app, typed; get_functions() may be called once per app object."""
    served: list[Served] = []
    skipped: list[tuple[str, str]] = []
    for function in app.get_functions():
        name = str(function.get_function_name())
        try:
            served.append(_typed(name, function, settings))
        except (NotServed, SettingsError, ScheduleError) as why:
            skipped.append((name, str(why)))
    return Index(tuple(served), tuple(skipped))


def _typed(name: str, function: func.Function, settings: Mapping[str, str]) -> Served:
    bindings: list[dict[str, Any]] = json.loads(function.get_function_json())["bindings"]
    triggers = [b for b in bindings if str(b["type"]).endswith("Trigger")]
    if len(triggers) != 1:
        raise NotServed(f"expected one trigger binding, found {len(triggers)}")
    trigger = {
        key: resolve(value, settings) if isinstance(value, str) else value
        for key, value in triggers[0].items()
    }
    # An HTTP trigger answers through its `http` output binding; any other binding is not served.
    unserved = [
        b for b in bindings
        if b is not triggers[0] and not (trigger["type"] == "httpTrigger" and b["type"] == "http")
    ]  # fmt: skip
    if unserved:
        kinds = ", ".join(f"{b['type']} ({b['direction']})" for b in unserved)
        raise NotServed(f"devhost serves trigger bindings only; this function also has {kinds}")
    handler, arg_name = function.get_user_function(), str(trigger["name"])
    match trigger["type"]:
        case "serviceBusTrigger":
            if "queueName" not in trigger:
                raise NotServed("topic subscriptions are not served (the Service Bus peer has no topics)")
            return ServiceBusFunction(
                name, handler, arg_name, trigger["queueName"], trigger["connection"],
                bool(trigger.get("isSessionsEnabled", False)), _batch(trigger),
            )  # fmt: skip
        case "timerTrigger":
            schedule = Schedule.parse(trigger["schedule"])
            return TimerFunction(name, handler, arg_name, schedule, bool(trigger.get("runOnStartup", False)))
        case "httpTrigger":
            methods = tuple(m.upper() for m in trigger.get("methods") or HTTP_METHODS)
            route = str(trigger.get("route") or name).strip("/")
            if UNSERVED_PARAMETER.search(route):
                raise NotServed(
                    f"route {route!r}: optional, constrained and default parameters are not served"
                )
            return HttpFunction(
                name, handler, arg_name, route, methods, str(trigger.get("authLevel", "FUNCTION")).upper()
            )
        case other:
            raise NotServed(f"devhost does not serve {other} bindings")


def _batch(trigger: Mapping[str, Any]) -> bool:
    cardinality = str(trigger.get("cardinality", "one")).lower()
    if cardinality not in ("one", "many"):
        raise NotServed(f"cardinality {cardinality!r}: expected 'one' or 'many'")
    if cardinality == "many" and trigger.get("isSessionsEnabled"):
        raise NotServed("batches from a session-enabled queue are not served")
    return cardinality == "many"
