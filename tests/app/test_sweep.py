"""The drift sweep as the timer runs it: one bulk dry run over the desired state, reconcile messages only
for drifted applications, status rows written only when they change, in table transactions. Table
writes are counted at the network boundary, from Azurite's access log."""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func
import pytest
from azure.data.tables import TableServiceClient
from azure.functions.timer import TimerRequest

import function_app
from cloudsim.faults import Faults
from cloudsim.state import Application
from cloudsim.testing import SAMPLE_SUBSCRIPTION
from reconciler.app import context as app_context
from reconciler.app.service import SweepReport
from reconciler.app.telemetry import orphan_kind
from reconciler.state.tables import CONFIGS_TABLE, encode_row_key
from tests.app.test_app_triggers import App, app, upsert_and_reconcile
from tests.azurite import TableRequests

__all__ = ["app"]

BATCH = ("POST", "/devstoreaccount1/$batch")
PAYMENTS = "contoso/payments/kv-reader"
BILLING = "contoso/payments/billing"
ORPHAN = "contoso/payments/orphan"
ORPHAN_APP = "sc-payments-orphan"


async def two_converged_configs(app: App) -> dict[str, Any]:
    """The fixture's config, and one more on an application of its own; both reconciled."""
    await upsert_and_reconcile(app)
    other = await app.sim.admin.seed_application("sc-payments-billing")
    connection = {
        "name": "billing",
        "subscriptionId": SAMPLE_SUBSCRIPTION,
        "subscriptionName": "Payments Prod",
    }
    body = app.ticket("CHG0101", serviceConnection=connection, application={"appId": other["appId"]})
    await function_app.ticket_requests(func.ServiceBusMessage(body=body))
    assert await app.deliver_reconciles() == 1
    service = await app.service()
    for config_id in (PAYMENTS, BILLING):
        status = await service.status(config_id)
        assert status is not None and status.phase == "converged"
    return other


async def delete_the_credential(app: App) -> None:
    (credential,) = app.credentials()
    await app.sim.admin.delete_fic(app.seeded["appId"], credential.name)


async def sweep() -> None:
    await function_app.drift_sweep(TimerRequest(past_due=False))


async def test_a_converged_sweep_sends_no_message_and_writes_no_status_row(
    app: App, table_settings: dict[str, str]
) -> None:
    await two_converged_configs(app)
    tables = TableRequests.of(table_settings)
    # Even the first sweep after the tickets writes nothing: their passes indexed what they
    # observed and what they created, so the event index is complete too.
    for _ in range(2):
        tables.mark()
        await sweep()
        assert app.peer.messages("reconcile") == []
        assert tables.writes_since_mark() == []
        assert any(method == "GET" for method, _ in tables.since_mark())  # it did read the tables


async def test_a_drifted_application_gets_exactly_one_message_and_only_it(app: App) -> None:
    other = await two_converged_configs(app)
    await delete_the_credential(app)
    await sweep()
    (message,) = app.peer.messages("reconcile")
    body = json.loads(message.body)
    assert (body["reason"], body["apps"], body["configIds"]) == (
        "sweep", [f"app:{app.seeded['appId']}"], [PAYMENTS],
    )  # fmt: skip
    assert other["appId"] not in message.body.decode()
    assert await app.deliver_reconciles() == 1
    assert len(app.credentials()) == 1  # repaired by the message's own reconcile
    await sweep()
    assert app.peer.messages("reconcile") == []  # converged again: nothing to send


