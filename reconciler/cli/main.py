"""`python -m reconciler`: validate configs, plan, and apply.

Exit codes: 0 valid / converged, 1 drift or failures remain, 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler.adapters.pacing import Budgets
from reconciler.cli import queue_commands, table_commands
from reconciler.cli.snapshot import load_snapshot
from reconciler.cloud import Cloud, CloudError, cloud_from_settings
from reconciler.core.model import FederationConfig
from reconciler.core.plan import plan
from reconciler.core.policy import GrantPolicy
from reconciler.documents import InputError, load_configs, load_policy
from reconciler.engine.run import EngineOptions, RunReport, connect, default_credential
from reconciler.render import plan_to_json, plan_to_table, report_to_json, report_to_table
from reconciler.state.configs import split_retired
from reconciler.state.stores import open_stores

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_BAD_INPUT = 2
DEFAULT_POLICY = "policy.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except BrokenPipeError:
        # The reader went away (`... | head`): not an error of ours, and nothing left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except InputError as error:
        print(f"error: {len(error.problems)} problem(s) in the input:", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CloudError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reconciler",
        description="Keep Azure Pipelines workload identity federation converged with a desired state.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate", help="check config files (and, with --policy, the grant policy)"
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument("--policy", type=Path, help="also check every config against this grant policy")
    validate.set_defaults(run=_validate)

    plan_cmd = commands.add_parser(
        "plan", help="show what would change: against the live clouds, or a snapshot with --observed"
    )
    _add_desired_state_arguments(plan_cmd)
    plan_cmd.add_argument(
        "--observed", type=Path, metavar="SNAPSHOT.json", help="plan against this snapshot, offline"
    )
    plan_cmd.set_defaults(run=_plan, dry_run=True)

    apply_cmd = commands.add_parser("apply", help="make the live clouds match the configs")
    _add_desired_state_arguments(apply_cmd)
    apply_cmd.add_argument("--dry-run", action="store_true", help="observe and plan, write nothing")
    apply_cmd.set_defaults(run=_apply, observed=None)
    table_commands.register(commands)
    queue_commands.register(commands)
    return parser


def _add_desired_state_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--configs", type=Path, action="append", default=[], metavar="FILE")
    command.add_argument(
        "--from-table",
        action="store_true",
        help="read the desired configs from the desired-state table instead ($WIF_TABLE_CONNECTION_STRING, "
        "or $WIF_TABLE_ENDPOINT with the default credential); deleted ones are pruned as retired",
    )
    command.add_argument(
        "--retired",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="configs that were deleted: what they own is pruned (as their prune mode says)",
    )
    command.add_argument(
        "--policy", type=Path, help=f"grant policy (default: $WIF_POLICY_FILE or {DEFAULT_POLICY})"
    )
    command.add_argument(
        "--cloud",
        help="AzureCloud, AzureUSGovernment, AzureChinaCloud, or simulator/custom (endpoints from "
        "WIF_GRAPH_URL, WIF_ARM_URL, WIF_ADO_URL); default $WIF_CLOUD or AzureCloud",
    )
    command.add_argument(
        "--pipelines",
        action="store_true",
        help="also read every connection's pipeline permissions (one request each; no bulk read exists)",
    )
    command.add_argument("--output", choices=["table", "json"], default="table")


def _validate(args: argparse.Namespace) -> int:
    configs = load_configs(args.files)
    if args.policy:
        policy = load_policy(args.policy)
        violations = [str(v) for config in configs for v in policy.check(config)]
        if violations:
            raise InputError(violations)
    print(f"{len(configs)} config(s) valid in {len(args.files)} file(s).")
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    if args.observed is None:
        return _apply(args)
    configs, retired, policy = _desired_state(args)
    result = plan(configs, load_snapshot(args.observed), policy, retired)
    print(plan_to_json(result) if args.output == "json" else plan_to_table(result))
    return EXIT_OK if result.is_empty and not result.errors and not result.violations else EXIT_DRIFT


def _apply(args: argparse.Namespace) -> int:
    configs, retired, policy = _desired_state(args)
    cloud = cloud_from_settings(os.environ, args.cloud)
    report = asyncio.run(
        _run(cloud, policy, configs, retired, dry_run=args.dry_run, pipelines=args.pipelines)
    )
    print(report_to_json(report) if args.output == "json" else report_to_table(report))
    return EXIT_OK if report.all_converged else EXIT_DRIFT


async def _run(
    cloud: Cloud,
    policy: GrantPolicy,
    configs: Sequence[FederationConfig],
    retired: Sequence[FederationConfig],
    *,
    dry_run: bool,
    pipelines: bool,
) -> RunReport:
    options = EngineOptions(budgets=Budgets.from_settings(os.environ))
    async with connect(cloud, policy, options=options) as reconciler:
        return await reconciler.run(
            configs, retired, dry_run=dry_run, pipelines=pipelines, progress=_progress_bar()
        )


def _progress_bar() -> Callable[[int, int], None] | None:
    """A one-line progress bar on stderr, for people at a terminal; nothing for pipes and logs."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        end = "\n" if done == total else ""
        print(
            f"\rapplying [{'#' * filled}{'.' * (width - filled)}] {done}/{total} applications",
            end=end,
            file=sys.stderr,
        )

    return show


def _desired_state(
    args: argparse.Namespace,
) -> tuple[list[FederationConfig], list[FederationConfig], GrantPolicy]:
    if bool(args.configs) == args.from_table:
        raise InputError(
            ["give the desired state as --configs FILE... or as --from-table, not both or neither"]
        )
    if args.from_table:
        configs, retired = asyncio.run(_table_state())
    else:
        configs = load_configs(args.configs)
        retired = []
    if args.retired:
        retired += load_configs(args.retired)
    path = args.policy or Path(os.environ.get("WIF_POLICY_FILE", DEFAULT_POLICY))
    return configs, retired, load_policy(path)


async def _table_state() -> tuple[list[FederationConfig], list[FederationConfig]]:
    """Active configs and tombstones from the table; invalid rows are listed and left out."""
    cloud = cloud_from_settings(os.environ)
    credential = None if os.environ.get("WIF_TABLE_CONNECTION_STRING") else default_credential(cloud)
    invalid: list[str] = []
    try:
        async with await open_stores(os.environ, credential) as stores:
            records = [
                r async for r in stores.configs.list_all(on_invalid=lambda row: invalid.append(str(row)))
            ]
    finally:
        if credential is not None:
            await credential.close()
    for problem in invalid:
        print(f"warning: skipped an invalid row: {problem}", file=sys.stderr)
    return split_retired(records)
