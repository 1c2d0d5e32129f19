"""A config naming a tenant other than the one the reconciler signs in to is blocked: its
connection would sign in to a tenant where nothing was set up."""

from __future__ import annotations

from dataclasses import replace

from reconciler.core.actions import ActionKind
from reconciler.core.model import ObservedState
from reconciler.core.plan import ErrorCode, plan
from tests.core.builders import TENANT, app, assignment, config, connection, credential_for, policy

ELSEWHERE = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"  # another Entra tenant
KV = config("kv-reader")
NEW = config("new", create_as="sc-new")
AWAY = replace(config("away", create_as="sc-away"), tenant_id=ELSEWHERE)


def test_a_config_naming_another_tenant_fails_with_both_tenants_and_gets_nothing() -> None:
    result = plan([KV, NEW, AWAY], ObservedState(applications=(app(),), tenant_id=TENANT), policy())

    (error,) = result.errors
    assert (error.config_id, error.code) == (AWAY.id, ErrorCode.TENANT_MISMATCH)
    assert f"config names tenant {ELSEWHERE}, but the reconciler manages tenant {TENANT}" in error.message
    assert "fix tenantId or run the reconciler in tenant" in error.message
    assert not [a for a in result.actions if AWAY.id in a.config_ids]  # no app, credential, role, connection
    assert not [a for a in result.actions if "sc-away" in a.target]
    planned = {config_id for a in result.actions for config_id in a.config_ids}
    assert {KV.id, NEW.id} <= planned  # the others proceed


def test_the_tenant_is_compared_case_insensitively() -> None:
    result = plan([KV], ObservedState(applications=(app(),), tenant_id=TENANT.upper()), policy())
    assert not result.errors and result.actions


def test_an_unknown_tenant_checks_nothing() -> None:
    """A token without a readable `tid` (or an offline snapshot): the plan is as before."""
    unknown = plan([KV, AWAY], ObservedState(applications=(app(),)), policy())
    assert not unknown.errors
    assert [a for a in unknown.actions if AWAY.id in a.config_ids]


def test_what_a_blocked_config_already_has_is_kept_not_pruned() -> None:
    """Blocked, not retired: its connection, credential and roles stay as they are."""
    away = replace(KV, tenant_id=ELSEWHERE)
    current = connection(KV)
    observed = ObservedState(
        applications=(app(credential_for(KV, current)),),
        role_assignments=(assignment(owner=KV.id),),
        connections=(current,),
        tenant_id=TENANT,
    )
    result = plan([away], observed, policy())
    assert [e.code for e in result.errors] == [ErrorCode.TENANT_MISMATCH]
    assert not result.actions


def test_a_retired_config_naming_another_tenant_is_still_pruned() -> None:
    """What it owns lives in the reconciler's tenant, whatever its tenantId said: removed as usual."""
    away = replace(KV, tenant_id=ELSEWHERE)
    current = connection(away)
    observed = ObservedState(
        applications=(app(credential_for(away, current)),),
        role_assignments=(assignment(owner=away.id),),
        connections=(current,),
        tenant_id=TENANT,
    )
    result = plan([], observed, policy(), retired=[away])
    assert not result.errors
    kinds = {a.kind for a in result.actions}
    assert {ActionKind.DELETE_CREDENTIAL, ActionKind.DELETE_ROLE_ASSIGNMENT} <= kinds
