"""An azure-core AsyncPipelineClient (as the reconciler's ADO adapter uses) against the simulator."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from azure.core import AsyncPipelineClient
from azure.core.rest import HttpRequest
from msgraph.generated.models.federated_identity_credential import FederatedIdentityCredential
from msgraph.graph_service_client import GraphServiceClient

from cloudsim.testing import SAMPLE_SUBSCRIPTION, RunningSimulator

API = {"api-version": "7.1"}
PREVIEW = {"api-version": "7.1-preview.1"}
AdoClient = AsyncPipelineClient[Any, Any]


async def call(
    ado: AdoClient, method: str, url: str, params: dict[str, str] | None = None, body: object = None
) -> tuple[int, Any]:
    full_url = ado.format_url("/" + url)  # send_request does not join relative URLs itself
    request = HttpRequest(method, full_url, params=params if params is not None else API, json=body)
    response = await ado.send_request(request)
    data = b"" if response.status_code == 204 else await response.read()
    return response.status_code, (json.loads(data) if data else None)


def wif_connection(project_id: str, name: str, app_id: str, tenant_id: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "AzureRM",
        "url": "https://management.azure.com/",
        "data": {
            "subscriptionId": SAMPLE_SUBSCRIPTION,
            "subscriptionName": "Payments Prod",
            "environment": "AzureCloud",
            "scopeLevel": "Subscription",
            "creationMode": "Manual",
        },
        "authorization": {
            "scheme": "WorkloadIdentityFederation",
            "parameters": {"tenantid": tenant_id, "serviceprincipalid": app_id},
        },
        "serviceEndpointProjectReferences": [{"projectReference": {"id": project_id}, "name": name}],
    }


def org_and_project(sim: RunningSimulator) -> tuple[str, str, str]:
    org = sim.world.organizations[0]
    return org.name, org.id, org.projects[0].id


async def create(ado: AdoClient, sim: RunningSimulator, name: str = "kv-reader") -> dict[str, Any]:
    org, _org_id, project_id = org_and_project(sim)
    status, body = await call(
        ado,
        "POST",
        f"{org}/_apis/serviceendpoint/endpoints",
        body=wif_connection(project_id, name, str(uuid.uuid4()), sim.tenant_id),
    )
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def b64url_guid(guid: str) -> str:
    return base64.urlsafe_b64encode(uuid.UUID(guid).bytes_le).rstrip(b"=").decode()


async def test_connection_data_and_projects(ado: AdoClient, cloud_env: RunningSimulator) -> None:
    org, org_id, project_id = org_and_project(cloud_env)
    connection_data = await call(ado, "GET", f"{org}/_apis/connectionData", {"api-version": "7.1-preview"})
    assert connection_data[1]["instanceId"] == org_id
    status, projects = await call(ado, "GET", f"{org}/_apis/projects")
    assert status == 200 and projects["count"] == 2
    status, project = await call(ado, "GET", f"{org}/_apis/projects/payments")
    assert project["id"] == project_id
    status, missing = await call(ado, "GET", f"{org}/_apis/projects/nope")
    assert status == 404 and missing["typeKey"] == "ProjectDoesNotExistWithNameException"


async def test_create_generates_entra_issuer_and_subject(ado: AdoClient, cloud_env: RunningSimulator) -> None:
    _org, org_id, _project = org_and_project(cloud_env)
    created = await create(ado, cloud_env)
    parameters = created["authorization"]["parameters"]
    tenant = cloud_env.tenant_id
    assert (
        parameters["workloadIdentityFederationIssuer"] == f"https://login.microsoftonline.com/{tenant}/v2.0"
    )
    assert parameters["workloadIdentityFederationSubject"] == (
        f"/eid1/c/pub/t/{b64url_guid(tenant)}/a/rISbSSETf0KqFyZ8ppdXmA/sc/{org_id}/{created['id']}"
    )
    assert parameters["workloadIdentityFederationIssuerType"] == "EntraID"


async def test_list_filters_and_get_quirks(ado: AdoClient, cloud_env: RunningSimulator) -> None:
    org = org_and_project(cloud_env)[0]
    first = await create(ado, cloud_env, "conn-a")
    second = await create(ado, cloud_env, "conn-b")
    url = f"{org}/payments/_apis/serviceendpoint/endpoints"
    status, listed = await call(ado, "GET", url, {**API, "type": "azurerm"})
    assert status == 200 and listed["count"] == 2
    _s, by_name = await call(ado, "GET", url, {**API, "endpointNames": "conn-b"})
    assert [e["id"] for e in by_name["value"]] == [second["id"]]
    _s, by_id = await call(ado, "GET", url, {**API, "endpointIds": first["id"]})
    assert [e["name"] for e in by_id["value"]] == ["conn-a"]

    await cloud_env.admin.change_connection(org, first["id"], isReady=False)
    _s, ready_only = await call(ado, "GET", url, {**API, "type": "azurerm"})
    assert [e["id"] for e in ready_only["value"]] == [second["id"]]
    _s, with_failed = await call(ado, "GET", url, {**API, "includeFailed": "true"})
    assert with_failed["count"] == 2

    status, unknown = await call(ado, "GET", f"{url}/{uuid.uuid4()}")
    assert (status, unknown) == (200, None)  # the documented quirk: no 404
    status, missing_version = await call(ado, "GET", url, params={})
    assert status == 400 and missing_version["typeKey"] == "VssVersionNotSpecifiedException"


async def test_writes_answer_the_operation_state_the_setting_names(
    ado: AdoClient, cloud_env: RunningSimulator
) -> None:
    """`operationStatus` ({state, statusMessage}) comes with every endpoint; a write that does not
    complete (setting `ado_endpoint_write_state`) answers and leaves it not ready."""
    org = org_and_project(cloud_env)[0]
    ready = await create(ado, cloud_env, "ready")
    assert (ready["isReady"], ready["operationStatus"]) == (True, {"state": "Ready", "statusMessage": ""})
    await cloud_env.admin.update_settings(ado_endpoint_write_state="Failed")
    failed = await create(ado, cloud_env, "failed")
    assert failed["isReady"] is False and failed["operationStatus"]["state"] == "Failed"
    assert failed["operationStatus"]["statusMessage"]
    url = f"{org}/payments/_apis/serviceendpoint/endpoints"
    _s, listed = await call(ado, "GET", url)
    assert [e["name"] for e in listed["value"]] == ["ready"]
    _s, with_failed = await call(ado, "GET", url, {**API, "includeFailed": "true"})
    assert sorted(e["name"] for e in with_failed["value"]) == ["failed", "ready"]


async def test_update_keeps_id_and_delete_removes(ado: AdoClient, cloud_env: RunningSimulator) -> None:
    org, _org_id, project_id = org_and_project(cloud_env)
    created = await create(ado, cloud_env)
    created["description"] = "managed-by: wif-reconciler"
    status, updated = await call(
        ado, "PUT", f"{org}/_apis/serviceendpoint/endpoints/{created['id']}", body=created
    )
    assert (
        status == 200 and updated["id"] == created["id"] and updated["description"] == created["description"]
    )
    status, _ = await call(
        ado,
        "DELETE",
        f"{org}/_apis/serviceendpoint/endpoints/{created['id']}",
        {**API, "projectIds": project_id},
    )
    assert status == 204
    _s, gone = await call(ado, "GET", f"{org}/payments/_apis/serviceendpoint/endpoints/{created['id']}")
    assert gone is None


async def test_convert_secret_connection_to_wif_in_place(ado: AdoClient, cloud_env: RunningSimulator) -> None:
    # The shape of a conversion, not its precondition (see the tests of the credential rule below).
    await cloud_env.admin.update_settings(ado_conversion_requires_fic=False)
    org = org_and_project(cloud_env)[0]
    created = await create(ado, cloud_env)
    await cloud_env.admin.convert_connection_to_secret(org, created["id"])
    _s, secret = await call(ado, "GET", f"{org}/payments/_apis/serviceendpoint/endpoints/{created['id']}")
    assert secret["authorization"]["scheme"] == "ServicePrincipal"
    assert "serviceprincipalkey" not in secret["authorization"]["parameters"]  # secrets never come back

    secret["authorization"]["scheme"] = "WorkloadIdentityFederation"
    secret["data"].pop("revertSchemeDeadline", None)
    status, converted = await call(
        ado,
        "PUT",
        f"{org}/_apis/serviceendpoint/endpoints/{created['id']}",
        {**API, "operation": "ConvertAuthenticationScheme"},
        secret,
    )
    assert status == 200 and converted["id"] == created["id"]
    assert converted["authorization"]["scheme"] == "WorkloadIdentityFederation"
    assert converted["authorization"]["parameters"]["workloadIdentityFederationIssuerType"] == "EntraID"
    assert "revertSchemeDeadline" in converted["data"]

    plain = dict(converted, authorization={"scheme": "ServicePrincipal", "parameters": {}})
    status, refused = await call(
        ado, "PUT", f"{org}/_apis/serviceendpoint/endpoints/{created['id']}", body=plain
    )
    assert status == 400 and refused["typeKey"] == "InvalidOperationException"


async def test_legacy_issuer_then_migration_to_entra_issuer(
    ado: AdoClient, cloud_env: RunningSimulator
) -> None:
    await cloud_env.admin.update_settings(ado_conversion_requires_fic=False)  # the shape, not the rule
    org, org_id, _project = org_and_project(cloud_env)
    created = await create(ado, cloud_env, "legacy-conn")
    await cloud_env.admin.mark_connection_legacy(org, created["id"])
    _s, legacy = await call(ado, "GET", f"{org}/payments/_apis/serviceendpoint/endpoints/{created['id']}")
    parameters = legacy["authorization"]["parameters"]
    assert parameters["workloadIdentityFederationIssuer"] == f"https://vstoken.dev.azure.com/{org_id}"
    assert parameters["workloadIdentityFederationSubject"] == f"sc://{org}/payments/legacy-conn"

    legacy["authorization"]["parameters"]["workloadIdentityFederationIssuerType"] = "EntraID"
    status, migrated = await call(
        ado,
        "PUT",
        f"{org}/_apis/serviceendpoint/endpoints/{created['id']}",
        {**API, "operation": "ConvertAuthenticationScheme"},
        legacy,
    )
    assert status == 200 and migrated["id"] == created["id"]
    issuer = migrated["authorization"]["parameters"]["workloadIdentityFederationIssuer"]
    assert issuer.startswith("https://login.microsoftonline.com/")


async def test_pipeline_permissions_get_patch_and_batch(ado: AdoClient, cloud_env: RunningSimulator) -> None:
    org = org_and_project(cloud_env)[0]
    first = await create(ado, cloud_env, "perm-a")
    second = await create(ado, cloud_env, "perm-b")
    url = f"{org}/payments/_apis/pipelines/pipelinePermissions/endpoint/{first['id']}"
    status, refused = await call(ado, "GET", url)
    assert status == 400 and refused["typeKey"] == "VssInvalidPreviewVersionException"
    _s, initial = await call(ado, "GET", url, PREVIEW)
    assert "allPipelines" not in initial and initial["pipelines"] == []  # optional: left out until set
    _s, patched = await call(ado, "PATCH", url, PREVIEW, {"pipelines": [{"id": 7, "authorized": True}]})
    _s, patched = await call(ado, "PATCH", url, PREVIEW, {"pipelines": [{"id": 9, "authorized": True}]})
    assert [p["id"] for p in patched["pipelines"]] == [7, 9]  # untouched pipelines stay
    for beyond_int32 in (2**31, 0, "7"):
        status, refused = await call(
            ado, "PATCH", url, PREVIEW, {"pipelines": [{"id": beyond_int32, "authorized": True}]}
        )
        assert status == 400, beyond_int32
    batch = [
        {"resource": {"type": "endpoint", "id": e["id"]}, "allPipelines": {"authorized": True}}
        for e in (first, second)
    ]
    status, result = await call(
        ado, "PATCH", f"{org}/payments/_apis/pipelines/pipelinepermissions", PREVIEW, batch
    )
    assert status == 200 and all(item["allPipelines"]["authorized"] for item in result["value"])


async def test_recreated_connection_has_new_id_and_no_permissions(
    ado: AdoClient, cloud_env: RunningSimulator
) -> None:
    org = org_and_project(cloud_env)[0]
    created = await create(ado, cloud_env)
    url = f"{org}/payments/_apis/pipelines/pipelinePermissions/endpoint/{created['id']}"
    await call(ado, "PATCH", url, PREVIEW, {"allPipelines": {"authorized": True}})
    new_id = await cloud_env.admin.recreate_connection(org, created["id"])
    assert new_id != created["id"]
    _s, listed = await call(
        ado, "GET", f"{org}/payments/_apis/serviceendpoint/endpoints", {**API, "endpointNames": "kv-reader"}
    )
    assert [e["id"] for e in listed["value"]] == [new_id]
    _s, permissions = await call(
        ado, "GET", f"{org}/payments/_apis/pipelines/pipelinePermissions/endpoint/{new_id}", PREVIEW
    )
    assert "allPipelines" not in permissions


def entra_claims(sim: RunningSimulator, org_id: str, connection_id: str) -> tuple[str, str]:
    """The issuer and subject ADO gives a connection on Entra's issuer (azure-contracts.md)."""
    tenant_part = f"/eid1/c/pub/t/{b64url_guid(sim.tenant_id)}"
    return (
        f"https://login.microsoftonline.com/{sim.tenant_id}/v2.0",
        f"{tenant_part}/a/rISbSSETf0KqFyZ8ppdXmA/sc/{org_id}/{connection_id}",
    )


