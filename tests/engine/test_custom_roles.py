"""Custom roles are classified from their definitions, read where each role is assignable."""

from __future__ import annotations

import uuid
from dataclasses import replace

from azure.identity.aio import ManagedIdentityCredential

from cloudsim.rights import grant_reconciler_rights
from cloudsim.state import RoleDefinition
from cloudsim.testing import SAMPLE_SUBSCRIPTION
from reconciler.adapters.arm import ArmAdapter
from reconciler.adapters.metering import RequestMeter
from reconciler.core.identifiers import ArmScope, Guid
from reconciler.engine.run import connect
from tests.core.builders import policy
from tests.engine.conftest import FAST, Tenant

VAULT_AUDITOR = "5c1f5f8e-2b8f-4a44-9d47-0f6c3c2b7a11"
RESOURCE_GROUP = f"/subscriptions/{SAMPLE_SUBSCRIPTION}/resourceGroups/rg-pay"


async def test_a_custom_role_of_another_subscription_than_the_connections_is_read_there(
    tenant: Tenant,
) -> None:
    tenant.sim.world.role_definitions.append(
        RoleDefinition(
            id=VAULT_AUDITOR,
            role_name="Vault Auditor",
            actions=["Microsoft.KeyVault/vaults/read"],
            role_type="CustomRole",
            assignable_scopes=[f"/subscriptions/{SAMPLE_SUBSCRIPTION}"],
        )
    )
    app = await tenant.app("sc-payments-auditor")
    # The connection deploys to another subscription than the one the role lives in: reading
    # the definition at the connection's subscription would find nothing (and fail closed).
    # The tenant setup grants the reconciler that subscription too: ARM refuses reads without it.
    other = str(uuid.uuid4())
    tenant.sim.world.settings.subscriptions[other] = "Other"
    grant_reconciler_rights(tenant.sim.world)
    config = replace(tenant.config("auditor", app["appId"]), subscription_id=other)
    config = replace(config, role_grants=(replace(config.role_grants[0], role_id=VAULT_AUDITOR),))
    config = replace(config, role_grants=(replace(config.role_grants[0], scope=RESOURCE_GROUP),))
    allowed = replace(policy(), role_ids=policy().role_ids | {VAULT_AUDITOR})
    async with connect(tenant.cloud, allowed, options=FAST) as engine:
        report = await engine.run([config])
    assert report.all_converged, [(o.status, o.reason) for o in report.outcomes]
    granted = [
        ra
        for ra in tenant.sim.world.role_assignments
        if ra.principal_id == app["servicePrincipalId"] and ra.role_definition_guid == VAULT_AUDITOR
    ]
    assert [ra.scope.lower() for ra in granted] == [RESOURCE_GROUP.lower()]


async def test_a_custom_role_is_not_readable_outside_its_assignable_scopes(tenant: Tenant) -> None:
    other = str(uuid.uuid4())
    tenant.sim.world.settings.subscriptions[other] = "Other"
    grant_reconciler_rights(tenant.sim.world)  # may read there: the 404 is the assignable scopes'
    tenant.sim.world.role_definitions.append(
        RoleDefinition(
            id=VAULT_AUDITOR,
            role_name="Vault Auditor",
            role_type="CustomRole",
            assignable_scopes=[f"/subscriptions/{SAMPLE_SUBSCRIPTION}"],
        )
    )
    async with ManagedIdentityCredential(connection_verify=tenant.cloud.ca_bundle) as credential:
        arm = ArmAdapter(credential, tenant.cloud, RequestMeter(), retry_total=0)
        try:
            assert await arm.get_role_definition(ArmScope.parse(RESOURCE_GROUP), VAULT_AUDITOR) is not None
            assert await arm.get_role_definition(ArmScope(subscription=Guid(other)), VAULT_AUDITOR) is None
        finally:
            await arm.close()
