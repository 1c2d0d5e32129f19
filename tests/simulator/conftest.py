"""Clients built the way the reconciler builds them: real SDKs, ManagedIdentityCredential, HTTPS."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx
import pytest
from azure.core import AsyncPipelineClient
from azure.core.pipeline import policies
from azure.core.rest import AsyncHttpResponse, HttpRequest
from azure.identity.aio import ManagedIdentityCredential
from azure.mgmt.authorization.aio import AuthorizationManagementClient
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory

from cloudsim.state import ADO_RESOURCE_APP_ID
from cloudsim.testing import SAMPLE_SUBSCRIPTION, RunningSimulator, cloud_env, cloud_simulator
from servicebus_peer.testing import servicebus_peer

__all__ = ["cloud_env", "cloud_simulator", "servicebus_peer"]

ADO_SCOPE = f"{ADO_RESOURCE_APP_ID}/.default"


@pytest.fixture
async def credential(cloud_env: RunningSimulator) -> AsyncIterator[ManagedIdentityCredential]:
    async with ManagedIdentityCredential(connection_verify=str(cloud_env.ca_path)) as credential:
        yield credential


def graph_client(
    sim: RunningSimulator,
    credential: ManagedIdentityCredential,
    scope: str = "https://graph.microsoft.com/.default",
) -> GraphServiceClient:
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[scope], allowed_hosts=["127.0.0.1"])
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(sim.ca_path)))
    )
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = sim.graph_url + "/v1.0"
    return GraphServiceClient(request_adapter=adapter)


@pytest.fixture
def graph(cloud_env: RunningSimulator, credential: ManagedIdentityCredential) -> GraphServiceClient:
    return graph_client(cloud_env, credential)


def arm_client(
    sim: RunningSimulator,
    credential: ManagedIdentityCredential,
    scope: str = "https://management.azure.com/.default",
    retry_total: int = 0,
) -> AuthorizationManagementClient:
    return AuthorizationManagementClient(
        credential,
        SAMPLE_SUBSCRIPTION,
        base_url=sim.arm_url,
        connection_verify=str(sim.ca_path),
        credential_scopes=[scope],
        retry_total=retry_total,
    )


@pytest.fixture
async def arm(
    cloud_env: RunningSimulator, credential: ManagedIdentityCredential
) -> AsyncIterator[AuthorizationManagementClient]:
    async with arm_client(cloud_env, credential) as client:
        yield client


def ado_pipeline(
    sim: RunningSimulator, credential: ManagedIdentityCredential, retry_total: int = 0
) -> AsyncPipelineClient[HttpRequest, AsyncHttpResponse]:
    return AsyncPipelineClient(
        base_url=sim.ado_url,
        policies=[
            policies.HeadersPolicy(),
            policies.AsyncRetryPolicy(retry_total=retry_total, retry_backoff_factor=0.1),
            policies.AsyncBearerTokenCredentialPolicy(credential, ADO_SCOPE),
            policies.ContentDecodePolicy(),
        ],
        connection_verify=str(sim.ca_path),
    )


@pytest.fixture
async def ado(
    cloud_env: RunningSimulator, credential: ManagedIdentityCredential
) -> AsyncIterator[AsyncPipelineClient[HttpRequest, AsyncHttpResponse]]:
    async with ado_pipeline(cloud_env, credential) as client:
        yield client
