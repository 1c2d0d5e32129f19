"""Every request the ARM and ADO adapters can send validates against the official specs, read in place.

Each public method of both adapters is called against the simulator, which records the requests
as they arrive; each request must then match an operation of the spec (path template and method),
carry the api-version the spec names, only query parameters the operation declares (its required
ones included) and a body that validates against the operation's body schema (jsonschema Draft 4,
what Swagger 2.0 schemas are). The few calls whose spec is not among the copied ones are listed in
NOT_IN_THE_COPIED_SPECS with their published reference, checked the same way against that entry.
Skipped, saying why, when the specs are absent.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cloudsim.api import Api, Call, Reply
from cloudsim.state import new_id
from cloudsim.testing import SAMPLE_SUBSCRIPTION
from reconciler.adapters.ado import AdoAdapter, ConnectionSettings
from reconciler.adapters.arm import ArmAdapter
from reconciler.core.identifiers import ArmScope, Guid
from reconciler.core.model import PipelineAccess
from tests.engine.conftest import KEY_VAULT_READER, VAULT, Tenant

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_DIRS = (REPO_ROOT.parent / "shared" / "specs", Path("/work/shared/specs"))
SPECS = next((d for d in SPEC_DIRS if d.is_dir()), None)
pytestmark = pytest.mark.skipif(
    SPECS is None, reason=f"official specs not found in {' or '.join(map(str, SPEC_DIRS))}"
)
Json = Any


@dataclass(frozen=True)
class Operation:
    """One operation of a spec: what a request to it may carry."""

    method: str
    template: str
    api_versions: tuple[str, ...]
    query: frozenset[str]  # every declared query parameter, api-version included
    required_query: frozenset[str]
    body_schema: Json  # None: no body
    source: str


# Calls whose spec is not among ../shared/specs, with the reference each follows.
NOT_IN_THE_COPIED_SPECS = (
    Operation(
        "GET",
        "/{roleDefinitionId}",
        ("2022-04-01",),
        frozenset({"api-version"}),
        frozenset({"api-version"}),
        None,
        "learn.microsoft.com rest/api/authorization/role-definitions/get-by-id (2022-04-01)",
    ),
    Operation(
        "GET",
        "/subscriptions/{subscriptionId}/providers/Microsoft.EventGrid/systemTopics",
        ("2022-06-15",),
        frozenset({"api-version", "$filter", "$top"}),
        frozenset({"api-version"}),
        None,
        "learn.microsoft.com rest/api/eventgrid/controlplane system-topics/list-by-subscription",
    ),
    Operation(
        "GET",
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.EventGrid/"
        "systemTopics/{systemTopicName}/eventSubscriptions",
        ("2022-06-15",),
        frozenset({"api-version", "$filter", "$top"}),
        frozenset({"api-version"}),
        None,
        "learn.microsoft.com rest/api/eventgrid/controlplane system-topic-event-subscriptions/list",
    ),
    Operation(
        "GET",
        "/{organization}/_apis/projects/{projectId}",
        ("7.1",),
        frozenset({"api-version", "includeCapabilities", "includeHistory"}),
        frozenset({"api-version"}),
        None,
        "learn.microsoft.com rest/api/azure/devops/core/projects/get (7.1)",
    ),
    Operation(
        "GET",
        "/{organization}/_apis/connectionData",
        ("7.1-preview", "7.1-preview.1"),
        frozenset({"api-version", "connectOptions", "lastChangeId", "lastChangeId64"}),
        frozenset({"api-version"}),
        None,
        "no published reference (azure-contracts.md: community use); ADO's clients send a preview version",
    ),
    Operation(
        "GET",
        "/{organization}/_apis/permissions/{securityNamespaceId}/{permissions}",
        ("7.1",),
        frozenset({"api-version", "tokens", "alwaysAllowAdministrators", "delimiter"}),
        frozenset({"api-version"}),
        None,
        "learn.microsoft.com rest/api/azure/devops/security/permissions/has-permissions (7.1)",
    ),
    Operation(
        "GET",
        "/{organization}/{project}/_apis/pipelines/pipelinePermissions/{resourceType}/{resourceId}",
        ("7.1-preview.1",),
        frozenset({"api-version"}),
        frozenset({"api-version"}),
        None,
        "learn.microsoft.com rest/api/azure/devops/approvalsandchecks/pipeline-permissions/get"
        " (7.1-preview.1)",
    ),
    Operation(
        "PATCH",
        "/{organization}/{project}/_apis/pipelines/pipelinePermissions/{resourceType}/{resourceId}",
        ("7.1-preview.1",),
        frozenset({"api-version"}),
        frozenset({"api-version"}),
        {
            "type": "object",
            "properties": {
                "allPipelines": {"type": "object", "properties": {"authorized": {"type": "boolean"}}},
                "pipelines": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id"],
                        "properties": {"id": {"type": "integer"}, "authorized": {"type": "boolean"}},
                    },
                },
                "resource": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "type": {"type": "string"}},
                },
            },
        },
        "learn.microsoft.com rest/api/azure/devops/approvalsandchecks/pipeline-permissions/"
        "update-pipeline-permisions-for-resource (7.1-preview.1; ResourcePipelinePermissions)",
    ),
)


def _spec(path: str, encoding: str = "utf-8") -> Json:
    assert SPECS is not None
    return json.loads((SPECS / path).read_text(encoding=encoding))


def _resolve(spec: Json, node: Json) -> Json:
    """A parameter or schema with its local `$ref` followed (other files' refs are named only)."""
    ref = node.get("$ref", "") if isinstance(node, dict) else ""
    if ref.startswith("#/"):
        target = spec
        for part in ref[2:].split("/"):
            target = target[part]
        return target
    return node


def _api_versions(spec: Json, parameter: Json) -> tuple[str, ...]:
    ref = parameter.get("$ref", "")
    if ref.endswith("/ApiVersionParameter"):  # ARM's common type: the document's own version
        return (str(spec["info"]["version"]),)
    found = re.search(r"set to '([^']+)'", str(_resolve(spec, parameter).get("description", "")))
    assert found, f"no api-version in {parameter}"
    return (found.group(1),)


def _operations(spec: Json, source: str) -> list[Operation]:
    operations = []
    for template, methods in spec["paths"].items():
        for method, operation in methods.items():
            if method == "parameters":
                continue
            versions: tuple[str, ...] = ()
            query: set[str] = set()
            required: set[str] = set()
            body = None
            for raw in operation.get("parameters", []):
                if raw.get("$ref", "").endswith(
                    ("ApiVersionParameter", "api-Version", "api-Version-preview.1")
                ):
                    versions = _api_versions(spec, raw)
                    query.add("api-version")
                    required.add("api-version")
                    continue
                parameter = _resolve(spec, raw)
                if parameter.get("in") == "query":
                    query.add(parameter["name"])
                    if parameter.get("required"):
                        required.add(parameter["name"])
                elif parameter.get("in") == "body":
                    body = {**parameter["schema"], "definitions": spec["definitions"]}
            if source.startswith("vsts") and method == "get" and "endpointNames" in required:
                # Swagger 2.0 holds one GET per path: this path's other GET, "Endpoints - Get Service
                # Endpoints" (learn.microsoft.com, 7.1), is the same call without endpointNames.
                required.discard("endpointNames")
                query |= {"endpointIds", "actionFilter"}
            operations.append(
                Operation(
                    method.upper(), template, versions, frozenset(query), frozenset(required), body, source
                )
            )
    return operations


@cache
def known_operations() -> tuple[list[Operation], list[Operation]]:
    arm = _operations(
        _spec("azure-rest-api-specs/authorization-RoleAssignmentsCalls.2022-04-01.json"),
        "azure-rest-api-specs authorization-RoleAssignmentsCalls 2022-04-01",
    )
    ado = _operations(
        _spec("vsts-rest-api-specs/serviceEndpoint-7.1/serviceEndpoint.json", "utf-8-sig"),
        "vsts-rest-api-specs serviceEndpoint 7.1",
    )
    extra = list(NOT_IN_THE_COPIED_SPECS)
    return arm + [o for o in extra if not o.template.startswith("/{organization}")], ado + [
        o for o in extra if o.template.startswith("/{organization}")
    ]


def _pattern(template: str) -> re.Pattern[str]:
    """A path template as a pattern: `{scope}` and `{roleAssignmentId}` span segments, others one."""
    parts = re.split(r"(\{[^}]+\})", template)
    regex = "".join(
        (".+" if part in ("{scope}", "{roleAssignmentId}", "{roleDefinitionId}") else "[^/]+")
        if part.startswith("{")
        else re.escape(part)
        for part in parts
    )
    return re.compile(regex, re.IGNORECASE)


def problems_of(call: Call, operations: list[Operation]) -> list[str]:
    """Why a request does not validate against any operation of the specs (empty when it does)."""
    candidates = [
        o for o in operations if o.method == call.method and _pattern(o.template).fullmatch(call.path)
    ]
    if not candidates:
        return [f"{call.method} {call.path}: no operation of the specs has this method and path"]
    # Specific templates first: `/{roleAssignmentId}` matches every path, a listing's its own.
    candidates.sort(key=lambda o: o.template.count("{") * 100 - len(o.template))
    reasons = []
    for operation in candidates:
        problems = _mismatches(call, operation)
        if not problems:
            return []
        reasons.append(f"{call.method} {call.path} as {operation.template} ({operation.source}): {problems}")
    return reasons


def _mismatches(call: Call, operation: Operation) -> list[str]:
    problems = []
    version = call.query.get("api-version")
    if version not in operation.api_versions:
        problems.append(f"api-version {version!r}, the spec names {operation.api_versions}")
    if unknown := set(call.query) - operation.query:
        problems.append(f"query parameters the operation does not declare: {sorted(unknown)}")
    if missing := operation.required_query - set(call.query):
        problems.append(f"required query parameters missing: {sorted(missing)}")
    if operation.body_schema is None and call.body is not None:
        problems.append("a body the operation does not take")
    if operation.body_schema is not None:
        errors = [e.message for e in jsonschema.Draft4Validator(operation.body_schema).iter_errors(call.body)]
        if call.body is None or errors:
            problems.append(f"body does not validate: {errors or 'no body'}")
    return problems


def record(api: Api) -> list[Call]:
    """Every request the API serves from now on, as it arrived."""
    calls: list[Call] = []
    serve: Callable[[Call], Any] = api.serve

    async def recording(call: Call) -> Reply:
        calls.append(call)
        reply: Reply = await serve(call)
        return reply

    api.serve = recording  # type: ignore[method-assign]
    return calls


def _public_methods(cls: type) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls, inspect.iscoroutinefunction)
        if not name.startswith("_") and name != "close"
    }


