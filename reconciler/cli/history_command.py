"""`python -m reconciler history CONFIG_ID`: the drift repaired for a config, newest first, with
when it was detected, by which source (an event, the sweep) and who made the change
(docs/events.md). The table is chosen by the environment, as for `import` and `export`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from reconciler.cli.table_commands import EXIT_OK, _stores
from reconciler.core.identifiers import ConfigId, IdentifierError
from reconciler.documents import InputError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = commands.add_parser(
        "history", help="the drift repaired for a config: what changed, when, which source, who"
    )
    history.add_argument("config_id", metavar="CONFIG_ID", help="e.g. contoso/payments/kv-reader")
    history.add_argument("--limit", type=int, default=50, help="at most this many repairs (default 50)")
    history.add_argument("--output", choices=["table", "json"], default="table")
    history.set_defaults(run=run_history)


def run_history(args: argparse.Namespace) -> int:
    try:
        config_id = str(ConfigId(args.config_id, "CONFIG_ID"))
    except IdentifierError as error:
        raise InputError([str(error)]) from None
    if not 1 <= args.limit <= 1000:
        raise InputError(["--limit: expected 1 to 1000"])
    return asyncio.run(show_history(os.environ, config_id, args.limit, args.output, sys.stdout))


async def show_history(
    settings: Mapping[str, str], config_id: str, limit: int, output: str, out: TextIO
) -> int:
    async with _stores(settings) as stores:
        if await stores.configs.get(config_id) is None:
            raise InputError([f"CONFIG_ID: no config {config_id} in the desired-state table"])
        repairs = await stores.history.list(config_id, limit)
    if output == "json":
        json.dump({"configId": config_id, "repairs": [r.as_json() for r in repairs]}, out, indent=2)
        out.write("\n")
        return EXIT_OK
    if not repairs:
        out.write(f"{config_id}: no drift repaired\n")
    for repair in repairs:
        out.write(
            f"{repair.repaired_at}  {repair.source:<11}  detected {repair.detected_at or '-'}"
            f"  by {repair.actor or 'unknown'}\n"
        )
        for change in repair.changes:
            out.write(f"    {change}\n")
    return EXIT_OK
