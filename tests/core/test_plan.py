"""The planner, one drift at a time, with plain values."""

from __future__ import annotations

from dataclasses import replace

from reconciler.core.actions import (
    ActionKind,
    ConnectionAction,
    CredentialAction,
    DriftKind,
    RoleAssignmentAction,
)
from reconciler.core.issuers import entra_trust
from reconciler.core.model import (
    APPLICATION_TAG,
    MAX_CREDENTIALS_PER_APP,
    CustomRole,
    FederatedCredential,
    ObservedState,
    PipelineAccess,
    PruneMode,
    marker_for,
    role_assignment_name,
)
from reconciler.core.plan import ErrorCode, FindingKind, Plan, plan
from reconciler.core.policy import Rule
from tests.core.builders import (
    APP_ID,
    ORGANIZATION_IDS,
    OWNER,
    READER,
    SP_ID,
    SUBSCRIPTION,
    TENANT,
    VAULT,
    app,
    assignment,
    config,
    connection,
    credential_for,
    policy,
)
from tests.core.effects import apply_plan

KV = config()
KV_CONNECTION = connection(KV)


def converged_state(*extra_credentials: FederatedCredential) -> ObservedState:
    return ObservedState(
        applications=(app(credential_for(KV, KV_CONNECTION), *extra_credentials),),
        role_assignments=(assignment(owner=KV.id),),
        connections=(KV_CONNECTION,),
        organization_ids=ORGANIZATION_IDS,
    )


def kinds(result: Plan) -> list[ActionKind]:
    return [action.kind for action in result.actions]


def assert_converges(result: Plan, observed: ObservedState) -> None:
    after = apply_plan(observed, result)
    again = plan([KV], after, policy())
    assert again.is_empty, [str(a.drift) for a in again.actions]


def test_converged_state_plans_nothing() -> None:
    result = plan([KV], converged_state(), policy())
    assert result.is_empty
    assert not result.errors and not result.violations


def test_missing_connection_creates_it_then_the_credential_from_what_it_returns() -> None:
    observed = ObservedState(applications=(app(),), role_assignments=(assignment(owner=KV.id),))
    result = plan([KV], observed, policy())
    assert kinds(result) == [
        ActionKind.CREATE_CONNECTION,
        ActionKind.CREATE_CREDENTIAL,
        ActionKind.AUTHORIZE_PIPELINES,
    ]
    credential = result.actions[1]
    assert isinstance(credential, CredentialAction)
    assert credential.issuer is None and credential.from_connection == KV.connection
    assert credential.drift.kind is DriftKind.FOLLOWS_CONNECTION
    assert credential.description == marker_for(KV.id)
    assert_converges(result, observed)


def test_missing_credential_is_created_with_the_connection_issuer_and_subject() -> None:
    observed = replace(converged_state(), applications=(app(),))
    result = plan([KV], observed, policy())
    assert kinds(result) == [ActionKind.CREATE_CREDENTIAL]
    action = result.actions[0]
    assert isinstance(action, CredentialAction)
    assert (action.issuer, action.subject) == (KV_CONNECTION.issuer, KV_CONNECTION.subject)
    assert action.drift.kind is DriftKind.MISSING
    assert_converges(result, observed)


def test_owned_credential_with_wrong_subject_is_updated_in_place() -> None:
    wrong = replace(credential_for(KV, KV_CONNECTION), subject="sc://contoso/payments/old")
    observed = replace(converged_state(), applications=(app(wrong),))
    result = plan([KV], observed, policy())
    assert kinds(result) == [ActionKind.UPDATE_CREDENTIAL]
    assert result.actions[0].drift.kind is DriftKind.WRONG_VALUE
    assert "sc://contoso/payments/old" in result.actions[0].drift.detail
    assert_converges(result, observed)


def test_owned_credential_with_wrong_issuer_is_updated() -> None:
    wrong = replace(credential_for(KV, KV_CONNECTION), issuer="https://vstoken.dev.azure.com/x")
    result = plan([KV], replace(converged_state(), applications=(app(wrong),)), policy())
    assert kinds(result) == [ActionKind.UPDATE_CREDENTIAL]


