"""azure-mgmt-authorization (.aio) against the simulator: each operation and each documented failure."""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity.aio import ManagedIdentityCredential
from azure.mgmt.authorization.aio import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

from cloudsim.state import RoleAssignment, RoleDefinition
from cloudsim.testing import SAMPLE_SUBSCRIPTION, RunningSimulator

from .conftest import arm_client

SUB = f"/subscriptions/{SAMPLE_SUBSCRIPTION}"
RG = f"{SUB}/resourceGroups/rg-pay"
VAULT = f"{RG}/providers/Microsoft.KeyVault/vaults/kv-pay"
KV_READER = "21090545-7ca7-4776-b22c-e363652d74d2"
KV_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


def role_id(guid: str) -> str:
    return f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def grant(
    principal: str, role: str = KV_READER, principal_type: str | None = "ServicePrincipal"
) -> RoleAssignmentCreateParameters:
    parameters = RoleAssignmentCreateParameters(
        role_definition_id=role_id(role), principal_id=principal, description="managed-by: wif-reconciler"
    )
    # The SDK model defaults principalType to "User"; None leaves it out of the request body.
    parameters.principal_type = principal_type  # type: ignore[assignment]
    return parameters


async def principal(sim: RunningSimulator, created_seconds_ago: float = 3600) -> str:
    seeded = await sim.admin.seed_application("sp-under-test", created_seconds_ago=created_seconds_ago)
    return str(seeded["servicePrincipalId"])


async def test_role_definitions_get_and_filter_by_name(arm: AuthorizationManagementClient) -> None:
    reader = await arm.role_definitions.get(SUB, KV_READER)
    assert reader.role_name == "Key Vault Reader"
    found = [d async for d in arm.role_definitions.list(SUB, filter="roleName eq 'Key Vault Secrets User'")]
    assert [d.name for d in found] == [KV_SECRETS_USER]
    assert found[0].permissions and found[0].permissions[0].data_actions
    by_id = await arm.role_definitions.get_by_id(role_id(KV_READER))
    assert by_id.role_name == "Key Vault Reader"
    with pytest.raises(ResourceNotFoundError):
        await arm.role_definitions.get(SUB, str(uuid.uuid4()))


async def test_role_assignment_create_get_list_delete(
    arm: AuthorizationManagementClient, cloud_env: RunningSimulator
) -> None:
    principal_id = await principal(cloud_env)
    name = str(uuid.uuid4())
    created = await arm.role_assignments.create(VAULT, name, grant(principal_id))
    assert (
        created.principal_id == principal_id
        and created.id == f"{VAULT}/providers/Microsoft.Authorization/roleAssignments/{name}"
    )
    assert created.scope is None  # optional in the spec: the simulator leaves it out
    fetched = await arm.role_assignments.get(VAULT, name)
    assert fetched.id == created.id
    assert created.id is not None
    by_id = await arm.role_assignments.get_by_id(created.id)
    assert by_id.name == name

    at_sub = [
        a.id
        async for a in arm.role_assignments.list_for_subscription(filter=f"principalId eq '{principal_id}'")
    ]
    # Lists show assignments above the scope too: the reconciler's own RBAC administrator role on
    # the subscription (the sample world's tenant setup) is left out by principal.
    at_rg = [
        a.id
        async for a in arm.role_assignments.list_for_resource_group("rg-pay")
        if a.principal_id == principal_id
    ]
    at_vault = [
        a.id
        async for a in arm.role_assignments.list_for_resource(
            "rg-pay", "Microsoft.KeyVault", "vaults", "kv-pay"
        )
        if a.principal_id == principal_id
    ]
    assert at_sub == at_rg == at_vault == [created.id]
    # atScope() at the subscription leaves out assignments below it.
    at_scope = arm.role_assignments.list_for_scope(SUB, filter="atScope()")
    assert [a.principal_id async for a in at_scope] == [cloud_env.world.caller_object_id]
    assigned = [
        a.id async for a in arm.role_assignments.list_for_scope(VAULT, filter=f"assignedTo('{principal_id}')")
    ]
    assert assigned == [created.id]

    deleted = await arm.role_assignments.delete(VAULT, name)
    assert deleted is not None and deleted.id == created.id
    assert await arm.role_assignments.delete(VAULT, name) is None  # 204: already gone
    with pytest.raises(ResourceNotFoundError):
        await arm.role_assignments.get(VAULT, name)


