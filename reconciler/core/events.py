"""Drift events from Azure, Azure DevOps and Entra, parsed into typed values (docs/events.md).

Three sources, each in its documented shape, decoded from JSON before they get here
(reconciler/app/events.py checks size, depth and strictness first):

- **Event Grid, Azure subscription events** (Event Grid schema or CloudEvents 1.0):
  `Microsoft.Resources.ResourceWriteSuccess` / `ResourceDeleteSuccess` whose `data.operationName` is
  `Microsoft.Authorization/roleAssignments/write|delete`, with `resourceUri` (the assignment's id)
  and `claims` (who did it);
- **the Azure DevOps audit stream** through Event Grid: `data` is an audit log entry whose
  `actionId` is `Library.ServiceConnection{Created,Modified,Deleted,PropertyChanged}` and whose
  `data.ConnectionId` names the connection, with `actorUserId` / `actorUPN` (who did it);
- **Entra audit logs** through a diagnostic setting to Event Hubs: `{"records": [...]}`, category
  `AuditLogs`; "Update application" with `FederatedIdentityCredentials` among the modified
  properties, application and service principal deletes; `initiatedBy` says who.

Each event becomes a `DriftEvent` with exactly one `IndexKey` (the object it is about), so mapping
it to applications costs one indexed read. Anything else (other operations, other resource
types, failed operations) is `None`: not about what the reconciler manages. A value that claims
to be one of these events but is malformed raises EventInvalid naming the field.

Pure: no I/O, no clock, no SDK.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from reconciler.core.identifiers import ArmScope, Guid, IdentifierError, RequestId
from reconciler.core.model import Application, FederationConfig, ObservedState, role_assignment_name

MAX_EVENTS_PER_MESSAGE = 1_000  # Event Grid sends one event per message; Event Hubs batches records
MAX_ACTOR_CHARS = 256
ROLE_ASSIGNMENT_OPERATIONS = {
    "microsoft.authorization/roleassignments/write": "write",
    "microsoft.authorization/roleassignments/delete": "delete",
}
ARM_EVENT_TYPES = {"Microsoft.Resources.ResourceWriteSuccess", "Microsoft.Resources.ResourceDeleteSuccess"}
ADO_ACTION_PREFIX = "Library.ServiceConnection"
ADO_ACTIONS = {f"{ADO_ACTION_PREFIX}{s}" for s in ("Created", "Modified", "Deleted", "PropertyChanged")}
ENTRA_ACTIVITIES = {
    "Update application",
    "Delete application",
    "Hard Delete application",
    "Remove service principal",
    "Hard delete service principal",
}
FIC_PROPERTY = "FederatedIdentityCredentials"
OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
UPN_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
_ASSIGNMENT_SUFFIX = re.compile(r"/providers/microsoft\.authorization/roleassignments/([^/]+)$", re.I)
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)?")


class EventInvalid(ValueError):
    """An event of a known kind whose fields are malformed; the message names the field."""


class Source(StrEnum):
    ARM = "arm-event"  # Event Grid, Azure subscription events
    ADO = "ado-audit"  # the Azure DevOps audit stream
    ENTRA = "entra-audit"  # Entra audit logs through Event Hubs


IndexKind = Literal["principal", "application", "connection", "roleAssignment"]


@dataclass(frozen=True, order=True)
class IndexKey:
    """An object the reconciler manages, as events name it: what the index maps to applications."""

    kind: IndexKind
    value: str  # canonical: a lower-case GUID, or a role assignment's id (canonical scope + lower-case name)

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class Actor:
    """Who made the change, as the event says it (any part may be unknown)."""

    object_id: str | None = None  # Entra object id of the user or service principal
    app_id: str | None = None  # client id, when an application did it
    name: str = ""  # a UPN or display name, for people

    def __str__(self) -> str:
        parts = [self.name] if self.name else []
        if self.object_id:
            parts.append(f"objectId {self.object_id}")
        if self.app_id:
            parts.append(f"appId {self.app_id}")
        return ", ".join(parts) or "unknown"


@dataclass(frozen=True)
class DriftEvent:
    source: Source
    event_id: str  # the source's id of the event (a RequestId-shaped token)
    occurred_at: str  # ISO 8601, as the source says it
    operation: str  # roleAssignments/delete, Library.ServiceConnectionDeleted, Update application ...
    key: IndexKey
    actor: Actor


@dataclass(frozen=True)
class OwnIdentity:
    """The reconciler's own identities (object ids, client ids, ADO identity ids): its own writes
    come back as events, and reacting to them would loop."""

    ids: frozenset[str]

    @classmethod
    def of(cls, ids: Iterable[str]) -> OwnIdentity:
        return cls(frozenset(str(Guid(i, "reconciler identity")) for i in ids))

    def made(self, event: DriftEvent) -> bool:
        return bool({event.actor.object_id, event.actor.app_id} & self.ids)


@dataclass(frozen=True)
class EventTrigger:
    """What a reconcile message caused by events carries: the first event of a coalesced burst."""

    source: Source
    event_id: str
    actor: str
    detected_at: str
    pending: str  # the coalescing row the reconcile clears before it observes (state/coalesce.py)


# ---------------------------------------------------------------------------- Event Grid


def parse_event_grid(value: object) -> list[DriftEvent]:
    """The drift events in one Event Grid delivery: an event, or an array of them (either schema)."""
    events = value if isinstance(value, list) else [value]
    if len(events) > MAX_EVENTS_PER_MESSAGE:
        raise EventInvalid(f"more than {MAX_EVENTS_PER_MESSAGE} events in one message")
    found: list[DriftEvent] = []
    for index, event in enumerate(events):
        parsed = _event_grid_event(_object(event, f"event {index}"), f"event {index}")
        if parsed is not None:
            found.append(parsed)
    return found


def _event_grid_event(event: Mapping[str, Any], where: str) -> DriftEvent | None:
    # CloudEvents 1.0 says `type` / `time`; the Event Grid schema `eventType` / `eventTime`.
    cloud = "specversion" in event
    event_type = _text(event, "type" if cloud else "eventType", where)
    event_id = _token(event, "id", where)
    occurred = _timestamp(event, "time" if cloud else "eventTime", where)
    data = _object(event.get("data"), f"{where}.data")
    if event_type in ARM_EVENT_TYPES:
        return _role_assignment_event(data, event_id, occurred, f"{where}.data")
    if isinstance(data.get("actionId"), str) and data["actionId"].startswith(ADO_ACTION_PREFIX):
        return _ado_audit_event(data, event_id, f"{where}.data")
    return None


def _role_assignment_event(
    data: Mapping[str, Any], event_id: str, occurred: str, where: str
) -> DriftEvent | None:
    operation = ROLE_ASSIGNMENT_OPERATIONS.get(str(data.get("operationName", "")).lower())
    if operation is None or str(data.get("status", "Succeeded")).lower() != "succeeded":
        return None
    uri = _text(data, "resourceUri", where)
    match = _ASSIGNMENT_SUFFIX.search(uri)
    if match is None:
        raise EventInvalid(f"{where}.resourceUri: expected a role assignment id, got {uri[:120]!r}")
    try:
        scope = ArmScope.parse(uri[: match.start()], f"{where}.resourceUri")
    except IdentifierError:
        return None  # a scope no config can name (the root, a management group, path syntax)
    if not Guid.is_valid(match.group(1)):
        return None  # ARM names role assignments by GUID: not one the reconciler can have
    claims = data.get("claims")
    actor = _claims_actor(claims if isinstance(claims, Mapping) else {}, f"{where}.claims")
    key = IndexKey("roleAssignment", assignment_key(str(scope), match.group(1)))
    return DriftEvent(Source.ARM, event_id, occurred, f"roleAssignments/{operation}", key, actor)


def assignment_key(scope: str, name: str) -> str:
    """A role assignment's id as the index keys it: the canonical scope and the lower-case name."""
    return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name.lower()}"


