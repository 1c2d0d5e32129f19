"""`import` and `export` against Azurite, through the argparse commands the CLI registers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from azure.data.tables import TableServiceClient

from reconciler.cli.main import main
from reconciler.core.model import FederationConfig
from reconciler.core.serialise import config_to_document
from reconciler.documents import load_configs
from reconciler.state.history import Repair
from reconciler.state.stores import open_stores
from reconciler.state.tables import CONFIGS_TABLE

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "configs.yaml"


@pytest.fixture
def env(table_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delenv("WIF_TABLE_ENDPOINT", raising=False)
    for key, value in table_settings.items():
        monkeypatch.setenv(key, value)
    return table_settings


def test_import_then_export_gives_the_same_configs(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(EXAMPLES), "--request-id", "CHG1"]) == 0
    imported = capsys.readouterr().out
    assert "created  contoso/payments/kv-reader" in imported
    assert "4 created, 0 updated, 0 restored, 0 unchanged (4 config(s))." in imported

    exported = tmp_path / "exported.yaml"
    assert main(["export", "--output", str(exported)]) == 0

    assert load_configs([exported]) == sorted(load_configs([EXAMPLES]), key=lambda c: c.id)
    text = exported.read_text()
    assert text.startswith("---\napiVersion: wif-reconciler/v1\nkind: FederationConfig\nid: ")
    assert main(["export"]) == 0
    assert capsys.readouterr().out == text  # deterministic
    # Scopes read as they were written (ARM keeps names' case), not lower-cased.
    assert "/resourceGroups/rg-pay/providers/Microsoft.KeyVault/vaults/kv-pay" in text
    assert "/providers/Microsoft.Storage/storageAccounts/stweb" in text


def test_import_again_changes_only_what_changed(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(EXAMPLES)]) == 0
    documents = list(yaml.safe_load_all(EXAMPLES.read_text()))
    documents[0]["serviceConnection"]["pipelines"] = [12]
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump_all(documents))
    capsys.readouterr()

    assert main(["import", str(changed), "--request-id", "CHG2"]) == 0

    out = capsys.readouterr().out
    assert out.splitlines() == [
        "  updated  contoso/payments/kv-reader",
        "0 created, 1 updated, 0 restored, 3 unchanged (4 config(s)).",
    ]


def test_export_leaves_out_tombstones_and_reports_bad_rows(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configs = load_configs([EXAMPLES])
    asyncio.run(_store_and_retire_first(env, configs))
    with TableServiceClient.from_connection_string(env["WIF_TABLE_CONNECTION_STRING"]) as service:
        service.get_table_client(CONFIGS_TABLE).upsert_entity(
            {"PartitionKey": "contoso", "RowKey": "contoso~x~y", "Document": "[]", "Generation": 1}
        )
    exported = tmp_path / "out.yaml"

    assert main(["export", "--output", str(exported)]) == 1

    assert "warning: skipped table federationconfigs, row contoso/contoso~x~y" in capsys.readouterr().err
    assert [c.id for c in load_configs([exported])] == sorted(c.id for c in configs[1:])


async def _store_and_retire_first(settings: dict[str, str], configs: list[FederationConfig]) -> None:
    async with await open_stores(settings, None) as stores:
        for config in configs:
            await stores.configs.put(config_to_document(config), request_id="CHG1")
        await stores.configs.retire(configs[0].id, request_id="CHG2")


def test_import_validates_every_file_before_writing_anything(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: wif-reconciler/v1\nkind: FederationConfig\norganization: contoso\n")

    assert main(["import", str(EXAMPLES), str(bad)]) == 2
    assert "bad.yaml, document 1, tenantId" in capsys.readouterr().err

    assert main(["export"]) == 0
    assert capsys.readouterr().out == ""  # not even the good file's configs were imported


def test_import_checks_the_policy_when_given(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: wif-reconciler/v1\nkind: GrantPolicy\norganizations: [fabrikam]\n"
        "roles: [Reader]\nscopes: ['/subscriptions/*']\n"
    )

    assert main(["import", str(EXAMPLES), "--policy", str(policy)]) == 2
    assert "[organization-not-allowed]" in capsys.readouterr().err

    assert main(["export"]) == 0
    assert capsys.readouterr().out == ""


def test_history_shows_the_repairs_of_a_config_and_refuses_an_unknown_one(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(EXAMPLES), "--request-id", "CHG1"]) == 0
    repair = Repair(
        "contoso/payments/kv-reader", "2026-12-05T01:00:02+00:00", "2026-12-05T01:00:00Z", "arm-event",
        "jane@contoso.com", ("create-role-assignment Key Vault Reader on /x: applied",), "e1",
    )  # fmt: skip

    async def add() -> None:
        async with await open_stores(env, None) as stores:
            await stores.history.add(repair)

    asyncio.run(add())
    capsys.readouterr()
    assert main(["history", "contoso/payments/kv-reader"]) == 0
    shown = capsys.readouterr().out
    assert "arm-event" in shown and "by jane@contoso.com" in shown and "create-role-assignment" in shown
    assert main(["history", "contoso/payments/kv-reader", "--output", "json"]) == 0
    assert '"actor": "jane@contoso.com"' in capsys.readouterr().out
    assert main(["history", "contoso/payments/nope"]) == 2
    assert "no config contoso/payments/nope" in capsys.readouterr().err
    assert main(["history", "../x"]) == 2
