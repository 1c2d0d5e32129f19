"""A worker's start learns which tables exist in one request and creates only the missing ones,
counted at Azurite: a fresh account, a deployed one, a worker racing another, an identity that may
not list tables."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

from azure.core.credentials import AzureNamedKeyCredential
from azure.data.tables import (
    AccountSasPermissions,
    ResourceTypes,
    TableServiceClient,
    generate_account_sas,
)

from reconciler.state.stores import APP_TABLES, open_stores
from reconciler.state.tables import HISTORY_TABLE
from tests.azurite import DEV_ACCOUNT, DEV_KEY, TableRequests

LIST = ("GET", f"/{DEV_ACCOUNT}/Tables")
CREATE = ("POST", f"/{DEV_ACCOUNT}/Tables")


def _requests(tables: TableRequests) -> list[tuple[str, str]]:
    """(method, path without the query) of the requests since the mark."""
    return [(method, path.split("?")[0]) for method, path in tables.since_mark()]


def _fresh_account(settings: dict[str, str]) -> None:
    with TableServiceClient.from_connection_string(settings["WIF_TABLE_CONNECTION_STRING"]) as service:
        for name in APP_TABLES:
            service.delete_table(name)  # no error when it does not exist


def _existing(settings: dict[str, str]) -> set[str]:
    with TableServiceClient.from_connection_string(settings["WIF_TABLE_CONNECTION_STRING"]) as service:
        return {table.name for table in service.list_tables()}


async def test_a_fresh_account_gets_its_tables_and_a_worker_after_it_sends_one_request(
    table_settings: dict[str, str],
) -> None:
    _fresh_account(table_settings)
    tables = TableRequests.of(table_settings)
    tables.mark()
    async with await open_stores(table_settings, None):
        pass
    assert _requests(tables) == [LIST] + [CREATE] * len(APP_TABLES)
    assert set(APP_TABLES) <= _existing(table_settings)

    tables.mark()
    async with await open_stores(table_settings, None) as stores:  # a fresh worker, tables deployed
        assert await stores.configs.get("contoso/payments/kv-reader") is None
    requests = _requests(tables)
    assert requests[0] == LIST and CREATE not in requests  # then the read of the config, no create


async def test_only_a_missing_table_is_created(table_settings: dict[str, str]) -> None:
    async with await open_stores(table_settings, None):
        pass
    with TableServiceClient.from_connection_string(table_settings["WIF_TABLE_CONNECTION_STRING"]) as service:
        service.delete_table(HISTORY_TABLE)
    tables = TableRequests.of(table_settings)
    tables.mark()
    async with await open_stores(table_settings, None):
        pass
    assert _requests(tables) == [LIST, CREATE]
    assert HISTORY_TABLE in _existing(table_settings)


async def test_workers_starting_together_on_a_fresh_account_both_open_their_stores(
    table_settings: dict[str, str],
) -> None:
    _fresh_account(table_settings)
    tables = TableRequests.of(table_settings)
    tables.mark()
    # Both list before either creates (here they do), so both create every table: each table's
    # second create answers 409, it exists, which is what was wanted.
    opened = await asyncio.gather(*(open_stores(table_settings, None) for _ in range(2)))
    for stores in opened:
        await stores.close()
    assert set(APP_TABLES) <= _existing(table_settings)
    statuses = [status for method, path, status in _served(tables) if (method, path) == CREATE]
    assert statuses.count(201) == len(APP_TABLES)
    assert set(statuses) <= {201, 409}


async def test_an_identity_that_may_not_list_tables_creates_each_one_and_takes_a_409_as_exists(
    table_settings: dict[str, str],
) -> None:
    # An account SAS that may create tables but not list them: Query Tables answers 403.
    sas = generate_account_sas(
        AzureNamedKeyCredential(DEV_ACCOUNT, DEV_KEY),
        resource_types=ResourceTypes(container=True, object=True),
        permission=AccountSasPermissions(read=True, write=True, create=True, add=True, update=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    endpoint = re.search(r"TableEndpoint=([^;]+)", table_settings["WIF_TABLE_CONNECTION_STRING"])
    assert endpoint is not None
    no_listing = {"WIF_TABLE_CONNECTION_STRING": f"TableEndpoint={endpoint[1]};SharedAccessSignature={sas}"}
    _fresh_account(table_settings)
    tables = TableRequests.of(table_settings)
    for expected in (201, 409):  # a fresh account, then the same tables again
        tables.mark()
        async with await open_stores(no_listing, None):
            pass
        served = _served(tables)
        assert [line[:2] for line in served] == [LIST] + [CREATE] * len(APP_TABLES)
        assert served[0][2] == 403
        assert {status for _, _, status in served[1:]} == {expected}
    assert set(APP_TABLES) <= _existing(table_settings)


def _served(tables: TableRequests) -> list[tuple[str, str, int]]:
    """(method, path without the query, status) of the requests since the mark."""
    return [(method, path.split("?")[0], status) for method, path, status in tables.answered_since_mark()]
