"""Bounded CPU for the worst-shaped inputs: 64 KiB tickets and HTTP bodies, YAML bombs.

Measured with time.process_time (CPU of this process, so other processes on the machine do not
count). The figures are printed (`pytest -s`); the bounds are generous: the slowest shape
measures about 0.05 s here, where the regex that used to strip JSON strings before the depth check
took 13 s on 64 KiB of unterminated escaped quotes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.app.http_api import json_body
from reconciler.documents import MAX_ALIAS_NODES, MAX_PROBLEMS, InputError, load_configs
from reconciler.state.tickets import MAX_TICKET_BYTES, TicketRejected, parse_ticket
from tests.security.hostile import worst_shapes
from tests.tickets.tickets_data import POLICY

CPU_BOUND = 1.0  # seconds for one 64 KiB body: twenty times the slowest shape measured


def cpu_seconds(work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def parse(body: bytes) -> None:
    with contextlib.suppress(TicketRejected):
        parse_ticket(body, POLICY)


@pytest.mark.parametrize(("shape", "body"), sorted(worst_shapes().items()))
def test_a_64_kib_ticket_of_the_worst_shapes_is_handled_in_bounded_cpu(shape: str, body: bytes) -> None:
    assert len(body) <= MAX_TICKET_BYTES, shape
    ticket = cpu_seconds(lambda: parse(body))
    http = cpu_seconds(lambda: json_body(body, "application/json"))
    print(f"{shape:40} {len(body):6} bytes  ticket {ticket:.4f} s  http {http:.4f} s")
    assert ticket < CPU_BOUND and http < CPU_BOUND, shape


def test_cpu_grows_linearly_with_the_size_of_the_worst_shape() -> None:
    """Four times the bytes may cost about four times the CPU, never sixteen (a quadratic scan)."""
    shape = "unterminated escaped quotes"
    small = min(cpu_seconds(lambda: parse(worst_shapes(MAX_TICKET_BYTES // 4)[shape])) for _ in range(3))
    large = min(cpu_seconds(lambda: parse(worst_shapes(MAX_TICKET_BYTES)[shape])) for _ in range(3))
    print(f"{shape}: 16 KiB {small:.4f} s, 64 KiB {large:.4f} s")
    assert large < max(8 * small, 0.05)


def billion_laughs(levels: int = 9) -> str:
    """A config whose id is 10**levels "lol"s: quoted whole in the error (7 MB at five levels) before."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        previous, name = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 10) + "]")
    return "\n".join([*lines, f"id: *{chr(ord('a') + levels - 1)}"]) + "\n"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("laughs.yaml", billion_laughs(), f"aliases expand to more than {MAX_ALIAS_NODES} nodes"),
        ("recursive.yaml", "a: &a [*a]\n", "refers to a node that contains it"),
        ("deep.yaml", "[" * 1_000_000, "nested more than"),
        ("deep.json", "[" * 1_000_000, "nested 1000000 deep"),
        ("wide-errors.yaml", "---\n[]\n" * (MAX_PROBLEMS + 500), "and 500 more problems"),
    ],
)
def test_hostile_files_are_refused_in_bounded_cpu_with_bounded_error_text(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    caught: list[InputError] = []

    def load() -> None:
        try:
            load_configs([path])
        except InputError as error:
            caught.append(error)

    seconds = cpu_seconds(load)
    (error,) = caught
    size = len(str(error))
    print(f"{name:18} {len(text):8} chars  {seconds:.3f} s  error text {size} chars")
    assert expected in str(error)
    assert size < 200_000 and seconds < 10
