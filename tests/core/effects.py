"""A pure model of what applying a plan does to the clouds, for the planner's property tests.

It mirrors the engine's contract: pending values (a new app's id, the issuer and subject a
connection returns) are filled in from earlier actions, a credential create whose issuer
and subject already exist on the app is adopted, and Entra's invariants (20 credentials,
unique names and issuer/subject pairs) are asserted so that a plan Azure would reject
fails the test.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from reconciler.core.actions import (
    Action,
    ActionKind,
    ApplicationAction,
    AppTarget,
    ConnectionAction,
    CredentialAction,
    PipelineAction,
    RoleAssignmentAction,
)
from reconciler.core.model import (
    APPLICATION_TAG,
    MAX_CREDENTIALS_PER_APP,
    TOKEN_EXCHANGE_AUDIENCE,
    WORKLOAD_IDENTITY_SCHEME,
    Application,
    ConnectionKey,
    FederatedCredential,
    ObservedState,
    PipelineAccess,
    RoleAssignment,
    ServiceConnection,
    role_assignment_name,
)
from reconciler.core.plan import Plan

_NS = uuid.UUID("6f1c8a52-4d0e-4c1e-9a7e-2f9d0b7c5a11")


def fake_id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "|".join(parts)))


def entra_issuer(tenant_id: str) -> str:
    return f"https://login.microsoftonline.com/{tenant_id}/v2.0"


def entra_subject(organization: str, connection_id: str) -> str:
    return f"/eid1/c/pub/t/tenant/a/ado/sc/{fake_id('org', organization)}/{connection_id}"


class _World:
    def __init__(self, observed: ObservedState) -> None:
        self.apps = {app.app_id: app for app in observed.applications}
        self.assignments = {ra.id: ra for ra in observed.role_assignments}
        self.connections = {_key(c.key): c for c in observed.connections}
        self.custom_roles = observed.custom_roles
        self.organization_ids = observed.organization_ids
        self.adopted: set[str] = set()  # credentials a pending write found already in place

    def state(self) -> ObservedState:
        return ObservedState(
            applications=tuple(self.apps.values()),
            role_assignments=tuple(self.assignments.values()),
            connections=tuple(self.connections.values()),
            custom_roles=self.custom_roles,
            organization_ids=self.organization_ids,
        )

    def app(self, target: AppTarget) -> Application:
        if target.app_id is not None:
            return self.apps[target.app_id]
        return next(a for a in self.apps.values() if a.display_name == target.display_name and a.tags)

    def connection(self, key: ConnectionKey) -> ServiceConnection:
        return self.connections[_key(key)]

    def put_app(self, app: Application) -> None:
        names = [c.name.lower() for c in app.credentials]
        pairs = [(c.issuer, c.subject) for c in app.credentials]
        assert len(app.credentials) <= MAX_CREDENTIALS_PER_APP, f"{app.app_id} would hold a 21st credential"
        assert len(set(names)) == len(names), f"duplicate credential name on {app.app_id}"
        assert len(set(pairs)) == len(pairs), f"duplicate issuer/subject on {app.app_id}"
        self.apps[app.app_id] = app


def _key(key: ConnectionKey) -> tuple[str, str, str]:
    return (key.organization.lower(), key.project.lower(), key.name.lower())


def apply_plan(observed: ObservedState, plan: Plan) -> ObservedState:
    world = _World(observed)
    for action in plan.actions:
        _apply(world, action)
    return world.state()


def _apply(world: _World, action: Action) -> None:
    if isinstance(action, ApplicationAction):
        _apply_application(world, action)
    elif isinstance(action, ConnectionAction):
        _apply_connection(world, action)
    elif isinstance(action, CredentialAction):
        _apply_credential(world, action)
    elif isinstance(action, RoleAssignmentAction):
        _apply_role_assignment(world, action)
    elif isinstance(action, PipelineAction):
        _apply_pipelines(world, action)
    else:  # pragma: no cover - a new action kind must be modelled here
        raise AssertionError(f"unmodelled action {action}")


def _apply_application(world: _World, action: ApplicationAction) -> None:
    name = action.app.display_name
    if action.kind is ActionKind.CREATE_APPLICATION:
        app_id = fake_id("app", name)
        app = Application(fake_id("object", name), app_id, name, tags=frozenset({APPLICATION_TAG}))
        world.put_app(app)
    else:
        app = world.app(action.app)
        assert app.service_principal_id is None, "service principal created twice"
        world.put_app(replace(app, service_principal_id=fake_id("sp", app.app_id)))


def _apply_connection(world: _World, action: ConnectionAction) -> None:
    key = action.connection
    if action.kind is ActionKind.DELETE_CONNECTION:
        del world.connections[_key(key)]
        return
    app_id = world.app(action.app).app_id
    if action.kind is ActionKind.CREATE_CONNECTION:
        assert _key(key) not in world.connections, "connection created twice"
        connection = ServiceConnection(
            id=fake_id("connection", str(key)),
            organization=key.organization,
            project=key.project,
            name=key.name,
            scheme="",
            description=action.description,
            pipelines=PipelineAccess(),
        )
    else:
        connection = world.connection(key)
        assert connection.id == action.connection_id, "a connection must be changed in place"
    issuer, subject = connection.issuer, connection.subject
    if action.expects is not None:
        trusted = {(c.issuer, c.subject) for c in world.app(action.app).credentials}
        expects = (action.expects.issuer, action.expects.subject)
        assert expects in trusted, f"ADO refuses {action.kind}: the application does not trust {expects}"
        issuer, subject = expects
    elif action.kind is not ActionKind.UPDATE_CONNECTION or action.tenant_id != connection.tenant_id:
        issuer, subject = entra_issuer(action.tenant_id), entra_subject(key.organization, connection.id)
    world.connections[_key(key)] = replace(
        connection,
        scheme=WORKLOAD_IDENTITY_SCHEME,
        app_id=app_id,
        tenant_id=action.tenant_id,
        subscription_id=action.subscription_id,
        subscription_name=action.subscription_name,
        issuer=issuer,
        subject=subject,
    )


def _apply_credential(world: _World, action: CredentialAction) -> None:
    app = world.app(action.app)
    creds = list(app.credentials)
    if action.kind is ActionKind.DELETE_CREDENTIAL:
        if action.credential_id in world.adopted:
            return  # the engine keeps what a pending write adopted earlier in the same apply
        world.put_app(replace(app, credentials=tuple(c for c in creds if c.id != action.credential_id)))
        return
    issuer, subject = action.issuer, action.subject
    if action.from_connection is not None:
        connection = world.connection(action.from_connection)
        issuer, subject = connection.issuer, connection.subject
    assert issuer and subject, "a credential needs an issuer and a subject"
    same = next((c for c in creds if (c.issuer, c.subject) == (issuer, subject)), None)
    if same is not None and same.id != action.credential_id:
        # The engine adopts a credential that already trusts this connection; the one an
        # update would have rewritten is its own and goes.
        world.adopted.add(same.id)
        creds = [c for c in creds if c.id != action.credential_id]
    elif action.kind is ActionKind.CREATE_CREDENTIAL:
        new = FederatedCredential(
            fake_id("cred", app.app_id, action.name),
            action.name,
            issuer,
            subject,
            description=action.description,
        )
        creds.append(new)
    else:
        index = next(i for i, c in enumerate(creds) if c.id == action.credential_id)
        creds[index] = replace(
            creds[index], issuer=issuer, subject=subject, audiences=(TOKEN_EXCHANGE_AUDIENCE,)
        )
    world.put_app(replace(app, credentials=tuple(creds)))


def _apply_role_assignment(world: _World, action: RoleAssignmentAction) -> None:
    if action.kind is ActionKind.DELETE_ROLE_ASSIGNMENT:
        assert action.assignment_id is not None
        del world.assignments[action.assignment_id]
        return
    principal = action.principal_id or world.app(action.app).service_principal_id
    assert principal is not None, "a role assignment needs its principal to exist first"
    name = action.name or role_assignment_name(action.scope, action.role_id, principal)
    grant = (action.scope, action.role_id, principal)
    existing = {(ra.scope, ra.role_id, ra.principal_id) for ra in world.assignments.values()}
    assert grant not in existing, "RoleAssignmentExists"
    assignment_id = f"{action.scope}/providers/Microsoft.Authorization/roleAssignments/{name}"
    world.assignments[assignment_id] = RoleAssignment(
        assignment_id, name, action.scope, action.role_id, principal, action.description
    )


def _apply_pipelines(world: _World, action: PipelineAction) -> None:
    connection = world.connection(action.connection)
    current = connection.pipelines or PipelineAccess()
    merged = PipelineAccess(
        all_pipelines=current.all_pipelines or action.access.all_pipelines,
        pipeline_ids=current.pipeline_ids | action.access.pipeline_ids,
    )
    world.connections[_key(action.connection)] = replace(connection, pipelines=merged)
