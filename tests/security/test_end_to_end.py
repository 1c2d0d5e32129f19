"""The grant path end to end against hostile input (issue 10, item 9).

Hypothesis draws hostile tickets: scopes with path tricks (`..`, `.`, `%2e%2e`, `%2F`, `\\`, `//`,
trailing dots and spaces, fullwidth slashes, confusables, NUL, case games, management-group and
provider paths that look like resource groups), hostile ADO names, and configs of another project
that name the victim's applications (by appId, or by the display name of an app the reconciler
created), under their own id or under the victim's. Each goes through the real `requests` trigger
(Azurite, the Service Bus peer, the simulator), then every reconcile it queued runs. The end state
is read from the simulator:

- every role assignment that was not there before grants a role of the policy on a scope the
  policy's patterns cover, checked here by a rule of this file rather than the product's parser;
- no application trusts connections of two ADO projects (the policy shares nothing), and the
  victim's applications trust only the victim's project;
- nothing the reconciler did not create changed: a hand-made connection, a hand-made credential
  on the victim's app, hand-made role assignments, an application nobody claimed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cloudsim.state import FederatedCredential, RoleAssignment, new_id
from cloudsim.testing import SAMPLE_SUBSCRIPTION
from reconciler.core.roles import builtin_role
from tests.security.tenancy_world import (
    Tenant,
    azurite_tables,
    cloud_env,
    cloud_simulator,
    servicebus_peer,
    table_settings,
    tenant,
)

__all__ = ["azurite_tables", "cloud_env", "cloud_simulator", "servicebus_peer", "table_settings", "tenant"]

SUB = f"/subscriptions/{SAMPLE_SUBSCRIPTION}"


def role_id(name: str) -> str:
    role = builtin_role(name)
    assert role is not None
    return role.id


KEY_VAULT_READER_ID = role_id("Key Vault Reader")
OWNER_ID = role_id("Owner")
CREATED_NAME = "sc-payments-created"
HAND_MADE_CONNECTION = "legacy-deploy"

# The policy of tenancy_world: role Key Vault Reader on /subscriptions/*/resourceGroups/* (or below).
# An independent reading of "covered": plain ASCII segments, no '.'/'..' segments, no encodings.
_SEGMENT = r"[A-Za-z0-9_()\-.]+"
_COVERED = re.compile(rf"/subscriptions/[0-9a-fA-F-]{{36}}/resourceGroups/{_SEGMENT}(/{_SEGMENT})*", re.I)

# ------------------------------------------------------------------------------ strategies

_RG_TRICKS = [
    "..",
    ".",
    "%2e%2e",
    "%2E%2E",
    ".%2e",
    "rg/..",
    "rg/../..",
    "rg/../../..",
    "rg%2F..",
    "rg%2f..%2f..",
    "rg\\..",
    "rg\\..\\..",
    "rg//..",
    "rg.",
    "rg ",
    "rg. ",
    " rg",
    "rg\x00",
    "rg\x00/../..",
    "rg\uff0f..",  # fullwidth solidus
    "rg\u2215..",  # division slash
    "rg\u2044..",  # fraction slash
    "\u2024\u2024",  # one-dot leaders
    "\uff0e\uff0e",  # fullwidth full stops
    "r\u0261",  # script g
    "rg?x=1",
    "rg#frag",
    "rg;..",
    "rg/",
]
_SCOPES = [f"{SUB}/resourceGroups/{trick}" for trick in _RG_TRICKS] + [
    SUB,
    f"{SUB}/",
    "/",
    "",
    f"/SUBSCRIPTIONS/{SAMPLE_SUBSCRIPTION}/RESOURCEGROUPS/rg/..",
    f"/SUBSCRIPTIONS/..{SUB}/resourceGroups/rg",
    f"{SUB}/resourceGroups/rg/../../",
    f"{SUB}/resourceGroups/rg/./../..",
    f"{SUB}//resourceGroups/rg",
    f"{SUB}/resourceGroups//rg",
    f"{SUB}/resourcegroups/rg/providers/Microsoft.Authorization/roleAssignments/x/../../../..",
    "/providers/Microsoft.Management/managementGroups/resourceGroups",
    "/providers/Microsoft.Management/managementGroups/root",
    f"/providers/Microsoft.Management/managementGroups/x{SUB}/resourceGroups/rg",
    f"{SUB}/providers/Microsoft.Resources/resourceGroups/rg",
    f"{SUB}/resourceGroupsX/rg",
    f"{SUB}/resourceGr\u043eups/rg",  # Cyrillic o
    "/subscriptions/*/resourceGroups/*",
    f"/subscriptions/{SAMPLE_SUBSCRIPTION.upper()}/resourceGroups/RG-PAY",
    f"{SUB}/resourceGroups/rg-pay/providers/Microsoft.KeyVault/vaults/kv",
    f"{SUB}/resourceGroups/rg-pay/providers/Microsoft.KeyVault/vaults/kv/..",
    f"{SUB}/resourceGroups/rg-pay",
    f"https://management.azure.com{SUB}/resourceGroups/rg",
    f"{SUB}/resourceGroups/rg\n/..",
]
scopes = st.one_of(
    st.sampled_from(_SCOPES),
    st.lists(st.sampled_from(["..", ".", "%2e%2e", "rg", "", "\\", "%2F", "\uff0f", " "]), max_size=5).map(
        lambda parts: f"{SUB}/resourceGroups/" + "/".join(parts)
    ),
)
roles = st.sampled_from(
    [
        "Key Vault Reader",
        "key vault reader",
        KEY_VAULT_READER_ID.upper(),
        "Owner",
        OWNER_ID,
        "User Access Administrator",
        "Contributor",
        "Key Vault Reader ",
        "Key\u00a0Vault Reader",
        new_id(),
    ]
)
grants = st.lists(st.fixed_dictionaries({"role": roles, "scope": scopes}), min_size=1, max_size=3)
benign_grant = {"role": "Key Vault Reader", "scope": f"{SUB}/resourceGroups/rg-identity"}


def mostly(benign: Any, hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The benign value half of the time, so that one hostile field at a time reaches the engine."""
    return st.one_of(st.just(benign), hostile)


