"""The tables opened together on one service client, from the app settings."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.data.tables.aio import TableServiceClient

from reconciler.failures import TemporaryFailure
from reconciler.state.claims import ApplicationClaimStore
from reconciler.state.coalesce import PendingReconciles
from reconciler.state.configs import DesiredConfigStore
from reconciler.state.event_index import EventIndex
from reconciler.state.history import HistoryStore
from reconciler.state.requests import RequestStore
from reconciler.state.status import StatusStore
from reconciler.state.tables import (
    CLAIMS_TABLE,
    CONFIGS_TABLE,
    HISTORY_TABLE,
    INDEX_TABLE,
    PENDING_TABLE,
    REQUESTS_TABLE,
    STATUS_TABLE,
    SettingsError,
    translated,
)

log = logging.getLogger("reconciler.state")
APP_TABLES = (
    CONFIGS_TABLE,
    STATUS_TABLE,
    REQUESTS_TABLE,
    CLAIMS_TABLE,
    INDEX_TABLE,
    HISTORY_TABLE,
    PENDING_TABLE,
)
FORBIDDEN = 403  # the identity may not list tables (a role without tableServices/tables/read)


@dataclass
class Stores:
    """The stores on one service client. Close it (or use `async with`) when done."""

    configs: DesiredConfigStore
    status: StatusStore
    requests: RequestStore
    _service: TableServiceClient
    claims: ApplicationClaimStore
    # Drift events (docs/events.md): object -> application, repairs per config, coalescing.
    index: EventIndex
    history: HistoryStore
    pending: PendingReconciles

    async def close(self) -> None:
        await self._service.close()

    async def heal(self) -> None:
        """Create again the tables someone deleted while the app runs (after a TableMissing). Azure may
        refuse for a while (a deleted table's name is blocked some 40 s): the next TableMissing retries."""
        try:
            await create_missing_tables(self._service)
        except (TemporaryFailure, HttpResponseError) as error:
            log.warning("the missing tables could not be created again yet: %s", error)
        else:
            log.warning("tables deleted while the app ran were created again (their rows are lost)")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()


async def open_stores(settings: Mapping[str, str], credential: AsyncTokenCredential | None) -> Stores:
    """Stores from the app settings, with their tables created if missing.

    WIF_TABLE_CONNECTION_STRING (Azurite locally) wins; else WIF_TABLE_ENDPOINT, an https account
    URL, with `credential` (the managed identity in Azure). Open once per process and share it.
    """
    service = service_client(settings, credential)
    try:
        await create_missing_tables(service)
    except BaseException:
        await service.close()
        raise
    return Stores(
        configs=DesiredConfigStore(service.get_table_client(CONFIGS_TABLE)),
        status=StatusStore(service.get_table_client(STATUS_TABLE)),
        requests=RequestStore(service.get_table_client(REQUESTS_TABLE)),
        _service=service,
        claims=ApplicationClaimStore(service.get_table_client(CLAIMS_TABLE)),
        index=EventIndex(service.get_table_client(INDEX_TABLE)),
        history=HistoryStore(service.get_table_client(HISTORY_TABLE)),
        pending=PendingReconciles(service.get_table_client(PENDING_TABLE)),
    )


async def create_missing_tables(service: TableServiceClient) -> None:
    """Creates the app's tables that do not exist yet: one request to learn which exist (a Query Tables
    filtered to ours, one page), then one create per missing table (none once deployed).

    A table created meanwhile by another worker answers 409: it exists, as wanted. An identity not
    allowed to list tables (403) creates each table instead, each 409 meaning it exists, as before.
    """
    try:
        existing = await translated(_existing_tables(service, APP_TABLES), "list tables")
    except HttpResponseError as error:
        if error.status_code != FORBIDDEN:
            raise
        existing = set()
    for name in APP_TABLES:
        if name not in existing:
            with contextlib.suppress(ResourceExistsError):
                await translated(service.create_table(name), f"create table {name}")


async def _existing_tables(service: TableServiceClient, names: Sequence[str]) -> set[str]:
    # Named parameters, never the names joined into the filter; seven names fit one page (1,000).
    parameters = {f"name{index}": name for index, name in enumerate(names)}
    query = " or ".join(f"TableName eq @{key}" for key in parameters)
    return {table.name async for table in service.query_tables(query, parameters=parameters)}


def service_client(
    settings: Mapping[str, str], credential: AsyncTokenCredential | None
) -> TableServiceClient:
    """The Table service client the settings name; nothing is created or read yet."""
    connection_string = (settings.get("WIF_TABLE_CONNECTION_STRING") or "").strip()
    endpoint = (settings.get("WIF_TABLE_ENDPOINT") or "").strip()
    if connection_string:
        try:
            return TableServiceClient.from_connection_string(connection_string)
        except (ValueError, AzureError) as error:
            raise SettingsError(
                f"WIF_TABLE_CONNECTION_STRING is not a valid connection string: {error}"
            ) from None
    if not endpoint:
        raise SettingsError(
            "set WIF_TABLE_ENDPOINT (the storage account's table URL, in Azure) or "
            "WIF_TABLE_CONNECTION_STRING (Azurite, locally)"
        )
    if not endpoint.startswith("https://") or any(c.isspace() for c in endpoint):
        raise SettingsError(f"WIF_TABLE_ENDPOINT must be an https URL, got {endpoint!r:.200}")
    if credential is None:
        raise SettingsError("WIF_TABLE_ENDPOINT needs a credential (the Function App's managed identity)")
    try:
        return TableServiceClient(endpoint, credential=credential)
    except ValueError as error:  # no host ("https://"), a broken IPv6 literal...
        raise SettingsError(
            f"WIF_TABLE_ENDPOINT must be an https URL, got {endpoint!r:.200}: {error}"
        ) from None
