from __future__ import annotations

from reconciler.engine.run import Status
from tests.engine.conftest import Tenant


async def test_new_config_converges_in_one_apply_and_a_second_plan_is_empty(tenant: Tenant) -> None:
    app = await tenant.app("sc-payments-kv-reader")
    desired = [tenant.config("kv-reader", app["appId"])]
    first = await tenant.run(desired)
    assert [o.status for o in first.outcomes] == [Status.CONVERGED], first.outcomes
    kinds = [r.action.kind for r in first.outcomes[0].actions]
    assert [r.outcome for r in first.outcomes[0].actions] == ["applied"] * len(kinds), first.outcomes
    await tenant.sim.admin.reset_counters()
    second = await tenant.run(desired, dry_run=True)
    assert second.plan.is_empty, [str(a.drift) for a in second.plan.actions]
    assert await tenant.writes() == 0
