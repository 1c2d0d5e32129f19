"""The doctor's rules: what the identity needs, judged from facts, and the fix it prints."""

from __future__ import annotations

from dataclasses import replace

from reconciler.core.identifiers import ArmScope, ScopePattern
from reconciler.core.model import CustomRole
from reconciler.core.policy import SharedApplication
from reconciler.core.rights import (
    RBAC_OPERATIONS,
    Verdict,
    adopted_applications,
    graph_permission,
    ownership,
    projects_to_check,
    rbac_grants,
    target_scopes,
)
from reconciler.core.roles import BUILTIN_ROLES, allows
from tests.core.builders import SUBSCRIPTION, VAULT, assignment, config, policy

WRITE, DELETE = RBAC_OPERATIONS
ME = "d1000000-0000-4000-8000-00000000a11c"
SUB = f"/subscriptions/{SUBSCRIPTION}"
RG = f"{SUB}/resourceGroups/rg-pay"
RBAC_ADMIN = next(r for r in BUILTIN_ROLES if r.name == "Role Based Access Control Administrator")
CONTRIBUTOR = next(r for r in BUILTIN_ROLES if r.name == "Contributor")
ROLES = {r.id: CustomRole(r.id, r.name, r.actions, r.not_actions) for r in (RBAC_ADMIN, CONTRIBUTOR)} | {
    "0d0c7000-0000-4000-8000-000000000001": CustomRole(
        "0d0c7000-0000-4000-8000-000000000001",
        "assignments, no delete",
        ("Microsoft.Authorization/roleAssignments/*",),
        ("Microsoft.Authorization/roleAssignments/DELETE",),
    )
}


def test_an_operation_is_allowed_by_effective_permissions_not_by_name() -> None:
    assert allows(RBAC_ADMIN.actions, RBAC_ADMIN.not_actions, WRITE)
    assert allows(RBAC_ADMIN.actions, RBAC_ADMIN.not_actions, DELETE.upper())  # ARM ignores case
    assert not allows(CONTRIBUTOR.actions, CONTRIBUTOR.not_actions, WRITE)  # `*` minus Authorization writes
    assert allows(("*",), (), WRITE)
    assert allows(("microsoft.authorization/*/write",), (), WRITE)
    assert not allows(("Microsoft.Authorization/roleAssignments/read",), (), WRITE)
    assert not allows(("Microsoft.Authorization/roleAssignments/*",), ("*/delete",), DELETE)


def test_rbac_grants_need_a_role_allowing_each_operation_at_or_above_the_scope() -> None:
    target = ArmScope.parse(VAULT)
    at_subscription = assignment(SUB, RBAC_ADMIN.id, principal=ME)
    assert rbac_grants(target, [at_subscription], ROLES) == {WRITE: at_subscription, DELETE: at_subscription}
    below = assignment(f"{VAULT}/secrets/x", RBAC_ADMIN.id, principal=ME)
    other_group = assignment(f"{SUB}/resourceGroups/rg-other", RBAC_ADMIN.id, principal=ME)
    contributor = assignment(RG, CONTRIBUTOR.id, principal=ME)
    unknown_role = assignment(RG, "0d0c7000-0000-4000-8000-00000000dead", principal=ME)
    assert rbac_grants(target, [below, other_group, contributor, unknown_role], ROLES) == {
        WRITE: None,
        DELETE: None,
    }
    narrower = assignment(RG, "0d0c7000-0000-4000-8000-000000000001", principal=ME)
    assert rbac_grants(target, [narrower], ROLES) == {WRITE: narrower, DELETE: None}
    management_group = replace(
        at_subscription, scope="/providers/Microsoft.Management/managementGroups/platform"
    )
    assert rbac_grants(target, [management_group], ROLES)[WRITE] == management_group


def test_target_scopes_are_the_configs_allowed_scopes_and_the_policys_fixed_ones() -> None:
    fixed = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-fixed"
    allowed = replace(policy(), scopes=(*policy().scopes, ScopePattern(fixed)))
    outside = config("wide", grants=(("acdd72a7-3385-48ef-bd42-f606fba81ae7", SUB),))  # not under a pattern
    scopes, unexpanded = target_scopes(allowed, [config(), outside])
    assert [str(s) for s in scopes] == sorted([str(ArmScope.parse(VAULT)), fixed])
    assert unexpanded == []
    assert target_scopes(allowed, []) == ([ArmScope.parse(fixed)], ["/subscriptions/*/resourceGroups/*"])


def test_the_graph_permission_is_read_from_the_token_roles() -> None:
    assert graph_permission({"Application.ReadWrite.OwnedBy"}, ME).verdict is Verdict.OK
    broader = graph_permission({"Application.ReadWrite.All"}, ME)
    assert broader.verdict is Verdict.OK and "more than the reconciler needs" in broader.detail
    missing = graph_permission({"User.Read.All"}, ME)
    assert missing.verdict is Verdict.MISSING and "User.Read.All" in missing.detail
    assert f'"principalId":"{ME}"' in missing.fix and "18a4783c-866b-4cc7-a460-3d5e5662c884" in missing.fix


def test_adopted_applications_and_their_ownership() -> None:
    created = config("made", app_id=None, create_as="sc-made")
    adopted = adopted_applications([config("a"), config("b"), created])
    assert adopted == {config().application.app_id: ["contoso/payments/a", "contoso/payments/b"]}
    app_id = config().application.app_id or ""
    assert ownership(app_id, ["x"], True, ME).verdict is Verdict.OK
    foreign = ownership(app_id, ["x"], False, ME)
    assert foreign.verdict is Verdict.MISSING
    assert foreign.fix.endswith(f"az ad app owner add --id {app_id} --owner-object-id {ME}")
    assert "no application" in ownership(app_id, ["x"], None, ME).detail


def test_projects_are_the_configs_and_the_policys_in_allowed_organizations() -> None:
    shared = SharedApplication("app", frozenset({"fabrikam/storefront", "contoso/*"}))
    allowed = replace(policy(), shared_applications=(shared,))
    configs = [config(), config("x", organization="elsewhere", project="p")]
    assert projects_to_check(allowed, configs) == [("contoso", "payments"), ("fabrikam", "storefront")]