async def test_a_status_change_is_written_once_in_a_batch(app: App, table_settings: dict[str, str]) -> None:
    await two_converged_configs(app)
    await delete_the_credential(app)
    tables = TableRequests.of(table_settings)
    service = await app.service()

    tables.mark()
    await sweep()
    # One transaction: the drifted config's row (the event index is complete since the tickets).
    assert tables.writes_since_mark() == [BATCH]
    status = await service.status(PAYMENTS)
    assert status is not None and status.phase == "drifted" and "create-credential" in status.last_plan
    unchanged = await service.status(BILLING)
    assert unchanged is not None and unchanged.phase == "converged"

    app.peer.reset()  # the repair has not run yet: the next sweep finds the same drift
    tables.mark()
    await sweep()
    assert tables.writes_since_mark() == []  # the status says what it said: not written again
    assert len(app.peer.messages("reconcile")) == 1  # but the repair is asked for again

    tables.mark()
    assert await app.deliver_reconciles() == 1
    assert BATCH in tables.writes_since_mark()
    status = await service.status(PAYMENTS)
    assert status is not None and status.phase == "converged"
    assert status.last_plan == "1 action: create-credential"  # what converged it

    tables.mark()
    await sweep()
    assert tables.writes_since_mark() == [] and app.peer.messages("reconcile") == []


async def test_a_failed_read_fails_its_configs_not_the_sweep_and_is_not_fanned_out(
    app: App, table_settings: dict[str, str]
) -> None:
    await two_converged_configs(app)
    tables = TableRequests.of(table_settings)
    service = await app.service()
    await app.sim.admin.set_faults({"ado": Faults(error_rate=1.0, error_statuses=[403])})
    tables.mark()
    await sweep()  # the project's connection listing fails: no exception
    assert app.peer.messages("reconcile") == []  # nothing a reconcile could do better now
    assert tables.writes_since_mark() == [BATCH]  # both configs say so, in one transaction
    for config_id in (PAYMENTS, BILLING):
        status = await service.status(config_id)
        assert status is not None and status.phase == "failed-permanent"
        assert "service connections of contoso/payments" in status.last_error

    await app.sim.admin.set_faults({"ado": Faults()})
    await sweep()
    assert app.peer.messages("reconcile") == []
    status = await service.status(PAYMENTS)
    assert status is not None and status.phase == "converged" and status.last_error == ""


# ---------------------------------------------------------------------------- orphans


async def a_config_deleted_by_hand(app: App, table_settings: dict[str, str], **row: Any) -> Application:
    """Two converged configs, and a third that created its application, credential, role assignment and
    connection; then a person deletes its row from the table (not through the API: no tombstone), or
    with `row` overwrites it. Returns the application it created."""
    await two_converged_configs(app)
    connection = {
        "name": "orphan",
        "subscriptionId": SAMPLE_SUBSCRIPTION,
        "subscriptionName": "Payments Prod",
    }
    created = {"displayName": ORPHAN_APP, "create": True}
    body = app.ticket("CHG0102", serviceConnection=connection, application=created)
    await function_app.ticket_requests(func.ServiceBusMessage(body=body))
    assert await app.deliver_reconciles() == 1
    status = await (await app.service()).status(ORPHAN)
    assert status is not None and status.phase == "converged"
    with TableServiceClient.from_connection_string(table_settings["WIF_TABLE_CONNECTION_STRING"]) as tables:
        configs = tables.get_table_client(CONFIGS_TABLE)
        if row:  # as a person in Storage Explorer would
            configs.upsert_entity({"PartitionKey": "contoso", "RowKey": encode_row_key(ORPHAN), **row})
        else:
            configs.delete_entity("contoso", encode_row_key(ORPHAN))
    [application] = [a for a in app.sim.world.applications if a.display_name == ORPHAN_APP]
    return application


def what_the_orphan_left(app: App, application: Application) -> dict[str, int]:
    [principal] = [s for s in app.sim.world.service_principals if s.app_id == application.app_id]
    endpoints = [e for o in app.sim.world.organizations for e in o.endpoints if e.name == "orphan"]
    assignments = [ra for ra in app.sim.world.role_assignments if ra.principal_id == principal.id]
    return {
        "credentials": len(application.federated_credentials),
        "assignments": len(assignments),
        "connections": len(endpoints),
    }


