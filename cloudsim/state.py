"""The simulator's one in-memory model of a tenant, its subscriptions and its ADO organizations.

All three APIs read and write this model, so a FIC written through Graph, a role
assignment written through ARM and a connection written through ADO are one
consistent world. Times are wall-clock epoch seconds (`time.time()`): they feed the
replication delay and read-after-write lag, and they round-trip through JSON.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Self

from cloudsim.lookups import TrackedList

# Azure DevOps' own Entra application: the audience of ADO tokens and part of the
# Entra-issuer subject of every service connection.
ADO_RESOURCE_APP_ID = "499b84ac-1321-427f-aa17-267ca6975798"

JsonObject = dict[str, Any]


def new_id() -> str:
    return str(uuid.uuid4())


def iso(epoch: float) -> str:
    """An epoch time as the ISO 8601 UTC string the Azure APIs return."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Record:
    """JSON round-trip for the dataclasses below (unknown keys are ignored)."""

    def to_json(self) -> JsonObject:
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_json(cls, raw: JsonObject) -> Self:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{key: value for key, value in raw.items() if key in known})


@dataclass
class FederatedCredential(_Record):
    id: str
    name: str
    issuer: str
    subject: str
    audiences: list[str]
    description: str | None = None
    created_at: float = field(default_factory=time.time)


@dataclass
class Application(_Record):
    id: str  # object id
    app_id: str  # client id
    display_name: str
    created_at: float = field(default_factory=time.time)
    federated_credentials: list[FederatedCredential] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    unique_name: str | None = None  # Entra's optional alternate key, for idempotent upserts
    # Object ids of its owners. Under Application.ReadWrite.OwnedBy the caller may change only
    # applications it owns; it owns those it creates.
    owners: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: JsonObject) -> Self:
        app = super().from_json({**raw, "federated_credentials": []})
        app.federated_credentials = [
            FederatedCredential.from_json(fic) for fic in raw.get("federated_credentials", [])
        ]
        return app


@dataclass
class ServicePrincipal(_Record):
    id: str  # object id: what role assignments name as principalId
    app_id: str
    display_name: str
    created_at: float = field(default_factory=time.time)
    owners: list[str] = field(default_factory=list)  # object ids, as for applications


@dataclass
class RoleDefinition(_Record):
    id: str  # GUID
    role_name: str
    actions: list[str] = field(default_factory=list)
    not_actions: list[str] = field(default_factory=list)
    data_actions: list[str] = field(default_factory=list)
    description: str = ""
    role_type: str = "BuiltInRole"
    # Where the role can be assigned, and so where its definition can be read: built-in roles
    # everywhere ("/"), a custom role only at and below the scopes its author listed.
    assignable_scopes: list[str] = field(default_factory=lambda: ["/"])

    def readable_at(self, scope: str) -> bool:
        wanted = scope.rstrip("/").lower() + "/"
        return any(wanted.startswith(s.rstrip("/").lower() + "/") for s in self.assignable_scopes)


@dataclass
class RoleAssignment(_Record):
    name: str  # GUID
    scope: str
    role_definition_guid: str
    principal_id: str
    principal_type: str = "User"
    description: str | None = None
    condition: str | None = None
    condition_version: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @property
    def id(self) -> str:
        # At the tenant root (scope `/`) the id is `/providers/Microsoft.Authorization/...`.
        return f"{self.scope.rstrip('/')}/providers/Microsoft.Authorization/roleAssignments/{self.name}"


@dataclass
class Project(_Record):
    id: str
    name: str
    description: str = ""
    # Object ids of the identities holding the Endpoint Administrator role on the project's
    # service connections (Administer and Create, among others).
    endpoint_administrators: list[str] = field(default_factory=list)


@dataclass
class ProjectReference(_Record):
    project_id: str
    name: str  # the connection's name in that project
    description: str = ""


READY_STATUS = {"state": "Ready", "statusMessage": ""}


