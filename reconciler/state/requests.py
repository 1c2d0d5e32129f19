"""Table federationrequests: each ticket request, its outcome and reason, keyed by request id."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from reconciler.core.identifiers import RequestId
from reconciler.state.tables import (
    MAX_TEXT_UNITS,
    REQUESTS_TABLE,
    ConcurrencyConflict,
    CorruptRow,
    InvalidRow,
    fit,
    request_partition,
    translated,
    utf16_units,
    validate_request_id,
)

# accepted: recorded, reconcile queued; rejected: invalid or forbidden, nothing written;
# applied / failed: what the reconcile of its config did.
Outcome = Literal["accepted", "rejected", "applied", "failed"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    action: str
    requested_by: str
    received_at: str
    body: str
    body_truncated: bool
    outcome: Outcome
    reason: str = ""
    changes: tuple[str, ...] = ()
    finished_at: str = ""
    etag: str = ""


class RequestStore:
    """Table federationrequests: PartitionKey = request_partition(id), RowKey = request id."""

    table_name = REQUESTS_TABLE

    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def begin(
        self, request_id: str, body: str, *, requested_by: str, action: str, received_at: str
    ) -> tuple[RequestRecord, bool]:
        """Records a request as accepted; for a request id seen before, the first record and False.

        The insert is the idempotency check: of two deliveries of one request, only one creates it.
        """
        validate_request_id(request_id)
        stored_body, truncated = fit(body)
        entity = {
            "PartitionKey": request_partition(request_id),
            "RowKey": request_id,
            "Action": fit(action, 200)[0],
            "RequestedBy": fit(requested_by, 1_000)[0],
            "ReceivedAt": received_at,
            "Body": stored_body,
            "BodyTruncated": truncated,
            "Outcome": "accepted",
            "Reason": "",
            "Changes": "[]",
            "FinishedAt": "",
        }
        try:
            metadata = await translated(self._table.create_entity(entity), f"record request {request_id!r}")
        except ResourceExistsError:
            existing = await self.get(request_id)
            if existing is None:  # created and purged between the two calls: cannot happen today
                raise ConcurrencyConflict(f"request {request_id!r} vanished while being read") from None
            return existing, False
        return _request_of({**entity}, str(metadata["etag"])), True

    async def finish(
        self,
        request_id: str,
        outcome: Outcome,
        reason: str,
        changes: Sequence[str],
        finished_at: str,
        *,
        expected_etag: str | None = None,
    ) -> RequestRecord:
        """Records the outcome of a request that begin() recorded.

        With `expected_etag`, only if the row is still as read: a row written since (the reconcile the
        ticket queued finished it first) is kept, and returned as it is."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}: expected one of {', '.join(OUTCOMES)}")
        validate_request_id(request_id)
        entity = {
            "PartitionKey": request_partition(request_id),
            "RowKey": request_id,
            "Outcome": outcome,
            "Reason": fit(reason)[0],
            "Changes": _fit_changes(changes),
            "FinishedAt": finished_at,
        }
        condition: dict[str, Any] = {}
        if expected_etag is not None:
            condition = {"etag": expected_etag, "match_condition": MatchConditions.IfNotModified}
        try:
            await translated(
                self._table.update_entity(entity, mode=UpdateMode.MERGE, **condition),
                f"finish request {request_id!r}",
            )
        except ResourceNotFoundError as error:
            raise KeyError(f"request {request_id!r} was never begun") from error
        except (ResourceModifiedError, ConcurrencyConflict):
            pass  # finished by someone else since `expected_etag` was read: theirs is the later word
        found = await self.get(request_id)
        assert found is not None  # just written
        return found

    async def get(self, request_id: str) -> RequestRecord | None:
        if not RequestId.is_valid(request_id):
            return None  # cannot exist: begin() refuses such ids
        try:
            entity = await translated(
                self._table.get_entity(request_partition(request_id), request_id),
                f"read request {request_id!r}",
            )
        except ResourceNotFoundError:
            return None
        return _request_of(entity, str(entity.metadata["etag"]))


def _fit_changes(changes: Sequence[str]) -> str:
    kept = list(changes)
    while kept and utf16_units(json.dumps(kept, ensure_ascii=False)) > MAX_TEXT_UNITS:
        kept = [*kept[: len(kept) // 2], f"... and more ({len(changes)} changes in all)"]
        if len(kept) == 1:
            break
    return json.dumps(kept, ensure_ascii=False)


def _request_of(entity: Mapping[str, Any], etag: str) -> RequestRecord:
    """The row as a RequestRecord; a row edited by hand (changes that are no JSON list of strings,
    an outcome outside the vocabulary) is CorruptRow naming the field, never a ValueError."""
    problems: list[str] = []
    try:
        changes = json.loads(str(entity.get("Changes") or "[]"))
    except ValueError:
        changes = None
    if not isinstance(changes, list) or not all(isinstance(c, str) for c in changes):
        problems.append(f"Changes: expected a JSON list of strings, got {entity.get('Changes')!r:.60}")
    outcome = next((o for o in OUTCOMES if o == entity.get("Outcome")), None)
    if outcome is None:
        problems.append(f"Outcome: expected one of {', '.join(OUTCOMES)}, got {entity.get('Outcome')!r:.60}")
    if problems or outcome is None or not isinstance(changes, list):
        row = InvalidRow(REQUESTS_TABLE, str(entity["PartitionKey"]), str(entity["RowKey"]), tuple(problems))
        raise CorruptRow(row)
    return RequestRecord(
        request_id=str(entity["RowKey"]),
        action=str(entity.get("Action", "")),
        requested_by=str(entity.get("RequestedBy", "")),
        received_at=str(entity.get("ReceivedAt", "")),
        body=str(entity.get("Body", "")),
        body_truncated=bool(entity.get("BodyTruncated", False)),
        outcome=outcome,
        reason=str(entity.get("Reason", "")),
        changes=tuple(changes),
        finished_at=str(entity.get("FinishedAt", "")),
        etag=etag,
    )
