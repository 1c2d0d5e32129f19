"""Configs that ask the reconciler to create their application: app, principal, and role assignments
for a principal ARM may not see yet."""

from __future__ import annotations

import asyncio
import time

from cloudsim.faults import Faults
from reconciler.adapters.graph import application_unique_name
from reconciler.core.model import APPLICATION_TAG
from reconciler.engine.run import EngineOptions, Status
from tests.engine.conftest import Tenant


def kinds(actions: object) -> list[str]:
    return [str(a.kind) for a in actions]  # type: ignore[attr-defined]


async def test_a_created_app_gets_its_principal_connection_credential_and_roles(tenant: Tenant) -> None:
    config = tenant.config("kv-new", None, create_as="sc-payments-new")
    report = await tenant.run([config])
    assert report.all_converged, [(o.status, o.reason) for o in report.outcomes]
    assert kinds(report.plan.actions) == [
        "create-application",
        "create-service-principal",
        "create-connection",
        "create-credential",
        "create-role-assignment",
        "authorize-pipelines",
    ]
    app = tenant.sim.world.application_by_unique_name(application_unique_name("sc-payments-new"))
    assert app is not None and APPLICATION_TAG in app.tags and app.display_name == "sc-payments-new"
    assert len(app.federated_credentials) == 1
    again = await tenant.run([config], dry_run=True)
    assert again.plan.is_empty, kinds(again.plan.actions)


async def test_a_created_app_the_config_was_last_applied_to_is_its_own_not_one_it_left(
    tenant: Tenant,
) -> None:
    # The Functions app passes the application each config was last applied to (`applied`); for a
    # created app the engine reads it by client id as well as by name, and must see one application.
    config = tenant.config("kv-new", None, create_as="sc-payments-new")
    created = await tenant.run([config])
    app_id = created.outcomes[0].application_id
    assert app_id is not None
    again = await tenant.run([config], dry_run=True, applied={config.id: str(app_id)})
    assert again.plan.is_empty, kinds(again.plan.actions)


async def test_two_reconcilers_creating_the_same_app_make_one(tenant: Tenant) -> None:
    config = tenant.config("kv-new", None, create_as="sc-payments-new")
    await asyncio.gather(tenant.run([config]), tenant.run([config]))
    named = [a for a in tenant.sim.world.applications if a.display_name == "sc-payments-new"]
    assert len(named) == 1
    principals = [sp for sp in tenant.sim.world.service_principals if sp.app_id == named[0].app_id]
    assert len(principals) == 1
    settle = await tenant.run([config])
    assert settle.all_converged, [(o.status, o.reason) for o in settle.outcomes]


async def test_principal_not_found_for_a_just_created_principal_is_retried_and_succeeds(
    tenant: Tenant,
) -> None:
    await tenant.sim.admin.set_faults({"arm": Faults(principal_lag_s=1.5)})
    config = tenant.config("kv-new", None, create_as="sc-payments-new")
    started = time.monotonic()
    report = await tenant.run(
        [config], options=EngineOptions(principal_replication_window=20.0, retry_total=0)
    )
    assert report.all_converged, [(o.status, o.reason) for o in report.outcomes]
    assert time.monotonic() - started >= 1.0  # it waited for ARM to see the new principal
    (assignment_result,) = [
        r for r in report.outcomes[0].actions if str(r.action.kind) == "create-role-assignment"
    ]
    assert assignment_result.outcome == "applied"


async def test_replication_wait_is_bounded_then_left_to_a_later_pass(tenant: Tenant) -> None:
    await tenant.sim.admin.set_faults({"arm": Faults(principal_lag_s=30.0)})
    config = tenant.config("kv-new", None, create_as="sc-payments-new")
    started = time.monotonic()
    report = await tenant.run(
        [config], options=EngineOptions(principal_replication_window=2.0, retry_total=0)
    )
    assert time.monotonic() - started < 10
    (outcome,) = report.outcomes
    assert outcome.status is Status.FAILED_TEMPORARY
    assert outcome.retry_after == 2.0
    assert "does not see the new principal" in outcome.reason


async def test_configs_creating_applications_in_one_pass_get_one_application_each(tenant: Tenant) -> None:
    """The SDK's alternate-key builder writes the unique name into the client's shared path
    parameters: concurrent creates once all upserted the last name written, merging the apps."""
    configs = [tenant.config(f"kv-{n}", None, create_as=f"sc-payments-{n}") for n in range(3)]
    report = await tenant.run(configs)
    assert report.all_converged, [(o.status, o.reason) for o in report.outcomes]
    assert len({o.application_id for o in report.outcomes}) == 3
    names = sorted(a.display_name for a in tenant.sim.world.applications if APPLICATION_TAG in a.tags)
    assert names == ["sc-payments-0", "sc-payments-1", "sc-payments-2"]


async def test_writes_to_a_just_created_application_wait_until_graph_has_replicated_it(
    tenant: Tenant,
) -> None:
    """Graph may route the writes that follow an application's creation to a replica that has not
    seen it yet: the service principal's POST answers 400 ("does not reference a valid application
    object"; azure-cli retries `az ad sp create` on it), a credential's POST 404. Within the
    replication window that is a wait, not a permanent failure of the config."""
    await tenant.sim.admin.set_faults({"graph": Faults(read_lag_s=1.5)})
    config = tenant.config("kv-new", None, create_as="sc-payments-new")
    started = time.monotonic()
    report = await tenant.run(
        [config], options=EngineOptions(principal_replication_window=20.0, retry_total=0)
    )
    assert report.all_converged, [(o.status, o.reason) for o in report.outcomes]
    assert time.monotonic() - started >= 1.0  # it waited for Graph to see the new application
    await tenant.sim.admin.set_faults({"graph": Faults()})
    assert (await tenant.run([config], dry_run=True)).plan.is_empty


async def test_the_wait_for_graph_to_replicate_a_new_application_is_bounded(tenant: Tenant) -> None:
    await tenant.sim.admin.set_faults({"graph": Faults(read_lag_s=30.0)})
    config = tenant.config("kv-new", None, create_as="sc-payments-new")
    started = time.monotonic()
    report = await tenant.run(
        [config], options=EngineOptions(principal_replication_window=2.0, retry_total=0)
    )
    assert time.monotonic() - started < 10
    (outcome,) = report.outcomes
    assert outcome.status is Status.FAILED_TEMPORARY, (outcome.status, outcome.reason)
    assert outcome.retry_after == 2.0
    assert "does not see the new application" in outcome.reason
