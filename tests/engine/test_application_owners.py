"""Adopting only owned applications: under Application.ReadWrite.OwnedBy the reconciler may change
only the applications its identity owns, so it checks before writing, with one listing per pass."""

from __future__ import annotations

from reconciler.engine.run import Status
from tests.engine.conftest import Tenant


def untouched(tenant: Tenant, app_id: str, config_id: str) -> None:
    """Nothing of the config exists: no credential on the app, no role, no connection."""
    world = tenant.sim.world
    app = world.application_by_app_id(app_id)
    assert app is not None and app.federated_credentials == []
    assert not [ra for ra in world.role_assignments if config_id in (ra.description or "")]
    org = world.organization("contoso")
    assert org is not None and not [e for e in org.endpoints if config_id in e.description]


async def test_a_config_on_a_foreign_application_is_blocked_until_the_identity_is_made_owner(
    tenant: Tenant,
) -> None:
    foreign = await tenant.sim.admin.seed_application("sc-made-by-hand", owned=False)
    bare = await tenant.sim.admin.seed_application("sc-no-principal", service_principal=False, owned=False)
    owned = await tenant.app("sc-adopted")
    configs = [
        tenant.config("on-foreign", foreign["appId"]),
        tenant.config("on-bare", bare["appId"]),
        tenant.config("on-owned", owned["appId"]),
    ]
    reconciler_id = tenant.sim.world.caller_object_id

    first = await tenant.run(configs)

    status = {o.config_id: o for o in first.outcomes}
    for config, app in ((configs[0], foreign), (configs[1], bare)):
        blocked = status[config.id]
        assert blocked.status is Status.BLOCKED
        assert f"az ad app owner add --id {app['appId']} --owner-object-id {reconciler_id}" in blocked.reason
        untouched(tenant, app["appId"], config.id)
    assert not [s for s in tenant.sim.world.service_principals if s.app_id == bare["appId"]]
    assert status[configs[2].id].status is Status.CONVERGED  # one foreign app holds up no other

    for app in (foreign, bare):
        await tenant.sim.admin.add_owner(app["appId"])  # what `az ad app owner add` does
    second = await tenant.run(configs)
    assert second.all_converged, [(o.config_id, o.reason) for o in second.outcomes]
    for app in (foreign, bare):
        adopted = tenant.sim.world.application_by_app_id(app["appId"])
        assert adopted is not None and len(adopted.federated_credentials) == 1
    assert (await tenant.run(configs, dry_run=True)).plan.is_empty


async def test_ownership_is_read_once_and_only_when_the_batch_adopts_applications(tenant: Tenant) -> None:
    created = [tenant.config(f"new-{n}", None, create_as=f"sc-new-{n}") for n in range(3)]
    await tenant.run(created)
    counters = await tenant.sim.admin.counters()
    assert "servicePrincipals.ownedObjects" not in counters["graph"]["operations"]

    adopted = [tenant.config(f"old-{n}", (await tenant.app(f"sc-old-{n}"))["appId"]) for n in range(3)]
    await tenant.sim.admin.reset_counters()
    report = await tenant.run([*created, *adopted])
    assert report.all_converged
    counters = await tenant.sim.admin.counters()
    assert counters["graph"]["operations"]["servicePrincipals.ownedObjects"]["reads"] == 1
