"""Ownership that cannot be laundered, and one config per connection (issue 10, items 3 and 4).

Through the real ticket handler, Azurite, the Service Bus peer and the simulator; the end state is
read from the simulator.
"""

from __future__ import annotations

import asyncio

import pytest

from reconciler.core.model import marker_for
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

CONFIG = "contoso/payments/kv-reader"


@pytest.mark.parametrize(
    "description",
    [
        "",
        "deploys the payments API",
        # Near-markers: a description that merely starts with or contains one was not written by us.
        f"{marker_for(CONFIG)};made by hand",
        f" {marker_for(CONFIG)}",
        f"{marker_for(CONFIG)}\n",
        f"note: {marker_for(CONFIG)}",
        marker_for(CONFIG.upper()),
    ],
    ids=["empty", "text", "marker-and-more", "leading-space", "trailing-newline", "inside", "upper-case"],
)
async def test_a_hand_made_connection_survives_the_retirement_of_the_config_that_adopted_it(
    tenant: Tenant, description: str
) -> None:
    endpoint = tenant.hand_made_connection(
        "kv-reader", app_id=tenant.other_app["appId"], description=description
    )
    await tenant.send(tenant.ticket("CHG-ADOPT"))
    await tenant.deliver_reconciles()
    assert (await tenant.outcome("CHG-ADOPT"))[0] == "applied"
    (adopted,) = tenant.connections("payments")
    assert (
        adopted.id == endpoint.id and adopted.parameters["serviceprincipalid"] == tenant.victim_app["appId"]
    )
    assert adopted.description == description  # adopting writes nothing that reads as "created by us"

    await tenant.send(tenant.ticket("CHG-RETIRE", action="delete", config_id=CONFIG))
    await tenant.deliver_reconciles()
    assert (await tenant.outcome("CHG-RETIRE"))[0] == "applied"
    assert [e.id for e in tenant.connections("payments")] == [endpoint.id]  # never deleted
    assert tenant.credentials(tenant.victim_app["appId"]) == []  # what the reconciler created is gone


async def test_a_connection_the_reconciler_created_is_deleted_with_its_config(tenant: Tenant) -> None:
    await tenant.send(tenant.ticket("CHG-CREATE"))
    await tenant.deliver_reconciles()
    (created,) = tenant.connections("payments")
    assert created.description == marker_for(CONFIG)
    await tenant.send(tenant.ticket("CHG-RETIRE", action="delete", config_id=CONFIG))
    await tenant.deliver_reconciles()
    assert tenant.connections("payments") == []


async def test_a_config_moved_to_another_application_leaves_no_trust_on_the_old_one(tenant: Tenant) -> None:
    old, new = tenant.victim_app, tenant.other_app
    tenant.hand_over(new["appId"], "payments")
    await tenant.send(tenant.ticket("CHG-1"))
    await tenant.deliver_reconciles()
    (connection,) = tenant.connections("payments")
    assert (
        len(tenant.credentials(old["appId"])) == 1 and len(tenant.assignments(old["servicePrincipalId"])) == 1
    )

    await tenant.send(tenant.ticket("CHG-2", application={"appId": new["appId"]}))
    await tenant.deliver_reconciles()
    assert (await tenant.outcome("CHG-2"))[0] == "applied"
    subject = tenant.connections("payments")[0]
    assert subject.id == connection.id and subject.parameters["serviceprincipalid"] == new["appId"]
    assert tenant.credentials(old["appId"]) == []  # the old application no longer trusts the connection
    assert tenant.assignments(old["servicePrincipalId"]) == []
    assert (
        len(tenant.credentials(new["appId"])) == 1 and len(tenant.assignments(new["servicePrincipalId"])) == 1
    )
    status = await (await tenant.service()).status(CONFIG)
    assert status is not None and status.applied_application == new["appId"]


async def test_a_move_keeps_what_the_old_applications_other_configs_still_want(tenant: Tenant) -> None:
    old, new = tenant.victim_app, tenant.other_app
    tenant.hand_over(new["appId"], "payments")
    await tenant.send(tenant.ticket("CHG-1"))
    await tenant.send(tenant.ticket("CHG-2", name="kv-reader-staging"))  # same app, same role grant
    await tenant.deliver_reconciles()
    assert len(tenant.credentials(old["appId"])) == 2

    await tenant.send(tenant.ticket("CHG-3", application={"appId": new["appId"]}))
    await tenant.deliver_reconciles()
    (left,) = tenant.credentials(old["appId"])
    assert left.description == marker_for("contoso/payments/kv-reader-staging")
    assert len(tenant.assignments(old["servicePrincipalId"])) == 1  # the staging config still wants it


async def test_two_tickets_cannot_manage_one_connection_under_different_ids(tenant: Tenant) -> None:
    tenant.hand_over(tenant.other_app["appId"], "payments")
    first = tenant.ticket("CHG-A", config_id="payments/reader")
    # Another id, and the connection's name in other letter case: ADO compares names case-insensitively.
    second = tenant.ticket("CHG-B", name="KV-Reader", config_id="payments/hijack",
                           application={"appId": tenant.other_app["appId"]})  # fmt: skip
    await tenant.service()  # built before the race: context.py's lock is bound to the first loop that waits
    await asyncio.gather(tenant.send(first), tenant.send(second))
    outcomes = {rid: await tenant.outcome(rid) for rid in ("CHG-A", "CHG-B")}
    assert sorted(outcome for outcome, _ in outcomes.values()) == ["accepted", "rejected"]
    (rejected_reason,) = [reason for outcome, reason in outcomes.values() if outcome == "rejected"]
    assert "is managed by config" in rejected_reason
    await tenant.deliver_reconciles()
    (connection,) = tenant.connections("payments")
    winner = "CHG-A" if outcomes["CHG-A"][0] == "accepted" else "CHG-B"
    app = tenant.victim_app if winner == "CHG-A" else tenant.other_app
    assert connection.parameters["serviceprincipalid"] == app["appId"]
    await tenant.send(tenant.ticket("CHG-SWEEP", action="reconcile", config_id="payments/reader"))
    await tenant.deliver_reconciles()
    assert tenant.connections("payments")[0].parameters["serviceprincipalid"] == app["appId"]  # no flip