organizations = st.sampled_from(
    [
        "contoso",
        "CONTOSO",
        "contoso/..",
        "../contoso",
        "fabrikam",
        "contoso%2F..",
        "\uff43\uff4f\uff4e\uff54\uff4f\uff53\uff4f",
        "contoso.",
    ]
)
projects = st.sampled_from(
    [
        "identity",
        "IDENTITY",
        "identity/../payments",
        "..",
        ".",
        "../payments",
        "payments\u2215x",
        "identity\uff0f..%2Fpayments",
        "PRN",
        "DefaultCollection",
        "identity.",
        "identity\u200b",
        "\u0456dentity",  # Cyrillic i
        "identity\x00",
    ]
)
connection_names = st.sampled_from(
    [
        "steal",
        "a/b",
        "..",
        ".",
        "../kv-reader",
        "kv-reader",
        "KV-READER",
        "x\u202e",
        "con",
        "steal ",
        "\uff53\uff54\uff45\uff41\uff4c",
    ]
)


@st.composite
def applications(draw: st.DrawFn, tenant: Tenant) -> dict[str, Any]:
    victim = tenant.victim_app["appId"]
    created = tenant.app_named(CREATED_NAME).app_id
    return draw(
        st.sampled_from(
            [
                {"appId": victim},
                {"appId": victim.upper()},
                {"appId": f"{{{victim}}}"},
                {"appId": created},
                {"appId": tenant.other_app["appId"]},
                {"displayName": CREATED_NAME, "create": True},
                {"displayName": CREATED_NAME.upper(), "create": True},
                {"displayName": f" {CREATED_NAME} ", "create": True},
                {"displayName": CREATED_NAME.replace("a", "\u0430"), "create": True},  # Cyrillic a
                {"displayName": "sc-payments-deployer", "create": True},  # the victim's app, by name
                {"displayName": "sc-identity-new", "create": True},
            ]
        )
    )


