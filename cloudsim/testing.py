"""Running the simulator inside a test: an async context manager, a typed admin client, fixtures.

    async with running_simulator(state=sample_world()) as sim:
        sim.env            # the NAME=value environment a client needs
        sim.graph_url      # https://127.0.0.1:P (clients append /v1.0)
        await sim.admin.set_faults({"graph": Faults(throttle_budget=10)})

Other test packages get the fixtures by importing them into their conftest.py:
`from cloudsim.testing import cloud_simulator, cloud_env  # noqa: F401`.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloudsim.eventgrid import provision_drift_events
from cloudsim.faults import Faults
from cloudsim.limits import Limits
from cloudsim.msi import PERSON_TOKEN_PATH, TOKEN_PATH
from cloudsim.rights import grant_reconciler_rights
from cloudsim.server import Simulator
from cloudsim.state import JsonObject, Organization, Project, World, new_id

SAMPLE_SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
SAMPLE_EVENTS_QUEUE = (
    f"/subscriptions/{SAMPLE_SUBSCRIPTION}/resourceGroups/rg-wif/providers/Microsoft.ServiceBus"
    "/namespaces/sb-wif-sim/queues/events"
)
_SOURCE_ROOT = Path(__file__).resolve().parents[1]  # where `python -m cloudsim` can be found


def sample_world() -> World:
    """A small tenant: one organization with two projects, one subscription, built-in roles."""
    world = World.from_json({})
    world.organizations.append(
        Organization(
            name="contoso",
            id=new_id(),
            projects=[Project(id=new_id(), name="payments"), Project(id=new_id(), name="identity")],
        )
    )
    world.settings.subscriptions = {SAMPLE_SUBSCRIPTION: "Payments Prod"}
    grant_reconciler_rights(world)  # the rights a deployment grants the reconciler
    return provision_drift_events(world, SAMPLE_EVENTS_QUEUE)  # and its drift-event sources


class AdminClient:
    """The `/_sim/` API, typed."""

    def __init__(self, base_url: str, ca_path: Path) -> None:
        self.base_url = base_url
        self._ssl = ssl.create_default_context(cafile=str(ca_path))

    async def _call(self, method: str, path: str, body: object = None, **params: str) -> Any:
        connector = aiohttp.TCPConnector(ssl=self._ssl)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.request(method, self.base_url + path, json=body, params=params or None) as response,
        ):
            text = await response.text()
            if response.status >= 400:
                raise RuntimeError(f"admin {method} {path} -> {response.status}: {text}")
            return json.loads(text) if text else None

    async def dump_state(self) -> JsonObject:
        result: JsonObject = await self._call("GET", "/_sim/state")
        return result

    async def load_state(self, state: World | JsonObject) -> None:
        await self._call("PUT", "/_sim/state", state.to_json() if isinstance(state, World) else state)

    async def reset(self) -> None:
        await self._call("POST", "/_sim/reset")

    async def set_faults(self, faults: Mapping[str, Faults]) -> None:
        await self._call("PUT", "/_sim/faults", {api: f.to_json() for api, f in faults.items()})

    async def set_limits(self, limits: Limits) -> None:
        await self._call("PUT", "/_sim/limits", limits.to_json())

    async def counters(self) -> JsonObject:
        result: JsonObject = await self._call("GET", "/_sim/counters")
        return result

    async def reset_counters(self) -> None:
        await self._call("DELETE", "/_sim/counters")

    async def update_settings(self, **settings: object) -> JsonObject:
        result: JsonObject = await self._call("PATCH", "/_sim/settings", settings)
        return result

    async def seed_application(
        self,
        display_name: str,
        created_seconds_ago: float = 3600,
        service_principal: bool = True,
        *,
        owned: bool = True,
        tenant: str | None = "contoso/payments",
    ) -> JsonObject:
        """Create an app (+ service principal): returns id, appId and servicePrincipalId.

        `owned`: the caller's identity (the reconciler) is its owner, as an adopted app must be;
        False makes a foreign app, whose writes Graph refuses (403). `tenant`: the ADO
        `organization/project` its owners allow in its tenant tag, as an adopted app must name
        (docs/deploy.md); None leaves it untagged.
        """
        body: JsonObject = {
            "displayName": display_name,
            "createdSecondsAgo": created_seconds_ago,
            "servicePrincipal": service_principal,
        }
        if not owned:
            body["owners"] = []
        if tenant is not None:
            body["tags"] = [f"wif-reconciler:tenant={tenant}"]
        result: JsonObject = await self._call("POST", "/_sim/applications", body)
        return result

    async def add_owner(self, app_id: str, owner_id: str | None = None) -> list[str]:
        """Make `owner_id` (default: the caller's identity) an owner of the app, as a person would."""
        body = {"id": owner_id} if owner_id else {}
        result: JsonObject = await self._call("POST", f"/_sim/applications/{app_id}/owners", body)
        return list(result["owners"])

    async def remove_owner(self, app_id: str, owner_id: str) -> list[str]:
        result: JsonObject = await self._call("DELETE", f"/_sim/applications/{app_id}/owners/{owner_id}")
        return list(result["owners"])

    async def delete_fic(self, app_id: str, name: str) -> None:
        await self._call("DELETE", f"/_sim/applications/{app_id}/federatedIdentityCredentials/{name}")

    async def change_fic(self, app_id: str, name: str, **fields: object) -> None:
        await self._call("PATCH", f"/_sim/applications/{app_id}/federatedIdentityCredentials/{name}", fields)

    async def delete_role_assignment(self, assignment_id: str) -> None:
        await self._call("DELETE", "/_sim/roleAssignments", id=assignment_id)

    async def recreate_connection(self, org: str, endpoint_id: str) -> str:
        result = await self._call("POST", f"/_sim/ado/{org}/endpoints/{endpoint_id}/recreate")
        return str(result["id"])

    async def convert_connection_to_secret(self, org: str, endpoint_id: str) -> None:
        await self._call("POST", f"/_sim/ado/{org}/endpoints/{endpoint_id}/convert-to-secret")

    async def mark_connection_legacy(self, org: str, endpoint_id: str) -> None:
        await self._call("POST", f"/_sim/ado/{org}/endpoints/{endpoint_id}/mark-legacy")

    async def change_connection(self, org: str, endpoint_id: str, **fields: object) -> None:
        await self._call("PATCH", f"/_sim/ado/{org}/endpoints/{endpoint_id}", fields)

    async def deliver_events_to(self, connection_string: str | None, queue: str = "events") -> None:
        """Send the Event Grid events of every change to this Service Bus queue (None: keep them)."""
        await self._call("PUT", "/_sim/events", {"serviceBus": connection_string, "queue": queue})

    async def take_events(self) -> JsonObject:
        """The events kept since the last call: `eventGrid` (a list of Event Grid events) and
        `entra` (the Entra audit records as one diagnostic-settings body, `{"records": [...]}`)."""
        result: JsonObject = await self._call("GET", "/_sim/events")
        return result


def duplicates(world: World) -> list[str]:
    """Objects that exist twice where once is right: credential pairs per app, grants, connection names.

    For an in-process world (`RunningSimulator.world`) or a dumped one (`World.from_json(await
    admin.dump_state())`)."""
    found: list[str] = []
    for app in world.applications:
        pairs = Counter((c.issuer, c.subject) for c in app.federated_credentials)
        found += [f"credential {pair} on {app.app_id}" for pair, n in pairs.items() if n > 1]
    grants = Counter(
        (ra.scope.lower(), ra.role_definition_guid, ra.principal_id) for ra in world.role_assignments
    )
    found += [f"assignment {grant}" for grant, n in grants.items() if n > 1]
    for org in world.organizations:
        names = Counter((tuple(r.project_id for r in e.project_refs), e.name.lower()) for e in org.endpoints)
        found += [f"connection {name}" for name, n in names.items() if n > 1]
    return found


@dataclass
class RunningSimulator:
    simulator: Simulator
    admin: AdminClient
    ca_path: Path
    env: dict[str, str]

    @property
    def world(self) -> World:
        """The live in-memory world (in-process only): for assertions, not for clients."""
        return self.simulator.world

    @property
    def graph_url(self) -> str:
        return self.env["WIF_GRAPH_URL"]

    @property
    def arm_url(self) -> str:
        return self.env["WIF_ARM_URL"]

    @property
    def ado_url(self) -> str:
        return self.env["WIF_ADO_URL"]

    @property
    def admin_url(self) -> str:
        return self.env["WIF_SIMULATOR_ADMIN_URL"]

    @property
    def identity_endpoint(self) -> str:
        return self.env["IDENTITY_ENDPOINT"]

    @property
    def tenant_id(self) -> str:
        return self.env["AZURE_TENANT_ID"]


def _world_from(state: World | JsonObject | Path | None) -> World:
    if isinstance(state, World):
        return state
    if isinstance(state, Path):
        return World.from_json(json.loads(state.read_text(encoding="utf-8")))
    return World.from_json(state) if state is not None else sample_world()


@asynccontextmanager
async def running_simulator(
    state: World | JsonObject | Path | None = None,
    faults: Mapping[str, Faults] | None = None,
    workdir: Path | None = None,
    limits: Limits | None = None,
) -> AsyncIterator[RunningSimulator]:
    """The simulator on free loopback ports for the duration of the block (Azure's limits unless told)."""
    world = _world_from(state)
    simulator = Simulator(world, faults=faults, limits=limits)
    with tempfile.TemporaryDirectory(prefix="cloudsim-") as scratch:
        ca_path = (workdir or Path(scratch)) / "cloudsim-ca.pem"
        await simulator.start(ca_path)
        try:
            env = simulator.env()
            yield RunningSimulator(
                simulator, AdminClient(env["WIF_SIMULATOR_ADMIN_URL"], ca_path), ca_path, env
            )
        finally:
            await simulator.stop()


def person_env(env: Mapping[str, str], object_id: str) -> dict[str, str]:
    """The simulator's environment, signed in as a person of its world (`World.people`): the same
    credential chain then fetches that person's delegated tokens (cloudsim/msi.py, PERSON_TOKEN_PATH)."""
    endpoint = env["IDENTITY_ENDPOINT"].removesuffix(TOKEN_PATH)
    return {**env, "IDENTITY_ENDPOINT": endpoint + PERSON_TOKEN_PATH.format(object_id=object_id)}


async def start_simulator_process(
    state: Path, env_file: Path | None = None, *extra_args: str, startup_timeout: float = 30.0
) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """`python -m cloudsim serve` on free ports; returns the process and the environment it printed.

    Stop it with `process.send_signal(signal.SIGTERM)` and `await process.wait()`. A state of
    150,000 applications takes a minute to load: give such a start a longer `startup_timeout`.
    """
    arguments = ["-m", "cloudsim", "serve", "--port", "0", "--state", str(state), *extra_args]
    if env_file is not None:
        arguments += ["--env-file", str(env_file)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *arguments,
        cwd=_SOURCE_ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(_SOURCE_ROOT)},
    )
    assert process.stdout is not None
    printed: dict[str, str] = {}
    try:
        while "AZURE_TENANT_ID" not in printed:
            line = (await asyncio.wait_for(process.stdout.readline(), timeout=startup_timeout)).decode()
            if not line.strip():
                raise RuntimeError("the simulator exited before printing its environment")
            name, _, value = line.strip().partition("=")
            printed[name] = value
    except BaseException:
        if process.returncode is None:  # never leave a simulator behind that nobody will stop
            process.kill()
            await process.wait()
        raise
    return process, printed


@pytest.fixture
async def cloud_simulator() -> AsyncIterator[RunningSimulator]:
    """A fresh simulator with `sample_world()` for one test."""
    async with running_simulator() as sim:
        yield sim


@pytest.fixture
def cloud_env(
    cloud_simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningSimulator]:
    """`cloud_simulator` with its variables exported, so ManagedIdentityCredential and the SDKs find it."""
    for name, value in cloud_simulator.env.items():
        monkeypatch.setenv(name, value)
    yield cloud_simulator