def test_own_credential_with_wrong_audience_is_fixed() -> None:
    wrong = replace(credential_for(KV, KV_CONNECTION), audiences=("api://other",))
    result = plan([KV], replace(converged_state(), applications=(app(wrong),)), policy())
    assert kinds(result) == [ActionKind.UPDATE_CREDENTIAL]
    assert "audiences" in result.actions[0].drift.detail


def test_unmarked_credential_that_matches_exactly_is_adopted_not_duplicated() -> None:
    foreign_match = credential_for(KV, KV_CONNECTION, marked=False, name="made-by-hand")
    observed = replace(converged_state(), applications=(app(foreign_match),))
    result = plan([KV], observed, policy())
    assert result.is_empty
    assert [f.kind for f in result.findings] == [FindingKind.ADOPTED]


def test_foreign_credential_is_reported_and_never_touched() -> None:
    foreign = FederatedCredential(
        "f1", "github-main", "https://token.actions.githubusercontent.com", "repo:x"
    )
    result = plan([KV], converged_state(foreign), policy())
    assert result.is_empty
    assert [(f.kind, f.target) for f in result.findings] == [
        (FindingKind.FOREIGN, "credential 'github-main' on app " + APP_ID)
    ]


def test_credential_name_taken_by_a_foreign_credential_is_an_error_not_an_overwrite() -> None:
    squatter = FederatedCredential("f1", KV.credential_name, "https://issuer", "someone-else")
    observed = replace(converged_state(), applications=(app(squatter),))
    result = plan([KV], observed, policy())
    assert result.is_empty
    assert [e.code for e in result.errors] == [ErrorCode.CREDENTIAL_NAME_TAKEN]


def test_owned_credential_no_longer_wanted_is_deleted_only_with_prune_managed() -> None:
    leftover = FederatedCredential("old", "old-name", "https://issuer", "old-subject", description=KV.marker)
    result = plan([KV], converged_state(leftover), policy())
    assert kinds(result) == [ActionKind.DELETE_CREDENTIAL]
    assert result.actions[0].drift.kind is DriftKind.NOT_WANTED
    kept = plan([replace(KV, prune=PruneMode.NONE)], converged_state(leftover), policy())
    assert kept.is_empty
    assert [f.kind for f in kept.findings] == [FindingKind.KEPT]


def test_credential_marked_for_an_unknown_config_is_orphaned_not_deleted() -> None:
    orphan = FederatedCredential("o", "o-name", "https://issuer", "s", description=marker_for("x/y/z"))
    result = plan([KV], converged_state(orphan), policy())
    assert result.is_empty
    assert [f.kind for f in result.findings] == [FindingKind.ORPHANED]


def test_retired_config_loses_what_it_owned_and_shared_app_keeps_what_others_want() -> None:
    other = config("kv-writer")
    other_connection = connection(other, connection_id="ce000000-0000-0000-0000-000000000002")
    observed = ObservedState(
        applications=(app(credential_for(KV, KV_CONNECTION), credential_for(other, other_connection)),),
        # both configs want Key Vault Reader on the vault; the assignment carries KV's marker
        role_assignments=(assignment(owner=KV.id),),
        connections=(replace(KV_CONNECTION, description=KV.marker), other_connection),
    )
    result = plan([other], observed, policy(), retired=[KV])
    assert kinds(result) == [ActionKind.DELETE_CREDENTIAL, ActionKind.DELETE_CONNECTION]
    assert all(action.config_ids == (KV.id,) for action in result.actions)


def test_connection_missing_app_is_created_with_principal_first() -> None:
    new = config(create_as="sc-new")
    result = plan([new], ObservedState(), policy())
    assert kinds(result) == [
        ActionKind.CREATE_APPLICATION,
        ActionKind.CREATE_SERVICE_PRINCIPAL,
        ActionKind.CREATE_CONNECTION,
        ActionKind.CREATE_CREDENTIAL,
        ActionKind.CREATE_ROLE_ASSIGNMENT,
        ActionKind.AUTHORIZE_PIPELINES,
    ]
    assignment_action = result.actions[4]
    assert isinstance(assignment_action, RoleAssignmentAction)
    assert assignment_action.principal_id is None and assignment_action.name is None
    after = apply_plan(ObservedState(), result)
    assert plan([new], after, policy()).is_empty
    created = after.applications_named("sc-new")[0]
    assert APPLICATION_TAG in created.tags


