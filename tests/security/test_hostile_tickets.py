"""Hostile ticket bodies through the `requests` trigger as the host runs it (Azurite, the Service Bus
peer, the simulator): the handler never raises, so the message is completed and never redelivered;
every rejection is recorded with its reason, under the ticket's own id when it is a valid one and
under a key derived from the body (`rejection_key`) when it is not; a rejected ticket writes no
desired state, sends no reconcile and so changes nothing in the clouds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings

from cloudsim.testing import SAMPLE_SUBSCRIPTION
from reconciler.state.configs import ConfigRecord
from reconciler.state.tickets import Ticket, TicketRejected, parse_ticket, rejection_key
from tests.security.conftest import Host, config, ticket
from tests.security.hostile import BOM, REQUEST_ID, hostile_bodies
from tests.tickets.tickets_data import POLICY

NO_SOURCES_POLICY = """apiVersion: wif-reconciler/v1
kind: GrantPolicy
organizations: [contoso, fabrikam]
roles: [Key Vault Reader]
scopes: [/subscriptions/*/resourceGroups/*]
"""


async def desired_state(host: Host) -> list[tuple[str, int, bool]]:
    rows: list[ConfigRecord] = [r async for r in (await host.service())._stores.configs.list_all()]
    return sorted((r.config.id, r.generation, r.deleted) for r in rows)


async def assert_rejected(host: Host, body: bytes, key: str, reason: str) -> None:
    """Deliver `body` and check the end state of a rejection."""
    desired_before, clouds_before = await desired_state(host), await host.cloud_state()
    await host.deliver(body)
    assert host.settled(), "the message was not completed"
    record = await (await host.service()).request(key)
    assert record is not None, f"no record under {key!r}"
    assert record.outcome == "rejected" and reason in record.reason, record.reason
    assert len(record.reason) < 10_000
    assert await host.deliver_reconciles() == 0
    assert await desired_state(host) == desired_before
    assert await host.cloud_state() == clouds_before


def message(request_id: Any = "HOSTILE-1", **fields: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 1,
        "requestId": request_id,
        "action": "delete",
        "requestedBy": "mallory",
        "source": "servicenow",
        "configId": "contoso/payments/kv-reader",
        **fields,
    }


def body_of(value: Any) -> bytes:
    return json.dumps(value).encode()


SCHEMA = "does not match the ticket schema"
NOT_IDS = {
    "non-ASCII": ("CHG-\u00e9", SCHEMA),
    "full-width confusable": ("\uff23\uff28\uff27\uff11", SCHEMA),
    "newline at the end": ("CHG1\n", SCHEMA),
    "NUL": ("CHG\x001", SCHEMA),
    "overlong": ("A" * 129, SCHEMA),
    "lone surrogate": ("\ud800", "not UTF-8 text"),
    "not a string": (12345, SCHEMA),
}


@pytest.mark.parametrize(("request_id", "reason"), NOT_IDS.values(), ids=NOT_IDS.keys())
async def test_a_request_id_that_is_not_one_is_recorded_under_a_key_derived_from_the_body(
    host: Host, request_id: Any, reason: str
) -> None:
    body = body_of(message(request_id))
    await assert_rejected(host, body, rejection_key(body), reason)


BAD_BODIES = {
    "nested 50,000 deep": (b'{"schemaVersion": 1, "x": ' + b"[" * 50_000, "nested too deeply"),
    "nested objects": (b'{"a":' * 100 + b"1" + b"}" * 100, "nested too deeply"),
    "duplicate key": (b'{"requestId": "X", ' + body_of(message())[1:], "duplicate key"),
    "NaN": (body_of(message()).replace(b'"schemaVersion": 1', b'"schemaVersion": NaN'), "not valid JSON"),
    "Infinity": (
        body_of(message()).replace(b'"schemaVersion": 1', b'"schemaVersion": -Infinity'),
        "not valid",
    ),
    "float overflow": (
        body_of(message()).replace(b'"schemaVersion": 1', b'"schemaVersion": 1e400'),
        "not valid",
    ),
    "huge integer": (
        body_of(message()).replace(b'"schemaVersion": 1', b'"schemaVersion": ' + b"9" * 4000),
        "not valid",
    ),
    "escaped lone surrogate": (body_of(message(requestedBy="\ud800")), "not UTF-8 text"),
    "raw surrogate bytes": (body_of(message()).replace(b"mallory", b"\xed\xa0\x80"), "not UTF-8 text"),
    "Latin-1": (body_of(message()).replace(b"mallory", b"m\xe9"), "not UTF-8 text"),
    "BOM and garbage": (BOM + b"\x00\x01", "not valid JSON"),
    "larger than 64 KiB": (body_of(message(padding="x" * 70_000)), "larger than"),
    "not an object": (b"[1, 2, 3]", "not a JSON object"),
    "empty": (b"", "not valid JSON"),
}


@pytest.mark.parametrize(("body", "reason"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_a_body_that_cannot_be_parsed_is_recorded_and_completed(
    host: Host, body: bytes, reason: str
) -> None:
    await assert_rejected(host, body, rejection_key(body), reason)


async def test_a_valid_id_in_a_rejected_ticket_is_the_key(host: Host) -> None:
    body = body_of(message("CHG-VALID", action="launch"))
    await assert_rejected(host, body, "CHG-VALID", "does not match the ticket schema")


async def test_a_bom_is_harmless(host: Host) -> None:
    await host.deliver(BOM + ticket("BOM-1", config=config(host.sim.tenant_id)))
    record = await (await host.service()).request("BOM-1")
    assert record is not None and record.outcome == "accepted" and host.settled()


def too_large_for_a_row(tenant_id: str) -> bytes:
    """A valid, allowed upsert under 64 KiB whose config is too large for one table property (64 KiB
    as UTF-16): 1,000 pipeline ids of 10 digits (ADO's are Int32s), 50 role assignments on resources
    with names of 260 characters (ARM's longest), a subscription name of 256."""
    vaults = f"/subscriptions/{SAMPLE_SUBSCRIPTION}/resourceGroups/rg-pay/providers/Microsoft.KeyVault/vaults"
    grants = [{"role": "Key Vault Reader", "scope": f"{vaults}/{n:02d}{'v' * 258}"} for n in range(50)]
    pipelines = [2_000_000_000 + n for n in range(1000)]
    connection = {"name": "kv-reader", "subscriptionId": SAMPLE_SUBSCRIPTION, "subscriptionName": "P" * 256}
    big = config(tenant_id, roleAssignments=grants, serviceConnection={**connection, "pipelines": pipelines})
    return ticket("ROW-1", config=big)


async def test_a_config_too_large_for_a_table_row_is_recorded_as_rejected(host: Host) -> None:
    body = too_large_for_a_row(host.sim.tenant_id)
    assert len(body) <= 64 * 1024
    parsed = parse_ticket(body, POLICY)  # valid and allowed: only the store can refuse it
    assert isinstance(parsed, Ticket)
    await assert_rejected(host, body, "ROW-1", "too large to store")


async def test_an_id_stored_under_another_organization_is_recorded_as_rejected(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    await host.use_policy(NO_SOURCES_POLICY, monkeypatch)
    first = config(host.sim.tenant_id, id="shared/kv-reader")
    await host.deliver(ticket("ORG-1", config=first))
    record = await (await host.service()).request("ORG-1")
    assert record is not None and record.outcome == "accepted"
    host.peer.reset()
    second = config(host.sim.tenant_id, organization="fabrikam", project="storefront", id="shared/kv-reader")
    await assert_rejected(
        host, ticket("ORG-2", config=second), "ORG-2", "is stored under organization 'contoso'"
    )


async def test_a_delete_of_a_config_that_does_not_exist_is_recorded_as_rejected(host: Host) -> None:
    await assert_rejected(host, ticket("GONE-1", "delete", configId="contoso/none/x"), "GONE-1", "no config")


def expected_key(body: bytes) -> tuple[str, bool]:
    """Where the handler must record `body`, and whether it is a valid, allowed ticket."""
    try:
        return parse_ticket(body, POLICY).request_id, True
    except TicketRejected as rejected:
        return rejected.request_id or rejection_key(body), False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=hostile_bodies)
async def test_no_hostile_body_crashes_the_handler_or_goes_unrecorded(host: Host, body: bytes) -> None:
    key, valid = expected_key(body)
    assert REQUEST_ID.fullmatch(key), key  # always a safe table key
    assert key == rejection_key(body) or key.encode() in body  # the ticket's own id, or the derived key
    desired_before = await desired_state(host)
    await host.deliver(body)  # raises if the trigger raises: the message would be redelivered
    assert host.settled()
    record = await (await host.service()).request(key)
    assert record is not None and record.reason, key
    event(record.outcome)
    if valid:
        assert record.outcome in {"accepted", "rejected"}  # rejected: a delete of a missing config
    else:
        assert record.outcome == "rejected"
    if record.outcome == "rejected":
        assert host.peer.messages("reconcile") == []
        assert await desired_state(host) == desired_before
    host.peer.reset()


AUDIT_SPOOFS = {
    "a line separator that forges a log line": "jane\u2028ticket CHG-9: accepted (reconcile queued)",
    "a next-line control (C1)": "jane\x85ticket CHG-9: accepted",
    "a right-to-left override": "jane\u202emoc.osotnoc@nimda",
    "a zero-width space": "ja\u200bne@contoso.com",
    "only a space": " ",
    "a fullwidth look-alike": "\uff4aane@contoso.com",
}


@pytest.mark.parametrize("requested_by", AUDIT_SPOOFS.values(), ids=list(AUDIT_SPOOFS))
async def test_a_requested_by_that_spoofs_the_audit_trail_is_recorded_as_rejected(
    host: Host, requested_by: str
) -> None:
    """`requestedBy` is the audit trail's "who": before, only C0 controls were refused, so a line
    separator, a C1 control, a bidi override or an invisible character made the record (and the
    log lines that quote it) read as something else. Now it obeys the Unicode checks of names."""
    body = body_of(message("AUDIT-1", requestedBy=requested_by))
    await assert_rejected(host, body, "AUDIT-1", "requestedBy")


def test_an_ordinary_requested_by_is_still_accepted() -> None:
    for number, name in enumerate(["José Müller <jose@contoso.com>", "pipeline-bot", "Łukasz Żółw"]):
        parsed = parse_ticket(body_of(message(f"AUDIT-OK-{number}", requestedBy=name)), POLICY)
        assert parsed.requested_by == name
