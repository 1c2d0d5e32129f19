"""Table rows edited by hand (or by an older version): a bad row fails only what it belongs to,
never the sweep, a reconcile message or an HTTP call, and no value in it reaches a cloud unparsed."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest
from azure.data.tables import TableClient, UpdateMode
from azure.functions.timer import TimerRequest

import function_app
from reconciler.state.tables import CLAIMS_TABLE, REQUESTS_TABLE, STATUS_TABLE, request_partition
from tests.security.conftest import Host, config, ticket

CONFIG_ID = "contoso/payments/kv-reader"
ROUTE_ID = "contoso~payments~kv-reader"


async def reconciled(host: Host) -> None:
    """A config applied through the triggers: its status and request rows exist."""
    await host.deliver(ticket("ROWS-1", config=config(host.sim.tenant_id)))
    assert await host.deliver_reconciles() == 1
    status = await (await host.service()).status(CONFIG_ID)
    assert status is not None and status.applied_application


def edit(table_settings: dict[str, str], table: str, partition: str, row: str, **fields: Any) -> None:
    with TableClient.from_connection_string(table_settings["WIF_TABLE_CONNECTION_STRING"], table) as client:
        client.update_entity({"PartitionKey": partition, "RowKey": row, **fields}, mode=UpdateMode.MERGE)


def get(route: str, **params: str) -> func.HttpRequest:
    return func.HttpRequest("GET", f"/api/{route}", body=b"", route_params=params)


BAD_STATUS = {
    "a generation that is no number": {"ObservedGeneration": "abc"},
    "a retry time that is no number": {"RetryAfter": "soon"},
    "a retry time that is not finite": {"RetryAfter": float("nan")},
    "an applied application that is no GUID": {"AppliedApplication": "../../applications/x"},
    "an applied application in braces": {"AppliedApplication": "{00000000-0000-0000-0000-000000000001}"},
}


@pytest.mark.parametrize("fields", BAD_STATUS.values(), ids=list(BAD_STATUS))
async def test_a_hand_edited_status_row_fails_no_sweep_reconcile_or_http_call(
    host: Host, table_settings: dict[str, str], fields: dict[str, Any]
) -> None:
    await reconciled(host)
    edit(table_settings, STATUS_TABLE, "contoso", ROUTE_ID, **fields)
    clouds_before = await host.cloud_state()

    # The sweep never raises; the row is counted as unreadable, and replaced by a good one. Its only
    # problem is the orphan scan it skips (the row's last-applied application is unknown).
    report = await (await host.service()).sweep()
    assert report.invalid_rows == 1, report
    assert [p.split(":")[0] for p in report.problems] == ["orphans are not reported"], report
    edit(table_settings, STATUS_TABLE, "contoso", ROUTE_ID, **fields)
    await function_app.drift_sweep(TimerRequest(past_due=False))

    # A reconcile of the config runs and converges: the row reads as no status, so nothing of the
    # hand-written application id is acted on.
    edit(table_settings, STATUS_TABLE, "contoso", ROUTE_ID, **fields)
    await host.deliver(ticket("ROWS-2", "reconcile", configId=CONFIG_ID))
    assert await host.deliver_reconciles() == 1
    assert await host.cloud_state() == clouds_before
    status = await (await host.service()).status(CONFIG_ID)
    assert status is not None and str(status.phase) == "converged"  # the pass wrote a good row again

    edit(table_settings, STATUS_TABLE, "contoso", ROUTE_ID, **fields)
    response = await function_app.http_status(get(f"configs/{ROUTE_ID}/status", config_id=ROUTE_ID))
    assert response.status_code == 500, response.get_body()
    problem = json.loads(response.get_body())
    assert problem["title"] == "Unreadable row" and next(iter(fields)) in problem["detail"]
    assert b"Traceback" not in response.get_body()


BAD_REQUEST_ROWS = {
    "changes that are not JSON": {"Changes": "[not json"},
    "an outcome that is not one": {"Outcome": "approved-by-mallory"},
}


@pytest.mark.parametrize("fields", BAD_REQUEST_ROWS.values(), ids=list(BAD_REQUEST_ROWS))
async def test_a_hand_edited_request_row_fails_no_redelivery_or_http_call(
    host: Host, table_settings: dict[str, str], fields: dict[str, Any]
) -> None:
    await reconciled(host)
    edit(table_settings, REQUESTS_TABLE, request_partition("ROWS-1"), "ROWS-1", **fields)

    response = await function_app.http_request(get("requests/ROWS-1", request_id="ROWS-1"))
    assert response.status_code == 500 and b"not a valid" in response.get_body(), response.get_body()

    assert json.loads(response.get_body())["title"] == "Unreadable row"

    # The same ticket delivered again: completed (not redelivered until it is dead-lettered), and
    # nothing done again, since whether it was applied cannot be read.
    await host.deliver(ticket("ROWS-1", config=config(host.sim.tenant_id)))
    assert host.settled()
    assert await host.deliver_reconciles() == 0


async def test_a_hand_edited_claim_row_fails_its_configs_not_the_reconcile_message(
    host: Host, table_settings: dict[str, str]
) -> None:
    """A claim says which project an application belongs to: unreadable, the pass must not guess
    (fail closed), but the message is completed and the configs say why, instead of a traceback
    and ten redeliveries into the dead-letter queue."""
    await reconciled(host)
    connection = table_settings["WIF_TABLE_CONNECTION_STRING"]
    with TableClient.from_connection_string(connection, CLAIMS_TABLE) as claims:
        for row in list(claims.list_entities()):
            claims.update_entity(
                {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"], "Project": 7},
                mode=UpdateMode.MERGE,
            )
    clouds_before = await host.cloud_state()

    await host.deliver(ticket("ROWS-3", "reconcile", configId=CONFIG_ID))
    assert await host.deliver_reconciles() == 1  # returned: the message is completed
    assert await host.cloud_state() == clouds_before
    status = await (await host.service()).status(CONFIG_ID)
    assert status is not None and str(status.phase) == "failed-permanent"
    assert CLAIMS_TABLE in status.last_error and "Organization/Project" in status.last_error
    assert status.applied_application  # still known: what the config left is not forgotten
    record = await (await host.service()).request("ROWS-3")
    assert record is not None and record.outcome == "failed" and CLAIMS_TABLE in record.reason
