"""Azure's own limits, on by default: Graph's $expand page cap and resource-unit budget, ARM's token
buckets, ADO's TSTU window, 503 without Retry-After; the lenient switch is never the default."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from cloudsim.faults import Faults
from cloudsim.limits import Limits
from cloudsim.state import ADO_RESOURCE_APP_ID
from cloudsim.testing import SAMPLE_SUBSCRIPTION, RunningSimulator

RESOURCES = {
    "graph": "https://graph.microsoft.com",
    "arm": "https://management.azure.com",
    "ado": ADO_RESOURCE_APP_ID,
}
ARM_LIST = (
    f"/subscriptions/{SAMPLE_SUBSCRIPTION}/providers/Microsoft.Authorization/roleAssignments"
    "?api-version=2022-04-01"
)


class Raw:
    """Plain HTTPS requests with a token per API, to see statuses and headers as sent."""

    def __init__(self, sim: RunningSimulator, session: aiohttp.ClientSession) -> None:
        self.sim, self.session = sim, session
        self.urls = {"graph": sim.graph_url, "arm": sim.arm_url, "ado": sim.ado_url}

    async def get(self, api: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        params = {"resource": RESOURCES[api], "api-version": "2019-08-01"}
        identity = {"X-IDENTITY-HEADER": self.sim.env["IDENTITY_HEADER"]}
        async with self.session.get(self.sim.identity_endpoint, params=params, headers=identity) as answer:
            token = (await answer.json())["access_token"]
        async with self.session.get(
            self.urls[api] + path, headers={"Authorization": f"Bearer {token}", **(headers or {})}
        ) as answer:
            return answer.status, await answer.json(content_type=None), answer.headers


@pytest.fixture
async def raw(cloud_env: RunningSimulator) -> AsyncIterator[Raw]:
    context = ssl.create_default_context(cafile=str(cloud_env.ca_path))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield Raw(cloud_env, session)


async def test_the_limits_are_azures_by_default_and_reset_restores_them(cloud_env: RunningSimulator) -> None:
    assert cloud_env.simulator.throttle.limits == Limits()
    assert Limits().graph_units == 3500 and Limits().arm_read_burst == 250
    await cloud_env.admin.set_limits(Limits.lenient())
    assert cloud_env.simulator.throttle.limits.graph_units == 0
    await cloud_env.admin.reset()
    assert cloud_env.simulator.throttle.limits == Limits()


async def test_expand_caps_a_page_at_100_and_costs_one_unit_more(
    cloud_env: RunningSimulator, raw: Raw
) -> None:
    for n in range(105):
        await cloud_env.admin.seed_application(f"paged-{n}")
    status, body, headers = await raw.get(
        "graph", "/v1.0/applications?$top=999&$expand=federatedIdentityCredentials"
    )
    assert status == 200 and len(body["value"]) == 100 and "@odata.nextLink" in body
    assert headers["x-ms-resource-unit"] == "3"  # listing applications 2, $expand +1
    status, body, headers = await raw.get("graph", "/v1.0/applications?$top=999&$select=id")
    assert status == 200 and len(body["value"]) >= 105 and "@odata.nextLink" not in body
    assert headers["x-ms-resource-unit"] == "1"  # $select -1


async def test_graph_answers_429_with_retry_after_past_its_resource_unit_budget(
    cloud_env: RunningSimulator, raw: Raw
) -> None:
    await cloud_env.admin.set_limits(Limits(graph_units=6))
    expanded = "/v1.0/applications?$expand=federatedIdentityCredentials"
    status, _, headers = await raw.get("graph", expanded)
    assert status == 200 and headers["x-ms-throttle-limit-percentage"] == "50"  # 3 units of 6
    status, _, headers = await raw.get("graph", expanded)
    assert status == 200 and headers["x-ms-throttle-limit-percentage"] == "100"  # 6 units: the budget
    status, body, headers = await raw.get("graph", expanded)
    assert status == 429 and body["error"]["code"] == "TooManyRequests"
    assert 1 <= int(headers["Retry-After"]) <= 10


async def test_low_priority_requests_are_throttled_first(cloud_env: RunningSimulator, raw: Raw) -> None:
    await cloud_env.admin.set_limits(Limits(graph_units=10))
    expanded = "/v1.0/applications?$expand=federatedIdentityCredentials"
    for _ in range(3):
        assert (await raw.get("graph", expanded))[0] == 200  # 9 of 10 units: past 80%
    low = {"x-ms-throttle-priority": "low"}
    assert (await raw.get("graph", "/v1.0/servicePrincipals?$select=id", low))[0] == 429
    assert (await raw.get("graph", "/v1.0/servicePrincipals?$select=id"))[0] == 200  # the last unit
    assert cloud_env.simulator.throttle.low_priority_requests == 1


async def test_arm_throttles_reads_by_a_token_bucket_per_subscription(
    cloud_env: RunningSimulator, raw: Raw
) -> None:
    await cloud_env.admin.set_limits(Limits(arm_read_burst=2, arm_read_refill_per_s=0.5))
    assert [(await raw.get("arm", ARM_LIST))[0] for _ in range(2)] == [200, 200]
    status, body, headers = await raw.get("arm", ARM_LIST)
    assert status == 429 and body["error"]["code"] == "TooManyRequests"
    assert int(headers["Retry-After"]) == 2  # one token at 0.5 per second
    assert headers["x-ms-ratelimit-remaining-subscription-reads"] == "0"
    other = ARM_LIST.replace(SAMPLE_SUBSCRIPTION, "99999999-2222-3333-4444-555555555555")
    assert (await raw.get("arm", other))[0] != 429  # another subscription has its own bucket


async def test_ado_answers_429_with_retry_after_and_rate_limit_headers_past_its_tstus(
    cloud_env: RunningSimulator, raw: Raw
) -> None:
    await cloud_env.admin.set_limits(Limits(ado_tstus=1.0, ado_tstus_per_request=0.5))
    org = cloud_env.world.organizations[0].name
    path = f"/{org}/_apis/projects?api-version=7.1"
    assert [(await raw.get("ado", path))[0] for _ in range(2)] == [200, 200]
    status, _, headers = await raw.get("ado", path)
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 300
    assert headers["X-RateLimit-Resource"] == "Core" and headers["X-RateLimit-Limit"] == "1"


async def test_503_comes_without_retry_after_and_429_with_it(cloud_env: RunningSimulator, raw: Raw) -> None:
    org = cloud_env.world.organizations[0].name
    path = f"/{org}/_apis/projects?api-version=7.1"
    await cloud_env.admin.set_faults({"ado": Faults(error_rate=1.0, error_statuses=[503])})
    status, _, headers = await raw.get("ado", path)
    assert status == 503 and "Retry-After" not in headers
    await cloud_env.admin.set_faults({"ado": Faults(error_rate=1.0, error_statuses=[429])})
    status, _, headers = await raw.get("ado", path)
    assert status == 429 and headers["Retry-After"] == "1"
