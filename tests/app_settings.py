"""The Functions app's settings for a test, as the host would give them: the policy file, the
tables in Azurite, Service Bus on the AMQP peer, a drift schedule; the worker's context rebuilt."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.app import context as app_context
from servicebus_peer import ServiceBusPeer


async def settle_app_settings(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    policy: str,
    table_settings: dict[str, str],
    peer: ServiceBusPeer,
) -> Path:
    """Sets the app settings in the environment and returns the policy file's path."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy)
    monkeypatch.setenv("WIF_POLICY_FILE", str(policy_file))
    for name, value in table_settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ServiceBusConnection", peer.connection_string)
    monkeypatch.setenv("DRIFT_SCHEDULE", "0 */30 * * * *")
    await app_context.reset()
    return policy_file
