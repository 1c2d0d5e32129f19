"""Two different service connections whose derived config ids are the same (second hostile review).

A config without an explicit `id` is named `{organization}/{project}/{connection}` with every run
of other characters folded to `-`, so `kv reader`, `kv--reader`, `kv/reader` and `kv-reader` (four
different connections in Azure DevOps) all derive `contoso/payments/kv-reader`. A ticket for one of
them used to be stored as an update of the config of another: the config moved to the new
connection, the old connection's federated credential (its name comes from the id) was rewritten
with the new subject, and the old connection's pipelines could no longer sign in, while the ticket
said "accepted". Through the real ticket handler, Azurite, the Service Bus peer and the simulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reconciler.cli.main import main
from tests.security.tenancy_world import (
    Tenant,
    azurite_tables,
    cloud_env,
    cloud_simulator,
    servicebus_peer,
    table_settings,
    tenant,
)
from tests.stores.conftest import document

__all__ = ["azurite_tables", "cloud_env", "cloud_simulator", "servicebus_peer", "table_settings", "tenant"]

CONFIG = "contoso/payments/kv-reader"


@pytest.mark.parametrize("other", ["kv reader", "kv--reader", "kv/reader", "KV (Reader)", "kv\u2010reader"])
async def test_a_connection_whose_derived_id_is_another_connections_config_is_rejected(
    tenant: Tenant, other: str
) -> None:
    await tenant.send(tenant.ticket("CHG-1", name="kv-reader"))
    await tenant.deliver_reconciles()
    assert (await tenant.outcome("CHG-1"))[0] == "applied"
    subjects_before = {c.subject for c in tenant.credentials(tenant.victim_app["appId"])}
    (connection,) = tenant.connections("payments")
    assert len(subjects_before) == 1 and connection.id in next(iter(subjects_before))

    await tenant.send(tenant.ticket("CHG-2", name=other))
    outcome, reason = await tenant.outcome("CHG-2")
    assert outcome == "rejected", reason
    assert f"config {CONFIG!r} already manages service connection contoso/payments/kv-reader" in reason
    assert "give this config an explicit id" in reason
    assert await tenant.deliver_reconciles() == 0
    stored = await (await tenant.service())._stores.configs.get(CONFIG)
    assert stored is not None and stored.config.connection_name == "kv-reader"
    assert {c.subject for c in tenant.credentials(tenant.victim_app["appId"])} == subjects_before


async def test_the_same_connection_in_other_letter_case_is_still_an_update(tenant: Tenant) -> None:
    await tenant.send(tenant.ticket("CHG-1", name="kv-reader"))
    await tenant.send(tenant.ticket("CHG-2", name="KV-Reader"))
    assert (await tenant.outcome("CHG-2"))[0] == "accepted"


async def test_an_explicit_id_of_its_own_still_moves_a_config_to_another_connection(tenant: Tenant) -> None:
    await tenant.send(tenant.ticket("CHG-1", name="kv-reader", config_id="payments/reader"))
    await tenant.send(tenant.ticket("CHG-2", name="kv reader", config_id="payments/reader"))
    assert (await tenant.outcome("CHG-2"))[0] == "accepted"
    stored = await (await tenant.service())._stores.configs.get("payments/reader")
    assert stored is not None and stored.config.connection_name == "kv reader"


async def test_a_derived_id_cannot_take_over_a_config_stored_under_that_id_explicitly(tenant: Tenant) -> None:
    """`id: contoso/payments/kv-reader` written for connection `deploy`: a later config for a
    connection named `kv-reader` derives that id and must not move the `deploy` config."""
    await tenant.send(tenant.ticket("CHG-1", name="deploy", config_id=CONFIG))
    await tenant.send(tenant.ticket("CHG-2", name="kv-reader"))
    outcome, reason = await tenant.outcome("CHG-2")
    assert outcome == "rejected" and "already manages service connection contoso/payments/deploy" in reason


def test_import_refuses_a_derived_id_collision_and_writes_nothing(
    table_settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("WIF_TABLE_ENDPOINT", raising=False)
    for key, value in table_settings.items():
        monkeypatch.setenv(key, value)
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump(document()))
    assert main(["import", str(first), "--request-id", "CHG1"]) == 0
    spaced, fresh = document(), document("deploy")
    spaced["serviceConnection"]["name"] = "kv reader"
    second = tmp_path / "second.yaml"
    second.write_text(yaml.safe_dump_all([fresh, spaced]))
    assert main(["import", str(second), "--request-id", "CHG2"]) == 2
    assert f"config {CONFIG!r} already manages service connection contoso/payments/kv-reader" in (
        capsys.readouterr().err
    )
    assert main(["export"]) == 0
    exported = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [(d["id"], d["serviceConnection"]["name"]) for d in exported] == [(CONFIG, "kv-reader")]
