"""Hostile and malformed ticket messages thrown at the request handler itself, with the tables in
Azurite and the queues on the Service Bus peer: it never crashes, a rejected ticket writes no
desired state and sends no reconcile, and an accepted one was valid and allowed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reconciler.app.service import ReconcilerService
from reconciler.state.queues import Queues
from reconciler.state.stores import open_stores
from reconciler.state.tickets import TicketRejected, parse_ticket
from servicebus_peer import ServiceBusPeer
from tests.tickets.test_tickets_fuzz import HOSTILE, json_values, paths, replace_at, valid_tickets
from tests.tickets.tickets_data import POLICY, encode


@pytest.fixture
async def service(
    table_settings: dict[str, str], servicebus_peer: ServiceBusPeer
) -> AsyncIterator[ReconcilerService]:
    stores = await open_stores(table_settings, None)
    queues = Queues.from_settings({"ServiceBusConnection": servicebus_peer.connection_string})

    def no_engine() -> Any:
        raise AssertionError("the request handler must not reconcile itself")

    try:
        yield ReconcilerService(stores, queues, POLICY, no_engine)
    finally:
        await queues.close()
        await stores.close()


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.builds(
        lambda ticket, value, choice: encode(
            replace_at(ticket, paths(ticket)[choice % len(paths(ticket))], value)
        ),
        valid_tickets,
        json_values | st.sampled_from(HOSTILE),
        st.integers(min_value=0, max_value=1000),
    ),
    st.builds(
        lambda ticket, n: encode({**ticket, "requestId": f"CHG{n}"}), valid_tickets, st.integers(0, 10**6)
    ),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
async def test_the_handler_rejects_or_accepts_correctly_and_never_crashes(
    service: ReconcilerService, servicebus_peer: ServiceBusPeer, body: bytes
) -> None:
    before = len(servicebus_peer.messages("reconcile"))
    try:
        parse_ticket(body, POLICY)
        valid = True
    except TicketRejected:
        valid = False
    outcome = await service.handle_ticket(body)
    event(outcome.outcome)
    sent = len(servicebus_peer.messages("reconcile")) - before
    assert outcome.reason, outcome
    if not valid:
        assert outcome.outcome == "rejected"
        assert sent == 0
    else:
        assert outcome.outcome in {
            "accepted",
            "rejected",
            "duplicate",
        }  # delete/reconcile of a missing config
        assert sent == (1 if outcome.outcome == "accepted" else 0)
    record = await service.request(outcome.request_id)
    assert record is not None and record.outcome in {"accepted", "rejected"}