def _claims_actor(claims: Mapping[str, Any], where: str) -> Actor:
    name = claims.get(UPN_CLAIM) or claims.get("name") or ""
    return Actor(
        object_id=_optional_guid(claims, OID_CLAIM, where) or _optional_guid(claims, "oid", where),
        app_id=_optional_guid(claims, "appid", where),
        name=_short(name),
    )


def _ado_audit_event(entry: Mapping[str, Any], event_id: str, where: str) -> DriftEvent | None:
    action = str(entry["actionId"])
    if action not in ADO_ACTIONS:
        return None
    details = _object(entry.get("data"), f"{where}.data")
    connection = _guid(details, "ConnectionId", f"{where}.data")
    actor = Actor(
        object_id=_optional_guid(entry, "actorUserId", where),
        app_id=_optional_guid(entry, "actorClientId", where),
        name=_short(entry.get("actorUPN") or entry.get("actorDisplayName") or ""),
    )
    # The audit entry's own id is the event's: the Event Grid envelope's may differ per delivery.
    entry_id = _token(entry, "id", where) if "id" in entry else event_id
    return DriftEvent(
        Source.ADO,
        entry_id,
        _timestamp(entry, "timestamp", where),
        action,
        IndexKey("connection", connection),
        actor,
    )


# ---------------------------------------------------------------------------- Entra audit logs


