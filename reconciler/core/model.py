"""The desired state (what a config asks for) and the observed state (what the clouds hold).

Plain frozen value types: no SDK types, no I/O. Identifiers that Azure compares
case-insensitively (GUIDs, ARM scopes) are stored in lower case so that equality here
means equality there.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TypeVar

from reconciler.core.identifiers import ArmScope, ConfigId, CredentialName, canonical_scope, spelled_scope

_T = TypeVar("_T")

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
MAX_CREDENTIALS_PER_APP = 20  # Entra's limit of federated identity credentials per application
WORKLOAD_IDENTITY_SCHEME = "WorkloadIdentityFederation"
LEGACY_ISSUER_PREFIX = "https://vstoken."  # ADO's own issuer, retiring; Entra's is login.microsoftonline.com

# Everything the reconciler creates says so in its description (credentials, role
# assignments, service connections) or tags (applications); only marked objects are
# ever pruned.
MARKER_PREFIX = "managed-by=wif-reconciler;config="
APPLICATION_TAG = "wif-reconciler:managed"

# Role-assignment names must be unique across all subscriptions and stable across runs,
# so they are derived from what the assignment grants (see role_assignment_name).
_ROLE_ASSIGNMENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:wif-reconciler:role-assignment")


class PruneMode(StrEnum):
    MANAGED = "managed"  # remove what the reconciler created and no config wants any more
    NONE = "none"  # never remove anything


@dataclass(frozen=True)
class RoleGrant:
    """One Azure role on one scope. `role_id` is the role definition GUID."""

    role_id: str
    scope: str  # canonical text of a parsed ArmScope (see reconciler/core/identifiers.py)
    role_name: str = ""  # as the config wrote it, for messages
    # The scope in the author's case (ARM keeps names as written), for documents people read
    # back; never compared: `scope` is what the reconciler compares.
    written_scope: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        # A grant can only exist for a scope that parses: no '..', no encodings, one spelling.
        object.__setattr__(self, "written_scope", spelled_scope(self.written_scope or self.scope))
        object.__setattr__(self, "scope", str(ArmScope.parse(self.scope)))

    @property
    def arm_scope(self) -> ArmScope:
        return ArmScope.parse(self.scope)

    @property
    def label(self) -> str:
        return f"{self.role_name or self.role_id} on {self.scope}"


@dataclass(frozen=True)
class ApplicationRef:
    """Which Entra application the connection signs in as.

    Either an existing app by client id (adopted), or a display name the reconciler
    creates the app under (create=True).
    """

    app_id: str | None = None
    display_name: str | None = None
    create: bool = False

    @property
    def key(self) -> str:
        """Groups configs that share an application."""
        return f"app:{self.app_id}" if self.app_id else f"new:{self.display_name}"


@dataclass(frozen=True)
class PipelineAccess:
    """Which pipelines may use the connection: all of them, or the listed ids."""

    all_pipelines: bool = False
    pipeline_ids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class ConnectionKey:
    """Service connection names are unique within an ADO project."""

    organization: str
    project: str
    name: str

    def __str__(self) -> str:
        return f"{self.organization}/{self.project}/{self.name}"

    @property
    def folded(self) -> tuple[str, str, str]:
        """For comparisons: ADO organization, project and connection names are case-insensitive."""
        return (self.organization.lower(), self.project.lower(), self.name.lower())


@dataclass(frozen=True)
class FederationConfig:
    """One ADO service connection that signs in as one Entra app, and the roles that app holds."""

    id: str
    organization: str
    project: str
    tenant_id: str
    connection_name: str
    subscription_id: str
    subscription_name: str
    pipelines: PipelineAccess
    application: ApplicationRef
    role_grants: tuple[RoleGrant, ...]
    credential_name: str
    prune: PruneMode = PruneMode.MANAGED

    @property
    def connection(self) -> ConnectionKey:
        return ConnectionKey(self.organization, self.project, self.connection_name)

    @property
    def marker(self) -> str:
        return marker_for(self.id)


# ---------------------------------------------------------------------------- observed


@dataclass(frozen=True)
class FederatedCredential:
    id: str
    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...] = (TOKEN_EXCHANGE_AUDIENCE,)
    description: str = ""


@dataclass(frozen=True)
class Application:
    object_id: str
    app_id: str
    display_name: str
    credentials: tuple[FederatedCredential, ...] = ()
    service_principal_id: str | None = None  # None: the app has no service principal yet
    tags: frozenset[str] = frozenset()

    @property
    def created_by_reconciler(self) -> bool:
        return APPLICATION_TAG in self.tags


@dataclass(frozen=True)
class RoleAssignment:
    id: str  # full ARM id
    name: str
    scope: str  # canonical when it parses (then equal to a grant's scope), else lower case
    role_id: str  # role definition GUID
    principal_id: str
    description: str = ""
    # An ABAC condition (`properties.condition`): the role applies only where it holds, so the
    # assignment grants less than the role does. "" for none. ARM keeps one assignment per scope,
    # role and principal whatever the condition (docs/simulator.md, "Role assignment conditions").
    condition: str = ""
    condition_version: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", canonical_scope(self.scope))

    @property
    def conditioned(self) -> bool:
        return bool(self.condition.strip())


# operationStatus states of an operation still running (ADO documents no list of states).
_IN_PROGRESS_STATES = frozenset({"inprogress", "pending", "initializing"})


@dataclass(frozen=True)
class ServiceConnection:
    id: str
    organization: str
    project: str
    name: str
    scheme: str
    app_id: str | None = None  # authorization.parameters.serviceprincipalid
    tenant_id: str | None = None
    subscription_id: str | None = None
    subscription_name: str | None = None
    issuer: str | None = None  # generated by ADO for workload identity federation
    subject: str | None = None
    description: str = ""
    # None: not observed in this pass (pipeline permissions have no bulk read).
    pipelines: PipelineAccess | None = None
    # ADO's `isReady` (absent: ready) and `operationStatus` {state, statusMessage}: a connection whose
    # creation or update did not complete is not ready ("failed" to the listing's `includeFailed`).
    ready: bool = True
    operation_state: str = ""
    status_message: str = ""

    @property
    def key(self) -> ConnectionKey:
        return ConnectionKey(self.organization, self.project, self.name)

    @property
    def failed(self) -> bool:
        """Not ready and not on its way: ADO says the operation failed (state `Failed`), or says
        nothing of one in progress."""
        return not self.ready and self.operation_state.lower() not in _IN_PROGRESS_STATES

    @property
    def readiness(self) -> str:
        """What ADO says of a connection that is not ready, for people."""
        state, message = self.operation_state or "unknown", self.status_message or "no message"
        return f"Azure DevOps reports it not ready (operation state {state}: {message})"

    @property
    def uses_legacy_issuer(self) -> bool:
        return bool(self.issuer) and str(self.issuer).startswith(LEGACY_ISSUER_PREFIX)


@dataclass(frozen=True)
class CustomRole:
    """A role definition read from ARM, for roles the built-in catalogue does not know."""

    id: str
    name: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ownership:
    """What the reconciler's own identity owns in Entra: under Application.ReadWrite.OwnedBy it
    may change only these applications (Graph refuses writes to any other with 403)."""

    principal_id: str  # the object id of the reconciler's service principal
    application_ids: frozenset[str]  # object ids of the applications it owns
    # Client id -> display name of the same applications (the orphan scan reads those no config
    # names: an adopted application keeps what the reconciler put on it after its config is gone).
    client_ids: Mapping[str, str] = field(default_factory=dict, compare=False)

    def owns(self, app: Application) -> bool:
        return app.object_id in self.application_ids


# The CLI's environment variable (not an app setting: the Function App runs as the identity)
# that gives a person's run the deployed identity's object id (see PersonRun).
DEPLOYED_IDENTITY_VARIABLE = "WIF_IDENTITY_PRINCIPAL_ID"


@dataclass(frozen=True)
class PersonRun:
    """A person is signed in (the CLI after `az login`). Graph makes whoever creates an
    application its owner, so an application a person creates is not the deployed identity's,
    which holds only Application.ReadWrite.OwnedBy: the plan adds that identity as owner of each
    application the reconciler created that it does not own, or, when its id is not known, refuses
    to create one. `deployed` is what that identity owns (its object id from
    WIF_IDENTITY_PRINCIPAL_ID), read only when a config names its application by display name;
    None when the setting is unset, or when no config could create an application."""

    deployed: Ownership | None = None


@dataclass(frozen=True)
class ObservedState:
    """What the clouds hold for the applications, principals and connections of a batch."""

    applications: tuple[Application, ...] = ()
    role_assignments: tuple[RoleAssignment, ...] = ()
    connections: tuple[ServiceConnection, ...] = ()
    custom_roles: tuple[CustomRole, ...] = ()
    # ADO organization name (lower case) -> its id, read for organizations whose connections are
    # to be converted or moved: the subject on Entra's issuer carries it.
    organization_ids: Mapping[str, str] = field(default_factory=dict)
    # None: not read, because no config of the batch adopts an existing application (the
    # applications the reconciler creates are its own), or because a person is signed in (the CLI
    # with `az login`): a person's writes are decided by their own directory roles, not by what the
    # deployed identity owns. The owner rule is then not applied.
    ownership: Ownership | None = None
    # Set when a person is signed in: see PersonRun. None for the deployed identity's runs.
    person: PersonRun | None = None
    # The tenant the reconciler signs in to (its Graph token's `tid`), lower case: the one where it
    # writes applications, credentials and role assignments. A config naming another tenant is
    # blocked (its connection could never sign in to what is set up here). None: not known (an
    # unreadable token, or an offline snapshot), and the rule is not applied.
    tenant_id: str | None = None

    def organization_id(self, organization: str) -> str | None:
        return self.organization_ids.get(organization.lower())

    def application_by_app_id(self, app_id: str) -> Application | None:
        return self._apps_by_app_id.get(app_id)

    def applications_named(self, display_name: str) -> tuple[Application, ...]:
        return self._apps_by_name.get(display_name, ())

    def connection(self, key: ConnectionKey) -> ServiceConnection | None:
        return self._connections_by_key.get(key.folded)

    def assignments_of(self, principal_id: str) -> tuple[RoleAssignment, ...]:
        return self._assignments_by_principal.get(principal_id, ())

    # Indexes, built on first use: a batch holds thousands of objects and the planner
    # looks each one up several times.
    @cached_property
    def _apps_by_app_id(self) -> dict[str, Application]:
        return {app.app_id: app for app in self.applications}

    @cached_property
    def _apps_by_name(self) -> dict[str, tuple[Application, ...]]:
        return _group(self.applications, lambda app: app.display_name)

    @cached_property
    def _connections_by_key(self) -> dict[tuple[str, str, str], ServiceConnection]:
        return {c.key.folded: c for c in self.connections}

    @cached_property
    def _assignments_by_principal(self) -> dict[str, tuple[RoleAssignment, ...]]:
        return _group(self.role_assignments, lambda ra: ra.principal_id)


def _group(items: Iterable[_T], key: Callable[[_T], str]) -> dict[str, tuple[_T, ...]]:
    groups: dict[str, list[_T]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return {k: tuple(v) for k, v in groups.items()}


# ---------------------------------------------------------------------------- derivations


def marker_for(config_id: str) -> str:
    return f"{MARKER_PREFIX}{config_id}"


def owner_of(description: str | None) -> str | None:
    """The config id when the description is exactly a reconciler marker, else None (not ours).

    A marker is the whole description and names one valid config id: a description that merely
    starts with or contains one was not written by the reconciler."""
    text = description or ""
    if not text.startswith(MARKER_PREFIX):
        return None
    config_id = text[len(MARKER_PREFIX) :]
    return config_id if ConfigId.is_valid(config_id) else None


def role_assignment_name(scope: str, role_id: str, principal_id: str) -> str:
    """A deterministic assignment name: the same grant always gets the same name."""
    key = f"{scope.lower()}|{role_id.lower()}|{principal_id.lower()}"
    return str(uuid.uuid5(_ROLE_ASSIGNMENT_NAMESPACE, key))


def credential_name_for(config_id: str) -> str:
    """The default credential name for a config: its id in the characters Entra allows."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", config_id.replace("/", "--")).strip("-_")
    if len(name) > 120:
        digest = hashlib.sha256(config_id.encode()).hexdigest()[:8]
        name = f"{name[:111].rstrip('-_')}-{digest}"
    return str(CredentialName(name if len(name) >= 3 else f"wif-{name}", "serviceConnection.credentialName"))
