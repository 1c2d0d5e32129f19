"""The engine paces itself under each API's budget instead of running into 429s (issue 11).

The simulator enforces the same budgets (cloudsim/limits.py) and counts what it answered 429; a
pass that spends more than one window allows must still get no 429 and complete.
"""

from __future__ import annotations

import asyncio

import pytest

from cloudsim.limits import Limits
from cloudsim.testing import SAMPLE_SUBSCRIPTION
from reconciler.adapters.ado import AdoAdapter
from reconciler.adapters.arm import ArmAdapter
from reconciler.adapters.metering import RequestMeter
from reconciler.adapters.pacing import Budgets, graph_batch_units, graph_request_units
from reconciler.cloud import CloudError
from reconciler.core.identifiers import ArmScope, Guid
from reconciler.engine.run import EngineOptions, Status, default_credential
from tests.engine.conftest import FAST, Tenant
from tests.engine.test_listing import seed

# Small budgets, the same on both sides, so that a test-sized pass exceeds them.
GRAPH_UNITS = 100


def test_resource_units_follow_graphs_identity_table() -> None:
    expanded = "/v1.0/applications?$filter=appId in ('a')&$select=id&$expand=federatedIdentityCredentials"
    assert graph_request_units("GET", expanded) == 2  # 2, +1 $expand, -1 $select
    assert graph_request_units("GET", "/v1.0/applications") == 2
    assert graph_request_units("GET", "/v1.0/servicePrincipals?$select=id") == 1  # never below 1
    assert graph_request_units("PATCH", "/v1.0/applications/x") == 1
    body = (
        b'{"requests": [{"id": "1", "method": "GET", "url": "/applications?$expand=x"},'
        b' {"id": "2", "method": "DELETE", "url": "/applications/x"}]}'
    )
    assert graph_batch_units(body) == (4, 1)


def test_a_bad_budget_setting_is_named() -> None:
    assert Budgets.from_settings({"WIF_GRAPH_UNITS_PER_10S": "8000"}).graph_units_per_10s == 8000
    assert Budgets.from_settings({"WIF_ARM_READS_BURST": ""}) == Budgets()
    with pytest.raises(CloudError, match=r"WIF_ADO_REQUESTS_PER_5MIN: expected 0 .* or a number"):
        Budgets.from_settings({"WIF_ADO_REQUESTS_PER_5MIN": "lots"})


async def test_a_pass_over_graphs_budget_is_paced_and_never_throttled(tenant: Tenant) -> None:
    await tenant.sim.admin.set_limits(Limits(graph_units=GRAPH_UNITS))
    configs = [tenant.config(f"c{n}", app_id) for n, app_id in enumerate(seed(tenant, 620))]
    options = EngineOptions(
        concurrency=FAST.concurrency,
        retry_total=FAST.retry_total,
        budgets=Budgets(graph_units_per_10s=GRAPH_UNITS),
    )
    # A sweep: low priority, which Graph throttles first (the simulator from 80% of the window).
    report = await tenant.run(configs, dry_run=True, options=options, low_priority=True)
    graph = (await tenant.sim.admin.counters())["graph"]
    # 42 filters of applications (2 units each), 42 of principals (1 each), 1 page of owned apps:
    # more than one window's budget, so unpaced the pass would have met 429s.
    assert graph["resourceUnits"] > GRAPH_UNITS
    assert graph["throttled"] == 0
    # Completed: every config was observed and planned (the seeded apps lack the tenant tag, so
    # they are blocked), none failed for a read.
    assert len(report.outcomes) == len(configs)
    assert {o.status for o in report.outcomes} == {Status.BLOCKED}


async def test_arm_reads_keep_to_the_token_bucket(tenant: Tenant) -> None:
    await tenant.sim.admin.set_limits(Limits(arm_read_burst=5, arm_read_refill_per_s=5))
    credential = default_credential(tenant.cloud)
    arm = ArmAdapter(
        credential, tenant.cloud, RequestMeter(), budgets=Budgets(arm_reads_burst=5, arm_reads_per_second=5)
    )
    try:
        scope = ArmScope(subscription=Guid(SAMPLE_SUBSCRIPTION))
        await asyncio.gather(*(arm.list_assignments(scope) for _ in range(12)))  # over the burst of 5
    finally:
        await arm.close()
        await credential.close()
    arm_counts = (await tenant.sim.admin.counters())["arm"]
    assert arm_counts["reads"] == 12
    assert arm_counts["throttled"] == 0


async def test_ado_requests_wait_for_the_window_instead_of_a_429(tenant: Tenant) -> None:
    # 10 requests in 5 minutes on both sides; the engine spends 90% of it (9), then holds back.
    await tenant.sim.admin.set_limits(Limits(ado_tstus=0.5, ado_tstus_per_request=0.05))
    credential = default_credential(tenant.cloud)
    ado = AdoAdapter(credential, tenant.cloud, RequestMeter(), budgets=Budgets(ado_requests_per_5min=10))
    try:
        await asyncio.gather(*(ado.list_connections("contoso", "payments") for _ in range(9)))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ado.list_connections("contoso", "payments"), timeout=1.0)
    finally:
        await ado.close()
        await credential.close()
    ado_counts = (await tenant.sim.admin.counters())["ado"]
    assert ado_counts["reads"] == 9
    assert ado_counts["throttled"] == 0


async def test_ado_s_retry_after_on_a_delayed_answer_holds_the_next_requests(tenant: Tenant) -> None:
    """Over its budget ADO first serves requests late with `Retry-After` (and `X-RateLimit-Delay`),
    and refuses with 429 only a caller that keeps going: "If you detect a Retry-After header in any
    response, wait until that amount of time has passed before sending another request." Our own
    budget is left large: only ADO's answer can hold the requests back."""
    window_s = 2.0  # the simulator's window: 3 requests per 2 s, then one delayed answer, then 429s
    await tenant.sim.admin.set_limits(
        Limits(ado_tstus=0.15, ado_tstus_per_request=0.05, ado_window_s=window_s, ado_slowdown_requests=1)
    )
    credential = default_credential(tenant.cloud)
    ado = AdoAdapter(credential, tenant.cloud, RequestMeter(), budgets=Budgets(ado_requests_per_5min=1000))
    started = asyncio.get_running_loop().time()
    try:
        for _ in range(6):
            await ado.list_connections("contoso", "payments")
    finally:
        await ado.close()
        await credential.close()
    ado_counts = (await tenant.sim.admin.counters())["ado"]
    assert ado_counts["throttled"] == 0, ado_counts  # held back by the Retry-After on a 200
    assert asyncio.get_running_loop().time() - started >= window_s - 0.5