def parse_entra_records(value: object) -> list[DriftEvent]:
    """The drift events in one Event Hubs event of an Entra diagnostic setting: `{"records": [...]}`."""
    body = _object(value, "event")
    records = body.get("records")
    if not isinstance(records, list):
        raise EventInvalid("records: expected a list of audit records")
    if len(records) > MAX_EVENTS_PER_MESSAGE:
        raise EventInvalid(f"records: more than {MAX_EVENTS_PER_MESSAGE} records")
    found: list[DriftEvent] = []
    for index, record in enumerate(records):
        found.extend(_entra_record(_object(record, f"records[{index}]"), f"records[{index}]"))
    return found


def _entra_record(record: Mapping[str, Any], where: str) -> list[DriftEvent]:
    if record.get("category") != "AuditLogs":
        return []
    properties = _object(record.get("properties"), f"{where}.properties")
    activity = properties.get("activityDisplayName")
    if activity not in ENTRA_ACTIVITIES or str(properties.get("result", "success")).lower() != "success":
        return []
    event_id = _token(properties, "id", f"{where}.properties")
    occurred = _timestamp(properties, "activityDateTime", f"{where}.properties")
    actor = _initiated_by(properties.get("initiatedBy"), f"{where}.properties.initiatedBy")
    targets = properties.get("targetResources")
    if not isinstance(targets, list) or len(targets) > 50:
        raise EventInvalid(f"{where}.properties.targetResources: expected a list of up to 50 resources")
    found = []
    for index, target in enumerate(targets):
        key = _entra_target(str(activity), _object(target, f"{where}.targetResources[{index}]"), where)
        if key is not None:
            found.append(DriftEvent(Source.ENTRA, event_id, occurred, str(activity), key, actor))
    return found


def _entra_target(activity: str, target: Mapping[str, Any], where: str) -> IndexKey | None:
    kind = target.get("type")
    if kind not in ("Application", "ServicePrincipal"):
        return None
    if activity == "Update application" and not _changes_credentials(target):
        return None  # a display name or an owner changed: nothing the reconciler keeps
    object_id = _guid(target, "id", f"{where}.targetResources")
    return IndexKey("application" if kind == "Application" else "principal", object_id)


def _changes_credentials(target: Mapping[str, Any]) -> bool:
    """Whether FederatedIdentityCredentials is among the modified properties (Entra lists it by
    name, and again inside "Included Updated Properties")."""
    changed = target.get("modifiedProperties")
    if not isinstance(changed, list):
        return False
    for item in changed:
        if not isinstance(item, Mapping):
            continue
        if item.get("displayName") == FIC_PROPERTY or FIC_PROPERTY in str(item.get("newValue") or ""):
            return True
    return False


