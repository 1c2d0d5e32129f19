"""Hostile and malformed ticket messages: parse_ticket never crashes, never lets one through.

The only outcomes are a Ticket that is valid and allowed by the policy, or TicketRejected
with a reason. Any other exception is a bug in the handler.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core.validation import Document, parse_config
from reconciler.state.tickets import MAX_TICKET_BYTES, Ticket, TicketRejected, parse_ticket
from tests.tickets.tickets_data import POLICY, SUBSCRIPTION, by_id, upsert

HOSTILE = [
    "'; DROP TABLE configs; --",
    "$(rm -rf /)",
    "`id`",
    "../../etc/passwd",
    "..\\..\\windows\\system32",
    "<script>alert(1)</script>",
    "' or 1 eq 1",
    "PartitionKey eq 'contoso' or true",
    "%00",
    "\x00",
    "\u202e\u0644\u0627",
    "\ud83d\ude00" * 10,
    "A" * 300,
    "",
    " ",
    "\n",
    "kv-reader\n",
    "{{7*7}}",
    "${jndi:ldap://x}",
]
ROLES = [
    "Owner",
    "User Access Administrator",
    "Role Based Access Control Administrator",
    "Contributor",
    "Key Vault Reader",
    "Reader",
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "not a role",
]
SCOPES = [
    "/",
    f"/subscriptions/{SUBSCRIPTION}",
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-pay",
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-pay/../../",
    "/providers/Microsoft.Management/managementGroups/root",
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/*",
]
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars | st.sampled_from(HOSTILE),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
valid_tickets = st.sampled_from([upsert(), by_id("delete"), by_id("reconcile")])


def check(body: bytes | str) -> Ticket | None:
    """Run the handler's validation and check the one promise it makes."""
    try:
        ticket = parse_ticket(body, POLICY)
    except TicketRejected as rejection:
        assert rejection.reason.strip()
        assert all(isinstance(p, str) for p in rejection.problems)
        return None
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", ticket.request_id)
    assert ticket.requested_by and not any(ord(c) < 32 for c in ticket.requested_by)
    assert ticket.config_id is not None
    assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*", ticket.config_id)
    if ticket.action == "upsert":
        assert ticket.config is not None and ticket.config_document is not None
        assert POLICY.check(ticket.config) == []
        again, problems = parse_config(Document("again", 1, ticket.config_document))
        assert again == ticket.config and problems == []
        # json round trip: what is stored must be storable
        json.dumps(ticket.config_document, allow_nan=False).encode()
    else:
        assert ticket.config is None and ticket.config_document is None
    return ticket


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a ticket (dict keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(paths(child, (*prefix, index)))
    return found


def replace_at(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    result = copy.deepcopy(value)
    target = result
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return result


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(body: bytes) -> None:
    assert check(body) is None


@FUZZ
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    check(json.dumps(value))


@FUZZ
@given(valid_tickets, st.data())
def test_any_field_replaced_by_anything(ticket: dict[str, Any], data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(paths(ticket)))
    new = data.draw(json_values | st.sampled_from(HOSTILE))
    check(json.dumps(replace_at(ticket, path, new)))


@FUZZ
@given(valid_tickets, st.data())
def test_injection_strings_in_every_string_field(ticket: dict[str, Any], data: st.DataObject) -> None:
    string_paths = [p for p in paths(ticket) if isinstance(_get(ticket, p), str)]
    path = data.draw(st.sampled_from(string_paths))
    hostile = data.draw(st.sampled_from(HOSTILE))
    where = data.draw(st.sampled_from(["replace", "append", "prepend"]))
    old = _get(ticket, path)
    new = {"replace": hostile, "append": old + hostile, "prepend": hostile + old}[where]
    accepted = check(json.dumps(replace_at(ticket, path, new)))
    if accepted is not None and path[0] in {"requestId", "configId"}:
        assert accepted.request_id == _get(ticket, ("requestId",)) or path[0] == "requestId"


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(ROLES), st.sampled_from(SCOPES)), min_size=1, max_size=4))
def test_roles_and_scopes_are_allowed_only_by_the_policy(grants: list[tuple[str, str]]) -> None:
    ticket = upsert()
    ticket["config"]["roleAssignments"] = [{"role": r, "scope": s} for r, s in grants]
    accepted = check(json.dumps(ticket))
    privileged = {
        "Owner",
        "User Access Administrator",
        "Role Based Access Control Administrator",
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    }
    if any(role in privileged for role, _ in grants):
        assert accepted is None


@FUZZ
@given(
    valid_tickets, st.text(min_size=1, max_size=20), json_values, st.sampled_from(["top", "config", "nested"])
)
def test_unknown_fields_are_rejected(ticket: dict[str, Any], key: str, value: Any, where: str) -> None:
    target = ticket
    if where != "top" and "config" in ticket:
        target = ticket["config"] if where == "config" else ticket["config"]["serviceConnection"]
    if key in target:
        return
    target[key] = value
    assert check(json.dumps(ticket)) is None


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=9, max_value=40_000), st.sampled_from(["[", '{"a":']))
def test_deep_nesting(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    body = '{"schemaVersion": 1, "x": ' + opener * depth + "1" + closer * depth + "}"
    assert check(body) is None


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=MAX_TICKET_BYTES - 100, max_value=4 * MAX_TICKET_BYTES))
def test_huge_bodies(size: int) -> None:
    ticket = upsert(requestedBy="x" * size)
    assert check(json.dumps(ticket)) is None


@FUZZ
@given(valid_tickets, st.data())
def test_duplicate_keys_and_non_finite_numbers(ticket: dict[str, Any], data: st.DataObject) -> None:
    text = json.dumps(ticket)
    key = data.draw(st.sampled_from(list(ticket)))
    constant = data.draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", '"dup"']))
    text = text[:-1] + f', "{key}": {constant}' + "}"
    assert check(text) is None


@FUZZ
@given(valid_tickets, st.text(min_size=1, max_size=40))
def test_unicode_in_identifiers(ticket: dict[str, Any], text: str) -> None:
    for field in ("requestId", "requestedBy", "configId"):
        if field in ticket:
            check(json.dumps({**ticket, field: text}))
            check(json.dumps({**ticket, field: text}, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value
