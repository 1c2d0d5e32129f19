"""An adopted application belongs to the ADO project its owners name in its tenant tag."""

from __future__ import annotations

import json
import shlex

import yaml

from reconciler.core.model import APPLICATION_TAG, ObservedState, Ownership
from reconciler.core.plan import ErrorCode, FindingKind, plan
from reconciler.core.policy import Rule, parse_policy
from reconciler.core.tenancy import Tenant, app_key, tenant_tag
from reconciler.core.validation import Document
from tests.core.builders import APP_ID, OBJECT_ID, app, config, policy

PAYMENTS = config()  # contoso/payments
SQUATTER = config("squat", project="identity")
IDENTITY_TAG = tenant_tag(Tenant("contoso", "identity"))


def test_an_untagged_application_is_blocked_with_the_command_for_its_owner() -> None:
    observed = ObservedState(applications=(app(tags=frozenset({"team:payments"})),))
    result = plan([PAYMENTS], observed, policy())

    (violation,) = result.violations
    assert violation.rule is Rule.NOT_TAGGED and violation.config_id == PAYMENTS.id
    command = violation.message[violation.message.index("az rest") :]
    words = shlex.split(command)
    assert words[:5] == ["az", "rest", "--method", "PATCH", "--uri"]
    assert words[5] == f"https://graph.microsoft.com/v1.0/applications(appId='{APP_ID}')"
    body = json.loads(words[words.index("--body") + 1])
    assert body == {"tags": ["team:payments", "wif-reconciler:tenant=contoso/payments"]}  # keeps its tags
    assert not result.actions and not result.applications


def test_two_tenant_tags_name_no_single_project_and_the_command_keeps_one() -> None:
    tags = frozenset({tenant_tag(Tenant("contoso", "payments")), IDENTITY_TAG, "team:x"})
    result = plan([PAYMENTS], ObservedState(applications=(app(tags=tags),)), policy())
    (violation,) = result.violations
    assert violation.rule is Rule.NOT_TAGGED and not result.actions
    body = json.loads(shlex.split(violation.message[violation.message.index("az rest") :])[-1])
    assert body == {"tags": ["team:x", "wif-reconciler:tenant=contoso/payments"]}


def test_untagged_and_not_owned_reports_both_fixes_tag_first() -> None:
    observed = ObservedState(
        applications=(app(tags=frozenset()),),
        ownership=Ownership("dddddddd-0000-4000-8000-000000000001", frozenset()),
    )
    result = plan([PAYMENTS], observed, policy())
    assert [v.rule for v in result.violations] == [Rule.NOT_TAGGED, Rule.NOT_OWNER]
    assert not result.actions


def test_a_tag_naming_another_project_refuses_the_config_and_writes_nothing_for_it() -> None:
    result = plan([PAYMENTS, SQUATTER], ObservedState(applications=(app(),)), policy())
    assert [(e.config_id, e.code) for e in result.errors] == [(SQUATTER.id, ErrorCode.APPLICATION_CLAIMED)]
    assert "contoso/payments" in result.errors[0].message
    assert all(SQUATTER.id not in a.config_ids for a in result.actions)
    assert any(PAYMENTS.id in a.config_ids for a in result.actions)


def test_the_tag_decides_over_a_claim_row_that_disagrees_and_the_row_is_reported() -> None:
    """The squatter asked first (its claim row), the owners tagged the app for payments."""
    claims = {app_key(APP_ID): Tenant("contoso", "identity")}
    result = plan([PAYMENTS, SQUATTER], ObservedState(applications=(app(),)), policy(), claims=claims)

    assert [e.config_id for e in result.errors] == [SQUATTER.id]
    assert any(PAYMENTS.id in a.config_ids for a in result.actions)
    (finding,) = [f for f in result.findings if f.kind is FindingKind.OVERRULED]
    assert "contoso/identity" in finding.detail and "contoso/payments" in finding.detail


def test_the_policy_may_share_a_tagged_application_with_another_project() -> None:
    text = f"""
apiVersion: wif-reconciler/v1
kind: GrantPolicy
organizations: [contoso]
roles: [Key Vault Reader]
scopes: [/subscriptions]
sharedApplications:
  - appId: {APP_ID}
    projects: [contoso/identity]
"""
    shared, problems = parse_policy(Document("policy.yaml", 1, yaml.safe_load(text)))
    assert shared is not None, problems
    result = plan([PAYMENTS, SQUATTER], ObservedState(applications=(app(),)), shared)
    assert result.errors == () and result.violations == ()
    assert any(SQUATTER.id in a.config_ids for a in result.actions)


def test_an_application_the_reconciler_created_needs_no_tenant_tag_from_anyone() -> None:
    created = app(tags=frozenset({APPLICATION_TAG}))
    result = plan([PAYMENTS], ObservedState(applications=(created,)), policy())
    assert result.violations == () and result.actions


def test_a_tag_for_the_config_s_own_project_lets_it_converge() -> None:
    observed = ObservedState(
        applications=(app(tags=frozenset({IDENTITY_TAG})),), ownership=Ownership("x", frozenset({OBJECT_ID}))
    )
    result = plan([SQUATTER], observed, policy())
    assert result.violations == () and result.errors == ()
    assert any(SQUATTER.id in a.config_ids for a in result.actions)
