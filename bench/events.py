"""Drift events end to end (docs/events.md): the simulator (own process, 25 ms per request) emits
Azure's events to the AMQP peer's `events` queue; a small host receives from the peer with the real
Service Bus SDK and hands each delivery to the real trigger functions (`drift_events`,
`reconcile_apps`, sessions like the Functions host), with the tables in Azurite.

Three cases, each printed with wall, CPU, peak RSS, requests per API and its target:

1. 100 role assignments (of 100 applications) deleted one by one by another identity: each
   restored; p95 from deletion to restore <= 5 s;
2. a burst of 1,000 events (ADO audit entries, 10 per application) touching 100 applications:
   <= 100 reconcile passes;
3. 10,000 events about objects the reconciler does not manage: 0 reconcile passes, <= 1 table
   read each.

Exits 1 if a target is missed.

    .venv/bin/python bench/events.py [--configs 140] [--latency-ms 25] [--coalesce-seconds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import azure.functions as func  # noqa: E402 - after making the repo importable
from azure.functions.servicebus import ServiceBusMessage as HostMessage  # noqa: E402
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage  # noqa: E402
from azure.servicebus.aio import ServiceBusClient  # noqa: E402
from reconcile import peak_rss_mb, start_bench_tenant  # noqa: E402 - bench/ is on the path

import function_app  # noqa: E402
from cloudsim.events import ADO_CALLER_ID, PERSON, connection_audit_event, role_assignment_event  # noqa: E402
from cloudsim.generate import ROLES  # noqa: E402
from devhost.host import HostOptions  # noqa: E402
from devhost.index import ServiceBusFunction, index  # noqa: E402
from devhost.servicebus import QueueListener  # noqa: E402
from reconciler.app import context as app_context  # noqa: E402
from reconciler.app.events import DEFAULT_COALESCE_SECONDS, EventsOutcome  # noqa: E402
from reconciler.cli.table_commands import import_configs  # noqa: E402
from reconciler.core.model import FederationConfig  # noqa: E402
from reconciler.core.sharding import shard  # noqa: E402
from reconciler.state.queues import Queues  # noqa: E402
from servicebus_peer import QueueSpec, running_peer  # noqa: E402
from tests.azurite import connection_string, start_azurite, stop_azurite  # noqa: E402

BATCH = 100
QUEUES = (
    QueueSpec("requests", max_delivery_count=5, lock_duration=30.0),
    QueueSpec("reconcile", requires_session=True, max_delivery_count=5, lock_duration=60.0),
    QueueSpec("events", max_delivery_count=5, lock_duration=60.0),
)


def host_message(message: ServiceBusReceivedMessage) -> func.ServiceBusMessage:
    """The trigger's argument as the Python worker builds it."""
    return HostMessage(
        body=b"".join(message.body),
        message_id=str(message.message_id),
        session_id=message.session_id,
        delivery_count=message.delivery_count,
        application_properties={},
        user_properties={},
    )


class Outcomes(logging.Handler):
    """What `drift_events` logs for each delivery: the trigger's own account of reads and drops."""

    def __init__(self) -> None:
        super().__init__()
        self.total = Counter[str]()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "drift events: %s" and isinstance(record.args, tuple):
            outcome = record.args[0]
            if isinstance(outcome, EventsOutcome):
                self.total.update({k: v for k, v in vars(outcome).items() if v})


