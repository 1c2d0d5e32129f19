"""Application owners under Application.ReadWrite.OwnedBy, through msgraph-sdk.

The caller owns the applications (and service principals) it creates, may write only to those it
owns, and lists them with `GET /servicePrincipals/{id}/ownedObjects/graph.application`.
"""

from __future__ import annotations

from collections.abc import Awaitable

import httpx
import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.default_query_parameters import QueryParameters
from msgraph.generated.models.application import Application
from msgraph.generated.models.federated_identity_credential import FederatedIdentityCredential
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.service_principal import ServicePrincipal
from msgraph.generated.service_principals.item.owned_objects.graph_application import (
    graph_application_request_builder as owned_apps,
)
from msgraph.graph_service_client import GraphServiceClient

from cloudsim.testing import RunningSimulator

from .test_graph_rules import _context, _token

ISSUER = "https://login.microsoftonline.com/t/v2.0"


def credential(name: str) -> FederatedIdentityCredential:
    return FederatedIdentityCredential(
        name=name, issuer=ISSUER, subject=f"sc://contoso/{name}", audiences=["api://AzureADTokenExchange"]
    )


async def owned_app_ids(graph: GraphServiceClient, principal_id: str, page_size: int = 999) -> list[str]:
    """Every application the principal owns, following nextLink page by page."""
    builder = graph.service_principals.by_service_principal_id(principal_id).owned_objects.graph_application
    query = owned_apps.GraphApplicationRequestBuilder.GraphApplicationRequestBuilderGetQueryParameters(
        select=["id", "appId"], top=page_size
    )
    page = await builder.get(RequestConfiguration(query_parameters=query))
    found: list[str] = []
    while page is not None:
        found += [str(app.app_id) for app in page.value or []]
        page = await builder.with_url(page.odata_next_link).get() if page.odata_next_link else None
    return found


async def refused(request: Awaitable[object]) -> ODataError:
    with pytest.raises(ODataError) as error:
        await request
    return error.value


def assert_denied(error: ODataError) -> None:
    assert error.response_status_code == 403
    assert error.error is not None and error.error.code == "Authorization_RequestDenied"
    assert error.error.message == "Insufficient privileges to complete the operation."


async def test_the_caller_owns_what_it_creates_and_lists_it_in_pages(
    graph: GraphServiceClient, cloud_env: RunningSimulator
) -> None:
    posted = await graph.applications.post(Application(display_name="made-by-post"))
    config: RequestConfiguration[QueryParameters] = RequestConfiguration()
    config.headers.add("Prefer", "create-if-missing")
    upserted = await graph.applications_with_unique_name("wif-reconciler-owned").patch(
        Application(display_name="made-by-upsert"), config
    )
    foreign = await cloud_env.admin.seed_application("made-by-a-person", owned=False)
    assert posted is not None and upserted is not None

    me = cloud_env.world.caller_object_id  # the managed identity's service principal (the token's oid)
    listed = await owned_app_ids(graph, me, page_size=1)
    assert sorted(listed) == sorted([str(posted.app_id), str(upserted.app_id)])
    assert foreign["appId"] not in listed


async def test_writes_to_an_application_the_caller_does_not_own_are_refused(
    graph: GraphServiceClient, cloud_env: RunningSimulator
) -> None:
    foreign = await cloud_env.admin.seed_application("foreign", service_principal=False, owned=False)
    app = graph.applications.by_application_id(foreign["id"])
    credentials = app.federated_identity_credentials

    assert_denied(await refused(credentials.post(credential("new-cred"))))
    assert_denied(await refused(graph.service_principals.post(ServicePrincipal(app_id=foreign["appId"]))))
    assert_denied(await refused(app.delete()))
    upsert: RequestConfiguration[QueryParameters] = RequestConfiguration()
    upsert.headers.add("Prefer", "create-if-missing")
    by_name = app.federated_identity_credentials_with_name("upserted")
    assert_denied(await refused(by_name.patch(credential("upserted"), upsert)))
    # Reading stays allowed (Application.Read.All); nothing was written.
    read = await app.get()
    assert read is not None and read.display_name == "foreign"
    listed = await credentials.get()
    assert listed is not None and listed.value == []
    assert not [s for s in cloud_env.world.service_principals if s.app_id == foreign["appId"]]


async def test_adding_the_caller_as_owner_lets_it_write_and_removing_it_takes_that_back(
    graph: GraphServiceClient, cloud_env: RunningSimulator
) -> None:
    foreign = await cloud_env.admin.seed_application("adopted", service_principal=False, owned=False)
    me = cloud_env.world.caller_object_id
    credentials = graph.applications.by_application_id(foreign["id"]).federated_identity_credentials

    assert await cloud_env.admin.add_owner(foreign["appId"]) == [me]
    assert await owned_app_ids(graph, me) == [foreign["appId"]]
    created = await credentials.post(credential("after-owner-add"))
    assert created is not None and created.id
    principal = await graph.service_principals.post(ServicePrincipal(app_id=foreign["appId"]))
    assert principal is not None and principal.id
    # The principal it created is its own too: the untyped listing holds both, each with its type.
    owned = await graph.service_principals.by_service_principal_id(me).owned_objects.get()
    assert owned is not None
    kinds = sorted((item.odata_type or "", str(item.id)) for item in owned.value or [])
    assert kinds == sorted(
        [("#microsoft.graph.application", foreign["id"]), ("#microsoft.graph.servicePrincipal", principal.id)]
    )

    await cloud_env.admin.remove_owner(foreign["appId"], me)
    assert_denied(await refused(credentials.by_federated_identity_credential_id(str(created.id)).delete()))
    assert await owned_app_ids(graph, me) == []


async def test_a_batch_runs_as_its_caller(cloud_env: RunningSimulator) -> None:
    """The reconciler reads ownedObjects inside $batch; a write in a batch is checked like any other."""
    foreign = await cloud_env.admin.seed_application("batched", owned=False)
    me = cloud_env.world.caller_object_id
    body = {
        "requests": [
            {
                "id": "owned",
                "method": "GET",
                "url": f"/servicePrincipals/{me}/ownedObjects/graph.application",
            },
            {
                "id": "write",
                "method": "POST",
                "url": f"/applications/{foreign['id']}/federatedIdentityCredentials",
                "headers": {"Content-Type": "application/json"},
                "body": {
                    "name": "in-batch",
                    "issuer": ISSUER,
                    "subject": "sc://contoso/in-batch",
                    "audiences": ["api://AzureADTokenExchange"],
                },
            },
        ]
    }
    token = await _token(cloud_env)
    async with httpx.AsyncClient(verify=_context(cloud_env)) as client:
        response = await client.post(
            f"{cloud_env.graph_url}/v1.0/$batch", json=body, headers={"Authorization": f"Bearer {token}"}
        )
    answers = {r["id"]: r for r in response.json()["responses"]}
    assert answers["owned"]["status"] == 200 and answers["owned"]["body"]["value"] == []
    assert answers["write"]["status"] == 403
    assert answers["write"]["body"]["error"]["code"] == "Authorization_RequestDenied"


async def test_owned_objects_of_an_unknown_principal_is_not_found(graph: GraphServiceClient) -> None:
    error = await refused(
        graph.service_principals.by_service_principal_id(
            "00000000-0000-4000-8000-000000000000"
        ).owned_objects.graph_application.get()
    )
    assert error.response_status_code == 404
    assert error.error is not None and error.error.code == "Request_ResourceNotFound"
