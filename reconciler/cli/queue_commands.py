"""`python -m reconciler submit | dlq list | dlq replay`: the operations side of the queues.

Wired into reconciler/cli/main.py with `register(commands)`. Service Bus comes from the same
settings as the Functions app (`ServiceBusConnection` or
`ServiceBusConnection__fullyQualifiedNamespace`), read from the environment.
Exit codes: 0 done, 1 partly done (a replay that did not find or could not send everything),
2 bad input (an invalid ticket is never sent).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from reconciler.cli.defaults import POLICY_HELP, policy_path
from reconciler.core.validation import Document, parse_config
from reconciler.documents import InputError, load_policy, parse_documents, read_bounded
from reconciler.state.queues import (
    QUEUES,
    REQUESTS_QUEUE,
    DeadLetter,
    Queues,
    QueueSettingsError,
    ReplayFailed,
)
from reconciler.state.tickets import SCHEMA_VERSION, TicketRejected

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_BAD_INPUT = 2


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    submit = commands.add_parser(
        "submit",
        help="send a ticket request to the `requests` queue (validated first; an invalid one is not sent)",
    )
    submit.add_argument(
        "file", type=Path, metavar="FILE", help="a ticket (JSON), or a config (YAML) to wrap into a ticket"
    )
    submit.add_argument("--request-id", help="for a config file (default: cli-<random>)")
    submit.add_argument("--requested-by", help="for a config file (default: the current user)")
    submit.add_argument("--action", choices=["upsert", "delete", "reconcile"], default="upsert")
    submit.add_argument("--policy", type=Path, help=POLICY_HELP)
    submit.set_defaults(run=_submit)

    dlq = commands.add_parser("dlq", help="inspect and replay dead-lettered messages")
    dlq_commands = dlq.add_subparsers(required=True, metavar="ACTION")
    listing = dlq_commands.add_parser("list", help="show dead-lettered messages (peek: nothing changes)")
    listing.add_argument("--queue", choices=QUEUES, default=REQUESTS_QUEUE)
    listing.add_argument("--max", type=int, default=100, dest="max_count")
    listing.set_defaults(run=_dlq_list)
    replay = dlq_commands.add_parser("replay", help="send dead-lettered messages back to their queue")
    replay.add_argument("--queue", choices=QUEUES, default=REQUESTS_QUEUE)
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every message in the dead-letter queue now")
    which.add_argument("sequence_numbers", nargs="*", type=int, default=[], metavar="SEQ")
    replay.set_defaults(run=_dlq_replay)


def _submit(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(policy_path(args.policy))
        body = _ticket_body(args)
    except InputError as error:
        return _bad_input(error.problems)

    async def send() -> str:
        async with Queues.from_settings(os.environ) as queues:
            ticket = await queues.submit_ticket(body, policy)
            return ticket.request_id

    try:
        request_id = asyncio.run(send())
    except TicketRejected as rejection:
        return _bad_input([f"the ticket was not sent: {rejection.reason}", *rejection.problems])
    except QueueSettingsError as error:
        return _bad_input([str(error)])
    print(f"submitted request {request_id} to the {REQUESTS_QUEUE} queue")
    return EXIT_OK


def _ticket_body(args: argparse.Namespace) -> bytes:
    """The file as a ticket: a JSON ticket as it is, a YAML (or JSON) config wrapped into one."""
    data = read_bounded(args.file)  # once: what is validated is what is sent, even from a pipe
    documents = parse_documents(data, args.file)
    if len(documents) != 1:
        raise InputError([f"{args.file}: expected one ticket or config, found {len(documents)} documents"])
    body = documents[0].body
    if isinstance(body, dict) and "schemaVersion" in body:
        if args.request_id or args.requested_by:
            raise InputError([f"{args.file}: a ticket names its own requestId and requestedBy"])
        if args.file.suffix == ".json":
            # Sent byte for byte, so what is validated is what is sent.
            return data
        return json.dumps(body, default=str).encode()  # a ticket written in YAML
    ticket: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "requestId": args.request_id or f"cli-{uuid.uuid4().hex}",
        "action": args.action,
        "requestedBy": args.requested_by or getpass.getuser(),
    }
    if args.action == "upsert":
        ticket["config"] = body
    else:
        config, problems = parse_config(Document(str(args.file), 1, body))
        if config is None:
            raise InputError(problems)
        ticket["configId"] = config.id
    return json.dumps(ticket).encode()


def _dlq_list(args: argparse.Namespace) -> int:
    async def peek() -> list[DeadLetter]:
        async with Queues.from_settings(os.environ) as queues:
            return await queues.list_dead_letters(args.queue, args.max_count)

    try:
        letters = asyncio.run(peek())
    except QueueSettingsError as error:
        return _bad_input([str(error)])
    print(f"{len(letters)} dead-lettered message(s) in {args.queue}")
    for letter in letters:
        when = letter.enqueued_time.isoformat(timespec="seconds") if letter.enqueued_time else "-"
        print(
            f"  #{letter.sequence_number}  id={letter.message_id or '-'}  enqueued={when}  "
            f"deliveries={letter.delivery_count}  session={letter.session_id or '-'}"
        )
        print(f"      reason: {letter.reason or '-'}: {letter.description or '-'}")
        if letter.problem:
            print(f"      problem: {letter.problem}")
        print(f"      body: {letter.body_excerpt!r}")
    return EXIT_OK


def _dlq_replay(args: argparse.Namespace) -> int:
    wanted = None if args.all else args.sequence_numbers
    if wanted == []:
        return _bad_input(["give the sequence numbers to replay, or --all"])

    async def replay() -> int:
        async with Queues.from_settings(os.environ) as queues:
            return await queues.replay_dead_letters(args.queue, wanted)

    try:
        replayed = asyncio.run(replay())
    except QueueSettingsError as error:
        return _bad_input([str(error)])
    except ReplayFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_PARTIAL
    print(f"replayed {replayed} message(s) to {args.queue}")
    if wanted is not None and replayed < len(set(wanted)):
        print(f"warning: {len(set(wanted)) - replayed} of the messages were not found", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def _bad_input(problems: list[str]) -> int:
    print(f"error: {problems[0]}", file=sys.stderr)
    for problem in problems[1:]:
        print(f"  - {problem}", file=sys.stderr)
    return EXIT_BAD_INPUT
