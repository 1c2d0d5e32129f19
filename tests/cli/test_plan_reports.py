"""What `plan` reports, offline and live (issue 14): one JSON schema for both, a config the
policy blocks or whose ADO organization or project does not exist fails alone, and the summary
says what is true."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from tests.cli.test_errors import run
from tests.cli.test_live import ROOT, simulator_env

__all__ = ["simulator_env"]  # the fixture, used below by name

SCHEMA = json.loads((ROOT / "schemas" / "run-report.v1.schema.json").read_text())
EXAMPLE = (ROOT / "examples" / "configs.yaml").read_text()


def with_extra_config(tmp_path: Path, organization: str, project: str) -> Path:
    """The examples plus one config of their first connection's shape in another place, with an
    application of its own (so it shares nothing with the others)."""
    first = EXAMPLE.split("\n---\n")[0]
    extra = (
        first.replace("organization: contoso ", f"organization: {organization} ")
        .replace("project: payments ", f"project: {project} ")
        .replace("name: kv-reader\n", "name: kv-extra\n")
        .replace(
            "appId: 0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0   # adopt this existing app registration",
            "displayName: sc-kv-extra\n  create: true",
        )
    )
    assert f"organization: {organization}" in extra and "create: true" in extra
    path = tmp_path / "configs.yaml"
    path.write_text(f"{EXAMPLE}\n---\n{extra}")
    return path


def live_plan(env: dict[str, str], configs: Path, *args: str) -> tuple[int, str, str]:
    result = run("plan", "--configs", str(configs), "--cloud", "simulator", *args, env={**os.environ, **env})
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


def statuses(stdout: str) -> dict[str, tuple[str, str]]:
    return {o["configId"]: (o["status"], o["reason"]) for o in json.loads(stdout)["outcomes"]}


def test_offline_and_live_plans_print_one_documented_schema(simulator_env: dict[str, str]) -> None:
    offline = run("plan", "--configs", "examples/configs.yaml", "--observed", "examples/observed.json",
                  "--output", "json")  # fmt: skip
    code, live, _ = live_plan(simulator_env, ROOT / "examples" / "configs.yaml", "--output", "json")
    for output in (offline.stdout, live):
        jsonschema.Draft202012Validator(SCHEMA).validate(json.loads(output))
    assert offline.returncode == code == 1  # both drifted: the examples are not applied yet
    assert json.loads(offline.stdout)["requests"] == {} and json.loads(live)["requests"]["graph"]["reads"] > 0


@pytest.mark.parametrize(
    ("organization", "project", "missing"),
    [("nosuchorg", "payments", "organization 'nosuchorg'"), ("contoso", "nosuchproject", "nosuchproject")],
)
def test_a_config_in_an_organization_or_project_that_does_not_exist_fails_alone(
    simulator_env: dict[str, str], tmp_path: Path, organization: str, project: str, missing: str
) -> None:
    configs = with_extra_config(tmp_path, organization, project)
    policy = tmp_path / "policy.yaml"  # allows the organization: only ADO can say it does not exist
    policy.write_text(
        (ROOT / "policy.yaml").read_text().replace("  - fabrikam\n", "  - fabrikam\n  - nosuchorg\n")
    )
    code, stdout, _ = live_plan(simulator_env, configs, "--output", "json", "--policy", str(policy))
    found = statuses(stdout)
    status, reason = found[f"{organization}/{project}/kv-extra"]
    assert code == 1 and status == "failed-permanent" and missing in reason
    assert {s for c, (s, _) in found.items() if "kv-extra" not in c} == {"drifted"}


def test_a_config_of_a_blocked_organization_is_blocked_and_never_read(
    simulator_env: dict[str, str], tmp_path: Path
) -> None:
    configs = with_extra_config(tmp_path, "blockedorg", "payments")  # not in policy.yaml
    code, stdout, _ = live_plan(simulator_env, configs, "--output", "json")
    status, reason = statuses(stdout)["blockedorg/payments/kv-extra"]
    assert code == 1 and status == "blocked" and "not in the policy's organizations" in reason
    assert "could not read" not in reason  # its organization was never asked for its connections


def test_an_empty_plan_with_blocked_configs_does_not_say_everything_matches(
    simulator_env: dict[str, str], tmp_path: Path
) -> None:
    assert run("apply", "--configs", "examples/configs.yaml", "--cloud", "simulator",
               env={**os.environ, **simulator_env}).returncode == 0  # fmt: skip
    configs = with_extra_config(tmp_path, "blockedorg", "payments")
    code, stdout, _ = live_plan(simulator_env, configs)
    assert code == 1
    assert "live state matches" not in stdout
    assert "No changes planned for the other configs; 1 config(s) blocked or in error (below)." in stdout
    assert "apply 0.00s" not in stdout and ", apply " not in stdout  # a dry run applies nothing
    assert "1 write," not in stdout and " 0 writes" in stdout


def test_progress_goes_to_stderr_only_when_asked_or_at_a_terminal(simulator_env: dict[str, str]) -> None:
    configs = ROOT / "examples" / "configs.yaml"
    _, quiet_out, quiet = live_plan(simulator_env, configs)
    assert quiet == ""  # stderr is a pipe here: nothing unasked
    _, asked_out, asked = live_plan(simulator_env, configs, "--progress")
    assert "observed 4 config(s): " in asked and "graph " in asked and "\r" not in asked  # plain lines
    assert asked_out.splitlines()[:-1] == quiet_out.splitlines()[:-1]  # the report is the same (timing aside)


def test_a_config_removed_from_the_file_is_reported_orphaned_by_a_live_plan(
    simulator_env: dict[str, str], tmp_path: Path
) -> None:
    assert run("apply", "--configs", "examples/configs.yaml", "--cloud", "simulator",
               env={**os.environ, **simulator_env}).returncode == 0  # fmt: skip
    documents = EXAMPLE.split("\n---\n")
    without_staging = tmp_path / "configs.yaml"  # kv-reader-staging (the 2nd) shares kv-reader's app
    without_staging.write_text("\n---\n".join([documents[0], *documents[2:]]))
    code, stdout, _ = live_plan(simulator_env, without_staging, "--output", "json")
    orphaned = [f for f in json.loads(stdout)["plan"]["findings"] if f["kind"] == "orphaned"]
    assert code == 0  # nothing is changed: an orphan is reported, never removed without --retired
    assert {f["configIds"][0] for f in orphaned} == {"contoso/payments/kv-reader-staging"}
    # On the application kv-reader still uses (the plan's group), and its connection (the orphan scan).
    assert {f["target"].split(" ")[0] for f in orphaned} == {"credential", "role", "service"}
