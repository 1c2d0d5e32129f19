"""`python -m reconciler import` checks the claims before it writes anything (against Azurite)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reconciler.cli.main import main
from tests.azurite import azurite_tables, table_settings
from tests.stores.conftest import APP_ID, document

__all__ = ["azurite_tables", "table_settings"]


@pytest.fixture
def env(table_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WIF_TABLE_ENDPOINT", raising=False)
    for key, value in table_settings.items():
        monkeypatch.setenv(key, value)


def write(path: Path, *documents: dict[str, object]) -> str:
    path.write_text(yaml.safe_dump_all(documents))
    return str(path)


def test_import_refuses_an_application_another_project_claimed_and_writes_nothing(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", write(tmp_path / "payments.yaml", document()), "--request-id", "CHG1"]) == 0
    other = document("deploy", project="identity")
    mine = document(
        "deploy", project="identity", application={"appId": "99999999-9999-4999-8999-999999999999"}
    )
    mine["serviceConnection"]["name"] = "mine"
    assert main(["import", write(tmp_path / "identity.yaml", mine, other), "--request-id", "CHG2"]) == 2
    err = capsys.readouterr().err
    assert f"appId {APP_ID} belongs to ADO project contoso/payments, not contoso/identity" in err
    assert main(["export"]) == 0
    exported = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["id"] for d in exported] == ["contoso/payments/kv-reader"]  # not even the valid one


def test_import_refuses_a_batch_whose_configs_of_two_projects_claim_one_application(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write(tmp_path / "both.yaml", document(), document("deploy", project="identity"))
    assert main(["import", files, "--request-id", "CHG1"]) == 2
    assert "contoso/identity/deploy" in capsys.readouterr().err


def test_import_refuses_a_connection_another_config_manages(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", write(tmp_path / "a.yaml", document()), "--request-id", "CHG1"]) == 0
    again = {**document(), "id": "payments/hijack"}
    assert main(["import", write(tmp_path / "b.yaml", again), "--request-id", "CHG2"]) == 2
    assert "is managed by config 'contoso/payments/kv-reader'" in capsys.readouterr().err
