"""`python -m reconciler`: validate configs, plan, and apply.

Exit codes: 0 valid / converged, 1 drift or failures remain (or something could not be reached),
2 bad input or bad settings; errors the environment causes are one line (reconciler/cli/errors.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError

from reconciler.adapters.graph import token_is_delegated
from reconciler.adapters.pacing import Budgets
from reconciler.cli import doctor, history_command, queue_commands, table_commands
from reconciler.cli.defaults import POLICY_HELP, policy_path
from reconciler.cli.errors import NOT_SIGNED_IN, SettingsProblem, explain, first_line
from reconciler.cli.progress import Progress, wanted
from reconciler.cli.sign_in import deployed_identity, person_note
from reconciler.cli.snapshot import load_snapshot
from reconciler.cloud import Cloud, cloud_from_settings
from reconciler.core.model import FederationConfig
from reconciler.core.orphans import find_orphans
from reconciler.core.plan import plan
from reconciler.core.policy import GrantPolicy
from reconciler.documents import InputError, load_configs, load_policy
from reconciler.engine.run import EngineOptions, RunReport, connect, default_credential, offline_report
from reconciler.failures import CONNECTION_ERROR
from reconciler.render import report_to_json, report_to_table
from reconciler.state.configs import split_retired
from reconciler.state.stores import open_stores

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_BAD_INPUT = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # azure-identity logs every credential it tried, a page long, before it raises; the one line
    # printed below for that error says what to do instead.
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
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
    except Exception as error:  # the environment's errors get one line; anything else is a bug
        explained = explain(error)
        if explained is None:
            raise
        print(f"error: {explained.message}", file=sys.stderr)
        return explained.exit_code
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reconciler",
        description="Keep Azure Pipelines workload identity federation converged with a desired state.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate", help="check config files, and every config against the grant policy"
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument("--policy", type=Path, help=POLICY_HELP)
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
    doctor.register(commands)
    history_command.register(commands)
    return parser


def _add_desired_state_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--configs",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="desired-state YAML files (one or more; several configs per file, separated by ---)",
    )
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
        "--subset",
        action="store_true",
        help="these configs are part of the desired state: do not report the reconciler's applications "
        "they do not name as orphaned (by default the configs are the whole desired state)",
    )
    command.add_argument("--policy", type=Path, help=POLICY_HELP)
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
    command.add_argument(
        "--progress",
        action="store_true",
        help="show progress on stderr even when it is not a terminal (at a terminal it is always shown)",
    )


def _validate(args: argparse.Namespace) -> int:
    configs = load_configs(args.files)
    policy = load_policy(policy_path(args.policy))
    violations = [str(v) for config in configs for v in policy.check(config)]
    if violations:
        raise InputError(violations)
    print(f"{len(configs)} config(s) valid in {len(args.files)} file(s).")
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    if args.observed is None:
        return _apply(args)
    configs, retired, policy, whole = _desired_state(args)
    observed = load_snapshot(args.observed)
    result = plan(configs, observed, policy, retired)
    if whole:
        result = replace(result, findings=(*result.findings, *find_orphans(observed, [*configs, *retired])))
    report = offline_report(configs, retired, result)
    print(report_to_json(report) if args.output == "json" else report_to_table(report))
    return EXIT_OK if report.all_converged else EXIT_DRIFT


def _apply(args: argparse.Namespace) -> int:
    configs, retired, policy, whole = _desired_state(args)
    cloud = cloud_from_settings(os.environ, args.cloud)
    progress = Progress(sys.stderr, len(configs) + len(retired)) if wanted(args.progress) else None
    report = asyncio.run(
        _run(
            cloud,
            policy,
            configs,
            retired,
            dry_run=args.dry_run,
            pipelines=args.pipelines,
            progress=progress,
            find_orphans=whole,
        )
    )
    print(report_to_json(report) if args.output == "json" else report_to_table(report))
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    unreachable = [o for o in report.outcomes if o.code == CONNECTION_ERROR]
    if unreachable:
        print(
            f"error: {len(unreachable)} config(s) failed because an API could not be reached: check the "
            "network and --cloud (or WIF_GRAPH_URL, WIF_ARM_URL, WIF_ADO_URL), then run again",
            file=sys.stderr,
        )
    return EXIT_OK if report.all_converged else EXIT_DRIFT


async def _run(
    cloud: Cloud,
    policy: GrantPolicy,
    configs: Sequence[FederationConfig],
    retired: Sequence[FederationConfig],
    *,
    dry_run: bool,
    pipelines: bool,
    progress: Progress | None,
    find_orphans: bool,
) -> RunReport:
    credential = default_credential(cloud)
    try:
        person = await _signed_in(credential, cloud)
        if person and (note := await person_note(cloud, credential, [*configs, *retired], os.environ)):
            print(note, file=sys.stderr)
        options = EngineOptions(
            budgets=Budgets.from_settings(os.environ),
            # A person's run makes it owner of the applications it creates (core.model.PersonRun).
            deployed_identity=deployed_identity(os.environ) if person else None,
        )
        async with connect(cloud, policy, credential=credential, options=options) as reconciler:
            observing = progress.observing(reconciler.meter) if progress else nullcontext()
            async with observing:
                return await reconciler.run(
                    configs,
                    retired,
                    dry_run=dry_run,
                    pipelines=pipelines,
                    progress=progress.applied if progress else None,
                    find_orphans=find_orphans,
                )
    finally:
        await credential.close()


async def _signed_in(credential: AsyncTokenCredential, cloud: Cloud) -> bool:
    """Gets the first token before anything else, so that not being signed in is one clear error
    and not the same failure repeated for every config (the credential caches the token).
    True when a person is signed in (a delegated token: reconciler/cli/sign_in.py)."""
    try:
        token = await credential.get_token(cloud.graph_scope)
    except ClientAuthenticationError as error:
        raise SettingsProblem(NOT_SIGNED_IN.format(cause=first_line(error))) from error
    return token_is_delegated(token.token)


def _desired_state(
    args: argparse.Namespace,
) -> tuple[list[FederationConfig], list[FederationConfig], GrantPolicy, bool]:
    """Desired and retired configs, the policy, and whether they are the whole desired state (then
    the reconciler's applications none of them names are reported as orphaned)."""
    if bool(args.configs) == args.from_table:
        raise InputError(
            ["give the desired state as --configs FILE... or as --from-table, not both or neither"]
        )
    whole = not args.subset
    if args.from_table:
        configs, retired, unreadable = asyncio.run(_table_state())
        if unreadable and whole:
            print(
                f"warning: orphaned applications are not reported: {unreadable} row(s) of the table could "
                "not be read, and the applications they name would be called orphaned",
                file=sys.stderr,
            )
            whole = False
    else:
        configs = load_configs(args.configs)
        retired = []
    if args.retired:
        retired += load_configs(args.retired)
    return configs, retired, load_policy(policy_path(args.policy)), whole


async def _table_state() -> tuple[list[FederationConfig], list[FederationConfig], int]:
    """Active configs, tombstones and the number of invalid rows (listed and left out) of the table."""
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
    configs, retired = split_retired(records)
    return configs, retired, len(invalid)
