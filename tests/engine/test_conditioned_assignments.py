"""Role assignments with an ABAC condition, against the simulator's ARM (real SDKs).

A condition limits what the role grants, so an assignment with one does not satisfy a grant the
config asks for without one. ARM keeps one assignment per scope, role and principal whatever the
condition (RoleAssignmentExists: terraform-provider-azurerm#24045, docs/simulator.md), so the
reconciler cannot add its own next to a hand-made one: it fails the config, naming that
assignment, sends no create that must fail, and never changes or deletes it. Its own assignment,
given a condition since, it replaces."""

from __future__ import annotations

from cloudsim.state import RoleAssignment, new_id
from reconciler.core.actions import ActionKind
from reconciler.core.plan import ErrorCode, FindingKind
from reconciler.engine.run import Status
from tests.engine.conftest import KEY_VAULT_READER, VAULT, Tenant
from tests.engine.test_resilience import apply_alone, vault_reader_created

CONDITION = (
    "((!(ActionMatches{'Microsoft.KeyVault/vaults/secrets/getSecret/action'})) OR "
    "(@Resource[Microsoft.KeyVault/vaults/secrets:name] StringEquals 'one-secret'))"
)


def conditioned(principal_id: str, description: str | None = None) -> RoleAssignment:
    """Key Vault Reader on the vault under a condition, as someone made it in the portal."""
    return RoleAssignment(
        name=new_id(),
        scope=VAULT,
        role_definition_guid=KEY_VAULT_READER,
        principal_id=principal_id,
        principal_type="ServicePrincipal",
        description=description,
        condition=CONDITION,
        condition_version="2.0",
    )


async def assignment_writes(tenant: Tenant) -> int:
    counters = await tenant.sim.admin.counters()
    operations = counters["arm"]["operations"]
    return sum(
        int(operations.get(op, {}).get("writes", 0))
        for op in ("roleAssignments.create", "roleAssignments.delete")
    )


async def test_a_hand_made_conditioned_assignment_fails_the_config_and_is_never_touched(
    tenant: Tenant,
) -> None:
    seeded = await tenant.app("sc-payments")
    config = tenant.config("kv-reader", seeded["appId"])
    by_hand = conditioned(seeded["servicePrincipalId"])
    tenant.sim.world.role_assignments.append(by_hand)
    await tenant.sim.admin.reset_counters()

    report = await tenant.run([config])

    (outcome,) = report.outcomes
    assert outcome.status is Status.FAILED_PERMANENT, outcome
    assert outcome.code == ErrorCode.ROLE_CONDITIONED
    assert by_hand.id in outcome.reason and "Remove the condition" in outcome.reason
    assert await assignment_writes(tenant) == 0  # no create ARM must refuse, nothing deleted
    assert by_hand in tenant.sim.world.role_assignments and by_hand.condition == CONDITION
    assert len([a for a in tenant.sim.world.role_assignments if a.principal_id == by_hand.principal_id]) == 1
    app = tenant.sim.world.application_by_app_id(seeded["appId"])
    assert app is not None and app.federated_credentials == []  # a failed config changes nothing

    by_hand.condition, by_hand.condition_version = None, None  # its owner removes the condition
    again = await tenant.run([config])
    assert again.all_converged, [(o.config_id, o.reason) for o in again.outcomes]
    assert [f.kind for f in again.plan.findings] == [FindingKind.ADOPTED]


async def test_the_reconcilers_own_assignment_given_a_condition_is_replaced(tenant: Tenant) -> None:
    seeded = await tenant.app("sc-payments")
    config = tenant.config("kv-reader", seeded["appId"])
    assert (await tenant.run([config])).all_converged
    (ours,) = [a for a in tenant.sim.world.role_assignments if a.description == config.marker]
    ours.condition, ours.condition_version = CONDITION, "2.0"  # someone adds a condition to it

    report = await tenant.run([config])

    assert report.all_converged, [(o.config_id, o.reason) for o in report.outcomes]
    assert [a.kind for a in report.plan.actions] == [
        ActionKind.DELETE_ROLE_ASSIGNMENT,
        ActionKind.CREATE_ROLE_ASSIGNMENT,
    ]
    (now,) = [a for a in tenant.sim.world.role_assignments if a.principal_id == ours.principal_id]
    assert now.description == config.marker and now.condition is None
    assert (await tenant.run([config], dry_run=True)).plan.is_empty


async def test_a_conditioned_assignment_made_after_the_observation_is_not_adopted(tenant: Tenant) -> None:
    """The create meets RoleAssignmentExists for an assignment the pass did not see: the re-read
    shows its condition, and the config fails permanently instead of recording it as adopted."""
    seeded = await tenant.app("sc-payments")
    config = tenant.config("kv-reader", seeded["appId"])
    by_hand = conditioned(seeded["servicePrincipalId"], description="made in the portal")
    tenant.sim.world.role_assignments.append(by_hand)

    result = await apply_alone(tenant, vault_reader_created(config, seeded), config)

    failure = result.failures[config.id]
    assert failure.code == "RoleAssignmentConditioned" and by_hand.id in failure.message
    (done,) = result.results
    assert done.outcome == "failed" and not done.written
    assert by_hand in tenant.sim.world.role_assignments and by_hand.condition == CONDITION