async def test_every_request_of_the_arm_and_ado_adapters_validates_against_the_specs(
    tenant: Tenant, adapters: tuple[ArmAdapter, AdoAdapter]
) -> None:
    arm, ado = adapters
    sim = tenant.sim
    await sim.admin.update_settings(ado_conversion_requires_fic=False, arm_page_size=1)  # shapes: every page
    arm_calls, ado_calls = record(sim.simulator.arm.api), record(sim.simulator.ado.api)
    called: set[str] = set()

    def calling(name: str) -> None:
        called.add(name)

    seeded = await sim.admin.seed_application("spec-checked")
    principal = str(seeded["servicePrincipalId"])
    subscription = ArmScope.parse(f"/subscriptions/{SAMPLE_SUBSCRIPTION}")
    calling("create_assignment")
    created = await arm.create_assignment(ArmScope.parse(VAULT), new_id(), KEY_VAULT_READER, principal, "d")
    calling("list_assignments")
    await arm.list_assignments(subscription)
    await arm.list_assignments(subscription, principal)
    calling("list_assignments_of")
    await arm.list_assignments_of(subscription, principal)
    calling("get_role_definition")
    await arm.get_role_definition(subscription, KEY_VAULT_READER)
    await arm.get_role_definition(ArmScope.parse(VAULT), KEY_VAULT_READER)
    calling("list_event_routes")
    await arm.list_event_routes(Guid(SAMPLE_SUBSCRIPTION))
    calling("delete_assignment")
    await arm.delete_assignment(created.id)

    org = sim.world.organizations[0]
    project = org.projects[0]
    settings = ConnectionSettings(str(seeded["appId"]), sim.tenant_id, SAMPLE_SUBSCRIPTION, "Payments", "d")
    for name in ("project_id", "organization_id", "authenticated_user"):
        calling(name)
        await getattr(ado, name)(*((org.name, project.name) if name == "project_id" else (org.name,)))
    calling("has_permission")
    await ado.has_permission(org.name, "49b48001-ca20-4adc-8111-5b60c903a50c", 2, f"endpoints/{project.id}")
    calling("create_connection")
    connection = await ado.create_connection(org.name, project.name, "spec-checked", settings)
    calling("list_connections")
    [connection] = await ado.list_connections(org.name, project.name)
    calling("update_connection")
    connection = await ado.update_connection(connection, settings)
    await sim.admin.convert_connection_to_secret(org.name, connection.id)
    connection = await ado.update_connection(connection, settings, operation="ConvertAuthenticationScheme")
    calling("authorize_pipelines")
    await ado.authorize_pipelines(org.name, project.name, connection.id, PipelineAccess(all_pipelines=True))
    await ado.authorize_pipelines(
        org.name, project.name, connection.id, PipelineAccess(pipeline_ids=frozenset({7}))
    )
    calling("read_pipeline_access")
    await ado.read_pipeline_access(org.name, project.name, connection.id)
    calling("delete_connection")
    await ado.delete_connection(connection)

    # A new public method of either adapter is a request this test must learn to send.
    assert called == _public_methods(ArmAdapter) | _public_methods(AdoAdapter)
    arm_operations, ado_operations = known_operations()
    assert len(arm_calls) >= 8 and len(ado_calls) >= 14
    problems = [p for c in arm_calls for p in problems_of(c, arm_operations)]
    problems += [p for c in ado_calls for p in problems_of(c, ado_operations)]
    assert not problems, "\n".join(problems)


