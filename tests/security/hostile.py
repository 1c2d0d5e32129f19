"""Hypothesis strategies for hostile ticket bodies, and the worst shapes found for CPU.

Every body is bytes as it arrives on the queue. The valid tickets they start from carry a fresh
request id each (`HYP-<uuid>`), so examples never collide in the requests table.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import strategies as st

from reconciler.state.tickets import MAX_TICKET_BYTES

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
BOM = b"\xef\xbb\xbf"


def base_ticket(request_id: str, action: str) -> dict[str, Any]:
    ticket: dict[str, Any] = {
        "schemaVersion": 1,
        "requestId": request_id,
        "action": action,
        "requestedBy": "mallory@example.com",
        "source": "servicenow",
    }
    if action == "upsert":
        ticket["config"] = {
            "organization": "contoso",
            "project": "payments",
            "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "serviceConnection": {
                "name": "kv-reader",
                "subscriptionId": "6b1e2c5a-3f4d-4e8a-9c7b-1a2b3c4d5e6f",
                "subscriptionName": "Prod",
                "pipelines": [12, 15],
            },
            "application": {"displayName": "sc-contoso-payments-kv-reader", "create": True},
            "roleAssignments": [
                {
                    "role": "Key Vault Reader",
                    "scope": "/subscriptions/6b1e2c5a-3f4d-4e8a-9c7b-1a2b3c4d5e6f/resourceGroups/rg",
                }
            ],
        }
    else:
        ticket["configId"] = "contoso/payments/kv-reader"
    return ticket


tickets = st.builds(
    base_ticket,
    st.uuids().map(lambda u: f"HYP-{u}"),
    st.sampled_from(["upsert", "delete", "reconcile"]),
)

# Request ids that are not ids: non-ASCII, control characters, surrogates, too long, not strings.
bad_request_ids = st.one_of(
    st.text(min_size=1, max_size=40).filter(lambda s: not REQUEST_ID.fullmatch(s)),
    st.sampled_from(
        [
            "CHG\n",
            "CHG\x00",
            "CHG-é",
            "\uff23\uff28\uff27\uff11",  # the last: full-width CHG1, a confusable
            "\ud800",
            "CHG/../x",
            "",
            " ",
        ]
    ),
    st.integers(129, 5000).map(lambda n: "A" * n),
    st.one_of(st.integers(), st.none(), st.booleans(), st.lists(st.integers(), max_size=2)),
)


def with_request_id(ticket: dict[str, Any], request_id: Any, ascii_only: bool) -> bytes:
    text = json.dumps({**ticket, "requestId": request_id}, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")  # a raw surrogate becomes bytes that are not UTF-8


def nested(ticket: dict[str, Any], depth: int, opener: str) -> bytes:
    closer = {"[": "]", '{"a":': "}"}[opener]
    inner = opener * depth + "1" + closer * depth
    return json.dumps({**ticket, "requestedBy": "PLACEHOLDER"}).replace('"PLACEHOLDER"', inner).encode()


def with_raw_value(ticket: dict[str, Any], raw: str) -> bytes:
    """A ticket whose pipelines (a number field) hold `raw` verbatim: NaN, Infinity, 1e400, 10**30..."""
    text = json.dumps(ticket)
    if '"pipelines": [12, 15]' in text:
        return text.replace('"pipelines": [12, 15]', f'"pipelines": [{raw}]').encode()
    return text.replace('"schemaVersion": 1', f'"schemaVersion": {raw}').encode()


def with_duplicate_key(ticket: dict[str, Any], key: str) -> bytes:
    text = json.dumps(ticket)
    return ("{" + json.dumps(key) + ': "first", ' + text[1:]).encode()


def padded(ticket: dict[str, Any], size: int) -> bytes:
    return json.dumps({**ticket, "padding": "x" * size}).encode()


hostile_bodies = st.one_of(
    st.builds(with_request_id, tickets, bad_request_ids, st.booleans()),
    st.builds(nested, tickets, st.integers(9, 20_000), st.sampled_from(["[", '{"a":'])),
    st.builds(
        with_raw_value,
        tickets,
        st.sampled_from(
            ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" * 30, "9" * 5000, "1.5e-400"]
        ),
    ),
    st.builds(with_duplicate_key, tickets, st.sampled_from(["requestId", "action", "source", "config"])),
    st.builds(padded, tickets, st.integers(MAX_TICKET_BYTES, 3 * MAX_TICKET_BYTES)),
    st.builds(lambda t: BOM + json.dumps(t).encode(), tickets),  # a BOM is harmless: accepted
    st.builds(
        lambda t: json.dumps(t).encode().replace(b"mallory", b"\xed\xa0\x80"), tickets
    ),  # CESU surrogate
    st.builds(lambda t, cut: json.dumps(t).encode()[:cut], tickets, st.integers(0, 200)),  # truncated
    st.binary(max_size=512),
)


def worst_shapes(size: int = MAX_TICKET_BYTES) -> dict[str, bytes]:
    """Bodies of `size` bytes shaped to make a scanner or a regex work hardest."""
    ticket = json.dumps(base_ticket("CPU-1", "upsert"))
    room = size - len(ticket) - 50
    return {
        "unterminated escaped quotes": (b'"' + b'\\"' * size)[:size],
        "quotes only": b'"' * size,
        "backslashes in a string": (b'{"a":"' + b"\\" * size)[:size],
        "brackets": b"[" * size,
        "brackets inside strings": (b'["' + b"[{" * size)[:size],
        "long request id": json.dumps({**json.loads(ticket), "requestId": "A" * room}).encode(),
        "long requestedBy ending in a newline": json.dumps(
            {**json.loads(ticket), "requestedBy": "x" * room + "\n"}
        ).encode(),
        "long configId almost valid": json.dumps(
            {**base_ticket("CPU-2", "delete"), "configId": "a/" * (room // 2) + "!"}
        ).encode(),
        "long scope of many segments": ticket.replace(
            "resourceGroups/rg", "resourceGroups/rg/providers" + "/a/b" * (room // 4)
        ).encode(),
        "many small objects": ("[" + "{}," * (size // 3 - 1) + "{}]").encode(),
        "many short keys": ("{" + ",".join(f'"k{n}":0' for n in range(size // 10)) + "}").encode(),
        "escapes": ('{"a":"' + "\\u0041" * (size // 6 - 2) + '"}').encode(),
    }
