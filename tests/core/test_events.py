"""Drift events parsed from their documented shapes (reconciler/core/events.py)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core.events import (
    EventInvalid,
    IndexKey,
    OwnIdentity,
    Source,
    assignment_key,
    index_entries,
    parse_entra_records,
    parse_event_grid,
)
from reconciler.core.model import (
    Application,
    ObservedState,
    RoleAssignment,
    ServiceConnection,
    role_assignment_name,
)
from tests.core.builders import config

SUB = "6b1e2c5a-3f4d-4e8a-9c7b-1a2b3c4d5e6f"
SCOPE = f"/subscriptions/{SUB}/resourceGroups/rg-pay"
ASSIGNMENT = f"{SCOPE}/providers/Microsoft.Authorization/roleAssignments/0b3c1e6e-1f4b-4c1e-8f5e-111111111111"
USER = "11111111-2222-3333-4444-555555555555"
OBJECT = "aaaaaaaa-0000-0000-0000-000000000001"
ROLE_OTHER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def arm_event(operation: str = "delete", **data: Any) -> dict[str, Any]:
    kind = "Delete" if operation == "delete" else "Write"
    return {
        "id": "4d9a0f4c-0000-0000-0000-000000000001",
        "topic": f"/subscriptions/{SUB}",
        "subject": ASSIGNMENT,
        "eventType": f"Microsoft.Resources.Resource{kind}Success",
        "eventTime": "2026-12-05T01:00:00.1234567Z",
        "dataVersion": "2",
        "metadataVersion": "1",
        "data": {
            "operationName": f"Microsoft.Authorization/roleAssignments/{operation}",
            "resourceUri": ASSIGNMENT,
            "status": "Succeeded",
            "subscriptionId": SUB,
            "claims": {
                "http://schemas.microsoft.com/identity/claims/objectidentifier": USER,
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": "jane@contoso.com",
            },
            **data,
        },
    }


def test_a_role_assignment_delete_names_the_assignment_and_who_did_it() -> None:
    [event] = parse_event_grid(arm_event())
    assert event.source is Source.ARM
    assert event.key == IndexKey("roleAssignment", ASSIGNMENT)
    assert event.operation == "roleAssignments/delete"
    assert event.actor.object_id == USER and event.actor.name == "jane@contoso.com"


def test_the_cloudevents_schema_is_read_too() -> None:
    grid = arm_event("write")
    cloud = {
        "specversion": "1.0",
        "id": grid["id"],
        "source": grid["topic"],
        "type": grid["eventType"],
        "time": grid["eventTime"],
        "data": grid["data"],
    }
    assert parse_event_grid([cloud]) == parse_event_grid(grid)


def test_other_resources_and_failed_operations_are_not_drift_events() -> None:
    storage = arm_event(operationName="Microsoft.Storage/storageAccounts/write")
    failed = arm_event(status="Failed")
    other = {**arm_event(), "eventType": "Microsoft.Resources.ResourceActionSuccess"}
    assert parse_event_grid([storage, failed, other]) == []


def test_a_scope_no_config_can_name_is_ignored_not_read() -> None:
    uri = f"/subscriptions/{SUB}/resourceGroups/..%2f/providers/Microsoft.Authorization/roleAssignments/x"
    assert parse_event_grid(arm_event(resourceUri=uri)) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "../../x"}, "event 0.id"),
        ({"eventTime": "yesterday"}, "event 0.eventTime"),
        ({"data": "nope"}, "event 0.data"),
    ],
)
def test_a_malformed_event_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(EventInvalid, match=field.replace(".", r"\.")):
        parse_event_grid({**arm_event(), **change})


def test_a_malformed_claim_names_the_field() -> None:
    event = arm_event(claims={"appid": "not-a-guid"})
    with pytest.raises(EventInvalid, match=r"claims\.appid"):
        parse_event_grid(event)


def ado_event(action: str = "Library.ServiceConnectionDeleted", connection: str = OBJECT) -> dict[str, Any]:
    return {
        "id": "e1",
        "eventType": "AzureDevOps.Audit",
        "subject": "contoso",
        "eventTime": "2026-12-05T01:00:00Z",
        "dataVersion": "1",
        "data": {
            "id": "audit-1",
            "actionId": action,
            "timestamp": "2026-12-05T00:59:00Z",
            "actorUserId": USER,
            "actorUPN": "jane@contoso.com",
            "projectName": "payments",
            "data": {"ConnectionId": connection, "ConnectionName": "kv-reader"},
        },
    }


def test_an_ado_audit_entry_names_the_connection() -> None:
    [event] = parse_event_grid(ado_event())
    assert (event.source, event.event_id) == (Source.ADO, "audit-1")
    assert event.key == IndexKey("connection", OBJECT)
    assert str(event.actor) == f"jane@contoso.com, objectId {USER}"
    assert parse_event_grid(ado_event("Library.VariableGroupModified")) == []
    with pytest.raises(EventInvalid, match=r"data\.data\.ConnectionId"):
        parse_event_grid(ado_event(connection="x"))


def entra_record(activity: str = "Update application", prop: str = "FederatedIdentityCredentials") -> Any:
    return {
        "time": "2026-12-05T01:00:00Z",
        "category": "AuditLogs",
        "operationName": activity,
        "properties": {
            "id": "Directory_ABC_123",
            "category": "ApplicationManagement",
            "activityDisplayName": activity,
            "activityDateTime": "2026-12-05T01:00:00.123Z",
            "result": "success",
            "initiatedBy": {"app": {"appId": USER, "displayName": "deployer", "servicePrincipalId": OBJECT}},
            "targetResources": [
                {
                    "id": OBJECT,
                    "type": "Application",
                    "modifiedProperties": [{"displayName": prop, "oldValue": "[]", "newValue": "[]"}],
                }
            ],
        },
    }


def test_entra_credential_changes_and_deletes_name_the_application() -> None:
    deleted, tags = entra_record("Delete application", "x"), entra_record(prop="Tags")
    records = {"records": [entra_record(), deleted, tags]}
    events = parse_entra_records(records)
    assert [(e.operation, e.key) for e in events] == [
        ("Update application", IndexKey("application", OBJECT)),
        ("Delete application", IndexKey("application", OBJECT)),
    ]
    assert events[0].actor.app_id == USER and events[0].actor.name == "deployer"
    with pytest.raises(EventInvalid, match="records"):
        parse_entra_records({"value": []})


def test_own_writes_are_recognised_by_object_or_client_id() -> None:
    own = OwnIdentity.of([USER.upper()])
    [event] = parse_event_grid(arm_event())
    assert own.made(event)
    assert not OwnIdentity.of([OBJECT]).made(event)


def test_the_index_maps_objects_to_their_application() -> None:
    wanted = config(app_id="0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")
    app = Application(OBJECT.upper(), "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0", "x", service_principal_id=USER)
    connection = ServiceConnection(
        OBJECT, wanted.organization, wanted.project, wanted.connection_name, "WorkloadIdentityFederation"
    )
    [grant] = wanted.role_grants
    adopted = RoleAssignment(f"{grant.scope}/x", "0B3C1E6E-0000-0000-0000-000000000001", grant.scope,
                             grant.role_id, USER)  # fmt: skip
    foreign = RoleAssignment(f"{grant.scope}/y", "0b3c1e6e-0000-0000-0000-000000000002", grant.scope,
                             ROLE_OTHER, USER)  # fmt: skip
    observed = ObservedState(
        applications=(app,), connections=(connection,), role_assignments=(adopted, foreign)
    )
    entries = index_entries([wanted], observed)
    key = wanted.application.key
    assert entries[IndexKey("application", OBJECT)] == {key}
    assert entries[IndexKey("principal", USER)] == {key}
    assert entries[IndexKey("connection", OBJECT)] == {key}
    deterministic = role_assignment_name(grant.scope, grant.role_id, USER)
    assert {k.value for k in entries if k.kind == "roleAssignment"} == {
        assignment_key(grant.scope, deterministic),
        assignment_key(grant.scope, adopted.name),
    }