@st.composite
def hostile_tickets(draw: st.DrawFn, tenant: Tenant, request_id: str) -> tuple[str, bytes]:
    action = draw(st.sampled_from(["upsert", "upsert", "upsert", "delete", "reconcile"]))
    message: dict[str, Any] = {
        "schemaVersion": 1,
        "requestId": request_id,
        "action": action,
        "requestedBy": "mallory@contoso.com",
    }
    victim_ids = ["contoso/payments/kv-reader", "contoso/payments/created", "CONTOSO/payments/kv-reader"]
    if action != "upsert":
        message["configId"] = draw(st.sampled_from([*victim_ids, "contoso/payments/../payments/kv-reader"]))
        return request_id, json.dumps(message).encode()
    config: dict[str, Any] = {
        "organization": draw(mostly("contoso", organizations)),
        "project": draw(mostly("identity", projects)),
        "tenantId": tenant.sim.tenant_id,
        "serviceConnection": {
            "name": draw(mostly("steal", connection_names)),
            "subscriptionId": SAMPLE_SUBSCRIPTION,
            "subscriptionName": "Payments Prod",
        },
        "application": draw(applications(tenant)),
        "roleAssignments": draw(mostly([benign_grant], grants)),
        "prune": "managed",
    }
    explicit = draw(st.sampled_from([None, None, *victim_ids, "contoso/identity/../payments/kv-reader"]))
    if explicit is not None:
        config["id"] = explicit
    credential = draw(st.sampled_from([None, "contoso--payments--kv-reader", "hand-made", "steal"]))
    if credential is not None:
        config["serviceConnection"]["credentialName"] = credential
    return request_id, json.dumps({**message, "config": config}).encode()


# ------------------------------------------------------------------------------ the world


async def victim_world(tenant: Tenant) -> None:
    """Once per test: the victim project's two configs applied, and objects nobody created for us."""
    if getattr(tenant, "prepared", False):
        return
    victim = tenant.victim_app["appId"]
    await tenant.send(tenant.ticket("CHG-VICTIM-1"))
    await tenant.send(
        tenant.ticket(
            "CHG-VICTIM-2", name="created", application={"displayName": CREATED_NAME, "create": True}
        )
    )
    assert await tenant.deliver_reconciles() == 2
    for request_id in ("CHG-VICTIM-1", "CHG-VICTIM-2"):
        assert (await tenant.outcome(request_id))[0] == "applied"
    world = tenant.sim.world
    tenant.hand_made_connection(HAND_MADE_CONNECTION, app_id=victim, description="made by hand")
    tenant.app(victim).federated_credentials.append(
        FederatedCredential(
            id=new_id(),
            name="hand-made",
            issuer="https://login.microsoftonline.com/hand/v2.0",
            subject="sc://contoso/payments/legacy-deploy",
            audiences=["api://AzureADTokenExchange"],
        )
    )
    victim_sp = next(sp for sp in world.service_principals if sp.app_id == victim)
    for principal in (victim_sp.id, new_id()):
        world.role_assignments.append(
            RoleAssignment(name=new_id(), scope=SUB, role_definition_guid=OWNER_ID, principal_id=principal)
        )
    unclaimed = await tenant.sim.admin.seed_application("sc-nobody")
    tenant.prepared = True  # type: ignore[attr-defined]
    tenant.unclaimed = unclaimed["appId"]  # type: ignore[attr-defined]


def foreign_objects(tenant: Tenant) -> dict[str, Any]:
    """Everything in the simulator the reconciler did not create, as JSON (timestamps dropped)."""
    world = tenant.sim.world

    def plain(record: Any) -> Any:
        return {k: v for k, v in record.to_json().items() if k not in {"created_at", "updated_at"}}

    org = world.organization("contoso")
    assert org is not None
    return {
        "connections": sorted(
            json.dumps(plain(e), sort_keys=True) for e in org.endpoints if e.name == HAND_MADE_CONNECTION
        ),
        "credentials": sorted(
            json.dumps(plain(c), sort_keys=True)
            for a in world.applications
            for c in a.federated_credentials
            if not (c.description or "").startswith("managed-by=wif-reconciler;")
        ),
        "assignments": sorted(
            json.dumps(plain(ra), sort_keys=True)
            for ra in world.role_assignments
            if not (ra.description or "").startswith("managed-by=wif-reconciler;")
        ),
        "unclaimed": plain(tenant.app(tenant.unclaimed)),  # type: ignore[attr-defined]
        "apps": sorted((a.app_id, a.display_name, tuple(a.tags)) for a in world.applications),
    }


