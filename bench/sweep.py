"""The deployed drift sweep through the Functions code path, against the CLI's bulk pass on the same tenant.

The timer function `function_app.drift_sweep` is called with a real `azure.functions` TimerRequest, as
the host calls it; it runs the service and the engine against:
- the simulator in its own process, 25 ms added per request, Graph's resource-unit budget and ARM's
  buckets on (Azure's limits, `cloudsim.limits.Limits()`) once the tenant is set up;
- Azurite for the tables (its access log counts the table writes, at the network boundary);
- the AMQP Service Bus peer in its own process for the queues. The `reconcile` messages are received
  as the host receives them (8 sessions at a time, peek-lock) and handed to `function_app.reconcile_apps`.

Set-up (not measured): the tenant of `bench/reconcile.py` (N configs, M unmanaged apps), the configs
imported into the table as `python -m reconciler import` does, everything created by one engine pass
with the limits off, then a first sweep (it writes each config's first status row).

Cases:
(a) converged: the CLI's bulk pass (`plan`: one dry run) and the sweep, in the same run. Targets:
    sweep requests <= 1.25x the bulk pass, 0 messages, 0 table writes.
(b) repair after 10% drift: the sweep, then its reconcile messages through the reconcile trigger.
    Target: requests <= bulk pass + writes + 3 per drifted application. Then a last sweep must find
    nothing to repair.

    .venv/bin/python bench/sweep.py                      # 5,000 configs, 15,000 unmanaged apps, 25 ms
    .venv/bin/python bench/sweep.py --configs 500 --unmanaged 1500
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from azure.functions.servicebus import ServiceBusMessage as TriggerMessage  # noqa: E402
from azure.functions.timer import TimerRequest  # noqa: E402
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceivedMessage  # noqa: E402
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient, ServiceBusReceiver  # noqa: E402
from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError  # noqa: E402
from reconcile import BenchTenant, bench_policy, inject_drift, start_bench_tenant, tenant_arguments  # noqa: E402 - bench/ is on the path

import function_app  # noqa: E402
from cloudsim.generate import ROLES  # noqa: E402
from cloudsim.limits import Limits  # noqa: E402
from reconciler.adapters.metering import RequestMeter  # noqa: E402
from reconciler.app import context as app_context  # noqa: E402
from reconciler.cli.table_commands import import_configs  # noqa: E402
from reconciler.cloud import cloud_from_settings  # noqa: E402
from reconciler.engine.run import connect  # noqa: E402
from tests.azurite import TableRequests, connection_string, start_azurite, stop_azurite  # noqa: E402

MAX_CONCURRENT_SESSIONS = 8  # host.json's extensions.serviceBus.maxConcurrentSessions
MAX_LOCK_RENEWAL_S = 600.0  # host.json's extensions.serviceBus.maxAutoLockRenewalDuration
IMPORTERS = 8  # concurrent importers for the set-up (each config is written ETag-guarded)
SESSION_IDLE_S = 0.5  # how long a session receiver waits for another message before letting go


@dataclass
class Case:
    name: str
    requests: dict[str, dict[str, int]] = field(default_factory=dict)  # per API: reads, writes
    messages: int = 0
    apps: int = 0  # applications named in the messages
    unsettled: int = 0  # messages whose settlement failed (the host would see them again)
    table_writes: list[tuple[str, str]] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0

    @property
    def total(self) -> int:
        return sum(c["reads"] + c["writes"] for c in self.requests.values())

    @property
    def writes(self) -> int:
        return sum(c["writes"] for c in self.requests.values())

    def row(self) -> str:
        per_api = ", ".join(f"{api} {c['reads']}r/{c['writes']}w" for api, c in sorted(self.requests.items()))
        batches = sum(1 for _, path in self.table_writes if path.endswith("/$batch"))
        return (
            f"| {self.name} | {self.total:,} ({per_api}) | {self.messages} ({self.apps} apps) "
            f"| {len(self.table_writes)} ({batches} transactions) | {self.wall:.1f} s | {self.cpu:.1f} s "
            f"| {peak_rss_mb():.0f} MB |"
        )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def delta(
    after: Mapping[str, dict[str, int]], before: Mapping[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    return {
        api: {kind: counts[kind] - before.get(api, {}).get(kind, 0) for kind in ("reads", "writes")}
        for api, counts in after.items()
        if counts != before.get(api)
    }


async def engine_meter() -> RequestMeter:
    """The meter of the worker's one engine (reconciler/app/context.py): every request the sweep and
    the reconcile messages send to Graph, ARM and ADO, counted at the transport (retries included)."""
    service = await app_context.service()
    async with service._engine() as engine:  # the meter the worker keeps
        return engine.meter


async def measure(case: Case, tables: TableRequests, work: Callable[[], Awaitable[None]]) -> Case:
    meter = await engine_meter()
    before = meter.as_dict()
    tables.mark()
    wall, cpu = time.perf_counter(), time.process_time()
    await work()
    case.wall, case.cpu = time.perf_counter() - wall, time.process_time() - cpu
    case.requests = delta(meter.as_dict(), before)
    case.table_writes = tables.writes_since_mark()
    return case


def as_the_host_passes_it(message: ServiceBusReceivedMessage) -> TriggerMessage:
    return TriggerMessage(
        body=b"".join(message.body),
        message_id=str(message.message_id),
        session_id=message.session_id,
        delivery_count=message.delivery_count,
        application_properties={},
        user_properties={},
    )


async def run_reconcile_trigger(connection: str, case: Case) -> None:
    """Receive `reconcile` as the host does (sessions, peek-lock, the session lock renewed while a message
    runs; complete on return, abandon on a raise), MAX_CONCURRENT_SESSIONS at a time, until no session
    has messages."""
    renewer = AutoLockRenewer(max_lock_renewal_duration=MAX_LOCK_RENEWAL_S)
    async with ServiceBusClient.from_connection_string(connection, retry_total=0) as client, renewer:

        async def one_worker() -> None:
            while True:
                try:
                    receiver = client.get_queue_receiver(
                        "reconcile",
                        session_id=NEXT_AVAILABLE_SESSION,
                        max_wait_time=SESSION_IDLE_S,
                        auto_lock_renewer=renewer,
                    )
                    async with receiver:
                        while batch := await receiver.receive_messages(max_wait_time=SESSION_IDLE_S):
                            for received in batch:
                                case.messages += 1
                                case.apps += len(json.loads(b"".join(received.body))["apps"])
                                await handle(receiver, received, case)
                except OperationTimeoutError:  # no session has messages
                    return

        await asyncio.gather(*(one_worker() for _ in range(MAX_CONCURRENT_SESSIONS)))


async def handle(receiver: ServiceBusReceiver, received: ServiceBusReceivedMessage, case: Case) -> None:
    try:
        await function_app.reconcile_apps(as_the_host_passes_it(received))
    except Exception:
        settle = receiver.abandon_message
    else:
        settle = receiver.complete_message
    try:
        await settle(received)
    except ServiceBusError:  # e.g. the session lock was lost: the host would get the message again
        case.unsettled += 1


async def sweep(name: str, connection: str, tables: TableRequests) -> Case:
    """One timer run, and the reconcile messages it sent, through the trigger functions."""
    case = Case(name)

    async def timer_then_messages() -> None:
        await function_app.drift_sweep(TimerRequest(past_due=False))
        await run_reconcile_trigger(connection, case)

    return await measure(case, tables, timer_then_messages)


def start_peer(workdir: Path) -> tuple[subprocess.Popen[str], str]:
    """The Service Bus peer in its own process; its first line of output is the connection string."""
    process = subprocess.Popen(
        [sys.executable, "-m", "servicebus_peer", "serve", "--queue", "requests",
         "--session-queue", "reconcile", "--max-delivery-count", "5"],
        stdout=subprocess.PIPE, stderr=(workdir / "peer.log").open("w"), text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def write_policy(path: Path, organizations: set[str]) -> None:
    policy = {
        "apiVersion": "wif-reconciler/v1",
        "kind": "GrantPolicy",
        "organizations": sorted(organizations),
        "roles": list(ROLES),
        "scopes": ["/subscriptions/*/resourceGroups/*"],
    }
    path.write_text(json.dumps(policy))  # JSON is YAML


async def run(args: argparse.Namespace) -> int:
    bench = await start_bench_tenant(args, "bench-sweep-")
    workdir = Path(tempfile.mkdtemp(prefix="bench-sweep-services-"))
    azurite, port = start_azurite(workdir / "azurite.log")
    peer, bus = start_peer(workdir)
    try:
        return await cases(args, bench, workdir, connection_string(port), bus, port)
    finally:
        await app_context.reset()
        stop_azurite(azurite)
        peer.send_signal(signal.SIGTERM)
        peer.wait(timeout=10)
        bench.process.send_signal(signal.SIGTERM)
        await bench.process.wait()


async def cases(
    args: argparse.Namespace, bench: BenchTenant, workdir: Path, tables_at: str, bus: str, port: int
) -> int:
    configs, admin = bench.configs, bench.admin
    policy = bench_policy(configs)
    write_policy(workdir / "policy.yaml", {c.organization.lower() for c in configs})
    os.environ.update(
        WIF_TABLE_CONNECTION_STRING=tables_at,
        ServiceBusConnection=bus,
        WIF_POLICY_FILE=str(workdir / "policy.yaml"),
        DRIFT_SCHEDULE="0 */30 * * * *",
    )
    tables = TableRequests(workdir / "azurite.log", port)
    cloud = cloud_from_settings(os.environ)

    started = time.perf_counter()
    assert (
        await import_configs(os.environ, configs, request_id="bench-import", out=io.StringIO(), policy=policy)
        == 0
    )
    async with connect(cloud, policy) as reconciler:
        created = await reconciler.run(configs)
    failed = Counter(str(o.status) for o in created.outcomes)
    await admin.set_limits(Limits())  # Azure's limits from here on: Graph's budget, ARM's buckets
    first = await sweep("first sweep (set-up: first status rows)", bus, tables)
    print(
        f"set-up: imported, created ({dict(failed)}) and swept once in {time.perf_counter() - started:.0f} s"
    )

    async with connect(cloud, policy) as reconciler:
        wall, cpu = time.perf_counter(), time.process_time()
        # What `python -m reconciler plan --from-table` runs: the whole desired state, orphans looked for.
        bulk_report = await reconciler.run(configs, dry_run=True, find_orphans=True)
        bulk = Case("CLI bulk pass (`plan`)", requests=bulk_report.requests)
        bulk.wall, bulk.cpu = time.perf_counter() - wall, time.process_time() - cpu
    converged = await sweep("(a) converged sweep", bus, tables)

    broken = await inject_drift(admin, bench.state, 0.10, args.seed)
    repair = await sweep(f"(b) repair after 10% drift ({broken} objects)", bus, tables)
    after = await sweep("sweep after the repair", bus, tables)

    print("\n| case | requests (per API: reads/writes) | messages | table writes | wall | CPU | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for case in (first, bulk, converged, repair, after):
        print(case.row())
    repair_budget = bulk.total + repair.writes + 3 * repair.apps
    checks = {
        f"(a) sweep requests {converged.total} <= 1.25 x bulk pass {bulk.total}": converged.total
        <= 1.25 * bulk.total,
        f"(a) messages {converged.messages} == 0": converged.messages == 0,
        f"(a) table writes {len(converged.table_writes)} == 0": not converged.table_writes,
        f"(b) requests {repair.total} <= bulk {bulk.total} + writes {repair.writes} + 3 x {repair.apps} "
        f"apps = {repair_budget}": repair.total <= repair_budget,
        f"(b) a sweep after the repair sends {after.messages} messages (0)": after.messages == 0,
        f"every message settled ({sum(c.unsettled for c in (first, converged, repair, after))} not)": not any(
            c.unsettled for c in (first, converged, repair, after)
        ),
    }
    print()
    for check, ok in checks.items():
        print(f"{'ok  ' if ok else 'MISS'} {check}")
    return 0 if all(checks.values()) else 1


def main() -> int:
    return asyncio.run(run(tenant_arguments(__doc__).parse_args()))


if __name__ == "__main__":
    sys.exit(main())
