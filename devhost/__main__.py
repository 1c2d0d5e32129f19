"""`python -m devhost [--port 7071] [--env-file FILE]`: run function_app.py locally, as `func start` would."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from devhost.host import HostJsonError, HostOptions, Keys
from devhost.index import HttpFunction, Index, NotServed, ServiceBusFunction, TimerFunction, index, load_app
from devhost.server import DevHost
from devhost.settings import SettingsError, export_settings, read_local_settings

log = logging.getLogger("devhost")
EXIT_BAD_SETUP = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument(
        "--script-root", type=Path, default=Path(), help="folder of function_app.py and host.json"
    )
    parser.add_argument(
        "--settings", type=Path, help="local settings file (default: local.settings.json there)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address of the HTTP routes (default: loopback)")
    parser.add_argument("--port", type=int, default=7071, help="port of the HTTP routes (0: a free one)")
    parser.add_argument(
        "--env-file",
        type=Path,
        help="write DEVHOST_URL, DEVHOST_FUNCTION_KEY and DEVHOST_MASTER_KEY here once ready",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = args.script_root.resolve()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        settings_file = args.settings or root / "local.settings.json"
        for name in export_settings(read_local_settings(settings_file), os.environ):
            log.info("Skipping '%s' from %s: the environment already sets it", name, settings_file.name)
        options = HostOptions.read(root / "host.json")
        options.apply_log_levels()
        app = load_app(root)
        indexed = index(app, os.environ)
    except (SettingsError, HostJsonError, NotServed) as error:
        print(f"devhost: {error}", file=sys.stderr)
        return EXIT_BAD_SETUP
    except Exception as error:  # the app's own import failed: name it, as the host does
        print(
            f"devhost: function_app.py could not be loaded: {type(error).__name__}: {error}", file=sys.stderr
        )
        return EXIT_BAD_SETUP
    return asyncio.run(_serve(indexed, options, args))


async def _serve(indexed: Index, options: HostOptions, args: argparse.Namespace) -> int:
    keys = Keys.generate()
    try:
        host = DevHost(indexed, options, keys, os.environ)
    except SettingsError as error:
        print(f"devhost: {error}", file=sys.stderr)
        return EXIT_BAD_SETUP
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        url = await host.start(args.host, args.port)
    except OSError as error:
        print(f"devhost: cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        await host.stop()
        return EXIT_BAD_SETUP
    _print_functions(indexed, url, options.route_prefix)
    if args.env_file:
        _write_env_file(args.env_file, url, keys)
    await stopping.wait()
    log.info("stopping: invocations under way finish first")
    await host.stop()
    return 0


def _print_functions(indexed: Index, url: str, prefix: str) -> None:
    lines = ["Functions:"]
    for function in indexed.functions:
        match function:
            case HttpFunction():
                route = "/".join(p for p in (prefix, function.route) if p)
                lines.append(
                    f"  {function.name}: [{','.join(function.methods)}] {url}/{route} ({function.auth_level})"
                )
            case ServiceBusFunction():
                sessions = ", sessions" if function.sessions else ""
                lines.append(f"  {function.name}: serviceBusTrigger (queue {function.queue}{sessions})")
            case TimerFunction():
                lines.append(f"  {function.name}: timerTrigger ({function.schedule.expression}, UTC)")
    for name, why in indexed.skipped:
        lines.append(f"  {name}: NOT SERVED: {why}")
    print("\n".join(lines), flush=True)


def _write_env_file(path: Path, url: str, keys: Keys) -> None:
    """The keys go to a file only the user can read, never to the terminal."""
    text = f"DEVHOST_URL={url}\nDEVHOST_FUNCTION_KEY={keys.function}\nDEVHOST_MASTER_KEY={keys.master}\n"
    partial = path.with_name(path.name + ".partial")
    partial.touch(mode=0o600)
    partial.write_text(text)
    partial.replace(path)  # appears whole: a script waiting for it never reads half a file


if __name__ == "__main__":
    sys.exit(main())
