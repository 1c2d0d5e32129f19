"""The reconciler at scale against the simulator in its own process, with latency on every request.

A generated tenant of N configs (1-3 credentials' worth of configs per app, 1-2 role
assignments each, 5 subscriptions, 2 organizations of 10 projects) plus M unmanaged apps.
Passes, each printed with requests per API (reads/writes), wall time, CPU of this process
and its peak RSS, beside the fewest requests the APIs allow for that pass:

1. initial: everything is created;
2. converged: nothing to do (the figure that matters for a scheduled sweep);
3. repair: after 10% of the configs drifted (credential deleted or rewritten, role assignment removed);
4. pipeline permissions: a dry run that also reads every connection's permissions (their own cadence).

    .venv/bin/python bench/reconcile.py                 # 5,000 configs, 15,000 unmanaged apps, 25 ms
    .venv/bin/python bench/reconcile.py --configs 500 --unmanaged 1500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from cloudsim.generate import ROLES, generate_tenant  # noqa: E402 - after making the repo importable
from cloudsim.testing import AdminClient, start_simulator_process  # noqa: E402
from reconciler.adapters.pacing import UNLIMITED  # noqa: E402
from reconciler.cloud import cloud_from_settings  # noqa: E402
from reconciler.core.identifiers import ScopePattern  # noqa: E402
from reconciler.core.model import FederationConfig  # noqa: E402
from reconciler.core.policy import GrantPolicy  # noqa: E402
from reconciler.core.roles import builtin_role  # noqa: E402
from reconciler.documents import load_configs  # noqa: E402
from reconciler.engine.run import EngineOptions, Reconciler, RunReport, Status, connect  # noqa: E402

MAX_IN_VALUES, MAX_BATCH = 15, 20


@dataclass
class Figures:
    name: str
    report: RunReport
    wall: float
    cpu: float

    def line(self, configs: int, lower_bound: int) -> str:
        requests = sum(c["reads"] + c["writes"] for c in self.report.requests.values())
        per_api = ", ".join(
            f"{api} {c['reads']}r/{c['writes']}w" for api, c in sorted(self.report.requests.items())
        )
        statuses = Counter(str(o.status) for o in self.report.outcomes)
        per_config = f"{requests / configs:.3f}/config; lower bound {lower_bound}"
        cpu = f"cpu {self.cpu:6.2f}s ({self.cpu / configs * 1000:.2f}s/1000)"
        return (
            f"{self.name:<20} requests {requests:>6} ({per_config}) [{per_api}]  wall {self.wall:6.2f}s  "
            f"{cpu}  peak rss {peak_rss_mb():.0f} MB  outcomes {dict(statuses)}"
        )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def measure(name: str, work: Callable[[], Awaitable[RunReport]]) -> Figures:
    wall, cpu = time.perf_counter(), time.process_time()
    report = await work()
    return Figures(name, report, time.perf_counter() - wall, time.process_time() - cpu)


def bench_policy(configs: list[FederationConfig]) -> GrantPolicy:
    return GrantPolicy(
        organizations=frozenset(c.organization.lower() for c in configs),
        role_ids=frozenset(str(getattr(builtin_role(r), "id", "")) for r in ROLES),
        privileged_role_ids=frozenset(),
        scopes=(ScopePattern("/subscriptions/*/resourcegroups/*"),),
    )


def read_lower_bound(state: dict[str, object], configs: list[FederationConfig], page_size: int) -> int:
    """The fewest requests one converged observe needs: filtered app and principal reads (15 ids per
    filter, 20 filters per batch), one listing page per 100 assignments per subscription, one
    endpoint listing per project."""
    apps = len({c.application.app_id for c in configs})
    graph = 2 * math.ceil(math.ceil(apps / MAX_IN_VALUES) / MAX_BATCH)
    per_subscription = Counter(g.scope.split("/")[2] for c in configs for g in c.role_grants)
    arm = sum(max(1, math.ceil(n / page_size)) for n in per_subscription.values())
    ado = len({(c.organization, c.project) for c in configs})
    return graph + arm + ado


async def inject_drift(admin: AdminClient, state: dict[str, object], share: float, seed: int) -> int:
    """Break `share` of the reconciler's credentials and role assignments through the admin API."""
    live = await admin.dump_state()
    rng = random.Random(seed)
    apps = [a for a in live["applications"] if a.get("federated_credentials")]
    marked = [
        (a, f)
        for a in apps
        for f in a["federated_credentials"]
        if "wif-reconciler" in (f.get("description") or "")
    ]
    chosen = rng.sample(marked, int(len(marked) * share))
    for index, (app, fic) in enumerate(chosen):
        if index % 2:
            await admin.delete_fic(app["app_id"], fic["name"])
        else:
            await admin.change_fic(app["app_id"], fic["name"], subject=fic["subject"] + "-drifted")
    assignments = [ra for ra in live["role_assignments"] if "wif-reconciler" in (ra.get("description") or "")]
    removed = rng.sample(assignments, int(len(assignments) * share / 2))
    for ra in removed:
        await admin.delete_role_assignment(
            f"{ra['scope']}/providers/Microsoft.Authorization/roleAssignments/{ra['name']}"
        )
    return len(chosen) + len(removed)


