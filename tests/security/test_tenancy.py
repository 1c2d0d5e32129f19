"""Application tenancy (issue 10, item 2): an application the reconciler created belongs to the ADO
project of the first config that claimed it, an adopted one to the project its owners named in its
tenant tag; another project cannot add a credential to it unless the policy shares it.

Through the real ticket handler, Azurite, the Service Bus peer and the simulator; the end state is
read from the simulator.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from azure.data.tables.aio import TableServiceClient

from reconciler.core.tenancy import TENANT_TAG_PREFIX
from reconciler.state.tables import CLAIMS_TABLE
from tests.security.tenancy_world import (
    Tenant,
    azurite_tables,
    cloud_env,
    cloud_simulator,
    servicebus_peer,
    table_settings,
    tenant,
)

__all__ = ["azurite_tables", "cloud_env", "cloud_simulator", "servicebus_peer", "table_settings", "tenant"]

CREATED = {"displayName": "sc-payments-created", "create": True}


def intruder_document(tenant: Tenant, application: dict[str, Any] | None = None) -> dict[str, Any]:
    """A config of the other project, to write into the table directly (as a hand edit would)."""
    body = json.loads(tenant.ticket("unused", project="identity", name="intruder", application=application))
    return {"apiVersion": "wif-reconciler/v1", "kind": "FederationConfig", **body["config"]}


async def victim_converged(tenant: Tenant, application: dict[str, object] | None = None) -> None:
    await tenant.send(tenant.ticket("CHG-VICTIM", application=application))
    assert await tenant.deliver_reconciles() == 1
    assert (await tenant.outcome("CHG-VICTIM"))[0] == "applied"


async def test_another_project_cannot_add_a_credential_to_an_adopted_application(tenant: Tenant) -> None:
    """The victim's app is tagged for contoso/payments: the claim row of the first ask does not
    decide at upsert (only the engine reads the tag), the engine refuses the other project."""
    await victim_converged(tenant)
    victim = tenant.victim_app["appId"]
    before = tenant.credentials(victim)
    await tenant.send(tenant.ticket("CHG-ATTACK", project="identity", name="steal"))
    assert await tenant.deliver_reconciles() == 1
    outcome, reason = await tenant.outcome("CHG-ATTACK")
    assert outcome == "failed"
    assert "belongs to ADO project contoso/payments" in reason and "contoso/identity" in reason
    assert tenant.credentials(victim) == before and len(before) == 1
    assert tenant.connections("identity") == []


async def test_a_squatter_that_asks_first_never_gets_the_application_its_owners_tag_for_their_team(
    tenant: Tenant,
) -> None:
    """Claim squatting: contoso/identity names an existing app nobody handed over (not owned, not
    tagged) before its real team, contoso/payments, does; then the owners hand it to payments."""
    seeded = await tenant.sim.admin.seed_application("sc-payments-api", owned=False, tenant=None)
    app_id = seeded["appId"]
    squat = tenant.ticket("CHG-SQUAT", project="identity", name="squat", application={"appId": app_id})
    await tenant.send(squat)
    assert (await tenant.outcome("CHG-SQUAT"))[0] == "accepted"
    assert await tenant.deliver_reconciles() == 1
    outcome, reason = await tenant.outcome("CHG-SQUAT")
    assert outcome == "failed" and "names no single ADO project in a wif-reconciler:tenant=" in reason, reason
    assert "wif-reconciler:tenant=contoso/identity" in reason  # the command an owner would run
    service = await tenant.service()
    squatted = await service._stores.claims.owner(f"app:{app_id}")
    assert squatted is not None and squatted.project == "identity"  # it asked first

    # The app's owners add the reconciler as owner and tag the app for their own project.
    await tenant.sim.admin.add_owner(app_id)
    tenant.hand_over(app_id, "payments")
    real = tenant.ticket("CHG-REAL", project="payments", name="api", application={"appId": app_id})
    await tenant.send(real)
    assert (await tenant.outcome("CHG-REAL"))[0] == "accepted"  # the squatter's row does not bind
    assert await tenant.deliver_reconciles() == 1  # one pass plans both configs of the app
    report = await service.reconcile_now(["contoso/identity/squat", "contoso/payments/api"], dry_run=False)
    outcomes = {o.config_id: o for o in report.outcomes}
    assert outcomes["contoso/payments/api"].status == "converged"
    assert outcomes["contoso/identity/squat"].status == "failed-permanent"
    assert "belongs to ADO project contoso/payments" in outcomes["contoso/identity/squat"].reason
    (credential,) = tenant.credentials(app_id)  # the real team's, and only theirs
    (real_connection,) = tenant.connections("payments")[-1:]
    assert real_connection.name == "api" and real_connection.id in credential.subject
    assert tenant.connections("identity") == []


async def test_an_application_the_reconciler_created_cannot_be_named_by_another_project(
    tenant: Tenant,
) -> None:
    await victim_converged(tenant, CREATED)
    created = tenant.app_named("sc-payments-created")
    assert f"{TENANT_TAG_PREFIX}contoso/payments" in created.tags
    by_name = tenant.ticket("CHG-BY-NAME", project="identity", name="by-name", application=CREATED)
    by_id = tenant.ticket(
        "CHG-BY-ID", project="identity", name="by-id", application={"appId": created.app_id}
    )
    await tenant.send(by_name)
    await tenant.send(by_id)
    for request_id in ("CHG-BY-NAME", "CHG-BY-ID"):
        outcome, reason = await tenant.outcome(request_id)
        assert outcome == "rejected" and "contoso/payments" in reason
    assert await tenant.deliver_reconciles() == 0
    assert len(tenant.credentials(created.app_id)) == 1


async def test_the_policy_may_share_an_application_with_named_projects(tenant: Tenant) -> None:
    await victim_converged(tenant)
    victim = tenant.victim_app["appId"]
    await tenant.share(f"sharedApplications:\n  - appId: {victim}\n    projects: [contoso/identity]\n")
    await tenant.send(tenant.ticket("CHG-PARTNER", project="identity", name="partner"))
    assert (await tenant.outcome("CHG-PARTNER"))[0] == "accepted"
    assert await tenant.deliver_reconciles() == 1
    assert len(tenant.credentials(victim)) == 2
    assert (await tenant.outcome("CHG-PARTNER"))[0] == "applied"


async def test_the_engine_refuses_a_claimed_application_even_when_the_table_was_written_directly(
    tenant: Tenant,
) -> None:
    """Defence in depth: a row that bypassed the ticket handler's claim check changes nothing."""
    await victim_converged(tenant)
    victim = tenant.victim_app["appId"]
    service = await tenant.service()
    await service._stores.configs.put(intruder_document(tenant), request_id="by-hand")
    report = await service.reconcile_now(["contoso/identity/intruder"], dry_run=False)
    outcomes = {o.config_id: o for o in report.outcomes}
    assert outcomes["contoso/identity/intruder"].status == "failed-permanent"
    assert "belongs to ADO project contoso/payments" in outcomes["contoso/identity/intruder"].reason
    assert outcomes["contoso/payments/kv-reader"].status == "converged"
    assert len(tenant.credentials(victim)) == 1
    assert tenant.connections("identity") == []


