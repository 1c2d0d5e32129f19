"""`table migrate` against Azurite: rows written in each older shape with the raw azure-data-tables
client, then migrated; the current code reads them as it reads its own; a second run changes
nothing; a dry run writes nothing; a concurrent change is reported, never overwritten."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from reconciler.core.events import IndexKey
from reconciler.core.model import ObservedState
from reconciler.core.plan import plan
from reconciler.engine.run import Status
from reconciler.state.claims import ClaimRejected
from reconciler.state.migrate import MigrationReport, migrate
from reconciler.state.status import ConfigStatus
from reconciler.state.stores import Stores
from reconciler.state.tables import CLAIMS_TABLE, CONFIGS_TABLE, INDEX_TABLE
from tests.azurite import TableRequests
from tests.core.builders import APP_ID as ADOPTED_APP_ID
from tests.core.builders import app, config, policy
from tests.stores.conftest import APP_ID, document
from tests.stores.old_rows import old_claim, old_config, old_index_row

OTHER_APP = "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d"
PRINCIPAL = IndexKey("principal", "aaaaaaaa-0000-0000-0000-000000000001")
CREATED = {"displayName": "sc-payments-created", "create": True}


@pytest.fixture
def raw(table_settings: dict[str, str], stores: Stores) -> Iterator[TableServiceClient]:
    """The SDK without our code, as an earlier version wrote rows (the tables exist: `stores`)."""
    with TableServiceClient.from_connection_string(table_settings["WIF_TABLE_CONNECTION_STRING"]) as client:
        yield client


async def run(stores: Stores, *, dry_run: bool = False) -> tuple[MigrationReport, list[str]]:
    lines: list[str] = []
    report = await migrate(stores, dry_run=dry_run, say=lines.append)
    return report, lines


def etags(table: TableClient) -> dict[tuple[str, str], str]:
    return {(e["PartitionKey"], e["RowKey"]): str(e.metadata["etag"]) for e in table.list_entities()}


async def test_configs_stored_before_the_connection_index_get_their_row_and_hold_their_connection(
    stores: Stores, raw: TableServiceClient
) -> None:
    old_config(raw, document("kv-reader"))
    old_config(raw, document("kv-writer"))
    tombstone = old_config(raw, document("retired-one"))
    raw.get_table_client(CONFIGS_TABLE).update_entity({**tombstone, "Deleted": True}, mode=UpdateMode.MERGE)

    report, lines = await run(stores)

    assert report.changed == 3 and not report.left, lines
    assert all(line.startswith("migrated  federationconfigs contoso/~connection~") for line in lines)
    for name in ("kv-reader", "kv-writer", "retired-one"):
        config_id = f"contoso/payments/{name}"
        assert await stores.configs.connection_holder("contoso", config(name).connection) == config_id
    # The store now keeps the connection to its config: a second config for it is refused.
    with pytest.raises(ClaimRejected, match="is managed by config 'contoso/payments/kv-reader'"):
        await stores.configs.put({**document("kv-reader"), "id": "contoso/payments/other"}, request_id="CHG2")
    # ... and the configs read as before: the tombstone is still one.
    records = {r.config.id: r for r in [r async for r in stores.configs.list_all()]}
    assert records["contoso/payments/retired-one"].deleted
    assert not records["contoso/payments/kv-reader"].deleted


async def test_two_older_configs_on_one_connection_are_reported_and_neither_is_chosen(
    stores: Stores, raw: TableServiceClient
) -> None:
    old_config(raw, document("kv-reader"))
    old_config(raw, {**document("kv-reader"), "id": "contoso/payments/twin"})

    report, lines = await run(stores)

    assert report.changed == 0 and report.left
    [line] = lines
    assert line.startswith("cannot migrate  federationconfigs contoso/~connection~")
    assert "named by config contoso/payments/kv-reader and by contoso/payments/twin" in line
    assert "retire all but one" in line
    assert await stores.configs.connection_holder("contoso", config().connection) is None


async def test_claims_without_created_say_whether_the_reconciler_created_the_application(
    stores: Stores, raw: TableServiceClient
) -> None:
    old_config(raw, document("created", application=CREATED))
    old_config(raw, document("adopted"))
    old_claim(raw, f"app:{OTHER_APP}", "contoso/payments/created")  # the pass that created it
    old_claim(raw, f"app:{APP_ID}", "contoso/payments/adopted")  # the config that adopts it
    old_claim(raw, "app:2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e", "contoso/payments/purged")
    old_claim(raw, "new:sc-payments-created", "contoso/payments/created")

    report, lines = await run(stores)

    claims = [line for line in lines if CLAIMS_TABLE in line]
    assert len(claims) == 4 and not report.left, lines
    assert await stores.claims.binds(f"app:{OTHER_APP}")  # binds at upsert now, as a new claim would
    assert not await stores.claims.binds(f"app:{APP_ID}")  # its owners' tag decides
    assert not await stores.claims.binds("app:2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e")
    assert await stores.claims.binds("new:sc-payments-created")
    stored = {e["Application"]: e.get("Created") for e in raw.get_table_client(CLAIMS_TABLE).list_entities()}
    assert stored == {
        f"app:{OTHER_APP}": True,
        f"app:{APP_ID}": False,
        "app:2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e": False,
        "new:sc-payments-created": False,
    }
    assert any("is gone: kept as an adopted application's claim" in line for line in claims)


async def test_index_rows_of_the_older_layout_are_moved_and_found_by_lookups(
    stores: Stores, raw: TableServiceClient
) -> None:
    old = old_index_row(raw, PRINCIPAL, f"app:{APP_ID}")
    assert await stores.index.applications(PRINCIPAL) == set()  # what an upgraded worker reads today
    broken = old_index_row(raw, IndexKey("principal", "bbbbbbbb-0000-0000-0000-000000000001"), "app:../x")

    report, lines = await run(stores)

    assert report.changed == 1 and report.failed and len(lines) == 2, lines
    assert await stores.index.applications(PRINCIPAL) == {f"app:{APP_ID}"}
    keys = set(etags(raw.get_table_client(INDEX_TABLE)))
    assert (old["PartitionKey"], old["RowKey"]) not in keys
    assert (broken["PartitionKey"], broken["RowKey"]) in keys  # not understood: left as it is
    assert any("Key/AppKey do not name an object and an application" in line for line in lines)


async def test_configs_blocked_for_their_owners_tenant_tag_are_listed_with_the_command(
    stores: Stores, raw: TableServiceClient
) -> None:
    adopted = config()
    # What the engine says of an application adopted before the tag was required, as the pass stores it.
    untagged = app(tags=frozenset({"team:payments"}))
    [violation] = plan([adopted], ObservedState(applications=(untagged,)), policy()).violations
    await stores.status.put(
        ConfigStatus(adopted.id, "contoso", Status.BLOCKED, 1, last_error=violation.message)
    )

    report, lines = await run(stores)

    assert report.changed == 0 and report.left
    [line] = lines
    assert line.startswith(f"for owners  config {adopted.id}: application {ADOPTED_APP_ID}")
    assert "az rest --method PATCH" in line and "wif-reconciler:tenant=contoso/payments" in line


async def test_a_dry_run_writes_nothing_and_a_second_run_changes_nothing(
    stores: Stores, raw: TableServiceClient, table_settings: dict[str, str]
) -> None:
    old_config(raw, document("kv-reader"))
    old_claim(raw, f"app:{APP_ID}", "contoso/payments/kv-reader")
    old_index_row(raw, PRINCIPAL, f"app:{APP_ID}")
    tables = TableRequests.of(table_settings)

    tables.mark()
    dry, dry_lines = await run(stores, dry_run=True)
    assert tables.writes_since_mark() == []
    assert dry.changed == 3 and all(line.startswith("would migrate  ") for line in dry_lines)

    done, lines = await run(stores)
    assert done.changed == 3 and [line.replace("migrated", "would migrate", 1) for line in lines] == dry_lines

    before = {t: etags(raw.get_table_client(t)) for t in (CONFIGS_TABLE, CLAIMS_TABLE, INDEX_TABLE)}
    tables.mark()
    again, again_lines = await run(stores)
    assert again.changed == 0 and again_lines == [] and not again.left
    assert tables.writes_since_mark() == []
    assert {t: etags(raw.get_table_client(t)) for t in before} == before


async def test_a_row_a_worker_changes_during_the_run_is_reported_not_overwritten(
    stores: Stores, raw: TableServiceClient
) -> None:
    old_config(raw, document("kv-reader"))
    old_config(raw, document("kv-writer"))
    configs = raw.get_table_client(CONFIGS_TABLE)
    changed_by_worker: list[str] = []

    def worker_writes_the_other_config(line: str) -> None:
        """After the first row is migrated, a worker rewrites the other config (a new generation)."""
        if changed_by_worker:
            return
        for entity in configs.list_entities():
            config_id = entity["RowKey"].replace("~", "/")
            if entity["RowKey"].startswith("contoso~payments~") and config_id not in line:
                configs.update_entity({**entity, "Generation": 2}, mode=UpdateMode.REPLACE)
                changed_by_worker.append(config_id)
                break

    report = await migrate(stores, dry_run=False, say=worker_writes_the_other_config)

    assert report.changed == 1 and len(report.failed) == 1
    assert "changed since it was read" in report.failed[0] and "run the migration again" in report.failed[0]
    [other] = changed_by_worker
    entity = configs.get_entity("contoso", other.replace("/", "~"))
    assert entity["Generation"] == 2  # the worker's write stands
    name = other.rsplit("/", 1)[1]
    assert await stores.configs.connection_holder("contoso", config(name).connection) is None

    again, lines = await run(stores)  # resumable: the next run does what is left
    assert again.changed == 1 and not again.left, lines
    assert await stores.configs.connection_holder("contoso", config(name).connection) == other


async def test_a_claim_changed_during_the_run_keeps_the_change(
    stores: Stores, raw: TableServiceClient
) -> None:
    old_claim(raw, f"app:{APP_ID}", "contoso/payments/kv-reader")
    old_claim(raw, f"app:{OTHER_APP}", "contoso/payments/other")
    claims = raw.get_table_client(CLAIMS_TABLE)
    touched: list[str] = []

    def someone_edits_the_other_claim(line: str) -> None:
        for entity in claims.list_entities():
            if entity["RowKey"] not in line and not touched:
                claims.update_entity({**entity, "Note": "edited"}, mode=UpdateMode.MERGE)
                touched.append(entity["Application"])

    report = await migrate(stores, dry_run=False, say=someone_edits_the_other_claim)

    assert report.changed == 1 and len(report.failed) == 1, report
    [key] = touched
    entity = next(e for e in claims.list_entities() if e["Application"] == key)
    assert entity["Note"] == "edited" and "Created" not in entity


async def test_a_config_row_this_version_cannot_read_is_named_not_changed(
    stores: Stores, raw: TableServiceClient
) -> None:
    row = old_config(raw, document("kv-reader"))
    configs = raw.get_table_client(CONFIGS_TABLE)
    configs.update_entity({**row, "Document": '{"apiVersion": "wif-reconciler/v0"}'}, mode=UpdateMode.REPLACE)
    before = etags(configs)

    report, lines = await run(stores)

    assert report.changed == 0 and report.left
    [line] = lines
    assert line.startswith("cannot migrate  table federationconfigs, row contoso/contoso~payments~kv-reader")
    assert line.endswith("`import` the corrected config under the same id (or retire it)")
    assert etags(configs) == before
