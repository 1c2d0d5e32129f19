"""The caller's rights, strict by default: what the tenant setup does not grant is refused.

Graph by the `roles` claim of the token, Azure DevOps by membership and Endpoint Administrator,
ARM by role assignments (tests/simulator/test_arm_sdk.py). Each SDK as the product uses it."""

from __future__ import annotations

import base64
import json

import pytest
from azure.identity.aio import ManagedIdentityCredential
from kiota_abstractions.api_error import APIError
from msgraph.generated.models.application import Application
from msgraph.graph_service_client import GraphServiceClient

from cloudsim.rights import SERVICE_ENDPOINTS_NAMESPACE
from cloudsim.testing import RunningSimulator

from .test_ado_sdk import AdoClient, call, create, org_and_project, wif_connection


def claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    parsed: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return parsed


async def test_only_graph_tokens_carry_the_graph_application_permissions(
    cloud_env: RunningSimulator, credential: ManagedIdentityCredential
) -> None:
    graph = await credential.get_token("https://graph.microsoft.com/.default")
    arm = await credential.get_token("https://management.azure.com/.default")
    assert claims(graph.token)["roles"] == ["Application.ReadWrite.OwnedBy"]
    assert "roles" not in claims(arm.token)


async def test_graph_refuses_a_caller_without_the_permission(
    cloud_env: RunningSimulator, graph: GraphServiceClient
) -> None:
    cloud_env.world.graph_app_roles = {}  # before the first token is issued
    with pytest.raises(APIError) as refused:
        await graph.applications.get()
    assert refused.value.response_status_code == 403
    assert "Insufficient privileges" in str(refused.value)


async def test_a_read_permission_reads_but_does_not_write(
    cloud_env: RunningSimulator, graph: GraphServiceClient
) -> None:
    cloud_env.world.graph_app_roles = {cloud_env.world.caller_object_id: ["Application.Read.All"]}
    listed = await graph.applications.get()
    assert listed is not None and listed.value == []
    with pytest.raises(APIError) as refused:
        await graph.applications.post(Application(display_name="not mine to make"))
    assert refused.value.response_status_code == 403
    assert not cloud_env.world.applications


async def test_an_organization_answers_its_members_only(ado: AdoClient, cloud_env: RunningSimulator) -> None:
    org, _, _ = org_and_project(cloud_env)
    status, body = await call(ado, "GET", f"{org}/_apis/connectionData", {"api-version": "7.1-preview"})
    assert status == 200 and body["authenticatedUser"]["id"]
    cloud_env.world.organizations[0].members = []
    status, body = await call(ado, "GET", f"{org}/_apis/connectionData", {"api-version": "7.1-preview"})
    assert status == 401 and body["typeKey"] == "UnauthorizedRequestException"
    status, _ = await call(ado, "GET", f"{org}/_apis/projects")
    assert status == 401


async def test_writing_service_connections_needs_endpoint_administrator(
    ado: AdoClient, cloud_env: RunningSimulator
) -> None:
    org, _, project_id = org_and_project(cloud_env)
    token = {"tokens": f"endpoints/{project_id}", "alwaysAllowAdministrators": "true", "api-version": "7.1"}
    permissions = f"{org}/_apis/permissions/{SERVICE_ENDPOINTS_NAMESPACE}/6"
    assert await call(ado, "GET", permissions, token) == (200, {"count": 1, "value": [True]})
    created = await create(ado, cloud_env)

    cloud_env.world.organizations[0].projects[0].endpoint_administrators = []
    assert await call(ado, "GET", permissions, token) == (200, {"count": 1, "value": [False]})
    status, listed = await call(ado, "GET", f"{org}/{project_id}/_apis/serviceendpoint/endpoints")
    assert status == 200 and [e["id"] for e in listed["value"]] == [created["id"]]  # members still read
    status, refused = await call(
        ado,
        "DELETE",
        f"{org}/_apis/serviceendpoint/endpoints/{created['id']}",
        {"projectIds": project_id, "api-version": "7.1"},
    )
    assert status == 403 and refused["typeKey"] == "AccessCheckException"
    body = wif_connection(
        project_id,
        "another",
        created["authorization"]["parameters"]["serviceprincipalid"],
        cloud_env.tenant_id,
    )
    status, refused = await call(ado, "POST", f"{org}/_apis/serviceendpoint/endpoints", body=body)
    assert status == 403 and "Endpoint Administrator" in refused["message"]
    assert [e.id for e in cloud_env.world.organizations[0].endpoints] == [created["id"]]
