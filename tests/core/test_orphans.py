"""find_orphans: what the reconciler made that no config of the desired state names (issue 14)."""

from __future__ import annotations

from dataclasses import replace

from reconciler.core.model import APPLICATION_TAG, ObservedState, marker_for
from reconciler.core.orphans import find_orphans
from reconciler.core.plan import Finding, FindingKind
from tests.core.builders import OWNER, VAULT, app, assignment, config, connection, credential_for, policy

CREATED = "dddddddd-0000-0000-0000-000000000002"
CREATED_SP = "eeeeeeee-0000-0000-0000-000000000002"
GONE = config("kv-gone", create_as="sc-kv-gone")  # the config removed from the file
STAYS = config("kv-reader")  # adopts APP_ID
GONE_CONN = connection(GONE, connection_id="ce000000-0000-0000-0000-000000000009", description=GONE.marker)


def created_app(*marked_for: str, name: str = "sc-kv-gone") -> ObservedState:
    """The application the reconciler created for GONE, with a credential and a role assignment
    marked for each of `marked_for`, an unmarked one of each, and GONE's connection."""
    credentials = [
        replace(credential_for(GONE, GONE_CONN, name=f"fic-{n}"), description=marker_for(owner))
        for n, owner in enumerate(marked_for)
    ]
    unmarked = credential_for(GONE, GONE_CONN, marked=False, name="hand-made")
    created = app(
        *credentials, unmarked, app_id=CREATED, sp=CREATED_SP, name=name, tags=frozenset({APPLICATION_TAG})
    )
    assignments = [assignment(owner=owner, principal=CREATED_SP) for owner in marked_for]
    assignments.append(assignment(role_id="acdd72a7-3385-48ef-bd42-f606fba81ae7", principal=CREATED_SP))
    return ObservedState(
        applications=(app(), created), role_assignments=tuple(assignments), connections=(GONE_CONN,)
    )


def targets(findings: tuple[Finding, ...]) -> list[str]:
    return [f.target.split(" ")[0] for f in findings]


def test_a_created_application_no_config_names_is_orphaned_with_its_marked_objects() -> None:
    findings = find_orphans(created_app(GONE.id), [STAYS])
    assert {f.kind for f in findings} == {FindingKind.ORPHANED}
    assert sorted(targets(findings)) == ["application", "credential", "role", "service"]
    assert {f.config_ids for f in findings} == {(GONE.id,)}
    application = next(f for f in findings if f.target.startswith("application"))
    assert application.target == f"application sc-kv-gone ({CREATED})"
    assert "--retired FILE" in application.detail and "delete the application" in application.detail


def test_an_application_named_by_id_by_create_name_or_as_last_applied_is_not_orphaned() -> None:
    observed = created_app(GONE.id)
    by_id = config("kv-gone", app_id=CREATED)  # GONE's id and connection, adopting the created app
    assert find_orphans(observed, [STAYS, by_id]) == ()
    assert find_orphans(observed, [STAYS, GONE]) == ()  # by its create name
    # As the application a config was last applied to: named, but GONE's connection is still orphaned.
    assert targets(find_orphans(observed, [STAYS], [CREATED.upper()])) == ["service"]


def test_the_application_of_a_known_config_is_never_orphaned_whatever_its_state() -> None:
    """`known` holds blocked configs and configs whose reads failed: their applications are named."""
    blocked = config("kv-gone", create_as="sc-kv-gone", grants=((OWNER, VAULT),))  # policy() blocks Owner
    assert policy().check(blocked)
    assert find_orphans(created_app(GONE.id), [STAYS, blocked]) == ()


def test_unmarked_objects_and_untagged_applications_are_never_reported() -> None:
    observed = replace(created_app(), connections=())  # nothing marked: only the application is reported
    findings = find_orphans(observed, [STAYS])
    assert targets(findings) == ["application"]
    assert findings[0].config_ids == () and "az ad app delete" in findings[0].detail
    foreign = app(app_id=CREATED, sp=CREATED_SP, name="someone-elses", tags=frozenset())
    assert find_orphans(ObservedState(applications=(foreign,)), [STAYS]) == ()


def test_marked_objects_on_an_adopted_application_no_config_names_are_orphaned_but_not_the_app() -> None:
    gone = config("kv-gone")
    adopted = app(credential_for(gone, GONE_CONN))
    observed = ObservedState(applications=(adopted,), role_assignments=(assignment(owner=gone.id),))
    assert sorted(targets(find_orphans(observed, [GONE]))) == ["credential", "role"]


def test_a_marker_of_a_known_config_on_an_unnamed_application_says_the_config_moved() -> None:
    moved = config("kv-gone", app_id="ffffffff-0000-0000-0000-000000000003")
    findings = find_orphans(created_app(moved.id), [moved])
    credential = next(f for f in findings if f.target.startswith("credential"))
    assert "now names another application" in credential.detail
    assert not any(f.target.startswith("service") for f in findings)  # its connection is known


def test_connections_are_orphaned_only_when_marked_for_an_unknown_config_and_named_by_none() -> None:
    unmarked = connection(config("hand-made"), connection_id="ce000000-0000-0000-0000-000000000010")
    other = connection(
        config("other"), connection_id="ce000000-0000-0000-0000-000000000011", description=STAYS.marker
    )
    taken = connection(STAYS, description=marker_for("contoso/payments/someone-else"))
    observed = ObservedState(connections=(GONE_CONN, unmarked, other, taken))
    findings = find_orphans(observed, [STAYS])
    assert [(f.target, f.config_ids) for f in findings] == [
        ("service connection contoso/payments/kv-gone", (GONE.id,))
    ]
