"""`submit` and `dlq list|replay` as a user runs them, against the peer (settings from the environment)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli.main import main
from servicebus_peer import ServiceBusPeer
from tests.tickets.tickets_data import ROOT, encode, upsert


@pytest.fixture(autouse=True)
def settings(module_peer: ServiceBusPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands read Service Bus and the policy from the environment, as in production."""
    monkeypatch.setenv("ServiceBusConnection", module_peer.connection_string)
    monkeypatch.setenv("WIF_POLICY_FILE", str(ROOT / "policy.yaml"))


def test_submit_wraps_a_yaml_config_into_an_upsert_ticket(
    peer: ServiceBusPeer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first_document = (ROOT / "examples" / "configs.yaml").read_text().split("\n---\n")[0]
    path = tmp_path / "config.yaml"
    path.write_text(first_document)
    assert main(["submit", str(path), "--request-id", "CHG42", "--requested-by", "ops@contoso.com"]) == 0
    assert "submitted request CHG42" in capsys.readouterr().out
    [message] = peer.messages("requests")
    ticket = json.loads(message.body)
    assert (ticket["requestId"], ticket["action"], ticket["requestedBy"]) == (
        "CHG42",
        "upsert",
        "ops@contoso.com",
    )
    assert ticket["config"]["serviceConnection"]["name"] == "kv-reader"
    assert message.message_id == "CHG42"


def test_submit_refuses_an_invalid_ticket_without_sending(
    peer: ServiceBusPeer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    owner = upsert()
    owner["config"]["roleAssignments"][0]["role"] = "Owner"
    path = tmp_path / "ticket.json"
    path.write_bytes(encode(owner))
    assert main(["submit", str(path)]) == 2
    err = capsys.readouterr().err
    assert "the ticket was not sent: the config violates the grant policy" in err
    assert "[privileged-role]" in err
    path.write_bytes(encode(upsert()))
    assert main(["submit", str(path), "--request-id", "other"]) == 2
    assert "a ticket names its own requestId" in capsys.readouterr().err
    assert peer.messages("requests") == []
    assert main(["submit", str(path)]) == 0
    assert [m.body for m in peer.messages("requests")] == [encode(upsert())]


def test_dlq_list_and_replay(peer: ServiceBusPeer, capsys: pytest.CaptureFixture[str]) -> None:
    first = peer.inject(
        "requests",
        b'{"x": 1}',
        message_id="m-1",
        dead_letter_reason="TicketInvalid",
        dead_letter_description="no requestId",
    )
    second = peer.inject("requests", b"{}", message_id="m-2", dead_letter_reason="MaxDeliveryCountExceeded")
    assert main(["dlq", "list"]) == 0
    out = capsys.readouterr().out
    assert "2 dead-lettered message(s) in requests" in out
    assert f"#{first}  id=m-1" in out and "reason: TicketInvalid: no requestId" in out
    assert main(["dlq", "replay", str(second)]) == 0
    assert "replayed 1 message(s) to requests" in capsys.readouterr().out
    assert [m.message_id for m in peer.messages("requests")] == ["m-2"]
    assert main(["dlq", "replay", "--all", "--queue", "requests"]) == 0
    assert peer.dead_letters("requests") == []


def test_missing_settings_are_bad_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ServiceBusConnection", raising=False)
    monkeypatch.delenv("ServiceBusConnection__fullyQualifiedNamespace", raising=False)
    assert main(["dlq", "list", "--queue", "reconcile"]) == 2
    assert "Service Bus is not configured" in capsys.readouterr().err
