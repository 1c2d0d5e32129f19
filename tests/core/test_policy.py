"""The grant policy: allow-lists for organizations, roles and scopes; privileged roles denied by default."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from reconciler.core.identifiers import ScopePattern
from reconciler.core.model import CustomRole
from reconciler.core.policy import Rule, parse_policy
from reconciler.core.validation import Document
from tests.core.builders import OWNER, READER, SUBSCRIPTION, VAULT, config, policy

RBAC_ADMIN = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
UAA = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
RG = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-pay"


def rules(
    *grants: tuple[str, str], organization: str = "contoso", custom: tuple[CustomRole, ...] = ()
) -> list[Rule]:
    checked = config(grants=grants, organization=organization)
    return [v.rule for v in policy().check(checked, custom)]


def test_allowed_grant_passes() -> None:
    assert rules((READER, RG)) == []


def test_organization_outside_the_allow_list() -> None:
    assert rules((READER, RG), organization="evilcorp") == [Rule.ORGANIZATION]


def test_privileged_roles_are_denied_unless_named_explicitly() -> None:
    for privileged in (OWNER, UAA, RBAC_ADMIN):
        assert rules((privileged, RG)) == [Rule.PRIVILEGED]
    explicit = policy(privileged=("Owner",))
    assert explicit.check(config(grants=((OWNER, RG),))) == []


CUSTOM = "99999999-0000-0000-0000-000000000001"


def test_custom_role_that_can_write_role_assignments_is_privileged() -> None:
    sneaky = CustomRole(CUSTOM, "Helpful Operator", ("Microsoft.Authorization/*/write", "*/read"))
    assert rules((CUSTOM, RG), custom=(sneaky,)) == [Rule.PRIVILEGED]


@pytest.mark.parametrize(
    ("actions", "not_actions"),
    [
        (("*",), ("Microsoft.Authorization/roleAssignments/write",)),
        (("Microsoft.Authorization/roleDefinitions/write",), ()),
        (("Microsoft.Authorization/elevateAccess/Action",), ()),
    ],
)
def test_custom_role_listed_as_an_ordinary_role_is_privileged_by_its_effective_permissions(
    actions: tuple[str, ...], not_actions: tuple[str, ...]
) -> None:
    listed = replace(policy(), role_ids=policy().role_ids | {CUSTOM})
    sneaky = CustomRole(CUSTOM, "Almost Contributor", actions, not_actions)
    checked = config(grants=((CUSTOM, RG),))
    assert [v.rule for v in listed.check(checked, (sneaky,))] == [Rule.PRIVILEGED]
    harmless = CustomRole(CUSTOM, "Vault Reader", ("Microsoft.KeyVault/*/read",))
    assert listed.check(checked, (harmless,)) == []


def test_unknown_role_is_denied_because_it_may_be_privileged() -> None:
    assert rules(("99999999-0000-0000-0000-000000000002", RG)) == [Rule.UNKNOWN_ROLE]


def test_a_listed_custom_role_whose_definition_was_not_read_counts_as_privileged() -> None:
    checked = config(grants=((CUSTOM, RG),))
    listed = replace(policy(), role_ids=policy().role_ids | {CUSTOM})
    assert listed.check(checked) == []  # a ticket, before definitions are read: the lists decide
    (violation,) = listed.check(checked, ())  # the plan: definitions read, this one not found
    assert violation.rule is Rule.UNKNOWN_ROLE and "privilegedRoles" in violation.message
    trusted = replace(policy(), privileged_role_ids=frozenset({CUSTOM}))
    assert trusted.check(checked, ()) == []


def test_role_not_in_the_allow_list() -> None:
    assert rules(("4633458b-17de-408a-b874-0445c86b69e6", RG)) == [Rule.ROLE]


def test_scope_must_be_under_an_allowed_prefix_with_star_segments() -> None:
    assert rules((READER, VAULT)) == []
    assert rules((READER, f"/subscriptions/{SUBSCRIPTION}")) == [Rule.SCOPE]
    pattern = ScopePattern("/subscriptions/*/resourceGroups/rg-pay")
    assert pattern.covers(f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-pay")
    assert not pattern.covers(f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-pay-other")
    assert not pattern.covers("/subscriptions/a/b/resourceGroups/rg-pay")


def test_violation_says_which_config_which_grant_which_rule() -> None:
    (violation,) = policy().check(config(grants=((OWNER, RG),)))
    assert violation.config_id == "contoso/payments/kv-reader"
    assert violation.subject == f"{OWNER} on {RG}"
    assert "privilegedRoles" in str(violation) and "[privileged-role]" in str(violation)


def parse(body: dict[str, Any]) -> list[str]:
    parsed, problems = parse_policy(Document("policy.yaml", 1, body))
    assert (parsed is None) == bool(problems)
    return [str(p) for p in problems]


def test_policy_file_validation() -> None:
    good = {
        "apiVersion": "wif-reconciler/v1",
        "kind": "GrantPolicy",
        "organizations": ["Contoso"],
        "roles": ["Reader", "21090545-7ca7-4776-b22c-e363652d74d2"],
        "scopes": ["/subscriptions/*"],
    }
    assert parse(good) == []
    assert parse({**good, "roles": ["Reader", "Wizard"]}) == [
        "policy.yaml, document 1, roles: unknown role 'Wizard': "
        "use a built-in role name or a role definition GUID"
    ]
    assert parse({**good, "scopes": "everything"}) == [
        "policy.yaml, document 1, scopes: expected a list of non-empty strings"
    ]
    assert parse({**good, "extra": 1})[0].startswith("policy.yaml, document 1, extra: unknown field")
