"""`python -m servicebus_peer serve --port 5672 --queue requests --session-queue reconcile`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from servicebus_peer.model import QueueSpec
from servicebus_peer.server import ServiceBusPeer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m servicebus_peer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a loopback Service Bus peer until SIGINT/SIGTERM")
    serve.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free one)")
    serve.add_argument("--queue", action="append", default=[], help="a plain queue (repeatable)")
    serve.add_argument("--session-queue", action="append", default=[], help="a queue that requires sessions")
    serve.add_argument("--max-delivery-count", type=int, default=10)
    serve.add_argument("--lock-duration", type=float, default=30.0, help="seconds")
    serve.add_argument("--max-message-size", type=int, default=256 * 1024, help="bytes (Standard: 256 KiB)")
    return parser


def serve(args: argparse.Namespace) -> int:
    common = {
        "max_delivery_count": args.max_delivery_count,
        "lock_duration": args.lock_duration,
        "max_message_size": args.max_message_size,
    }
    queues = [QueueSpec(name, **common) for name in args.queue]
    queues += [QueueSpec(name, requires_session=True, **common) for name in args.session_queue]
    if not queues:
        print("serve: give at least one --queue or --session-queue", file=sys.stderr)
        return 2
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with ServiceBusPeer(queues, port=args.port) as peer:
        # One line a script can read to connect.
        print(peer.connection_string, flush=True)
        while not stopping.wait(0.5):
            pass
    print("servicebus_peer: stopped", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