def test_an_existing_unowned_app_with_the_wanted_name_is_not_taken_over() -> None:
    new = config(create_as="sc-payments")
    result = plan([new], ObservedState(applications=(app(),)), policy())
    assert result.is_empty
    assert [e.code for e in result.errors] == [ErrorCode.APPLICATION_NOT_OWNED]
    assert APP_ID in result.errors[0].message


def test_adopted_app_that_does_not_exist_is_a_clear_error() -> None:
    result = plan([KV], ObservedState(), policy())
    assert result.is_empty
    assert [e.code for e in result.errors] == [ErrorCode.APPLICATION_NOT_FOUND]


def test_app_without_service_principal_gets_one_before_role_assignments() -> None:
    observed = replace(converged_state(), applications=(app(credential_for(KV, KV_CONNECTION), sp=None),))
    result = plan([KV], observed, policy())
    assert kinds(result) == [ActionKind.CREATE_SERVICE_PRINCIPAL, ActionKind.CREATE_ROLE_ASSIGNMENT]
    assert_converges(result, observed)


def test_connection_pointing_at_another_app_is_updated_never_recreated() -> None:
    observed = replace(
        converged_state(),
        connections=(replace(KV_CONNECTION, app_id="dddddddd-0000-0000-0000-000000000009"),),
    )
    result = plan([KV], observed, policy())
    assert kinds(result)[0] is ActionKind.UPDATE_CONNECTION
    assert ActionKind.CREATE_CONNECTION not in kinds(result)
    assert "signs in as dddddddd" in result.actions[0].drift.detail
    assert_converges(result, observed)


def test_secret_based_connection_is_converted_in_place_after_its_credential() -> None:
    secret = replace(KV_CONNECTION, scheme="ServicePrincipal", issuer=None, subject=None)
    observed = replace(converged_state(), applications=(app(),), connections=(secret,))
    result = plan([KV], observed, policy())
    # ADO converts a manually created connection only once the app trusts what it will use.
    assert kinds(result) == [ActionKind.CREATE_CREDENTIAL, ActionKind.CONVERT_CONNECTION]
    credential, conversion = result.actions
    assert isinstance(credential, CredentialAction) and isinstance(conversion, ConnectionAction)
    assert conversion.drift.kind is DriftKind.SECRET_SCHEME
    expected = entra_trust(TENANT, ORGANIZATION_IDS["contoso"], secret.id)
    assert conversion.expects == expected
    assert (credential.issuer, credential.subject, credential.from_connection) == (
        expected.issuer,
        expected.subject,
        None,
    )
    assert_converges(result, observed)


def test_entra_subject_is_computed_as_ado_writes_it() -> None:
    trust = entra_trust(
        TENANT, "0C0C0C0C-0000-0000-0000-000000000001", "D1D1D1D1-0000-0000-0000-00000000000A"
    )
    assert trust.issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    # The Azure DevOps app id encodes to rISbSSETf0KqFyZ8ppdXmA (azure-contracts.md); GUIDs in lower case.
    assert trust.subject == (
        "/eid1/c/pub/t/v4j5cvGGr0GRqy180BHbRw/a/rISbSSETf0KqFyZ8ppdXmA/sc/"
        "0c0c0c0c-0000-0000-0000-000000000001/d1d1d1d1-0000-0000-0000-00000000000a"
    )


def test_existing_trust_for_the_computed_values_is_used_and_only_the_conversion_planned() -> None:
    secret = replace(KV_CONNECTION, scheme="ServicePrincipal", issuer=None, subject=None)
    expected = entra_trust(TENANT, ORGANIZATION_IDS["contoso"], secret.id)
    ready = credential_for(KV, replace(KV_CONNECTION, issuer=expected.issuer, subject=expected.subject))
    observed = replace(converged_state(), applications=(app(ready),), connections=(secret,))
    result = plan([KV], observed, policy())
    assert kinds(result) == [ActionKind.CONVERT_CONNECTION]
    assert_converges(result, observed)


