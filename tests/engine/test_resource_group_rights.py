"""A deployment whose reconciler holds its role on resource groups only (WIF_RBAC_TARGET_RESOURCE_GROUPS,
docs/deploy.md): ARM refuses the subscription's listing (403), the observer lists at the groups."""

from __future__ import annotations

import uuid
from dataclasses import replace

from cloudsim.rights import RBAC_ADMINISTRATOR
from cloudsim.state import RoleDefinition
from cloudsim.testing import SAMPLE_SUBSCRIPTION
from reconciler.engine.run import Status, connect
from tests.core.builders import policy
from tests.engine.conftest import FAST, KEY_VAULT_READER, VAULT, Tenant

GRANTED_GROUP = f"/subscriptions/{SAMPLE_SUBSCRIPTION}/resourceGroups/rg-pay"
OTHER_VAULT = (
    f"/subscriptions/{SAMPLE_SUBSCRIPTION}/resourceGroups/rg-other"
    "/providers/microsoft.keyvault/vaults/kv-other"
)


def _rights_on_the_group_only(tenant: Tenant) -> None:
    """The tenant setup's RBAC administrator assignment of the reconciler, moved from the
    subscription to the resource group holding the vault."""
    world = tenant.sim.world
    mine = [
        ra
        for ra in world.role_assignments
        if ra.principal_id == world.caller_object_id and ra.role_definition_guid == RBAC_ADMINISTRATOR
    ]
    assert mine, "the sample world grants the reconciler the RBAC administrator role"
    for assignment in mine:
        world.role_assignments.remove(assignment)
        world.role_assignments.append(replace(assignment, scope=GRANTED_GROUP))


async def test_a_grant_in_the_resource_group_the_reconciler_holds_converges(tenant: Tenant) -> None:
    _rights_on_the_group_only(tenant)
    app = await tenant.app("sc-payments-rg")
    config = tenant.config("payments-rg", app["appId"])

    created = await tenant.run([config])
    assert created.all_converged, [(o.status, o.reason) for o in created.outcomes]
    granted = [
        ra
        for ra in tenant.sim.world.role_assignments
        if ra.principal_id == app["servicePrincipalId"] and ra.role_definition_guid == KEY_VAULT_READER
    ]
    assert [ra.scope.lower() for ra in granted] == [VAULT.lower()]
    again = await tenant.run([config], dry_run=True)
    assert again.plan.is_empty, again.plan
    assert again.all_converged, [(o.status, o.reason) for o in again.outcomes]


async def test_a_grant_in_a_resource_group_without_rights_fails_alone(tenant: Tenant) -> None:
    _rights_on_the_group_only(tenant)
    allowed = await tenant.app("sc-payments-allowed")
    refused = await tenant.app("sc-payments-refused")
    good = tenant.config("allowed", allowed["appId"])
    bad = tenant.config("refused", refused["appId"])
    bad = replace(bad, role_grants=(replace(bad.role_grants[0], scope=OTHER_VAULT),))

    report = await tenant.run([good, bad])
    by_id = {o.config_id: o for o in report.outcomes}
    assert by_id[good.id].status is Status.CONVERGED, by_id[good.id].reason
    assert by_id[bad.id].status is Status.FAILED_PERMANENT
    assert "Microsoft.Authorization/roleAssignments/read" in by_id[bad.id].reason
    assert "rg-other" in by_id[bad.id].reason
    assert not [
        ra for ra in tenant.sim.world.role_assignments if ra.principal_id == refused["servicePrincipalId"]
    ]
    assert (await tenant.run([good], dry_run=True)).plan.is_empty


async def test_a_connection_subscription_without_rights_or_grants_fails_nothing(tenant: Tenant) -> None:
    _rights_on_the_group_only(tenant)
    other = str(uuid.uuid4())
    tenant.sim.world.settings.subscriptions[other] = "Other"  # the reconciler holds nothing there
    app = await tenant.app("sc-payments-elsewhere")
    config = replace(tenant.config("elsewhere", app["appId"]), subscription_id=other)

    report = await tenant.run([config])
    assert report.all_converged, [(o.status, o.reason) for o in report.outcomes]
    assert (await tenant.run([config], dry_run=True)).plan.is_empty


async def test_a_custom_role_is_read_at_the_group_it_is_granted_in(tenant: Tenant) -> None:
    """The definition is read at the grant's scope: the subscription would refuse it (403)."""
    _rights_on_the_group_only(tenant)
    auditor = "5c1f5f8e-2b8f-4a44-9d47-0f6c3c2b7a12"
    tenant.sim.world.role_definitions.append(
        RoleDefinition(
            id=auditor,
            role_name="Vault Auditor",
            actions=["Microsoft.KeyVault/vaults/read"],
            role_type="CustomRole",
            assignable_scopes=[f"/subscriptions/{SAMPLE_SUBSCRIPTION}"],
        )
    )
    app = await tenant.app("sc-payments-auditor")
    config = tenant.config("auditor", app["appId"])
    config = replace(config, role_grants=(replace(config.role_grants[0], role_id=auditor),))
    allowed = replace(policy(), role_ids=policy().role_ids | {auditor})
    async with connect(tenant.cloud, allowed, options=FAST) as engine:
        report = await engine.run([config])
    assert report.all_converged, [(o.status, o.reason) for o in report.outcomes]
    assert [
        ra.scope.lower()
        for ra in tenant.sim.world.role_assignments
        if ra.principal_id == app["servicePrincipalId"] and ra.role_definition_guid == auditor
    ] == [VAULT.lower()]


async def test_the_refused_subscription_listing_is_not_sent_again_by_the_next_pass(tenant: Tenant) -> None:
    _rights_on_the_group_only(tenant)
    app = await tenant.app("sc-payments-twice")
    config = tenant.config("twice", app["appId"])
    async with connect(tenant.cloud, policy(), options=FAST) as engine:
        listings = []
        for _ in range(2):
            await tenant.sim.admin.reset_counters()
            report = await engine.run([config])
            assert report.all_converged, [(o.status, o.reason) for o in report.outcomes]
            counters = await tenant.sim.admin.counters()
            listings.append(counters["arm"]["operations"]["roleAssignments.list"]["reads"])
    # The first pass is refused the subscription's listing, then lists the group; the next one
    # remembers the refusal (engine/listing_pages.py) and lists the group only.
    assert listings == [2, 1]
