"""An observed-state snapshot file: what the clouds hold, as JSON, for `plan --observed`.

The shape follows the APIs' own field names (camelCase) so a snapshot can be written by
hand or dumped from a live observe. Role definition ids may be full ARM ids or GUIDs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from reconciler.core.identifiers import Guid
from reconciler.core.model import (
    TOKEN_EXCHANGE_AUDIENCE,
    Application,
    CustomRole,
    FederatedCredential,
    ObservedState,
    PipelineAccess,
    RoleAssignment,
    ServiceConnection,
)
from reconciler.documents import InputError, read_documents

_T = TypeVar("_T")


def load_snapshot(path: Path) -> ObservedState:
    documents = read_documents(path)
    if len(documents) != 1 or not isinstance(documents[0].body, Mapping):
        raise InputError(
            [f"{path}: expected one JSON object with applications, roleAssignments, serviceConnections"]
        )
    return parse_snapshot(documents[0].body, str(path))


def parse_snapshot(body: Mapping[str, Any], source: str = "snapshot") -> ObservedState:
    return ObservedState(
        applications=_each(body, "applications", _application, source),
        role_assignments=_each(body, "roleAssignments", _role_assignment, source),
        connections=_each(body, "serviceConnections", _connection, source),
        custom_roles=_each(body, "customRoles", _custom_role, source),
        organization_ids=_organization_ids(body, source),
        tenant_id=_tenant_id(body, source),
    )


def _tenant_id(body: Mapping[str, Any], source: str) -> str | None:
    """`tenantId`: the tenant the reconciler signs in to (optional): configs naming another one
    fail with tenant-mismatch, as in a live plan; without it that check is skipped."""
    raw = body.get("tenantId")
    if raw is None:
        return None
    if not Guid.is_valid(raw):
        raise InputError([f"{source}: tenantId must be a GUID, got {str(raw)[:80]!r}"])
    return str(Guid(raw))


def _organization_ids(body: Mapping[str, Any], source: str) -> dict[str, str]:
    """`organizationIds`: ADO organization name -> id (connectionData's instanceId)."""
    raw = body.get("organizationIds", {})
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
        raise InputError([f"{source}: organizationIds must map organization names to ids"])
    return {str(name).lower(): value.lower() for name, value in raw.items()}


def _each(
    body: Mapping[str, Any], key: str, parse: Callable[[Mapping[str, Any]], _T], source: str
) -> tuple[_T, ...]:
    items = body.get(key, [])
    if not isinstance(items, list):
        raise InputError([f"{source}: {key} must be a list"])
    parsed: list[_T] = []
    for position, item in enumerate(items):
        try:
            parsed.append(parse(item))
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise InputError([f"{source}: {key}[{position}]: missing or malformed field {error}"]) from error
    return tuple(parsed)


def _application(item: Mapping[str, Any]) -> Application:
    return Application(
        object_id=str(item["objectId"]),
        app_id=str(item["appId"]).lower(),
        display_name=str(item.get("displayName", "")),
        credentials=tuple(_credential(c) for c in item.get("federatedIdentityCredentials", [])),
        service_principal_id=_lower(item.get("servicePrincipalId")),
        tags=frozenset(_strings(item, "tags")),
    )


def _credential(item: Mapping[str, Any]) -> FederatedCredential:
    return FederatedCredential(
        id=str(item["id"]),
        name=str(item["name"]),
        issuer=str(item["issuer"]),
        subject=str(item["subject"]),
        audiences=_strings(item, "audiences", (TOKEN_EXCHANGE_AUDIENCE,)),
        description=str(item.get("description") or ""),
    )


def _role_assignment(item: Mapping[str, Any]) -> RoleAssignment:
    return RoleAssignment(
        id=str(item["id"]),
        name=str(item.get("name") or str(item["id"]).rsplit("/", 1)[-1]),
        scope=str(item["scope"]),  # canonicalised by RoleAssignment
        role_id=str(item["roleDefinitionId"]).rsplit("/", 1)[-1].lower(),
        principal_id=str(item["principalId"]).lower(),
        description=str(item.get("description") or ""),
        condition=str(item.get("condition") or ""),
        condition_version=str(item.get("conditionVersion") or ""),
    )


def _connection(item: Mapping[str, Any]) -> ServiceConnection:
    pipelines = item.get("pipelines")
    return ServiceConnection(
        id=str(item["id"]),
        organization=str(item["organization"]),
        project=str(item["project"]),
        name=str(item["name"]),
        scheme=str(item["scheme"]),
        app_id=_lower(item.get("appId")),
        tenant_id=_lower(item.get("tenantId")),
        subscription_id=_lower(item.get("subscriptionId")),
        subscription_name=_optional_text(item, "subscriptionName"),
        issuer=_optional_text(item, "issuer"),
        subject=_optional_text(item, "subject"),
        description=str(item.get("description") or ""),
        ready=item.get("isReady") is not False,  # as the API: only an explicit false counts
        operation_state=_status_text(item, "state"),
        status_message=_status_text(item, "statusMessage"),
        pipelines=None
        if pipelines is None
        else PipelineAccess(
            all_pipelines=bool(pipelines.get("allPipelines", False)),
            pipeline_ids=frozenset(int(p) for p in pipelines.get("pipelineIds", [])),
        ),
    )


def _custom_role(item: Mapping[str, Any]) -> CustomRole:
    return CustomRole(
        id=str(item["id"]).rsplit("/", 1)[-1].lower(),
        name=str(item.get("roleName", "")),
        actions=_strings(item, "actions"),
        not_actions=_strings(item, "notActions"),
    )


def _status_text(item: Mapping[str, Any], key: str) -> str:
    """A text of the connection's optional `operationStatus` ({state, statusMessage})."""
    status = item.get("operationStatus")
    value = status.get(key) if isinstance(status, Mapping) else None
    return value if isinstance(value, str) else ""


def _lower(value: object) -> str | None:
    return str(value).lower() if value else None


def _strings(item: Mapping[str, Any], key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A list of strings (the planner compares and hashes them: a number or a list in it would crash it)."""
    value = item.get(key, default)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"'{key}': expected a list of strings")
    return tuple(value)


def _optional_text(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"'{key}': expected a string")
    return value
