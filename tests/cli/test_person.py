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
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudsim.rights import add_person
from cloudsim.state import World
from cloudsim.testing import person_env, start_simulator_process

ROOT = Path(__file__).resolve().parents[2]
KV_READER_APP = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"  # adopted by examples/configs.yaml
NOTE = "signed in as a person (a delegated token)"


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
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert {o["status"] for o in outcomes(applied).values()} == {"converged"}
    assert set(blocked) <= set(outcomes(applied))
    assert applied.stderr.count(NOTE) == 1
    assert "az ad app owner list --id <client id>" in applied.stderr and KV_READER_APP in applied.stderr
    assert "Applications created as you (sc-payments-kv-secrets) are not owned by it" in applied.stderr
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

    clean = cli(person_env(env, person), "plan")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "No changes" in clean.stdout

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
