"""Table federationclaims: which ADO project each application belongs to (reconciler.core.tenancy).

The first config that names an application claims it for its organization/project. A claim is
written once, by an insert (the insert is the concurrency guard: of two first claims at once,
one gets 409 and reads the winner's), and never changed by the reconciler (except once by
`table migrate`, which gives rows of earlier versions the `Created` property; see below).

A claim binds at upsert for an application the reconciler creates (`new:<display name>`, and
`app:<client id>` once it created it: row property `Created`). For an existing application it
adopts, the row only records who asked first: its owners' tenant tag says which project may use
it, and only the engine can read the tag (reconciler.core.plan).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableEntity, UpdateMode
from azure.data.tables.aio import TableClient

from reconciler.core.model import FederationConfig
from reconciler.core.policy import GrantPolicy
from reconciler.core.tenancy import Tenant, claim_key
from reconciler.documents import InputError
from reconciler.state.tables import (
    CLAIMS_TABLE,
    ConcurrencyConflict,
    CorruptRow,
    InvalidRow,
    iterate,
    translated,
    utc_now,
)

log = logging.getLogger(__name__)
UNCHANGED = MatchConditions.IfNotModified


@dataclass(frozen=True)
class ClaimRow:
    """One stored claim as it is, for the migration: `created` is None on rows written before the
    `Created` property existed."""

    key: str
    tenant: Tenant
    config_id: str
    created: bool | None
    partition_key: str
    row_key: str
    etag: str


class ClaimRejected(InputError):
    """The config names an application or a connection that belongs to someone else."""


class ApplicationClaimStore:
    """PartitionKey: two hex digits of sha256(claim key); RowKey: the whole digest (display names
    may hold characters keys cannot). The claim key itself is stored as `Application`."""

    table_name = CLAIMS_TABLE

    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def owner(self, key: str) -> Tenant | None:
        """The tenant that claimed the application of this claim key, or None when unclaimed."""
        entity = await self._entity(key)
        return self._tenant(entity) if entity is not None else None

    async def binds(self, key: str) -> bool:
        """Whether the claim of this key binds at upsert: see the module's docstring."""
        if not key.startswith("app:"):
            return True
        entity = await self._entity(key)
        return entity is not None and entity.get("Created") is True

    async def _entity(self, key: str) -> TableEntity | None:
        partition, row = _keys(key)
        try:
            entity: TableEntity = await translated(
                self._table.get_entity(partition, row), f"read claim {key!r}"
            )
        except ResourceNotFoundError:
            return None
        return entity

    async def owners(self, keys: Iterable[str]) -> dict[str, Tenant]:
        """The claims among these keys (one point read each)."""
        found: dict[str, Tenant] = {}
        for key in sorted(set(keys)):
            tenant = await self.owner(key)
            if tenant is not None:
                found[key] = tenant
        return found

    async def list_all(self, on_invalid: Callable[[InvalidRow], None] | None = None) -> dict[str, Tenant]:
        """Every claim, by claim key: one paged listing, for a pass over the whole desired state.
        A row that cannot be read goes to `on_invalid` (logged when None) and the listing goes on."""
        found: dict[str, Tenant] = {}
        async for entity in iterate(self._table.list_entities(), "list claims"):
            try:
                found[self._key(entity)] = self._tenant(entity)
            except CorruptRow as corrupt:
                if on_invalid is None:
                    log.error("%s", corrupt.row)
                else:
                    on_invalid(corrupt.row)
        return found

    async def rows(self, on_invalid: Callable[[InvalidRow], None]) -> AsyncIterator[ClaimRow]:
        """Every valid claim row as stored; the others go to `on_invalid`."""
        async for entity in iterate(self._table.list_entities(), "list claims"):
            try:
                key = self._key(entity)
                created = entity.get("Created")
                yield ClaimRow(
                    key=key,
                    tenant=self._tenant(entity),
                    config_id=str(entity.get("ConfigId") or ""),
                    created=created if isinstance(created, bool) else None,
                    partition_key=entity["PartitionKey"],
                    row_key=entity["RowKey"],
                    etag=str(entity.metadata["etag"]),
                )
            except CorruptRow as corrupt:
                on_invalid(corrupt.row)

    async def set_created(self, row: ClaimRow, created: bool) -> None:
        """Gives a claim written before `Created` existed that property, if the row is unchanged since
        it was read (else ConcurrencyConflict). The only change to a claim the reconciler makes."""
        entity = {"PartitionKey": row.partition_key, "RowKey": row.row_key, "Created": created}
        try:
            await translated(
                self._table.update_entity(
                    entity, mode=UpdateMode.MERGE, etag=row.etag, match_condition=UNCHANGED
                ),
                f"mark claim {row.key!r}",
            )
        except (ResourceModifiedError, ResourceNotFoundError) as error:
            raise ConcurrencyConflict(f"the claim of {row.key!r} changed since it was read") from error

    async def claim(
        self, key: str, tenant: Tenant, *, config_id: str, request_id: str, created: bool = False
    ) -> Tenant:
        """Claims the application for `tenant` unless it is claimed already; returns its owner.
        `created`: the reconciler created the application for `tenant` (the claim then binds)."""
        partition, row = _keys(key)
        entity = {
            "PartitionKey": partition,
            "RowKey": row,
            "Application": key,
            "Organization": tenant.organization,
            "Project": tenant.project,
            "ConfigId": config_id,
            "RequestId": request_id,
            "ClaimedAt": utc_now(),
            "Created": created,
        }
        try:
            await translated(self._table.create_entity(entity), f"claim {key!r}")
        except ResourceExistsError:
            owner = await self.owner(key)
            if owner is None:  # deleted by hand between our insert and our read
                raise ConcurrencyConflict(f"the claim of {key!r} changed meanwhile; try again") from None
            return owner
        return tenant

    async def claim_for(self, config: FederationConfig, policy: GrantPolicy, *, request_id: str) -> None:
        """Claims the config's application for its project, or raises ClaimRejected when another
        project's claim binds it (see the module's docstring) and the policy does not share it."""
        key = claim_key(config.application)
        tenant = Tenant.of(config)
        owner = await self.claim(key, tenant, config_id=config.id, request_id=request_id)
        if not policy.may_use_application([key], owner, tenant) and await self.binds(key):
            raise ClaimRejected([claimed_elsewhere(config, owner)])

    def _key(self, entity: TableEntity) -> str:
        key = entity.get("Application")
        if not isinstance(key, str) or _keys(key) != (entity["PartitionKey"], entity["RowKey"]):
            problem = ("Application does not match the row's key",)
            raise CorruptRow(InvalidRow(self.table_name, entity["PartitionKey"], entity["RowKey"], problem))
        return key

    def _tenant(self, entity: TableEntity) -> Tenant:
        organization, project = entity.get("Organization"), entity.get("Project")
        if (
            not isinstance(organization, str)
            or not isinstance(project, str)
            or not organization
            or not project
        ):
            row = InvalidRow(
                self.table_name, entity["PartitionKey"], entity["RowKey"], ("no Organization/Project",)
            )
            raise CorruptRow(row)
        return Tenant(organization, project)


def claimed_elsewhere(config: FederationConfig, owner: Tenant) -> str:
    ref = config.application
    what = f"appId {ref.app_id}" if ref.app_id else f"displayName {ref.display_name!r}"
    return (
        f"application: {what} belongs to ADO project {owner}, not {Tenant.of(config)}; use an application "
        "of this project, or ask for it in the policy's sharedApplications"
    )


def _keys(key: str) -> tuple[str, str]:
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return digest[:2], digest
