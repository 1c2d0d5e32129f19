"""One converged sweep of 50,000 configs in a tenant of 100,000 more applications, under Azure's limits.

The simulator runs in its own process with Azure's limits on (Graph's resource-unit budget, ARM's
token buckets, ADO's window: its defaults) and 25 ms added to every request, serving a generated
tenant already converged (bench/converged.py). The desired state is written into the configs
table of an Azurite; the sweep runs in a fresh process of its own, so that its CPU and peak RSS
are the reconciler's alone: it reads the desired state from the table as the sweep does, then
observes and plans every config in one bulk pass at low priority, with the engine's default
budgets (those same limits). Printed: requests per API as the simulator served them, the
requests it throttled (429), the resource units it charged, wall, CPU and peak RSS.

Targets (issue 12): 0 throttled, wall <= 120 s, peak RSS <= 1 GB, CPU <= 1 s per 1,000 configs,
and a pass that plans nothing. Exits 1 when one is missed.

--through-function measures the deployed path instead: `function_app.drift_sweep` called with a
TimerRequest as the host calls it, the app settings pointing at the simulator, Azurite and the
Service Bus peer (bench/sweep.py's), so the pass also lists the status and claims tables, seeds the
event index and writes the statuses that changed. A first sweep (not measured) brings the
deployment to steady state: each config's status row and the event index rows. The SECOND sweep is
measured in a fresh process (a fresh worker: the index seed listing included). Printed besides: the
table requests Azurite served (its access log; writes expected 0) and the reconcile messages the
sweep sent (counted by receiving them from the peer; expected 0).

    .venv/bin/python bench/scale.py                                  # 50,000 configs, 100,000 unmanaged
    .venv/bin/python bench/scale.py --configs 5000 --unmanaged 10000
    .venv/bin/python bench/scale.py --through-function               # through the timer function
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from azure.data.tables import TableServiceClient  # noqa: E402 - after making the repo importable
from azure.functions.timer import TimerRequest  # noqa: E402
from azure.servicebus import NEXT_AVAILABLE_SESSION  # noqa: E402
from azure.servicebus.aio import ServiceBusClient  # noqa: E402
from azure.servicebus.exceptions import OperationTimeoutError  # noqa: E402
from converged import converge, parsed_configs  # noqa: E402 - bench/ is on the path
from reconcile import bench_policy, tenant_arguments  # noqa: E402
from sweep import engine_meter, start_peer, write_policy  # noqa: E402

import function_app  # noqa: E402
from cloudsim.generate import generate_tenant  # noqa: E402
from cloudsim.testing import AdminClient, start_simulator_process  # noqa: E402
from reconciler.adapters.pacing import Budgets  # noqa: E402
from reconciler.app import context as app_context  # noqa: E402
from reconciler.cloud import cloud_from_settings  # noqa: E402
from reconciler.core.model import FederationConfig  # noqa: E402
from reconciler.core.serialise import config_to_document  # noqa: E402
from reconciler.engine.run import EngineOptions, connect  # noqa: E402
from reconciler.state.stores import open_stores  # noqa: E402
from reconciler.state.tables import CONFIGS_TABLE, encode_row_key, utc_now  # noqa: E402
from tests.azurite import TableRequests, connection_string, start_azurite, stop_azurite  # noqa: E402

TABLE_BATCH = 100  # Azure Tables' limit on operations in one transaction


def seed_table(connection: str, configs: list[FederationConfig]) -> None:
    """The configs as rows of the desired-state table, as `import` stores them (transactions of 100)."""
    with TableServiceClient.from_connection_string(connection) as service:
        table = service.create_table_if_not_exists(CONFIGS_TABLE)
        by_partition: dict[str, list[dict[str, Any]]] = {}
        for config in configs:
            by_partition.setdefault(config.organization.lower(), []).append(
                {
                    "PartitionKey": config.organization.lower(),
                    "RowKey": encode_row_key(config.id),
                    "Document": json.dumps(config_to_document(config), separators=(",", ":")),
                    "Generation": 1,
                    "AppKey": config.application.key,
                    "Deleted": False,
                    "Prune": config.prune.value,
                    "RequestId": "bench-scale",
                    "UpdatedAt": utc_now(),
                }
            )
        for rows in by_partition.values():
            for start in range(0, len(rows), TABLE_BATCH):
                table.submit_transaction([("upsert", row) for row in rows[start : start + TABLE_BATCH]])


def peak_rss_mb() -> float:
    """This process's peak RSS since it started (VmHWM). Not getrusage's ru_maxrss: Linux carries
    that over from the parent through fork and exec, and the parent holds the generated tenant."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


