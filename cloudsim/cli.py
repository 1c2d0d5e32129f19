"""Command line: serve the simulator as a process, or generate a tenant for benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from pathlib import Path

import yaml

from cloudsim.faults import Faults
from cloudsim.limits import Limits
from cloudsim.server import Simulator
from cloudsim.state import World


def _load_world(path: Path) -> World:
    """The start state: JSON, or YAML for a .yaml/.yml file; a missing file is an empty tenant."""
    if not path.exists():
        return World.from_json({})
    text = path.read_text(encoding="utf-8")
    raw = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    return World.from_json(raw or {})


def _load_faults(path: Path | None) -> dict[str, Faults]:
    if path is None:
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {api: Faults.from_json(settings) for api, settings in raw.items()}


async def serve(args: argparse.Namespace) -> int:
    world = _load_world(args.state)
    simulator = Simulator(
        world,
        faults=_load_faults(args.faults),
        identity_header=args.identity_header,
        limits=Limits.lenient() if args.lenient else Limits(),
    )
    stopping = _stop_on_signals()  # before the environment is printed: a caller may stop us at once
    # The CA goes to a temporary folder unless asked elsewhere, removed however the server stops
    # (a signal, or an error while starting): nothing is left behind in /tmp.
    with tempfile.TemporaryDirectory(prefix="cloudsim-") as scratch:
        await simulator.start(args.ca_file or Path(scratch) / "ca.pem", port=args.port)
        try:
            lines = [f"{name}={value}" for name, value in simulator.env().items()]
            if args.env_file:
                args.env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
            print("\n".join(lines), flush=True)
            await stopping.wait()
        finally:
            await simulator.stop()
    print("cloudsim: stopped", file=sys.stderr, flush=True)
    return 0


def _stop_on_signals() -> asyncio.Event:
    """Set at SIGTERM, SIGINT (Ctrl-C) or SIGHUP (the terminal closed)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, stopping.set)
    return stopping


def _generate(args: argparse.Namespace) -> int:
    from cloudsim.generate import generate_tenant  # noqa: PLC0415 - only this command needs it

    tenant = generate_tenant(configs=args.configs, unmanaged_apps=args.unmanaged, seed=args.seed)
    args.state.write_text(json.dumps(tenant.world.to_json(), indent=1), encoding="utf-8")
    args.configs_file.write_text(tenant.configs_yaml(), encoding="utf-8")
    print(f"cloudsim: wrote {args.state} and {args.configs_file} ({args.configs} configs)", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m cloudsim", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve Graph, ARM, ADO, the MI endpoint and /_sim/ over HTTPS")
    run.add_argument("--port", type=int, default=0, help="first port (APIs take N..N+4); 0 = free ports")
    run.add_argument(
        "--state", type=Path, required=True, help="state JSON or YAML to start from (missing = empty)"
    )
    run.add_argument("--env-file", type=Path, help="also write the NAME=value lines here")
    run.add_argument("--ca-file", type=Path, help="where to write the CA PEM (default: a temp dir)")
    run.add_argument("--faults", type=Path, help='JSON {"graph": {...Faults}, "arm": {...}, ...}')
    run.add_argument(
        "--lenient",
        action="store_true",
        help="turn Azure's rate limits off (only for runs that need more than Azure allows)",
    )
    run.add_argument("--identity-header", help="IDENTITY_HEADER value (default: random)")
    make = commands.add_parser("generate", help="write a tenant state and matching desired configs")
    make.add_argument("--configs", type=int, default=100, help="desired configs (N)")
    make.add_argument("--unmanaged", type=int, default=20, help="unmanaged apps with foreign FICs (M)")
    make.add_argument("--seed", type=int, default=1)
    make.add_argument("--state", type=Path, required=True, help="simulator state JSON to write")
    make.add_argument("--configs-file", type=Path, required=True, help="desired configs YAML to write")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        return asyncio.run(serve(args))
    return _generate(args)