async def test_list_follows_next_link(
    arm: AuthorizationManagementClient, cloud_env: RunningSimulator
) -> None:
    await cloud_env.admin.update_settings(arm_page_size=2)
    principal_id = await principal(cloud_env)
    roles = [
        KV_READER,
        KV_SECRETS_USER,
        "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    ]
    for role in roles:
        await arm.role_assignments.create(RG, str(uuid.uuid4()), grant(principal_id, role))
    listed = [
        a async for a in arm.role_assignments.list_for_subscription(filter=f"principalId eq '{principal_id}'")
    ]
    assert len(listed) == 4
    counters = await cloud_env.admin.counters()
    assert counters["arm"]["operations"]["roleAssignments.list"]["reads"] == 2


async def test_existing_assignment_under_another_name_is_409_with_its_id(
    arm: AuthorizationManagementClient, cloud_env: RunningSimulator
) -> None:
    principal_id = await principal(cloud_env)
    first = str(uuid.uuid4())
    await arm.role_assignments.create(VAULT, first, grant(principal_id))
    with pytest.raises(ResourceExistsError) as exists:
        await arm.role_assignments.create(VAULT, str(uuid.uuid4()), grant(principal_id))
    assert exists.value.error is not None and exists.value.error.code == "RoleAssignmentExists"
    assert first.replace("-", "") in str(exists.value.message)


# A Storage Blob Data Reader condition from the conditions docs' examples (one container only).
CONDITION = (
    "((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'})) OR "
    "(@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals 'logs'))"
)


async def test_a_condition_is_stored_and_listed_and_does_not_make_a_second_assignment_possible(
    arm: AuthorizationManagementClient, cloud_env: RunningSimulator
) -> None:
    """The PUT body's `condition` is kept and answered as `properties.condition` with its
    `conditionVersion` (2.0 by default); ARM keeps one assignment per scope, role and principal
    whatever the condition: another that differs only by it is RoleAssignmentExists
    (terraform-provider-azurerm#24045), with or without a condition of its own."""
    principal_id = await principal(cloud_env)
    conditioned = grant(principal_id)
    conditioned.condition = CONDITION
    first = str(uuid.uuid4())
    await arm.role_assignments.create(VAULT, first, conditioned)
    (listed,) = [
        a async for a in arm.role_assignments.list_for_scope(VAULT, filter=f"principalId eq '{principal_id}'")
    ]
    assert (listed.name, listed.condition, listed.condition_version) == (first, CONDITION, "2.0")

    other = grant(principal_id)
    other.condition, other.condition_version = CONDITION.replace("'logs'", "'other'"), "2.0"
    for attempt in (grant(principal_id), other):
        with pytest.raises(ResourceExistsError) as exists:
            await arm.role_assignments.create(VAULT, str(uuid.uuid4()), attempt)
        assert exists.value.error is not None and exists.value.error.code == "RoleAssignmentExists"
        assert first.replace("-", "") in str(exists.value.message)


async def test_reusing_a_name_for_another_principal_is_not_permitted(
    arm: AuthorizationManagementClient, cloud_env: RunningSimulator
) -> None:
    name = str(uuid.uuid4())
    await arm.role_assignments.create(VAULT, name, grant(await principal(cloud_env)))
    with pytest.raises(HttpResponseError) as refused:
        await arm.role_assignments.create(VAULT, name, grant(await principal(cloud_env)))
    assert refused.value.error is not None and refused.value.error.code == "RoleAssignmentUpdateNotPermitted"


async def test_principal_not_found_for_unknown_or_young_principal_without_type(
    arm: AuthorizationManagementClient, cloud_env: RunningSimulator
) -> None:
    with pytest.raises(HttpResponseError) as unknown:
        await arm.role_assignments.create(VAULT, str(uuid.uuid4()), grant(str(uuid.uuid4())))
    assert unknown.value.status_code == 400
    assert unknown.value.error is not None and unknown.value.error.code == "PrincipalNotFound"

    await cloud_env.admin.update_settings(replication_delay_s=60)
    young = await principal(cloud_env, created_seconds_ago=1)
    with pytest.raises(HttpResponseError) as replicating:
        await arm.role_assignments.create(VAULT, str(uuid.uuid4()), grant(young, principal_type=None))
    assert replicating.value.error is not None and replicating.value.error.code == "PrincipalNotFound"
    # Sending principalType skips the directory lookup, as Azure does.
    created = await arm.role_assignments.create(VAULT, str(uuid.uuid4()), grant(young))
    assert created.principal_type == "ServicePrincipal"


async def test_writes_need_a_role_allowing_them_at_or_above_the_scope(
    arm: AuthorizationManagementClient, cloud_env: RunningSimulator
) -> None:
    """Strict by default: the caller writes role assignments only where a role of its own allows it."""
    world = cloud_env.world
    me = world.caller_object_id
    world.role_assignments = [a for a in world.role_assignments if a.principal_id != me]
    principal_id = await principal(cloud_env)
    with pytest.raises(HttpResponseError) as nothing:
        await arm.role_assignments.create(VAULT, str(uuid.uuid4()), grant(principal_id))
    assert nothing.value.status_code == 403
    # A custom role with the two actions, on the resource group: enough below it, not above it.
    world.role_definitions.append(
        RoleDefinition(
            "0d0c7000-0000-4000-8000-000000000001",
            "WIF reconciler assignments",
            ["Microsoft.Authorization/roleAssignments/*", "*/read"],
            ["Microsoft.Authorization/roleAssignments/delete"],
            role_type="CustomRole",
        )
    )
    world.role_assignments.append(
        RoleAssignment(str(uuid.uuid4()), RG, "0d0c7000-0000-4000-8000-000000000001", me)
    )
    name = str(uuid.uuid4())
    await arm.role_assignments.create(VAULT, name, grant(principal_id))
    with pytest.raises(HttpResponseError) as above:
        await arm.role_assignments.create(SUB, str(uuid.uuid4()), grant(principal_id))
    assert above.value.status_code == 403
    assert above.value.error is not None and above.value.error.code == "AuthorizationFailed"
    with pytest.raises(HttpResponseError) as denied:  # its notActions remove delete
        await arm.role_assignments.delete(VAULT, name)
    assert denied.value.status_code == 403
    assert "roleAssignments/delete" in str(denied.value.message)


async def test_token_for_another_audience_is_refused(
    cloud_env: RunningSimulator, credential: ManagedIdentityCredential
) -> None:
    async with arm_client(cloud_env, credential, scope="https://graph.microsoft.com/.default") as wrong:
        with pytest.raises(HttpResponseError) as refused:
            await wrong.role_definitions.get(SUB, KV_READER)
    assert refused.value.status_code == 401
    assert refused.value.error is not None and refused.value.error.code == "InvalidAuthenticationToken"


async def test_the_sdk_default_principal_type_user_is_refused_for_a_service_principal(
    arm: AuthorizationManagementClient, cloud_env: RunningSimulator
) -> None:
    defaults = RoleAssignmentCreateParameters(
        role_definition_id=role_id(KV_READER), principal_id=await principal(cloud_env)
    )
    assert defaults.principal_type == "User"  # what the SDK sends unless told otherwise
    with pytest.raises(HttpResponseError) as refused:
        await arm.role_assignments.create(VAULT, str(uuid.uuid4()), defaults)
    assert refused.value.error is not None and refused.value.error.code == "UnmatchedPrincipalType"
