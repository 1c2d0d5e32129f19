"""Reading applications: filtered reads, or one listing of the tenant when most of it is wanted."""

from __future__ import annotations

import time

from cloudsim.state import Application, ServicePrincipal, new_id
from reconciler.engine.run import EngineOptions
from tests.engine.conftest import Tenant


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
    filtered = await tenant.run(configs, dry_run=True, options=EngineOptions(listing_threshold=100_000))
    listed = await tenant.run(configs, dry_run=True, options=EngineOptions(listing_threshold=1))
    # 620 apps: 42 filters in 3 batches, and the principals' 3 batches, against one count, one
    # page of the whole (620-app) tenant, and the same 3 principal batches. Both also read the
    # one page of what the reconciler's identity owns (the configs adopt existing apps).
    assert filtered.requests["graph"]["reads"] == 7
    assert listed.requests["graph"]["reads"] == 6
    assert listed.plan == filtered.plan
    assert not any(e.code == "application-not-found" for e in listed.plan.errors)


async def test_a_large_tenant_keeps_the_filtered_reads(tenant: Tenant) -> None:
    app_ids = seed(tenant, 1100)
    configs = [tenant.config(f"c{n}", app_id) for n, app_id in enumerate(app_ids[:310])]
    report = await tenant.run(configs, dry_run=True, options=EngineOptions(listing_threshold=1))
    # Listing 1,100 apps takes 2 pages, filtering 310 takes 2 batches: not cheaper, so filters
    # (2 batches + 2 principal batches), the count that decided it and the 2 pages of owned apps.
    assert report.requests["graph"]["reads"] == 7