class Host:
    """Receives as the Functions host does and calls the trigger functions; counts the passes.

    `reconcile` through devhost's listener, the Service Bus extension's session processor with
    host.json's options: `maxConcurrentSessions` receivers, each waiting (attached) up to
    `tryTimeout` for the next available session and holding it until it is idle for
    `sessionIdleTimeout`. `events` in batches with prefetch, as the host does for
    `cardinality="many"` (devhost serves one message per invocation only)."""

    def __init__(self, connection: str, settings: dict[str, str]) -> None:
        self.connection = connection
        self.passes = Counter[str]()
        self.busy = 0
        self.errors = Counter[str]()  # what the triggers raised (the host would log it and redeliver)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        reconcile = index(function_app.app, settings).named("reconcile_apps")
        assert isinstance(reconcile, ServiceBusFunction) and reconcile.sessions
        self.options = HostOptions.read(REPO_ROOT / "host.json")
        self._reconcile = QueueListener(
            dataclasses.replace(reconcile, handler=self._counted(reconcile.handler)), connection, self.options
        )

    def _counted(self, handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        async def reconcile_apps(message: func.ServiceBusMessage) -> None:
            self.busy += 1
            try:
                self.passes[json.loads(message.get_body())["reason"]] += 1
                await handler(message=message)
            except Exception as error:  # devhost abandons it, so it is delivered again
                self.errors[f"reconcile_apps: {type(error).__name__}: {error}"[:200]] += 1
                raise
            finally:
                self.busy -= 1

        return reconcile_apps

    async def __aenter__(self) -> Host:
        self.client = ServiceBusClient.from_connection_string(self.connection)
        self._tasks = [
            asyncio.create_task(self._reconcile.run(self._stop)),
            asyncio.create_task(self._events()),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.close()

    async def _events(self) -> None:
        # Prefetch, as the Functions host does: without it the SDK releases a message that arrives
        # after a receive returned, which counts as a delivery (dead-lettered at the fifth).
        async with self.client.get_queue_receiver("events", prefetch_count=BATCH) as receiver:
            while not self._stop.is_set():
                batch = await receiver.receive_messages(max_message_count=BATCH, max_wait_time=0.2)
                if not batch:
                    continue
                self.busy += 1
                try:
                    await function_app.drift_events([host_message(m) for m in batch])
                    for message in batch:
                        await receiver.complete_message(message)
                except Exception as error:  # as the host: abandon the batch, so it is delivered again
                    self.errors[f"drift_events: {type(error).__name__}: {error}"[:200]] += 1
                    for message in batch:
                        await receiver.abandon_message(message)
                finally:
                    self.busy -= 1


async def quiet(peer: Any, host: Host, settle: float = 1.5, within: float = 600) -> None:
    """Until no queue holds a message (scheduled ones included) and nothing runs, for `settle` s."""
    deadline, calm_since = time.monotonic() + within, None
    while time.monotonic() < deadline:
        empty = not peer.messages("reconcile") and not peer.messages("events") and host.busy == 0
        if empty:
            calm_since = calm_since or time.monotonic()
            if time.monotonic() - calm_since >= settle:
                return
        else:
            calm_since = None
        await asyncio.sleep(0.1)
    raise TimeoutError("the queues did not drain")


async def figures(
    name: str, admin: Any, work: Callable[[], Awaitable[str]], outcomes: Outcomes, host: Host, peer: Any
) -> None:
    await admin.reset_counters()
    before = Counter(outcomes.total)
    wall, cpu = time.perf_counter(), time.process_time()
    result = await work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    counters = await admin.counters()
    requests = (
        ", ".join(
            f"{api} {sum(o['reads'] + o['writes'] for o in counters[api]['operations'].values())}"
            for api in ("graph", "arm", "ado")
            if api in counters
        )
        or "none to the clouds"
    )
    line = (
        f"{name}: {result}; wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {peak_rss_mb():.0f} MB; "
        f"requests {requests}"
    )
    print(line, flush=True)
    delta = Counter(outcomes.total)
    delta.subtract(before)
    dead = {q: len(peer.dead_letters(q)) for q in ("reconcile", "events") if peer.dead_letters(q)}
    print(f"    drift_events said: {dict(+delta)}; trigger errors {dict(host.errors)}; dead letters {dead}")


def pick_one_config_per_app(configs: list[FederationConfig], count: int) -> list[FederationConfig]:
    seen: dict[str, FederationConfig] = {}
    for config in configs:
        seen.setdefault(config.application.key, config)
    return list(seen.values())[:count]


async def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("proton").setLevel(logging.CRITICAL)  # the peer's AMQP library: closed links
    outcomes = Outcomes()
    logging.getLogger("reconciler").addHandler(outcomes)
    logging.getLogger("reconciler").setLevel(logging.INFO)
    logging.getLogger("reconciler").propagate = False
    workdir = Path(tempfile.mkdtemp(prefix="bench-events-"))
    azurite, port = start_azurite(workdir / "azurite.log")
    bench = await start_bench_tenant(args, "bench-events-")
    failures: list[str] = []
    try:
        with running_peer(QUEUES, tick_interval=0.02) as peer:
            caller = str(bench.state["caller_object_id"])
            policy = workdir / "policy.yaml"
            organizations = sorted({c.organization for c in bench.configs})
            policy.write_text(
                "apiVersion: wif-reconciler/v1\nkind: GrantPolicy\n"
                f"organizations: {json.dumps(organizations)}\nroles: {json.dumps(list(ROLES))}\n"
                "scopes: [/subscriptions/*/resourceGroups/*]\n"
            )
            settings = {
                "WIF_TABLE_CONNECTION_STRING": connection_string(port),
                "ServiceBusConnection": peer.connection_string,
                "WIF_POLICY_FILE": str(policy),
                "WIF_RECONCILER_IDENTITIES": f"{caller},{ADO_CALLER_ID}",
                "EVENT_COALESCE_SECONDS": str(args.coalesce_seconds),
            }
            os.environ.update(settings)
            await app_context.reset()
            await import_configs(settings, bench.configs, request_id="bench-import", out=io.StringIO())
            await bench.admin.deliver_events_to(peer.connection_string)
            async with Host(peer.connection_string, settings) as host:
                # The scene: one pass per application creates what the configs want and writes the
                # index; the simulator's events of those writes are the reconciler's own: dropped.
                async with Queues.from_settings(settings) as queues:
                    await queues.send_reconcile(
                        shard(bench.configs), reason="sweep", sweep_id="bench-initial"
                    )
                await quiet(peer, host)
                print(f"scene: {sum(host.passes.values())} passes; events {dict(outcomes.total)}", flush=True)
                await figures(
                    "100 deletions",
                    bench.admin,
                    lambda: deletions(args, bench, host, peer, failures),
                    outcomes,
                    host,
                    peer,
                )
                await figures(
                    "1,000-event burst",
                    bench.admin,
                    lambda: burst(bench, host, peer, outcomes, failures),
                    outcomes,
                    host,
                    peer,
                )
                await figures(
                    "10,000 unmanaged",
                    bench.admin,
                    lambda: unmanaged(bench, host, peer, outcomes, failures),
                    outcomes,
                    host,
                    peer,
                )
                if host.errors:
                    print(f"trigger errors (redelivered): {dict(host.errors)}", flush=True)
    finally:
        await app_context.reset()
        stop_azurite(azurite)
        bench.process.send_signal(signal.SIGTERM)
        await bench.process.wait()
    for failure in failures:
        print(f"MISSED: {failure}", file=sys.stderr)
    return 1 if failures else 0


async def managed_assignments(admin: Any) -> dict[str, dict[str, Any]]:
    """The reconciler's role assignments by id (as ARM spells it: the admin API matches it so)."""
    live = await admin.dump_state()
    return {
        f"{ra['scope']}/providers/Microsoft.Authorization/roleAssignments/{ra['name']}": ra
        for ra in live["role_assignments"]
        if "wif-reconciler" in (ra.get("description") or "")
    }


async def deletions(args: argparse.Namespace, bench: Any, host: Host, peer: Any, failures: list[str]) -> str:
    before = dict(host.passes)
    assignments = await managed_assignments(bench.admin)
    by_principal: dict[str, str] = {}
    for assignment_id, ra in sorted(assignments.items()):
        by_principal.setdefault(ra["principal_id"], assignment_id)
    chosen = list(by_principal.values())[:100]
    deleted_at: dict[str, float] = {}
    restored_at: dict[str, float] = {}

    async def watch() -> None:
        while len(restored_at) < len(chosen):
            present = await managed_assignments(bench.admin)
            now = time.monotonic()
            for assignment_id in list(deleted_at):
                if assignment_id not in restored_at and assignment_id in present:
                    restored_at[assignment_id] = now
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    for assignment_id in chosen:
        await bench.admin.delete_role_assignment(assignment_id)
        deleted_at[assignment_id] = time.monotonic()
        await asyncio.sleep(args.spacing)
    try:
        await asyncio.wait_for(watcher, timeout=120)
    except TimeoutError:
        failures.append(f"deletions: {len(chosen) - len(restored_at)} of {len(chosen)} not restored in 120 s")
    await quiet(peer, host)
    delays = sorted(restored_at[a] - deleted_at[a] for a in restored_at)
    p95 = delays[max(0, int(len(delays) * 0.95) - 1)] if delays else float("inf")
    if p95 > 5.0 or len(delays) < len(chosen):
        failures.append(f"deletions: p95 {p95:.2f} s (target <= 5 s), {len(delays)}/{len(chosen)} restored")
    passes = sum(host.passes.values()) - sum(before.values())
    return (
        f"{len(delays)}/{len(chosen)} restored, deletion->restore p50 {statistics.median(delays):.2f} s, "
        f"p95 {p95:.2f} s, max {delays[-1]:.2f} s (target p95 <= 5 s); {passes} reconcile passes"
    )


async def send_events(peer: Any, events: list[dict[str, Any]]) -> None:
    async with (
        ServiceBusClient.from_connection_string(peer.connection_string) as client,
        client.get_queue_sender("events") as sender,
    ):
        for start in range(0, len(events), BATCH):
            await sender.send_messages(
                [
                    ServiceBusMessage(json.dumps(e), content_type="application/json")
                    for e in events[start : start + BATCH]
                ]
            )


async def burst(bench: Any, host: Host, peer: Any, outcomes: Outcomes, failures: list[str]) -> str:
    live = await bench.admin.dump_state()
    # A connection is found by organization, project and name, as ADO keys it.
    projects = {
        p["id"]: (o["name"].lower(), p["name"].lower()) for o in live["organizations"] for p in o["projects"]
    }
    by_name = {
        (*projects[ref["project_id"]], ref["name"].lower()): endpoint["id"]
        for org in live["organizations"]
        for endpoint in org["endpoints"]
        for ref in endpoint["project_refs"]
    }
    chosen = pick_one_config_per_app(bench.configs, 100)
    events = []
    for config in chosen:
        connection_id = by_name[
            (config.organization.lower(), config.project.lower(), config.connection_name.lower())
        ]
        for _ in range(10):
            events.append(
                connection_audit_event(
                    config.organization, connection_id, config.connection_name, "Modified", PERSON
                )
            )
    before, read_before = sum(host.passes.values()), outcomes.total["index_reads"]
    await send_events(peer, events)
    await quiet(peer, host, settle=2.0 + float(os.environ["EVENT_COALESCE_SECONDS"]))
    passes = sum(host.passes.values()) - before
    if passes > 100:
        failures.append(f"burst: {passes} reconcile passes (target <= 100)")
    reads = outcomes.total["index_reads"] - read_before
    return (
        f"{len(events)} events on {len(chosen)} applications -> {passes} reconcile passes "
        f"(target <= 100); {reads} index reads"
    )


async def unmanaged(bench: Any, host: Host, peer: Any, outcomes: Outcomes, failures: list[str]) -> str:
    subscription = next(iter(bench.state["settings"]["subscriptions"]))
    events = [
        role_assignment_event(
            str(bench.state["tenant_id"]),
            f"/subscriptions/{subscription}/resourceGroups/rg-unmanaged-{n % 500}/providers/"
            f"Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
            "delete",
            PERSON,
        )
        for n in range(10_000)
    ]
    before = sum(host.passes.values())
    totals_before = Counter(outcomes.total)
    started = time.perf_counter()
    await send_events(peer, events)
    await quiet(peer, host)
    handled = time.perf_counter() - started
    passes = sum(host.passes.values()) - before
    delta = Counter(outcomes.total)
    delta.subtract(totals_before)
    per_event = delta["index_reads"] / max(1, delta["events"])
    if passes or per_event > 1 or delta["unmanaged"] != len(events):
        failures.append(
            f"unmanaged: {passes} passes, {per_event:.2f} reads per event, {delta['unmanaged']} dropped"
        )
    return (
        f"{delta['events']} events, {delta['unmanaged']} dropped as unmanaged -> {passes} reconcile passes "
        f"(target 0); {delta['index_reads']} table reads, {per_event:.2f} per event (target <= 1); "
        f"{len(events) / handled:.0f} events/s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs", type=int, default=140, help="configs in the generated tenant (about 100 apps)"
    )
    parser.add_argument("--unmanaged", type=int, default=100, help="unmanaged apps in the tenant")
    parser.add_argument("--latency-ms", type=float, default=25.0)
    parser.add_argument("--coalesce-seconds", type=float, default=DEFAULT_COALESCE_SECONDS)
    parser.add_argument("--spacing", type=float, default=0.1, help="seconds between two deletions")
    parser.add_argument("--seed", type=int, default=7)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
