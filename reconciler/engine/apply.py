"""Apply: run a plan's actions in dependency order, in parallel across applications and
one at a time within an application (Entra rejects concurrent credential writes to one
parent).

A conversion of a secret-based connection, or a move off ADO's issuer, runs after the
credential for the values the connection will have (ADO refuses it before); the values ADO
returns are then checked, and the credential follows them when they differ.

Every write is idempotent: a credential whose issuer and subject already exist is
adopted, a service principal that exists is read by its appId and adopted,
RoleAssignmentExists is adopted by the id ARM names (unless a re-read shows the role held only under
an ABAC condition: then the config fails, naming that assignment), a connection that exists by
name is adopted, and a new application is upserted by a unique name derived from its
display name, so a lost response or a second reconciler never makes a duplicate.
One config's failure never stops the others: its remaining actions are skipped and the
failure is recorded with its retry decision.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from reconciler.adapters.ado import AdoAdapter, ConnectionSettings
from reconciler.adapters.arm import ArmAdapter
from reconciler.adapters.graph import GraphAdapter
from reconciler.core.actions import (
    Action,
    ActionKind,
    ApplicationAction,
    ConnectionAction,
    CredentialAction,
    PipelineAction,
    RoleAssignmentAction,
)
from reconciler.core.events import IndexKey, assignment_key
from reconciler.core.identifiers import ArmScope, Guid
from reconciler.core.issuers import Trust
from reconciler.core.model import (
    TOKEN_EXCHANGE_AUDIENCE,
    ConnectionKey,
    FederationConfig,
    ObservedState,
    RoleAssignment,
    ServiceConnection,
    owner_of,
    role_assignment_name,
)
from reconciler.core.plan import Plan
from reconciler.failures import Conflict, Failure, NotFound, PermanentFailure, TemporaryFailure

# ADO converts a connection in place with this operation: from a secret to workload identity,
# and (unconfirmed, see docs/simulator.md) from its own issuer to Entra's.
CONVERT_OPERATION = "ConvertAuthenticationScheme"
# How long Entra may take before ADO sees a credential written moments ago (the portal's manual
# fallback says to wait a few moments, then try again).
TRUST_PROPAGATION_SECONDS = 60.0
# First wait before writing again to an application Graph does not show yet (doubling, at most 5 s).
GRAPH_REPLICATION_POLL_SECONDS = 0.5
_T = TypeVar("_T")


@dataclass
class ActionResult:
    action: Action
    outcome: str  # "applied", "adopted", "skipped", "failed"
    detail: str = ""
    seconds: float = 0.0
    # What the action created or adopted, as events name it: the drift-event index learns these
    # objects from the pass that made them (reconciler/app/events.py), not a later observation.
    written: tuple[IndexKey, ...] = ()


@dataclass
class ApplyResult:
    results: list[ActionResult] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)  # config id -> first failure
    created_apps: dict[str, str] = field(default_factory=dict)  # config id -> client id of its new app


@dataclass
class _Group:
    """What one application's actions learn as they run: ids the plan could not know."""

    object_id: str | None = None
    app_id: str | None = None
    # When this group created its application: Graph may not show it to the writes that follow yet.
    app_written_at: float | None = None
    principal_id: str | None = None
    principal_created_at: float | None = None
    # Shared by all groups of one apply: a connection belongs to one config, so to one group.
    connections: dict[tuple[str, str, str], ServiceConnection] = field(default_factory=dict)
    trusted: set[Trust] = field(default_factory=set)  # what this group's credential writes trust
    written: list[IndexKey] = field(default_factory=list)  # what its actions created or adopted

    def wrote(self, kind: Literal["application", "principal", "connection"], object_id: str) -> None:
        if Guid.is_valid(object_id):
            self.written.append(IndexKey(kind, object_id.lower()))

    def wrote_assignment(self, scope: str, name: str) -> None:
        if Guid.is_valid(name):
            self.written.append(IndexKey("roleAssignment", assignment_key(scope, name)))


