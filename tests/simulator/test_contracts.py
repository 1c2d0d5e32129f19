"""Contract tests: the simulator's responses validate against the official specs, read in place.

Graph: the Applications OpenAPI 3.0 slice (openapi-schema-validator's OAS30Validator).
ARM and ADO: the Swagger 2.0 documents (jsonschema's Draft4Validator, which is what
Swagger 2.0 schemas are). The operation and status pick the schema, as a client would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from cloudsim.state import ADO_RESOURCE_APP_ID
from cloudsim.testing import SAMPLE_SUBSCRIPTION
from tests.simulator.raw import Raw, raw_simulator

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_DIRS = (REPO_ROOT.parent / "shared" / "specs", Path("/work/shared/specs"))
SPECS = next((d for d in SPEC_DIRS if d.is_dir()), None)
pytestmark = pytest.mark.skipif(
    SPECS is None, reason=f"official specs not found in {' or '.join(map(str, SPEC_DIRS))}"
)
SUB = f"/subscriptions/{SAMPLE_SUBSCRIPTION}"
VAULT = f"{SUB}/resourceGroups/rg-pay/providers/Microsoft.KeyVault/vaults/kv-pay"
KV_READER = "21090545-7ca7-4776-b22c-e363652d74d2"
Json = Any


def _open_types(node: Json) -> Json:
    """The Graph slice marks open types with `additionalProperties: {type: object}`; under `allOf`
    that would reject every inherited property, so read it as what it means: extra properties allowed."""
    if isinstance(node, dict):
        return {
            key: True if key == "additionalProperties" and value == {"type": "object"} else _open_types(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_open_types(item) for item in node]
    return node


@cache
def graph_spec() -> Json:
    assert SPECS is not None
    text = (SPECS / "msgraph-sdk-powershell" / "Applications.v1.0.yml").read_text(encoding="utf-8")
    return _open_types(yaml.load(text, Loader=yaml.CSafeLoader))


@cache
def arm_spec() -> Json:
    assert SPECS is not None
    path = SPECS / "azure-rest-api-specs" / "authorization-RoleAssignmentsCalls.2022-04-01.json"
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def ado_spec() -> Json:
    assert SPECS is not None
    path = SPECS / "vsts-rest-api-specs" / "serviceEndpoint-7.1" / "serviceEndpoint.json"
    return json.loads(path.read_text(encoding="utf-8-sig"))


def validate_graph(path: str, method: str, status: int, body: Json) -> None:
    spec = graph_spec()
    responses = spec["paths"][path][method]["responses"]
    response = responses["2XX"] if 200 <= status < 300 else responses["default"]
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    schema = response["content"]["application/json"]["schema"]
    OAS30Validator({**schema, "components": spec["components"]}).validate(body)


def validate_swagger(spec: Json, path: str, method: str, status: int, body: Json) -> None:
    schema = spec["paths"][path][method]["responses"][str(status)]["schema"]
    jsonschema.Draft4Validator({**schema, "definitions": spec["definitions"]}).validate(body)


@pytest.fixture
async def raw() -> AsyncIterator[Raw]:
    async with raw_simulator() as raw:
        yield raw


GRAPH = "https://graph.microsoft.com"


async def test_graph_applications_and_service_principals_match_the_spec(raw: Raw) -> None:
    base = raw.sim.graph_url + "/v1.0"
    status, app = await raw.call("POST", f"{base}/applications", GRAPH, {"displayName": "contract"})
    validate_graph("/applications", "post", status, app)
    status, body = await raw.call(
        "GET", f"{base}/applications", GRAPH, **{"$expand": "federatedIdentityCredentials"}
    )
    validate_graph("/applications", "get", status, body)
    status, body = await raw.call("GET", f"{base}/applications/{app['id']}", GRAPH)
    validate_graph("/applications/{application-id}", "get", status, body)
    status, body = await raw.call("GET", f"{base}/applications(appId='{app['appId']}')", GRAPH)
    validate_graph("/applications(appId='{appId}')", "get", status, body)
    status, sp = await raw.call("POST", f"{base}/servicePrincipals", GRAPH, {"appId": app["appId"]})
    validate_graph("/servicePrincipals", "post", status, sp)
    status, body = await raw.call(
        "GET", f"{base}/servicePrincipals", GRAPH, **{"$filter": f"appId eq '{app['appId']}'"}
    )
    validate_graph("/servicePrincipals", "get", status, body)
    status, body = await raw.call("GET", f"{base}/servicePrincipals(appId='{app['appId']}')", GRAPH)
    validate_graph("/servicePrincipals(appId='{appId}')", "get", status, body)


async def test_graph_federated_credentials_and_errors_match_the_spec(raw: Raw) -> None:
    base = raw.sim.graph_url + "/v1.0"
    _s, app = await raw.call("POST", f"{base}/applications", GRAPH, {"displayName": "contract"})
    fics = f"{base}/applications/{app['id']}/federatedIdentityCredentials"
    credential = {
        "name": "sc-one",
        "issuer": "https://i",
        "subject": "s",
        "audiences": ["api://AzureADTokenExchange"],
    }
    status, created = await raw.call("POST", fics, GRAPH, credential)
    validate_graph("/applications/{application-id}/federatedIdentityCredentials", "post", status, created)
    status, body = await raw.call("GET", fics, GRAPH)
    validate_graph("/applications/{application-id}/federatedIdentityCredentials", "get", status, body)
    item = "/applications/{application-id}/federatedIdentityCredentials/{federatedIdentityCredential-id}"
    status, body = await raw.call("GET", f"{fics}/{created['id']}", GRAPH)
    validate_graph(item, "get", status, body)
    by_name = "/applications/{application-id}/federatedIdentityCredentials(name='{name}')"
    status, body = await raw.call(
        "GET", f"{base}/applications/{app['id']}/federatedIdentityCredentials(name='sc-one')", GRAPH
    )
    validate_graph(by_name, "get", status, body)
    upsert_url = f"{base}/applications/{app['id']}/federatedIdentityCredentials(name='sc-new')"
    async with raw.session.patch(
        upsert_url,
        json={**credential, "name": "sc-new", "subject": "s-new"},
        headers={"Authorization": f"Bearer {await raw.token(GRAPH)}", "Prefer": "create-if-missing"},
    ) as response:
        assert response.status == 201
        validate_graph(by_name, "patch", response.status, await response.json())

    for method, url, payload, expected in (
        ("POST", fics, credential, 409),
        ("POST", fics, {**credential, "name": "sc-two"}, 400),
        ("GET", f"{fics}/missing", None, 404),
    ):
        status, error = await raw.call(method, url, GRAPH, payload)
        assert status == expected
        validate_graph(item, "get", status, error)
    status, error = await raw.call("GET", f"{base}/applications", "https://management.azure.com")
    assert status == 401
    validate_graph("/applications", "get", status, error)


ARM = "https://management.azure.com"


async def test_arm_role_assignments_match_the_spec(raw: Raw) -> None:
    spec = arm_spec()
    seeded = await raw.sim.admin.seed_application("contract")
    name = str(uuid.uuid4())
    url = f"{raw.sim.arm_url}{VAULT}/providers/Microsoft.Authorization/roleAssignments/{name}"
    item = "/{scope}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}"
    properties = {
        "roleDefinitionId": f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{KV_READER}",
        "principalId": seeded["servicePrincipalId"],
        "principalType": "ServicePrincipal",
    }
    status, created = await raw.call(
        "PUT", url, ARM, {"properties": properties}, **{"api-version": "2022-04-01"}
    )
    validate_swagger(spec, item, "put", status, created)
    status, body = await raw.call("GET", url, ARM, **{"api-version": "2022-04-01"})
    validate_swagger(spec, item, "get", status, body)
    listing = "/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/roleAssignments"
    status, body = await raw.call(
        "GET",
        f"{raw.sim.arm_url}{SUB}/providers/Microsoft.Authorization/roleAssignments",
        ARM,
        **{"api-version": "2022-04-01"},
    )
    # The reconciler's own RBAC administrator assignment (the tenant setup) is listed too.
    assert [v["properties"]["principalId"] for v in body["value"]] == [
        raw.sim.world.caller_object_id,
        seeded["servicePrincipalId"],
    ]
    validate_swagger(spec, listing, "get", status, body)
    version = {"api-version": "2022-04-01"}
    for template, path in (
        (
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Authorization/roleAssignments",
            f"{SUB}/resourceGroups/rg-pay/providers/Microsoft.Authorization/roleAssignments",
        ),
        (
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{resourceProviderNamespace}/"
            "{resourceType}/{resourceName}/providers/Microsoft.Authorization/roleAssignments",
            f"{VAULT}/providers/Microsoft.Authorization/roleAssignments",
        ),
        (
            "/{scope}/providers/Microsoft.Authorization/roleAssignments",
            f"{SUB}/providers/Microsoft.Authorization/roleAssignments",
        ),
        ("/{roleAssignmentId}", f"{VAULT}/providers/Microsoft.Authorization/roleAssignments/{name}"),
    ):
        status, body = await raw.call("GET", raw.sim.arm_url + path, ARM, **version)
        validate_swagger(spec, template, "get", status, body)
    status, body = await raw.call("DELETE", url, ARM, **{"api-version": "2022-04-01"})
    validate_swagger(spec, item, "delete", status, body)


ADO = ADO_RESOURCE_APP_ID


async def test_ado_service_endpoints_match_the_spec(raw: Raw) -> None:
    spec = ado_spec()
    org = raw.sim.world.organizations[0]
    base = f"{raw.sim.ado_url}/{org.name}"
    connection = {
        "name": "contract",
        "type": "AzureRM",
        "url": "https://management.azure.com/",
        "data": {
            "subscriptionId": SAMPLE_SUBSCRIPTION,
            "subscriptionName": "Payments Prod",
            "creationMode": "Manual",
        },
        "authorization": {
            "scheme": "WorkloadIdentityFederation",
            "parameters": {"tenantid": raw.sim.tenant_id, "serviceprincipalid": str(uuid.uuid4())},
        },
        "serviceEndpointProjectReferences": [
            {"projectReference": {"id": org.projects[0].id}, "name": "contract"}
        ],
    }
    status, created = await raw.call(
        "POST", f"{base}/_apis/serviceendpoint/endpoints", ADO, connection, **{"api-version": "7.1"}
    )
    validate_swagger(spec, "/{organization}/_apis/serviceendpoint/endpoints", "post", status, created)
    endpoint = f"{base}/_apis/serviceendpoint/endpoints/{created['id']}"
    status, updated = await raw.call("PUT", endpoint, ADO, created, **{"api-version": "7.1"})
    validate_swagger(
        spec, "/{organization}/_apis/serviceendpoint/endpoints/{endpointId}", "put", status, updated
    )
    project_endpoints = f"{base}/payments/_apis/serviceendpoint/endpoints"
    status, body = await raw.call(
        "GET", f"{project_endpoints}/{created['id']}", ADO, **{"api-version": "7.1"}
    )
    validate_swagger(
        spec, "/{organization}/{project}/_apis/serviceendpoint/endpoints/{endpointId}", "get", status, body
    )
    # ADO wraps arrays in {count, value}; the spec documents the array itself.
    status, listed = await raw.call("GET", project_endpoints, ADO, **{"api-version": "7.1"})
    assert listed["count"] == len(listed["value"]) == 1
    validate_swagger(
        spec, "/{organization}/{project}/_apis/serviceendpoint/endpoints", "get", status, listed["value"]
    )


def test_the_validators_reject_bodies_that_break_the_specs() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate_graph("/applications", "get", 200, {"value": [{"appId": 42}]})
    with pytest.raises(jsonschema.ValidationError):
        validate_graph("/applications", "get", 404, {"message": "no error object"})
    with pytest.raises(jsonschema.ValidationError):
        validate_swagger(
            arm_spec(), "/{roleAssignmentId}", "get", 200, {"properties": {"principalType": "Robot"}}
        )
    with pytest.raises(jsonschema.ValidationError):
        validate_swagger(
            ado_spec(), "/{organization}/_apis/serviceendpoint/endpoints", "post", 200, {"data": {"x": 1}}
        )