async def test_the_tag_of_a_created_application_protects_it_without_the_claims_table(
    tenant: Tenant, table_settings: dict[str, str]
) -> None:
    await victim_converged(tenant, CREATED)
    created = tenant.app_named("sc-payments-created")
    async with TableServiceClient.from_connection_string(
        table_settings["WIF_TABLE_CONNECTION_STRING"]
    ) as tables:
        await tables.delete_table(CLAIMS_TABLE)  # the claims are lost: only the app's tag remains
    service = await tenant.service()
    await service._stores.claims._table.create_table()
    document = intruder_document(tenant, {"appId": created.app_id})
    await service._stores.configs.put(document, request_id="by-hand")
    report = await service.reconcile_now(["contoso/identity/intruder"], dry_run=False)
    (outcome,) = [o for o in report.outcomes if o.config_id == "contoso/identity/intruder"]
    assert outcome.status == "failed-permanent" and "contoso/payments" in outcome.reason
    assert len(tenant.credentials(created.app_id)) == 1


async def test_a_created_application_renamed_since_is_not_taken_over_by_its_old_display_name(
    tenant: Tenant, table_settings: dict[str, str]
) -> None:
    await victim_converged(tenant, CREATED)
    created = tenant.app_named("sc-payments-created")
    created.display_name = "sc-payments-renamed"  # renamed in the portal; its unique name stays
    tags_before = list(created.tags)
    async with TableServiceClient.from_connection_string(
        table_settings["WIF_TABLE_CONNECTION_STRING"]
    ) as tables:
        await tables.delete_table(CLAIMS_TABLE)  # and the claims are lost
    service = await tenant.service()
    await service._stores.claims._table.create_table()
    # Another project asks for an app of the old name: the create-by-unique-name would hand back
    # (and retag) the renamed app.
    await service._stores.configs.put(intruder_document(tenant, CREATED), request_id="by-hand")
    report = await service.reconcile_now(["contoso/identity/intruder"], dry_run=False)
    (outcome,) = [o for o in report.outcomes if o.config_id == "contoso/identity/intruder"]
    assert outcome.status == "failed-permanent" and "contoso/payments" in outcome.reason
    assert created.display_name == "sc-payments-renamed" and created.tags == tags_before
    assert len(tenant.credentials(created.app_id)) == 1
    assert tenant.connections("identity") == []


async def test_two_projects_claiming_one_application_at_once_leave_one_row_and_the_tag_decides(
    tenant: Tenant,
) -> None:
    bodies = [
        tenant.ticket("CHG-P", project="payments", name="first"),
        tenant.ticket("CHG-I", project="identity", name="second"),
    ]
    await tenant.service()  # built before the race: context.py's lock is bound to the first loop that waits
    await asyncio.gather(*(tenant.send(body) for body in bodies))
    for request_id in ("CHG-P", "CHG-I"):
        assert (await tenant.outcome(request_id))[0] == "accepted"  # an adopted app: the engine decides
    service = await tenant.service()
    owner = await service._stores.claims.owner(f"app:{tenant.victim_app['appId']}")
    assert owner is not None and owner.project in {"payments", "identity"}  # one row: who asked first
    assert await tenant.deliver_reconciles() == 2
    report = await service.reconcile_now(["contoso/payments/first", "contoso/identity/second"], dry_run=False)
    outcomes = {o.config_id: o.status for o in report.outcomes}
    assert outcomes == {"contoso/payments/first": "converged", "contoso/identity/second": "failed-permanent"}
    assert len(tenant.credentials(tenant.victim_app["appId"])) == 1