@dataclass
class ServiceEndpoint(_Record):
    """An ADO service connection; `issuer_format` picks how its WIF issuer/subject look."""

    id: str
    name: str
    type: str
    url: str
    scheme: str
    parameters: dict[str, str]  # authorization.parameters as the client sent them (secrets included)
    data: dict[str, str]
    project_refs: list[ProjectReference]
    description: str = ""
    is_ready: bool = True
    # operationStatus: ADO's JObject {state, statusMessage}, "Error message during creation/deletion of
    # endpoint" (serviceEndpoint 7.1 spec); a failed operation leaves the endpoint not ready.
    operation_status: dict[str, str] = field(default_factory=lambda: dict(READY_STATUS))
    issuer_format: str = "entra"  # "entra" (current) or "vstoken" (legacy ADO issuer)
    owner: str = "library"
    created_at: float = field(default_factory=time.time)
    pipeline_permissions: dict[str, Any] = field(
        default_factory=lambda: {"allPipelines": None, "pipelines": []}
    )

    @classmethod
    def from_json(cls, raw: JsonObject) -> Self:
        endpoint = super().from_json({**raw, "project_refs": []})
        endpoint.project_refs = [ProjectReference.from_json(ref) for ref in raw.get("project_refs", [])]
        return endpoint


@dataclass
class Organization(_Record):
    name: str
    id: str  # the organization (collection) id that vstoken issuers and Entra subjects carry
    projects: list[Project] = field(default_factory=list)
    endpoints: list[ServiceEndpoint] = field(default_factory=list)
    # Object ids of the Entra identities added to the organization (Organization settings > Users);
    # it refuses every other caller with 401.
    members: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: JsonObject) -> Self:
        org = super().from_json({**raw, "projects": [], "endpoints": []})
        org.projects = [Project.from_json(p) for p in raw.get("projects", [])]
        org.endpoints = [ServiceEndpoint.from_json(e) for e in raw.get("endpoints", [])]
        return org

    def project(self, id_or_name: str) -> Project | None:
        key = id_or_name.lower()
        return next((p for p in self.projects if key in (p.id.lower(), p.name.lower())), None)

    def endpoint(self, endpoint_id: str) -> ServiceEndpoint | None:
        key = endpoint_id.lower()
        return next((e for e in self.endpoints if e.id.lower() == key), None)


# What infra/app/events-topic-subscription.bicep creates: role-assignment writes and deletes only.
DRIFT_EVENT_TYPES = ["Microsoft.Resources.ResourceWriteSuccess", "Microsoft.Resources.ResourceDeleteSuccess"]
DRIFT_OPERATIONS = [
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Authorization/roleAssignments/delete",
]


@dataclass
class EventSubscription(_Record):
    """An Event Grid event subscription of a system topic, delivering to a Service Bus queue with the
    topic's identity (deliveryWithResourceIdentity), filtered by event type and data.operationName."""

    name: str
    queue_id: str  # the destination queue's resource id
    included_event_types: list[str] = field(default_factory=lambda: list(DRIFT_EVENT_TYPES))
    operation_names: list[str] = field(default_factory=lambda: list(DRIFT_OPERATIONS))


@dataclass
class SystemTopic(_Record):
    """An Event Grid system topic; `Microsoft.Resources.Subscriptions` ones have a subscription as source."""

    name: str
    subscription: str
    resource_group: str
    topic_type: str = "Microsoft.Resources.Subscriptions"
    event_subscriptions: list[EventSubscription] = field(default_factory=list)

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.EventGrid/systemTopics/{self.name}"
        )

    @classmethod
    def from_json(cls, raw: JsonObject) -> Self:
        topic = super().from_json({**raw, "event_subscriptions": []})
        topic.event_subscriptions = [
            EventSubscription.from_json(e) for e in raw.get("event_subscriptions", [])
        ]
        return topic


