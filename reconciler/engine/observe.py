"""Observe: read the live state of a batch of configs with as few requests as the APIs allow.

- Graph: the batch's applications by client id (and display name, for apps to create),
  15 per `in` filter, 20 filters per `$batch`, credentials expanded; their principals
  the same way. When the batch adopts existing applications, one paged listing of the
  applications the reconciler's identity owns (it may change no others). In a person's
  run, instead, of those the deployed identity owns, when a config names its application by
  display name (reconciler.core.model.PersonRun).
- ARM: per subscription, either one listing of every assignment (then filtered to the
  batch's principals) or one filtered listing per principal, whichever costs fewer requests:
  judged by the pages the subscription's last full listing took (see listing_pages.py).
  Where ARM refuses a subscription's listing (403: rights on resource groups only), one
  filtered listing per resource group the configs grant in and principal.
- ADO: one endpoint listing per project; the organization's id (one request, cached) only
  where a connection is to be converted or moved to Entra's issuer, whose subject carries it.
- Pipeline permissions have no bulk read: one GET per connection, only when asked
  (their own, slower cadence), counted apart.
- The tenant the reconciler signs in to: its Graph token's `tid` claim (no request), for the
  planner's check of each config's tenantId.
- Orphans, when asked with the whole desired state (`known`): one listing of the applications
  carrying the reconciler's tag (999 a page); only those no config names are read in full, and
  their principals join the role-assignment listings the batch makes anyway.

A read that fails (after the SDK's own retries) fails only the configs that needed it: the
observation holds what could be read plus, per config, the failure of a read it needed.
Nothing a read raises ends the pass.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from reconciler.adapters.ado import AdoAdapter
from reconciler.adapters.arm import ArmAdapter
from reconciler.adapters.graph import (
    APPLICATION_READ_UNITS,
    EXPANDED_PAGE_SIZE,
    GRAPH_UNITS_PER_WINDOW,
    MAX_BATCH,
    MAX_IN_VALUES,
    GraphAdapter,
)
from reconciler.adapters.pacing import GRAPH_WINDOW_S
from reconciler.core.identifiers import ArmScope, Guid
from reconciler.core.model import (
    WORKLOAD_IDENTITY_SCHEME,
    Application,
    CustomRole,
    FederationConfig,
    ObservedState,
    Ownership,
    PersonRun,
    RoleAssignment,
    ServiceConnection,
)
from reconciler.core.roles import builtin_role
from reconciler.engine.listing_pages import ListingPages
from reconciler.failures import Failure, PermanentFailure, TemporaryFailure

# Applications per filtered read_applications call: one $batch of 20 `in` filters of 15.
APPS_PER_READ = MAX_IN_VALUES * MAX_BATCH
_T = TypeVar("_T")
log = logging.getLogger("reconciler.engine.observe")


@dataclass(frozen=True)
class Observation:
    state: ObservedState
    pipeline_reads: int  # pipeline-permission GETs, reported on their own line
    # config id -> why a read it needed failed: its part of `state` is incomplete.
    failures: Mapping[str, Failure] = field(default_factory=dict)
    # Reads no config needed that failed (the orphan scan): reported, they fail nothing.
    warnings: tuple[str, ...] = ()


class _ReadFailures:
    """The failed reads of one observation, charged to the configs that needed them."""

    def __init__(self) -> None:
        self.by_config: dict[str, Failure] = {}
        self.warnings: list[str] = []

    def charge(self, configs: Iterable[FederationConfig], failure: Failure) -> None:
        for config in configs:
            self.by_config.setdefault(config.id, failure)

    def warn(self, failure: Failure, consequence: str) -> None:
        warning = f"{failure.message}; {consequence}"
        if warning not in self.warnings:  # one listing failing for several principals says it once
            self.warnings.append(warning)


class Observer:
    def __init__(
        self,
        graph: GraphAdapter,
        arm: ArmAdapter,
        ado: AdoAdapter,
        *,
        concurrency: int = 16,
        graph_units_per_window: int = GRAPH_UNITS_PER_WINDOW,
        deployed_identity: str | None = None,
    ) -> None:
        self._graph = graph
        self._deployed_identity = deployed_identity
        self._arm = arm
        self._ado = ado
        self._limit = asyncio.Semaphore(concurrency)
        self._graph_units = graph_units_per_window
        # Shared by every pass of this engine: the sweep's full listings inform the messages' choice.
        self._listing_pages = ListingPages()

    async def observe(
        self,
        configs: Sequence[FederationConfig],
        *,
        pipelines: bool = False,
        known: Sequence[FederationConfig] | None = None,
    ) -> Observation:
        """What the clouds hold for `configs`. With `known` (every config of the desired state,
        including those not observed), also the applications the reconciler created that none of
        them names, with their credentials and role assignments, for reconciler.core.orphans."""
        failed = _ReadFailures()
        apps, connections, custom_roles, ownership, person, created = await asyncio.gather(
            self._applications(configs, failed),
            self._connections(configs, failed),
            self._custom_roles(configs, failed),
            self._ownership(configs, failed, scan=known is not None),
            self._person(configs, failed),
            self._created_applications(known is not None, failed),
        )
        if known is not None and ownership is not None:
            # Scanning: adopted applications too, since what the reconciler put there stays.
            created = {**ownership.client_ids, **created}
        unnamed = await self._unnamed_applications(created, apps, known or (), failed)
        apps = [*apps, *unnamed]
        assignments, organization_ids, tenant = await asyncio.gather(
            self._assignments(configs, apps, failed, unnamed),
            self._organization_ids(configs, connections, failed),
            self._tenant(configs, failed),  # from the token the reads above signed in with
        )
        pipeline_reads = 0
        if pipelines:
            connections, pipeline_reads = await self._with_pipeline_access(configs, connections, failed)
        state = ObservedState(
            tuple(apps),
            tuple(assignments),
            tuple(connections),
            tuple(custom_roles),
            organization_ids,
            ownership,
            person,
            tenant,
        )
        return Observation(state, pipeline_reads, dict(failed.by_config), tuple(failed.warnings))

    async def _tenant(self, configs: Sequence[FederationConfig], failed: _ReadFailures) -> str | None:
        """The tenant the reconciler signs in to (its Graph token's `tid`: no request), which the
        planner checks each config's tenantId against. When the token cannot be had, every config
        fails with it (none can be written anyway); a token without `tid` leaves it unknown."""
        if not configs:
            return None
        tenant = await self._read("the tenant the reconciler signs in to", self._graph.own_tenant_id())
        if isinstance(tenant, Failure):
            failed.charge(configs, tenant)
            return None
        return tenant

    async def _created_applications(self, scan: bool, failed: _ReadFailures) -> Mapping[str, str]:
        """Client id -> display name of every application the reconciler created, when scanning."""
        if not scan:
            return {}
        listed = await self._read(
            "the applications the reconciler created", self._graph.list_created_applications()
        )
        if isinstance(listed, Failure):
            failed.warn(listed, "orphaned applications are not reported in this pass")
            return {}
        return listed

    async def _unnamed_applications(
        self,
        created: Mapping[str, str],
        apps: Sequence[Application],
        known: Sequence[FederationConfig],
        failed: _ReadFailures,
    ) -> list[Application]:
        """The applications the reconciler created or owns that no known config names, read in
        full (few: normally none)."""
        named = {str(c.application.app_id).lower() for c in known if c.application.app_id}
        named.update(app.app_id for app in apps)
        create_names = {str(c.application.display_name) for c in known if not c.application.app_id}
        ids = sorted(i for i, name in created.items() if i not in named and name not in create_names)
        reads = [list(chunk) for chunk in _chunks(ids, APPS_PER_READ)]
        results = await asyncio.gather(
            *(self._read(_apps_named(chunk, ()), self._graph.read_applications(chunk)) for chunk in reads)
        )
        unnamed: list[Application] = []
        for result in results:
            if isinstance(result, Failure):
                failed.warn(result, "some orphaned applications are not reported in this pass")
            else:
                unnamed.extend(result)
        return unnamed

    async def _organization_ids(
        self,
        configs: Sequence[FederationConfig],
        connections: Iterable[ServiceConnection],
        failed: _ReadFailures,
    ) -> dict[str, str]:
        """The ids of the organizations holding a wanted connection that is secret-based or on ADO's
        issuer: the subject such a connection will have on Entra's issuer carries it."""
        wanted = {c.connection.folded for c in configs}
        moving = {
            c.key.folded
            for c in connections
            if c.key.folded in wanted and (c.scheme != WORKLOAD_IDENTITY_SCHEME or c.uses_legacy_issuer)
        }
        organizations = sorted({organization for organization, _, _ in moving})
        found = await asyncio.gather(
            *(self._read(f"the id of organization {o}", self._ado.organization_id(o)) for o in organizations)
        )
        ids: dict[str, str] = {}
        for organization, result in zip(organizations, found, strict=True):
            if isinstance(result, Failure):
                needing = (
                    c
                    for c in configs
                    if c.connection.folded in moving and c.connection.folded[0] == organization
                )
                failed.charge(needing, result)
            elif result:
                ids[organization] = result
        return ids

    async def _ownership(
        self, configs: Sequence[FederationConfig], failed: _ReadFailures, *, scan: bool = False
    ) -> Ownership | None:
        """What the reconciler's identity owns, read when a config adopts an existing app (by
        client id): the applications it creates are its own by construction; and when scanning
        for orphans (the applications it was made owner of, which configs no longer name, may
        hold its credentials and role assignments). None when a person is signed in (the adapter
        does not read it for a delegated token). When the read fails, the configs that adopt fail
        with it (None alone would block nothing); a scan alone is only warned about."""
        adopting = [c for c in configs if c.application.app_id]
        if not adopting and not scan:
            return None
        owned = await self._read("the applications the reconciler owns", self._graph.read_ownership())
        if isinstance(owned, Failure):
            failed.charge(adopting, owned)
            if scan:
                failed.warn(owned, "orphans on adopted applications are not reported in this pass")
            return None
        return owned

    async def _person(self, configs: Sequence[FederationConfig], failed: _ReadFailures) -> PersonRun | None:
        """None for the identity's runs; for a person's, what the deployed identity owns, read (one
        paged listing) only with its id set and a config naming its application by display name:
        only such applications are the reconciler's to create, and to make the identity owner of.
        When the read fails, those configs fail with it (nothing is created that it might not own)."""
        delegated = await self._read("who is signed in", self._graph.own_token_is_delegated())
        if isinstance(delegated, Failure):
            failed.charge(configs, delegated)
            return None
        if not delegated:
            return None
        naming = [c for c in configs if not c.application.app_id]
        if self._deployed_identity is None or not naming:
            return PersonRun()
        what = f"the applications the deployed identity {self._deployed_identity} owns"
        owned = await self._read(what, self._graph.read_ownership(self._deployed_identity))
        if isinstance(owned, Failure):
            failed.charge(naming, owned)
            return PersonRun()
        return PersonRun(owned)

    async def _read(self, what: str, work: Awaitable[_T]) -> _T | Failure:
        """The read's result, or its failure naming what could not be read; never an exception."""
        async with self._limit:
            try:
                return await work
            except TemporaryFailure as failure:
                return TemporaryFailure(
                    f"could not read {what}: {failure.message}",
                    retry_after=failure.retry_after,
                    code=failure.code,
                    status=failure.status,
                )
            except Failure as failure:
                return PermanentFailure(
                    f"could not read {what}: {failure.message}", code=failure.code, status=failure.status
                )
            except Exception as error:  # a bug or an unmapped SDK error must not end the pass
                log.warning("reading %s failed unexpectedly", what, exc_info=True)
                return TemporaryFailure(f"could not read {what}: {error!r}", code="UnexpectedError")

    async def _applications(
        self, configs: Sequence[FederationConfig], failed: _ReadFailures
    ) -> list[Application]:
        """The batch's applications, by filtered reads, or by one listing of the tenant when
        that is what keeps the pass within Graph's budget (see `listing_is_cheaper`).

        Filtered reads go 300 applications at a time (one $batch), so a failed one fails only
        the configs of its 300.
        """
        needing = [c for c in configs if c.application.app_id or c.application.create]
        ids = sorted({str(c.application.app_id) for c in needing if c.application.app_id})
        names = sorted({str(c.application.display_name) for c in needing if not c.application.app_id})
        if await self._list_all(len(ids) + len(names)):
            listed = await self._read(
                "the tenant's applications", self._graph.read_applications(ids, names, list_all=True)
            )
            if isinstance(listed, Failure):
                failed.charge(needing, listed)
                return []
            return listed
        nothing: Sequence[str] = ()
        reads = [(chunk, nothing) for chunk in _chunks(ids, APPS_PER_READ)]
        reads += [(nothing, chunk) for chunk in _chunks(names, APPS_PER_READ)]
        results = await asyncio.gather(
            *(self._read(_apps_named(i, n), self._graph.read_applications(i, n)) for i, n in reads)
        )
        apps: list[Application] = []
        for (chunk_ids, chunk_names), result in zip(reads, results, strict=True):
            if isinstance(result, Failure):
                wanted = set(chunk_ids) | set(chunk_names)
                failed.charge((c for c in needing if _app_key(c) in wanted), result)
            else:
                apps.extend(result)
        # A created application that a moved config left is read by its name and by its client id:
        # twice in the state, it would resolve to no application at all.
        return list({app.app_id: app for app in apps}.values())

    async def _list_all(self, wanted: int) -> bool:
        if filtered_units(wanted) <= self._graph_units:
            return False  # fits the budget: filters take fewer requests, so no count is needed
        started = time.monotonic()
        counted = await self._read("the tenant's application count", self._graph.count_applications())
        if isinstance(counted, Failure):
            return False  # filtered reads work without the count
        # The count's round trip stands for a page's (a page of 100 applications takes longer).
        return listing_is_cheaper(wanted, counted, self._graph_units, time.monotonic() - started)

    async def _connections(
        self, configs: Sequence[FederationConfig], failed: _ReadFailures
    ) -> list[ServiceConnection]:
        projects = sorted({(c.organization, c.project) for c in configs})
        listings = await asyncio.gather(
            *(
                self._read(f"the service connections of {o}/{p}", self._ado.list_connections(o, p))
                for o, p in projects
            )
        )
        found: list[ServiceConnection] = []
        for (organization, project), listing in zip(projects, listings, strict=True):
            if isinstance(listing, Failure):
                failed.charge(
                    (c for c in configs if (c.organization, c.project) == (organization, project)), listing
                )
            else:
                found.extend(listing)
        return found

    async def _assignments(
        self,
        configs: Sequence[FederationConfig],
        apps: Sequence[Application],
        failed: _ReadFailures,
        unnamed: Sequence[Application] = (),
    ) -> list[RoleAssignment]:
        """The role assignments of the configs' principals under their listing roots; and of the
        `unnamed` applications' principals under every root of the batch (listings made anyway)."""
        principal_of = {app.app_id: app.service_principal_id for app in apps if app.service_principal_id}
        by_name = {app.display_name: app.service_principal_id for app in apps if app.created_by_reconciler}
        principals_by_root: dict[str, set[str]] = defaultdict(set)
        needed_by: dict[tuple[str, str], list[FederationConfig]] = defaultdict(list)
        for config in configs:
            ref = config.application
            principal = (
                principal_of.get(ref.app_id or "") if ref.app_id else by_name.get(str(ref.display_name))
            )
            if principal:
                for root in _listing_roots(config):
                    principals_by_root[root].add(principal)
                    needed_by[(root, principal)].append(config)
        orphan_principals = {app.service_principal_id for app in unnamed if app.service_principal_id}
        if orphan_principals:
            for root in {root for config in configs for root in _listing_roots(config)}:
                principals_by_root[root].update(orphan_principals)
        roots = sorted(principals_by_root.items())
        listings = await asyncio.gather(*(self._assignments_under(root, ps) for root, ps in roots))
        unique: dict[str, RoleAssignment] = {}
        refused: dict[tuple[str, str], Failure] = {}
        for (root, _), (listing, failures) in zip(roots, listings, strict=True):
            unique.update((ra.id.lower(), ra) for ra in listing)
            for principal, failure in failures.items():
                if _refused_at_subscription(root, failure):
                    refused[(root, principal)] = failure
                    self._listing_pages.learn_refusal(root, failure, time.monotonic())
                else:
                    failed.charge(needed_by[(root, principal)], failure)
                if principal in orphan_principals:
                    failed.warn(failure, f"orphaned role assignments under {root} are not reported")
        if refused:
            fallback = await self._assignments_in_groups(refused, needed_by, failed)
            unique.update((ra.id.lower(), ra) for ra in fallback)
        return list(unique.values())

    async def _assignments_in_groups(
        self,
        refused: Mapping[tuple[str, str], Failure],
        needed_by: Mapping[tuple[str, str], Sequence[FederationConfig]],
        failed: _ReadFailures,
    ) -> list[RoleAssignment]:
        """Where ARM refused a subscription's listing (403: the reconciler's role is on resource
        groups only, docs/deploy.md), the principals' assignments at, above and below each resource
        group their configs grant in: one filtered listing per group and principal. A config is
        failed only by the refused read of a scope it grants at; a subscription it grants nothing
        in (its connection's) it could not write in either. Nothing is learnt for listing_pages."""
        needing: dict[tuple[ArmScope, str], list[FederationConfig]] = defaultdict(list)
        for (root, principal), failure in refused.items():
            subscription = ArmScope.parse(root).subscription
            for config in needed_by.get((root, principal), ()):
                for scope in (grant.arm_scope for grant in config.role_grants):
                    if scope.subscription != subscription:
                        continue
                    if scope.resource_group is None:  # a grant at the subscription itself
                        failed.charge([config], failure)
                    else:
                        group = ArmScope(subscription=subscription, resource_group=scope.resource_group)
                        needing[(group, principal)].append(config)
        wanted = sorted(needing, key=lambda pair: (str(pair[0]), pair[1]))
        listings = await asyncio.gather(
            *(
                self._read(f"the role assignments under {group} of {p}", self._arm.list_assignments(group, p))
                for group, p in wanted
            )
        )
        found: list[RoleAssignment] = []
        for pair, listing in zip(wanted, listings, strict=True):
            if isinstance(listing, Failure):
                failed.charge(needing[pair], listing)
            else:
                found.extend(listing.assignments)
        return found

    async def _assignments_under(
        self, root: str, principals: set[str]
    ) -> tuple[list[RoleAssignment], dict[str, Failure]]:
        """The principals' assignments under `root`, and the failed read of each principal it missed."""
        scope = ArmScope.parse(root)
        what = f"the role assignments under {root}"
        refused = self._listing_pages.refusal(root, time.monotonic())
        if refused is not None:  # rights on resource groups only: the caller reads at the groups
            return [], dict.fromkeys(principals, refused)
        if scope.subscription is not None and self._listing_pages.per_principal_is_cheaper(
            root, len(principals)
        ):
            ordered = sorted(principals)
            per_principal = await asyncio.gather(
                *(self._read(f"{what} of {p}", self._arm.list_assignments(scope, p)) for p in ordered)
            )
            listed = [listing for listing in per_principal if not isinstance(listing, Failure)]
            found = [ra for listing in listed for ra in listing.assignments]
            failures = {p: r for p, r in zip(ordered, per_principal, strict=True) if isinstance(r, Failure)}
            return found, failures
        everything = await self._read(what, self._arm.list_assignments(scope))
        if isinstance(everything, Failure):
            return [], dict.fromkeys(principals, everything)
        self._listing_pages.learn(root, everything.pages)
        return [ra for ra in everything.assignments if ra.principal_id in principals], {}

    async def _custom_roles(
        self, configs: Sequence[FederationConfig], failed: _ReadFailures
    ) -> list[CustomRole]:
        """Definitions of roles the built-in catalogue does not know, so the policy can classify them."""
        # A custom role id is unique in the tenant, but its definition is readable only where it is
        # assignable, by a caller with roleDefinitions/read there: read each at the scope of a grant
        # that uses it (the first by name, so a pass is deterministic). Where the grant can be
        # written, the definition can be read; a subscription may be refused (rights on resource
        # groups only, docs/deploy.md) or not be where the role is assignable.
        where: dict[str, ArmScope] = {}
        for config in configs:
            for grant in config.role_grants:
                if builtin_role(grant.role_id) is None:
                    known = where.get(grant.role_id)
                    if known is None or str(grant.arm_scope) < str(known):
                        where[grant.role_id] = grant.arm_scope
        roles = sorted(where.items())
        found = await asyncio.gather(
            *(
                self._read(f"role definition {role}", self._arm.get_role_definition(scope, role))
                for role, scope in roles
            )
        )
        custom: list[CustomRole] = []
        for (role_id, _), result in zip(roles, found, strict=True):
            if isinstance(result, Failure):
                failed.charge((c for c in configs if _uses_role(c, role_id)), result)
            elif result is not None:
                custom.append(result)
        return custom

    async def _with_pipeline_access(
        self,
        configs: Sequence[FederationConfig],
        connections: Iterable[ServiceConnection],
        failed: _ReadFailures,
    ) -> tuple[list[ServiceConnection], int]:
        wanted = {c.connection.folded for c in configs}
        current = list(connections)
        targets = [i for i, c in enumerate(current) if c.key.folded in wanted]
        accesses = await asyncio.gather(
            *(
                self._read(
                    f"the pipeline permissions of {current[i].key}",
                    self._ado.read_pipeline_access(
                        current[i].organization, current[i].project, current[i].id
                    ),
                )
                for i in targets
            )
        )
        for index, access in zip(targets, accesses, strict=True):
            if isinstance(access, Failure):
                key = current[index].key.folded
                failed.charge((c for c in configs if c.connection.folded == key), access)
            else:
                current[index] = replace(current[index], pipelines=access)
        return current, len(targets)


def filtered_units(wanted: int) -> int:
    """Resource units to read `wanted` applications by `in` filters of 15."""
    return math.ceil(wanted / MAX_IN_VALUES) * APPLICATION_READ_UNITS


def listing_is_cheaper(wanted: int, tenant_size: int, units_per_window: int, round_trip_s: float) -> bool:
    """Whether listing the whole tenant beats filtered reads for `wanted` of its applications.

    Filters carry 300 applications per request (15 per filter, 20 per $batch), a listing 100
    per page (Graph's cap with $expand): in requests the filters always win. In resource units
    a listing page costs what a filter costs, so the listing spends fewer units once the batch is
    more than 15% of the tenant. The filters are kept while they fit Graph's budget for one window
    (more requests cost nothing then, and they run in parallel where pages cannot). Past it, both
    take time: the filters wait for the budget (the engine paces them), the listing's pages follow
    one another. The listing is chosen when it spends fewer units and its pages, at `round_trip_s`
    each, take no longer than the filters' wait; a budget of 0 (off) compares units alone.
    """
    filtered = filtered_units(wanted)
    if filtered <= units_per_window:
        return False
    pages = math.ceil(tenant_size / EXPANDED_PAGE_SIZE)
    if pages * APPLICATION_READ_UNITS >= filtered:
        return False
    if units_per_window <= 0:
        return True
    filters_wait_s = (filtered - units_per_window) / units_per_window * GRAPH_WINDOW_S
    return pages * round_trip_s <= filters_wait_s


def _app_key(config: FederationConfig) -> str:
    """What the config's application is read by: its client id, or the display name to create."""
    return str(config.application.app_id or config.application.display_name)


def _apps_named(ids: Sequence[str], names: Sequence[str]) -> str:
    values = [*ids, *names]
    more = f" and {len(values) - 1} more" if len(values) > 1 else ""
    return f"application {values[0]}{more}" if values else "no applications"


def _uses_role(config: FederationConfig, role_id: str) -> bool:
    return any(grant.role_id == role_id for grant in config.role_grants)


def _chunks(items: Sequence[_T], size: int) -> Iterable[Sequence[_T]]:
    return (items[start : start + size] for start in range(0, len(items), size))


def _refused_at_subscription(root: str, failure: Failure) -> bool:
    """Whether ARM refused to list a subscription's assignments (403: no roleAssignments/read there)."""
    return failure.status == 403 and ArmScope.parse(root).subscription is not None


def _listing_roots(config: FederationConfig) -> set[str]:
    """Where the config's principal may hold assignments worth seeing: each granted subscription
    (or management group), and the connection's own subscription."""
    roots = {str(ArmScope(subscription=Guid(config.subscription_id)))}
    roots.update(str(grant.arm_scope.root) for grant in config.role_grants)
    return roots
