"""One engine shared by concurrent passes (the Functions worker runs several messages at once):
each pass reports only the requests it sent."""

from __future__ import annotations

import asyncio

from reconciler.engine.run import connect
from tests.core.builders import policy
from tests.engine.conftest import FAST, Tenant


async def test_concurrent_passes_on_one_engine_each_count_only_their_own_requests(tenant: Tenant) -> None:
    first = tenant.config("conn-a", (await tenant.app("sc-a"))["appId"])
    second = tenant.config("conn-b", (await tenant.app("sc-b"))["appId"])
    async with connect(tenant.cloud, policy(), options=FAST) as engine:
        alone = await engine.run([first], dry_run=True)
        before = engine.meter.reads()
        together = await asyncio.gather(engine.run([first], dry_run=True), engine.run([second], dry_run=True))
        sent = engine.meter.reads() - before
    counted = [sum(c["reads"] for c in report.requests.values()) for report in together]
    assert sum(counted) == sent  # nothing counted twice, nothing lost
    assert together[0].requests == alone.requests  # the same pass costs the same, run beside another