@dataclass
class Settings(_Record):
    """Behaviour knobs that are part of the world rather than faults."""

    # A principal younger than this is unknown to ARM unless principalType is sent.
    replication_delay_s: float = 0.0
    # How long two FIC writes to one application count as overlapping (Entra rejects the second).
    fic_write_hold_s: float = 0.0
    arm_page_size: int = 100
    # ADO converts a connection whose identity it did not create (creationMode Manual), or moves it
    # off its own issuer, only once the app already trusts the new issuer and subject (Azure's rule,
    # so on by default; off only for a test that needs the lenient order).
    ado_conversion_requires_fic: bool = True
    # The operation state a create, update or conversion of a service connection ends in: "Ready"
    # (isReady true), or "InProgress" / "Failed" (isReady false, answered so and kept): what ADO
    # reports while or after an operation on an endpoint does not complete (spec: `operationStatus`).
    ado_endpoint_write_state: str = "Ready"
    # ARM's RoleAssignmentExists message names the existing assignment (the troubleshooting docs);
    # off: the bare "The role assignment already exists." that earlier answers carried.
    arm_conflict_names_existing: bool = True
    # The message of Graph's 400 `Request_BadRequest` for adding an owner that is one already. Graph
    # documents no wording; this is the one `az ad app owner add` users meet. Another wording makes a
    # client show that it decides by re-reading the owners, not by the text.
    graph_duplicate_owner_message: str = (
        "One or more added object references already exist for the following modified properties: 'owners'."
    )
    # Subscriptions that exist (display names), for generated configs and demos.
    subscriptions: dict[str, str] = field(default_factory=dict)


@dataclass
class Person(_Record):
    """A user who signs in (the CLI with `az login`): the tokens the simulator issues them are
    delegated (cloudsim/tokens.py); what they may do is their own rights, not the reconciler's."""

    object_id: str = field(default_factory=new_id)
    # The delegated permissions the client they sign in with holds in Graph: the `scp` claim.
    graph_scopes: list[str] = field(default_factory=lambda: ["Application.ReadWrite.All", "User.Read"])
    # Their Entra directory roles, by name (e.g. "Cloud Application Administrator").
    directory_roles: list[str] = field(default_factory=list)


@dataclass
class World(_Record):
    tenant_id: str = field(default_factory=new_id)
    caller_object_id: str = field(default_factory=new_id)  # the managed identity the sim issues tokens to
    # Microsoft Graph application permissions (app role values) granted to each principal, by
    # object id: the `roles` claim of the Graph tokens it gets. None unless the tenant setup grants them.
    graph_app_roles: dict[str, list[str]] = field(default_factory=dict)
    applications: list[Application] = field(default_factory=list)
    service_principals: list[ServicePrincipal] = field(default_factory=list)
    role_definitions: list[RoleDefinition] = field(default_factory=list)
    role_assignments: list[RoleAssignment] = field(default_factory=list)
    organizations: list[Organization] = field(default_factory=list)
    # Event Grid system topics (drift events: infra/app/events-subscription.bicep), read-only in ARM.
    system_topics: list[SystemTopic] = field(default_factory=list)
    settings: Settings = field(default_factory=Settings)
    # People who sign in (delegated tokens from the person token route, cloudsim/msi.py).
    people: list[Person] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Counted changes let an index by client id know when to rebuild (cloudsim/lookups.py).
        self.applications = TrackedList(self.applications)
        self.service_principals = TrackedList(self.service_principals)

    def to_json(self) -> JsonObject:
        return {
            "tenant_id": self.tenant_id,
            "caller_object_id": self.caller_object_id,
            "graph_app_roles": {k: list(v) for k, v in self.graph_app_roles.items()},
            "applications": [a.to_json() for a in self.applications],
            "service_principals": [s.to_json() for s in self.service_principals],
            "role_definitions": [r.to_json() for r in self.role_definitions],
            "role_assignments": [r.to_json() for r in self.role_assignments],
            "organizations": [o.to_json() for o in self.organizations],
            "system_topics": [t.to_json() for t in self.system_topics],
            "settings": self.settings.to_json(),
            "people": [p.to_json() for p in self.people],
        }

    @classmethod
    def from_json(cls, raw: JsonObject) -> Self:
        world = cls(
            tenant_id=raw.get("tenant_id") or new_id(),
            caller_object_id=raw.get("caller_object_id") or new_id(),
            graph_app_roles={
                str(k): [str(r) for r in v] for k, v in (raw.get("graph_app_roles") or {}).items()
            },
            applications=[Application.from_json(a) for a in raw.get("applications", [])],
            service_principals=[ServicePrincipal.from_json(s) for s in raw.get("service_principals", [])],
            role_definitions=[RoleDefinition.from_json(r) for r in raw.get("role_definitions", [])],
            role_assignments=[RoleAssignment.from_json(r) for r in raw.get("role_assignments", [])],
            organizations=[Organization.from_json(o) for o in raw.get("organizations", [])],
            system_topics=[SystemTopic.from_json(t) for t in raw.get("system_topics", [])],
            settings=Settings.from_json(raw.get("settings", {})),
            people=[Person.from_json(p) for p in raw.get("people", [])],
        )
        if not world.role_definitions:
            world.role_definitions = builtin_role_definitions()
        return world

    def replace_with(self, other: World) -> None:
        """Become `other` in place: the APIs keep their reference to this object."""
        self.__dict__.update(other.__dict__)

    # Lookups used by several APIs.
    def application(self, object_id: str) -> Application | None:
        return next((a for a in self.applications if a.id == object_id), None)

    def application_by_unique_name(self, unique_name: str) -> Application | None:
        return next((a for a in self.applications if a.unique_name == unique_name), None)

    def application_by_app_id(self, app_id: str) -> Application | None:
        return next((a for a in self.applications if a.app_id == app_id), None)

    def person(self, object_id: str) -> Person | None:
        return next((p for p in self.people if p.object_id == object_id), None)

    def service_principal(self, object_id: str) -> ServicePrincipal | None:
        return next((s for s in self.service_principals if s.id == object_id), None)

    def role_definition(self, guid: str) -> RoleDefinition | None:
        key = guid.lower()
        return next((r for r in self.role_definitions if r.id == key), None)

    def organization(self, name: str) -> Organization | None:
        key = name.lower()
        return next((o for o in self.organizations if o.name.lower() == key), None)


