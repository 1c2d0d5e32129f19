"""The converged CLI `plan` of 5,000 configs against a per-object reader, on one simulator in one run.

The per-object reader is what a Terraform refresh does: one GET per object it has in its state
(each application, service principal, federated credential, role assignment and service
connection, by id), 10 at a time (Terraform's default parallelism), retrying a 429 after its
Retry-After as the providers' HTTP clients do. The CLI is `python -m reconciler plan` in its own
process (reading the YAML file, validating, observing in bulk, planning). Both run against the
same simulator process: a generated tenant already converged (bench/converged.py), 25 ms added
to every request, Graph's budget and ARM's buckets on (ADO's window, whose cost per request is
an assumption, off for both). Printed: requests per API (as each client sent them, and the
operations the simulator served, a $batch's requests counted one by one), throttled, wall.
Also printed: how long the CLI's first step, reading and validating the 5,000 configs' YAML, takes.
Target (issue 12): the CLI at least 20x faster. Exits 1 otherwise, or if the plan is not empty.

    .venv/bin/python bench/per_object.py                     # 5,000 configs, 15,000 unmanaged apps
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

import httpx  # noqa: E402 - after making the repo importable
from converged import converge, parsed_configs  # noqa: E402 - bench/ is on the path
from reconcile import tenant_arguments  # noqa: E402

from cloudsim.generate import ROLES, generate_tenant  # noqa: E402
from cloudsim.limits import Limits  # noqa: E402
from cloudsim.state import World  # noqa: E402
from cloudsim.testing import AdminClient, start_simulator_process  # noqa: E402
from reconciler import documents  # noqa: E402
from reconciler.cloud import Cloud, cloud_from_settings  # noqa: E402
from reconciler.documents import load_configs  # noqa: E402
from reconciler.engine.run import default_credential  # noqa: E402
from reconciler.failures import retry_after_seconds  # noqa: E402

PARALLELISM = 10  # terraform's -parallelism default
ATTEMPTS = 10


@dataclass
class Figures:
    wall: float
    sent: Counter[str]  # HTTP requests per API, as the client sent them
    served: dict[str, Any]  # the simulator's counters


def object_urls(world: World, cloud: Cloud) -> list[tuple[str, str]]:
    """(API, URL) of every object a Terraform state of these configs would hold, read by id."""
    graph, arm, ado = f"{cloud.graph_url}/v1.0", cloud.arm_url, cloud.ado_url
    managed = {ra.principal_id for ra in world.role_assignments}
    principals = {sp.app_id: sp for sp in world.service_principals if sp.id in managed}
    urls: list[tuple[str, str]] = []
    for app in world.applications:
        sp = principals.get(app.app_id)
        if sp is None:
            continue  # not one of the configs' applications
        urls.append(("graph", f"{graph}/applications/{app.id}"))
        urls.append(("graph", f"{graph}/servicePrincipals/{sp.id}"))
        urls += [
            ("graph", f"{graph}/applications/{app.id}/federatedIdentityCredentials/{f.id}")
            for f in app.federated_credentials
        ]
    urls += [
        (
            "arm",
            f"{arm}{ra.scope}/providers/Microsoft.Authorization/roleAssignments/{ra.name}?api-version=2022-04-01",
        )
        for ra in world.role_assignments
    ]
    for org in world.organizations:
        projects = {p.id: p.name for p in org.projects}
        urls += [
            (
                "ado",
                f"{ado}/{org.name}/{projects[e.project_refs[0].project_id]}/_apis/serviceendpoint/endpoints/{e.id}"
                "?api-version=7.1",
            )
            for e in org.endpoints
        ]
    return urls


async def per_object_refresh(urls: list[tuple[str, str]], cloud: Cloud) -> Counter[str]:
    credential = default_credential(cloud)
    scopes = {"graph": cloud.graph_scope, "arm": cloud.arm_scope, "ado": cloud.ado_scope}
    tokens = {api: (await credential.get_token(scope)).token for api, scope in scopes.items()}
    await credential.close()
    sent: Counter[str] = Counter()
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for item in urls:
        queue.put_nowait(item)
    async with httpx.AsyncClient(verify=cloud.ca_bundle or True, timeout=60) as http:

        async def worker() -> None:
            while not queue.empty():
                api, url = queue.get_nowait()
                for _ in range(ATTEMPTS):
                    sent[api] += 1
                    response = await http.get(url, headers={"Authorization": f"Bearer {tokens[api]}"})
                    if response.status_code not in (429, 503):
                        response.raise_for_status()
                        break
                    await asyncio.sleep(retry_after_seconds(response.headers.get("Retry-After"), default=1.0))
                else:
                    raise RuntimeError(f"{url} still throttled after {ATTEMPTS} attempts")

        await asyncio.gather(*(worker() for _ in range(PARALLELISM)))
    return sent


async def measured(admin: AdminClient, work: Any) -> tuple[float, Any, dict[str, Any]]:
    await admin.reset_counters()
    started = time.perf_counter()
    result = await work
    return time.perf_counter() - started, result, await admin.counters()


async def cli_plan(configs_path: Path, policy_path: Path, env: dict[str, str]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reconciler", "plan", "--configs", str(configs_path),
        "--policy", str(policy_path), "--cloud", "simulator", "--output", "json",
        cwd=REPO_ROOT, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"plan exited {process.returncode}: drift or failures where none should be")
    result: dict[str, Any] = json.loads(out)
    return result


def policy_yaml() -> str:
    roles = ", ".join(f'"{r}"' for r in ROLES)
    return (
        "apiVersion: wif-reconciler/v1\nkind: GrantPolicy\norganizations: [contoso, fabrikam]\n"
        f"roles: [{roles}]\nscopes: [/subscriptions/*/resourceGroups/*]\n"
    )


def line(name: str, wall: float, sent: dict[str, int], served: dict[str, Any]) -> str:
    apis = ("graph", "arm", "ado")
    operations = sum(served.get(a, {}).get("reads", 0) + served.get(a, {}).get("writes", 0) for a in apis)
    throttled = sum(served.get(a, {}).get("throttled", 0) for a in apis)
    per_api = ", ".join(f"{a} {sent.get(a, 0):,}" for a in apis)
    return f"| {name} | {sum(sent.values()):,} ({per_api}) | {operations:,} | {throttled:,} | {wall:.1f} s |"


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-per-object-"))
    tenant = generate_tenant(configs=args.configs, unmanaged_apps=args.unmanaged, seed=args.seed)
    configs = parsed_configs(tenant)
    converge(tenant.world, configs)
    (workdir / "state.json").write_text(json.dumps(tenant.world.to_json()))
    (workdir / "configs.yaml").write_text(tenant.configs_yaml())
    wall, cpu = time.perf_counter(), time.process_time()
    loaded = load_configs([workdir / "configs.yaml"])  # what the CLI does first: read and validate
    print(
        f"loading {len(loaded):,} configs (YAML, validated): {time.perf_counter() - wall:.2f} s wall, "
        f"{time.process_time() - cpu:.2f} s CPU (libyaml: {documents._CLoader is not None})",
        flush=True,
    )
    (workdir / "policy.yaml").write_text(policy_yaml())
    latency = {"latency_ms": args.latency_ms}
    (workdir / "faults.json").write_text(json.dumps({"graph": latency, "arm": latency, "ado": latency}))
    simulator, env = await start_simulator_process(
        workdir / "state.json", None, "--faults", str(workdir / "faults.json"), startup_timeout=300
    )
    try:
        admin = AdminClient(env["WIF_SIMULATOR_ADMIN_URL"], Path(env["REQUESTS_CA_BUNDLE"]))
        await admin.set_limits(Limits(ado_tstus=0))  # Graph's budget and ARM's buckets on
        full_env = {**os.environ, **env}
        cloud = cloud_from_settings(full_env)
        os.environ.update(env)  # the per-object reader's credential finds the simulator's token endpoint
        urls = object_urls(tenant.world, cloud)
        print(
            f"tenant: {len(configs):,} configs, {args.unmanaged:,} unmanaged apps, {len(urls):,} objects "
            f"in the state; {args.latency_ms:.0f} ms added per request; machine: {os.cpu_count()} cores",
            flush=True,
        )
        cli_wall, plan_json, cli_served = await measured(
            admin, cli_plan(workdir / "configs.yaml", workdir / "policy.yaml", full_env)
        )
        await admin.set_limits(Limits(ado_tstus=0))  # both start with full budgets
        per_wall, per_sent, per_served = await measured(admin, per_object_refresh(urls, cloud))
    finally:
        simulator.send_signal(signal.SIGTERM)
        await simulator.wait()
    cli_sent = {api: c["reads"] + c["writes"] for api, c in plan_json["requests"].items()}
    print("| reader | HTTP requests sent | operations served | throttled (429) | wall |")
    print("|---|---|---|---|---|")
    print(line("CLI `plan` (bulk)", cli_wall, cli_sent, cli_served))
    print(line(f"per object, parallelism {PARALLELISM}", per_wall, dict(per_sent), per_served))
    speedup = per_wall / cli_wall
    converged = not plan_json["plan"]["actions"]
    print(f"the CLI is {speedup:.0f}x faster; its plan is {'empty' if converged else 'NOT empty'}")
    return 0 if speedup >= 20 and converged else 1


def main() -> int:
    return asyncio.run(run(tenant_arguments(__doc__).parse_args()))


if __name__ == "__main__":
    sys.exit(main())
