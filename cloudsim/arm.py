"""Azure Resource Manager, Microsoft.Authorization 2022-04-01: role definitions and role assignments
(and, read-only, Microsoft.EventGrid system topics: cloudsim/eventgrid.py).

Shapes follow authorization-RoleAssignmentsCalls.2022-04-01.json; failures follow
the RBAC troubleshooting docs as summarised in shared/design/azure-contracts.md.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlencode

from cloudsim.api import Api, ApiError, Call, Reply, RequestCounters, Route
from cloudsim.eventgrid import EVENT_SUBSCRIPTIONS, SYSTEM_TOPICS, EventGrid
from cloudsim.paging import Listings
from cloudsim.rights import rbac_allows
from cloudsim.state import JsonObject, RoleAssignment, RoleDefinition, World, iso
from cloudsim.tokens import ARM_AUDIENCES, caller_of

_PROVIDER = r"/providers/Microsoft\.Authorization"
_ASSIGNMENT = rf"(?P<scope>.*){_PROVIDER}/roleAssignments/(?P<name>[^/]+)"
_ASSIGNMENTS = rf"(?P<scope>.*){_PROVIDER}/roleAssignments"
_DEFINITION = rf"(?P<scope>.*){_PROVIDER}/roleDefinitions/(?P<id>[^/]+)"
_DEFINITIONS = rf"(?P<scope>.*){_PROVIDER}/roleDefinitions"
# One api-version per resource type, the one whose shapes the simulator models. Azure accepts older
# versions too (with other shapes); a request for any other version is refused as Azure refuses a
# version it does not know (Azure/azure-sdk-for-java#28334, Azure/azure-sdk-for-node#3638).
API_VERSIONS = {"Microsoft.Authorization": "2022-04-01", "Microsoft.EventGrid": "2022-06-15"}
_EVENT_GRID_TYPES = ("systemTopics", "eventSubscriptions")
ASSIGNMENTS_READ = "Microsoft.Authorization/roleAssignments/read"
DEFINITIONS_READ = "Microsoft.Authorization/roleDefinitions/read"
PRINCIPAL_TYPES = frozenset({"User", "Group", "ServicePrincipal", "ForeignGroup", "Device"})
_ROLE_DEFINITION_ID = re.compile(
    r"(?:/subscriptions/[^/]+)?/providers/Microsoft\.Authorization/roleDefinitions/[0-9a-f-]{36}",
    re.IGNORECASE,
)
_SUBSCRIPTION = re.compile(r"/subscriptions/([^/]+)", re.IGNORECASE)
_FILTER_CLAUSE = re.compile(
    r"\s*(?:(?P<at>atScope\(\))|principalId\s+eq\s+'(?P<principal>[^']+)'|assignedTo\('(?P<assigned>[^']+)'\)"
    r"|roleName\s+eq\s+'(?P<role_name>(?:[^']|'')+)'|type\s+eq\s+'(?P<role_type>[^']+)')\s*",
    re.IGNORECASE,
)


def _resource_type(operation: str) -> tuple[str, str]:
    """The namespace and resource type a route serves (its operation is named `<type>.<verb>`)."""
    kind = operation.split(".", 1)[0]
    namespace = "Microsoft.EventGrid" if kind in _EVENT_GRID_TYPES else "Microsoft.Authorization"
    return namespace, kind


def arm_error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message}})


def normalise_scope(scope: str) -> str:
    return "/" + scope.strip("/").lower() if scope.strip("/") else "/"


def is_within(inner: str, outer: str) -> bool:
    """Whether scope `inner` is `outer` or below it (ARM scopes compare case-insensitively)."""
    inner, outer = normalise_scope(inner), normalise_scope(outer)
    return outer in ("/", inner) or inner.startswith(outer + "/")


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


def definition_path(scope: str, guid: str) -> str:
    subscription = _SUBSCRIPTION.match(scope)
    prefix = f"/subscriptions/{subscription.group(1)}" if subscription else ""
    return f"{prefix}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def render_definition(definition: RoleDefinition, scope: str) -> JsonObject:
    return {
        "id": definition_path(scope, definition.id),
        "name": definition.id,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": definition.role_name,
            "type": definition.role_type,
            "description": definition.description or f"Built-in role {definition.role_name}.",
            "assignableScopes": list(definition.assignable_scopes),
            "permissions": [
                {
                    "actions": list(definition.actions),
                    "notActions": list(definition.not_actions),
                    "dataActions": list(definition.data_actions),
                    "notDataActions": [],
                }
            ],
            "createdOn": "2015-02-02T21:55:09Z",
            "updatedOn": "2024-01-01T00:00:00Z",
        },
    }


def render_assignment(assignment: RoleAssignment, caller: str) -> JsonObject:
    """A role assignment as 2022-04-01 describes it, without `properties.scope`: the spec marks it
    optional (read-only, not required), so a client must read the scope from the id."""
    properties: JsonObject = {
        "roleDefinitionId": definition_path(assignment.scope, assignment.role_definition_guid),
        "principalId": assignment.principal_id,
        "principalType": assignment.principal_type,
        "description": assignment.description,
        "condition": assignment.condition,
        "conditionVersion": assignment.condition_version,
        "createdOn": iso(assignment.created_at),
        "updatedOn": iso(assignment.updated_at),
        "createdBy": caller,
        "updatedBy": caller,
    }
    return {
        "properties": {key: value for key, value in properties.items() if value is not None},
        "id": assignment.id,
        "type": "Microsoft.Authorization/roleAssignments",
        "name": assignment.name,
    }


def _check_properties(properties: JsonObject) -> None:
    """RoleAssignmentProperties of the 2022-04-01 spec: roleDefinitionId (a role definition's full id)
    and principalId are required, principalType is one of the spec's enum."""
    for field in ("roleDefinitionId", "principalId"):
        if not isinstance(properties.get(field), str) or not properties[field]:
            raise ApiError(
                400,
                "InvalidRequestContent",
                f"The request content was invalid and could not be deserialized: "
                f"'Required property '{field}' not found in JSON.'",
            )
    if not _ROLE_DEFINITION_ID.fullmatch(properties["roleDefinitionId"]):
        raise ApiError(
            400,
            "InvalidRoleDefinitionId",
            f"The role definition ID '{properties['roleDefinitionId']}' is not valid.",
        )
    principal_type = properties.get("principalType")
    if principal_type is not None and principal_type not in PRINCIPAL_TYPES:
        raise ApiError(
            400,
            "InvalidRequestContent",
            f"The request content was invalid and could not be deserialized: "
            f"'Error converting value '{principal_type}' to type 'PrincipalType'.'",
        )


class Arm:
    def __init__(self, world: World, counters: RequestCounters) -> None:
        self._listings = Listings()
        self.world = world
        self.api = Api("arm", world, counters, arm_error, ARM_AUDIENCES)
        self.api.precondition = self._require_api_version
        add = self.api.routes.add
        add("GET", _DEFINITION, "roleDefinitions.get", self.get_definition)
        add("GET", _DEFINITIONS, "roleDefinitions.list", self.list_definitions)
        add("GET", _ASSIGNMENT, "roleAssignments.get", self.get_assignment)
        add("PUT", _ASSIGNMENT, "roleAssignments.create", self.put_assignment)
        add("DELETE", _ASSIGNMENT, "roleAssignments.delete", self.delete_assignment)
        add("GET", _ASSIGNMENTS, "roleAssignments.list", self.list_assignments)
        event_grid = EventGrid(world)
        add("GET", SYSTEM_TOPICS, "systemTopics.list", event_grid.list_system_topics)
        add("GET", EVENT_SUBSCRIPTIONS, "eventSubscriptions.list", event_grid.list_event_subscriptions)

    @staticmethod
    def _require_api_version(call: Call, route: Route) -> None:
        version = call.query.get("api-version")
        if not version:
            raise ApiError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        namespace, kind = _resource_type(route.operation)
        supported = API_VERSIONS[namespace]
        if version != supported:
            raise ApiError(
                400,
                "InvalidResourceType",
                f"The resource type '{kind}' could not be found in the namespace '{namespace}' for api "
                f"version '{version}'. The supported api-versions are '{supported}'.",
            )

    # role definitions

    def get_definition(self, call: Call, match: re.Match[str]) -> Reply:
        self._check_definitions_read(call, match["scope"])
        definition = self.world.role_definition(match["id"])
        # Azure answers 404 for a custom role read at a scope it is not assignable at.
        if definition is None or not definition.readable_at(match["scope"]):
            raise ApiError(
                404,
                "RoleDefinitionDoesNotExist",
                f"The specified role definition with ID '{match['id']}' does not exist.",
            )
        return Reply(200, render_definition(definition, match["scope"]))

    def list_definitions(self, call: Call, match: re.Match[str]) -> Reply:
        self._check_definitions_read(call, match["scope"])
        clauses = self._filter(call)
        role_name = clauses.get("role_name")
        role_type = clauses.get("role_type")
        found = [
            render_definition(d, match["scope"])
            for d in self.world.role_definitions
            if d.readable_at(match["scope"])
            and (role_name is None or d.role_name.lower() == role_name.replace("''", "'").lower())
            and (role_type is None or d.role_type.lower() == role_type.lower())
        ]
        return Reply(200, {"value": found})

    # role assignments

    def _find(self, scope: str, name: str) -> RoleAssignment | None:
        key_scope, key_name = normalise_scope(scope), name.lower()
        return next(
            (
                a
                for a in self.world.role_assignments
                if a.name.lower() == key_name and normalise_scope(a.scope) == key_scope
            ),
            None,
        )

    def get_assignment(self, call: Call, match: re.Match[str]) -> Reply:
        self._check_permission(call, match["scope"], ASSIGNMENTS_READ)
        assignment = self._find(match["scope"], match["name"])
        if assignment is None or not self.api.readable(assignment.created_at):
            raise ApiError(
                404, "RoleAssignmentNotFound", f"The role assignment '{match['name']}' is not found."
            )
        return Reply(200, render_assignment(assignment, self.world.caller_object_id))

    def put_assignment(self, call: Call, match: re.Match[str]) -> Reply:
        scope, name = match["scope"], match["name"]
        self._check_write_permission(call, scope, "write")
        if not _is_guid(name):
            raise ApiError(
                400,
                "InvalidRoleAssignmentId",
                f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
            )
        properties = call.body.get("properties") if isinstance(call.body, dict) else None
        if not isinstance(properties, dict):
            raise ApiError(
                400, "InvalidRequestContent", "The request content was invalid and could not be deserialized."
            )
        _check_properties(properties)
        role_guid = self._role_guid(properties.get("roleDefinitionId"))
        principal_id = str(properties.get("principalId", "")).lower()
        self._check_principal(principal_id, properties.get("principalType"))
        condition = properties.get("condition")
        if condition is not None and not isinstance(condition, str):
            raise ApiError(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: "
                "'Error converting value to type 'String'. Path 'properties.condition'.'",
            )
        existing = self._find(scope, name)
        if existing is not None:
            return self._update(existing, principal_id, role_guid, properties)
        duplicate = next(
            (
                a
                for a in self.world.role_assignments
                if a.principal_id == principal_id
                and a.role_definition_guid == role_guid
                and normalise_scope(a.scope) == normalise_scope(scope)
            ),
            None,
        )
        if duplicate is not None:
            # One assignment per scope, role and principal, whatever the condition of either: a second
            # that differs only by its ABAC condition is refused too (terraform-provider-azurerm#24045;
            # the docs say nothing either way, so the stricter reading). Azure names the existing
            # assignment in the message, without hyphens (earlier answers did not name it at all:
            # terraform-provider-azurerm#2565).
            named = f" The ID of the existing role assignment is {duplicate.name.replace('-', '')}."
            raise ApiError(
                409,
                "RoleAssignmentExists",
                "The role assignment already exists."
                + (named if self.world.settings.arm_conflict_names_existing else ""),
            )
        assignment = RoleAssignment(
            name=name.lower(),
            scope=scope,
            role_definition_guid=role_guid,
            principal_id=principal_id,
            principal_type=str(properties.get("principalType") or "User"),
            description=properties.get("description"),
            condition=condition,
            # "Defaults to 2.0 and is the only publicly supported version" (conditions FAQ).
            condition_version=properties.get("conditionVersion") or ("2.0" if condition else None),
        )
        self.world.role_assignments.append(assignment)
        return Reply(201, render_assignment(assignment, self.world.caller_object_id))

    def _update(
        self, existing: RoleAssignment, principal_id: str, role_guid: str, properties: JsonObject
    ) -> Reply:
        if existing.principal_id != principal_id or existing.role_definition_guid != role_guid:
            raise ApiError(
                400,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            )
        existing.description = properties.get("description", existing.description)
        existing.condition = properties.get("condition", existing.condition)
        existing.condition_version = properties.get("conditionVersion", existing.condition_version)
        existing.updated_at = time.time()
        return Reply(200, render_assignment(existing, self.world.caller_object_id))

    def delete_assignment(self, call: Call, match: re.Match[str]) -> Reply:
        self._check_write_permission(call, match["scope"], "delete")
        assignment = self._find(match["scope"], match["name"])
        if assignment is None:
            return Reply(204)
        self.world.role_assignments.remove(assignment)
        return Reply(200, render_assignment(assignment, self.world.caller_object_id))

    def list_assignments(self, call: Call, match: re.Match[str]) -> Reply:
        scope = match["scope"]
        self._check_permission(call, scope, ASSIGNMENTS_READ)
        clauses = self._filter(call)
        principal = (clauses.get("principal") or clauses.get("assigned") or "").lower()
        at_scope = "at" in clauses

        def found() -> list[RoleAssignment]:
            return [
                a
                for a in self.world.role_assignments
                if (not principal or a.principal_id == principal)  # the cheap test first: lists can be long
                and self.api.visible(a.created_at)
                and (is_within(scope, a.scope) or (not at_scope and is_within(a.scope, scope)))
            ]

        return self._page(call, found)

    def _page(self, call: Call, assignments: Callable[[], list[RoleAssignment]]) -> Reply:
        size = max(1, self.world.settings.arm_page_size)
        page, token = self._listings.page(call.query.get("$skipToken", ""), assignments, size)
        body: JsonObject = {"value": [render_assignment(a, self.world.caller_object_id) for a in page]}
        if token:
            query = {**call.query, "$skipToken": token}
            body["nextLink"] = f"{call.base_url}{call.path}?{urlencode(query)}"
        return Reply(200, body)

    # checks

    def _filter(self, call: Call) -> dict[str, str]:
        text = call.query.get("$filter", "").strip()
        clauses: dict[str, str] = {}
        for clause in re.split(r"\s+and\s+", text, flags=re.IGNORECASE) if text else []:
            found = _FILTER_CLAUSE.fullmatch(clause)
            if not found:
                raise ApiError(400, "UnsupportedQuery", f"The filter '{text}' is not supported.")
            clauses.update({key: value for key, value in found.groupdict().items() if value is not None})
        return clauses

    def _role_guid(self, role_definition_id: object) -> str:
        guid = str(role_definition_id or "").rstrip("/").rsplit("/", 1)[-1].lower()
        if self.world.role_definition(guid) is None:
            raise ApiError(
                400,
                "RoleDefinitionDoesNotExist",
                f"The specified role definition with ID '{guid}' does not exist.",
            )
        return guid

    def _check_principal(self, principal_id: str, principal_type: object) -> None:
        principal = self.world.service_principal(principal_id)
        delay = self.world.settings.replication_delay_s
        replicating = principal is not None and time.time() - principal.created_at < delay
        lagging = principal is not None and not self.api.faults.principal_replicated(principal.created_at)
        if principal is None or lagging or (replicating and not principal_type):
            raise ApiError(
                400,
                "PrincipalNotFound",
                f"Principal {principal_id.replace('-', '')} does not exist in the directory "
                f"{self.world.tenant_id}. Check that you have the correct principal ID. If you are creating "
                "this principal and then immediately assigning a role, this error might be related to a "
                "replication delay. In this case, set the role assignment principalType property to a value, "
                "such as ServicePrincipal, User, or Group. See https://aka.ms/docs-principaltype",
            )
        if principal_type and not replicating and principal_type != "ServicePrincipal":
            # Every principal here is a service principal; the SDK model defaults principalType
            # to "User", which Azure rejects once it can see the principal.
            raise ApiError(
                400,
                "UnmatchedPrincipalType",
                f"The PrincipalId '{principal_id.replace('-', '')}' has type 'ServicePrincipal', which is "
                f"different from specified PrincipalType '{principal_type}'.",
            )

    def _check_definitions_read(self, call: Call, scope: str) -> None:
        if scope.strip("/"):  # the tenant root's catalogue (built-in roles): who may read it is not modelled
            self._check_permission(call, scope, DEFINITIONS_READ)

    def _check_write_permission(self, call: Call, scope: str, verb: str) -> None:
        self._check_permission(call, scope, f"Microsoft.Authorization/roleAssignments/{verb}")

    def _check_permission(self, call: Call, scope: str, operation: str) -> None:
        """Azure RBAC: the caller needs a role assignment at or above the scope whose role allows the
        operation (cloudsim.rights); none by default, until the tenant setup grants one. Reads too:
        the REST reference names `roleAssignments/read` and `roleDefinitions/read` as the
        permissions of every Get and List."""
        caller = caller_of(call.headers.get("Authorization")) or ""
        if not rbac_allows(self.world, caller, scope, operation):
            raise ApiError(
                403,
                "AuthorizationFailed",
                f"The client '{caller}' with object id '{caller}' does not have authorization to perform "
                f"action '{operation}' over scope '{scope}' or the scope is invalid. "
                "If access was recently granted, please refresh your credentials.",
            )