class Applier:
    def __init__(
        self,
        graph: GraphAdapter,
        arm: ArmAdapter,
        ado: AdoAdapter,
        *,
        concurrency: int = 16,
        principal_replication_window: float = 60.0,
    ) -> None:
        """`principal_replication_window`: how long after creating an application or a service
        principal a refusal that says the service does not see it yet is waited out (then a
        temporary failure, left to a later pass)."""
        self._graph = graph
        self._arm = arm
        self._ado = ado
        self._limit = asyncio.Semaphore(concurrency)
        self._replication_window = principal_replication_window

    async def apply(
        self,
        plan: Plan,
        observed: ObservedState,
        configs: Sequence[FederationConfig],
        progress: Callable[[int, int], None] | None = None,
    ) -> ApplyResult:
        """Apply the plan; `progress(done, total)` hears of each application finished."""
        app_key = {c.id: c.application.key for c in configs}
        groups: dict[str, list[Action]] = defaultdict(list)
        for action in plan.actions:
            groups[app_key.get(action.config_ids[0], action.config_ids[0])].append(action)
        result = ApplyResult()
        connections = {c.key.folded: c for c in observed.connections}
        finished = 0

        async def apply_group(actions: list[Action]) -> None:
            nonlocal finished
            group = _Group(connections=connections)
            await self._apply_group(actions, group, observed, result)
            if group.app_id is not None:
                created = (a for a in actions if a.kind is ActionKind.CREATE_APPLICATION)
                result.created_apps.update((c, group.app_id) for a in created for c in a.config_ids)
            finished += 1
            if progress is not None:
                progress(finished, len(groups))

        await asyncio.gather(*(apply_group(actions) for actions in groups.values()))
        return result

    async def _apply_group(
        self, actions: list[Action], group: _Group, observed: ObservedState, result: ApplyResult
    ) -> None:
        async with self._limit:
            for action in actions:
                if any(config_id in result.failures for config_id in action.config_ids):
                    result.results.append(
                        ActionResult(action, "skipped", "an earlier action of its config failed")
                    )
                    continue
                started, known = time.monotonic(), len(group.written)
                try:
                    outcome = await self._run(action, group, observed)
                except Failure as failure:
                    for config_id in action.config_ids:
                        result.failures.setdefault(config_id, failure)
                    result.results.append(
                        ActionResult(action, "failed", failure.message, time.monotonic() - started)
                    )
                    continue
                written = tuple(group.written[known:])
                result.results.append(
                    ActionResult(action, outcome[0], outcome[1], time.monotonic() - started, written)
                )

    async def _run(self, action: Action, group: _Group, observed: ObservedState) -> tuple[str, str]:
        if isinstance(action, ApplicationAction):
            return await self._application(action, group, observed)
        if isinstance(action, ConnectionAction):
            return await self._connection(action, group, observed)
        if isinstance(action, CredentialAction):
            return await self._credential(action, group, observed)
        if isinstance(action, RoleAssignmentAction):
            return await self._role_assignment(action, group, observed)
        if isinstance(action, PipelineAction):
            return await self._pipelines(action, group)
        raise PermanentFailure(f"no handler for {action.kind}")

    # ------------------------------------------------------------------ applications

    async def _application(
        self, action: ApplicationAction, group: _Group, observed: ObservedState
    ) -> tuple[str, str]:
        if action.kind is ActionKind.CREATE_APPLICATION:
            group.object_id, group.app_id, created = await self._graph.upsert_application(
                action.app.display_name, action.tags
            )
            if created:  # an application that existed before is no replication delay's
                group.app_written_at = time.monotonic()
            group.wrote("application", group.object_id)
            return ("applied" if created else "adopted"), f"app {group.app_id}"
        if action.kind is ActionKind.ADD_APPLICATION_OWNER:
            return await self._add_owner(action, group, observed)
        app_id = self._app_id(action.app.app_id, group)
        try:
            group.principal_id = await self._while_replicating(
                group,
                app_id == group.app_id,
                lambda: self._graph.create_service_principal(app_id),
                # Graph's answer for an appId it does not see: 400 ("does not reference a valid
                # application object"), 404 from some replicas; the status decides, not the text.
                statuses=(400, 404),
            )
        except Conflict as conflict:
            # Graph says it exists: read it by its key (its listings, which the plan came from, lag
            # behind writes). Not visible even so: a later pass adopts it, never a permanent failure.
            found = await self._graph.service_principal_id(app_id)
            if found is None:
                raise TemporaryFailure(
                    f"Graph says the service principal of application {app_id} exists but does not "
                    f"show it yet ({conflict.message})",
                    retry_after=10,
                    code="PrincipalNotVisible",
                    status=conflict.status,
                ) from conflict
            group.principal_id = found
            group.wrote("principal", group.principal_id)
            return "adopted", f"principal {group.principal_id}"
        group.principal_created_at = time.monotonic()
        group.wrote("principal", group.principal_id)
        return "applied", f"principal {group.principal_id}"

    async def _add_owner(
        self, action: ApplicationAction, group: _Group, observed: ObservedState
    ) -> tuple[str, str]:
        """The deployed identity becomes an owner (a person's run, reconciler.core.model.PersonRun).
        When Graph refuses, the application's configs fail with what to do: the application
        exists, and the next run plans the owner again (it reads what the identity owns)."""
        owner = str(action.owner)
        object_id = await self._object_id(action.app.app_id, group, observed)
        try:
            added = await self._while_replicating(
                group,
                object_id == group.object_id,
                lambda: self._graph.add_application_owner(object_id, owner),
            )
        except Failure as failure:
            raise _owner_not_added(action, self._app_id(action.app.app_id, group), failure) from failure
        return ("applied" if added else "adopted"), f"owner {owner}"

    async def _while_replicating(
        self,
        group: _Group,
        addresses_new_app: bool,
        write: Callable[[], Awaitable[_T]],
        *,
        statuses: tuple[int, ...] = (404,),
    ) -> _T:
        """A Graph write to the application this group created moments ago. Graph may route it to a
        replica that has not seen the application yet (microsoft-graph-docs #19510; azure-cli retries
        `az ad sp create` after `az ad app create` for this): a refusal with one of `statuses` is
        waited out, with backoff, for the replication window, then left to a later pass as a
        temporary failure. Any other application's refusal is what it says."""
        delay = GRAPH_REPLICATION_POLL_SECONDS
        while True:
            try:
                return await write()
            except PermanentFailure as failure:
                since = group.app_written_at
                if (
                    not addresses_new_app
                    or since is None
                    or isinstance(failure, Conflict)
                    or failure.status not in statuses
                ):
                    raise
                if time.monotonic() >= since + self._replication_window:
                    raise TemporaryFailure(
                        f"Graph does not see the new application {group.app_id} yet (replication "
                        f"delay): {failure.message}",
                        retry_after=self._replication_window,
                        code="ApplicationNotReplicated",
                        status=failure.status,
                    ) from failure
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _app_id(self, planned: str | None, group: _Group) -> str:
        app_id = planned or group.app_id
        if app_id is None:
            raise PermanentFailure("the application this action needs was not created")
        return app_id

    async def _object_id(self, planned_app_id: str | None, group: _Group, observed: ObservedState) -> str:
        if group.object_id is not None and planned_app_id in (None, group.app_id):
            return group.object_id  # the application this plan created
        # Not cached for existing applications: a config that moved writes to its new application
        # and removes what it left on the old one within one group.
        app = observed.application_by_app_id(planned_app_id or "")
        if app is None:
            app = await self._graph.read_application(self._app_id(planned_app_id, group))
        if app is None:
            raise TemporaryFailure(f"application {planned_app_id} is not visible yet", retry_after=10)
        return app.object_id

    # ------------------------------------------------------------------ connections

    async def _connection(
        self, action: ConnectionAction, group: _Group, observed: ObservedState
    ) -> tuple[str, str]:
        key = action.connection.folded
        current = group.connections.get(key)
        settings = ConnectionSettings(
            app_id=self._app_id(action.app.app_id, group)
            if action.kind is not ActionKind.DELETE_CONNECTION
            else "",
            tenant_id=action.tenant_id,
            subscription_id=action.subscription_id,
            subscription_name=action.subscription_name,
            description=action.description,
        )
        if action.kind is ActionKind.CREATE_CONNECTION:
            return await self._create_connection(action.connection, settings, group)
        if current is None:
            raise TemporaryFailure(
                f"service connection {action.connection} is not visible yet", retry_after=10
            )
        if action.kind is ActionKind.DELETE_CONNECTION:
            await self._ado.delete_connection(current)
            group.connections.pop(key, None)
            return "applied", f"deleted {current.id}"
        if action.expects is not None:
            return await self._convert(action, action.expects, current, settings, group, observed)
        updated = await self._ado.update_connection(current, settings)
        group.connections[key] = updated
        _require_ready(updated, "updated")
        return "applied", f"connection {updated.id}"

    async def _convert(
        self,
        action: ConnectionAction,
        expects: Trust,
        current: ServiceConnection,
        settings: ConnectionSettings,
        group: _Group,
        observed: ObservedState,
    ) -> tuple[str, str]:
        """Convert or move the connection (its application trusts `expects` by now), then check
        that ADO gave it those values."""
        try:
            updated = await self._ado.update_connection(current, settings, operation=CONVERT_OPERATION)
        except PermanentFailure as refusal:
            if isinstance(refusal, NotFound) or refusal.status in (401, 403):
                raise
            raise _conversion_refused(
                action, expects, refusal, just_trusted=expects in group.trusted
            ) from refusal
        group.connections[action.connection.folded] = updated
        _require_ready(updated, "converted")
        returned = await self._returned_trust(action.connection, updated)
        if returned == expects:
            return "applied", f"connection {updated.id} now uses {expects.issuer}"
        followed = await self._follow_returned_trust(action, expects, returned, group, observed)
        return "applied", f"connection {updated.id}; {followed}"

    async def _returned_trust(self, key: ConnectionKey, updated: ServiceConnection) -> Trust:
        connection: ServiceConnection | None = updated
        if connection is None or not connection.issuer or not connection.subject:
            connection = await self._find_connection(key)
        if connection is None or not connection.issuer or not connection.subject:
            raise TemporaryFailure(
                f"service connection {key} was converted but reports no issuer and subject yet",
                retry_after=10,
            )
        return Trust(connection.issuer, connection.subject)

    async def _follow_returned_trust(
        self,
        action: ConnectionAction,
        expects: Trust,
        returned: Trust,
        group: _Group,
        observed: ObservedState,
    ) -> str:
        """ADO gave other values than computed: point this config's credential at them."""
        object_id = await self._object_id(action.app.app_id, group, observed)
        credentials = await self._graph.read_credentials(object_id)
        if any(Trust(c.issuer, c.subject) == returned for c in credentials):
            return f"the application already trusts {returned.subject}"
        ours = next(
            (
                c
                for c in credentials
                if Trust(c.issuer, c.subject) == expects and owner_of(c.description) == action.config_ids[0]
            ),
            None,
        )
        if ours is None:
            raise PermanentFailure(
                f"Azure DevOps gave service connection {action.connection} {returned}, not the computed "
                f"{expects}, and no credential of this config trusts it: {_portal_action(action, returned)}",
                code="ConversionMismatch",
            )
        await self._graph.update_credential(
            object_id, ours.id, returned.issuer, returned.subject, ours.description or action.description
        )
        return f"credential {ours.name!r} now trusts what ADO returned ({returned.subject})"

    async def _create_connection(
        self, key: ConnectionKey, settings: ConnectionSettings, group: _Group
    ) -> tuple[str, str]:
        try:
            created = await self._ado.create_connection(key.organization, key.project, key.name, settings)
        except PermanentFailure as failure:
            # A connection of that name may exist already (another reconciler, a lost response).
            existing = await self._find_connection(key)
            if existing is None:
                raise failure from None
            group.connections[key.folded] = existing
            group.wrote("connection", existing.id)
            return "adopted", f"connection {existing.id} already existed"
        group.connections[key.folded] = created
        group.wrote("connection", created.id)
        _require_ready(created, "created")
        return "applied", f"connection {created.id}"

    async def _find_connection(self, key: ConnectionKey) -> ServiceConnection | None:
        listing = await self._ado.list_connections(key.organization, key.project)
        return next((c for c in listing if c.key.folded == key.folded), None)

    # ------------------------------------------------------------------ credentials

    async def _credential(
        self, action: CredentialAction, group: _Group, observed: ObservedState
    ) -> tuple[str, str]:
        object_id = await self._object_id(action.app.app_id, group, observed)
        new_app = object_id == group.object_id
        if action.kind is ActionKind.DELETE_CREDENTIAL:
            await self._graph.delete_credential(object_id, str(action.credential_id))
            return "applied", f"deleted {action.name}"
        issuer, subject = await self._issuer_and_subject(action, group)
        if action.kind is ActionKind.UPDATE_CREDENTIAL:
            await self._while_replicating(
                group,
                new_app,
                lambda: self._graph.update_credential(
                    object_id, str(action.credential_id), issuer, subject, action.description
                ),
            )
            group.trusted.add(Trust(issuer, subject))
            return "applied", f"updated {action.name}"
        try:
            await self._while_replicating(
                group,
                new_app,
                lambda: self._graph.create_credential(
                    object_id, action.name, issuer, subject, action.description
                ),
            )
        except Conflict as conflict:
            # Re-read before deciding: the same trust may exist already (adopt it), or our own
            # credential of that name may need its values (a lost response, a concurrent run).
            current = await self._graph.read_credentials(object_id)
            for existing in current:
                if (existing.issuer, existing.subject) == (issuer, subject):
                    group.trusted.add(Trust(issuer, subject))
                    return "adopted", f"credential {existing.name!r} already trusts {subject}"
            if any(existing.name.lower() == action.name.lower() for existing in current):
                raise
            # Nothing the re-read shows explains the clash: Graph's listing lags behind the write
            # that made it (moments ago, by a lost response or another pass). A later pass sees it.
            raise TemporaryFailure(
                f"Graph refused credential {action.name!r} as a clash but does not show the credential "
                f"it clashes with yet ({conflict.message})",
                retry_after=10,
                code="ConflictNotVisible",
                status=conflict.status,
            ) from conflict
        group.trusted.add(Trust(issuer, subject))
        return "applied", f"created {action.name}"

    async def _issuer_and_subject(self, action: CredentialAction, group: _Group) -> tuple[str, str]:
        if action.from_connection is None:
            return str(action.issuer), str(action.subject)
        connection = group.connections.get(action.from_connection.folded)
        if connection is None or not connection.issuer or not connection.subject:
            connection = await self._find_connection(action.from_connection)
        if connection is None or not connection.issuer or not connection.subject:
            raise TemporaryFailure(
                f"service connection {action.from_connection} reports no issuer and subject yet",
                retry_after=10,
            )
        return connection.issuer, connection.subject

    # ------------------------------------------------------------------ role assignments

    async def _role_assignment(
        self, action: RoleAssignmentAction, group: _Group, observed: ObservedState
    ) -> tuple[str, str]:
        if action.kind is ActionKind.DELETE_ROLE_ASSIGNMENT:
            await self._arm.delete_assignment(str(action.assignment_id))
            return "applied", f"deleted {action.name}"
        principal = action.principal_id or group.principal_id or self._principal_of(action, observed)
        name = action.name or role_assignment_name(action.scope, action.role_id, principal)
        created = group.principal_created_at
        while True:
            try:
                await self._arm.create_assignment(
                    ArmScope.parse(action.scope), name, action.role_id, principal, action.description
                )
                group.wrote_assignment(action.scope, name)
                return "applied", f"assignment {name}"
            except Conflict as conflict:
                if conflict.code == "RoleAssignmentExists":
                    # Same scope, role and principal, whatever the condition. ARM's message names the
                    # one that holds them, or not (earlier answers did not): a re-read finds it, and
                    # says whether it holds the role only under a condition (then it is not adopted).
                    found = await self._existing_assignment(action, principal)
                    if found is not None and found.conditioned:
                        raise _conditioned_conflict(action, found) from conflict
                    existing = conflict.existing_id or (found.id if found else "")
                    group.wrote_assignment(action.scope, existing.rsplit("/", 1)[-1])
                    return "adopted", f"assignment {existing or 'already present'}"
                raise
            except TemporaryFailure as failure:
                if failure.code != "PrincipalNotFound":
                    raise
                if created is None:
                    # Not created by this run, so not replication delay: retrying for half an
                    # hour would only hide a wrong principal (terraform-provider-azurerm #11417).
                    raise PermanentFailure(
                        f"principal {principal} does not exist (ARM: PrincipalNotFound); "
                        "check the application's service principal",
                        code="PrincipalNotFound",
                    ) from failure
                if time.monotonic() >= created + self._replication_window:
                    raise TemporaryFailure(
                        f"ARM does not see the new principal {principal} yet (replication delay)",
                        retry_after=self._replication_window,
                        code="PrincipalNotFound",
                    ) from failure
                await asyncio.sleep(min(failure.retry_after, 2.0))

    async def _existing_assignment(
        self, action: RoleAssignmentAction, principal: str
    ) -> RoleAssignment | None:
        """The principal's assignment of the action's role at exactly its scope, as a filtered listing
        shows it; None when the listing does not show it (yet) or fails: the assignment exists either
        way, only the record of which one it is (and of its condition) is missing."""
        scope = ArmScope.parse(action.scope)
        try:
            listing = await self._arm.list_assignments(scope, principal)
        except Failure:
            return None
        return next(
            (
                found
                for found in listing.assignments
                if found.scope == str(scope) and found.role_id == action.role_id.lower()
            ),
            None,
        )

    def _principal_of(self, action: RoleAssignmentAction, observed: ObservedState) -> str:
        app = observed.application_by_app_id(action.app.app_id or "")
        if app is None or app.service_principal_id is None:
            raise PermanentFailure(f"{action.app} has no service principal to assign roles to")
        return app.service_principal_id

    # ------------------------------------------------------------------ pipelines

    async def _pipelines(self, action: PipelineAction, group: _Group) -> tuple[str, str]:
        connection_id = action.connection_id
        if connection_id is None:
            connection = group.connections.get(action.connection.folded)
            if connection is None:
                raise TemporaryFailure(
                    f"service connection {action.connection} is not visible yet", retry_after=10
                )
            connection_id = connection.id
        key = action.connection
        await self._ado.authorize_pipelines(key.organization, key.project, connection_id, action.access)
        return "applied", "authorized"


