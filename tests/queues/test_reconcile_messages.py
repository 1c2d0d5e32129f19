"""The reconcile message: what parse_reconcile_message refuses, and the session rule."""

from __future__ import annotations

import pytest

from reconciler.core.sharding import SESSION_COUNT, session_for
from reconciler.state.queues import (
    Queues,
    QueueSettingsError,
    ReconcileMessageInvalid,
    parse_reconcile_message,
    reconcile_message,
)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"nope", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"schemaVersion": 2, "apps": ["app:x"], "reason": "sweep"}', "schemaVersion"),
        (b'{"schemaVersion": 1, "apps": [], "reason": "sweep", "sweepId": "s"}', "apps"),
        (b'{"schemaVersion": 1, "apps": ["app:x"], "reason": "sweep", "sweepId": "s"}', "apps: malformed"),
        (b'{"schemaVersion": 1, "apps": ["new:x"], "reason": "sweep"}', "sweepId: required"),
        (b'{"schemaVersion": 1, "apps": ["new:x"], "reason": "ticket"}', "requestId: required"),
        (b'{"schemaVersion": 1, "apps": ["new:x"], "reason": "follow-up"}', "requestId or sweepId: required"),
        (b'{"schemaVersion": 1, "apps": ["new:x"], "reason": "panic", "requestId": "r"}', "reason"),
        (b'{"schemaVersion": 1, "apps": ["new:x"], "reason": "ticket", "requestId": "r", "x": 1}', "unknown"),
        (b'{"schemaVersion": 1, "apps": ["new:x"], "reason": "ticket", "requestId": "a b"}', "requestId"),
        (b'{"schemaVersion": NaN}', "not JSON"),
    ],
)
def test_junk_reconcile_messages_are_refused_with_a_reason(body: bytes, problem: str) -> None:
    with pytest.raises(ReconcileMessageInvalid, match=problem):
        parse_reconcile_message(body)


def test_a_reconcile_message_from_the_wrong_session_is_refused() -> None:
    message = reconcile_message(["new:x"], reason="ticket", request_id="r")
    other = next(f"apps-{n:02d}" for n in range(SESSION_COUNT) if f"apps-{n:02d}" != session_for("new:x"))
    with pytest.raises(ReconcileMessageInvalid, match="not of session"):
        parse_reconcile_message(b"".join(message.body), session_id=other)
    with pytest.raises(ValueError, match="one session"):
        apps = [f"new:{n}" for n in range(40)]
        reconcile_message(apps, reason="ticket", request_id="r")


def test_settings_must_name_a_connection() -> None:
    with pytest.raises(QueueSettingsError, match="ServiceBusConnection__fullyQualifiedNamespace"):
        Queues.from_settings(
            {"ServiceBusConnection": "", "ServiceBusConnection__fullyQualifiedNamespace": ""}
        )
