"""Plumbing every table store shares: table names, keys, size limits, error translation.

The state lives in Azure Tables. Locally the tables live in Azurite
(`WIF_TABLE_CONNECTION_STRING`); in Azure in the Function App's storage account, reached
with its managed identity (`WIF_TABLE_ENDPOINT` and a credential). docs/state.md describes
the tables, their keys and how concurrent writers are kept from losing updates.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableEntity

from reconciler.cloud import CloudError
from reconciler.core.identifiers import ConfigId, IdentifierError, RequestId
from reconciler.documents import InputError
from reconciler.failures import TemporaryFailure, is_temporary_status

CONFIGS_TABLE = "federationconfigs"
STATUS_TABLE = "federationstatus"
REQUESTS_TABLE = "federationrequests"
CLAIMS_TABLE = "federationclaims"
INDEX_TABLE = "federationindex"  # drift events: object -> application (docs/events.md)
HISTORY_TABLE = "federationhistory"
PENDING_TABLE = "federationpending"

# A string property holds at most 64 KiB, that is 32,768 UTF-16 code units. Stay below it.
MAX_TEXT_UNITS = 32_000
TRUNCATED_MARKER = "...[truncated]"
MAX_PLAN_SUMMARY = 1_000  # a status line, not the plan: the plan is rebuilt on demand
TABLE_NOT_FOUND = "TableNotFound"  # Table Storage's error code for a table that does not exist

_T = TypeVar("_T")


class SettingsError(CloudError):
    """The table settings are missing or malformed (the CLI reports it as bad input)."""


class TableMissing(TemporaryFailure):
    """The table itself is gone (deleted by hand while the app runs), not a row: `Stores.heal`
    creates it again, and the call that met it may be tried again."""


class ConcurrencyConflict(Exception):
    """Someone else changed the row since the caller read it: read again, reapply, retry."""


class CorruptRow(Exception):
    """A stored row that is not a valid config (edited by hand, or by an older version)."""

    def __init__(self, row: InvalidRow) -> None:
        super().__init__(str(row))
        self.row = row


@dataclass(frozen=True)
class InvalidRow:
    table: str
    partition_key: str
    row_key: str
    problems: tuple[str, ...]

    def __str__(self) -> str:
        return (
            f"table {self.table}, row {self.partition_key}/{self.row_key} is not a valid config: "
            + "; ".join(self.problems)
        )


def encode_row_key(config_id: str) -> str:
    """A config id as a RowKey: only ids that parse reach the table (a key holds no '#', '?', '\\')."""
    try:
        return ConfigId(config_id, "config id").row_key
    except IdentifierError as error:
        raise InputError([str(error)]) from error


def decode_row_key(row_key: str) -> str:
    return row_key.replace("~", "/")


def request_partition(request_id: str) -> str:
    """Derivable from the id alone, and spreads requests over 256 partitions."""
    return hashlib.sha256(request_id.encode()).hexdigest()[:2]


def validate_request_id(request_id: str) -> str:
    try:
        return str(RequestId(request_id, "requestId"))
    except IdentifierError as error:
        raise InputError([str(error)]) from error


def fit(text: str, limit: int = MAX_TEXT_UNITS) -> tuple[str, bool]:
    """`text` cut to at most `limit` UTF-16 code units (how Tables counts), and whether it was cut."""
    if len(text) <= limit // 2 or utf16_units(text) <= limit:  # the cheap test first
        return text, False
    room = limit - len(TRUNCATED_MARKER)
    cut = text.encode("utf-16-le")[: room * 2].decode("utf-16-le", errors="ignore")  # whole characters
    return cut + TRUNCATED_MARKER, True


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


async def translated(call: Awaitable[_T], what: str) -> _T:
    """Runs one SDK call, turning its errors into ours (not found is left to the caller)."""
    try:
        return await call
    except ResourceNotFoundError as error:
        if _table_not_found(error):  # not "no such row": the table is gone
            raise TableMissing(f"{what}: the table does not exist (deleted while the app runs?)") from error
        raise
    except (ResourceExistsError, ResourceModifiedError):
        raise
    except (ServiceRequestError, ServiceResponseError) as error:
        raise TemporaryFailure(f"{what}: cannot reach Table Storage: {error}") from error
    except HttpResponseError as error:
        status = error.status_code or 0
        if status == 412:
            raise ConcurrencyConflict(f"{what}: the row changed since it was read") from error
        if is_temporary_status(status):
            raise TemporaryFailure(f"{what}: Table Storage answered {status}", status=status) from error
        raise


def _table_not_found(error: ResourceNotFoundError) -> bool:
    """Whether a 404 says the table does not exist. The SDK parses the error code of a query's answer
    but not of an insert's (`create_entity`), whose body still carries it (odata.error.code)."""
    if getattr(error, "error_code", None) == TABLE_NOT_FOUND:
        return True
    try:
        body = error.response.text() if error.response is not None else ""
    except Exception:  # a body that cannot be read says nothing
        return False
    return f'"code":"{TABLE_NOT_FOUND}"' in body.replace(" ", "")


async def iterate(pages: Any, what: str) -> AsyncIterator[TableEntity]:
    """The entities of an SDK listing, its errors translated as every other call's."""
    iterator = pages.__aiter__()
    while True:
        try:
            entity: TableEntity = await translated(iterator.__anext__(), what)
        except StopAsyncIteration:
            return
        yield entity