async def sweep() -> dict[str, Any]:
    """The measured pass (in its own process): the desired state from the table, then one bulk
    observe and plan at low priority, as the scheduled sweep runs it."""
    wall, cpu = time.perf_counter(), time.process_time()
    async with await open_stores(os.environ, None) as stores:
        configs = [record.config async for record in stores.configs.list_all() if not record.deleted]
    table_read_s = time.perf_counter() - wall
    table_rss_mb = peak_rss_mb()
    options = EngineOptions(concurrency=32, budgets=Budgets.from_settings(os.environ))
    async with connect(cloud_from_settings(os.environ), bench_policy(configs), options=options) as engine:
        report = await engine.run(configs, dry_run=True, low_priority=True)
    return {
        "configs": len(configs),
        "table_read_s": table_read_s,
        "table_rss_mb": table_rss_mb,
        "observe_s": report.observe_seconds,
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "peak_rss_mb": peak_rss_mb(),
        "plan_empty": report.plan.is_empty,
        "http_requests": report.requests,
        "outcomes": dict(Counter(str(o.status) for o in report.outcomes)),
        "reasons": sorted({o.reason for o in report.outcomes if o.reason})[:5],
    }


async def function_sweep() -> dict[str, Any]:
    """The measured process of --through-function: one timer run in a fresh worker, as the host runs it."""
    wall, cpu = time.perf_counter(), time.process_time()
    await function_app.drift_sweep(TimerRequest(past_due=False))
    wall_s, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    meter = await engine_meter()  # the worker's one engine: every request this process sent
    requests = meter.as_dict()
    await app_context.reset()
    return {
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "process_cpu_s": time.process_time(),  # imports and start-up included
        "peak_rss_mb": peak_rss_mb(),
        "http_requests": requests,
    }


async def drain_reconcile(bus: str) -> int:
    """Receive (and complete) every message waiting on `reconcile`, in any session: how many there were."""
    received = 0
    async with ServiceBusClient.from_connection_string(bus, retry_total=0) as client:
        while True:
            try:
                receiver = client.get_queue_receiver(
                    "reconcile", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1
                )
                async with receiver:
                    while batch := await receiver.receive_messages(max_message_count=100, max_wait_time=1):
                        for message in batch:
                            await receiver.complete_message(message)
                            received += 1
            except OperationTimeoutError:  # no session has messages
                return received


@dataclass(frozen=True)
class Setup:
    workdir: Path
    azurite_port: int
    admin: AdminClient
    simulator_pid: int
    organizations: set[str]