async def trust(graph: GraphServiceClient, object_id: str, issuer: str, subject: str) -> None:
    await graph.applications.by_application_id(object_id).federated_identity_credentials.post(
        FederatedIdentityCredential(
            name="sc-converted", issuer=issuer, subject=subject, audiences=["api://AzureADTokenExchange"]
        )
    )


async def test_manual_conversion_is_refused_until_the_application_trusts_the_new_subject(
    ado: AdoClient, graph: GraphServiceClient, cloud_env: RunningSimulator
) -> None:
    org, org_id, project_id = org_and_project(cloud_env)
    app = await cloud_env.admin.seed_application("converted-app")
    connection = wif_connection(project_id, "to-convert", str(app["appId"]), cloud_env.tenant_id)
    _s, created = await call(ado, "POST", f"{org}/_apis/serviceendpoint/endpoints", body=connection)
    await cloud_env.admin.convert_connection_to_secret(org, created["id"])
    _s, secret = await call(ado, "GET", f"{org}/payments/_apis/serviceendpoint/endpoints/{created['id']}")
    secret["authorization"]["scheme"] = "WorkloadIdentityFederation"
    convert = {**API, "operation": "ConvertAuthenticationScheme"}
    url = f"{org}/_apis/serviceendpoint/endpoints/{created['id']}"

    status, refused = await call(ado, "PUT", url, convert, secret)  # the rule is on by default
    issuer, subject = entra_claims(cloud_env, org_id, created["id"])
    assert status == 400 and "could not be upgraded" in refused["message"]
    assert "no valid configuration exists" in refused["message"]
    assert issuer in refused["message"] and subject in refused["message"]
    _s, unchanged = await call(ado, "GET", f"{org}/payments/_apis/serviceendpoint/endpoints/{created['id']}")
    assert unchanged["authorization"]["scheme"] == "ServicePrincipal"

    await trust(graph, str(app["id"]), issuer, subject)
    status, converted = await call(ado, "PUT", url, convert, secret)
    assert (
        status == 200
        and converted["authorization"]["parameters"]["workloadIdentityFederationSubject"] == subject
    )


