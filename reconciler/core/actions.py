"""What a plan asks to change: one value type per kind of target, each saying what, where and why.

Some values are only known once an earlier action of the same plan has run: the id of
an application the plan creates, or the issuer and subject ADO generates for a
connection the plan creates. Those fields are None here and the action says where the
value comes from (`AppTarget`, `from_connection`); the engine fills them in from the
results of the earlier actions. A connection the plan converts or moves to Entra's issuer
is the exception: ADO requires the trust first, so the plan computes the values it will
have (`ConnectionAction.expects`) and the engine checks them against what ADO returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from reconciler.core.issuers import Trust
from reconciler.core.model import ConnectionKey, PipelineAccess


class ActionKind(StrEnum):
    CREATE_APPLICATION = "create-application"
    ADD_APPLICATION_OWNER = "add-application-owner"  # a person's run: the deployed identity, see PersonRun
    CREATE_SERVICE_PRINCIPAL = "create-service-principal"
    CREATE_CONNECTION = "create-connection"
    UPDATE_CONNECTION = "update-connection"
    CONVERT_CONNECTION = "convert-connection"
    MIGRATE_CONNECTION_ISSUER = "migrate-connection-issuer"
    CREATE_CREDENTIAL = "create-credential"
    UPDATE_CREDENTIAL = "update-credential"
    DELETE_CREDENTIAL = "delete-credential"
    CREATE_ROLE_ASSIGNMENT = "create-role-assignment"
    DELETE_ROLE_ASSIGNMENT = "delete-role-assignment"
    AUTHORIZE_PIPELINES = "authorize-pipelines"
    DELETE_CONNECTION = "delete-connection"


class Phase(IntEnum):
    """Dependency order: each phase may use what the earlier ones created."""

    APPLICATION = 1
    PRINCIPAL = 2
    CONNECTION = 3  # ADO generates the issuer and subject a new connection's credential needs
    CREDENTIAL = 4
    CONVERSION = 5  # ADO converts or moves a connection only once its application trusts the new values
    ROLE_ASSIGNMENT = 6  # needs the principal
    PIPELINES = 7  # needs the connection id
    CLEANUP = 8  # includes the credential a moved connection no longer uses


PHASE_OF: dict[ActionKind, Phase] = {
    ActionKind.CREATE_APPLICATION: Phase.APPLICATION,
    ActionKind.ADD_APPLICATION_OWNER: Phase.APPLICATION,  # planned right after the create
    ActionKind.CREATE_SERVICE_PRINCIPAL: Phase.PRINCIPAL,
    ActionKind.CREATE_CONNECTION: Phase.CONNECTION,
    ActionKind.UPDATE_CONNECTION: Phase.CONNECTION,
    ActionKind.CONVERT_CONNECTION: Phase.CONVERSION,
    ActionKind.MIGRATE_CONNECTION_ISSUER: Phase.CONVERSION,
    ActionKind.CREATE_CREDENTIAL: Phase.CREDENTIAL,
    ActionKind.UPDATE_CREDENTIAL: Phase.CREDENTIAL,
    ActionKind.DELETE_CREDENTIAL: Phase.CREDENTIAL,
    ActionKind.CREATE_ROLE_ASSIGNMENT: Phase.ROLE_ASSIGNMENT,
    ActionKind.DELETE_ROLE_ASSIGNMENT: Phase.ROLE_ASSIGNMENT,
    ActionKind.AUTHORIZE_PIPELINES: Phase.PIPELINES,
    ActionKind.DELETE_CONNECTION: Phase.CLEANUP,
}


class DriftKind(StrEnum):
    MISSING = "missing"
    WRONG_VALUE = "wrong-value"
    SECRET_SCHEME = "secret-based-scheme"
    LEGACY_ISSUER = "legacy-issuer"
    NOT_WANTED = "no-longer-wanted"
    RETIRED = "config-retired"
    FOLLOWS_CONNECTION = "follows-connection-change"


@dataclass(frozen=True)
class Drift:
    """Why an action is needed."""

    kind: DriftKind
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True)
class AppTarget:
    """An application: by client id when it exists, else the one this plan creates under display_name."""

    app_id: str | None
    display_name: str

    def __str__(self) -> str:
        return f"app {self.app_id}" if self.app_id else f"new app {self.display_name!r}"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    config_ids: tuple[str, ...]
    drift: Drift

    @property
    def phase(self) -> Phase:
        return PHASE_OF[self.kind]

    @property
    def target(self) -> str:
        raise NotImplementedError

    @property
    def changes(self) -> dict[str, str]:
        """The values the action writes, for people reading the plan."""
        return {}


@dataclass(frozen=True)
class ApplicationAction(Action):
    app: AppTarget
    tags: tuple[str, ...] = ()  # for an application the plan creates: ours, and the tenant's claim
    owner: str | None = None  # add-application-owner: the object id of the principal to add

    @property
    def target(self) -> str:
        return str(self.app)

    @property
    def changes(self) -> dict[str, str]:
        return {"owner": self.owner} if self.owner else {}


@dataclass(frozen=True)
class ConnectionAction(Action):
    connection: ConnectionKey
    connection_id: str | None  # None: the connection does not exist yet
    app: AppTarget
    tenant_id: str
    subscription_id: str
    subscription_name: str
    description: str  # the ownership marker, for connections the reconciler creates
    # A conversion or issuer move: the issuer and subject the connection will have, which its
    # application trusts before ADO is asked (the engine checks them against ADO's answer).
    expects: Trust | None = None

    @property
    def target(self) -> str:
        return f"service connection {self.connection}"

    @property
    def changes(self) -> dict[str, str]:
        if self.kind is ActionKind.DELETE_CONNECTION:
            return {}
        changes = {
            "scheme": "WorkloadIdentityFederation",
            "serviceprincipalid": self.app.app_id or f"<{self.app}>",
            "tenantid": self.tenant_id,
            "subscriptionId": self.subscription_id,
        }
        if self.expects is not None:
            changes.update(issuer=self.expects.issuer, subject=self.expects.subject)
        return changes


@dataclass(frozen=True)
class CredentialAction(Action):
    app: AppTarget
    name: str
    credential_id: str | None
    issuer: str | None  # None: as the connection returns it (see from_connection)
    subject: str | None
    from_connection: ConnectionKey | None
    description: str
    # A delete of the credential that trusted the issuer a connection moves off: after the move.
    superseded: bool = False

    @property
    def phase(self) -> Phase:
        return Phase.CLEANUP if self.superseded else PHASE_OF[self.kind]

    @property
    def target(self) -> str:
        return f"federated credential {self.name!r} on {self.app}"

    @property
    def changes(self) -> dict[str, str]:
        if self.kind is ActionKind.DELETE_CREDENTIAL:
            return {}
        pending = f"<from service connection {self.from_connection}>"
        return {"issuer": self.issuer or pending, "subject": self.subject or pending}


@dataclass(frozen=True)
class RoleAssignmentAction(Action):
    scope: str
    role_id: str
    role_name: str
    principal_id: str | None  # None: the principal of `app`, created by this plan
    app: AppTarget
    assignment_id: str | None  # for deletes
    name: str | None  # deterministic name, when the principal is known
    description: str

    @property
    def target(self) -> str:
        return f"role assignment {self.role_name or self.role_id} on {self.scope} for {self.app}"

    @property
    def changes(self) -> dict[str, str]:
        if self.kind is ActionKind.DELETE_ROLE_ASSIGNMENT:
            return {}
        return {
            "principalType": "ServicePrincipal",
            "name": self.name or "<derived once the principal exists>",
        }


@dataclass(frozen=True)
class PipelineAction(Action):
    connection: ConnectionKey
    connection_id: str | None  # None: created by this plan
    access: PipelineAccess

    @property
    def target(self) -> str:
        return f"pipeline permissions of {self.connection}"

    @property
    def changes(self) -> dict[str, str]:
        if self.access.all_pipelines:
            return {"authorize": "all pipelines"}
        return {"authorize": ", ".join(f"pipeline {p}" for p in sorted(self.access.pipeline_ids))}
