"""The events Azure publishes about changes, emitted by the simulator for every change made through
its APIs (docs/simulator.md, "Events"; the shapes are those of docs/events.md):

- ARM role-assignment writes and deletes: Event Grid events `Microsoft.Resources.ResourceWriteSuccess` /
  `ResourceDeleteSuccess` (Event Grid schema, data version 2), as an Event Grid subscription on the
  subscription delivers them to a Service Bus queue: one event per message;
- ADO service-connection changes: audit entries `Library.ServiceConnection{Created,Modified,Deleted}`
  in an Event Grid envelope, as the audit stream delivers them;
- Entra application changes (federated credentials written or deleted, applications deleted):
  audit records in the diagnostic-settings format (`{"records": [...]}`, category `AuditLogs`), as
  Event Hubs carries them.

A change made through the APIs is attributed to the token's caller (the reconciler's managed
identity); drift injected through `/_sim/` to a person (`PERSON`), as if clicked in a portal.
Event Grid events go to a Service Bus queue when one is configured (`PUT /_sim/events`), else they
are kept; Entra records are always kept. `GET /_sim/events` hands over (and forgets) what was kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import deque
from typing import Any

from cloudsim.api import Call, Reply
from cloudsim.state import JsonObject, World, iso, new_id
from cloudsim.tokens import caller_of

log = logging.getLogger("cloudsim.events")

# Who injected drift through /_sim/: someone else than the reconciler.
PERSON = {"objectId": "5e5e5e5e-0000-4000-8000-000000000001", "upn": "drift@contoso.example"}
# The reconciler's identity as ADO knows it (connectionData's authenticatedUser; cloudsim/ado.py).
ADO_CALLER_ID = "00000000-0000-0000-0000-00000000aaaa"
MAX_KEPT = 100_000
OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
UPN_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"


def role_assignment_event(
    tenant_id: str, assignment_id: str, operation: str, actor: JsonObject
) -> JsonObject:
    """`operation`: write or delete. `actor`: {"objectId", optional "upn", optional "appId"}."""
    subscription = assignment_id.split("/")[2] if assignment_id.lower().startswith("/subscriptions/") else ""
    kind = "Delete" if operation == "delete" else "Write"
    claims = {OID_CLAIM: actor["objectId"]}
    if actor.get("upn"):
        claims[UPN_CLAIM] = actor["upn"]
    if actor.get("appId"):
        claims["appid"] = actor["appId"]
    return {
        "id": new_id(),
        "topic": f"/subscriptions/{subscription}",
        "subject": assignment_id,
        "eventType": f"Microsoft.Resources.Resource{kind}Success",
        "eventTime": iso(time.time()),
        "dataVersion": "2",
        "metadataVersion": "1",
        "data": {
            "authorization": {
                "scope": assignment_id,
                "action": f"Microsoft.Authorization/roleAssignments/{operation}",
                "evidence": {
                    "role": "Role Based Access Control Administrator",
                    "principalId": actor["objectId"],
                },
            },
            "claims": claims,
            "correlationId": new_id(),
            "httpRequest": {
                "clientRequestId": new_id(),
                "clientIpAddress": "127.0.0.1",
                "method": "DELETE" if operation == "delete" else "PUT",
            },
            "resourceProvider": "Microsoft.Authorization",
            "resourceUri": assignment_id,
            "operationName": f"Microsoft.Authorization/roleAssignments/{operation}",
            "status": "Succeeded",
            "subscriptionId": subscription,
            "tenantId": tenant_id,
        },
    }


def connection_audit_event(
    organization: str, connection_id: str, name: str, action: str, actor: JsonObject
) -> JsonObject:
    """An ADO audit entry in the Event Grid envelope the audit stream sends. `action`: Created,
    Modified or Deleted."""
    return {
        "id": new_id(),
        "topic": f"AzureDevOps/{organization}",
        "subject": f"{organization}/Library",
        "eventType": "Microsoft.VisualStudio.Services.Audit",
        "eventTime": iso(time.time()),
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "data": {
            "id": new_id(),
            "correlationId": new_id(),
            "actionId": f"Library.ServiceConnection{action}",
            "timestamp": iso(time.time()),
            "actorUserId": actor["objectId"],
            "actorUPN": actor.get("upn", ""),
            "actorDisplayName": actor.get("upn", ""),
            "scopeType": "Organization",
            "scopeDisplayName": f"{organization} (Organization)",
            "area": "Library",
            "category": "Modify" if action == "Modified" else action.removesuffix("d").removesuffix("e"),
            "data": {"ConnectionId": connection_id, "ConnectionName": name, "ConnectionType": "azurerm"},
        },
    }


def entra_audit_record(
    tenant_id: str, activity: str, object_id: str, actor: JsonObject, *, credentials_changed: bool
) -> JsonObject:
    """One record of an Entra diagnostic setting's AuditLogs category."""
    changed = (
        [
            {"displayName": "FederatedIdentityCredentials", "oldValue": "[]", "newValue": "[]"},
            {
                "displayName": "Included Updated Properties",
                "oldValue": None,
                "newValue": '"FederatedIdentityCredentials"',
            },
        ]
        if credentials_changed
        else []
    )
    if actor.get("appId"):
        app = {
            "appId": actor["appId"],
            "servicePrincipalId": actor["objectId"],
            "displayName": actor.get("upn"),
        }
        initiated: JsonObject = {"app": app}
    else:
        initiated = {"user": {"id": actor["objectId"], "userPrincipalName": actor.get("upn", "")}}
    now = iso(time.time())
    return {
        "time": now,
        "resourceId": f"/tenants/{tenant_id}/providers/Microsoft.aadiam",
        "operationName": activity,
        "operationVersion": "1.0",
        "category": "AuditLogs",
        "tenantId": tenant_id,
        "resultSignature": "None",
        "durationMs": 0,
        "correlationId": new_id(),
        "Level": 4,
        "properties": {
            "id": f"Directory_{new_id()}",
            "category": "ApplicationManagement",
            "correlationId": new_id(),
            "result": "success",
            "resultReason": "",
            "activityDisplayName": activity,
            "activityDateTime": now,
            "loggedByService": "Core Directory",
            "operationType": "Delete" if activity.startswith("Delete") else "Update",
            "initiatedBy": initiated,
            "targetResources": [
                {"id": object_id, "type": "Application", "displayName": None, "modifiedProperties": changed}
            ],
            "additionalDetails": [],
        },
    }


