"""Reading applications: filtered reads, or one listing of the tenant when filters would exceed
Graph's resource-unit budget and the listing costs fewer units (pages of 100 with $expand)."""

from __future__ import annotations

import time

import pytest

from cloudsim.state import Application, ServicePrincipal, new_id
from reconciler.adapters.pacing import Budgets
from reconciler.engine.observe import listing_is_cheaper
from reconciler.engine.run import EngineOptions
from tests.engine.conftest import Tenant

NO_GRAPH_BUDGET = Budgets(graph_units_per_10s=0)  # every filter is over it (and nothing is paced)


def seed(tenant: Tenant, count: int) -> list[str]:
    """`count` apps with principals, straight into the simulated tenant (fast, for a large batch)."""
    world = tenant.sim.world
    created = time.time() - 3600
    app_ids = []
    for n in range(count):
        app = Application(
            id=new_id(),
            app_id=new_id(),
            display_name=f"bulk-{n}",
            created_at=created,
            owners=[world.caller_object_id],  # adopted apps: the reconciler owns them
        )
        world.applications.append(app)
        world.service_principals.append(ServicePrincipal(new_id(), app.app_id, app.display_name, created))
        app_ids.append(app.app_id)
    return app_ids


async def test_the_cheaper_read_is_chosen_and_both_see_the_same_tenant(tenant: Tenant) -> None:
    configs = [tenant.config(f"c{n}", app_id) for n, app_id in enumerate(seed(tenant, 620))]
    filtered = await tenant.run(configs, dry_run=True)
    # A budget of 0 units: every filter is over it, so the engine counts and compares units.
    listed = await tenant.run(configs, dry_run=True, options=EngineOptions(budgets=NO_GRAPH_BUDGET))
    # 620 apps: 42 filters (84 units) in 3 batches, and the principals' 3 batches, against one
    # count, 7 pages of 100 (14 units) of the whole (620-app) tenant, and the same 3 principal
    # batches. Both also read the one page of what the reconciler's identity owns (the configs
    # adopt existing apps).
    assert filtered.requests["graph"]["reads"] == 7
    assert listed.requests["graph"]["reads"] == 12
    assert listed.plan == filtered.plan
    assert not any(e.code == "application-not-found" for e in listed.plan.errors)


async def test_a_large_tenant_keeps_the_filtered_reads(tenant: Tenant) -> None:
    app_ids = seed(tenant, 1100)
    configs = [tenant.config(f"c{n}", app_id) for n, app_id in enumerate(app_ids[:150])]
    report = await tenant.run(configs, dry_run=True, options=EngineOptions(budgets=NO_GRAPH_BUDGET))
    # Listing 1,100 apps takes 11 pages (22 units), filtering 150 takes 10 filters (20 units):
    # not cheaper, so filters (1 batch + 1 principal batch), the count that decided it and the
    # 2 pages (999 a page) of the 1,100 apps the reconciler owns.
    assert report.requests["graph"]["reads"] == 5


@pytest.mark.parametrize(
    ("wanted", "tenant_size", "round_trip_s", "listed"),
    [
        (20_000, 40_000, 0.01, False),  # issue 11: 2,668 units fit the 3,500 budget; ~140 requests
        (620, 620, 0.01, False),  # a small tenant: always filters
        (40_000, 45_000, 0.01, True),  # 5,334 units of filters wait 5.2 s; 450 pages (900 units) 4.5 s
        (40_000, 45_000, 0.05, False),  # the same pages at 50 ms take 22 s: the filters finish first
        # issue 12's sweep: the listing spends 2,760 units instead of 5,068, but its 1,380 pages
        # take 41 s at 30 ms where the filters wait 4.5 s for the budget
        (38_000, 138_000, 0.03, False),
        (30_000, 400_000, 0.001, False),  # over the budget, but listing 400,000 costs 8,000 units
    ],
)
def test_the_listing_is_chosen_by_resource_units_and_the_time_its_pages_take(
    wanted: int, tenant_size: int, round_trip_s: float, listed: bool
) -> None:
    assert listing_is_cheaper(wanted, tenant_size, 3500, round_trip_s) is listed
