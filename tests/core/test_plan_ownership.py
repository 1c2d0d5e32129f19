"""The planner writes nothing to an adopted application the reconciler's identity does not own."""

from __future__ import annotations

from dataclasses import replace

from reconciler.core.model import ObservedState, Ownership
from reconciler.core.plan import plan
from reconciler.core.policy import Rule
from tests.core.builders import OBJECT_ID, app, assignment, config, connection, credential_for, policy

RECONCILER = "dddddddd-0000-4000-8000-000000000001"  # the object id of the reconciler's principal
KV = config("kv-reader")
OTHER = config("other", app_id="aaaaaaaa-0000-0000-0000-000000000002")


def owning(*object_ids: str) -> Ownership:
    return Ownership(RECONCILER, frozenset(object_ids))


def test_a_config_on_an_application_the_identity_does_not_own_is_blocked_with_the_command_to_fix_it() -> None:
    observed = ObservedState(
        applications=(app(), app(app_id=str(OTHER.application.app_id), name="sc-other")),
        ownership=owning(f"obj-{OTHER.application.app_id}"),
    )
    result = plan([KV, OTHER], observed, policy())

    (violation,) = result.violations
    assert violation.config_id == KV.id and violation.rule is Rule.NOT_OWNER
    assert (
        f"az ad app owner add --id {KV.application.app_id} --owner-object-id {RECONCILER}"
        in violation.message
    )
    assert not [a for a in result.actions if KV.id in a.config_ids]  # no credential, role, connection
    assert [a for a in result.actions if OTHER.id in a.config_ids]  # the owned one is planned
    assert KV.id not in result.applications


def test_unread_ownership_is_not_a_reason_to_block() -> None:
    """None: the batch adopted nothing, so the engine did not read it (created apps are owned)."""
    result = plan([KV], ObservedState(applications=(app(),)), policy())
    assert not result.violations and result.actions


def test_what_a_retired_config_left_on_an_application_no_longer_owned_stays() -> None:
    current = connection(KV)
    observed = ObservedState(
        applications=(app(credential_for(KV, current)),),
        role_assignments=(assignment(owner=KV.id),),
        connections=(current,),
        ownership=owning(),
    )
    result = plan([], observed, policy(), retired=[KV])
    assert not result.actions
    assert [(v.config_id, v.rule) for v in result.violations] == [(KV.id, Rule.NOT_OWNER)]

    owned = plan([], replace(observed, ownership=owning(OBJECT_ID)), policy(), retired=[KV])
    assert owned.actions and not owned.violations
