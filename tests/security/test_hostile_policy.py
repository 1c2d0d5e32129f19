"""The grant policy as a careless platform team writes it (second hostile review of the grant path).

A scope pattern that can never cover a scope (a typo in a keyword, a glob inside a name, a
subscription that is no GUID) used to load without a word: every ticket was then refused with
`scope-not-allowed` and nobody learned why until tickets failed. A `*` in a keyword's place
covered more kinds of scope than its author meant (`/subscriptions/<s>/*/*` reads as "any
resource group", and covered every subscription-level resource too). Each is now refused when
the policy is loaded, with the pattern's position and what is expected there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.identifiers import ArmScope, IdentifierError, ScopePattern
from reconciler.documents import InputError, load_policy

SUB = "6b1e2c5a-3f4d-4e8a-9c7b-1a2b3c4d5e6f"
POLICY = """apiVersion: wif-reconciler/v1
kind: GrantPolicy
organizations: [contoso]
roles: [Key Vault Reader]
scopes: [{pattern}]
"""


def load(tmp_path: Path, pattern: str, organizations: str = "[contoso]") -> None:
    path = tmp_path / "policy.yaml"
    text = POLICY.format(pattern=f"'{pattern}'").replace("[contoso]", organizations)
    path.write_text(text)
    load_policy(path)


NEVER_COVERS = {
    "keyword typo": ("/subscription/*", "expected 'subscriptions' or 'providers'"),
    "resource group keyword typo": ("/subscriptions/*/resourceGroup/*", "expected 'resourceGroups'"),
    "glob inside a name": ("/subscriptions/*/resourceGroups/rg-*", "'*' stands for a whole name"),
    "double star": ("/subscriptions/**", "'*' stands for a whole name"),
    "subscription that is no GUID": ("/subscriptions/prod", "a GUID"),
    "subscription in braces": (f"/subscriptions/{{{SUB}}}", "a GUID"),
    "namespace without a dot": (f"/subscriptions/{SUB}/providers/KeyVault", "resource provider namespace"),
    "management group keyword typo": (
        "/providers/Microsoft.Management/managementGroup/mg",
        "expected 'managementGroups'",
    ),
    "below a management group": (
        f"/providers/Microsoft.Management/managementGroups/mg/subscriptions/{SUB}",
        "nothing may follow",
    ),
}
STAR_FOR_A_KEYWORD = {
    "everything": "/*",
    "any kind below a subscription": f"/subscriptions/{SUB}/*/*",
    "any provider keyword": "/subscriptions/*/resourceGroups/*/*",
    "management namespace": "/providers/*/managementGroups/*",
}


@pytest.mark.parametrize(("pattern", "reason"), NEVER_COVERS.values(), ids=NEVER_COVERS.keys())
def test_a_pattern_that_can_never_cover_a_scope_is_refused_when_the_policy_loads(
    tmp_path: Path, pattern: str, reason: str
) -> None:
    with pytest.raises(InputError) as refused:
        load(tmp_path, pattern)
    (problem,) = refused.value.problems
    assert "scopes[0]" in problem and reason in problem, problem
    assert "\n" not in problem


@pytest.mark.parametrize("pattern", STAR_FOR_A_KEYWORD.values(), ids=STAR_FOR_A_KEYWORD.keys())
def test_a_star_in_place_of_a_keyword_is_refused(tmp_path: Path, pattern: str) -> None:
    with pytest.raises(InputError) as refused:
        load(tmp_path, pattern)
    assert "'*' stands for a name, not for the keyword" in refused.value.problems[0]


@pytest.mark.parametrize(
    "pattern",
    [
        "/subscriptions",
        "/subscriptions/*",
        f"/subscriptions/{SUB.upper()}/resourcegroups",
        "/subscriptions/*/resourceGroups/*",
        "/subscriptions/*/resourceGroups/rg-pay/providers",
        "/subscriptions/*/resourceGroups/*/providers/Microsoft.KeyVault",
        "/subscriptions/*/resourceGroups/*/providers/*/vaults/*",
        f"/subscriptions/{SUB}/providers/Microsoft.Web/sites/*/slots/*",
        "/providers/Microsoft.Management/managementGroups",
        "/providers/Microsoft.Management/managementGroups/*",
        "/providers/microsoft.management/managementgroups/mg-sandbox",
    ],
)
def test_every_prefix_of_a_scope_with_stars_for_names_still_loads(tmp_path: Path, pattern: str) -> None:
    load(tmp_path, pattern)


def test_what_a_grammatical_pattern_covers_is_unchanged() -> None:
    pattern = ScopePattern("/subscriptions/*/resourceGroups/*/providers/Microsoft.KeyVault")
    assert pattern.covers(
        ArmScope.parse(f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv")
    )
    assert not pattern.covers(ArmScope.parse(f"/subscriptions/{SUB}/resourceGroups/rg"))
    assert not pattern.covers(
        ArmScope.parse(f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Web/sites/kv")
    )
    with pytest.raises(IdentifierError, match="scope pattern"):
        ScopePattern("/subscription/*")


@pytest.mark.parametrize(
    "organization",
    ["'*'", "contoso/payments", "https://dev.azure.com/contoso", "c\u00f6ntoso", "-contoso"],
)
def test_an_organization_azure_devops_cannot_have_is_refused_in_the_policy(
    tmp_path: Path, organization: str
) -> None:
    """It could never match a config (organization names are parsed by ADO's rule), so every
    ticket of the organization its author meant was refused with organization-not-allowed."""
    with pytest.raises(InputError) as refused:
        load(tmp_path, "/subscriptions/*", organizations=f"[fabrikam, {organization}]")
    (problem,) = refused.value.problems
    assert "organizations[1]" in problem and "Azure DevOps organization name" in problem, problem


def test_policy_organizations_still_compare_without_case(tmp_path: Path) -> None:
    load(tmp_path, "/subscriptions/*", organizations="[Contoso, FABRIKAM-2]")
