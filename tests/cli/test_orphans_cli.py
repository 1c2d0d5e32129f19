"""A config removed from the file is reported orphaned by `plan`, live and offline, even when no
remaining config names its application (issue 14); `--subset` says the file is not the whole
desired state; `--retired` removes what was reported."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from reconciler.state.tables import encode_row_key
from tests.cli.test_errors import run
from tests.cli.test_live import ROOT, simulator_env
from tests.cli.test_plan_reports import EXAMPLE, live_plan
from tests.stores.test_configs import _edit_row as edit_row

__all__ = ["simulator_env"]  # the fixture, used below by name

DOCUMENTS = EXAMPLE.split("\n---\n")
KV_SECRETS = "contoso/payments/kv-secrets"  # the 3rd config: the only one naming its (created) application


def orphaned(stdout: str) -> list[dict[str, Any]]:
    return [f for f in json.loads(stdout)["plan"]["findings"] if f["kind"] == "orphaned"]


def kinds(findings: list[dict[str, Any]]) -> list[str]:
    return sorted(str(f["target"]).split(" ")[0] for f in findings)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run(*args, "--cloud", "simulator", env={**os.environ, **env})


def write(path: Path, documents: list[str]) -> Path:
    path.write_text("\n---\n".join(documents))
    return path


def test_a_removed_config_whose_application_no_config_names_is_orphaned_until_retired(
    simulator_env: dict[str, str], tmp_path: Path
) -> None:
    examples = ROOT / "examples" / "configs.yaml"
    applied = cli(simulator_env, "apply", "--configs", str(examples))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    without = write(tmp_path / "configs.yaml", [*DOCUMENTS[:2], *DOCUMENTS[3:]])
    retired = write(tmp_path / "retired.yaml", [DOCUMENTS[2]])

    code, stdout, stderr = live_plan(simulator_env, without, "--output", "json")
    found = orphaned(stdout)
    assert code == 0 and stderr == ""  # reported, nothing to change: an orphan is never removed unasked
    assert kinds(found) == ["application", "credential", "role", "service"]
    assert {tuple(f["configIds"]) for f in found} == {(KV_SECRETS,)}
    application = next(f for f in found if f["target"].startswith("application"))
    assert application["target"].startswith("application sc-payments-kv-secrets (")
    assert "--retired FILE" in application["detail"]
    assert "service connection contoso/payments/kv-secrets" in [f["target"] for f in found]

    code, stdout, _ = live_plan(simulator_env, without, "--output", "json", "--subset")
    assert code == 0 and orphaned(stdout) == []

    code, stdout, _ = live_plan(simulator_env, without, "--retired", str(retired), "--output", "json")
    assert code == 1 and orphaned(stdout) == []  # retired: named, so planned for removal instead
    removed = cli(simulator_env, "apply", "--configs", str(without), "--retired", str(retired))
    assert removed.returncode == 0, removed.stdout + removed.stderr
    code, stdout, _ = live_plan(simulator_env, without, "--output", "json")
    left = orphaned(stdout)
    # The reconciler never deletes an application: what it created there is gone, the empty
    # application is still reported, with how to delete it.
    assert code == 0 and kinds(left) == ["application"] and left[0]["configIds"] == []
    assert "az ad app delete" in left[0]["detail"]


def test_the_orphan_scan_of_a_converged_plan_costs_one_graph_request(simulator_env: dict[str, str]) -> None:
    examples = ROOT / "examples" / "configs.yaml"
    applied = cli(simulator_env, "apply", "--configs", str(examples))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    reads: dict[str, dict[str, dict[str, int]]] = {}
    for scan, args in (("whole", ()), ("subset", ("--subset",))):
        code, stdout, _ = live_plan(simulator_env, examples, "--output", "json", *args)
        report = json.loads(stdout)
        assert code == 0 and orphaned(stdout) == [], stdout
        reads[scan] = report["requests"]
    assert reads["whole"]["graph"]["reads"] == reads["subset"]["graph"]["reads"] + 1
    assert {api: counts for api, counts in reads["whole"].items() if api != "graph"} == {
        api: counts for api, counts in reads["subset"].items() if api != "graph"
    }


def test_the_offline_plan_reports_what_is_marked_on_an_application_no_config_names(tmp_path: Path) -> None:
    """examples/observed.json holds deploy-web's adopted application with its marked credential
    and role assignments: without deploy-web in the file they are orphaned (the adopted
    application itself is not the reconciler's to report)."""
    snapshot = str(ROOT / "examples" / "observed.json")
    whole = run("plan", "--configs", "examples/configs.yaml", "--observed", snapshot, "--output", "json")
    assert orphaned(whole.stdout) == []
    without = write(tmp_path / "configs.yaml", DOCUMENTS[:3])
    plan = run("plan", "--configs", str(without), "--observed", snapshot, "--output", "json")
    found = orphaned(plan.stdout)
    assert kinds(found) == ["credential", "role", "role"]
    assert {tuple(f["configIds"]) for f in found} == {("fabrikam/storefront/deploy-web",)}
    subset = run("plan", "--configs", str(without), "--observed", snapshot, "--output", "json", "--subset")
    assert orphaned(subset.stdout) == []


def test_a_table_with_an_unreadable_row_skips_the_scan_and_says_why(
    simulator_env: dict[str, str], table_settings: dict[str, str]
) -> None:
    env = {**simulator_env, **table_settings}
    assert (
        run("import", "examples/configs.yaml", "--request-id", "seed-1", env={**os.environ, **env}).returncode
        == 0
    )
    assert cli(env, "apply", "--from-table").returncode == 0
    edit_row(table_settings, "contoso", encode_row_key(KV_SECRETS), Document="{not json")
    plan = cli(env, "plan", "--from-table", "--output", "json")
    assert "orphaned applications are not reported: 1 row(s) of the table could not be read" in plan.stderr
    assert orphaned(plan.stdout) == []  # kv-secrets' application is not called orphaned
