"""A config naming another tenant than the one the reconciler signs in to (its Graph token's `tid`)
fails with both tenants named, and nothing is set up for it; the other configs converge."""

from __future__ import annotations

from dataclasses import replace

from reconciler.adapters.graph import application_unique_name
from reconciler.engine.run import Status
from tests.engine.conftest import Tenant

ELSEWHERE = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"  # not the simulator's tenant


async def test_a_config_in_another_tenant_fails_and_gets_nothing_while_the_others_converge(
    tenant: Tenant,
) -> None:
    adopted = await tenant.app("sc-adopted")
    here = tenant.config("here", None, create_as="sc-here")
    owned = tenant.config("owned", adopted["appId"])
    away = replace(tenant.config("away", None, create_as="sc-away"), tenant_id=ELSEWHERE)

    report = await tenant.run([here, owned, away])

    outcomes = {o.config_id: o for o in report.outcomes}
    assert outcomes[here.id].status is Status.CONVERGED, outcomes[here.id].reason
    assert outcomes[owned.id].status is Status.CONVERGED, outcomes[owned.id].reason
    failed = outcomes[away.id]
    assert failed.status is not Status.CONVERGED and failed.code == "tenant-mismatch"
    assert (
        f"config names tenant {ELSEWHERE}, but the reconciler manages tenant {tenant.sim.tenant_id}"
        in failed.reason
    )
    world = tenant.sim.world
    assert world.application_by_unique_name(application_unique_name("sc-away")) is None
    assert not [ra for ra in world.role_assignments if away.id in (ra.description or "")]
    org = world.organization("contoso")
    assert org is not None and not [e for e in org.endpoints if e.name == "away"]
    assert [e for e in org.endpoints if e.name == "here"]  # the others' connections were made

    fixed = await tenant.run([replace(away, tenant_id=tenant.sim.tenant_id)])
    assert fixed.all_converged, [(o.status, o.reason) for o in fixed.outcomes]
