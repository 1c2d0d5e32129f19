"""A person's run (reconciler.core.model.PersonRun): the deployed identity is made owner of the
applications the reconciler creates, or, when its id is unknown, nothing is created."""

from __future__ import annotations

from reconciler.core.actions import ActionKind, ApplicationAction
from reconciler.core.model import APPLICATION_TAG, ObservedState, Ownership, PersonRun
from reconciler.core.plan import ErrorCode, plan
from reconciler.core.tenancy import TENANT_TAG_PREFIX
from tests.core.builders import app, config, policy

DEPLOYED = "dddddddd-0000-4000-8000-000000000001"  # the deployed identity's principal
NEW = config("kv-secrets", create_as="sc-new")
ADOPTED = config("kv-reader")
OURS = app(
    app_id="aaaaaaaa-0000-4000-8000-000000000009",
    name="sc-new",
    tags=frozenset({APPLICATION_TAG, f"{TENANT_TAG_PREFIX}contoso/payments"}),
)


def kinds(actions: tuple[object, ...], config_id: str) -> list[str]:
    return [str(a.kind) for a in actions if isinstance(a, ApplicationAction) and config_id in a.config_ids]


def test_a_new_application_gets_the_deployed_identity_as_owner_right_after_its_create() -> None:
    observed = ObservedState(applications=(app(),), person=PersonRun(Ownership(DEPLOYED, frozenset())))
    result = plan([NEW, ADOPTED], observed, policy())
    assert kinds(result.actions, NEW.id)[:2] == ["create-application", "add-application-owner"]
    owner_step = next(a for a in result.actions if a.kind is ActionKind.ADD_APPLICATION_OWNER)
    assert isinstance(owner_step, ApplicationAction) and owner_step.changes == {"owner": DEPLOYED}
    assert not [
        a for a in result.actions if a.kind is ActionKind.ADD_APPLICATION_OWNER and ADOPTED.id in a.config_ids
    ]


def test_without_the_identitys_id_a_person_creates_nothing_and_the_others_are_planned() -> None:
    result = plan([NEW, ADOPTED], ObservedState(applications=(app(),), person=PersonRun()), policy())
    assert [(e.config_id, e.code) for e in result.errors] == [(NEW.id, ErrorCode.DEPLOYED_IDENTITY_UNKNOWN)]
    assert "WIF_IDENTITY_PRINCIPAL_ID" in result.errors[0].message
    assert not [a for a in result.actions if NEW.id in a.config_ids]
    assert [a for a in result.actions if ADOPTED.id in a.config_ids]


def test_an_application_the_reconciler_created_gets_the_owner_only_when_the_identity_lacks_it() -> None:
    missing = plan(
        [NEW],
        ObservedState(applications=(OURS,), person=PersonRun(Ownership(DEPLOYED, frozenset()))),
        policy(),
    )
    assert kinds(missing.actions, NEW.id)[0] == "add-application-owner"

    owned = PersonRun(Ownership(DEPLOYED, frozenset({OURS.object_id})))
    assert "add-application-owner" not in kinds(
        plan([NEW], ObservedState(applications=(OURS,), person=owned), policy()).actions, NEW.id
    )
    # Existing already: nothing to refuse without the setting either.
    assert not plan([NEW], ObservedState(applications=(OURS,), person=PersonRun()), policy()).errors


def test_the_identitys_own_runs_are_unchanged() -> None:
    result = plan([NEW], ObservedState(), policy())
    assert kinds(result.actions, NEW.id)[0] == "create-application"
    assert "add-application-owner" not in kinds(result.actions, NEW.id) and not result.errors
