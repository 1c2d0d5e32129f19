"""Properties of the planner over random desired and observed states (hypothesis).

- convergence: applying the plan (with the pure effects model) leaves nothing to do;
- determinism: the same inputs give the same plan;
- safety: no plan deletes or changes an unmarked object;
- policy: no plan grants what the policy forbids;
- conditions: a role held only under an ABAC condition never counts as granted.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core.actions import ActionKind, CredentialAction, RoleAssignmentAction
from reconciler.core.model import (
    APPLICATION_TAG,
    Application,
    FederatedCredential,
    FederationConfig,
    ObservedState,
    PipelineAccess,
    PruneMode,
    RoleAssignment,
    ServiceConnection,
    credential_name_for,
    marker_for,
    owner_of,
)
from reconciler.core.plan import plan
from reconciler.core.policy import GrantPolicy
from tests.core.builders import ORGANIZATION_IDS, OWNER, READER, SUBSCRIPTION, config, connection, policy
from tests.core.effects import apply_plan, entra_subject, fake_id

KEY_VAULT_READER = "21090545-7ca7-4776-b22c-e363652d74d2"
RG = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-a"
# Mostly allowed grants, with the occasional forbidden role or scope (weighted by repetition).
SCOPES = (RG, f"{RG}/providers/microsoft.keyvault/vaults/kv", RG, f"/subscriptions/{SUBSCRIPTION}")
ROLES = (KEY_VAULT_READER, READER, KEY_VAULT_READER, READER, OWNER)
CONDITION = "@Resource[Microsoft.KeyVault/vaults/secrets:name] StringEquals 'one'"
EXISTING_APPS = tuple(fake_id("existing-app", str(i)) for i in range(3))
NEW_APP_NAMES = ("sc-new-1", "sc-new-2")
POLICY: GrantPolicy = policy()


@st.composite
def desired_configs(draw: st.DrawFn) -> list[FederationConfig]:
    names = draw(st.lists(st.sampled_from(["c1", "c2", "c3", "c4", "c5"]), unique=True, max_size=5))
    configs = []
    for name in names:
        organization = draw(st.sampled_from(["contoso", "fabrikam", "contoso", "fabrikam", "notallowed"]))
        where = draw(st.sampled_from(["existing", "existing", "existing", "new", "new", "missing"]))
        app_id = draw(st.sampled_from(EXISTING_APPS)) if where == "existing" else fake_id("missing", name)
        create_as = draw(st.sampled_from(NEW_APP_NAMES)) if where == "new" else None
        grants = draw(st.lists(st.tuples(st.sampled_from(ROLES), st.sampled_from(SCOPES)), max_size=3))
        pipelines = draw(
            st.sampled_from(
                [
                    PipelineAccess(all_pipelines=True),
                    PipelineAccess(pipeline_ids=frozenset({1, 2})),
                    PipelineAccess(),
                ]
            )
        )
        prune = draw(st.sampled_from(list(PruneMode)))
        configs.append(
            config(
                name,
                organization=organization,
                app_id=app_id,
                create_as=create_as,
                grants=tuple(grants),
                pipelines=pipelines,
                prune=prune,
            )
        )
    return configs


def _connection(draw: st.DrawFn, desired: FederationConfig) -> ServiceConnection | None:
    shape = draw(st.sampled_from(["absent", "good", "other-app", "secret", "legacy", "no-pipelines"]))
    if shape == "absent":
        return None
    connection_id = fake_id("conn", desired.id)
    good = connection(
        desired,
        connection_id=connection_id,
        subject=entra_subject(desired.organization, connection_id),
        description=draw(st.sampled_from(["", desired.marker])),
        pipelines=draw(st.sampled_from([None, PipelineAccess(), PipelineAccess(all_pipelines=True)])),
    )
    variants: dict[str, dict[str, object]] = {
        "good": {},
        "other-app": {"app_id": EXISTING_APPS[0]},
        "secret": {"scheme": "ServicePrincipal", "issuer": None, "subject": None},
        "legacy": {"issuer": "https://vstoken.dev.azure.com/org", "subject": f"sc://{desired.id}"},
        "no-pipelines": {"pipelines": PipelineAccess()},
    }
    return replace(good, **variants[shape])  # type: ignore[arg-type]


def _credentials(
    draw: st.DrawFn, owners: list[str], connections: list[ServiceConnection], app_key: str
) -> tuple[FederatedCredential, ...]:
    creds: dict[str, FederatedCredential] = {}
    pairs: set[tuple[str, str]] = set()
    for index in range(draw(st.integers(0, 4))):
        owner = draw(st.sampled_from([*owners, "gone/config/x", None]))
        source = draw(st.sampled_from([*connections, None]))
        issuer = source.issuer if source and source.issuer else "https://token.actions.githubusercontent.com"
        subject = source.subject if source and source.subject else f"repo:contoso/x:{index}"
        if (issuer, subject) in pairs:
            continue
        same_name = owner is not None and draw(st.booleans())
        name = credential_name_for(owner) if same_name and owner else f"cred-{app_key[-6:]}-{index}"
        if name.lower() in creds:
            continue
        pairs.add((issuer, subject))
        description = marker_for(owner) if owner else ""
        audiences = draw(st.sampled_from([("api://AzureADTokenExchange",), ("api://other",)]))
        creds[name.lower()] = FederatedCredential(
            fake_id("cred", app_key, str(index)), name, issuer, subject, audiences, description
        )
    return tuple(creds.values())


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[FederationConfig], list[FederationConfig], ObservedState]:
    candidates = draw(desired_configs())
    retired = [c for c in candidates if draw(st.booleans()) and draw(st.booleans())]
    desired = [c for c in candidates if c not in retired]
    connections = [c for c in (_connection(draw, d) for d in candidates) if c is not None]
    owners = [c.id for c in candidates]
    apps: list[Application] = []
    for app_id in EXISTING_APPS:
        if draw(st.booleans()):
            sp = draw(st.sampled_from([None, fake_id("sp", app_id)]))
            creds = _credentials(draw, owners, connections, app_id)
            apps.append(Application(fake_id("obj", app_id), app_id, f"app-{app_id[:4]}", creds, sp))
    for name in NEW_APP_NAMES:
        if draw(st.booleans()):
            app_id = fake_id("app", name)
            tags = draw(st.sampled_from([frozenset({APPLICATION_TAG}), frozenset()]))
            creds = _credentials(draw, owners, connections, app_id)
            apps.append(Application(fake_id("obj", name), app_id, name, creds, fake_id("sp", app_id), tags))
    assignments: dict[str, RoleAssignment] = {}
    for app in apps:
        if app.service_principal_id is None:
            continue
        for role_id, scope, owner, condition in draw(
            st.lists(
                st.tuples(
                    st.sampled_from(ROLES),
                    st.sampled_from(SCOPES),
                    st.sampled_from([*owners, None]),
                    st.sampled_from(["", CONDITION]),  # an ABAC condition, by hand or added to ours
                ),
                max_size=3,
                unique_by=lambda t: (t[0], t[1]),
            )
        ):
            name = fake_id(scope, role_id, app.app_id)
            ra_id = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"
            assignments[ra_id] = RoleAssignment(
                ra_id,
                name,
                scope,
                role_id,
                app.service_principal_id,
                marker_for(owner) if owner else "",
                condition=condition,
            )
    observed = ObservedState(
        tuple(apps), tuple(assignments.values()), tuple(connections), organization_ids=ORGANIZATION_IDS
    )
    return desired, retired, observed


PROPERTY_SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(worlds())
def test_one_pass_converges(
    world: tuple[list[FederationConfig], list[FederationConfig], ObservedState],
) -> None:
    desired, retired, observed = world
    first = plan(desired, observed, POLICY, retired)
    after = apply_plan(observed, first)
    # The retired configs stay retired in the second pass: what their prune left must be done.
    second = plan(desired, after, POLICY, retired)
    assert second.is_empty, [f"{a.kind} {a.target}: {a.drift}" for a in second.actions]


@PROPERTY_SETTINGS
@given(worlds())
def test_planning_is_deterministic(
    world: tuple[list[FederationConfig], list[FederationConfig], ObservedState],
) -> None:
    desired, retired, observed = world
    assert plan(desired, observed, POLICY, retired) == plan(
        list(reversed(desired)), observed, POLICY, retired
    )


@PROPERTY_SETTINGS
@given(worlds())
def test_unmarked_objects_are_never_deleted_or_changed(
    world: tuple[list[FederationConfig], list[FederationConfig], ObservedState],
) -> None:
    desired, retired, observed = world
    unmarked_credentials = {
        c.id for a in observed.applications for c in a.credentials if owner_of(c.description) is None
    }
    unmarked_assignments = {ra.id for ra in observed.role_assignments if owner_of(ra.description) is None}
    for action in plan(desired, observed, POLICY, retired).actions:
        if isinstance(action, CredentialAction) and action.kind is not ActionKind.CREATE_CREDENTIAL:
            assert action.credential_id not in unmarked_credentials, action
        if isinstance(action, RoleAssignmentAction) and action.kind is ActionKind.DELETE_ROLE_ASSIGNMENT:
            assert action.assignment_id not in unmarked_assignments, action


@PROPERTY_SETTINGS
@given(worlds())
def test_no_plan_grants_what_the_policy_forbids(
    world: tuple[list[FederationConfig], list[FederationConfig], ObservedState],
) -> None:
    desired, retired, observed = world
    by_id = {c.id: c for c in desired}
    for action in plan(desired, observed, POLICY, retired).actions:
        if action.kind is ActionKind.CREATE_ROLE_ASSIGNMENT:
            assert isinstance(action, RoleAssignmentAction)
            assert action.role_id in POLICY.role_ids
            assert any(p.covers(action.scope) for p in POLICY.scopes)
        for config_id in action.config_ids:
            if config_id in by_id and action.kind in {
                ActionKind.CREATE_CONNECTION,
                ActionKind.CREATE_CREDENTIAL,
            }:
                assert not POLICY.check(by_id[config_id])


@PROPERTY_SETTINGS
@given(worlds())
def test_a_conditioned_assignment_never_satisfies_a_grant(
    world: tuple[list[FederationConfig], list[FederationConfig], ObservedState],
) -> None:
    """After the plan is applied, each grant of a config the plan neither blocks nor fails is held
    without a condition; a config whose grant is held only under one by an assignment the
    reconciler did not create fails, and that assignment is left as it was."""
    desired, retired, observed = world
    result = plan(desired, observed, POLICY, retired)
    after = apply_plan(observed, result)
    failed = {e.config_id for e in result.errors} | {v.config_id for v in result.violations}
    held = {(ra.scope, ra.role_id, ra.principal_id): ra for ra in after.role_assignments}
    before = {ra.id: ra for ra in observed.role_assignments}
    for wanting in desired:
        app = after.application_by_app_id(result.applications.get(wanting.id, ""))
        if wanting.id in failed or app is None or app.service_principal_id is None:
            continue
        for grant in wanting.role_grants:
            found = held.get((grant.scope, grant.role_id, app.service_principal_id))
            assert found is not None and not found.conditioned, (wanting.id, grant)
    for ra in before.values():
        if ra.conditioned and owner_of(ra.description) is None:
            assert ra in after.role_assignments  # never deleted nor changed
