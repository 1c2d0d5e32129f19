"""The simulator emits Azure's events for every change made through its APIs (cloudsim/events.py),
in the shapes the reconciler reads (reconciler/core/events.py parses each one here)."""

from __future__ import annotations

import json
import uuid

from azure.mgmt.authorization.aio import AuthorizationManagementClient

from cloudsim.events import ADO_CALLER_ID, PERSON
from cloudsim.state import FederatedCredential
from cloudsim.testing import SAMPLE_SUBSCRIPTION, RunningSimulator
from reconciler.core.events import IndexKey, Source, parse_entra_records, parse_event_grid
from servicebus_peer import ServiceBusPeer

from .test_ado_sdk import AdoClient, create
from .test_arm_sdk import grant, principal

VAULT = (
    f"/subscriptions/{SAMPLE_SUBSCRIPTION}/resourceGroups/rg-pay/providers/Microsoft.KeyVault/vaults/kv-pay"
)
CANONICAL_VAULT = VAULT.replace("Microsoft.KeyVault", "microsoft.keyvault")


def assignment(name: str) -> IndexKey:
    return IndexKey(
        "roleAssignment", f"{CANONICAL_VAULT}/providers/Microsoft.Authorization/roleAssignments/{name}"
    )


async def test_role_assignment_writes_and_deletes_are_event_grid_events(
    arm: AuthorizationManagementClient, cloud_env: RunningSimulator
) -> None:
    principal_id = await principal(cloud_env)
    created = await arm.role_assignments.create(VAULT, str(uuid.uuid4()), grant(principal_id))
    await arm.role_assignments.create(VAULT, str(created.name), grant(principal_id))  # unchanged: no event
    await arm.role_assignments.delete(VAULT, str(created.name))
    kept = await cloud_env.admin.take_events()
    events = parse_event_grid(kept["eventGrid"])
    assert [(e.source, e.operation, e.key) for e in events] == [
        (Source.ARM, "roleAssignments/write", assignment(str(created.name))),
        (Source.ARM, "roleAssignments/delete", assignment(str(created.name))),
    ]
    assert {e.actor.object_id for e in events} == {cloud_env.world.caller_object_id}
    assert (await cloud_env.admin.take_events())["eventGrid"] == []  # taken once


async def test_drift_injected_by_hand_is_attributed_to_a_person(
    arm: AuthorizationManagementClient, cloud_env: RunningSimulator
) -> None:
    principal_id = await principal(cloud_env)
    created = await arm.role_assignments.create(VAULT, str(uuid.uuid4()), grant(principal_id))
    await cloud_env.admin.take_events()
    await cloud_env.admin.delete_role_assignment(str(created.id))
    [event] = parse_event_grid((await cloud_env.admin.take_events())["eventGrid"])
    assert event.operation == "roleAssignments/delete" and event.key == assignment(str(created.name))
    assert (event.actor.object_id, event.actor.name) == (PERSON["objectId"], PERSON["upn"])


async def test_credential_changes_are_entra_audit_records(cloud_env: RunningSimulator) -> None:
    seeded = await cloud_env.admin.seed_application("sc-events")
    app = cloud_env.world.application_by_app_id(seeded["appId"])
    assert app is not None
    await cloud_env.admin.take_events()
    # A credential put in the model directly (no event), then deleted by hand as in the portal.
    app.federated_credentials.append(
        FederatedCredential(
            id=str(uuid.uuid4()), name="by-hand", issuer="https://i", subject="s", audiences=[]
        )
    )
    await cloud_env.admin.delete_fic(seeded["appId"], "by-hand")
    body = (await cloud_env.admin.take_events())["entra"]
    [event] = parse_entra_records(json.loads(json.dumps(body)))
    assert (event.source, event.operation) == (Source.ENTRA, "Update application")
    assert event.key == IndexKey("application", app.id.lower())
    assert event.actor.name == PERSON["upn"]


async def test_service_connection_changes_are_ado_audit_entries(
    ado: AdoClient, cloud_env: RunningSimulator
) -> None:
    created = await create(ado, cloud_env)
    org = cloud_env.world.organizations[0].name
    new_id = await cloud_env.admin.recreate_connection(org, created["id"])
    events = parse_event_grid((await cloud_env.admin.take_events())["eventGrid"])
    assert [(e.operation, e.key.value) for e in events] == [
        ("Library.ServiceConnectionCreated", created["id"]),
        ("Library.ServiceConnectionDeleted", created["id"]),
        ("Library.ServiceConnectionCreated", new_id),
    ]
    assert [e.actor.object_id for e in events] == [ADO_CALLER_ID, PERSON["objectId"], PERSON["objectId"]]


async def test_event_grid_events_reach_the_peers_events_queue(
    arm: AuthorizationManagementClient, cloud_env: RunningSimulator, servicebus_peer: ServiceBusPeer
) -> None:
    await cloud_env.admin.deliver_events_to(servicebus_peer.connection_string)
    principal_id = await principal(cloud_env)
    await arm.role_assignments.create(VAULT, str(uuid.uuid4()), grant(principal_id))
    assert await servicebus_peer.wait_until_async(lambda: len(servicebus_peer.messages("events")) == 1, 10)
    [message] = servicebus_peer.messages("events")
    [event] = parse_event_grid(json.loads(message.body))
    assert event.operation == "roleAssignments/write"
    assert (await cloud_env.admin.take_events())["eventGrid"] == []  # sent, not kept
