"""A busy tenant at scale: repair under Azure's limits and mixed faults, in at most three passes.

The tenant of bench/reconcile.py (N configs plus M unmanaged apps), with the simulator in its
own process and 25 ms added to every request:

1. initial: everything is created with the simulator's limits off (`lenient`): creating N
   configs at once is past ARM's write buckets and would take many minutes; this pass only
   sets the scene and is not what is measured;
2. 10% of the configs drift (credential deleted or rewritten, role assignment removed);
3. Azure's limits on, and about 10% of requests fail on every API (7% answer 429 or 503, 3%
   lose their connection) with 0.5 s of list lag: up to three repair passes, as sweeps
   (low priority for Graph), each printed with requests per API, wall, CPU, peak RSS, the
   configs converged / failed-temporary / failed-permanent, and whether the pass raised;
4. faults off: a dry run, whose plan must be empty, and a count of duplicates (two credentials
   with one issuer and subject on an app, two assignments of one role to one principal at one
   scope, two connections of one name in a project).

Exits 1 if the tenant is not converged after three passes, if anything is duplicated, or if a
pass raised (or reported an unexpected failure).

    .venv/bin/python bench/busy_tenant.py                 # 5,000 configs, 15,000 unmanaged apps
    .venv/bin/python bench/busy_tenant.py --configs 500 --unmanaged 1500
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from reconcile import bench_policy, inject_drift, measure, peak_rss_mb, start_bench_tenant, tenant_arguments  # noqa: E402 - bench/ is on the path

from cloudsim.faults import Faults  # noqa: E402 - after making the repo importable
from cloudsim.limits import Limits  # noqa: E402
from cloudsim.state import World  # noqa: E402
from cloudsim.testing import AdminClient, duplicates  # noqa: E402
from reconciler.adapters.pacing import UNLIMITED  # noqa: E402
from reconciler.cloud import cloud_from_settings  # noqa: E402
from reconciler.core.model import FederationConfig  # noqa: E402
from reconciler.engine.run import EngineOptions, Reconciler, RunReport, Status, connect  # noqa: E402

REPAIR_PASSES = 3
LIST_LAG_S = 0.5
UNEXPECTED = "the pass failed unexpectedly"  # how the engine reports an exception it caught


def busy(latency_ms: float, seed: int) -> Faults:
    """10% of requests fail: 7% answer 429 or 503 (without Retry-After for 503), 3% lose their connection."""
    return Faults(
        latency_ms=latency_ms,
        error_rate=0.07,
        error_statuses=[429, 503],
        drop_rate=0.03,
        list_lag_s=LIST_LAG_S,
        seed=seed,
    )


@dataclass
class BusyPass:
    name: str
    report: RunReport | None = None
    wall: float = 0.0
    cpu: float = 0.0
    raised: str = ""  # the exception, if run() itself raised
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def crashed(self) -> list[str]:
        """Configs whose outcome is an exception the engine caught rather than a failure it understood."""
        outcomes = self.report.outcomes if self.report else []
        return [o.config_id for o in outcomes if o.reason.startswith(UNEXPECTED)]

    @property
    def all_converged(self) -> bool:
        return self.report is not None and not self.raised and set(self.statuses) <= {str(Status.CONVERGED)}

    def line(self) -> str:
        if self.report is None:
            return f"{self.name:<16} RAISED after {self.wall:.1f}s: {self.raised}"
        requests = sum(c["reads"] + c["writes"] for c in self.report.requests.values())
        per_api = ", ".join(
            f"{api} {c['reads']}r/{c['writes']}w" for api, c in sorted(self.report.requests.items())
        )
        outcomes = " / ".join(
            f"{self.statuses[str(s)]} {s}"
            for s in (Status.CONVERGED, Status.FAILED_TEMPORARY, Status.FAILED_PERMANENT)
        )
        shown = {str(s) for s in (Status.CONVERGED, Status.FAILED_TEMPORARY, Status.FAILED_PERMANENT)}
        others = {status: n for status, n in self.statuses.items() if status not in shown}
        return (
            f"{self.name:<16} requests {requests:>6} [{per_api}]  "
            f"wall {self.wall:6.1f}s  cpu {self.cpu:6.1f}s  "
            f"peak rss {peak_rss_mb():.0f} MB  configs {outcomes}{f' {others}' if others else ''}  "
            f"raised: {'yes' if self.raised or self.crashed else 'no'}"
        )


async def busy_pass(name: str, reconciler: Reconciler, configs: list[FederationConfig]) -> BusyPass:
    result = BusyPass(name)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        result.report = await reconciler.run(configs, low_priority=True)
    except Exception as error:  # the bench reports a raising pass instead of stopping
        result.raised = f"{type(error).__name__}: {error}"
        traceback.print_exc()
    result.wall, result.cpu = time.perf_counter() - wall, time.process_time() - cpu
    if result.report:
        result.statuses = Counter(str(o.status) for o in result.report.outcomes)
    print(result.line(), flush=True)
    if result.report:
        unsettled = [o for o in result.report.outcomes if o.status is not Status.CONVERGED]
        reasons = Counter(f"{o.status}: {o.reason[:110]}" for o in unsettled)
        for reason, n in reasons.most_common(4):
            print(f"    {n:>5} x {reason}")
    return result


async def repair_under_faults(
    admin: AdminClient,
    reconciler: Reconciler,
    configs: list[FederationConfig],
    latency_ms: float,
    seed: int,
) -> list[BusyPass]:
    """Up to three sweeps with limits on and faults everywhere; stops early once all converged."""
    await admin.set_limits(Limits())
    apis = ("graph", "arm", "ado")
    await admin.set_faults({api: busy(latency_ms, seed * 10 + n) for n, api in enumerate(apis)})
    passes: list[BusyPass] = []
    for number in range(1, REPAIR_PASSES + 1):
        passes.append(await busy_pass(f"busy pass {number}", reconciler, configs))
        if passes[-1].all_converged:
            break
        await asyncio.sleep(LIST_LAG_S + 0.1)  # the list lag passes, as a scheduled follow-up would wait
    calm = Faults(latency_ms=latency_ms)
    await admin.set_faults({"graph": calm, "arm": calm, "ado": calm})
    return passes


async def run(args: argparse.Namespace) -> int:
    bench = await start_bench_tenant(args, "bench-busy-")
    process, env, state, configs, admin = bench.process, bench.env, bench.state, bench.configs, bench.admin
    try:
        cloud, policy = cloud_from_settings(env), bench_policy(configs)
        # The scene is set without limits on either side: the simulator lenient, the engine unpaced.
        setup = EngineOptions(concurrency=args.concurrency, budgets=UNLIMITED)
        async with connect(cloud, policy, options=setup) as unpaced:
            print(
                "initial creation with the simulator's limits OFF (lenient; ARM's write buckets would "
                "make it take many minutes): it sets the scene and is not part of the measurement",
                flush=True,
            )
            initial = await measure("initial (lenient)", lambda: unpaced.run(configs))
            print(f"  done in {initial.wall:.1f}s; all converged: {initial.report.all_converged}", flush=True)
        options = EngineOptions(concurrency=args.concurrency)  # Azure's budgets, as in production
        async with connect(cloud, policy, options=options) as reconciler:
            broken = await inject_drift(admin, state, 0.10, args.seed)
            print(f"injected drift: {broken} objects changed or removed")
            print(
                "Azure's limits ON; faults on every API: 7% 429/503, 3% dropped connections, "
                f"{LIST_LAG_S} s list lag",
                flush=True,
            )
            passes = await repair_under_faults(admin, reconciler, configs, args.latency_ms, args.seed)
            final = await measure("dry run, calm", lambda: reconciler.run(configs, dry_run=True))
        found = duplicates(World.from_json(await admin.dump_state()))
        print(
            f"dry run without faults: plan empty: {final.report.plan.is_empty} "
            f"({len(final.report.plan.actions)} actions); duplicates: {len(found)}"
        )
        for action in final.report.plan.actions[:5]:
            print(f"    {action.kind} {action.target}")
        for duplicate in found[:5]:
            print(f"    {duplicate}")
        return verdict(passes, final.report.plan.is_empty, found)
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


def verdict(passes: list[BusyPass], plan_empty: bool, found: list[str]) -> int:
    raised = [p.name for p in passes if p.raised or p.crashed]
    converged = passes[-1].all_converged and plan_empty
    print(
        f"verdict: converged within {REPAIR_PASSES} passes: {converged} (passes run: {len(passes)}); "
        f"duplicates: {len(found)}; passes that raised: {raised or 'none'}"
    )
    return 0 if converged and not found and not raised else 1


def main() -> int:
    parser = tenant_arguments(__doc__)  # --seed: of the tenant, the drift and the faults
    parser.add_argument("--concurrency", type=int, default=32)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