@dataclass
class BenchTenant:
    """A generated tenant served by the simulator in its own process, and the configs for it."""

    process: asyncio.subprocess.Process
    env: dict[str, str]
    state: dict[str, object]
    configs: list[FederationConfig]
    admin: AdminClient
    arm_page_size: int


async def start_bench_tenant(args: argparse.Namespace, prefix: str) -> BenchTenant:
    """Generates the tenant, starts the simulator on it (lenient: creating 5,000 configs at once is
    past ARM's write buckets) with the added latency, and prints what it is."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    tenant = generate_tenant(configs=args.configs, unmanaged_apps=args.unmanaged, seed=args.seed)
    state_path, configs_path, faults_path = (
        workdir / "state.json",
        workdir / "configs.yaml",
        workdir / "faults.json",
    )
    state = tenant.world.to_json()
    state_path.write_text(json.dumps(state))
    configs_path.write_text(tenant.configs_yaml())
    latency = {"latency_ms": args.latency_ms}
    faults_path.write_text(json.dumps({"graph": latency, "arm": latency, "ado": latency}))
    process, env = await start_simulator_process(state_path, None, "--faults", str(faults_path), "--lenient")
    os.environ.update(env)
    configs = load_configs([configs_path])
    admin = AdminClient(env["WIF_SIMULATOR_ADMIN_URL"], Path(env["REQUESTS_CA_BUNDLE"]))
    print(
        f"tenant: {len(configs)} configs, {len({c.application.app_id for c in configs})} apps, "
        f"{args.unmanaged} unmanaged apps; {args.latency_ms:.0f} ms added latency per request; "
        f"machine: {os.cpu_count()} cores",
        flush=True,
    )
    return BenchTenant(process, env, state, configs, admin, tenant.world.settings.arm_page_size)


async def run(args: argparse.Namespace) -> int:
    bench = await start_bench_tenant(args, "bench-reconcile-")
    process, env, state, configs, admin = bench.process, bench.env, bench.state, bench.configs, bench.admin
    try:
        lower_bound = read_lower_bound(state, configs, bench.arm_page_size)
        # The simulator runs lenient here, so the engine does not pace itself either.
        options = EngineOptions(concurrency=args.concurrency, budgets=UNLIMITED)
        async with connect(cloud_from_settings(env), bench_policy(configs), options=options) as reconciler:
            await print_pass("initial (creates)", reconciler, configs, len(configs), lower_bound)
            converged = await print_pass("converged", reconciler, configs, len(configs), lower_bound)
            broken = await inject_drift(admin, state, 0.10, args.seed)
            print(f"injected drift: {broken} objects changed or removed")
            await print_pass("repair 10% drift", reconciler, configs, len(configs), lower_bound)
            pipelines = await measure(
                "pipeline permissions", lambda: reconciler.run(configs, dry_run=True, pipelines=True)
            )
            print(pipelines.line(len(configs), lower_bound + len(configs)))
            print(f"  of which pipeline-permission reads: {pipelines.report.pipeline_reads}")
        ok = (
            converged.report.plan.is_empty
            and sum(c["writes"] for c in converged.report.requests.values()) == 0
        )
        return 0 if ok else 1
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


async def print_pass(
    name: str, reconciler: Reconciler, configs: list[FederationConfig], count: int, lower_bound: int
) -> Figures:
    figures = await measure(name, lambda: reconciler.run(configs))
    print(figures.line(count, lower_bound))
    failed = [o for o in figures.report.outcomes if o.status is not Status.CONVERGED]
    for outcome in failed[:5]:
        print(f"  {outcome.status} {outcome.config_id}: {outcome.reason}")
    return figures


def tenant_arguments(
    doc: str | None, *, configs: int = 5000, unmanaged: int = 15000
) -> argparse.ArgumentParser:
    """The options every benchmark takes: the generated tenant's size and seed, the added latency."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", type=int, default=configs)
    parser.add_argument("--unmanaged", type=int, default=unmanaged)
    parser.add_argument("--latency-ms", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=1)
    return parser


def main() -> int:
    parser = tenant_arguments(__doc__)
    parser.add_argument("--concurrency", type=int, default=32)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
