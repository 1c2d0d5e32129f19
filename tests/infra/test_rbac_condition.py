"""The reconciler's RBAC rights are limited to exactly the roles policy.yaml allows.

main.bicep holds the ABAC condition of its Role Based Access Control Administrator
assignments (Azure's documented "Constrain roles" shape); these tests read the role GUIDs out
of that condition and compare them with policy.yaml's `roles:` through the app's own
`builtin_role()`, so the policy and the infrastructure cannot drift apart unnoticed.
"""

from __future__ import annotations

import re

import pytest
import yaml

from reconciler.core.roles import builtin_role
from tests.infra.bicep import ROOT, all_resources, body, parse, path, resolve

RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
RBAC_MODULES = ("app/rbac-admin-subscription.bicep", "app/rbac-admin-resource-group.bicep")

ATTRIBUTE = "Microsoft.Authorization/roleAssignments:RoleDefinitionId"
GUID_LIST = re.compile(
    r"@(?P<source>Request|Resource)\["
    + re.escape(ATTRIBUTE)
    + r"\]\s+ForAnyOfAnyValues:GuidEquals\s+\{(?P<ids>[^}]*)\}"
)
# The documented "Constrain roles" condition, with {ids} where each GUID list goes.
DOCUMENTED_SHAPE = (
    "( ( !(ActionMatches{'Microsoft.Authorization/roleAssignments/write'}) ) OR "
    f"( @Request[{ATTRIBUTE}] ForAnyOfAnyValues:GuidEquals {{ids}} ) ) "
    "AND "
    "( ( !(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'}) ) OR "
    f"( @Resource[{ATTRIBUTE}] ForAnyOfAnyValues:GuidEquals {{ids}} ) )"
)


def condition() -> str:
    value = resolve("main.bicep", "rbacAdminCondition")
    assert isinstance(value, str), "main.bicep: rbacAdminCondition must be a literal string"
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
    found = {match["source"]: match["ids"] for match in GUID_LIST.finditer(condition())}
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


def test_condition_has_the_documented_constrain_roles_shape() -> None:
    normalized = " ".join(condition().split())
    with_placeholders = re.sub(r"\{[0-9a-fA-F, -]+\}", "{ids}", normalized)
    assert with_placeholders == DOCUMENTED_SHAPE


def test_policy_roles_cannot_grant_roles_themselves() -> None:
    for name in policy_role_names():
        role = builtin_role(name)
        assert role is not None
        assert not role.privileged, f"{name} can change access: it must not be delegable"


@pytest.mark.parametrize("module_file", RBAC_MODULES)
def test_rbac_administrator_assignment_carries_the_condition(module_file: str) -> None:
    assignments = [r for r in all_resources() if r.file == module_file]
    assert len(assignments) == 1
    properties = assignments[0].body["properties"]
    role = path(properties, "roleDefinitionId.function.parameters.resource_name_1")
    assert resolve(module_file, role) == RBAC_ADMINISTRATOR
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


def test_no_role_that_can_grant_roles_is_assigned_without_a_condition() -> None:
    privileged = {OWNER, USER_ACCESS_ADMINISTRATOR, RBAC_ADMINISTRATOR}
    for assignment in all_resources():
        if assignment.type != "Microsoft.Authorization/roleAssignments":
            continue
        properties = assignment.body["properties"]
        role = resolve(
            assignment.file, path(properties, "roleDefinitionId.function.parameters.resource_name_1")
        )
        if role in privileged:
            assert "condition" in properties, (
                f"{assignment.file}: {assignment.symbol} grants {role} unconstrained"
            )
