"""msgraph-sdk against the simulator: each operation the reconciler uses, and each documented error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest
from azure.identity.aio import ManagedIdentityCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.default_query_parameters import QueryParameters
from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder
from msgraph.generated.models.application import Application
from msgraph.generated.models.federated_identity_credential import FederatedIdentityCredential
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.service_principal import ServicePrincipal
from msgraph.graph_service_client import GraphServiceClient

from cloudsim.testing import RunningSimulator

from .conftest import graph_client

ISSUER = "https://login.microsoftonline.com/t/v2.0"


def fic(name: str, subject: str, issuer: str = ISSUER) -> FederatedIdentityCredential:
    return FederatedIdentityCredential(
        name=name, issuer=issuer, subject=subject, audiences=["api://AzureADTokenExchange"]
    )


async def new_app(graph: GraphServiceClient, name: str = "wif-app") -> Application:
    created = await graph.applications.post(Application(display_name=name))
    assert created is not None and created.id and created.app_id
    return created


async def test_application_create_get_by_id_and_by_app_id(graph: GraphServiceClient) -> None:
    app = await new_app(graph)
    assert app.id and app.app_id
    by_id = await graph.applications.by_application_id(app.id).get()
    assert by_id is not None and by_id.display_name == "wif-app"
    by_app_id = await graph.applications_with_app_id(app.app_id).get()
    assert by_app_id is not None and by_app_id.id == app.id


async def test_application_list_filters_selects_expands_and_pages(graph: GraphServiceClient) -> None:
    apps = [await new_app(graph, f"app-{n}") for n in range(5)]
    first = apps[0]
    assert first.id and first.app_id
    await graph.applications.by_application_id(first.id).federated_identity_credentials.post(
        fic("cred-1", "s1")
    )

    query = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
        filter=f"appId in ('{first.app_id}', '{apps[1].app_id}')",
        select=["id", "appId", "displayName"],
        expand=["federatedIdentityCredentials"],
    )
    page = await graph.applications.get(RequestConfiguration(query_parameters=query))
    assert page is not None and page.value is not None
    assert {a.app_id for a in page.value} == {first.app_id, apps[1].app_id}
    mine = next(a for a in page.value if a.id == first.id)
    assert [f.name for f in mine.federated_identity_credentials or []] == ["cred-1"]

    paged = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(top=2)
    seen: list[str] = []
    response = await graph.applications.get(RequestConfiguration(query_parameters=paged))
    while response is not None:
        seen += [a.id for a in response.value or [] if a.id]
        if not response.odata_next_link:
            break
        response = await graph.applications.with_url(response.odata_next_link).get()
    assert seen == [a.id for a in apps]


async def test_service_principal_create_get_by_app_id_and_filter(graph: GraphServiceClient) -> None:
    app = await new_app(graph)
    assert app.app_id
    sp = await graph.service_principals.post(ServicePrincipal(app_id=app.app_id))
    assert sp is not None and sp.app_id == app.app_id
    by_app_id = await graph.service_principals_with_app_id(app.app_id).get()
    assert by_app_id is not None and by_app_id.id == sp.id
    listed = await graph.service_principals.get(
        RequestConfiguration(
            query_parameters=graph.service_principals.ServicePrincipalsRequestBuilderGetQueryParameters(
                filter=f"appId eq '{app.app_id}'"
            )
        )
    )
    assert listed is not None and [s.id for s in listed.value or []] == [sp.id]
    with pytest.raises(ODataError) as duplicate:
        await graph.service_principals.post(ServicePrincipal(app_id=app.app_id))
    assert duplicate.value.response_status_code == 409


async def test_fic_lifecycle_create_list_get_patch_delete(graph: GraphServiceClient) -> None:
    app = await new_app(graph)
    assert app.id
    fics = graph.applications.by_application_id(app.id).federated_identity_credentials
    created = await fics.post(fic("sc-payments", "sub-1"))
    assert created is not None and created.id
    listed = await fics.get()
    assert listed is not None and [f.name for f in listed.value or []] == ["sc-payments"]
    by_name = await fics.by_federated_identity_credential_id("sc-payments").get()
    assert by_name is not None and by_name.id == created.id
    await fics.by_federated_identity_credential_id(created.id).patch(
        FederatedIdentityCredential(subject="sub-2", description="managed-by: wif-reconciler")
    )
    changed = await fics.by_federated_identity_credential_id(created.id).get()
    assert changed is not None and changed.subject == "sub-2" and changed.issuer == ISSUER
    await fics.by_federated_identity_credential_id(created.id).delete()
    after = await fics.get()
    assert after is not None and after.value == []


async def test_fic_upsert_by_name_creates_then_updates(graph: GraphServiceClient) -> None:
    app = await new_app(graph)
    assert app.id
    item = graph.applications.by_application_id(app.id)
    upsert = item.federated_identity_credentials_with_name("up-1")
    config: RequestConfiguration[QueryParameters] = RequestConfiguration()
    config.headers.add("Prefer", "create-if-missing")
    created = await upsert.patch(fic("up-1", "first"), config)  # 201 with the new credential
    assert created is not None and created.subject == "first"
    updated = await upsert.patch(fic("up-1", "second"), config)  # 204: updated in place
    assert updated is None
    listed = await item.federated_identity_credentials.get()
    assert listed is not None and [(f.name, f.subject) for f in listed.value or []] == [("up-1", "second")]
    with pytest.raises(ODataError) as missing:
        await item.federated_identity_credentials_with_name("absent").patch(fic("absent", "x"))
    assert missing.value.response_status_code == 404


async def graph_error(call: Awaitable[object]) -> tuple[int, str]:
    with pytest.raises(ODataError) as raised:
        await call
    error = raised.value
    assert error.error is not None and error.error.code is not None
    return int(error.response_status_code or 0), error.error.code


async def test_fic_rules_answer_with_documented_errors(graph: GraphServiceClient) -> None:
    app = await new_app(graph)
    assert app.id
    fics = graph.applications.by_application_id(app.id).federated_identity_credentials
    await fics.post(fic("first", "subject-a"))
    assert await graph_error(fics.post(fic("first", "subject-b"))) == (
        409,
        "Request_MultipleObjectsWithSameKeyValue",
    )
    assert await graph_error(fics.post(fic("second", "subject-a"))) == (
        400,
        "InvalidFederatedIdentityCredentialValue",
    )
    # Subjects compare case-sensitively, so this one is new.
    assert await fics.post(fic("third", "SUBJECT-A")) is not None
    assert await graph_error(fics.post(fic("x", "s-short-name"))) == (400, "Request_BadRequest")
    assert await graph_error(fics.post(fic("bad name!", "s-bad"))) == (400, "Request_BadRequest")
    two_audiences = fic("aud2", "s-aud")
    two_audiences.audiences = ["api://AzureADTokenExchange", "api://other"]
    assert await graph_error(fics.post(two_audiences)) == (400, "Request_BadRequest")
    renamed = FederatedIdentityCredential(name="renamed")
    assert await graph_error(fics.by_federated_identity_credential_id("first").patch(renamed)) == (
        400,
        "Request_BadRequest",
    )
    missing = fics.by_federated_identity_credential_id("nope").get()
    assert await graph_error(missing) == (404, "Request_ResourceNotFound")
    unknown_app = graph.applications.by_application_id("00000000-0000-0000-0000-000000000000").get()
    assert await graph_error(unknown_app) == (404, "Request_ResourceNotFound")


async def test_twenty_fics_per_application_at_most(graph: GraphServiceClient) -> None:
    app = await new_app(graph)
    assert app.id
    fics = graph.applications.by_application_id(app.id).federated_identity_credentials
    for n in range(20):
        await fics.post(fic(f"fic-{n:02}", f"subject-{n}"))
    status, _code = await graph_error(fics.post(fic("fic-20", "subject-20")))
    assert status == 400
    listed = await fics.get()
    assert listed is not None and len(listed.value or []) == 20


async def test_overlapping_fic_writes_to_one_application_conflict(
    graph: GraphServiceClient, cloud_env: RunningSimulator
) -> None:
    await cloud_env.admin.update_settings(fic_write_hold_s=0.5)
    app = await new_app(graph)
    assert app.id
    fics = graph.applications.by_application_id(app.id).federated_identity_credentials
    await fics.post(fic("one", "s1"))
    status, _code = await graph_error(fics.post(fic("two", "s2")))
    assert status == 409
    await asyncio.sleep(0.6)
    assert await fics.post(fic("two", "s2")) is not None


async def test_wrong_audience_token_is_refused_with_graph_error_shape(
    cloud_env: RunningSimulator, credential: ManagedIdentityCredential
) -> None:
    wrong = graph_client(cloud_env, credential, scope="https://management.azure.com/.default")
    assert await graph_error(wrong.applications.get()) == (401, "InvalidAuthenticationToken")