def _conditioned_conflict(action: RoleAssignmentAction, found: RoleAssignment) -> PermanentFailure:
    """ARM refused the create because the principal holds the role at the scope already, but only
    under an ABAC condition (made since the pass observed): that grants less than the config asks,
    and the reconciler changes no assignment it did not create."""
    return PermanentFailure(
        f"{action.app} holds {action.role_name or action.role_id} on {action.scope} only under a condition, "
        f"by role assignment {found.id}, which grants less than the config asks; ARM refuses a second "
        "assignment of the same role, principal and scope (RoleAssignmentExists). Remove the condition "
        "from it, or delete it, for the next pass to assign the role without a condition",
        code="RoleAssignmentConditioned",
    )


def _conversion_refused(
    action: ConnectionAction, expects: Trust, refusal: PermanentFailure, *, just_trusted: bool
) -> Failure:
    """ADO refused to convert or move the connection although its application should trust it.

    Right after the credential was written Entra may not have told ADO yet: try again later.
    When the credential was there before this pass, retrying cannot help: a person must act.
    """
    what = "convert" if action.kind is ActionKind.CONVERT_CONNECTION else "move to Entra's issuer"
    said = f"Azure DevOps refused to {what} service connection {action.connection} ({refusal.message})"
    if just_trusted:
        return TemporaryFailure(
            f"{said}; the credential trusting {expects} was created moments ago and may not have "
            "reached Azure DevOps yet",
            retry_after=TRUST_PROPAGATION_SECONDS,
            code="ConversionRefused",
        )
    return PermanentFailure(f"{said}: {_portal_action(action, expects)}", code="ConversionRefused")