def test_conversion_without_the_organization_id_is_a_clear_error_and_changes_nothing() -> None:
    secret = replace(KV_CONNECTION, scheme="ServicePrincipal", issuer=None, subject=None)
    observed = replace(converged_state(), applications=(app(),), connections=(secret,), organization_ids={})
    result = plan([KV], observed, policy())
    assert not any(a.kind is ActionKind.CONVERT_CONNECTION for a in result.actions)
    assert [e.code for e in result.errors] == [ErrorCode.ORGANIZATION_UNKNOWN]
    assert "contoso" in result.errors[0].message


def test_legacy_issuer_is_moved_after_a_new_credential_and_only_the_owned_old_one_removed_after() -> None:
    legacy = replace(
        KV_CONNECTION,
        issuer="https://vstoken.dev.azure.com/org-id",
        subject="sc://contoso/payments/kv-reader",
    )
    owned_old = credential_for(KV, legacy)
    hand_made_old = replace(
        credential_for(KV, legacy, marked=False, name="by-hand"), id="hand", subject="sc://contoso/payments/x"
    )
    observed = replace(
        converged_state(), applications=(app(owned_old, hand_made_old),), connections=(legacy,)
    )
    result = plan([KV], observed, policy())
    # The old credential keeps the pipelines working until the move is done, and goes after it.
    assert kinds(result) == [
        ActionKind.CREATE_CREDENTIAL,
        ActionKind.MIGRATE_CONNECTION_ISSUER,
        ActionKind.DELETE_CREDENTIAL,
    ]
    assert result.actions[0].target == f"federated credential '{KV.credential_name}-entra' on app {APP_ID}"
    assert result.actions[2].target == f"federated credential '{KV.credential_name}' on app {APP_ID}"
    assert [f.kind for f in result.findings] == [FindingKind.FOREIGN]
    after = apply_plan(observed, result)
    assert plan([KV], after, policy()).is_empty
    by_name = {c.name: c for c in after.applications[0].credentials}
    assert set(by_name) == {f"{KV.credential_name}-entra", "by-hand"}
    assert by_name[f"{KV.credential_name}-entra"].issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert by_name["by-hand"] == hand_made_old


def test_legacy_credential_of_a_prune_none_config_is_kept_after_the_move() -> None:
    keep = replace(KV, prune=PruneMode.NONE)
    legacy = replace(KV_CONNECTION, issuer="https://vstoken.dev.azure.com/org-id", subject="sc://c/p/kv")
    observed = replace(
        converged_state(), applications=(app(credential_for(keep, legacy)),), connections=(legacy,)
    )
    result = plan([keep], observed, policy())
    assert kinds(result) == [ActionKind.CREATE_CREDENTIAL, ActionKind.MIGRATE_CONNECTION_ISSUER]
    assert [f.kind for f in result.findings] == [FindingKind.KEPT]


def test_missing_role_assignment_gets_a_deterministic_name_and_service_principal_type() -> None:
    observed = replace(converged_state(), role_assignments=())
    result = plan([KV], observed, policy())
    assert kinds(result) == [ActionKind.CREATE_ROLE_ASSIGNMENT]
    action = result.actions[0]
    assert isinstance(action, RoleAssignmentAction)
    assert action.name == role_assignment_name(VAULT, KV.role_grants[0].role_id, SP_ID)
    assert action.changes["principalType"] == "ServicePrincipal"
    assert plan([KV], observed, policy()) == result


def test_unmarked_role_assignment_that_matches_is_adopted() -> None:
    observed = replace(converged_state(), role_assignments=(assignment(),))
    result = plan([KV], observed, policy())
    assert result.is_empty
    assert [f.kind for f in result.findings] == [FindingKind.ADOPTED]


CONDITION = "@Resource[Microsoft.KeyVault/vaults/secrets:name] StringEquals 'one-secret'"


