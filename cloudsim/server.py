"""Serving the simulated APIs over HTTPS on loopback, each on its own port (like separate hosts).

`Simulator` wires the one world to the five listeners (Graph, ARM, ADO, the
managed-identity endpoint, admin) and knows the environment a client needs.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import trustme
import yaml
from aiohttp import web

from cloudsim.admin import Admin
from cloudsim.ado import Ado
from cloudsim.api import EMPTY, Api, Call, Reply, RequestCounters
from cloudsim.arm import Arm
from cloudsim.events import EventEmitter
from cloudsim.faults import Faults
from cloudsim.graph import Graph
from cloudsim.limits import Limits, Throttle
from cloudsim.msi import TOKEN_PATH, ManagedIdentity
from cloudsim.state import JsonObject, World

HOST = "127.0.0.1"
# Listener order: with --port N the APIs take N, N+1, ... in this order.
API_ORDER = ("graph", "arm", "ado", "msi", "admin")


class LoopbackTls:
    """A throwaway CA and a certificate for 127.0.0.1/localhost, made in memory."""

    def __init__(self) -> None:
        self.ca = trustme.CA(organization_name="WIF Reconciler cloud simulator")
        self._certificate = self.ca.issue_cert(HOST, "localhost")

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._certificate.configure_cert(context)
        return context

    def write_ca(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.ca.cert_pem.write_to_path(str(path))
        return path


def _parse_body(raw: bytes, content_type: str) -> object:
    if not raw:
        return None
    if "yaml" in content_type:
        return yaml.safe_load(raw)
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _to_response(reply: Reply) -> web.StreamResponse:
    if reply.raw is not None:
        return web.Response(status=reply.status, body=reply.raw, headers=reply.headers)
    if reply.body is EMPTY:
        return web.Response(status=reply.status, headers=reply.headers)
    headers = {"Content-Type": "application/json; charset=utf-8", **reply.headers}
    return web.Response(status=reply.status, body=json.dumps(reply.body).encode(), headers=headers)


def _handler(api: Api) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read() if request.can_read_body else b""
        call = Call(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            body=_parse_body(raw, request.content_type),
            base_url=f"{request.scheme}://{request.host}",
        )
        reply = await api.serve(call)
        if reply.drop:
            # A dropped connection: the client sees the socket close with no answer.
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never written: the connection is gone
        return _to_response(reply)

    return handle


class Simulator:
    """The world, the APIs over it, and (once started) their HTTPS listeners."""

    def __init__(
        self,
        world: World | None = None,
        faults: Mapping[str, Faults] | None = None,
        identity_header: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        """`limits` default to Azure's (`Limits()`); `Limits.lenient()` only for runs that need more."""
        self.world = world or World.from_json({})
        self.counters = RequestCounters()
        self.graph = Graph(self.world, self.counters)
        self.arm = Arm(self.world, self.counters)
        self.ado = Ado(self.world, self.counters)
        self.msi = ManagedIdentity(self.world, self.counters, identity_header)
        apis = {"graph": self.graph.api, "arm": self.arm.api, "ado": self.ado.api, "msi": self.msi.api}
        self.throttle = Throttle(limits or Limits())
        self.graph.api.limit = self.throttle.graph
        self.graph.api.budget_percent = self.throttle.graph_percent
        self.arm.api.limit = self.throttle.arm
        self.ado.api.limit = self.throttle.ado
        self.admin = Admin(
            self.world,
            self.counters,
            {name: api.faults for name, api in apis.items()},
            self.world.to_json(),
            self.throttle,
        )
        self.apis: dict[str, Api] = {**apis, "admin": self.admin.api}
        self.events = EventEmitter(self.world)
        for api in self.apis.values():
            api.on_change = self.events.observe
        self.admin.api.routes.add("GET", r"/_sim/events", "events.take", self._take_events)
        self.admin.api.routes.add("PUT", r"/_sim/events", "events.configure", self._configure_events)
        for name, settings in (faults or {}).items():
            self.apis[name].faults.configure(settings)
        self.tls = LoopbackTls()
        self.urls: dict[str, str] = {}
        self.ca_path: Path | None = None
        self._runners: list[web.AppRunner] = []

    async def start(self, ca_path: Path, port: int = 0) -> None:
        """Listen on loopback: ports port, port+1, ... in API_ORDER, or free ports when port is 0."""
        self.ca_path = self.tls.write_ca(ca_path)
        context = self.tls.server_context()
        for offset, name in enumerate(API_ORDER):
            app = web.Application(client_max_size=16 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", _handler(self.apis[name]))
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, HOST, port + offset if port else 0, ssl_context=context)
            await site.start()
            self._runners.append(runner)
            bound = runner.addresses[0][1]
            self.urls[name] = f"https://{HOST}:{bound}"

    def _take_events(self, _call: Call, _match: re.Match[str]) -> Reply:
        return Reply(200, self.events.take())

    async def _configure_events(self, call: Call, _match: re.Match[str]) -> Reply:
        """Body `{"serviceBus": "<connection string>", "queue": "events"}`; no serviceBus: keep them."""
        body = call.body if isinstance(call.body, dict) else {}
        await self.events.deliver_to(body.get("serviceBus") or None, str(body.get("queue") or "events"))
        return Reply(204)

    async def stop(self) -> None:
        await self.events.close()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    def initial_state(self, state: JsonObject) -> None:
        """What POST /_sim/reset goes back to."""
        self.admin.initial_state = state

    def env(self) -> dict[str, str]:
        """The variables that point the reconciler, azure-identity and the SDKs at this simulator."""
        ca = str(self.ca_path)
        return {
            "WIF_CLOUD": "custom",
            "WIF_GRAPH_URL": self.urls["graph"],
            "WIF_ARM_URL": self.urls["arm"],
            "WIF_ADO_URL": self.urls["ado"],
            "WIF_SIMULATOR_ADMIN_URL": self.urls["admin"],
            "REQUESTS_CA_BUNDLE": ca,
            "SSL_CERT_FILE": ca,
            "IDENTITY_ENDPOINT": self.urls["msi"] + TOKEN_PATH,
            "IDENTITY_HEADER": self.msi.identity_header,
            "AZURE_TENANT_ID": self.world.tenant_id,
        }
