"""The drift sweep as the timer runs it: one bulk dry run over the desired state, reconcile messages only
for drifted applications, status rows written only when they change, in table transactions. Table
writes are counted at the network boundary, from Azurite's access log."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest

import function_app
from cloudsim.faults import Faults
from cloudsim.testing import SAMPLE_SUBSCRIPTION
from tests.app.test_app_triggers import App, app, upsert_and_reconcile
from tests.azurite import TableRequests

__all__ = ["app"]

BATCH = ("POST", "/devstoreaccount1/$batch")
PAYMENTS = "contoso/payments/kv-reader"
BILLING = "contoso/payments/billing"


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
