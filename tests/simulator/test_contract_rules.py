"""The simulator refuses what Azure's specs refuse, and varies what they leave open.

Plain HTTPS calls with tokens from the simulator's MI endpoint: the request is exactly what the
test writes, no SDK model in between (each rule's source is in docs/simulator.md).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cloudsim.state import ADO_RESOURCE_APP_ID
from cloudsim.testing import SAMPLE_SUBSCRIPTION
from tests.simulator.raw import Raw, raw_simulator

ARM = "https://management.azure.com"
ADO = ADO_RESOURCE_APP_ID
SUB = f"/subscriptions/{SAMPLE_SUBSCRIPTION}"
VAULT = f"{SUB}/resourceGroups/rg-pay/providers/Microsoft.KeyVault/vaults/kv-pay"
KV_READER = "21090545-7ca7-4776-b22c-e363652d74d2"
ROLE_ID = f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{KV_READER}"
Json = Any


@pytest.fixture
async def raw() -> AsyncIterator[Raw]:
    async with raw_simulator() as raw:
        yield raw


def assignment_path(scope: str = VAULT, name: str | None = None) -> str:
    return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name or uuid.uuid4()}"


# ---------------------------------------------------------------- ARM


@pytest.mark.parametrize("version", ["2020-04-01-preview", "2022-04-01-preview", "2099-01-01", "latest"])
async def test_arm_refuses_an_api_version_it_does_not_model(raw: Raw, version: str) -> None:
    listing = f"{SUB}/providers/Microsoft.Authorization/roleAssignments"
    status, body = await raw.arm("GET", listing, version=version)
    assert status == 400
    assert body["error"]["code"] == "InvalidResourceType"
    assert "'2022-04-01'" in body["error"]["message"]
    topics = f"{SUB}/providers/Microsoft.EventGrid/systemTopics"
    status, body = await raw.arm("GET", topics, version="2022-04-01")
    assert (status, body["error"]["code"]) == (400, "InvalidResourceType")
    status, _body = await raw.arm("GET", topics, version="2022-06-15")
    assert status == 200


async def test_arm_put_needs_the_spec_s_required_properties_and_a_full_role_definition_id(raw: Raw) -> None:
    seeded = await raw.sim.admin.seed_application("contract")
    good = {
        "roleDefinitionId": ROLE_ID,
        "principalId": seeded["servicePrincipalId"],
        "principalType": "ServicePrincipal",
    }
    for properties, code in (
        ({k: v for k, v in good.items() if k != "principalId"}, "InvalidRequestContent"),
        ({k: v for k, v in good.items() if k != "roleDefinitionId"}, "InvalidRequestContent"),
        ({**good, "roleDefinitionId": KV_READER}, "InvalidRoleDefinitionId"),  # a bare GUID
        ({**good, "principalType": "Robot"}, "InvalidRequestContent"),
    ):
        status, body = await raw.arm("PUT", assignment_path(), {"properties": properties})
        assert (status, body["error"]["code"]) == (400, code), properties
    status, _body = await raw.arm("PUT", assignment_path(), {"properties": good})
    assert status == 201


# ---------------------------------------------------------------- ADO


async def test_ado_serves_endpoint_updates_only_at_the_organization_level_route_of_the_spec(raw: Raw) -> None:
    org = raw.sim.world.organizations[0]
    project = org.projects[0]
    body = {"name": "x", "type": "AzureRM", "authorization": {"scheme": "WorkloadIdentityFederation"}}
    endpoint = str(uuid.uuid4())
    status, refused = await raw.call(
        "PUT",
        f"{raw.sim.ado_url}/{org.name}/{project.id}/_apis/serviceendpoint/endpoints/{endpoint}",
        ADO,
        body,
        **{"api-version": "7.1", "operation": "ConvertAuthenticationScheme"},
    )
    assert status == 404 and refused["typeKey"] == "NotFound"


async def test_ado_refuses_data_keys_that_differ_only_in_case(raw: Raw) -> None:
    org = raw.sim.world.organizations[0]
    body: Json = {
        "name": "twice",
        "type": "AzureRM",
        "url": "https://management.azure.com/",
        "data": {"subscriptionId": SAMPLE_SUBSCRIPTION, "SubscriptionId": SAMPLE_SUBSCRIPTION},
        "authorization": {"scheme": "ServicePrincipal", "parameters": {"tenantid": raw.sim.tenant_id}},
        "serviceEndpointProjectReferences": [
            {"projectReference": {"id": org.projects[0].id}, "name": "twice"}
        ],
    }
    url = f"{raw.sim.ado_url}/{org.name}/_apis/serviceendpoint/endpoints"
    status, refused = await raw.call("POST", url, ADO, body, **{"api-version": "7.1"})
    assert status == 400 and "SubscriptionId" in refused["message"]
    body["data"] = {"SubscriptionId": SAMPLE_SUBSCRIPTION}
    body["authorization"]["parameters"] = {"tenantid": raw.sim.tenant_id, "TenantId": raw.sim.tenant_id}
    status, refused = await raw.call("POST", url, ADO, body, **{"api-version": "7.1"})
    assert status == 400 and "TenantId" in refused["message"]
    body["authorization"]["parameters"] = {"TenantId": raw.sim.tenant_id}
    status, created = await raw.call("POST", url, ADO, body, **{"api-version": "7.1"})
    assert status == 200 and created["data"] == {"SubscriptionId": SAMPLE_SUBSCRIPTION}  # kept as written


@pytest.mark.parametrize(
    ("path", "good", "bad"),
    [
        ("payments/_apis/serviceendpoint/endpoints", "7.1", ["7.0", "7.2-preview.1", "7.1.0", "latest"]),
        ("_apis/projects/payments", "7.1", ["6.0", "7.2-preview"]),
        ("payments/_apis/pipelines/pipelinePermissions/endpoint/{id}", "7.1-preview.1", ["7.1-preview.2"]),
    ],
)
async def test_ado_serves_only_the_api_version_its_spec_documents(
    raw: Raw, path: str, good: str, bad: list[str]
) -> None:
    org = raw.sim.world.organizations[0]
    url = f"{raw.sim.ado_url}/{org.name}/{path.format(id=uuid.uuid4())}"
    status, _body = await raw.call("GET", url, ADO, **{"api-version": good})
    assert status in (200, 404)  # 404: the unknown endpoint of the pipeline-permissions read
    for version in bad:
        status, refused = await raw.call("GET", url, ADO, **{"api-version": version})
        assert status == 400 and refused["typeKey"] == "ArgumentException", version
        assert good in refused["message"]


async def test_ado_preview_only_resources_need_the_preview_flag(raw: Raw) -> None:
    org = raw.sim.world.organizations[0]
    url = f"{raw.sim.ado_url}/{org.name}/_apis/connectionData"
    status, refused = await raw.call("GET", url, ADO, **{"api-version": "7.1"})
    assert status == 400 and refused["typeKey"] == "VssInvalidPreviewVersionException"
    status, _body = await raw.call("GET", url, ADO, **{"api-version": "7.1-preview"})
    assert status == 200


async def test_ado_answers_a_refused_token_with_a_sign_in_page_unless_told_to_suppress_it(raw: Raw) -> None:
    org = raw.sim.world.organizations[0]
    url = f"{raw.sim.ado_url}/{org.name}/_apis/projects/payments?api-version=7.1"
    wrong = {"Authorization": f"Bearer {await raw.token(ARM)}"}  # a token for another audience
    async with raw.session.get(url, headers=wrong) as response:
        assert response.status == 203 and response.content_type == "text/html"
        assert "Sign In" in await response.text()
    async with raw.session.get(url, headers={**wrong, "X-TFS-FedAuthRedirect": "Suppress"}) as response:
        assert response.status == 401
        assert (await response.json())["typeKey"] == "InvalidAuthenticationToken"
    async with raw.session.get(url, headers={"Authorization": f"Bearer {await raw.token(ADO)}"}) as response:
        assert response.status == 200


async def test_arm_reads_of_role_assignments_and_definitions_need_the_read_permissions(raw: Raw) -> None:
    listing = f"{SUB}/providers/Microsoft.Authorization/roleAssignments"
    definition = f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{KV_READER}"
    for path in (listing, definition, f"{SUB}/providers/Microsoft.Authorization/roleDefinitions"):
        status, _body = await raw.arm("GET", path)
        assert status == 200, path  # the tenant setup's RBAC Administrator role reads */read
    world = raw.sim.world
    world.role_assignments = [a for a in world.role_assignments if a.principal_id != world.caller_object_id]
    for path, action in (
        (listing, "roleAssignments/read"),
        (assignment_path(), "roleAssignments/read"),
        (definition, "roleDefinitions/read"),
    ):
        status, body = await raw.arm("GET", path)
        assert (status, body["error"]["code"]) == (403, "AuthorizationFailed"), path
        assert f"Microsoft.Authorization/{action}" in body["error"]["message"]
    status, _body = await raw.arm("GET", f"/providers/Microsoft.Authorization/roleDefinitions/{KV_READER}")
    assert status == 200  # the tenant root's catalogue of built-in roles
