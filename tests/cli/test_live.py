"""`plan` and `apply` as a user runs them: subprocesses against the simulator in its own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloudsim.testing import AdminClient, start_simulator_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def simulator_env() -> AsyncIterator[dict[str, str]]:
    process, env = await start_simulator_process(ROOT / "examples" / "tenant.yaml")
    try:
        yield env
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "reconciler", *args]
    return subprocess.run(
        command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False
    )


def reconciler(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args, "--configs", "examples/configs.yaml", "--cloud", "simulator")


async def writes(admin: AdminClient) -> int:
    return sum(int(api["writes"]) for api in (await admin.counters()).values())


async def test_apply_converges_plan_reports_drift_and_dry_run_writes_nothing(
    simulator_env: dict[str, str],
) -> None:
    first = reconciler(simulator_env, "apply", "--output", "json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert {o["status"] for o in report["outcomes"]} == {"converged"}
    assert report["requests"]["graph"]["writes"] > 0

    clean = reconciler(simulator_env, "plan")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "No changes" in clean.stdout

    admin = AdminClient(simulator_env["WIF_SIMULATOR_ADMIN_URL"], Path(simulator_env["REQUESTS_CA_BUNDLE"]))
    await admin.delete_fic("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0", "contoso--payments--kv-reader")
    before = await writes(admin)
    drifted = reconciler(simulator_env, "apply", "--dry-run")
    assert drifted.returncode == 1
    assert "create-credential" in drifted.stdout and "drifted" in drifted.stdout
    assert await writes(admin) == before

    repaired = reconciler(simulator_env, "apply")
    assert repaired.returncode == 0, repaired.stdout
    assert reconciler(simulator_env, "plan").returncode == 0


def test_simulator_cloud_without_its_settings_is_a_clear_input_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIF_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "plan",
            "--configs",
            "examples/configs.yaml",
            "--cloud",
            "simulator",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "needs WIF_GRAPH_URL, WIF_ARM_URL, WIF_ADO_URL" in result.stderr


async def test_apply_from_the_table(simulator_env: dict[str, str], table_settings: dict[str, str]) -> None:
    env = {**simulator_env, **table_settings}
    imported = run_cli(env, "import", "examples/configs.yaml", "--request-id", "seed-1")
    assert imported.returncode == 0, imported.stderr
    applied = run_cli(env, "apply", "--from-table", "--cloud", "simulator")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "4 config(s): 4 converged" in applied.stdout
    both = run_cli(env, "apply", "--from-table", "--configs", "examples/configs.yaml", "--cloud", "simulator")
    assert both.returncode == 2 and "not both or neither" in both.stderr
