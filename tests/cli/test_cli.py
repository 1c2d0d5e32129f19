"""The command line, run as a user runs it: a subprocess on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_validate_accepts_the_bundled_examples_against_the_default_policy() -> None:
    result = run("validate", str(EXAMPLES / "configs.yaml"), "--policy", "policy.yaml")
    assert result.returncode == 0, result.stderr
    assert "4 config(s) valid" in result.stdout


def test_validate_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: wif-reconciler/v1\nkind: FederationConfig\norganization: contoso\nproject: p\n"
        "tenantId: nope\nserviceConnection: {name: c, subscriptionId: x, subscriptionName: s}\n"
        "application: {appId: 0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0}\n---\n- not a mapping\n"
    )
    result = run("validate", str(bad))
    assert result.returncode == 2
    assert f"{bad}, document 1, tenantId: expected a GUID" in result.stderr
    assert f"{bad}, document 1, serviceConnection.subscriptionId: expected a GUID" in result.stderr
    assert f"{bad}, document 2: expected a mapping" in result.stderr


def test_validate_reports_unreadable_and_malformed_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [unclosed\n")
    result = run("validate", str(broken), str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "not valid YAML" in result.stderr and "missing.yaml: cannot read" in result.stderr


def test_validate_with_policy_reports_violations(tmp_path: Path) -> None:
    greedy = tmp_path / "greedy.yaml"
    text = (EXAMPLES / "configs.yaml").read_text().split("\n---\n")[0].replace("Key Vault Reader", "Owner")
    greedy.write_text(text)
    result = run("validate", str(greedy), "--policy", "policy.yaml")
    assert result.returncode == 2
    assert "contoso/payments/kv-reader: role Owner can change access" in result.stderr


def test_plan_prints_a_table_and_exits_1_on_drift() -> None:
    result = run("plan", "--configs", "examples/configs.yaml", "--observed", "examples/observed.json")
    assert result.returncode == 1, result.stderr
    assert "convert-connection" in result.stdout and "migrate-connection-issuer" in result.stdout
    assert "foreign: credential 'github-main'" in result.stdout


def test_plan_json_is_machine_readable() -> None:
    result = run(
        "plan",
        "--configs",
        "examples/configs.yaml",
        "--observed",
        "examples/observed.json",
        "--output",
        "json",
    )
    document = json.loads(result.stdout)["plan"]  # the shape of a live plan's report (schemas/)
    kinds = [a["kind"] for a in document["actions"]]
    assert kinds[0] == "create-application"
    assert document["summary"]["actions"] == len(kinds)
    assert {"kind", "phase", "target", "configIds", "drift", "changes"} <= set(document["actions"][0])


def test_plan_exits_0_when_converged(tmp_path: Path) -> None:
    empty = tmp_path / "observed.json"
    empty.write_text('{"applications": [], "roleAssignments": [], "serviceConnections": []}')
    configs = tmp_path / "none.yaml"
    configs.write_text("")
    result = run("plan", "--configs", str(configs), "--observed", str(empty))
    assert result.returncode == 0, result.stderr
    assert "No changes" in result.stdout


def test_plan_rejects_a_malformed_snapshot(tmp_path: Path) -> None:
    snapshot = tmp_path / "observed.json"
    snapshot.write_text('{"applications": [{"appId": "x"}]}')
    result = run("plan", "--configs", "examples/configs.yaml", "--observed", str(snapshot))
    assert result.returncode == 2
    assert "applications[0]: missing or malformed field 'objectId'" in result.stderr


def test_plan_rejects_organization_ids_that_are_not_a_mapping_of_names_to_ids(tmp_path: Path) -> None:
    snapshot = tmp_path / "observed.json"
    snapshot.write_text('{"organizationIds": {"contoso": 7}}')
    result = run("plan", "--configs", "examples/configs.yaml", "--observed", str(snapshot))
    assert result.returncode == 2
    assert "organizationIds must map organization names to ids" in result.stderr


def test_an_offline_plan_fails_configs_of_another_tenant_than_the_snapshots(tmp_path: Path) -> None:
    observed = json.loads((ROOT / "examples" / "observed.json").read_text(encoding="utf-8"))
    snapshot = tmp_path / "observed.json"
    snapshot.write_text(json.dumps({**observed, "tenantId": "0C1D2E3F-0000-4000-8000-000000000001"}))
    result = run("plan", "--configs", "examples/configs.yaml", "--observed", str(snapshot))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "tenant-mismatch" in result.stdout
    assert "the reconciler manages tenant 0c1d2e3f-0000-4000-8000-000000000001" in result.stdout
    snapshot.write_text(json.dumps({**observed, "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47"}))
    same = run("plan", "--configs", "examples/configs.yaml", "--observed", str(snapshot))
    assert "tenant-mismatch" not in same.stdout + same.stderr


def test_plan_rejects_a_snapshot_tenant_that_is_not_a_guid(tmp_path: Path) -> None:
    snapshot = tmp_path / "observed.json"
    snapshot.write_text('{"tenantId": "contoso.onmicrosoft.com"}')
    result = run("plan", "--configs", "examples/configs.yaml", "--observed", str(snapshot))
    assert result.returncode == 2
    assert "tenantId must be a GUID, got 'contoso.onmicrosoft.com'" in result.stderr


def test_an_offline_plan_reads_a_condition_and_fails_the_config_it_does_not_satisfy(tmp_path: Path) -> None:
    observed = json.loads((ROOT / "examples" / "observed.json").read_text(encoding="utf-8"))
    reader = observed["roleAssignments"][0]  # Reader on rg-web, wanted by fabrikam/storefront/deploy-web
    reader.update(description="", condition="@Resource[Microsoft.Web/sites:name] StringEquals 'one'")
    snapshot = tmp_path / "observed.json"
    snapshot.write_text(json.dumps(observed))
    result = run("plan", "--configs", "examples/configs.yaml", "--observed", str(snapshot))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "role-assignment-conditioned" in result.stdout
    assert reader["id"].rsplit("/", 1)[-1] in result.stdout


def test_an_offline_plan_fails_a_connection_the_snapshot_says_is_not_ready(tmp_path: Path) -> None:
    observed = json.loads((ROOT / "examples" / "observed.json").read_text(encoding="utf-8"))
    kv_reader = next(c for c in observed["serviceConnections"] if c["name"] == "kv-reader-staging")
    kv_reader["isReady"] = False
    kv_reader["operationStatus"] = {"state": "Failed", "statusMessage": "the tenant refused the app"}
    snapshot = tmp_path / "observed.json"
    snapshot.write_text(json.dumps(observed))
    result = run("plan", "--configs", "examples/configs.yaml", "--observed", str(snapshot))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "connection-not-ready" in result.stdout
    assert "operation state Failed: the tenant refused the app" in result.stdout
    assert "convert-connection" not in result.stdout  # nothing is written to it
