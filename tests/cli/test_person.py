"""The CLI run by a person signed in (a delegated token, as `az login` gives) rather than by the deployed
identity: the owner rule, which models the identity's Application.ReadWrite.OwnedBy, is not applied;
the person's own rights decide, and the CLI says once what it did not check.

Subprocesses against the simulator in its own process; the person's token comes from its person
token route (docs/simulator.md, "People")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudsim.rights import add_person
from cloudsim.state import World
from cloudsim.testing import AdminClient, person_env, start_simulator_process

ROOT = Path(__file__).resolve().parents[2]
KV_READER_APP = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"  # adopted by examples/configs.yaml
NOTE = "signed in as a person (a delegated token)"
KV_SECRETS = "contoso/payments/kv-secrets"  # its application, sc-payments-kv-secrets, is to be created
IDENTITY = "WIF_IDENTITY_PRINCIPAL_ID"


@pytest.fixture
async def tenant(tmp_path: Path) -> AsyncIterator[tuple[dict[str, str], str]]:
    """The demo tenant where the reconciler's identity does not own KV_READER_APP, and a Cloud
    Application Administrator with the Azure DevOps and RBAC rights; the env and the person's id."""
    world = World.from_json(yaml.safe_load((ROOT / "examples" / "tenant.yaml").read_text(encoding="utf-8")))
    next(a for a in world.applications if a.app_id == KV_READER_APP).owners = []
    person = add_person(world)
    path = tmp_path / "tenant.json"
    path.write_text(json.dumps(world.to_json()), encoding="utf-8")
    process, env = await start_simulator_process(path)
    try:
        yield env, person.object_id
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


