"""`python -m reconciler table migrate` against Azurite: its lines, summary and exit codes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.data.tables import TableServiceClient

from reconciler.cli.main import main
from reconciler.core.events import IndexKey
from reconciler.state.tables import CLAIMS_TABLE, CONFIGS_TABLE, INDEX_TABLE
from tests.stores.conftest import APP_ID, document
from tests.stores.old_rows import old_claim, old_config, old_index_row


@pytest.fixture
def raw(table_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[TableServiceClient]:
    """The command's environment, and the raw SDK to write rows as an earlier version did."""
    monkeypatch.delenv("WIF_TABLE_ENDPOINT", raising=False)
    for key, value in table_settings.items():
        monkeypatch.setenv(key, value)
    with TableServiceClient.from_connection_string(table_settings["WIF_TABLE_CONNECTION_STRING"]) as client:
        for table in (CONFIGS_TABLE, CLAIMS_TABLE, INDEX_TABLE):
            client.create_table_if_not_exists(table)
        yield client


def test_dry_run_then_migrate_then_nothing_left(
    raw: TableServiceClient, capsys: pytest.CaptureFixture[str]
) -> None:
    old_config(raw, document("kv-reader"))
    old_claim(raw, f"app:{APP_ID}", "contoso/payments/kv-reader")
    old_index_row(raw, IndexKey("principal", "aaaaaaaa-0000-0000-0000-000000000001"), f"app:{APP_ID}")

    assert main(["table", "migrate", "--dry-run"]) == 1  # something would change
    dry = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in dry[:-1]] == [
        ["would", "migrate", "federationconfigs"],
        ["would", "migrate", "federationclaims"],
        ["would", "migrate", "federationindex"],
    ]
    assert dry[-1] == (
        "3 row(s) would be migrated (dry run: nothing written); 0 could not be migrated; "
        "0 config(s) wait for their application owners' tenant tag."
    )

    assert main(["table", "migrate"]) == 0
    done = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in done[:-1]] == ["migrated"] * 3
    assert done[-1].startswith("3 row(s) migrated; 0 could not be migrated;")

    assert main(["table", "migrate"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "0 row(s) migrated; 0 could not be migrated; "
        "0 config(s) wait for their application owners' tenant tag."
    ]


def test_what_cannot_be_migrated_is_named_and_exits_1(
    raw: TableServiceClient, capsys: pytest.CaptureFixture[str]
) -> None:
    old_config(raw, document("kv-reader"))
    old_config(raw, {**document("kv-reader"), "id": "contoso/payments/twin"})

    assert main(["table", "migrate"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("cannot migrate  federationconfigs contoso/~connection~")
    assert out[1].startswith("0 row(s) migrated; 1 could not be migrated;")
    assert out[2] == "Fix what the lines above name, then run `table migrate` again."


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"WIF_TABLE_CONNECTION_STRING": "not a connection string"}, "is not a valid connection string"),
        ({}, "set WIF_TABLE_ENDPOINT"),
        ({"WIF_TABLE_ENDPOINT": "http://example.invalid"}, "must be an https URL"),
    ],
)
def test_bad_table_settings_are_one_line_and_exit_2(
    settings: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key in ("WIF_TABLE_CONNECTION_STRING", "WIF_TABLE_ENDPOINT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in settings.items():
        monkeypatch.setenv(key, value)

    assert main(["table", "migrate"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith("error: ") and message in line
    assert "Traceback" not in captured.err and captured.out == ""
