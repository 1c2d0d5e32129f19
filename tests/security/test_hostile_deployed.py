"""The deployed path as an attacker, a careless operator and a flaky Azure would try it: messages
delivered twice or out of order, rows edited by hand between a read and a write, settings with
absurd values (docs/security.md, "Hostile review of the deployed path")."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import azure.functions as func
import pytest
from azure.data.tables import TableClient, UpdateMode

import function_app
from reconciler.app import http_api
from reconciler.app.events import EventSettings
from reconciler.app.service import ReconcilerService
from reconciler.failures import TemporaryFailure
from reconciler.state.tables import (
    CONFIGS_TABLE,
    HISTORY_TABLE,
    REQUESTS_TABLE,
    STATUS_TABLE,
    ConcurrencyConflict,
    SettingsError,
)
from tests.security.conftest import Host, config, ticket

CONFIG_ID = "contoso/payments/kv-reader"
ROUTE_ID = "contoso~payments~kv-reader"


def edit_config_row(table_settings: dict[str, str], **fields: Any) -> None:
    """A person edits the config's row in Storage Explorer: its ETag changes."""
    connection = table_settings["WIF_TABLE_CONNECTION_STRING"]
    with TableClient.from_connection_string(connection, CONFIGS_TABLE) as client:
        client.update_entity({"PartitionKey": "contoso", "RowKey": ROUTE_ID, **fields}, mode=UpdateMode.MERGE)


async def applied_then_deleted(host: Host) -> ReconcilerService:
    await host.deliver(ticket("DEP-1", config=config(host.sim.tenant_id)))
    assert await host.deliver_reconciles() == 1
    await host.deliver(ticket("DEP-2", "delete", configId=CONFIG_ID))
    return await host.service()