def graph_requests(report: SweepReport) -> int:
    return report.requests["graph"]["reads"] + report.requests["graph"]["writes"]


async def test_a_config_deleted_by_hand_is_reported_orphaned_and_nothing_is_removed_or_queued(
    app: App, table_settings: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    application = await a_config_deleted_by_hand(app, table_settings)
    left = what_the_orphan_left(app, application)
    assert left == {"credentials": 1, "assignments": 1, "connections": 1}

    # Someone renamed it with a line break (a forged log line, were it written as is).
    application.display_name = f"{ORPHAN_APP}\nsweep forged: 0 orphans"

    caplog.set_level(logging.INFO, "reconciler")
    await sweep()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    orphaned = [line for line in warned if ": orphaned " in line]
    assert len(orphaned) == 4  # each once
    assert all("\n" not in line for line in orphaned)
    expected = f"orphaned application {ORPHAN_APP}?sweep forged: 0 orphans ({application.app_id})"
    assert any(expected in line for line in orphaned)
    assert any("4 orphans" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)

    report = await (await app.service()).sweep()
    assert report.orphans == 4 and report.problems == [] and report.warnings == []
    kinds = {orphan_kind(f.target): f for f in report.orphan_findings}
    assert set(kinds) == {"application", "credential", "role-assignment", "connection"}
    assert all(f.config_ids == (ORPHAN,) for f in report.orphan_findings)
    assert application.app_id in kinds["application"].target
    assert report.outcomes == {"converged": 2}  # the others' statuses say nothing of it
    assert app.peer.messages("reconcile") == []  # no config to reconcile: a person retires it
    assert what_the_orphan_left(app, application) == left  # nothing deleted
    assert [a for a in app.sim.world.applications if a.app_id == application.app_id] == [application]


async def test_a_converged_sweep_finds_no_orphan_for_one_more_graph_request(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    await two_converged_configs(app)
    await app_context.reset()  # both sweeps on a fresh worker
    scanned = await (await app.service()).sweep()
    monkeypatch.setenv("WIF_SWEEP_FIND_ORPHANS", "false")
    await app_context.reset()
    unscanned = await (await app.service()).sweep()
    assert scanned.orphans == unscanned.orphans == 0
    assert scanned.problems == unscanned.problems == [] and scanned.warnings == []
    assert graph_requests(scanned) == graph_requests(unscanned) + 1  # one listing of created applications
    assert {api: c for api, c in scanned.requests.items() if api != "graph"} == {
        api: c for api, c in unscanned.requests.items() if api != "graph"
    }
    assert app.peer.messages("reconcile") == []


async def test_the_setting_off_finds_no_orphan_of_a_deleted_row(
    app: App, table_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await a_config_deleted_by_hand(app, table_settings)
    monkeypatch.setenv("WIF_SWEEP_FIND_ORPHANS", "False")
    await app_context.reset()
    report = await (await app.service()).sweep()
    assert (report.orphans, report.problems, app.peer.messages("reconcile")) == (0, [], [])


async def test_an_unreadable_row_skips_the_scan_and_says_why(
    app: App, table_settings: dict[str, str]
) -> None:
    application = await a_config_deleted_by_hand(app, table_settings, Document="{not json")
    report = await (await app.service()).sweep()
    assert report.invalid_rows == 1 and report.orphans == 0  # its application is not called orphaned
    assert report.problems == [
        "orphans are not reported: 1 config or status row(s) could not be read, and the applications "
        "they name would be called orphaned"
    ]
    assert app.peer.messages("reconcile") == []
    assert what_the_orphan_left(app, application)["credentials"] == 1


async def test_a_wrong_setting_is_one_line_and_the_timer_returns(
    app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WIF_SWEEP_FIND_ORPHANS", "sometimes")
    await app_context.reset()
    await sweep()
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "WIF_SWEEP_FIND_ORPHANS: expected true or false, got 'sometimes'" in error.getMessage()
