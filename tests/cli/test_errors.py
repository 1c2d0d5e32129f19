"""Errors for people (issue 14): what the environment or a user can get wrong ends in one line
saying what to do and the documented exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.cli.test_live import ROOT, simulator_env

__all__ = ["simulator_env"]  # the fixture, used below by name

UNREACHABLE = "https://127.0.0.1:1"  # nothing listens on port 1
GREEDY_ROLE = ("Key Vault Reader", "Owner")  # what policy.yaml never allows


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=env if env is not None else _clean_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _clean_environment() -> dict[str, str]:
    """This process's environment without any setting that could sign in or name a store."""
    prefixes = ("WIF_", "AZURE_", "IDENTITY_", "MSI_", "ServiceBus")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def one_clear_line(result: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and says in lines[0], result.stderr


def test_not_signed_in_is_one_line_and_exit_2() -> None:
    env = {**_clean_environment(), "WIF_GRAPH_URL": UNREACHABLE, "WIF_ARM_URL": UNREACHABLE}
    env["WIF_ADO_URL"] = UNREACHABLE
    result = run("plan", "--configs", "examples/configs.yaml", "--cloud", "simulator", env=env)
    one_clear_line(result, 2, "not signed in")
    assert "az login" in result.stderr and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1  # not azure-identity's page of attempted credentials


def test_an_unreachable_endpoint_fails_the_configs_with_one_line_saying_what_to_check(
    simulator_env: dict[str, str],
) -> None:
    env = {**os.environ, **simulator_env, "WIF_ARM_URL": UNREACHABLE}
    result = run("plan", "--configs", "examples/configs.yaml", "--cloud", "simulator", env=env)
    one_clear_line(result, 1, "could not be reached")
    assert "WIF_ARM_URL" in result.stderr
    assert "failed-temporary" in result.stdout  # the report still says which configs


def test_an_unreachable_service_bus_is_one_line_and_exit_1() -> None:
    env = {
        **_clean_environment(),
        "ServiceBusConnection": "Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=k;SharedAccessKey=v;"
        "UseDevelopmentEmulator=true",
    }
    result = run("dlq", "list", env=env)
    one_clear_line(result, 1, "cannot reach Service Bus")


def test_an_unreachable_table_is_one_line_and_exit_1() -> None:
    env = {
        **_clean_environment(),
        "WIF_TABLE_CONNECTION_STRING": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=a2V5;TableEndpoint=http://127.0.0.1:1/devstoreaccount1;",
    }
    result = run("export", env=env)
    one_clear_line(result, 1, "cannot reach Table Storage")


def test_configs_takes_several_files_after_one_flag(tmp_path: Path) -> None:
    documents = (ROOT / "examples" / "configs.yaml").read_text().split("\n---\n")
    (tmp_path / "a.yaml").write_text("\n---\n".join(documents[:2]))
    (tmp_path / "b.yaml").write_text("\n---\n".join(documents[2:]))
    result = run(
        "plan", "--configs", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"),
        "--observed", "examples/observed.json",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # drift, as with the one file
    assert "contoso/payments/kv-reader" in result.stdout and "fabrikam/storefront/deploy-web" in result.stdout
    assert "desired-state YAML files" in run("plan", "--help").stdout


def test_validate_and_import_check_the_default_policy(tmp_path: Path) -> None:
    greedy = tmp_path / "greedy.yaml"
    first = (ROOT / "examples" / "configs.yaml").read_text().split("\n---\n")[0]
    greedy.write_text(first.replace(*GREEDY_ROLE))
    for command in ("validate", "import"):
        result = run(command, str(greedy))  # policy.yaml of the working directory, as plan reads it
        assert result.returncode == 2, command + result.stderr
        assert "role Owner can change access" in result.stderr, command
    env = {**_clean_environment(), "WIF_POLICY_FILE": str(tmp_path / "none.yaml")}
    missing = run("validate", str(greedy), env=env)
    assert missing.returncode == 2 and "none.yaml: cannot read" in missing.stderr


def test_an_unknown_cloud_lists_every_name_the_option_takes() -> None:
    result = run("plan", "--configs", "examples/configs.yaml", "--cloud", "azure")
    one_clear_line(result, 2, "unknown cloud 'azure'")
    assert "AzureCloud" in result.stderr and "simulator" in result.stderr and "custom" in result.stderr


def test_a_yaml_error_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [unclosed\n")
    result = run("validate", str(broken))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f'in "{broken}", line 1' in result.stderr and "<unicode string>" not in result.stderr
