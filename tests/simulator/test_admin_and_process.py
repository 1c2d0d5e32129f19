"""The admin API (state, drift, counters), the generator, and the simulator as a process."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import ssl
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
import yaml
from azure.mgmt.authorization.aio import AuthorizationManagementClient
from msgraph.generated.models.application import Application
from msgraph.generated.models.federated_identity_credential import FederatedIdentityCredential
from msgraph.graph_service_client import GraphServiceClient

from cloudsim.generate import generate_tenant
from cloudsim.state import ADO_RESOURCE_APP_ID, World
from cloudsim.testing import SAMPLE_SUBSCRIPTION, RunningSimulator, running_simulator, start_simulator_process

from .test_arm_sdk import grant, principal

REPO_ROOT = Path(__file__).resolve().parents[2]
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
FIXED_ENV = {
    "WIF_CLOUD",
    "WIF_GRAPH_URL",
    "WIF_ARM_URL",
    "WIF_ADO_URL",
    "WIF_SIMULATOR_ADMIN_URL",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "AZURE_TENANT_ID",
}


async def test_counters_split_reads_and_writes_per_api_and_operation(
    graph: GraphServiceClient, cloud_env: RunningSimulator
) -> None:
    await graph.applications.post(Application(display_name="counted"))
    await graph.applications.get()
    await graph.applications.get()
    graph_counts = (await cloud_env.admin.counters())["graph"]
    assert (graph_counts["reads"], graph_counts["writes"]) == (2, 1)
    assert graph_counts["operations"]["applications.create"] == {"reads": 0, "writes": 1}
    await cloud_env.admin.reset_counters()
    assert await cloud_env.admin.counters() == {}


async def test_drift_on_graph_is_visible_through_the_sdk(
    graph: GraphServiceClient, cloud_env: RunningSimulator
) -> None:
    app = await graph.applications.post(Application(display_name="drifting"))
    assert app is not None and app.id and app.app_id
    fics = graph.applications.by_application_id(app.id).federated_identity_credentials
    for name in ("keep-me", "lose-me"):
        await fics.post(
            FederatedIdentityCredential(
                name=name, issuer="https://i", subject=name, audiences=["api://AzureADTokenExchange"]
            )
        )
    await cloud_env.admin.delete_fic(app.app_id, "lose-me")
    await cloud_env.admin.change_fic(app.app_id, "keep-me", subject="changed-by-hand")
    listed = await fics.get()
    assert listed is not None and [(f.name, f.subject) for f in listed.value or []] == [
        ("keep-me", "changed-by-hand")
    ]


async def test_drift_removes_a_role_assignment(
    arm: AuthorizationManagementClient, cloud_env: RunningSimulator
) -> None:
    scope = f"/subscriptions/{SAMPLE_SUBSCRIPTION}"
    created = await arm.role_assignments.create(
        scope, str(uuid.uuid4()), grant(await principal(cloud_env), READER)
    )
    assert created.id
    await cloud_env.admin.delete_role_assignment(created.id)
    assert created.id not in [a.id async for a in arm.role_assignments.list_for_subscription()]


async def test_state_dump_load_and_reset(cloud_env: RunningSimulator) -> None:
    initial = await cloud_env.admin.dump_state()
    await cloud_env.admin.seed_application("extra")
    dumped = await cloud_env.admin.dump_state()
    assert len(dumped["applications"]) == len(initial["applications"]) + 1
    await cloud_env.admin.reset()
    assert await cloud_env.admin.dump_state() == initial
    await cloud_env.admin.load_state(dumped)
    assert [a.display_name for a in cloud_env.world.applications] == ["extra"]
    assert World.from_json(json.loads(json.dumps(dumped))).to_json() == dumped

    context = ssl.create_default_context(cafile=str(cloud_env.ca_path))
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.get(f"{cloud_env.admin_url}/_sim/state", params={"format": "yaml"}) as response,
    ):
        assert yaml.safe_load(await response.text())["tenant_id"] == cloud_env.tenant_id


def test_generator_builds_apps_orgs_and_matching_configs() -> None:
    tenant = generate_tenant(configs=60, unmanaged_apps=7, seed=5)
    world = tenant.world
    docs = list(yaml.safe_load_all(tenant.configs_yaml()))
    assert len(docs) == 60
    assert {d["organization"] for d in docs} == {"contoso", "fabrikam"}
    assert [len(o.projects) for o in world.organizations] == [10, 10]
    assert len({d["serviceConnection"]["subscriptionId"] for d in docs}) == 5
    assert {d["tenantId"] for d in docs} == {world.tenant_id}  # the `tid` its tokens carry: not blocked
    assert all(1 <= len(d["roleAssignments"]) <= 2 and d["prune"] == "managed" for d in docs)
    per_app = Counter(d["application"]["appId"] for d in docs)
    assert max(per_app.values()) <= 3 and max(per_app.values()) > 1
    app_ids = {a.app_id for a in world.applications}
    assert set(per_app) <= app_ids and set(per_app) <= {s.app_id for s in world.service_principals}
    unmanaged = [a for a in world.applications if a.display_name.startswith("unmanaged-")]
    assert len(unmanaged) == 7 and all(a.federated_credentials for a in unmanaged)
    assert not any(o.endpoints for o in world.organizations)
    # The only role assignments are the reconciler's own, one per subscription (the tenant setup).
    assert {a.principal_id for a in world.role_assignments} == {world.caller_object_id}
    assert len(world.role_assignments) == len(world.settings.subscriptions)
    assert generate_tenant(configs=60, unmanaged_apps=7, seed=5).configs_yaml() == tenant.configs_yaml()


async def test_generated_tenant_is_served() -> None:
    tenant = generate_tenant(configs=25, unmanaged_apps=3)
    async with running_simulator(state=tenant.world) as sim:
        dumped = await sim.admin.dump_state()
    assert len(dumped["applications"]) == len(tenant.world.applications) > 3


async def test_process_serves_writes_env_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps(generate_tenant(configs=5, unmanaged_apps=1).world.to_json()), encoding="utf-8"
    )
    env_file = tmp_path / "sim.env"
    process, printed = await start_simulator_process(state, env_file)
    try:
        assert set(printed) == FIXED_ENV
        written = dict(line.split("=", 1) for line in env_file.read_text(encoding="utf-8").splitlines())
        assert written == printed
        assert printed["WIF_CLOUD"] == "custom" and printed["SSL_CERT_FILE"] == printed["REQUESTS_CA_BUNDLE"]
        assert printed["IDENTITY_ENDPOINT"].endswith("/msi/token")
        context = ssl.create_default_context(cafile=printed["SSL_CERT_FILE"])
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
            session.get(printed["WIF_SIMULATOR_ADMIN_URL"] + "/_sim/state") as response,
        ):
            assert (await response.json())["tenant_id"] == printed["AZURE_TENANT_ID"]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
        assert not Path(printed["SSL_CERT_FILE"]).parent.exists()  # its CA's temporary folder is gone
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGHUP])
async def test_the_process_removes_its_ca_folder_on_ctrl_c_and_hangup(
    tmp_path: Path, stop: signal.Signals
) -> None:
    process, printed = await start_simulator_process(tmp_path / "missing-state.json")
    try:
        folder = Path(printed["SSL_CERT_FILE"]).parent
        assert folder.is_dir()
        process.send_signal(stop)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
        assert not folder.exists()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_yaml_state_loads_and_bad_admin_input_is_a_400(cloud_env: RunningSimulator) -> None:
    world = generate_tenant(configs=3, unmanaged_apps=1).world
    context = ssl.create_default_context(cafile=str(cloud_env.ca_path))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.put(
            f"{cloud_env.admin_url}/_sim/state",
            data=yaml.safe_dump(world.to_json()),
            headers={"Content-Type": "application/yaml"},
        ) as response:
            assert response.status == 204
        async with session.post(f"{cloud_env.admin_url}/_sim/applications", json={"no": "name"}) as response:
            assert response.status == 400
        async with session.put(f"{cloud_env.admin_url}/_sim/faults", json={"nope": {}}) as response:
            assert response.status == 400
    assert cloud_env.world.tenant_id == world.tenant_id
    assert len(cloud_env.world.applications) == len(world.applications)


async def test_default_azure_credential_uses_the_simulated_managed_identity(
    cloud_env: RunningSimulator,
) -> None:
    from azure.identity.aio import DefaultAzureCredential

    async with DefaultAzureCredential(connection_verify=str(cloud_env.ca_path)) as credential:
        token = await credential.get_token(f"{ADO_RESOURCE_APP_ID}/.default")
    claims = json.loads(base64.urlsafe_b64decode(token.token.split(".")[1] + "=="))
    assert claims["aud"] == ADO_RESOURCE_APP_ID and claims["tid"] == cloud_env.tenant_id


def test_the_files_the_readme_has_the_simulator_write_are_git_ignored() -> None:
    generated = ["sim.env", "tenant.json", "configs.yaml"]  # `serve --env-file`, `generate`
    ignored = subprocess.run(
        ["git", "check-ignore", *generated], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert ignored.stdout.split() == generated
    kept = subprocess.run(["git", "check-ignore", "examples/configs.yaml"], cwd=REPO_ROOT, check=False)
    assert kept.returncode == 1  # the example stays tracked