def cli(env: dict[str, str], command: str, *args: str) -> subprocess.CompletedProcess[str]:
    arguments = [command, "--configs", "examples/configs.yaml", "--cloud", "simulator", *args]
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *arguments],
        cwd=ROOT,
        env={**os.environ, "WIF_POLICY_FILE": "policy.yaml", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def outcomes(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    return {o["configId"]: o for o in json.loads(result.stdout)["outcomes"]}


async def test_a_person_applies_an_adopted_app_the_identity_does_not_own_and_is_told_once(
    tenant: tuple[dict[str, str], str],
) -> None:
    env, person = tenant
    as_identity = cli(env, "plan", "--output", "json")
    blocked = {k: o for k, o in outcomes(as_identity).items() if o["status"] == "blocked"}
    owner_rule = "does not own application " + KV_READER_APP
    assert len(blocked) == 2 and all(owner_rule in o["reason"] for o in blocked.values())
    assert NOTE not in as_identity.stderr

    applied = cli(person_env(env, person), "apply", "--output", "json")
    created = {k for k, o in outcomes(applied).items() if o["status"] != "converged"}
    assert created == {KV_SECRETS}, applied.stdout + applied.stderr  # not created as a person: below
    assert set(blocked) <= set(outcomes(applied))
    assert applied.stderr.count(NOTE) == 1
    assert "az ad app owner list --id <client id>" in applied.stderr and KV_READER_APP in applied.stderr
    assert "(sc-payments-kv-secrets) that do not exist yet are not created as you" in applied.stderr
    assert "could not read the applications the reconciler owns" not in applied.stdout

    identity = str(yaml.safe_load((ROOT / "examples" / "tenant.yaml").read_text())["caller_object_id"])
    checked = cli({**person_env(env, person), "WIF_IDENTITY_PRINCIPAL_ID": identity}, "plan")
    assert checked.stderr.count(NOTE) == 1, checked.stderr
    assert f"The deployed identity {identity} does not own {KV_READER_APP}:" in checked.stderr
    assert "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d" not in checked.stderr  # it owns that one
    assert f"--owner-object-id {identity}" in checked.stderr

    typo = cli({**person_env(env, person), "WIF_IDENTITY_PRINCIPAL_ID": "not-a-guid"}, "plan")
    assert typo.returncode == 2 and "WIF_IDENTITY_PRINCIPAL_ID must be" in typo.stderr, typo.stderr
    assert "Traceback" not in typo.stderr

    clean = cli(person_env(env, person), "plan", "--output", "json")
    assert {k for k, o in outcomes(clean).items() if o["status"] != "converged"} == {KV_SECRETS}

    still_blocked = cli(env, "plan", "--output", "json")  # the identity's own run is unchanged
    assert {k for k, o in outcomes(still_blocked).items() if o["status"] == "blocked"} == set(blocked)


async def test_doctor_as_a_person_says_so_and_skips_what_only_the_identitys_token_shows(
    tenant: tuple[dict[str, str], str],
) -> None:
    env, person = tenant
    result = cli(person_env(env, person), "doctor", "--output", "json")
    report = json.loads(result.stdout)
    found = {f"{f['area']}: {f['subject']}": f for f in report["findings"]}
    assert report["principalId"] == person
    sign_in = report["findings"][0]
    assert sign_in["area"] == "Sign-in" and sign_in["verdict"] == "skipped"
    assert "not as the deployed identity" in sign_in["subject"] and "YOUR rights" in sign_in["detail"]
    permission = found["Microsoft Graph: application permission Application.ReadWrite.OwnedBy"]
    assert permission["verdict"] == "skipped" and "appRoleAssignments" in permission["detail"]
    yours = found["Microsoft Graph: your delegated permission to write applications"]
    assert yours["verdict"] == "ok" and "Application.ReadWrite.All" in yours["detail"]
    owner = found[f"Microsoft Graph: owner of adopted application {KV_READER_APP}"]
    assert owner["verdict"] == "skipped" and f"az ad app owner list --id {KV_READER_APP}" in owner["detail"]
    assert found["Azure DevOps: member of organization contoso"]["verdict"] == "ok"
    rbac = [f for key, f in found.items() if key.startswith("Azure RBAC")]
    assert rbac and all(f["verdict"] == "ok" for f in rbac)

    identity = str(yaml.safe_load((ROOT / "examples" / "tenant.yaml").read_text())["caller_object_id"])
    named_env = {**person_env(env, person), "WIF_IDENTITY_PRINCIPAL_ID": identity}
    named = json.loads(cli(named_env, "doctor", "--output", "json").stdout)["findings"]
    owners = {f["subject"].rsplit(" ", 1)[1]: f for f in named if f["subject"].startswith("owner")}
    assert owners[KV_READER_APP]["verdict"] == "missing"
    assert owners[KV_READER_APP]["fix"].endswith(f"--owner-object-id {identity}")
    assert owners["1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d"]["verdict"] == "ok"

    table = cli(person_env(env, person), "doctor")
    assert table.stdout.startswith(
        f"Checking the rights of the person signed in (not the deployed identity) {person}"
    )
    assert "[skipped] signed in as a person" in table.stdout
    assert "Everything the reconciler needs is in place." not in table.stdout


@dataclass(frozen=True)
class AzLogin:
    env: dict[str, str]
    person: str  # a Cloud Application Administrator signed in as `az login` does
    narrow: str  # the same, without Directory.Read.All: Graph refuses them an owners add
    identity: str  # the deployed identity's object id
    admin: AdminClient  # the simulator's admin API


@pytest.fixture
async def az_login(tmp_path: Path) -> AsyncIterator[AzLogin]:
    """The demo tenant, unchanged (the identity owns what it adopts), and two administrators: one
    whose Graph token carries what `az login`'s does (Directory.AccessAsUser.All), one without."""
    world = World.from_json(yaml.safe_load((ROOT / "examples" / "tenant.yaml").read_text(encoding="utf-8")))
    person, narrow = add_person(world), add_person(world)
    person.graph_scopes = ["Application.ReadWrite.All", "Directory.AccessAsUser.All", "User.Read"]
    path = tmp_path / "tenant.json"
    path.write_text(json.dumps(world.to_json()), encoding="utf-8")
    process, env = await start_simulator_process(path)
    try:
        admin = AdminClient(env["WIF_SIMULATOR_ADMIN_URL"], Path(env["REQUESTS_CA_BUNDLE"]))
        yield AzLogin(env, person.object_id, narrow.object_id, world.caller_object_id, admin)
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


async def kv_secrets_app(admin: AdminClient) -> dict[str, Any] | None:
    apps = (await admin.dump_state())["applications"]
    return next((a for a in apps if a["display_name"] == "sc-payments-kv-secrets"), None)


async def test_a_persons_apply_makes_the_deployed_identity_owner_of_what_it_creates(
    az_login: AzLogin,
) -> None:
    env, person, identity, admin = az_login.env, az_login.person, az_login.identity, az_login.admin
    as_person = person_env(env, person)

    for command in ("plan", "apply"):  # without the identity's id: refused, and the others go on
        refused = outcomes(cli(as_person, command, "--output", "json"))
        assert refused[KV_SECRETS]["status"] == "failed-permanent"
        assert f"set {IDENTITY} to its object id" in refused[KV_SECRETS]["reason"]
        assert {o["status"] for k, o in refused.items() if k != KV_SECRETS} <= {"converged", "drifted"}
    assert await kv_secrets_app(admin) is None

    # Graph refuses the owner step: the app exists, nothing else is written to it, the config says why.
    narrow = outcomes(
        cli({**person_env(env, az_login.narrow), IDENTITY: identity}, "apply", "--output", "json")
    )
    assert narrow[KV_SECRETS]["status"] == "failed-permanent"
    assert f"could not make the deployed identity {identity} an owner" in narrow[KV_SECRETS]["reason"]
    assert [a["outcome"] for a in narrow[KV_SECRETS]["actions"]][:3] == ["applied", "failed", "skipped"]
    app = await kv_secrets_app(admin)
    assert app is not None and app["owners"] == [az_login.narrow] and not app["federated_credentials"]

    with_id = {**as_person, IDENTITY: identity}
    dry_run = cli(with_id, "plan")  # the next run retries the owner step first: one read told it
    listed = [line.split()[1:3] for line in dry_run.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert listed[0] == ["add-application-owner", "app"], dry_run.stdout
    assert f"owner={identity}" in dry_run.stdout
    applied = cli(with_id, "apply", "--output", "json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert {o["status"] for o in outcomes(applied).values()} == {"converged"}
    assert identity in ((await kv_secrets_app(admin)) or {})["owners"]

    deployed = cli(env, "apply", "--output", "json")  # the deployed identity's own pass: no 403
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert {o["status"] for o in outcomes(deployed).values()} == {"converged"}
    assert "Authorization_RequestDenied" not in deployed.stdout
    assert "No changes" in cli(with_id, "plan").stdout


async def test_a_new_app_gets_the_owner_step_right_after_its_create(az_login: AzLogin) -> None:
    with_id = {**person_env(az_login.env, az_login.person), IDENTITY: az_login.identity}
    dry_run = cli(with_id, "plan")
    assert "add-application-owner      new app 'sc-payments-kv-secrets'" in dry_run.stdout, dry_run.stdout
    applied = outcomes(cli(with_id, "apply", "--output", "json"))
    steps = [a["kind"] for a in applied[KV_SECRETS]["actions"]]
    assert steps[:3] == ["create-application", "add-application-owner", "create-service-principal"]
    app = await kv_secrets_app(az_login.admin)
    assert app is not None and set(app["owners"]) == {az_login.person, az_login.identity}
