"""Timer triggers: on their NCRONTAB schedule (UTC), at startup when `run_on_startup`, and on demand.

Like the host, one invocation of a timer function at a time: a run that falls due while one is
under way waits for it. There is no schedule monitor (the host keeps one in AzureWebJobsStorage to
catch up runs missed while the app was down), so `past_due` is true only when a run starts more
than a second after its due time.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import UTC, datetime, timedelta

from azure.functions.timer import TimerRequest

from devhost.host import invoke, until_stopped
from devhost.index import TimerFunction

LATE = timedelta(seconds=1)


class TimerRunner:
    def __init__(self, function: TimerFunction) -> None:
        self.function = function
        self._one_at_a_time = asyncio.Lock()
        self._last: datetime | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        if self.function.run_on_startup:
            await self.fire("Timer fired at startup", due=None)
        while not stopping.is_set():
            due = self.function.schedule.next_after(datetime.now(UTC))
            wait = (due - datetime.now(UTC)).total_seconds()
            if await until_stopped(stopping, asyncio.sleep(max(wait, 0), result=True)) is None:
                return
            await self.fire(f"Timer fired at {due.isoformat()}", due=due)

    async def fire(self, reason: str, due: datetime | None) -> None:
        """One invocation (scheduled, or on demand with `due=None`); a failure is logged, never raised."""
        async with self._one_at_a_time:
            now = datetime.now(UTC)
            upcoming = self.function.schedule.next_after(now)
            timer = TimerRequest(
                past_due=due is not None and now - due > LATE,
                schedule_status={
                    "Last": (self._last or now).isoformat(),
                    "Next": upcoming.isoformat(),
                    "LastUpdated": now.isoformat(),
                },
                schedule={"AdjustForDST": True},
            )
            self._last = now
            with suppress(Exception):  # invoke logged it; the schedule goes on, as in the host
                await invoke(self.function, timer, reason)