def test_the_check_refuses_requests_that_break_the_specs() -> None:
    arm_operations, ado_operations = known_operations()
    assignment = f"{VAULT}/providers/Microsoft.Authorization/roleAssignments/{new_id()}"
    body = {"properties": {"roleDefinitionId": "x", "principalId": "y"}}

    def call(method: str, path: str, query: dict[str, str], body: Json = None) -> Call:
        return Call(method, path, query, {}, body, "https://127.0.0.1")

    assert not problems_of(call("PUT", assignment, {"api-version": "2022-04-01"}, body), arm_operations)
    for bad in (
        call("PUT", assignment, {"api-version": "2022-01-01-preview"}, body),  # another version
        call("PUT", assignment, {"api-version": "2022-04-01"}, {"properties": {"principalId": "y"}}),
        call("PUT", assignment, {"api-version": "2022-04-01", "$top": "5"}, body),  # undeclared
        call("PATCH", assignment, {"api-version": "2022-04-01"}, body),  # no such method
    ):
        assert problems_of(bad, arm_operations), bad
    endpoint = f"/contoso/_apis/serviceendpoint/endpoints/{new_id()}"
    assert not problems_of(
        call("DELETE", endpoint, {"api-version": "7.1", "projectIds": "p"}), ado_operations
    )
    for bad in (
        call("DELETE", endpoint, {"api-version": "7.1"}),  # projectIds is required
        call("DELETE", endpoint, {"api-version": "7.1-preview.4", "projectIds": "p"}),
        call("PUT", f"/contoso/{new_id()}{endpoint[len('/contoso') :]}", {"api-version": "7.1"}, {}),
        call("PUT", endpoint, {"api-version": "7.1"}, {"name": 5}),  # name is a string
    ):
        assert problems_of(bad, ado_operations), bad
