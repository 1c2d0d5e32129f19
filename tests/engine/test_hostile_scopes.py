"""Hostile scopes and names never reach the clouds as a collapsed path: refused at the edge, escaped below."""

from __future__ import annotations

import json
from dataclasses import replace
from urllib.parse import quote

import pytest
from azure.identity.aio import ManagedIdentityCredential

from cloudsim.testing import SAMPLE_SUBSCRIPTION
from reconciler.adapters import ado, arm
from reconciler.adapters.arm import ArmAdapter
from reconciler.adapters.graph import GraphAdapter
from reconciler.adapters.metering import RequestMeter
from reconciler.core.identifiers import ArmScope, Guid, IdentifierError
from reconciler.core.model import RoleGrant
from reconciler.failures import PermanentFailure
from reconciler.state.tickets import TicketRejected, parse_ticket
from tests.core.builders import APP_ID, TENANT, policy
from tests.engine.conftest import KEY_VAULT_READER, VAULT, Tenant

SUB = SAMPLE_SUBSCRIPTION
HOSTILE_SCOPES = [
    f"/subscriptions/{SUB}/resourceGroups/..",
    f"/subscriptions/{SUB}/resourceGroups/%2e%2e",
    f"/subscriptions/{SUB}/resourceGroups/rg%2F..%2F..",
    f"/subscriptions/{SUB}/resourceGroups/rg/..",
    f"/subscriptions/{SUB}/resourceGroups/rg\\..\\..",
    f"/subscriptions/{SUB}//resourceGroups/rg",
    f"/subscriptions/{SUB}/resourceGroups/rg.",
    f"/subscriptions/{SUB}/resourceGroups/\u2024\u2024",
    f"/subscriptions/{SUB}/resourceGroups/rg/../../../providers/Microsoft.Management/managementGroups/root",
]


def _ticket(scope: str, project: str = "payments") -> str:
    config = {
        "organization": "contoso",
        "project": project,
        "tenantId": TENANT,
        "serviceConnection": {"name": "kv-reader", "subscriptionId": SUB, "subscriptionName": "Prod"},
        "application": {"appId": APP_ID},
        "roleAssignments": [{"role": "Key Vault Reader", "scope": scope}],
    }
    return json.dumps(
        {"schemaVersion": 1, "requestId": "CHG1", "action": "upsert", "requestedBy": "a", "config": config}
    )


@pytest.mark.parametrize("scope", HOSTILE_SCOPES)
async def test_a_hostile_scope_is_refused_at_the_edge_and_the_simulator_sees_no_write(
    tenant: Tenant, scope: str
) -> None:
    before = await tenant.writes()
    with pytest.raises(TicketRejected) as rejected:
        parse_ticket(_ticket(scope), policy())
    assert any("roleAssignments[0].scope" in problem for problem in rejected.value.problems)

    # The valid config next to it gets its assignment exactly where it asked, nowhere above.
    app = await tenant.app("sc-payments")
    report = await tenant.run([tenant.config("kv-reader", app["appId"])])
    assert report.all_converged
    world = tenant.sim.world
    # The reconciler's own RBAC administrator role on the subscription (tenant setup) aside.
    scopes = {ra.scope.lower() for ra in world.role_assignments if ra.principal_id != world.caller_object_id}
    assert VAULT.lower() in scopes
    assert f"/subscriptions/{SUB}" not in scopes and not any("managementgroups" in s for s in scopes)
    assert await tenant.writes() > before  # the run wrote; the hostile ticket never could


def test_a_project_that_names_another_organization_is_refused() -> None:
    with pytest.raises(TicketRejected) as rejected:
        parse_ticket(_ticket(VAULT, project="../other-org/x"), policy())
    assert any(problem.startswith("ticket CHG1, document 1, project:") for problem in rejected.value.problems)


async def test_the_arm_adapter_refuses_a_collapsible_assignment_id_before_sending(tenant: Tenant) -> None:
    meter = RequestMeter()
    credential = ManagedIdentityCredential(connection_verify=tenant.cloud.ca_bundle)
    adapter = ArmAdapter(credential, tenant.cloud, meter, retry_total=0)
    name = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    try:
        for scope in HOSTILE_SCOPES:
            with pytest.raises(PermanentFailure, match="malformed role assignment id"):
                await adapter.delete_assignment(
                    f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"
                )
    finally:
        await adapter.close()
        await credential.close()
    assert meter.reads() == meter.writes() == 0


async def test_the_graph_adapter_takes_only_guids_into_its_paths(tenant: Tenant) -> None:
    meter = RequestMeter()
    credential = ManagedIdentityCredential(connection_verify=tenant.cloud.ca_bundle)
    adapter = GraphAdapter(credential, tenant.cloud, meter)
    guid = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    try:
        for object_id, credential_id in [("..", guid), (guid, ".."), ("../../servicePrincipals", guid)]:
            with pytest.raises(IdentifierError):
                await adapter.delete_credential(object_id, credential_id)
    finally:
        await adapter.close()
        await credential.close()
    assert meter.reads() == meter.writes() == 0


async def test_a_parsed_scope_reaches_the_simulator_as_exactly_that_scope(tenant: Tenant) -> None:
    """A resource group whose name is legal but unusual ('(' ')' '.') is created where it says."""
    app = await tenant.app("sc-odd")
    scope = f"/subscriptions/{SUB}/resourceGroups/rg_(x).1"
    made = tenant.config("odd", app["appId"])
    odd = replace(made, role_grants=(RoleGrant(role_id=KEY_VAULT_READER, scope=scope),))
    report = await tenant.run([odd])
    assert report.all_converged
    assert scope.lower() in {ra.scope.lower() for ra in tenant.sim.world.role_assignments}


# ---------------------------------------------------------------------------- URL builders


def test_the_arm_paths_are_built_from_escaped_segments() -> None:
    scope = ArmScope.parse(f"/subscriptions/{SUB}/resourceGroups/rg_(x).1/providers/A.B/things/t")
    assert arm.scope_path(scope) == f"/subscriptions/{SUB}/resourceGroups/rg_%28x%29.1/providers/a.b/things/t"
    role = arm.role_definition_path(Guid(SUB), KEY_VAULT_READER)
    assert (
        role == f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{KEY_VAULT_READER}"
    )
    mg = ArmScope.parse("/providers/Microsoft.Management/managementGroups/mg")
    assert arm.role_definition_path(mg.subscription, KEY_VAULT_READER).startswith("/providers/")
    with pytest.raises(ValueError):
        arm.role_definition_path(Guid(SUB), "../../x")


def test_the_arm_adapter_escapes_a_segment_and_refuses_a_dot_segment() -> None:
    scope = ArmScope(subscription=Guid(SUB), resource_group="a/b?c#d")  # built around the parser
    assert arm.scope_path(scope) == f"/subscriptions/{SUB}/resourceGroups/{quote('a/b?c#d', safe='')}"
    for dot in (".", ".."):
        with pytest.raises(PermanentFailure):
            arm.scope_path(ArmScope(subscription=Guid(SUB), resource_group=dot))


def test_the_ado_paths_escape_every_name() -> None:
    path = ado.url_path("contoso", "../other-org/x", "_apis", "serviceendpoint", "endpoints")
    assert path == "/contoso/..%2Fother-org%2Fx/_apis/serviceendpoint/endpoints"
    assert ado.url_path("contoso", "My Project#1?") == "/contoso/My%20Project%231%3F"
    for step in ("", ".", ".."):
        with pytest.raises(PermanentFailure):
            ado.url_path("contoso", step, "_apis")