def _initiated_by(value: object, where: str) -> Actor:
    initiated = value if isinstance(value, Mapping) else {}
    user, app = initiated.get("user"), initiated.get("app")
    if isinstance(user, Mapping):
        return Actor(
            object_id=_optional_guid(user, "id", f"{where}.user"),
            name=_short(user.get("userPrincipalName") or user.get("displayName") or ""),
        )
    if isinstance(app, Mapping):
        return Actor(
            object_id=_optional_guid(app, "servicePrincipalId", f"{where}.app"),
            app_id=_optional_guid(app, "appId", f"{where}.app"),
            name=_short(app.get("displayName") or ""),
        )
    return Actor()


# ---------------------------------------------------------------------------- the index


def index_entries(configs: Sequence[FederationConfig], observed: ObservedState) -> dict[IndexKey, set[str]]:
    """What events about these configs' objects name, mapped to the configs' application keys:
    the application's object id, its service principal, the connection, and the role assignments
    of its grants (the deterministic name the reconciler creates, and any it adopted). Keyed by
    assignment rather than scope: a scope such as a resource group is shared by many applications,
    and an event about it would reconcile them all."""
    entries: dict[IndexKey, set[str]] = {}

    def add(key: IndexKey, app_key: str) -> None:
        entries.setdefault(key, set()).add(app_key)

    for config in configs:
        app_key = config.application.key
        connection = observed.connection(config.connection)
        if connection is not None and Guid.is_valid(connection.id):
            add(IndexKey("connection", connection.id.lower()), app_key)
        app = _observed_application(config, observed)
        if app is not None:
            add(IndexKey("application", app.object_id.lower()), app_key)
        if app is None or not app.service_principal_id:
            continue
        principal = app.service_principal_id.lower()
        add(IndexKey("principal", principal), app_key)
        wanted = {(g.scope, g.role_id.lower()) for g in config.role_grants}
        for grant in config.role_grants:
            name = role_assignment_name(grant.scope, grant.role_id, principal)
            add(IndexKey("roleAssignment", assignment_key(grant.scope, name)), app_key)
        for assignment in observed.assignments_of(app.service_principal_id):
            if (assignment.scope, assignment.role_id.lower()) in wanted:
                add(IndexKey("roleAssignment", assignment_key(assignment.scope, assignment.name)), app_key)
    return entries


def _observed_application(config: FederationConfig, observed: ObservedState) -> Application | None:
    ref = config.application
    if ref.app_id is not None:
        return observed.application_by_app_id(ref.app_id)
    named = observed.applications_named(str(ref.display_name))
    return named[0] if len(named) == 1 else None


def pending_key(app_key: str, epoch: int) -> str:
    """The coalescing row of an application in one epoch (state/coalesce.py): a table-safe key."""
    return f"{epoch}-{hashlib.sha256(app_key.encode()).hexdigest()[:40]}"


# ---------------------------------------------------------------------------- fields


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise EventInvalid(f"{where}: expected a JSON object")
    return value


def _text(value: Mapping[str, Any], key: str, where: str) -> str:
    found = value.get(key)
    if not isinstance(found, str) or not found or len(found) > 2048:
        raise EventInvalid(f"{where}.{key}: expected a string of 1-2048 characters")
    return found


def _token(value: Mapping[str, Any], key: str, where: str) -> str:
    found = value.get(key)
    if not RequestId.is_valid(found):
        raise EventInvalid(f"{where}.{key}: expected {RequestId.what}")
    return str(found)


def _timestamp(value: Mapping[str, Any], key: str, where: str) -> str:
    found = value.get(key)
    if not isinstance(found, str) or not _TIMESTAMP.fullmatch(found):
        raise EventInvalid(f"{where}.{key}: expected an ISO 8601 time like 2026-01-01T00:00:00Z")
    return found


def _guid(value: Mapping[str, Any], key: str, where: str) -> str:
    try:
        return str(Guid(value.get(key), f"{where}.{key}")).lower()
    except IdentifierError as error:
        raise EventInvalid(str(error)) from None


def _optional_guid(value: Mapping[str, Any], key: str, where: str) -> str | None:
    return _guid(value, key, where) if value.get(key) not in (None, "") else None


def _short(value: object) -> str:
    text = value if isinstance(value, str) else ""
    return "".join(c for c in text[:MAX_ACTOR_CHARS] if c.isprintable())