def trusted_projects(tenant: Tenant, app_id: str) -> set[str]:
    """The ADO projects (case-folded) whose connections the application trusts: from the subject
    (`sc://org/project/name`, or Entra's `.../sc/<org id>/<connection id>`)."""
    org = tenant.sim.world.organization("contoso")
    assert org is not None
    names = {p.id: p.name for p in org.projects}
    project_of = {e.id: names[e.project_refs[0].project_id] for e in org.endpoints if e.project_refs}
    trusted = set()
    for credential in tenant.app(app_id).federated_credentials:
        if credential.subject.startswith("sc://"):
            organization, project, _ = credential.subject.removeprefix("sc://").split("/", 2)
        else:
            organization, project = "contoso", project_of.get(credential.subject.rsplit("/", 1)[-1], "?")
        trusted.add(f"{organization}/{project}".lower())
    return trusted


def assert_nothing_granted_outside_the_policy(tenant: Tenant, before: set[str]) -> None:
    for ra in tenant.sim.world.role_assignments:
        if ra.id in before:
            continue
        assert ra.role_definition_guid.lower() == KEY_VAULT_READER_ID, ra.to_json()
        assert _COVERED.fullmatch(ra.scope), ra.to_json()
        segments = ra.scope.split("/")[1:]
        assert not {".", ".."} & set(segments) and "%" not in ra.scope, ra.to_json()


def assert_no_application_trusts_two_projects(tenant: Tenant) -> None:
    victim = tenant.victim_app["appId"]
    created = tenant.app_named(CREATED_NAME).app_id
    assert trusted_projects(tenant, victim) == {"contoso/payments"}
    assert trusted_projects(tenant, created) <= {"contoso/payments"}  # a delete ticket may retire it
    assert trusted_projects(tenant, tenant.other_app["appId"]) <= {"contoso/identity"}
    for app in tenant.sim.world.applications:
        assert len(trusted_projects(tenant, app.app_id)) <= 1, app.to_json()


# ------------------------------------------------------------------------------ the property


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_hostile_ticket_grants_outside_the_policy_hijacks_an_app_or_touches_a_foreign_object(
    tenant: Tenant, data: st.DataObject
) -> None:
    await victim_world(tenant)
    tenant.sent = getattr(tenant, "sent", 0) + 1  # type: ignore[attr-defined]
    # A fresh request id per example: the state carries over, and a reused id answers `duplicate`.
    request_id, body = data.draw(hostile_tickets(tenant, f"CHG-E2E-{tenant.sent}"), label="ticket")  # type: ignore[attr-defined]
    foreign_before = foreign_objects(tenant)
    assignments_before = {ra.id for ra in tenant.sim.world.role_assignments}
    tenant.peer.reset()

    await tenant.send(body)  # the trigger: raising here would mean redelivery
    outcome, reason = await tenant.outcome(request_id)
    assert outcome in {"accepted", "rejected"} and reason
    event(outcome)
    await tenant.deliver_reconciles()  # every reconcile the ticket queued reaches the clouds

    assert_nothing_granted_outside_the_policy(tenant, assignments_before)
    assert_no_application_trusts_two_projects(tenant)
    after = foreign_objects(tenant)
    # New applications may appear (a project creating its own); none of the existing ones changes.
    assert set(foreign_before["apps"]) <= set(after["apps"])
    assert {k: v for k, v in after.items() if k != "apps"} == {
        k: v for k, v in foreign_before.items() if k != "apps"
    }