def _owner_not_added(action: ApplicationAction, app_id: str, cause: Failure) -> Failure:
    """The application's configs fail with the fix, the cause's kind kept (a throttled add is retried)."""
    message = (
        f"could not make the deployed identity {action.owner} an owner of application {app_id} "
        f"({cause.message}); nothing else was written to it, and the next run tries again; or an owner "
        f"of the application or an Entra admin runs `az ad app owner add --id {app_id} "
        f"--owner-object-id {action.owner}`"
    )
    if isinstance(cause, TemporaryFailure):
        return TemporaryFailure(message, retry_after=cause.retry_after, code=cause.code, status=cause.status)
    return PermanentFailure(message, code=cause.code, status=cause.status)


def _portal_action(action: ConnectionAction, trust: Trust) -> str:
    app = action.app.app_id or str(action.app)
    return (
        f"make application {app} trust issuer {trust.issuer!r} and subject {trust.subject!r} "
        f"(Azure portal: App registrations > {app} > Certificates & secrets > Federated credentials > "
        f"Add credential > Other issuer, audience {TOKEN_EXCHANGE_AUDIENCE}), then in Azure DevOps open "
        f"the service connection {action.connection.name!r} and select Update (or Try again) to finish"
    )


NOT_READY_RETRY_S = 30.0  # a connection still being prepared is looked at again after this


def _require_ready(connection: ServiceConnection, done: str) -> None:
    """A write ADO answers with the connection not ready ends this config's pass: a failed operation
    needs a person (each pass then reports it, the planner writes nothing more to it); one still in
    progress is looked at again soon. Nothing that follows it (its credential) is written meanwhile."""
    if connection.ready:
        return
    message = f"service connection {connection.key} ({connection.id}) was {done}, but {connection.readiness}"
    if connection.failed:
        raise PermanentFailure(message, code="ConnectionNotReady")
    raise TemporaryFailure(message, retry_after=NOT_READY_RETRY_S, code="ConnectionNotReady")