class EventEmitter:
    """Turns the APIs' successful writes into events (Api.on_change calls `observe`)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.event_grid: deque[JsonObject] = deque(maxlen=MAX_KEPT)
        self.entra: deque[JsonObject] = deque(maxlen=MAX_KEPT)
        self._outbox: asyncio.Queue[JsonObject] | None = None
        self._sender_task: asyncio.Task[None] | None = None
        self.sent = 0

    # ------------------------------------------------------------------ configuration

    async def deliver_to(self, connection_string: str | None, queue: str = "events") -> None:
        """Send Event Grid events to this Service Bus queue from now on (None: keep them)."""
        await self.close()
        if connection_string:
            self._outbox = asyncio.Queue()
            self._sender_task = asyncio.create_task(self._send_forever(connection_string, queue))

    async def close(self) -> None:
        if self._sender_task is not None:
            self._sender_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender_task
        self._sender_task, self._outbox = None, None

    def take(self) -> JsonObject:
        """What was kept, forgotten once taken: Event Grid events, and the Entra records as one
        Event Hubs event body of the diagnostic setting."""
        grid, records = list(self.event_grid), list(self.entra)
        self.event_grid.clear()
        self.entra.clear()
        return {"eventGrid": grid, "entra": {"records": records}}

    # ------------------------------------------------------------------ observing writes

    def observe(self, api: str, operation: str, call: Call, match: re.Match[str], reply: Reply) -> None:
        if not 200 <= reply.status < 300:
            return
        person = api == "admin"
        actor = dict(PERSON) if person else {"objectId": caller_of(call.headers.get("Authorization")) or ""}
        handler = _HANDLERS.get((api if not person else "admin", operation))
        if handler is not None:
            handler(self, call, match, reply, actor)

    def _grid(self, event: JsonObject) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(event)
        else:
            self.event_grid.append(event)

    def _role_assignment(self, call: Call, match: re.Match[str], reply: Reply, actor: JsonObject) -> None:
        if isinstance(reply.body, dict) and reply.body.get("id"):
            assignment_id = str(reply.body["id"])
        else:
            assignment_id = call.query.get("id") or (
                f"{match['scope']}/providers/Microsoft.Authorization/roleAssignments/{match['name']}"
            )
        operation = "delete" if call.method == "DELETE" else "write"
        if operation == "write" and reply.status != 201:
            return  # an unchanged PUT of an existing assignment writes nothing
        self._grid(role_assignment_event(self.world.tenant_id, assignment_id, operation, actor))

    def _connection(self, call: Call, match: re.Match[str], reply: Reply, actor: JsonObject) -> None:
        if actor["objectId"] == self.world.caller_object_id:
            actor = {"objectId": ADO_CALLER_ID}  # ADO audits its own identity of the caller
        body = reply.body if isinstance(reply.body, dict) else {}
        org = match["org"]
        action = {"POST": "Created", "DELETE": "Deleted"}.get(call.method, "Modified")
        if match.re.pattern.endswith("/recreate"):
            self._grid(connection_audit_event(org, match["id"], "", "Deleted", actor))
            self._grid(connection_audit_event(org, str(body.get("id")), "", "Created", actor))
            return
        connection_id = str(body.get("id") or match.groupdict().get("id") or "")
        self._grid(connection_audit_event(org, connection_id, str(body.get("name") or ""), action, actor))

    def _application(self, call: Call, match: re.Match[str], _reply: Reply, actor: JsonObject) -> None:
        groups = match.groupdict()
        key = groups.get("app") or groups.get("id") or groups.get("app_id") or ""
        app = self.world.application(key) or self.world.application_by_app_id(key)
        object_id = app.id if app is not None else key
        deleted = call.method == "DELETE" and not ("fic" in groups or "name" in groups)
        activity = "Delete application" if deleted else "Update application"
        self.entra.append(
            entra_audit_record(
                self.world.tenant_id, activity, object_id, actor, credentials_changed=not deleted
            )
        )

    # ------------------------------------------------------------------ sending

    async def _send_forever(self, connection_string: str, queue: str) -> None:
        from azure.servicebus import ServiceBusMessage  # noqa: PLC0415 - only when events are sent
        from azure.servicebus.aio import ServiceBusClient  # noqa: PLC0415

        assert self._outbox is not None
        outbox = self._outbox
        async with ServiceBusClient.from_connection_string(connection_string) as client:
            sender = client.get_queue_sender(queue)
            async with sender:
                while True:
                    batch = [await outbox.get()]
                    while not outbox.empty() and len(batch) < 100:
                        batch.append(outbox.get_nowait())
                    try:
                        await sender.send_messages(
                            [ServiceBusMessage(json.dumps(e), content_type="application/json") for e in batch]
                        )
                        self.sent += len(batch)
                    except Exception:  # the simulator must keep serving: keep the events instead
                        log.exception("sending %d events failed; kept for GET /_sim/events", len(batch))
                        self.event_grid.extend(batch)


_HANDLERS: dict[tuple[str, str], Any] = {
    ("arm", "roleAssignments.create"): EventEmitter._role_assignment,
    ("arm", "roleAssignments.delete"): EventEmitter._role_assignment,
    ("admin", "roleAssignment.delete"): EventEmitter._role_assignment,
    ("ado", "endpoints.create"): EventEmitter._connection,
    ("ado", "endpoints.update"): EventEmitter._connection,
    ("ado", "endpoints.delete"): EventEmitter._connection,
    ("admin", "endpoint.recreate"): EventEmitter._connection,
    ("admin", "endpoint.toSecret"): EventEmitter._connection,
    ("admin", "endpoint.markLegacy"): EventEmitter._connection,
    ("admin", "endpoint.change"): EventEmitter._connection,
    ("graph", "fics.create"): EventEmitter._application,
    ("graph", "fics.update"): EventEmitter._application,
    ("graph", "fics.delete"): EventEmitter._application,
    ("graph", "applications.delete"): EventEmitter._application,
    ("admin", "fic.delete"): EventEmitter._application,
    ("admin", "fic.change"): EventEmitter._application,
}