def test_a_hand_made_assignment_with_a_condition_does_not_satisfy_the_grant_and_is_left_alone() -> None:
    # ARM keeps one assignment per scope, role and principal whatever the condition: a create would
    # answer RoleAssignmentExists, so none is planned; the config fails, naming the assignment.
    conditioned = replace(assignment(), condition=CONDITION, condition_version="2.0")
    observed = replace(converged_state(), role_assignments=(conditioned,))
    result = plan([KV], observed, policy())

    assert result.is_empty  # nothing created, nothing deleted or changed
    (error,) = result.errors
    assert (error.config_id, error.code) == (KV.id, ErrorCode.ROLE_CONDITIONED)
    assert conditioned.id in error.message and CONDITION in error.message
    assert "Remove the condition" in error.message and "az role assignment delete" in error.message
    assert FindingKind.ADOPTED not in [f.kind for f in result.findings]


def test_the_reconcilers_own_assignment_given_a_condition_is_replaced_by_one_without() -> None:
    conditioned = replace(assignment(owner=KV.id), condition=CONDITION)
    observed = replace(converged_state(), role_assignments=(conditioned,))
    result = plan([KV], observed, policy())

    assert not result.errors
    assert kinds(result) == [ActionKind.DELETE_ROLE_ASSIGNMENT, ActionKind.CREATE_ROLE_ASSIGNMENT]
    delete, create = result.actions
    assert isinstance(delete, RoleAssignmentAction) and delete.assignment_id == conditioned.id
    assert delete.drift.kind is DriftKind.WRONG_VALUE and "condition" in delete.drift.detail
    assert isinstance(create, RoleAssignmentAction) and create.description == KV.marker
    assert_converges(result, observed)


def test_managed_role_assignment_no_longer_wanted_is_deleted_foreign_one_is_not() -> None:
    rg = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-pay"
    managed_extra = assignment(rg, READER, owner=KV.id)
    foreign_extra = assignment(f"/subscriptions/{SUBSCRIPTION}", READER)
    observed = replace(
        converged_state(), role_assignments=(assignment(owner=KV.id), managed_extra, foreign_extra)
    )
    result = plan([KV], observed, policy())
    assert kinds(result) == [ActionKind.DELETE_ROLE_ASSIGNMENT]
    action = result.actions[0]
    assert isinstance(action, RoleAssignmentAction) and action.assignment_id == managed_extra.id
    assert [f.kind for f in result.findings] == [FindingKind.FOREIGN]
    assert_converges(result, observed)


def test_missing_pipeline_permission_is_authorized_and_unobserved_ones_are_left_for_later() -> None:
    observed = replace(converged_state(), connections=(replace(KV_CONNECTION, pipelines=PipelineAccess()),))
    assert kinds(plan([KV], observed, policy())) == [ActionKind.AUTHORIZE_PIPELINES]
    not_observed = replace(converged_state(), connections=(replace(KV_CONNECTION, pipelines=None),))
    assert plan([KV], not_observed, policy()).is_empty
    listed = replace(KV, pipelines=PipelineAccess(pipeline_ids=frozenset({7, 9})))
    some = replace(
        converged_state(),
        connections=(replace(KV_CONNECTION, pipelines=PipelineAccess(pipeline_ids=frozenset({7}))),),
    )
    result = plan([listed], some, policy())
    assert result.actions[0].changes == {"authorize": "pipeline 9"}


def test_policy_violation_produces_no_actions_and_a_structured_violation() -> None:
    greedy = config(grants=((OWNER, VAULT),))
    result = plan([greedy], ObservedState(applications=(app(),)), policy())
    assert result.is_empty
    assert [(v.config_id, v.rule) for v in result.violations] == [(greedy.id, Rule.PRIVILEGED)]


