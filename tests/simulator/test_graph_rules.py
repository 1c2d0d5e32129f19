"""Graph rules the reconciler leans on: upsert by uniqueName, the 15-value `in` limit, relative batch URLs."""

from __future__ import annotations

import ssl

import httpx
import pytest
from azure.identity.aio import ManagedIdentityCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.default_query_parameters import QueryParameters
from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder
from msgraph.generated.models.application import Application
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.graph_service_client import GraphServiceClient

from cloudsim.testing import RunningSimulator


def create_if_missing() -> RequestConfiguration[QueryParameters]:
    config: RequestConfiguration[QueryParameters] = RequestConfiguration()
    config.headers.add("Prefer", "create-if-missing")
    return config


async def test_upsert_by_unique_name_creates_once_then_updates(graph: GraphServiceClient) -> None:
    builder = graph.applications_with_unique_name("wif-reconciler-abc")
    body = Application(display_name="sc-new", tags=["wif-reconciler:managed"])
    created = await builder.patch(body, create_if_missing())
    assert created is not None and created.app_id and created.unique_name == "wif-reconciler-abc"
    assert created.tags == ["wif-reconciler:managed"]
    again = await builder.patch(Application(display_name="sc-renamed"), create_if_missing())
    assert again is None  # 204: it existed and was updated
    found = await builder.get()
    assert found is not None and found.id == created.id and found.display_name == "sc-renamed"


async def test_upsert_without_prefer_does_not_create(graph: GraphServiceClient) -> None:
    with pytest.raises(ODataError) as missing:
        await graph.applications_with_unique_name("nobody").patch(Application(display_name="x"))
    assert missing.value.response_status_code == 404


async def test_in_filter_takes_at_most_fifteen_values(graph: GraphServiceClient) -> None:
    def query(
        count: int,
    ) -> RequestConfiguration[ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters]:
        ids = ", ".join(f"'{n:08d}-0000-0000-0000-000000000000'" for n in range(count))
        parameters = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
            filter=f"appId in ({ids})"
        )
        return RequestConfiguration(query_parameters=parameters)

    listed = await graph.applications.get(query(15))
    assert listed is not None and listed.value == []
    with pytest.raises(ODataError) as too_many:
        await graph.applications.get(query(16))
    assert too_many.value.response_status_code == 400
    assert too_many.value.error is not None and too_many.value.error.code == "Request_UnsupportedQuery"


def _filtered(
    text: str,
) -> RequestConfiguration[ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters]:
    parameters = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
        filter=text, select=["appId", "displayName"]
    )
    return RequestConfiguration(query_parameters=parameters)


async def test_applications_filter_on_a_tag_with_any_and_on_nothing_else(graph: GraphServiceClient) -> None:
    """`tags/any(t:t eq 'x')` on applications, whatever the range variable; a lambda on a scalar
    property, or `eq` on the collection itself, answers 400 as Graph does."""
    for name, tags in (("sc-tagged", ["wif-reconciler:managed", "o'brien"]), ("sc-plain", ["other"])):
        await graph.applications.post(Application(display_name=name, tags=tags))
    for text in ("tags/any(t:t eq 'wif-reconciler:managed')", "tags/any( tag : tag eq 'o''brien' )"):
        listed = await graph.applications.get(_filtered(text))
        assert listed is not None and [a.display_name for a in listed.value or []] == ["sc-tagged"], text
    for text in ("displayName/any(t:t eq 'sc-tagged')", "tags eq 'other'", "tags/any(t:u eq 'other')"):
        with pytest.raises(ODataError) as refused:
            await graph.applications.get(_filtered(text))
        assert refused.value.response_status_code == 400, text
        assert refused.value.error is not None and refused.value.error.code == "Request_UnsupportedQuery"


async def test_batch_rejects_absolute_urls_and_serves_relative_ones(cloud_env: RunningSimulator) -> None:
    token = await _token(cloud_env)
    body = {
        "requests": [
            {"id": "absolute", "method": "GET", "url": f"{cloud_env.graph_url}/v1.0/applications"},
            {"id": "relative", "method": "GET", "url": "/applications?$top=1"},
        ]
    }
    async with httpx.AsyncClient(verify=_context(cloud_env)) as client:
        response = await client.post(
            f"{cloud_env.graph_url}/v1.0/$batch", json=body, headers={"Authorization": f"Bearer {token}"}
        )
    statuses = {r["id"]: r["status"] for r in response.json()["responses"]}
    assert statuses == {"absolute": 400, "relative": 200}


def _context(sim: RunningSimulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(sim.ca_path))


async def _token(sim: RunningSimulator) -> str:
    async with ManagedIdentityCredential(connection_verify=str(sim.ca_path)) as credential:
        token: str = (await credential.get_token("https://graph.microsoft.com/.default")).token
        return token