_READ_ALL = ["*/read"]
_CONTRIBUTOR_NOT_ACTIONS = [
    "Microsoft.Authorization/*/Delete",
    "Microsoft.Authorization/*/Write",
    "Microsoft.Authorization/elevateAccess/Action",
    "Microsoft.Blueprint/blueprintAssignments/write",
    "Microsoft.Blueprint/blueprintAssignments/delete",
    "Microsoft.Compute/galleries/share/action",
]


def builtin_role_definitions() -> list[RoleDefinition]:
    """Azure's built-in roles with their fixed GUIDs (the same in every tenant).

    reconciler/core/roles.py lists some of the same roles on purpose: the simulator models
    Azure on its own and never imports the product.
    """
    return [
        RoleDefinition("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner", ["*"]),
        RoleDefinition(
            "b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor", ["*"], _CONTRIBUTOR_NOT_ACTIONS
        ),
        RoleDefinition("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader", _READ_ALL),
        RoleDefinition(
            "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
            "User Access Administrator",
            ["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"],
        ),
        RoleDefinition(
            "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
            "Role Based Access Control Administrator",
            [
                "Microsoft.Authorization/roleAssignments/write",
                "Microsoft.Authorization/roleAssignments/delete",
                "*/read",
                "Microsoft.Support/*",
            ],
        ),
        RoleDefinition("21090545-7ca7-4776-b22c-e363652d74d2", "Key Vault Reader", _READ_ALL),
        RoleDefinition(
            "4633458b-17de-408a-b874-0445c86b69e6",
            "Key Vault Secrets User",
            [],
            data_actions=["Microsoft.KeyVault/vaults/secrets/getSecret/action"],
        ),
        RoleDefinition(
            "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
            "Key Vault Secrets Officer",
            _READ_ALL,
            data_actions=["Microsoft.KeyVault/vaults/secrets/*"],
        ),
        RoleDefinition(
            "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
            "Storage Blob Data Reader",
            ["Microsoft.Storage/storageAccounts/blobServices/containers/read"],
            data_actions=["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"],
        ),
        RoleDefinition(
            "7f951dda-4ed3-4680-a7ca-43fe172d538d",
            "AcrPull",
            ["Microsoft.ContainerRegistry/registries/pull/read"],
        ),
    ]
