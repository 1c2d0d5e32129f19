"""How many simple GETs per second the simulator serves over HTTPS (keep-alive), latency injection off.

Starts `python -m cloudsim serve` in its own process on a generated tenant, then drives
GET /v1.0/applications/{id} from this process with a few keep-alive connections, and
prints requests, wall time, requests/s, CPU of both processes and the server's peak RSS.

    .venv/bin/python bench/simulator_throughput.py --seconds 10 --connections 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import ssl
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from cloudsim.generate import generate_tenant  # noqa: E402 - after making the repo importable
from cloudsim.testing import start_simulator_process  # noqa: E402


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _token(session: aiohttp.ClientSession, env: dict[str, str]) -> str:
    params = {"resource": "https://graph.microsoft.com", "api-version": "2019-08-01"}
    headers = {"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]}
    async with session.get(env["IDENTITY_ENDPOINT"], params=params, headers=headers) as response:
        return str((await response.json())["access_token"])


async def _drive(
    session: aiohttp.ClientSession, urls: list[str], headers: dict[str, str], deadline: float
) -> tuple[int, int]:
    done = failed = 0
    n = 0
    while time.monotonic() < deadline:
        async with session.get(urls[n % len(urls)], headers=headers) as response:
            await response.read()
            if response.status == 200:
                done += 1
            else:
                failed += 1
        n += 1
    return done, failed


async def run(seconds: float, connections: int, configs: int) -> dict[str, float]:
    tenant = generate_tenant(configs=configs, unmanaged_apps=configs // 10)
    with tempfile.TemporaryDirectory(prefix="cloudsim-bench-") as scratch:
        state = Path(scratch) / "state.json"
        state.write_text(json.dumps(tenant.world.to_json()), encoding="utf-8")
        # --lenient: 10,000 GETs a second is far past Graph's budget.
        server, env = await start_simulator_process(state, None, "--lenient")
        try:
            context = ssl.create_default_context(cafile=env["SSL_CERT_FILE"])
            connector = aiohttp.TCPConnector(ssl=context, limit=connections)  # keep-alive pool
            async with aiohttp.ClientSession(connector=connector) as session:
                headers = {"Authorization": f"Bearer {await _token(session, env)}"}
                urls = [f"{env['WIF_GRAPH_URL']}/v1.0/applications/{a.id}" for a in tenant.world.applications]
                await _drive(session, urls, headers, time.monotonic() + 0.5)  # warm up the connections
                server_cpu_0, client_cpu_0 = _process_cpu_s(server.pid), time.process_time()
                started = time.monotonic()
                deadline = started + seconds
                results = await asyncio.gather(
                    *(_drive(session, urls, headers, deadline) for _ in range(connections))
                )
                wall = time.monotonic() - started
                server_cpu = _process_cpu_s(server.pid) - server_cpu_0
                client_cpu = time.process_time() - client_cpu_0
            peak_rss = _peak_rss_mb(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            await asyncio.wait_for(server.wait(), timeout=10)
    ok = sum(done for done, _failed in results)
    return {
        "requests": ok,
        "failed": sum(failed for _done, failed in results),
        "wall_s": wall,
        "requests_per_s": ok / wall,
        "server_cpu_s": server_cpu,
        "client_cpu_s": client_cpu,
        "server_peak_rss_mb": peak_rss,
        "client_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--configs", type=int, default=500, help="size of the generated tenant")
    args = parser.parse_args()
    figures = asyncio.run(run(args.seconds, args.connections, args.configs))
    print(
        f"requests={figures['requests']:.0f} failed={figures['failed']:.0f} wall={figures['wall_s']:.2f}s "
        f"rate={figures['requests_per_s']:.0f} GET/s server_cpu={figures['server_cpu_s']:.2f}s "
        f"client_cpu={figures['client_cpu_s']:.2f}s server_peak_rss={figures['server_peak_rss_mb']:.0f}MB "
        f"client_peak_rss={figures['client_peak_rss_mb']:.0f}MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
