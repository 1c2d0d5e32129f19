"""The reconciler's rights on the target scopes: a narrow custom role, limited by an ABAC condition
to the roles policy.yaml allows, to service principals, and never to the reconciler itself.

main.bicep holds the condition; these tests read it, compare its role GUIDs with policy.yaml's
`roles:` through the app's own `builtin_role()`, and check its shape and attribute names against
Microsoft's documentation (each rule below names its source).
"""

from __future__ import annotations

import re

import pytest
import yaml

from reconciler.core.roles import builtin_role
from tests.infra.bicep import ROOT, all_resources, body, parse, path, render, resolve

RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
RBAC_MODULES = ("app/rbac-admin-subscription.bicep", "app/rbac-admin-resource-group.bicep")
PLACEHOLDER = "RECONCILER_PRINCIPAL_ID"

# Attribute names and operators, from "Azure role assignment conditions: Authorization actions and
# attributes" (https://learn.microsoft.com/azure/role-based-access-control/conditions-authorization-actions-attributes):
# roleAssignments/write offers them as Request attributes, roleAssignments/delete as Resource
# attributes; RoleDefinitionId and PrincipalId are GUIDs (ForAnyOfAnyValues:GuidEquals,
# ForAnyOfAllValues:GuidNotEquals), PrincipalType a string with the values User, ServicePrincipal,
# Group (ForAnyOfAnyValues:StringEqualsIgnoreCase).
ROLE = "Microsoft.Authorization/roleAssignments:RoleDefinitionId"
PRINCIPAL_TYPE = "Microsoft.Authorization/roleAssignments:PrincipalType"
PRINCIPAL_ID = "Microsoft.Authorization/roleAssignments:PrincipalId"


def branch(action: str, source: str) -> str:
    """One branch of the condition, in the form of Microsoft's "Constrain roles and principal types"
    example ("Examples to delegate Azure role assignment management with conditions",
    https://learn.microsoft.com/azure/role-based-access-control/delegate-role-assignments-examples),
    plus a PrincipalId clause as in its "Constrain roles and specific groups" example, negated."""
    return (
        f"( ( !(ActionMatches{{'Microsoft.Authorization/roleAssignments/{action}'}}) ) OR "
        f"( @{source}[{ROLE}] ForAnyOfAnyValues:GuidEquals {{ids}} "
        f"AND @{source}[{PRINCIPAL_TYPE}] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}} "
        f"AND @{source}[{PRINCIPAL_ID}] ForAnyOfAllValues:GuidNotEquals {{{PLACEHOLDER}}} ) )"
    )


DOCUMENTED_SHAPE = f"{branch('write', 'Request')} AND {branch('delete', 'Resource')}"
GUID_LIST = re.compile(
    r"@(?P<source>Request|Resource)\["
    + re.escape(ROLE)
    + r"\]\s+ForAnyOfAnyValues:GuidEquals\s+\{(?P<ids>[^}]*)\}"
)
# The custom role: what reconciler/adapters/arm.py calls (list, create and delete role
# assignments; read a role definition), nothing else.
CUSTOM_ROLE_ACTIONS = [
    "Microsoft.Authorization/roleAssignments/read",
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Authorization/roleAssignments/delete",
    "Microsoft.Authorization/roleDefinitions/read",
]


def condition_template() -> str:
    value = resolve("main.bicep", "rbacAdminConditionTemplate")
    assert isinstance(value, str), "main.bicep: rbacAdminConditionTemplate must be a literal string"
    return value


def policy_role_names() -> list[str]:
    policy = yaml.safe_load((ROOT / "policy.yaml").read_text(encoding="utf-8"))
    roles: list[str] = policy["roles"]
    return roles


def policy_role_ids() -> set[str]:
    ids = set()
    for name in policy_role_names():
        role = builtin_role(name)
        assert role is not None, f"policy.yaml role {name!r} is not in reconciler/core/roles.py"
        ids.add(role.id)
    return ids


def guid_lists() -> dict[str, list[str]]:
    found = {match["source"]: match["ids"] for match in GUID_LIST.finditer(condition_template())}
    assert set(found) == {"Request", "Resource"}, (
        "the condition must constrain both write (@Request) and delete (@Resource)"
    )
    return {source: [guid.strip().lower() for guid in ids.split(",")] for source, ids in found.items()}


@pytest.mark.parametrize("source", ["Request", "Resource"])
def test_condition_roles_equal_the_policy_roles(source: str) -> None:
    ids = guid_lists()[source]
    assert len(ids) == len(set(ids)), f"duplicate GUIDs in the @{source} list"
    assert set(ids) == policy_role_ids(), (
        f"@{source} list differs from policy.yaml roles: "
        f"extra {sorted(set(ids) - policy_role_ids())}, missing {sorted(policy_role_ids() - set(ids))}"
    )


