"""`python -m reconciler import` checks the claims before it writes anything (against Azurite)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reconciler.cli.main import main
from tests.azurite import azurite_tables, table_settings
from tests.stores.conftest import document

__all__ = ["azurite_tables", "table_settings"]


@pytest.fixture
def env(table_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WIF_TABLE_ENDPOINT", raising=False)
    for key, value in table_settings.items():
        monkeypatch.setenv(key, value)


def write(path: Path, *documents: dict[str, object]) -> str:
    path.write_text(yaml.safe_dump_all(documents))
    return str(path)


NEW_APP = {"displayName": "sc-payments-new", "create": True}


def test_import_refuses_an_application_to_create_another_project_claimed_and_writes_nothing(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payments = document(application=NEW_APP)
    assert main(["import", write(tmp_path / "payments.yaml", payments), "--request-id", "CHG1"]) == 0
    other = document("deploy", project="identity", application=NEW_APP)
    mine = document(
        "deploy", project="identity", application={"appId": "99999999-9999-4999-8999-999999999999"}
    )
    mine["serviceConnection"]["name"] = "mine"
    assert main(["import", write(tmp_path / "identity.yaml", mine, other), "--request-id", "CHG2"]) == 2
    err = capsys.readouterr().err
    assert (
        "displayName 'sc-payments-new' belongs to ADO project contoso/payments, not contoso/identity" in err
    )
    assert main(["export"]) == 0
    exported = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["id"] for d in exported] == ["contoso/payments/kv-reader"]  # not even the valid one


def test_import_refuses_a_batch_whose_configs_of_two_projects_claim_one_application_to_create(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = [document(application=NEW_APP), document("deploy", project="identity", application=NEW_APP)]
    assert main(["import", write(tmp_path / "both.yaml", *both), "--request-id", "CHG1"]) == 2
    assert "contoso/identity/deploy" in capsys.readouterr().err


def test_import_leaves_an_adopted_application_to_its_owners_tag(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Who names an existing app first does not decide (the engine reads the app's tenant tag)."""
    assert main(["import", write(tmp_path / "payments.yaml", document()), "--request-id", "CHG1"]) == 0
    other = document("deploy", project="identity")  # the same appId
    assert main(["import", write(tmp_path / "identity.yaml", other), "--request-id", "CHG2"]) == 0
    capsys.readouterr()
    assert main(["export"]) == 0
    exported = list(yaml.safe_load_all(capsys.readouterr().out))
    assert sorted(d["id"] for d in exported) == ["contoso/identity/deploy", "contoso/payments/kv-reader"]


def test_import_refuses_a_connection_another_config_manages(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", write(tmp_path / "a.yaml", document()), "--request-id", "CHG1"]) == 0
    again = {**document(), "id": "payments/hijack"}
    assert main(["import", write(tmp_path / "b.yaml", again), "--request-id", "CHG2"]) == 2
    assert "is managed by config 'contoso/payments/kv-reader'" in capsys.readouterr().err
