"""Plain HTTPS calls to the simulator with tokens from its MI endpoint: the request is exactly what
the test writes, no SDK model in between."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from cloudsim.testing import RunningSimulator, running_simulator

ARM = "https://management.azure.com"
Json = Any


@dataclass
class Raw:
    sim: RunningSimulator
    session: aiohttp.ClientSession

    async def token(self, resource: str) -> str:
        headers = {"X-IDENTITY-HEADER": self.sim.env["IDENTITY_HEADER"]}
        params = {"resource": resource, "api-version": "2019-08-01"}
        async with self.session.get(self.sim.identity_endpoint, params=params, headers=headers) as response:
            return str((await response.json())["access_token"])

    async def call(
        self, method: str, url: str, resource: str, body: Json = None, **params: str
    ) -> tuple[int, Json]:
        headers = {"Authorization": f"Bearer {await self.token(resource)}"}
        async with self.session.request(method, url, json=body, params=params, headers=headers) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None)

    async def arm(
        self, method: str, path: str, body: Json = None, version: str = "2022-04-01"
    ) -> tuple[int, Json]:
        return await self.call(method, self.sim.arm_url + path, ARM, body, **{"api-version": version})


@asynccontextmanager
async def raw_simulator() -> AsyncIterator[Raw]:
    """A simulator of its own and a session that trusts its CA."""
    async with running_simulator() as sim:
        context = ssl.create_default_context(cafile=str(sim.ca_path))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            yield Raw(sim, session)