async def through_function(
    args: argparse.Namespace, setup: Setup, settings: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A set-up sweep to steady state, then the measured one, each through drift_sweep in its own process."""
    workdir, admin = setup.workdir, setup.admin
    write_policy(workdir / "policy.yaml", setup.organizations)
    peer, bus = start_peer(workdir)
    try:
        settings = {
            **settings, "ServiceBusConnection": bus, "DRIFT_SCHEDULE": "0 */30 * * * *",
            "WIF_POLICY_FILE": str(workdir / "policy.yaml"),
        }  # fmt: skip
        tables = TableRequests(workdir / "azurite.log", setup.azurite_port)
        started = time.perf_counter()
        tables.mark()
        await _sweep_process(settings, None, "--function-sweep")
        print(
            f"set-up sweep (steady state): {len(tables.writes_since_mark()):,} table writes, "
            f"{await drain_reconcile(bus)} reconcile messages, {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        await admin.reset_counters()
        tables.mark()
        simulator_cpu = _cpu_seconds(setup.simulator_pid)
        figures = await _sweep_process(settings, args.profile, "--function-sweep")
        figures["simulator_cpu_s"] = _cpu_seconds(setup.simulator_pid) - simulator_cpu
        served = tables.since_mark()
        figures["table_reads"] = sum(1 for method, _ in served if method == "GET")
        writes = tables.writes_since_mark()
        # A worker's start lists its tables (one GET /Tables, in table_reads) and creates the missing
        # ones (open_stores): none once they exist. Counted apart from the sweep's row writes.
        creates = [path for _, path in writes if path.endswith("/Tables")]
        figures["table_creates"] = len(creates)
        figures["table_writes"] = sorted({f"{m} {p}" for m, p in writes if not p.endswith("/Tables")})
        figures["table_write_count"] = len(writes) - len(creates)
        figures["messages"] = await drain_reconcile(bus)
        return figures, await admin.counters()
    finally:
        peer.send_signal(signal.SIGTERM)
        peer.wait(timeout=10)


def print_api_table(sent: dict[str, Any], counters: dict[str, Any]) -> tuple[int, int]:
    """Per API: HTTP requests as the reconciler sent them (a $batch is one), operations as the
    simulator served them (each request inside a $batch counts, and is throttled and charged, on
    its own). Returns the requests sent and the responses throttled, in all."""
    print("| API | HTTP requests (reads / writes) | operations served | throttled (429) | resource units |")
    print("|---|---|---|---|---|")
    for api in ("graph", "arm", "ado"):
        c = counters.get(api, {"reads": 0, "writes": 0, "throttled": 0, "resourceUnits": 0})
        mine = sent.get(api, {"reads": 0, "writes": 0})
        print(
            f"| {api} | {mine['reads']:,} / {mine['writes']:,} | {c['reads'] + c['writes']:,} "
            f"| {c['throttled']:,} | {c['resourceUnits']:,} |"
        )
    total = sum(c["reads"] + c["writes"] for c in sent.values())
    return total, sum(c.get("throttled", 0) for c in counters.values())


def report_function(figures: dict[str, Any], counters: dict[str, Any]) -> int:
    configs = figures["configs"]
    total, throttled = print_api_table(figures["http_requests"], counters)
    cpu_per_1000 = figures["cpu_s"] / configs * 1000
    print()
    print("| configs | HTTP requests | throttled | table reads / row writes | messages | wall | CPU", end="")
    print(" | CPU/1,000 | peak RSS |\n|---|---|---|---|---|---|---|---|---|")
    tables = f"{figures['table_reads']:,} / {figures['table_write_count']:,}"
    print(
        f"| {configs:,} | {total:,} | {throttled} | {tables} | {figures['messages']} "
        f"| {figures['wall_s']:.1f} s | {figures['cpu_s']:.1f} s | {cpu_per_1000:.2f} s "
        f"| {figures['peak_rss_mb']:.0f} MB |"
    )
    print(f"table creates at the worker's start (expected 0: the tables exist): {figures['table_creates']}")
    print(
        f"process CPU with imports and start-up {figures['process_cpu_s']:.1f} s; "
        f"simulator CPU {figures['simulator_cpu_s']:.1f} s"
    )
    for write in figures["table_writes"][:10]:
        print(f"  table write: {write}")
    checks = {
        "0 throttled": throttled == 0,
        "wall <= 120 s": figures["wall_s"] <= 120,
        "peak RSS <= 1 GB": figures["peak_rss_mb"] <= 1024,
        "CPU <= 1 s per 1,000 configs": cpu_per_1000 <= 1.0,
        "0 table row writes": figures["table_write_count"] == 0,
        "0 messages (converged)": figures["messages"] == 0,
    }
    missed = [name for name, ok in checks.items() if not ok]
    print("targets: " + ("all met" if not missed else "missed: " + ", ".join(missed)))
    return 1 if missed else 0


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    started = time.perf_counter()
    tenant = generate_tenant(configs=args.configs, unmanaged_apps=args.unmanaged, seed=args.seed)
    configs = parsed_configs(tenant)
    converge(tenant.world, configs)
    apps = len({c.application.app_id for c in configs})
    (workdir / "state.json").write_text(json.dumps(tenant.world.to_json()))
    latency = {"latency_ms": args.latency_ms}
    (workdir / "faults.json").write_text(json.dumps({"graph": latency, "arm": latency, "ado": latency}))
    del tenant
    # Azure's limits (no --lenient): the sweep must keep under them by itself.
    simulator, env = await start_simulator_process(
        workdir / "state.json", None, "--faults", str(workdir / "faults.json"), startup_timeout=600
    )
    azurite, port = start_azurite(workdir / "azurite.log")
    try:
        table = connection_string(port)
        seed_table(table, configs)
        print(
            f"tenant: {len(configs):,} configs on {apps:,} apps, {args.unmanaged:,} unmanaged apps, "
            f"{args.latency_ms:.0f} ms added per request, Azure's limits on; "
            f"machine: {os.cpu_count()} cores; set up in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        count, organizations = len(configs), {c.organization.lower() for c in configs}
        del configs
        admin = AdminClient(env["WIF_SIMULATOR_ADMIN_URL"], Path(env["REQUESTS_CA_BUNDLE"]))
        settings = {**os.environ, **env, "WIF_TABLE_CONNECTION_STRING": table}
        if args.through_function:
            setup = Setup(workdir, port, admin, simulator.pid, organizations)
            figures, counters = await through_function(args, setup, settings)
        else:
            await admin.reset_counters()
            simulator_cpu = _cpu_seconds(simulator.pid)
            figures = await _sweep_process(settings, args.profile)
            counters = await admin.counters()
            figures["simulator_cpu_s"] = _cpu_seconds(simulator.pid) - simulator_cpu
        figures["configs"] = count
    finally:
        stop_azurite(azurite)
        simulator.send_signal(signal.SIGTERM)
        await simulator.wait()
    return report_function(figures, counters) if args.through_function else report(figures, counters)


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process of this machine has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _sweep_process(env: dict[str, str], profile: str | None, mode: str = "--sweep") -> dict[str, Any]:
    profiler = ["-m", "cProfile", "-o", profile] if profile else []
    child = await asyncio.create_subprocess_exec(
        sys.executable, *profiler, __file__, mode, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"the sweep process failed ({child.returncode})")
    figures: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return figures


def report(figures: dict[str, Any], counters: dict[str, Any]) -> int:
    configs = figures["configs"]
    total, throttled = print_api_table(figures["http_requests"], counters)
    cpu_per_1000 = figures["cpu_s"] / configs * 1000
    print()
    print("| configs | HTTP requests | throttled | wall | of which table read | CPU | CPU/1,000 | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {configs:,} | {total:,} | {throttled} | {figures['wall_s']:.1f} s "
        f"| {figures['table_read_s']:.1f} s | {figures['cpu_s']:.1f} s | {cpu_per_1000:.2f} s "
        f"| {figures['peak_rss_mb']:.0f} MB |"
    )
    print(
        f"observe {figures['observe_s']:.1f} s; peak RSS after reading the table "
        f"{figures['table_rss_mb']:.0f} MB; simulator CPU {figures['simulator_cpu_s']:.1f} s"
    )
    print(f"outcomes: {figures['outcomes']}; plan empty: {figures['plan_empty']}")
    for reason in figures["reasons"]:
        print(f"  {reason}")
    checks = {
        "0 throttled": throttled == 0,
        "wall <= 120 s": figures["wall_s"] <= 120,
        "peak RSS <= 1 GB": figures["peak_rss_mb"] <= 1024,
        "CPU <= 1 s per 1,000 configs": cpu_per_1000 <= 1.0,
        "converged (the plan is empty)": figures["plan_empty"],
    }
    missed = [name for name, ok in checks.items() if not ok]
    print("targets: " + ("all met" if not missed else "missed: " + ", ".join(missed)))
    return 1 if missed else 0


def main() -> int:
    parser = tenant_arguments(__doc__, configs=50_000, unmanaged=100_000)
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the sweep's process to FILE")
    parser.add_argument(
        "--through-function", action="store_true", help="measure the sweep through function_app.drift_sweep"
    )
    parser.add_argument("--sweep", action="store_true", help=argparse.SUPPRESS)  # the measured process
    parser.add_argument("--function-sweep", action="store_true", help=argparse.SUPPRESS)  # the same, deployed
    args = parser.parse_args()
    if args.sweep:
        print(json.dumps(asyncio.run(sweep())))
        return 0
    if args.function_sweep:
        print(json.dumps(asyncio.run(function_sweep())))
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
