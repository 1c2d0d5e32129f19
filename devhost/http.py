"""HTTP triggers on a local port, with the host's keys, and the host's admin call for other triggers.

Routes are `/{routePrefix}/{route}` (host.json, default `api`). A FUNCTION-level route wants a
function key (or the master key) in the `x-functions-key` header or the `code` query parameter, an
ADMIN-level one the master key; an ANONYMOUS one is open. A missing or wrong key gets 401 with an
empty body, an unhandled exception 500, as from the host. `POST /admin/functions/{name}` with the
master key runs a non-HTTP function now (a timer, or a queue trigger with `{"input": "<body>"}`)
and answers 202, as the host's admin API does.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import azure.functions as func
from aiohttp import web

from devhost.host import Keys, invoke
from devhost.index import HttpFunction, Index, ServiceBusFunction, TimerFunction

log = logging.getLogger("devhost")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PARAMETER = re.compile(r"\{(\*{0,2})([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_REQUEST_BODY = 100 * 1024 * 1024  # the host's default limit


def aiohttp_path(prefix: str, route: str) -> str:
    """The route template in aiohttp's syntax: `{name}` one segment, `{*name}` the rest of the path
    (the index has left out routes with other parameters)."""
    path = PARAMETER.sub(lambda m: f"{{{m.group(2)}:.*}}" if m.group(1) else f"{{{m.group(2)}}}", route)
    return "/" + "/".join(part for part in (prefix, path) if part)


def authorised(request: web.Request, level: str, keys: Keys) -> bool:
    if level == "ANONYMOUS":
        return True
    given = request.headers.get("x-functions-key") or request.query.get("code") or ""
    accepted = (keys.master,) if level == "ADMIN" else (keys.function, keys.master)
    return any(hmac.compare_digest(given.encode(), key.encode()) for key in accepted)


def to_response(result: Any) -> web.Response:
    """A function's return value as the host answers it."""
    if isinstance(result, func.HttpResponse):
        headers = dict(result.headers)
        if not any(name.lower() == "content-type" for name in headers) and result.mimetype:
            headers["Content-Type"] = f"{result.mimetype}; charset={result.charset}"
        return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
    if result is None:
        return web.Response(status=204)
    return web.Response(status=200, body=result if isinstance(result, bytes) else str(result).encode())


def build_app(
    index: Index,
    keys: Keys,
    route_prefix: str,
    on_demand: Callable[[ServiceBusFunction | TimerFunction, str], None],
) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BODY)
    for function in index.functions:
        if isinstance(function, HttpFunction):
            path = aiohttp_path(route_prefix, function.route)
            for method in function.methods:
                app.router.add_route(method, path, _route(function, keys))
    app.router.add_post("/admin/functions/{name}", _admin_invoke(index, keys, on_demand))
    return app


def _route(function: HttpFunction, keys: Keys) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        if not authorised(request, function.auth_level, keys):
            return web.Response(status=401)
        argument = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query),
            route_params=dict(request.match_info),
            body=await request.read(),
        )
        try:
            result = await invoke(
                function, argument, "This function was programmatically called via the host APIs."
            )
        except Exception:
            return web.Response(status=500)  # invoke logged it; nothing of it goes to the caller
        return to_response(result)

    return serve


def _admin_invoke(
    index: Index, keys: Keys, on_demand: Callable[[ServiceBusFunction | TimerFunction, str], None]
) -> Handler:
    async def run(request: web.Request) -> web.StreamResponse:
        if not authorised(request, "ADMIN", keys):
            return web.Response(status=401)
        function = index.named(request.match_info["name"])
        if not isinstance(function, ServiceBusFunction | TimerFunction):
            return web.Response(status=404)  # unknown, or an HTTP function (call its route instead)
        try:
            body = json.loads(await request.read() or b"{}")
            given = body.get("input", "") if isinstance(body, dict) else None
        except ValueError:
            given = None
        if not isinstance(given, str):
            return web.json_response({"error": 'expected a JSON body like {"input": "..."}'}, status=400)
        on_demand(function, given)
        return web.Response(status=202)

    return run