async def test_issuer_move_is_refused_until_the_application_trusts_the_entra_subject(
    ado: AdoClient, graph: GraphServiceClient, cloud_env: RunningSimulator
) -> None:
    org, org_id, project_id = org_and_project(cloud_env)
    app = await cloud_env.admin.seed_application("legacy-app")
    connection = wif_connection(project_id, "legacy", str(app["appId"]), cloud_env.tenant_id)
    _s, created = await call(ado, "POST", f"{org}/_apis/serviceendpoint/endpoints", body=connection)
    await cloud_env.admin.mark_connection_legacy(org, created["id"])
    _s, legacy = await call(ado, "GET", f"{org}/payments/_apis/serviceendpoint/endpoints/{created['id']}")
    convert = {**API, "operation": "ConvertAuthenticationScheme"}
    url = f"{org}/_apis/serviceendpoint/endpoints/{created['id']}"

    status, refused = await call(ado, "PUT", url, convert, legacy)
    issuer, subject = entra_claims(cloud_env, org_id, created["id"])
    assert status == 400 and issuer in refused["message"] and subject in refused["message"]
    _s, still = await call(ado, "GET", f"{org}/payments/_apis/serviceendpoint/endpoints/{created['id']}")
    assert still["authorization"]["parameters"]["workloadIdentityFederationIssuer"].startswith(
        "https://vstoken.dev.azure.com/"
    )

    await trust(graph, str(app["id"]), issuer, subject)
    status, moved = await call(ado, "PUT", url, convert, legacy)
    assert (
        status == 200 and moved["authorization"]["parameters"]["workloadIdentityFederationIssuer"] == issuer
    )
