"""One example per rule of parse_ticket: what is accepted, and why each rejection happens."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from reconciler.state.queues import parse_reconcile_message
from reconciler.state.tickets import MAX_TICKET_BYTES, SCHEMA_PATH, TicketRejected, parse_ticket
from tests.tickets.tickets_data import APP_ID, CONFIG, POLICY, SUBSCRIPTION, by_id, encode, upsert


def rejected(body: bytes | str) -> TicketRejected:
    with pytest.raises(TicketRejected) as caught:
        parse_ticket(body, POLICY)
    assert caught.value.reason
    return caught.value


def test_an_upsert_carries_the_validated_config_and_the_document_to_store() -> None:
    ticket = parse_ticket(encode(upsert()), POLICY)
    assert (ticket.request_id, ticket.action, ticket.requested_by) == (
        "CHG0012345",
        "upsert",
        "jane@contoso.com",
    )
    assert ticket.config is not None
    assert ticket.config_id == ticket.config.id == "contoso/payments/kv-reader"
    assert ticket.config.application.app_id == APP_ID
    assert ticket.config_document == {"apiVersion": "wif-reconciler/v1", "kind": "FederationConfig", **CONFIG}


def test_apiversion_and_kind_may_be_given_in_the_config() -> None:
    ticket = upsert()
    ticket["config"].update(apiVersion="wif-reconciler/v1", kind="FederationConfig")
    assert parse_ticket(json.dumps(ticket), POLICY).config is not None


@pytest.mark.parametrize("action", ["delete", "reconcile"])
def test_delete_and_reconcile_name_a_config_id(action: str) -> None:
    ticket = parse_ticket(encode(by_id(action)), POLICY)
    assert (ticket.request_id, ticket.action, ticket.config_id) == (
        "CHG0012346",
        action,
        "contoso/payments/kv-reader",
    )
    assert (ticket.config, ticket.config_document) == (None, None)


def test_a_body_over_the_size_limit_is_rejected_before_parsing() -> None:
    huge = b"{" + b" " * MAX_TICKET_BYTES + b"}"
    assert "larger than" in rejected(huge).reason
    assert "larger than" in rejected(huge.decode()).reason


def test_not_utf8_not_json_and_not_an_object() -> None:
    assert rejected(b"\xff\xfe{}").reason == "the message is not UTF-8 text"
    assert rejected(b"{'schemaVersion': 1}").reason == "the message is not valid JSON"
    assert rejected(b"").reason == "the message is not valid JSON"
    assert rejected(b"[1, 2]").reason == "the message is not a JSON object"
    assert rejected('{"requestedBy": "\\ud800"}').reason == "the message is not UTF-8 text"


def test_deep_nesting_is_rejected_without_parsing() -> None:
    deep = "[" * 30_000 + "]" * 30_000
    error = rejected(deep)
    assert error.reason == "the message is nested too deeply"
    # brackets inside strings do not count
    assert parse_ticket(encode(upsert(requestedBy="[[[[[[[[[[[[ {{{{{{{{{{")), POLICY)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_not_json(constant: str) -> None:
    body = encode(upsert()).replace(b'"schemaVersion": 1', f'"schemaVersion": {constant}'.encode())
    assert rejected(body).reason == "the message is not valid JSON"


def test_duplicate_keys_are_ambiguous_and_rejected() -> None:
    body = encode(upsert()).replace(b'"action": "upsert"', b'"action": "reconcile", "action": "upsert"')
    error = rejected(body)
    assert (error.reason, error.problems) == (
        "the message has a duplicate key",
        ["key 'action' appears twice"],
    )


@pytest.mark.parametrize("version", [2, 0, "1", True, None, 1.5])
def test_only_schema_version_1_is_understood(version: Any) -> None:
    assert rejected(encode(upsert(schemaVersion=version))).reason == "unsupported schema version"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"requestId": ""}, "$.requestId"),
        ({"requestId": "CHG 1"}, "$.requestId"),
        ({"requestId": "x" * 129}, "$.requestId"),
        ({"requestId": "CHG1\n"}, "$.requestId"),  # `$` in a schema pattern allows a trailing newline
        ({"requestId": 12345}, "$.requestId"),
        ({"action": "create"}, "$.action"),
        ({"requestedBy": ""}, "$.requestedBy"),
        ({"requestedBy": "jane\r\nX-Injected: 1"}, "$.requestedBy"),
        ({"extra": 1}, "Additional properties are not allowed ('extra' was unexpected)"),
        ({"configId": "contoso/payments/kv-reader"}, "upsert takes `config`"),
    ],
)
def test_schema_violations_name_the_field(changes: dict[str, Any], problem: str) -> None:
    error = rejected(encode(upsert(**changes)))
    assert error.reason == "the message does not match the ticket schema"
    assert any(problem in p for p in error.problems), error.problems


def test_every_action_needs_its_own_target() -> None:
    missing_config = upsert()
    del missing_config["config"]
    assert any("upsert takes" in p or "'config'" in p for p in rejected(encode(missing_config)).problems)
    assert rejected(encode(by_id("delete", config_id="../../etc/passwd"))).problems
    assert rejected(encode(by_id("delete", config=CONFIG))).problems


def test_unknown_fields_in_the_config_are_rejected() -> None:
    ticket = upsert()
    ticket["config"]["serviceConnection"]["password"] = "hunter2"
    assert any("password" in p for p in rejected(encode(ticket)).problems)


def test_the_core_validation_runs_on_the_config() -> None:
    ticket = upsert()
    ticket["config"]["roleAssignments"] = [{"role": "Key Vault Reader", "scope": "/not/a/scope"}]
    error = rejected(encode(ticket))
    assert error.reason == "the config is not valid"
    assert error.problems[0].startswith("ticket CHG0012345, document 1, roleAssignments[0].scope:")


@pytest.mark.parametrize(
    ("role", "scope", "rule"),
    [
        ("Owner", f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-pay", "privileged-role"),
        ("User Access Administrator", f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg", "privileged-role"),
        ("Contributor", f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-pay", "role-not-allowed"),
        ("Reader", f"/subscriptions/{SUBSCRIPTION}", "scope-not-allowed"),
        (
            "00000000-0000-0000-0000-000000000001",
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/r",
            "role-not-classified",
        ),
    ],
)
def test_policy_violations_name_the_rule(role: str, scope: str, rule: str) -> None:
    ticket = upsert()
    ticket["config"]["roleAssignments"] = [{"role": role, "scope": scope}]
    error = rejected(encode(ticket))
    assert error.reason == "the config violates the grant policy"
    assert any(f"[{rule}]" in p for p in error.problems), error.problems


def test_an_organization_outside_the_policy_is_rejected() -> None:
    ticket = upsert()
    ticket["config"]["organization"] = "evil"
    assert any("[organization-not-allowed]" in p for p in rejected(encode(ticket)).problems)


def test_problems_are_capped_and_short() -> None:
    ticket = upsert(**{f"x{i}": "y" * 1000 for i in range(100)})
    error = rejected(encode(ticket))
    assert len(error.problems) <= 20
    assert all(len(p) <= 400 for p in error.problems)


def test_the_published_schema_is_draft_2020_12_and_matches_the_docs_examples() -> None:
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_the_examples_in_the_docs_are_valid() -> None:
    docs = (SCHEMA_PATH.parents[1] / "docs" / "tickets.md").read_text()
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", docs, re.DOTALL)]
    tickets = [e for e in examples if "action" in e]
    assert [parse_ticket(json.dumps(e), POLICY).action for e in tickets] == ["upsert", "delete", "reconcile"]
    [reconcile] = [e for e in examples if "apps" in e]
    assert parse_reconcile_message(json.dumps(reconcile)).reason == "sweep"
