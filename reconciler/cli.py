"""`python -m reconciler`: validate configs and plan against an observed state.

Exit codes: 0 nothing to do (or valid), 1 drift or planning errors remain, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from reconciler.core.plan import plan
from reconciler.core.policy import GrantPolicy
from reconciler.documents import InputError, load_configs, load_policy
from reconciler.render import plan_to_json, plan_to_table
from reconciler.snapshot import load_snapshot

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
        "plan", help="show what would change to make the observed state match the configs"
    )
    plan_cmd.add_argument("--configs", type=Path, action="append", required=True, metavar="FILE")
    plan_cmd.add_argument("--observed", type=Path, required=True, metavar="SNAPSHOT.json")
    plan_cmd.add_argument(
        "--retired",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="configs that were deleted: what they own is pruned (as their prune mode says)",
    )
    plan_cmd.add_argument(
        "--policy", type=Path, help=f"grant policy (default: $WIF_POLICY_FILE or {DEFAULT_POLICY})"
    )
    plan_cmd.add_argument("--output", choices=["table", "json"], default="table")
    plan_cmd.set_defaults(run=_plan)
    return parser


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
    configs = load_configs(args.configs)
    retired = load_configs(args.retired) if args.retired else []
    observed = load_snapshot(args.observed)
    result = plan(configs, observed, _policy(args.policy), retired)
    print(plan_to_json(result) if args.output == "json" else plan_to_table(result))
    return EXIT_OK if result.is_empty and not result.errors and not result.violations else EXIT_DRIFT


def _policy(path: Path | None) -> GrantPolicy:
    return load_policy(path or Path(os.environ.get("WIF_POLICY_FILE", DEFAULT_POLICY)))
