"""Ticket requests from the `requests` queue: parse, validate and check them against the policy.

A ticket comes from outside (ServiceNow, Jira, scripts), so every byte of it is hostile until
proven otherwise. The checks run cheapest first and each one protects the next: the size
before decoding, the nesting depth before `json.loads` (whose C parser recurses), the JSON
Schema before the core reads fields, and the grant policy last. Nothing here writes
anywhere: the caller records the outcome.

The schema is published in `schemas/ticket-request.v1.schema.json` and documented in
`docs/tickets.md`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft202012Validator, ValidationError

from reconciler.core.identifiers import ConfigId, RequesterName, RequestId
from reconciler.core.model import FederationConfig
from reconciler.core.policy import SOURCE_NAME, GrantPolicy
from reconciler.core.validation import API_VERSION, CONFIG_KIND, Document, parse_config
from reconciler.documents import DuplicateKey, NotText, json_nesting_depth, strict_json_loads

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "ticket-request.v1.schema.json"
MAX_TICKET_BYTES = 64 * 1024  # a config is about 1 KB; anything near this is not a ticket
MAX_DEPTH = 8  # the deepest a valid ticket goes is 5 (ticket > config > roleAssignments > [] > {})
MAX_PROBLEMS = 20  # enough to fix a ticket; a hostile one must not make the record huge

Action = Literal["upsert", "delete", "reconcile"]

# JSON Schema patterns are searched with `re.search`, where `$` also matches before a trailing
# newline, so the identifiers that travel further (keys, markers, logs) are parsed again here
# by their one rule (reconciler/core/identifiers.py).


class TicketRejected(ValueError):
    """The ticket can never be applied as sent: retrying cannot help, so it is recorded and completed.

    `request_id` is the ticket's own id when it is a valid one, else None: see `rejection_key`.
    """

    def __init__(self, reason: str, problems: list[str] | None = None) -> None:
        self.reason = reason
        self.problems = [_short(p) for p in (problems or [])[:MAX_PROBLEMS]]
        self.request_id: str | None = None
        super().__init__("; ".join([reason, *self.problems]))


def rejection_key(body: bytes) -> str:
    """Where a ticket without a usable request id is recorded: a key derived from its bytes.

    A request id that is not one (non-ASCII, control characters, too long, not a string) cannot
    be a table key, and a message that is not JSON has none. The key is stable, so a
    redelivered message finds its first record.
    """
    return "invalid-" + hashlib.sha256(body).hexdigest()[:32]


@dataclass(frozen=True)
class Ticket:
    request_id: str
    action: Action
    requested_by: str
    source: str | None = None  # the ticketing system, as the sender says (see ticketSources)
    config: FederationConfig | None = None  # upsert only
    config_document: dict[str, Any] | None = None  # upsert only: the config as sent, to store
    config_id: str | None = None  # delete and reconcile: as sent; upsert: the validated config's id


def parse_ticket(body: bytes | str, policy: GrantPolicy) -> Ticket:
    """The valid, allowed ticket in `body`, or TicketRejected saying why not."""
    message = _decode_json(body)
    request_id = message.get("requestId")
    try:
        return _parse_message(message, policy)
    except TicketRejected as rejected:
        if isinstance(request_id, str) and RequestId.is_valid(request_id):
            rejected.request_id = request_id
        raise


def _parse_message(message: dict[str, Any], policy: GrantPolicy) -> Ticket:
    version = message.get("schemaVersion")
    # `True == 1` in Python, hence the type check.
    if type(version) is not int or version != SCHEMA_VERSION:
        raise TicketRejected(
            "unsupported schema version", [f"schemaVersion: expected {SCHEMA_VERSION}, got {version!r}"]
        )
    schema_problems = [
        _describe(error)
        for error in sorted(_validator().iter_errors(message), key=lambda e: [str(p) for p in e.path])
    ]
    request_id = message.get("requestId")
    if isinstance(request_id, str) and not RequestId.is_valid(request_id):
        schema_problems.append(f"$.requestId: expected {RequestId.what}")
    config_id = message.get("configId")
    if isinstance(config_id, str) and not ConfigId.is_valid(config_id):
        schema_problems.append(f"$.configId: expected {ConfigId.what}")
    requested_by = message.get("requestedBy")
    if isinstance(requested_by, str) and not RequesterName.is_valid(requested_by):
        schema_problems.append(f"$.requestedBy: expected {RequesterName.what}")
    source = message.get("source")
    if isinstance(source, str) and not SOURCE_NAME.fullmatch(source):
        schema_problems.append("$.source: expected 1-64 lower-case letters, digits and '-'")
    if schema_problems:
        raise TicketRejected("the message does not match the ticket schema", schema_problems)
    ticket = Ticket(
        request_id=str(RequestId(message["requestId"], "requestId")),
        action=message["action"],
        requested_by=message["requestedBy"],
        source=source,
        config_id=None if config_id is None else str(ConfigId(config_id, "configId")),
    )
    if ticket.action != "upsert":
        return ticket
    return _with_config(ticket, message["config"], policy)


def _with_config(ticket: Ticket, document: dict[str, Any], policy: GrantPolicy) -> Ticket:
    # The ticket's config may leave out apiVersion and kind: the schema version says what it is.
    body = {"apiVersion": API_VERSION, "kind": CONFIG_KIND, **document}
    config, problems = parse_config(Document(f"ticket {ticket.request_id}", 1, body))
    if config is None:
        raise TicketRejected("the config is not valid", [str(p) for p in problems])
    violations = policy.check(config) + policy.check_sender(config, ticket.source)
    if violations:
        # check and check_sender both test the organization: report it once.
        unique = list(dict.fromkeys(str(v) for v in violations))
        raise TicketRejected("the config violates the grant policy", unique)
    return Ticket(
        request_id=ticket.request_id,
        action=ticket.action,
        requested_by=ticket.requested_by,
        source=ticket.source,
        config=config,
        config_document=body,
        config_id=config.id,
    )


def _decode_json(body: bytes | str) -> dict[str, Any]:
    # Measure before decoding: a str is checked by its encoded size, as it travelled.
    if isinstance(body, str):
        if len(body) > MAX_TICKET_BYTES:
            raise TicketRejected(f"the message is larger than {MAX_TICKET_BYTES} bytes")
        try:
            data = body.encode("utf-8")
        except UnicodeEncodeError as error:  # lone surrogates
            raise TicketRejected("the message is not UTF-8 text", [str(error.reason)]) from error
    else:
        data = bytes(body)
    if len(data) > MAX_TICKET_BYTES:
        raise TicketRejected(f"the message is larger than {MAX_TICKET_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise TicketRejected(
            "the message is not UTF-8 text", [f"{error.reason} at byte {error.start}"]
        ) from error
    depth = json_nesting_depth(data)
    if depth > MAX_DEPTH:
        raise TicketRejected(
            "the message is nested too deeply", [f"nesting depth {depth}, at most {MAX_DEPTH} allowed"]
        )
    try:
        message = strict_json_loads(text)
    except DuplicateKey as error:
        raise TicketRejected(
            "the message has a duplicate key", [f"key {_short(error.key, 100)!r} appears twice"]
        ) from error
    except NotText as error:
        raise TicketRejected("the message is not UTF-8 text", [str(error)]) from error
    except (ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
        raise TicketRejected("the message is not valid JSON", [_short(str(error))]) from error
    if not isinstance(message, dict):
        raise TicketRejected("the message is not a JSON object", [f"got {type(message).__name__}"])
    return message


def _describe(error: ValidationError) -> str:
    if error.validator == "not":  # the if/then/else on the action: which of config/configId goes
        return "$: upsert takes `config`, delete and reconcile take `configId` (not both)"
    return f"{error.json_path}: {_short(error.message)}"


def _short(text: str, limit: int = 300) -> str:
    # Schema messages quote the offending value, which may be 60 KB of attacker's text.
    return text if len(text) <= limit else text[: limit - 3] + "..."


@cache
def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)
