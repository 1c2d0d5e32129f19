"""Opening the stores from the app settings, and what an unreachable table service raises."""

from __future__ import annotations

import socket

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableServiceClient

from reconciler.failures import TemporaryFailure
from reconciler.state.stores import open_stores
from reconciler.state.tables import (
    CONFIGS_TABLE,
    REQUESTS_TABLE,
    STATUS_TABLE,
    ConcurrencyConflict,
    SettingsError,
)
from reconciler.state.tables import translated as _translated
from tests.azurite import connection_string


class _NoCredential:
    """Stands in for the managed identity: never asked for a token in these tests."""

    async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        raise AssertionError("no token expected")

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> _NoCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "set WIF_TABLE_ENDPOINT"),
        ({"WIF_TABLE_CONNECTION_STRING": " ", "WIF_TABLE_ENDPOINT": ""}, "set WIF_TABLE_ENDPOINT"),
        ({"WIF_TABLE_ENDPOINT": "http://account.table.core.windows.net"}, "must be an https URL"),
        ({"WIF_TABLE_CONNECTION_STRING": "nonsense"}, "not a valid connection string"),
    ],
)
async def test_missing_or_malformed_settings_are_reported(settings: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        await open_stores(settings, _NoCredential())


async def test_an_account_url_needs_a_credential() -> None:
    with pytest.raises(SettingsError, match="needs a credential"):
        await open_stores({"WIF_TABLE_ENDPOINT": "https://account.table.core.windows.net"}, None)


async def test_opening_creates_the_tables_and_opening_again_is_fine(table_settings: dict[str, str]) -> None:
    async with await open_stores(table_settings, None):
        pass
    async with await open_stores(table_settings, None) as stores:
        assert await stores.configs.get("contoso/payments/kv-reader") is None

    with TableServiceClient.from_connection_string(table_settings["WIF_TABLE_CONNECTION_STRING"]) as service:
        names = {table.name for table in service.list_tables()}
    assert {CONFIGS_TABLE, STATUS_TABLE, REQUESTS_TABLE} <= names


async def test_an_unreachable_table_service_is_a_temporary_failure() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(TemporaryFailure, match="cannot reach Table Storage"):
        await open_stores({"WIF_TABLE_CONNECTION_STRING": connection_string(port)}, None)


@pytest.mark.parametrize(("status", "temporary"), [(429, True), (500, True), (503, True), (403, False)])
async def test_throttling_and_server_errors_are_temporary_failures(status: int, temporary: bool) -> None:
    error = HttpResponseError(f"the service answered {status}")
    error.status_code = status

    async def failing() -> None:
        raise error

    with pytest.raises(TemporaryFailure if temporary else HttpResponseError) as raised:
        await _translated(failing(), "read config")
    assert temporary == isinstance(raised.value, TemporaryFailure)


async def test_a_412_outside_the_stores_own_checks_is_a_conflict() -> None:
    error = HttpResponseError("precondition failed")
    error.status_code = 412

    async def failing() -> None:
        raise error

    with pytest.raises(ConcurrencyConflict):
        await _translated(failing(), "write config")