def edited_before_purge(
    service: ReconcilerService, table_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Edit the tombstone by hand between the pass's read and its purge (once)."""
    purge = service._stores.configs.purge
    edited: list[str] = []

    async def purge_after_an_edit(config_id: str, etag: str, organization: str | None = None) -> bool:
        if not edited:
            edit_config_row(table_settings, Note="looked at by hand")
            edited.append(config_id)
        return await purge(config_id, etag, organization)

    monkeypatch.setattr(service._stores.configs, "purge", purge_after_an_edit)
    return edited


async def test_a_tombstone_edited_by_hand_before_its_purge_fails_neither_the_message_nor_the_request(
    host: Host, table_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The purge is conditional on the ETag the pass read (right: never delete what changed), but its
    ConcurrencyConflict escaped the whole pass: the delete request was never finished, and the
    message was abandoned into redeliveries."""
    service = await applied_then_deleted(host)
    edited = edited_before_purge(service, table_settings, monkeypatch)

    assert await host.deliver_reconciles() == 1  # returned: the message is completed
    assert edited == [CONFIG_ID]
    record = await service.request("DEP-2")
    assert record is not None and record.outcome == "applied", record
    # Nothing lost: the tombstone stays (it changed since it was read) and the next pass purges it.
    stored = await service._stores.configs.get(CONFIG_ID)
    assert stored is not None and stored.deleted
    await host.deliver(ticket("DEP-3", "delete", configId=CONFIG_ID))
    assert await host.deliver_reconciles() == 1
    assert await service._stores.configs.get(CONFIG_ID) is None


async def test_a_tombstone_edited_by_hand_during_an_http_reconcile_is_no_500(
    host: Host,
    table_settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = await applied_then_deleted(host)
    host.peer.reset()  # the delete's reconcile message is not delivered: the HTTP call does it
    edited_before_purge(service, table_settings, monkeypatch)

    body = json.dumps({"configIds": [CONFIG_ID]}).encode()
    with caplog.at_level(logging.ERROR):
        headers = {"content-type": "application/json"}
        response = await function_app.http_reconcile(
            func.HttpRequest("POST", "/api/reconcile", body=body, headers=headers)
        )
    assert response.status_code == 200, response.get_body()
    assert not [r for r in caplog.records if r.exc_info], "no traceback logged"


async def test_a_row_changed_under_an_http_call_is_a_409_not_a_logged_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def clashing() -> http_api.Response:
        raise ConcurrencyConflict("config 'contoso/payments/kv-reader' changed since it was read")

    with caplog.at_level(logging.ERROR):
        response = await http_api.guarded(clashing)
    assert response.status == 409 and response.headers["Content-Type"] == "application/problem+json"
    assert "kv-reader" not in response.text()  # the row's words stay in the service
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_reconcile_message_delivered_twice_keeps_what_the_first_delivery_recorded(host: Host) -> None:
    """At-least-once: a reconcile message completed too late (its lock lost) comes again. The second
    pass finds nothing to do, and used to overwrite the request's changes with none."""
    await host.deliver(ticket("DEP-4", config=config(host.sim.tenant_id)))
    (message,) = host.peer.messages("reconcile")
    await function_app.reconcile_apps(func.ServiceBusMessage(body=message.body))
    first = await (await host.service()).request("DEP-4")
    assert first is not None and first.outcome == "applied" and first.changes, first

    await function_app.reconcile_apps(func.ServiceBusMessage(body=message.body))  # the same again
    again = await (await host.service()).request("DEP-4")
    assert again is not None and again.outcome == "applied"
    assert set(first.changes) <= set(again.changes), again.changes


async def test_a_reconcile_done_before_its_ticket_is_recorded_accepted_keeps_its_outcome(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of order: another instance takes the reconcile message and finishes the request while the
    ticket's own last write (`accepted`, `reconcile queued`) is still on its way (a slow or retried
    table call). That write used to land last and leave the request `accepted` for good."""
    service = await host.service()
    send = service._queues.send_reconcile

    async def send_and_reconcile_at_once(*args: Any, **kwargs: Any) -> Any:
        sent = await send(*args, **kwargs)
        (message,) = host.peer.messages("reconcile")  # left there: the ticket's own message is locked
        await function_app.reconcile_apps(func.ServiceBusMessage(body=message.body))
        return sent

    monkeypatch.setattr(service._queues, "send_reconcile", send_and_reconcile_at_once)
    await host.deliver(ticket("DEP-5", config=config(host.sim.tenant_id)))
    record = await service.request("DEP-5")
    assert record is not None and record.outcome == "applied", record
    assert record.finished_at and record.changes


def delete_table(table_settings: dict[str, str], table: str) -> None:
    """An operator "resets" a table in Storage Explorer while the app runs."""
    with TableClient.from_connection_string(table_settings["WIF_TABLE_CONNECTION_STRING"], table) as client:
        client.delete_table()


def get(route: str, **params: str) -> func.HttpRequest:
    return func.HttpRequest("GET", f"/api/{route}", body=b"", route_params=params)


async def test_a_table_deleted_while_the_app_runs_fails_one_call_cleanly_and_is_created_again(
    host: Host, table_settings: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Table Storage answers 404 TableNotFound for every call on a deleted table, which the stores took
    for "no such row" or let escape: the sweep raised out of the timer, GET .../history answered a bare
    500, a ticket raised the SDK's error on every delivery, and nothing created the table again until
    the worker restarted."""
    await host.deliver(ticket("DEP-6", config=config(host.sim.tenant_id)))
    assert await host.deliver_reconciles() == 1
    service = await host.service()

    delete_table(table_settings, STATUS_TABLE)
    report = await service.sweep()  # never raises: one problem line, and the table is back
    assert any("does not exist" in p for p in report.problems), report.problems
    assert not (await service.sweep()).problems

    delete_table(table_settings, HISTORY_TABLE)
    with caplog.at_level(logging.ERROR):
        response = await function_app.http_history(get(f"configs/{ROUTE_ID}/history", config_id=ROUTE_ID))
    assert response.status_code == 503, response.get_body()
    assert not [r for r in caplog.records if r.exc_info], "no traceback logged"
    response = await function_app.http_history(get(f"configs/{ROUTE_ID}/history", config_id=ROUTE_ID))
    assert response.status_code == 200, response.get_body()

    delete_table(table_settings, REQUESTS_TABLE)
    with pytest.raises(TemporaryFailure, match="does not exist"):  # the message comes again
        await function_app.ticket_requests(
            func.ServiceBusMessage(body=ticket("DEP-7", "reconcile", configId=CONFIG_ID))
        )
    await function_app.ticket_requests(
        func.ServiceBusMessage(body=ticket("DEP-7", "reconcile", configId=CONFIG_ID))
    )
    record = await service.request("DEP-7")
    assert record is not None and record.outcome == "accepted"


def test_a_wrong_azure_client_id_is_named_as_such() -> None:
    """The error named WIF_RECONCILER_IDENTITIES, which the operator had not set."""
    with pytest.raises(SettingsError, match=r"^AZURE_CLIENT_ID: expected a GUID"):
        EventSettings.from_settings({"AZURE_CLIENT_ID": "my-identity"})
    with pytest.raises(SettingsError, match=r"^WIF_RECONCILER_IDENTITIES: expected a GUID"):
        EventSettings.from_settings({"WIF_RECONCILER_IDENTITIES": "x", "AZURE_CLIENT_ID": str(uuid.uuid4())})


async def test_a_reconcile_message_for_an_application_no_config_names_any_more_changes_nothing(
    host: Host,
) -> None:
    """Held: the config was deleted and purged while its message waited; the pass has no rows."""
    clouds_before = await host.cloud_state()
    body = json.dumps(
        {"schemaVersion": 1, "apps": [f"app:{uuid.uuid4()}"], "reason": "ticket", "requestId": "DEP-GONE"}
    ).encode()
    await function_app.reconcile_apps(func.ServiceBusMessage(body=body))  # returns: completed
    assert await host.cloud_state() == clouds_before
    assert await (await host.service()).request("DEP-GONE") is None  # no record made up for it


async def test_one_ticket_handled_twice_at_once_is_applied_once(host: Host) -> None:
    """Held: a lock that expired mid-handling gives the same message to a second instance."""
    body = ticket("DEP-8", config=config(host.sim.tenant_id))
    service = await host.service()  # built first: the worker's one-time build lock is per event loop
    outcomes = await asyncio.gather(
        *(function_app.ticket_requests(func.ServiceBusMessage(body=body)) for _ in range(2))
    )
    assert outcomes == [None, None]
    stored = await service._stores.configs.get(CONFIG_ID)
    assert stored is not None and stored.generation == 1
    record = await service.request("DEP-8")
    assert record is not None and record.outcome == "accepted"