def test_condition_has_the_documented_shape() -> None:
    normalized = " ".join(condition_template().split())
    with_placeholders = re.sub(r"\{[0-9a-fA-F, -]+\}", "{ids}", normalized)
    assert with_placeholders == DOCUMENTED_SHAPE


@pytest.mark.parametrize("source", ["Request", "Resource"])
def test_both_branches_allow_only_service_principals_other_than_the_reconciler(source: str) -> None:
    """Write (@Request) and delete (@Resource) alike: an assignment to a user or a group, or to the
    reconciler's own identity, is refused whatever its role."""
    text = " ".join(condition_template().split())
    assert (
        f"@{source}[{PRINCIPAL_TYPE}] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}}" in text
    )
    assert f"@{source}[{PRINCIPAL_ID}] ForAnyOfAllValues:GuidNotEquals {{{PLACEHOLDER}}}" in text


def test_the_excluded_principal_is_the_reconcilers_own_identity() -> None:
    condition = parse("main.bicep")["variables"]["rbacAdminCondition"]["value"]
    assert render(condition) == (
        f"replace(rbacAdminConditionTemplate, {PLACEHOLDER}, identity.outputs.principalId)"
    )
    modules = parse("main.bicep")["modules"]
    for symbol in ("serviceBus", "storage", "monitoring"):  # the same identity holds the app's roles
        assert (
            render(body(modules[symbol])["params"]["reconcilerPrincipalId"]) == "identity.outputs.principalId"
        )


def test_policy_roles_cannot_grant_roles_themselves() -> None:
    for name in policy_role_names():
        role = builtin_role(name)
        assert role is not None
        assert not role.privileged, f"{name} can change access: it must not be delegable"


@pytest.mark.parametrize("module_file", RBAC_MODULES)
def test_the_reconciler_holds_a_custom_role_with_only_the_actions_it_calls(module_file: str) -> None:
    """Narrower than the built-in Role Based Access Control Administrator (which adds */read and
    Microsoft.Support/*). A condition applies to a custom role too: "You can select any role that
    includes the Microsoft.Authorization/roleAssignments/write or .../delete actions"
    (https://learn.microsoft.com/azure/role-based-access-control/delegate-role-assignments-portal)."""
    (definition,) = [
        r
        for r in all_resources()
        if r.file == module_file and r.type == "Microsoft.Authorization/roleDefinitions"
    ]
    properties = definition.body["properties"]
    (permission,) = properties["permissions"]
    assert permission == {
        "actions": CUSTOM_ROLE_ACTIONS,
        "notActions": [],
        "dataActions": [],
        "notDataActions": [],
    }
    assert properties["type"] == "CustomRole"
    (scope,) = properties["assignableScopes"]
    assert render(scope) in {
        "subscription().id",
        "resource_group().id",
    }  # assignable only where it is created
    # Role names are unique in a tenant: one per scope and reconciler identity.
    assert "reconcilerPrincipalId" in render(properties["roleName"])


@pytest.mark.parametrize("module_file", RBAC_MODULES)
def test_the_custom_role_is_assigned_with_the_condition(module_file: str) -> None:
    (assignment,) = [
        r
        for r in all_resources()
        if r.file == module_file and r.type == "Microsoft.Authorization/roleAssignments"
    ]
    properties = assignment.body["properties"]
    assert render(properties["roleDefinitionId"]) == (
        "subscription_resource_id(Microsoft.Authorization/roleDefinitions, roleAssignmentManager.name)"
    )
    assert properties["condition"] == "condition"
    assert properties["conditionVersion"] == "2.0"
    assert properties["principalType"] == "ServicePrincipal"
    assert properties["principalId"] == "reconcilerPrincipalId"


def test_main_passes_the_condition_to_every_rbac_module() -> None:
    modules = parse("main.bicep")["modules"]
    rbac = {
        symbol: body(entry) for symbol, entry in modules.items() if entry["detail"]["path"] in RBAC_MODULES
    }
    assert {entry["detail"]["path"] for entry in modules.values()} >= set(RBAC_MODULES)
    for symbol, module in rbac.items():
        assert module["params"]["condition"] == "rbacAdminCondition", symbol
        assert render(module["params"]["reconcilerPrincipalId"]) == "identity.outputs.principalId", symbol


def test_no_role_that_can_grant_roles_is_assigned_without_a_condition() -> None:
    privileged = {OWNER, USER_ACCESS_ADMINISTRATOR, RBAC_ADMINISTRATOR}
    for assignment in all_resources():
        if assignment.type != "Microsoft.Authorization/roleAssignments":
            continue
        properties = assignment.body["properties"]
        role = resolve(
            assignment.file, path(properties, "roleDefinitionId.function.parameters.resource_name_1")
        )
        grants_roles = render(role) in privileged or render(role) == "roleAssignmentManager.name"
        if grants_roles:
            assert "condition" in properties, (
                f"{assignment.file}: {assignment.symbol} grants roles unconstrained"
            )
