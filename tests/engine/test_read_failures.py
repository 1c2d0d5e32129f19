"""A read that keeps failing (after the SDK's retries) fails only the configs that needed it: the
others are planned and applied in the same pass, and no pass ends in a traceback."""

from __future__ import annotations

from cloudsim.faults import Faults
from reconciler.core.model import FederationConfig
from reconciler.engine.run import EngineOptions, RunReport, Status
from tests.engine.conftest import Tenant
from tests.engine.test_resilience import duplicates

# One retry, at once: the read fails for good within the pass, quickly.
IMPATIENT = EngineOptions(concurrency=8, principal_replication_window=5.0, retry_total=1)


def statuses(report: RunReport) -> dict[str, Status]:
    return {outcome.config_id: outcome.status for outcome in report.outcomes}


def reason(report: RunReport, config: FederationConfig) -> str:
    return next(o.reason for o in report.outcomes if o.config_id == config.id)


def principal_of(tenant: Tenant, app_id: str) -> str:
    return next(sp.id for sp in tenant.sim.world.service_principals if sp.app_id == app_id)


def connections_named(tenant: Tenant, name: str) -> int:
    return sum(e.name == name for org in tenant.sim.world.organizations for e in org.endpoints)


async def test_a_failing_connection_listing_fails_only_its_projects_configs(tenant: Tenant) -> None:
    payments = tenant.config("kv-payments", (await tenant.app("sc-payments"))["appId"])
    identity_app = await tenant.app("sc-identity", tenant="contoso/identity")
    identity = tenant.config("kv-identity", identity_app["appId"], project="identity")
    broken = Faults(
        error_rate=1.0,
        error_statuses=[429, 503],
        retry_after_s=0,
        operations=["endpoints.list"],
        matching="/payments/",
        seed=3,
    )
    await tenant.sim.admin.set_faults({"ado": broken})

    report = await tenant.run([payments, identity], options=IMPATIENT)

    assert statuses(report) == {payments.id: Status.FAILED_TEMPORARY, identity.id: Status.CONVERGED}
    assert "could not read the service connections of contoso/payments" in reason(report, payments)
    failed = next(o for o in report.outcomes if o.config_id == payments.id)
    assert failed.retry_after is not None and report.retry_after == failed.retry_after
    # Nothing was written for the config that could not be read; the other got everything.
    assert connections_named(tenant, "kv-payments") == 0
    assert connections_named(tenant, "kv-identity") == 1
    assert not any(a.config_ids == (payments.id,) for a in report.plan.actions)

    await tenant.sim.admin.set_faults({"ado": Faults()})
    assert (await tenant.run([payments, identity], options=IMPATIENT)).all_converged
    assert (await tenant.run([payments, identity], dry_run=True)).plan.is_empty
    assert duplicates(tenant) == []


async def test_a_failing_assignment_listing_fails_only_the_configs_of_that_principal(
    tenant: Tenant,
) -> None:
    first, second = await tenant.app("sc-first"), await tenant.app("sc-second")
    failing = tenant.config("kv-first", first["appId"])
    working = tenant.config("kv-second", second["appId"])
    assert (await tenant.run([failing, working])).all_converged
    world = tenant.sim.world
    # Drift on both (the reconciler's own RBAC role stays); only one can be read now.
    world.role_assignments = [
        ra for ra in world.role_assignments if ra.principal_id == world.caller_object_id
    ]
    broken = Faults(
        error_rate=1.0,
        error_statuses=[503],
        retry_after_s=0,
        operations=["roleAssignments.list"],
        matching=principal_of(tenant, first["appId"]),
    )
    await tenant.sim.admin.set_faults({"arm": broken})

    report = await tenant.run([failing, working], options=IMPATIENT)

    assert statuses(report) == {failing.id: Status.FAILED_TEMPORARY, working.id: Status.CONVERGED}
    assert "could not read the role assignments under" in reason(report, failing)
    holders = {ra.principal_id for ra in world.role_assignments} - {world.caller_object_id}
    assert holders == {principal_of(tenant, second["appId"])}


async def test_configs_sharing_an_application_with_an_unread_config_wait_for_it(tenant: Tenant) -> None:
    app = await tenant.app("sc-shared")
    payments = tenant.config("kv-payments", app["appId"])
    identity = tenant.config("kv-identity", app["appId"], project="identity")
    broken = Faults(error_rate=1.0, retry_after_s=0, operations=["endpoints.list"], matching="/payments/")
    await tenant.sim.admin.set_faults({"ado": broken})

    report = await tenant.run([payments, identity], options=IMPATIENT)

    assert statuses(report) == {payments.id: Status.FAILED_TEMPORARY, identity.id: Status.FAILED_TEMPORARY}
    assert f"config {payments.id}, which shares its application" in reason(report, identity)
    assert report.plan.is_empty
    assert await tenant.writes() == 0


async def test_dropped_connections_on_every_graph_read_fail_the_pass_without_raising(
    tenant: Tenant,
) -> None:
    config = tenant.config("kv-reader", (await tenant.app("sc-payments"))["appId"])
    await tenant.sim.admin.reset_counters()
    await tenant.sim.admin.set_faults({"graph": Faults(drop_rate=1.0, operations=["batch"])})

    report = await tenant.run([config], options=IMPATIENT)

    assert statuses(report) == {config.id: Status.FAILED_TEMPORARY}
    # The application batch or the ownership listing that shares its dropped connection.
    assert "could not read" in reason(report, config)
    assert await tenant.writes() == 0
