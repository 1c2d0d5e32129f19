"""Observe: read the live state of a batch of configs with as few requests as the APIs allow.

- Graph: the batch's applications by client id (and display name, for apps to create),
  15 per `in` filter, 20 filters per `$batch`, credentials expanded; their principals
  the same way. When the batch adopts existing applications, one paged listing of the
  applications the reconciler's identity owns (it may change no others).
- ARM: per subscription, either one listing of every assignment (then filtered to the
  batch's principals) or one filtered listing per principal, whichever costs fewer requests.
- ADO: one endpoint listing per project; the organization's id (one request, cached) only
  where a connection is to be converted or moved to Entra's issuer, whose subject carries it.
- Pipeline permissions have no bulk read: one GET per connection, only when asked
  (their own, slower cadence), counted apart.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from reconciler.adapters.ado import AdoAdapter
from reconciler.adapters.arm import ArmAdapter
from reconciler.adapters.graph import MAX_BATCH, MAX_IN_VALUES, PAGE_SIZE, GraphAdapter
from reconciler.core.identifiers import ArmScope, Guid
from reconciler.core.model import (
    WORKLOAD_IDENTITY_SCHEME,
    Application,
    CustomRole,
    FederationConfig,
    ObservedState,
    Ownership,
    RoleAssignment,
    ServiceConnection,
)
from reconciler.core.roles import builtin_role

# Listing a whole subscription costs about one request per page of assignments; listing
# by principal costs one request per principal. Below this many principals in a
# subscription the filtered listings are cheaper whatever the subscription holds.
PRINCIPALS_PER_SUBSCRIPTION_LISTING = 4
_T = TypeVar("_T")


@dataclass(frozen=True)
class Observation:
    state: ObservedState
    pipeline_reads: int  # pipeline-permission GETs, reported on their own line


class Observer:
    def __init__(
        self,
        graph: GraphAdapter,
        arm: ArmAdapter,
        ado: AdoAdapter,
        *,
        concurrency: int = 16,
        listing_threshold: int = 1000,
    ) -> None:
        self._graph = graph
        self._arm = arm
        self._ado = ado
        self._limit = asyncio.Semaphore(concurrency)
        self._listing_threshold = listing_threshold

    async def observe(self, configs: Sequence[FederationConfig], *, pipelines: bool = False) -> Observation:
        apps_task = self._applications(configs)
        apps, connections, custom_roles, ownership = await asyncio.gather(
            apps_task, self._connections(configs), self._custom_roles(configs), self._ownership(configs)
        )
        assignments, organization_ids = await asyncio.gather(
            self._assignments(configs, apps), self._organization_ids(configs, connections)
        )
        pipeline_reads = 0
        if pipelines:
            connections, pipeline_reads = await self._with_pipeline_access(configs, connections)
        state = ObservedState(
            tuple(apps),
            tuple(assignments),
            tuple(connections),
            tuple(custom_roles),
            organization_ids,
            ownership,
        )
        return Observation(state, pipeline_reads)

    async def _organization_ids(
        self, configs: Sequence[FederationConfig], connections: Iterable[ServiceConnection]
    ) -> dict[str, str]:
        """The ids of the organizations holding a wanted connection that is secret-based or on ADO's
        issuer: the subject such a connection will have on Entra's issuer carries it."""
        wanted = {c.connection.folded for c in configs}
        organizations = sorted(
            {
                c.organization.lower()
                for c in connections
                if c.key.folded in wanted and (c.scheme != WORKLOAD_IDENTITY_SCHEME or c.uses_legacy_issuer)
            }
        )
        found = await asyncio.gather(*(self._bounded(self._ado.organization_id(o)) for o in organizations))
        return {o: i for o, i in zip(organizations, found, strict=True) if i}

    async def _applications(self, configs: Sequence[FederationConfig]) -> list[Application]:
        """The batch's applications, by filtered reads or by one listing of the tenant, whichever is cheaper.

        Filters cost one request per 300 applications (15 per filter, 20 per batch); a listing
        costs one request per page of the whole tenant plus one to count it. Below the threshold
        the count itself would cost more than it can save.
        """
        ids = {c.application.app_id for c in configs if c.application.app_id}
        names = {str(c.application.display_name) for c in configs if c.application.create}
        wanted = len(ids) + len(names)
        list_all = False
        if wanted >= self._listing_threshold:
            filtered_cost = math.ceil(math.ceil(wanted / MAX_IN_VALUES) / MAX_BATCH)
            listing_cost = math.ceil(await self._graph.count_applications() / PAGE_SIZE)
            list_all = listing_cost < filtered_cost
        return await self._graph.read_applications(
            sorted(i for i in ids if i), sorted(names), list_all=list_all
        )

    async def _ownership(self, configs: Sequence[FederationConfig]) -> Ownership | None:
        """What the reconciler's identity owns, read only when a config adopts an existing app
        (by client id): the applications it creates are its own by construction."""
        if not any(c.application.app_id for c in configs):
            return None
        return await self._graph.read_ownership()

    async def _bounded(self, work: Awaitable[_T]) -> _T:
        async with self._limit:
            return await work

    async def _connections(self, configs: Sequence[FederationConfig]) -> list[ServiceConnection]:
        projects = sorted({(c.organization, c.project) for c in configs})
        listings = await asyncio.gather(
            *(self._bounded(self._ado.list_connections(o, p)) for o, p in projects)
        )
        return [connection for listing in listings for connection in listing]

    async def _assignments(
        self, configs: Sequence[FederationConfig], apps: Sequence[Application]
    ) -> list[RoleAssignment]:
        principal_of = {app.app_id: app.service_principal_id for app in apps if app.service_principal_id}
        by_name = {app.display_name: app.service_principal_id for app in apps if app.created_by_reconciler}
        principals_by_root: dict[str, set[str]] = defaultdict(set)
        for config in configs:
            ref = config.application
            principal = (
                principal_of.get(ref.app_id or "") if ref.app_id else by_name.get(str(ref.display_name))
            )
            if principal:
                for root in _listing_roots(config):
                    principals_by_root[root].add(principal)
        listings = await asyncio.gather(
            *(
                self._assignments_under(root, principals)
                for root, principals in sorted(principals_by_root.items())
            )
        )
        unique = {ra.id.lower(): ra for listing in listings for ra in listing}
        return list(unique.values())

    async def _assignments_under(self, root: str, principals: set[str]) -> list[RoleAssignment]:
        scope = ArmScope.parse(root)
        if len(principals) < PRINCIPALS_PER_SUBSCRIPTION_LISTING and scope.subscription is not None:
            per_principal = await asyncio.gather(
                *(self._bounded(self._arm.list_assignments(scope, p)) for p in sorted(principals))
            )
            return [ra for listing in per_principal for ra in listing]
        everything = await self._bounded(self._arm.list_assignments(scope))
        return [ra for ra in everything if ra.principal_id in principals]

    async def _custom_roles(self, configs: Sequence[FederationConfig]) -> list[CustomRole]:
        """Definitions of roles the built-in catalogue does not know, so the policy can classify them."""
        # A custom role id is unique in the tenant, but its definition is readable only where it is
        # assignable: read each at the subscription of a grant that uses it (a grant on a management
        # group falls back to the config's own subscription).
        where: dict[str, str] = {}
        for config in configs:
            for grant in config.role_grants:
                if builtin_role(grant.role_id) is None:
                    subscription = grant.arm_scope.subscription or config.subscription_id
                    where[grant.role_id] = min(where.get(grant.role_id, subscription), str(subscription))
        found = await asyncio.gather(
            *(self._bounded(self._arm.get_role_definition(sub, role)) for role, sub in sorted(where.items()))
        )
        return [role for role in found if role is not None]

    async def _with_pipeline_access(
        self, configs: Sequence[FederationConfig], connections: Iterable[ServiceConnection]
    ) -> tuple[list[ServiceConnection], int]:
        wanted = {c.connection.folded for c in configs}
        current = list(connections)
        targets = [i for i, c in enumerate(current) if c.key.folded in wanted]
        accesses = await asyncio.gather(
            *(
                self._bounded(
                    self._ado.read_pipeline_access(current[i].organization, current[i].project, current[i].id)
                )
                for i in targets
            )
        )
        for index, access in zip(targets, accesses, strict=True):
            current[index] = replace(current[index], pipelines=access)
        return current, len(targets)


def _listing_roots(config: FederationConfig) -> set[str]:
    """Where the config's principal may hold assignments worth seeing: each granted subscription
    (or management group), and the connection's own subscription."""
    roots = {str(ArmScope(subscription=Guid(config.subscription_id)))}
    roots.update(str(grant.arm_scope.root) for grant in config.role_grants)
    return roots
