"""Progress of a pass on stderr, for people at a terminal (or anyone who asks with --progress).

While observing it counts the reads sent so far, per API; while applying, a bar counts the
applications done. At a terminal one line is redrawn twice a second; asked for into a pipe or a
log, it writes plain lines, every few seconds and at each tenth of the applications. stdout stays
the report alone, whatever stderr shows.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TextIO

from reconciler.adapters.metering import RequestMeter

TICK_SECONDS = 0.5  # at a terminal
LOG_TICK_SECONDS = 5.0  # into a pipe or a log
BAR_WIDTH = 30


class Progress:
    def __init__(self, out: TextIO, configs: int) -> None:
        self._out = out
        self._configs = configs
        self._applying = False
        self._tty = out.isatty()
        self._shown_tenth = -1
        self._meter: RequestMeter | None = None

    @asynccontextmanager
    async def observing(self, meter: RequestMeter) -> AsyncIterator[None]:
        """Shows the reads so far until the pass starts applying or ends."""
        self._meter = meter
        ticker = asyncio.create_task(self._tick(meter))
        try:
            yield
        finally:
            ticker.cancel()
            if not self._applying:
                self._observed()

    def applied(self, done: int, total: int) -> None:
        """The applier's callback: one bar, finished with a line break when every application is done."""
        if not self._applying:
            self._applying = True
            self._observed()
        tenth = 10 * done // max(total, 1)
        if not self._tty and tenth == self._shown_tenth:
            return
        self._shown_tenth = tenth
        filled = BAR_WIDTH * done // max(total, 1)
        self._line(
            f"applying [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} applications",
            end="\n" if done == total else "",
        )

    def _observed(self) -> None:
        if self._meter is not None:
            self._line(f"observed {self._configs} config(s): {self._reads(self._meter)}", end="\n")

    async def _tick(self, meter: RequestMeter) -> None:
        while not self._applying:
            self._line(f"observing {self._configs} config(s): {self._reads(meter)}")
            await asyncio.sleep(TICK_SECONDS if self._tty else LOG_TICK_SECONDS)

    def _line(self, text: str, end: str = "") -> None:
        """At a terminal, redraws the current line; elsewhere, writes a plain line."""
        if self._tty:
            print(f"\r{text}\x1b[K", end=end, file=self._out, flush=True)
        elif text:
            print(text, file=self._out, flush=True)

    @staticmethod
    def _reads(meter: RequestMeter) -> str:
        per_api = ", ".join(f"{api} {counts['reads']}" for api, counts in meter.as_dict().items())
        return f"{meter.reads()} read(s)" + (f" ({per_api})" if per_api else "")


def wanted(asked: bool) -> bool:
    """Shown at a terminal, or when asked; never unasked into a pipe or a log."""
    return asked or sys.stderr.isatty()
