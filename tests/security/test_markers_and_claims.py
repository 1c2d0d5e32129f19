"""The pure parts of tenancy and ownership: exact markers, the planner's own claim and connection
checks, and the policy's sharedApplications rule."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.actions import Action, ActionKind, ApplicationAction
from reconciler.core.model import APPLICATION_TAG, ObservedState, marker_for, owner_of
from reconciler.core.plan import ErrorCode, Plan, plan
from reconciler.core.policy import parse_policy
from reconciler.core.tenancy import Tenant, app_key, claim_key, tenant_tag
from reconciler.core.validation import Document
from tests.core.builders import APP_ID, app, assignment, config, connection, credential_for, policy

SEGMENT = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,12}", fullmatch=True)
CONFIG_IDS = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)
ID_CHARACTERS = set("abcdefghijklmnopqrstuvwxyz0123456789._-/")


@given(CONFIG_IDS)
def test_a_marker_names_exactly_its_config(config_id: str) -> None:
    assert owner_of(marker_for(config_id)) == config_id


@given(CONFIG_IDS, st.text(min_size=1, max_size=20))
def test_a_description_that_merely_ends_with_a_marker_is_not_ours(config_id: str, before: str) -> None:
    assert owner_of(before + marker_for(config_id)) is None


@given(CONFIG_IDS, st.text(min_size=1, max_size=20).filter(lambda t: t[0] not in ID_CHARACTERS))
def test_a_marker_followed_by_anything_else_is_not_ours(config_id: str, after: str) -> None:
    assert owner_of(marker_for(config_id) + after) is None


PAYMENTS = config()
IDENTITY = config("deploy", project="identity")


def actions_of(result: Plan, config_id: str) -> tuple[Action, ...]:
    return tuple(a for a in result.actions if config_id in a.config_ids)


def observed_with() -> ObservedState:
    conn = connection(PAYMENTS)
    return ObservedState(
        applications=(app(credential_for(PAYMENTS, conn)),),
        role_assignments=(assignment(owner=PAYMENTS.id),),
        connections=(conn,),
    )


def test_the_planner_writes_nothing_for_a_config_of_another_project_than_the_claim() -> None:
    claims = {app_key(APP_ID): Tenant("contoso", "payments")}
    result = plan([PAYMENTS, IDENTITY], observed_with(), policy(), claims=claims)
    assert [e.config_id for e in result.errors] == [IDENTITY.id]
    assert result.errors[0].code is ErrorCode.APPLICATION_CLAIMED
    assert all(IDENTITY.id not in a.config_ids for a in result.actions)
    assert actions_of(result, PAYMENTS.id) == ()  # converged, and nothing of it removed


def test_the_policy_may_share_a_claimed_application() -> None:
    text = f"""
apiVersion: wif-reconciler/v1
kind: GrantPolicy
organizations: [contoso]
roles: [Key Vault Reader]
scopes: [/subscriptions/*/resourceGroups/*]
sharedApplications:
  - appId: {APP_ID.upper()}
    projects: [Contoso/Identity]
"""
    shared, problems = parse_policy(Document("policy.yaml", 1, yaml.safe_load(text)))
    assert shared is not None, problems
    claims = {app_key(APP_ID): Tenant("contoso", "payments")}
    result = plan([PAYMENTS, IDENTITY], observed_with(), shared, claims=claims)
    assert result.errors == ()
    assert [a.kind for a in actions_of(result, IDENTITY.id)][:1] == [ActionKind.CREATE_CONNECTION]


def test_an_application_created_for_another_project_is_refused_by_its_tag() -> None:
    created = config("new", create_as="sc-payments-new")
    intruder = config("steal", project="identity", create_as="sc-payments-new")
    tags = frozenset({APPLICATION_TAG, tenant_tag(Tenant.of(created))})
    observed = ObservedState(
        applications=(app(app_id="dddddddd-0000-0000-0000-000000000001", name="sc-payments-new", tags=tags),)
    )
    result = plan([intruder], observed, policy())
    assert [e.code for e in result.errors] == [ErrorCode.APPLICATION_CLAIMED] and result.actions == ()


def test_a_new_application_is_tagged_with_the_project_that_claimed_it() -> None:
    created = config("new", create_as="sc-payments-new")
    result = plan(
        [created],
        ObservedState(),
        policy(),
        claims={claim_key(created.application): Tenant("contoso", "payments")},
    )
    (create,) = [a for a in result.actions if a.kind is ActionKind.CREATE_APPLICATION]
    assert isinstance(create, ApplicationAction)
    assert set(create.tags) == {APPLICATION_TAG, "wif-reconciler:tenant=contoso/payments"}


def test_a_connection_created_for_another_config_is_not_touched() -> None:
    conn = replace(connection(PAYMENTS), description=marker_for("contoso/payments/other"), app_id="x")
    result = plan([PAYMENTS], ObservedState(applications=(app(),), connections=(conn,)), policy())
    assert [e.code for e in result.errors] == [ErrorCode.CONNECTION_CLAIMED]
    assert result.actions == ()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("- {appId: not-a-guid, projects: [contoso/storefront]}", "expected a GUID"),
        ("- {displayName: x, appId: " + APP_ID + ", projects: [contoso/storefront]}", "exactly one of appId"),
        ("- {appId: " + APP_ID + ", projects: []}", "non-empty list"),
        ("- {appId: " + APP_ID + ", projects: [contoso]}", "organization/project"),
        ("- {appId: " + APP_ID + ", projects: [contoso/storefront], who: me}", "unknown field"),
        ("{appId: " + APP_ID + "}", "expected a list"),
    ],
)
def test_bad_shared_applications_are_named_by_field(entry: str, message: str) -> None:
    body = yaml.safe_load(
        "apiVersion: wif-reconciler/v1\nkind: GrantPolicy\norganizations: [contoso]\nroles: [Reader]\n"
        f"scopes: [/subscriptions]\nsharedApplications:\n  {entry}\n"
    )
    result, problems = parse_policy(Document("policy.yaml", 1, body))
    assert result is None
    assert any(p.field.startswith("sharedApplications") and message in p.message for p in problems), problems
