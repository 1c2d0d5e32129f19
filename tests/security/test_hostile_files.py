"""Files whose size stat() does not tell: a pipe (`validate <(cat ...)`), /dev/zero, a file still
growing. The size limit holds for what is read, not for what stat() says, so such a file is refused
after 16 MB, never read until memory runs out; a small pipe is read as a file."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.documents import MAX_FILE_BYTES, InputError, read_documents
from servicebus_peer import ServiceBusPeer
from tests.peer import module_peer, peer
from tests.tickets.tickets_data import ROOT as TICKETS_ROOT
from tests.tickets.tickets_data import encode, upsert

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["module_peer", "peer"]  # fixtures


def pipe_of(tmp_path: Path, data: bytes, name: str = "configs.yaml") -> Path:
    """A named pipe that a thread fills with `data` (it stops when the reader goes away)."""
    fifo = tmp_path / name
    os.mkfifo(fifo)

    def write() -> None:
        try:
            with fifo.open("wb") as pipe:
                for start in range(0, len(data), 1 << 20):
                    pipe.write(data[start : start + (1 << 20)])
        except BrokenPipeError:
            pass  # the reader stopped at the limit

    threading.Thread(target=write, daemon=True).start()
    return fifo


def test_a_pipe_larger_than_the_limit_is_refused_after_the_limit(tmp_path: Path) -> None:
    # Comment lines: were the whole pipe read, it would parse as an empty file and pass.
    fifo = pipe_of(tmp_path, (b"#" * 1023 + b"\n") * (MAX_FILE_BYTES // 1024 + 64))
    with pytest.raises(InputError, match="larger than 16 MB"):
        read_documents(fifo)


def test_a_small_pipe_is_read_as_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = pipe_of(tmp_path, (ROOT / "examples" / "configs.yaml").read_bytes())
    assert main(["validate", "--policy", str(ROOT / "policy.yaml"), str(fifo)]) == 0, capsys.readouterr()


def test_dev_zero_as_a_config_file_is_refused_not_read_forever(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--policy", str(ROOT / "policy.yaml"), "/dev/zero"]) == 2
    assert "/dev/zero: larger than 16 MB" in capsys.readouterr().err


SNAPSHOT_FIELDS = {
    "a tag that is a number": ("applications", "tags", [1]),
    "an issuer that is a list": ("serviceConnections", "issuer", ["https://vstoken.dev.azure.com/x"]),
    "a subject that is an object": ("serviceConnections", "subject", {"sc": "x"}),
    "an audience that is a number": ("federatedIdentityCredentials", "audiences", [7]),
}


@pytest.mark.parametrize("where", SNAPSHOT_FIELDS.values(), ids=list(SNAPSHOT_FIELDS))
def test_a_snapshot_field_of_the_wrong_type_is_an_input_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: tuple[str, str, object]
) -> None:
    """Before: the snapshot kept the value and the planner crashed on it (unhashable list, `int` has
    no `startswith`), a traceback instead of exit 2."""
    snapshot = json.loads((ROOT / "examples" / "observed.json").read_text())
    kind, key, value = where
    if kind == "federatedIdentityCredentials":
        snapshot["applications"][0][kind][0][key] = value
    else:
        snapshot[kind][0][key] = value
    path = tmp_path / "observed.json"
    path.write_text(json.dumps(snapshot))
    configs, policy = ROOT / "examples" / "configs.yaml", ROOT / "policy.yaml"
    code = main(["plan", "--configs", str(configs), "--policy", str(policy), "--observed", str(path)])
    assert code == 2
    assert f"'{key}': expected a" in capsys.readouterr().err


def test_submit_from_a_pipe_sends_the_ticket_it_validated(
    peer: ServiceBusPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: `submit` validated the file, then opened it again to send it byte for byte: from a
    pipe (`submit <(...)`) the second open waited forever for a writer, and a file changed between
    the two reads was sent as it was then, unvalidated. Now the bytes are read once."""
    monkeypatch.setenv("ServiceBusConnection", peer.connection_string)
    monkeypatch.setenv("WIF_POLICY_FILE", str(TICKETS_ROOT / "policy.yaml"))
    fifo = pipe_of(tmp_path, encode(upsert()), "ticket.json")
    codes: list[int] = []
    command = threading.Thread(target=lambda: codes.append(main(["submit", str(fifo)])), daemon=True)
    command.start()
    command.join(timeout=30)
    if command.is_alive():  # blocked on a second open: give it an empty writer so the thread ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        command.join(timeout=30)
        pytest.fail("submit opened the pipe a second time and waited for a writer")
    assert codes == [0]
    assert [m.body for m in peer.messages("requests")] == [encode(upsert())]
