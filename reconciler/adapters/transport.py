"""One pooled HTTPS transport per azure-core client, trusting a private CA when the cloud names one.

azure-core's aiohttp transport builds a new SSLContext for every request when
`connection_verify` is a CA path, and aiohttp pools connections per SSL context, so
every request would open a new TLS connection. One context on the connector keeps
connections alive and reused.
"""

from __future__ import annotations

import ssl

import aiohttp
from azure.core.pipeline.transport import AioHttpTransport

from reconciler.cloud import Cloud


def aiohttp_transport(cloud: Cloud, *, connections: int = 100) -> AioHttpTransport:
    context = (
        ssl.create_default_context(cafile=cloud.ca_bundle)
        if cloud.ca_bundle
        else ssl.create_default_context()
    )
    connector = aiohttp.TCPConnector(ssl=context, limit=connections)
    return AioHttpTransport(session=aiohttp.ClientSession(connector=connector), session_owner=True)