def test_a_custom_role_is_granted_only_when_its_observed_definition_is_not_privileged() -> None:
    custom = "99999999-0000-0000-0000-00000000000c"
    listed = replace(policy(), role_ids=policy().role_ids | {custom})
    wanted = config(grants=((custom, VAULT),))
    unread = plan([wanted], converged_state(), listed)
    assert [v.rule for v in unread.violations] == [Rule.UNKNOWN_ROLE] and unread.is_empty
    sneaky = CustomRole(custom, "Operator", ("*",), ("Microsoft.Authorization/roleAssignments/write",))
    privileged = plan([wanted], replace(converged_state(), custom_roles=(sneaky,)), listed)
    assert [v.rule for v in privileged.violations] == [Rule.PRIVILEGED] and privileged.is_empty
    harmless = CustomRole(custom, "Vault Reader", ("Microsoft.KeyVault/*/read",))
    granted = plan([wanted], replace(converged_state(), custom_roles=(harmless,)), listed)
    created = [a for a in granted.actions if a.kind is ActionKind.CREATE_ROLE_ASSIGNMENT]
    assert [a.role_id for a in created if isinstance(a, RoleAssignmentAction)] == [custom]


def test_blocked_config_keeps_what_it_owns_on_a_shared_app() -> None:
    greedy = config("greedy", grants=((OWNER, VAULT),))
    greedy_connection = connection(greedy, connection_id="ce000000-0000-0000-0000-000000000003")
    owned = credential_for(greedy, greedy_connection)
    observed = replace(converged_state(owned), connections=(KV_CONNECTION, greedy_connection))
    result = plan([KV, greedy], observed, policy())
    assert result.is_empty


def test_a_21st_credential_is_a_planning_error() -> None:
    full = [
        FederatedCredential(f"f{i}", f"other-{i}", "https://issuer", f"subject-{i}", description="")
        for i in range(MAX_CREDENTIALS_PER_APP)
    ]
    observed = replace(converged_state(), applications=(app(*full),))
    result = plan([KV], observed, policy())
    assert result.is_empty
    assert [e.code for e in result.errors] == [ErrorCode.CREDENTIAL_LIMIT]


def test_deletes_go_first_only_when_creating_first_would_exceed_the_limit() -> None:
    others = [
        FederatedCredential(f"f{i}", f"other-{i}", "https://issuer", f"subject-{i}", description="")
        for i in range(MAX_CREDENTIALS_PER_APP - 1)
    ]
    leftover = FederatedCredential("old", "old-name", "https://issuer", "old", description=KV.marker)
    observed = replace(converged_state(), applications=(app(*others, leftover),))
    result = plan([KV], observed, policy())
    assert kinds(result) == [ActionKind.DELETE_CREDENTIAL, ActionKind.CREATE_CREDENTIAL]
    assert_converges(result, observed)


def test_a_credential_another_config_relies_on_is_never_rewritten() -> None:
    # KV's own credential (by name and marker) trusts OTHER's connection; KV's connection is
    # being created, so KV's credential values are pending. Rewriting it would cut OTHER off.
    other = config("kv-writer")
    other_connection = connection(other, connection_id="ce000000-0000-0000-0000-000000000002")
    kv_named_but_trusting_other = replace(credential_for(other, other_connection), name=KV.credential_name)
    kv_named_but_trusting_other = replace(kv_named_but_trusting_other, description=KV.marker)
    observed = ObservedState(
        applications=(app(kv_named_but_trusting_other),),
        role_assignments=(assignment(owner=KV.id),),
        connections=(other_connection,),
    )
    result = plan([KV, other], observed, policy())
    assert not any(a.kind is ActionKind.UPDATE_CREDENTIAL for a in result.actions)
    assert [(e.config_id, e.code) for e in result.errors] == [(KV.id, ErrorCode.CREDENTIAL_NAME_TAKEN)]


def test_updating_the_connection_app_keeps_matching_credentials_without_churn() -> None:
    moved = replace(KV_CONNECTION, app_id="dddddddd-0000-0000-0000-000000000009")
    hand_made = credential_for(KV, KV_CONNECTION, marked=False, name="by-hand")
    observed = replace(converged_state(), applications=(app(hand_made),), connections=(moved,))
    result = plan([KV], observed, policy())
    assert kinds(result) == [ActionKind.UPDATE_CONNECTION]
    assert [f.kind for f in result.findings] == [FindingKind.ADOPTED]
